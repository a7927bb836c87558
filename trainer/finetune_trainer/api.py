"""The trainer's public surface: everything the operator (and `finetune run`) may use.

The operator imports this module only, never the trainer's internals (an import-linter
contract holds it to that), so the trainer can reorganise its modules freely. The
operator's image has no torch, Ray or transformers: what is imported here at import
time needs only pydantic and the standard library. The helpers that start training
(`run_job`, `check_locally`, `local_ray_init_kwargs`) pull in the training libraries,
so they are loaded on first use, through the module's `__getattr__`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from finetune_trainer.config import (
    Distributed,
    JobConfig,
    OutputSpec,
    Rule,
    ScalingSpec,
    Spec,
    TrainingConfig,
    distribution_problem,
    distribution_problem_in,
    selection_metric,
)
from finetune_trainer.errors import TrainerError
from finetune_trainer.local_ray import use_loopback_for_embedded_ray
from finetune_trainer.progress import ProgressReport, latest_progress
from finetune_trainer.quiet import set_verbose
from finetune_trainer.search_space import set_path
from finetune_trainer.storage import join, resolve_filesystem

if TYPE_CHECKING:  # the lazy names, for type checkers
    from finetune_trainer.preflight import check_locally
    from finetune_trainer.runner import local_ray_init_kwargs, run_job

# Heavy helpers, by name: the module that defines each. Looked up on every access (not
# cached here), so a test that patches the defining module is seen.
_LAZY = {
    "check_locally": "preflight",
    "local_ray_init_kwargs": "runner",
    "run_job": "runner",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module == "preflight":
        from finetune_trainer import preflight

        return getattr(preflight, name)
    if module == "runner":
        from finetune_trainer import runner

        return getattr(runner, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "Distributed", "JobConfig", "OutputSpec", "ProgressReport", "Rule", "ScalingSpec", "Spec", "TrainerError",
    "TrainingConfig", "check_locally", "join", "latest_progress", "local_ray_init_kwargs",
    "distribution_problem", "distribution_problem_in", "resolve_filesystem", "run_job", "selection_metric",
    "set_path", "set_verbose",
    "use_loopback_for_embedded_ray",
]
