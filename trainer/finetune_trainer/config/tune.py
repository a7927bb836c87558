"""`tune`: a hyperparameter sweep run with Ray Tune."""

from __future__ import annotations

from typing import Annotated, Any, Literal, Optional

from pydantic import AfterValidator, Field, model_validator

from finetune_trainer.config.base import MetricName, Mode, Spec
from finetune_trainer.config.data import DataSpec
from finetune_trainer.config.strategy import StrategySpec
from finetune_trainer.config.training import TrainingSpec
from finetune_trainer.search_space import check_tunable_path

# Bounded so the API server's CEL cost estimate for rules over the search space stays
# within its limits; no sweep needs more.
MAX_SEARCH_DIMENSIONS = 32
DimensionType = Literal["choice", "grid", "uniform", "loguniform", "randint"]

# The model class of each block a sweep may vary (search_space.TUNABLE_ROOTS).
TUNABLE_BLOCKS = {"training": TrainingSpec, "strategy": StrategySpec, "data": DataSpec}


def _tunable_path(path: str) -> str:
    check_tunable_path(path, TUNABLE_BLOCKS)
    return path


# A search-space key: checked per key, so an error points at the key itself.
TunablePath = Annotated[str, AfterValidator(_tunable_path)]


class SearchDimension(Spec):
    """One hyperparameter's search domain."""

    type: DimensionType
    """`choice` or `grid` over `values`; `uniform`, `loguniform` or `randint` over
    [min, max)."""

    values: Optional[list[Any]] = Field(default=None, min_length=1, max_length=256)
    """Candidate values, for `choice` and `grid`."""

    min: Optional[float] = None
    """Lower bound, for `uniform`, `loguniform` and `randint`."""

    max: Optional[float] = None
    """Upper bound (exclusive for `randint`)."""

    # No rule for "values only with choice and grid": the API server's CEL leaves a list
    # of untyped items (values) out of the object's type, so a rule naming
    # `self.values` does not compile and the CRD is refused. _domain checks it.
    CEL_RULES = (
        ("(self.type == 'choice' || self.type == 'grid') || (has(self.min) && has(self.max) && self.min < self.max)",
         "uniform, loguniform and randint need min < max"),
        ("self.type != 'loguniform' || (has(self.min) && self.min > 0.0)",
         "loguniform needs min > 0"),
        ("!(self.type == 'choice' || self.type == 'grid') || (!has(self.min) && !has(self.max))",
         "min and max are not used with choice and grid; list values instead"),
        ("self.type != 'randint' || !has(self.min) || !has(self.max)"
         " || (double(int(self.min)) == self.min && double(int(self.max)) == self.max)",
         "randint needs whole-number min and max"),
    )

    @model_validator(mode="after")
    def _domain(self) -> "SearchDimension":
        listed = self.type in ("choice", "grid")
        if listed != (self.values is not None):
            raise ValueError(f"values is required for choice and grid, and allowed only there (type is {self.type})")
        if listed:
            if self.min is not None or self.max is not None:
                raise ValueError(
                    f"min and max are not used with choice and grid; list values instead (type is {self.type})"
                )
            for value in self.values or []:
                if not isinstance(value, (int, float, str, bool)):
                    raise ValueError(f"values must be numbers, strings or booleans (got {value!r})")
            return self
        if self.min is None or self.max is None or not self.min < self.max:
            raise ValueError("uniform, loguniform and randint need min < max "
                             f"(type is {self.type}; got min={self.min}, max={self.max})")
        if self.type == "loguniform" and self.min <= 0:
            raise ValueError(f"loguniform needs min > 0 (got {self.min})")
        if self.type == "randint" and (self.min != int(self.min) or self.max != int(self.max)):
            raise ValueError("randint needs whole-number min and max")
        return self


class TuneSchedulerSpec(Spec):
    """How Ray Tune allots resources among trials."""

    name: Literal["fifo", "asha", "pbt"] = "fifo"
    """`fifo` runs every trial to the end; `asha` stops weak trials early; `pbt`
    perturbs hyperparameters of weak trials from strong ones."""

    gracePeriod: int = Field(default=1, ge=1)
    """ASHA: evaluations a trial always gets before it may be stopped."""

    reductionFactor: float = Field(default=2.0, gt=1.0)
    """ASHA: 1/reductionFactor of trials advance at each rung."""

    perturbationInterval: int = Field(default=1, ge=1)
    """PBT: evaluations between two perturbations."""


class TuneSpec(Spec):
    """A hyperparameter sweep run with Ray Tune."""

    searchSpace: dict[TunablePath, SearchDimension] = Field(min_length=1, max_length=MAX_SEARCH_DIMENSIONS)
    """Hyperparameters to search (at most 32), keyed by their path in the spec, for
    example `training.learningRate` or `strategy.lora.r`."""

    searchAlgorithm: Literal["random", "grid", "bayesian"] = "random"
    """`random`, `grid` (every combination of grid values) or `bayesian` (Optuna TPE)."""

    scheduler: TuneSchedulerSpec = Field(default_factory=TuneSchedulerSpec)
    """The trial scheduler."""

    numTrials: int = Field(default=4, ge=1, le=10000)
    """Trials to run (for `grid`: repetitions of the full grid)."""

    maxConcurrentTrials: Optional[int] = Field(default=None, ge=1)
    """Upper bound on trials running at once; by default as many as resources allow."""

    metric: MetricName = "eval_loss"
    """The validation metric that ranks trials."""

    mode: Mode = "min"
    """`min` if lower is better, `max` if higher is better."""


    CEL_RULES = (
        ("!has(self.maxConcurrentTrials) || self.maxConcurrentTrials <= self.numTrials",
         "maxConcurrentTrials must be <= numTrials"),
        ("self.searchAlgorithm != 'bayesian' || self.searchSpace.all(k, self.searchSpace[k].type != 'grid')",
         "bayesian search cannot use grid dimensions; use choice"),
        ("self.searchAlgorithm == 'grid' || self.searchSpace.all(k, self.searchSpace[k].type != 'grid')",
         "grid dimensions need searchAlgorithm grid"),
    )

    @model_validator(mode="after")
    def _consistent(self) -> "TuneSpec":
        if self.maxConcurrentTrials is not None and self.maxConcurrentTrials > self.numTrials:
            raise ValueError(
                f"maxConcurrentTrials must be <= numTrials (got {self.maxConcurrentTrials} > {self.numTrials})"
            )
        grids = sorted(k for k, d in self.searchSpace.items() if d.type == "grid")
        if grids and self.searchAlgorithm == "bayesian":
            raise ValueError(f"bayesian search cannot use grid dimensions; use choice (grid: {', '.join(grids)})")
        if grids and self.searchAlgorithm != "grid":
            raise ValueError(f"grid dimensions need searchAlgorithm grid (grid: {', '.join(grids)})")
        return self
