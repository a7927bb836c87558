"""Training tasks: what differs between tasks, one module per task.

The shared machinery (the loop, sweeps, strategies, evaluation, storage, export,
telemetry) holds a `Task` (see `tasks.base`) and asks it for the columns to read,
the examples of each split, the model and tokenizer, the dataset and collator, the
evaluation counts and metrics, the head modules and what the model card says. It
never branches on a task's name. `get_task(config)` picks the task `model.task`
names from `TASKS`. Tasks sit below the loop: no module here imports the loop, the
runner, strategies, evaluation, export or telemetry (an import-linter contract in
pyproject.toml says so).

How to add a task
-----------------
1. One module, `tasks/<task>.py` (or a package, as `tasks/causal_lm/`), with a `Task` subclass (`tasks.base.Task`): its
   `name` (the `model.task` value), `peft_task_type`, `eval_metrics` and
   `default_metric`, and the methods: `columns(config)` (what to read, for `sources`),
   `load_examples` (build it on `splitting.split_rows` with a `splitting.RowRules`
   of the task: how a row is cleaned and checked, its `row_key` for the seeded
   split, its dedupe key, and `fit` for the label set or vocabulary),
   `load_model` (on `modeling.load_pretrained` with the task's Auto class),
   `dataset` and `collator`, `evaluation_counts` and `metrics_from_counts` (summable
   counts, so data-parallel evaluation is exact), `head_modules`, `card`, and
   `batch_samples` if a batch's size is not its labels' first dimension. The
   examples a task returns must offer `row_key`, `subset` and `extend` so
   `sharding.rebalance` can even out the shards. Classification tasks share
   `tasks._labels` (LabelCoder, label inference, confusion counts).
2. One registry entry: add an instance to `TASKS` below.
3. Its config block: add the name to `ModelSpec.task`'s Literal (`config/model.py`)
   and, for settings of its own, a module `config/<task>.py` with an optional block
   held by `TrainingConfig` and allowed only with that task (`Rule`s in the
   config's `RULES`, as `config/causal_lm.py` does it for `causalLm` and
   `config/image.py` for `image`, since the CRD takes no unions); then regenerate the CRD (`finetune crd --write`). Optional hooks:
   `batch_tokens` (throughput), `default_lora_targets`, `card_sections`.
"""

from __future__ import annotations

from typing import Optional, Union

from finetune_trainer.config import ModelSpec, TrainingConfig
from finetune_trainer.errors import TrainerError
from finetune_trainer.tasks.base import CardFacts, SplitExamples, Task
from finetune_trainer.tasks.causal_lm import CausalLm
from finetune_trainer.tasks.image_classification import ImageClassification
from finetune_trainer.tasks.text_classification import TextClassification

TASKS: dict[str, Task] = {task.name: task for task in (TextClassification(), ImageClassification(), CausalLm())}
"""Every task by its `model.task` value."""


def get_task(config: Union[TrainingConfig, ModelSpec, str, None] = None) -> Task:
    """The task of a training config (its `model.task`), of a model spec, or by name;
    with no argument, the task of the default `model.task`."""
    if config is None:
        name = ModelSpec.model_fields["task"].default
    elif isinstance(config, str):
        name = config
    elif isinstance(config, TrainingConfig):
        name = config.model.task
    else:
        name = config.task
    task: Optional[Task] = TASKS.get(name)
    if task is None:
        raise TrainerError(f"model.task: unknown task {name!r}; allowed: {', '.join(sorted(TASKS))}")
    return task


__all__ = ["TASKS", "CardFacts", "SplitExamples", "Task", "get_task"]
