"""Two spellings of one field: Python attributes are snake_case, the manifest (YAML,
CRD, status, progress lines, error messages) is camelCase, and the aliases join them.
Wherever a field is reached by a name held in a string (a manifest path, a settings
block, a copy's update), the two must not be confused."""

from __future__ import annotations

import json

import pytest
from pydantic.alias_generators import to_camel

import finetune_operator.api  # noqa: F401  (registers the operator's models as Spec subclasses)
import finetune_operator.api_status  # noqa: F401
import finetune_trainer.progress  # noqa: F401
from finetune_operator.api_status import FineTuneJobStatus
from finetune_trainer.config import (
    GradualUnfreezingSpec,
    Spec,
    StrategySpec,
    TrainingConfig,
    with_overrides,
)
from finetune_trainer.progress import ProgressReport, parse_progress_line


def _models() -> list[type[Spec]]:
    found, pending = [], list(Spec.__subclasses__())
    while pending:
        model = pending.pop()
        pending.extend(model.__subclasses__())
        if model.__module__.startswith(("finetune_trainer.", "finetune_operator.")):
            found.append(model)
    return found


def test_every_field_is_snake_case_in_python_and_camel_case_in_the_manifest() -> None:
    models = _models()
    assert {"TrainingConfig", "FineTuneJobSpec", "FineTuneJobStatus", "ProgressReport"} <= {m.__name__ for m in models}
    for model in models:
        for name, field in model.model_fields.items():
            assert name == name.lower(), f"{model.__name__}.{name} is not snake_case"
            assert field.alias == to_camel(name), f"{model.__name__}.{name} is spelled {field.alias} in YAML"


def _config(**blocks: object) -> TrainingConfig:
    return TrainingConfig.model_validate({"model": {"source": "org/model"}, "data": {"train": "train.csv"},
                                          "output": {"uri": "out"}, **blocks})


def test_overrides_by_manifest_path_land_on_the_attributes() -> None:
    config = _config(strategy={"type": "gradualUnfreezing"})
    changed = with_overrides(config, {"training.learningRate": 3e-4, "training.scheduler.warmupRatio": 0.2,
                                      "strategy.gradualUnfreezing.every": 3})
    assert changed.training.learning_rate == 3e-4 and changed.training.scheduler.warmup_ratio == 0.2
    assert changed.strategy.gradual_unfreezing.every == 3
    assert config.training.learning_rate == 5e-5 and config.strategy.gradual_unfreezing is None


def test_the_settings_block_is_an_attribute_and_its_key_the_manifest_name() -> None:
    strategy = StrategySpec(type="gradualUnfreezing")
    assert (strategy.settings_block, strategy.settings_key) == ("gradual_unfreezing", "gradualUnfreezing")
    assert StrategySpec(type="qlora").settings_key == "lora" and StrategySpec().settings_key is None
    assert strategy.resolved().gradual_unfreezing == GradualUnfreezingSpec()


def test_a_sweep_may_tune_the_settings_of_its_own_strategy_only() -> None:
    space = {"searchSpace": {"strategy.gradualUnfreezing.every": {"type": "choice", "values": [1, 2]}}}
    tuned = _config(strategy={"type": "gradualUnfreezing"}, tune=space)
    assert list(tuned.tune.search_space) == ["strategy.gradualUnfreezing.every"]
    with pytest.raises(ValueError, match="'strategy.gradualUnfreezing.every' tunes gradualUnfreezing, but "
                                         "strategy.type is lora"):
        _config(strategy={"type": "lora"}, tune=space)


def test_status_and_progress_are_written_in_camel_case() -> None:
    status = FineTuneJobStatus(ray_job_name="job1-rj", observed_generation=2, best_metrics={"eval_loss": 0.5},
                               best_metric="eval_loss=0.5", model_uri="s3://m")
    assert status.to_dict() == {"phase": "Pending", "conditions": [], "rayJobName": "job1-rj",
                                "observedGeneration": 2, "attempt": 0, "metrics": {},
                                "bestMetrics": {"eval_loss": 0.5}, "bestMetric": "eval_loss=0.5",
                                "modelUri": "s3://m"}
    report = ProgressReport(step=4, total_steps=8, trials_completed=1, trials_total=2, model_uri="s3://m")
    line = report.to_line()
    written = json.loads(line.split(": ", 1)[1])
    assert {"totalSteps", "trialsCompleted", "trialsTotal", "modelUri", "bestMetrics"} <= set(written)
    assert parse_progress_line(line) == report
