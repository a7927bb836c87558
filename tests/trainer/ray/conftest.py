"""Real Ray runs on tiny models: a private local Ray per test module, tiny BERT and
intent data written by the test itself (no downloads)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterator

import pytest

from tests.support.s3 import s3_bucket, s3_store  # noqa: F401  (fixtures)
from tests.trainer.unit.core_helpers import make_tiny_model_dir, write_rows

# Logical CPUs declared to the private Ray: two 1-CPU workers plus a Tune trial driver
# must fit even on a 2-core machine (the driver only waits).
RAY_CPUS = 5
INTENTS = ["billing", "login", "shipping"]
_WORDS = {
    "billing": ["invoice", "charge", "card", "payment", "bill"],
    "login": ["password", "account", "sign", "locked", "reset"],
    "shipping": ["parcel", "delivery", "courier", "tracking", "arrive"],
}


def intent_rows(n: int, offset: int = 0) -> list[dict[str, Any]]:
    """`n` distinct, learnable rows over INTENTS (a keyword decides the label)."""
    rows = []
    for i in range(offset, offset + n):
        label = INTENTS[i % len(INTENTS)]
        words = _WORDS[label]
        rows.append({"text": f"my {words[i % 5]} {words[(i // 5) % 5]} problem number {i}", "label": label})
    return rows


@pytest.fixture(scope="module")
def ray_local() -> Iterator[None]:
    """A private Ray instance for this module (never someone else's cluster)."""
    import ray

    from finetune_trainer.runner import local_ray_init_kwargs

    if ray.is_initialized():
        ray.shutdown()
    os.environ.pop("RAY_ADDRESS", None)
    ray.init(address="local", num_cpus=RAY_CPUS, include_dashboard=True, dashboard_port=None,
             log_to_driver=True, configure_logging=False, **local_ray_init_kwargs())
    try:
        yield
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_model_dir(tmp_path_factory.mktemp("tiny-bert"), num_labels=len(INTENTS))


@pytest.fixture(scope="module")
def intent_data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("intent-data")
    return {
        "train": str(write_rows(root / "train.csv", intent_rows(96))),
        "validation": str(write_rows(root / "validation.csv", intent_rows(30, offset=1000))),
        "test": str(write_rows(root / "test.csv", intent_rows(30, offset=2000))),
    }


def make_job(name: str, model: Path, data: dict[str, str], output: str, *, workers: int = 2,
             training: dict | None = None, tune: dict | None = None, output_extra: dict | None = None,
             strategy: dict | None = None):
    from finetune_trainer.config import JobConfig

    config: dict[str, Any] = {
        "model": {"source": str(model)},
        "data": {**data, "maxSeqLength": 32},
        "training": {"epochs": 2, "batchSize": 8, "learningRate": 5e-3, "evaluation": {"every": 4, "unit": "step"},
                     "checkpoint": {"every": 4, "unit": "step"}, **(training or {})},
        "output": {"uri": output, **(output_extra or {})},
    }
    if tune:
        config["tune"] = tune
    if strategy:
        config["strategy"] = strategy
    return JobConfig.model_validate({"name": name, "config": config,
                                     "scaling": {"numWorkers": workers, "cpusPerWorker": 1}})
