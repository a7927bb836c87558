"""`tune`: a hyperparameter sweep run with Ray Tune."""

from __future__ import annotations

from typing import Annotated, Any, Literal, Optional

from pydantic import AfterValidator, Field, model_validator

from finetune_trainer.config.base import MetricName, Mode, Rule, Spec
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

    RULES = (
        Rule("(self.type == 'choice' || self.type == 'grid')"
             " || (has(self.min) && has(self.max) && self.min < self.max)",
             "uniform, loguniform and randint need min < max",
             lambda s: s.listed or (s.min is not None and s.max is not None and s.min < s.max),
             lambda s: f"type is {s.type}; got min={s.min}, max={s.max}"),
        Rule("self.type != 'loguniform' || (has(self.min) && self.min > 0.0)",
             "loguniform needs min > 0",
             lambda s: s.type != "loguniform" or (s.min is not None and s.min > 0),
             lambda s: f"got {s.min}"),
        Rule("!(self.type == 'choice' || self.type == 'grid') || (!has(self.min) && !has(self.max))",
             "min and max are not used with choice and grid; list values instead",
             lambda s: not s.listed or (s.min is None and s.max is None),
             lambda s: f"type is {s.type}"),
        Rule("self.type != 'randint' || !has(self.min) || !has(self.max)"
             " || (double(int(self.min)) == self.min && double(int(self.max)) == self.max)",
             "randint needs whole-number min and max",
             lambda s: s.type != "randint" or s.min is None or s.max is None
             or (s.min == int(s.min) and s.max == int(s.max))),
    )

    @property
    def listed(self) -> bool:
        """Whether the domain is a list of values (choice, grid) rather than a range."""
        return self.type in ("choice", "grid")

    # Replaces Spec's validator of the same name, so that the checks of `values` come
    # where they always have: CEL cannot check them (the API server leaves a list of
    # untyped items out of the object's type, so a rule naming `self.values` does not
    # compile and the CRD is refused).
    @model_validator(mode="after")
    def _obey_rules(self) -> "SearchDimension":
        if self.listed != (self.values is not None):
            raise ValueError(f"values is required for choice and grid, and allowed only there (type is {self.type})")
        self.check_rules()
        for value in self.values or []:
            if not isinstance(value, (int, float, str, bool)):
                raise ValueError(f"values must be numbers, strings or booleans (got {value!r})")
        return self


class TuneSchedulerSpec(Spec):
    """How Ray Tune allots resources among trials."""

    name: Literal["fifo", "asha", "pbt"] = "fifo"
    """`fifo` runs every trial to the end; `asha` stops weak trials early; `pbt`
    perturbs hyperparameters of weak trials from strong ones."""

    grace_period: int = Field(default=1, ge=1)
    """ASHA: evaluations a trial always gets before it may be stopped."""

    reduction_factor: float = Field(default=2.0, gt=1.0)
    """ASHA: 1/reductionFactor of trials advance at each rung."""

    perturbation_interval: int = Field(default=1, ge=1)
    """PBT: evaluations between two perturbations."""


class TuneSpec(Spec):
    """A hyperparameter sweep run with Ray Tune."""

    search_space: dict[TunablePath, SearchDimension] = Field(min_length=1, max_length=MAX_SEARCH_DIMENSIONS)
    """Hyperparameters to search (at most 32), keyed by their path in the spec, for
    example `training.learningRate` or `strategy.lora.r`."""

    search_algorithm: Literal["random", "grid", "bayesian"] = "random"
    """`random`, `grid` (every combination of grid values) or `bayesian` (Optuna TPE)."""

    scheduler: TuneSchedulerSpec = Field(default_factory=TuneSchedulerSpec)
    """The trial scheduler."""

    num_trials: int = Field(default=4, ge=1, le=10000)
    """Trials to run (for `grid`: repetitions of the full grid)."""

    max_concurrent_trials: Optional[int] = Field(default=None, ge=1)
    """Upper bound on trials running at once; by default as many as resources allow."""

    metric: MetricName = "eval_loss"
    """The validation metric that ranks trials."""

    mode: Mode = "min"
    """`min` if lower is better, `max` if higher is better."""


    RULES = (
        Rule("!has(self.maxConcurrentTrials) || self.maxConcurrentTrials <= self.numTrials",
             "maxConcurrentTrials must be <= numTrials",
             lambda s: s.max_concurrent_trials is None or s.max_concurrent_trials <= s.num_trials,
             lambda s: f"got {s.max_concurrent_trials} > {s.num_trials}"),
        Rule("self.searchAlgorithm != 'bayesian'"
             " || self.searchSpace.all(k, self.searchSpace[k].type != 'grid')",
             "bayesian search cannot use grid dimensions; use choice",
             lambda s: s.search_algorithm != "bayesian" or not s.grid_paths,
             lambda s: f"grid: {', '.join(s.grid_paths)}"),
        Rule("self.searchAlgorithm == 'grid' || self.searchSpace.all(k, self.searchSpace[k].type != 'grid')",
             "grid dimensions need searchAlgorithm grid",
             lambda s: s.search_algorithm == "grid" or not s.grid_paths,
             lambda s: f"grid: {', '.join(s.grid_paths)}"),
    )

    @property
    def grid_paths(self) -> list[str]:
        """The searched paths whose dimension is a grid, sorted."""
        return sorted(k for k, d in self.search_space.items() if d.type == "grid")
