"""finetune_trainer.api, the surface the operator uses: light to import, and its lazy
names are the trainer's own functions."""

from __future__ import annotations

import subprocess
import sys

import pytest


def test_importing_the_api_loads_no_training_library() -> None:
    probe = (
        "import sys, finetune_trainer.api as api; "
        "heavy = [m for m in ('torch', 'ray', 'transformers', 'peft', 'datasets') if m in sys.modules]; "
        "print('HEAVY', heavy)"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "HEAVY []" in result.stdout


def test_every_public_name_resolves_and_lazy_ones_are_the_defining_modules_own() -> None:
    from finetune_trainer import api, preflight, runner

    for name in api.__all__:
        assert getattr(api, name) is not None, name
    assert api.run_job is runner.run_job
    assert api.check_locally is preflight.check_locally


def test_an_unknown_name_is_an_attribute_error() -> None:
    from finetune_trainer import api

    with pytest.raises(AttributeError, match="no attribute 'nothing_here'"):
        api.nothing_here  # noqa: B018


def test_selection_metric_is_the_sweeps_else_early_stoppings_else_the_loss() -> None:
    from finetune_trainer.api import TrainingConfig, selection_metric

    base = {"model": {"source": "m"}, "data": {"train": "t.csv"}, "output": {"uri": "/tmp/o"}}
    assert selection_metric(TrainingConfig.model_validate(base)) == ("eval_loss", "min")
    stopping = {**base, "training": {"earlyStopping": {"metric": "eval_f1", "mode": "max"}}}
    assert selection_metric(TrainingConfig.model_validate(stopping)) == ("eval_f1", "max")
    sweep = {**stopping, "tune": {"searchSpace": {"training.seed": {"type": "choice", "values": [1, 2]}},
                                  "metric": "eval_accuracy", "mode": "max"}}
    assert selection_metric(TrainingConfig.model_validate(sweep)) == ("eval_accuracy", "max")
