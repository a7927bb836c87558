"""The per-worker training loop that Ray Train's TorchTrainer runs on every worker.

One function, `train_loop_per_worker(loop_config)`, does a whole data-parallel
fine-tune: seed, load the model, apply the strategy, read this rank's shard (sharded
before tokenisation), wrap in DDP or shard with FSDP2 (`resources.distributed`, see
`finetune_trainer.loop.parallel`; gloo on CPU, NCCL on GPU, chosen by Ray), train
with gradient accumulation, clipping and optional mixed precision, evaluate across
ranks, stop early, and checkpoint through `ray.train.report`.

A checkpoint holds the model, optimizer, scheduler and LR-scaler states plus the step,
epoch, position inside the epoch, RNG states, early-stopping state and loss history,
so a restarted worker group continues exactly where the checkpoint was taken.

The pieces live in `finetune_trainer.loop` (state, checkpointer, one epoch,
evaluate-and-report); this module sets a worker up and runs them. Tests reach the
loop through `LoopHooks` (`finetune_trainer.loop.hooks`), passed in the loop config.

Mixed precision: bf16/fp16 use autocast (and a GradScaler for fp16) on GPU only;
under FSDP bf16 is the sharding's MixedPrecisionPolicy (bf16 compute, fp32 reduction
and master weights) instead of autocast. On
CPU the loop trains in fp32 and logs a warning: CPU autocast is slow for these models
and fp16 is not supported there.
"""

from __future__ import annotations

import logging
import math
import tempfile
import time
from typing import Any

from finetune_trainer.checkpointing import MODEL_STATE, STATE_JSON, TRAINER_STATE
from finetune_trainer.config import JobConfig, TrainingConfig, selection_metric
from finetune_trainer.loop.checkpointer import Checkpointer
from finetune_trainer.loop.context import TrainingParts, WorkerContext
from finetune_trainer.loop.epoch import epoch_order, run_epoch
from finetune_trainer.loop.hooks import NO_HOOKS
from finetune_trainer.loop.parallel import parallel_for
from finetune_trainer.loop.reducer import Reducer
from finetune_trainer.loop.seeding import seed_everything, seed_rank_streams
from finetune_trainer.loop.state import LoopState, Plan

log = logging.getLogger("finetune_trainer.train_loop")


def train_loop_per_worker(loop_config: dict[str, Any]) -> None:
    """Ray Train entry point. `loop_config` holds `job` (a JobConfig as a dict),
    optional `overrides` (dotted path -> value, from a Tune trial), `trial` (an id for
    metric tags), `start_from` (a checkpoint to start from, e.g. a PBT exploit's) and
    `hooks` (a `LoopHooks`, the tests' seam; None in production)."""
    import ray.train

    from finetune_trainer.quiet import configure_libraries

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    configure_libraries()  # this worker is a new process: no library tables or bars unless verbose
    ctx, core, controller, scaler = _set_up(loop_config)
    checkpointer = Checkpointer(ctx)
    state = LoopState()
    # The run's own checkpoint first (a restarted worker group); else the one the run
    # was started from (Train V2 has no resume_from_checkpoint: it travels in the config).
    checkpoint = ray.train.get_checkpoint() or loop_config.get("start_from")
    trainer_state = checkpointer.restore_progress(checkpoint, core, controller, state)
    parallel = ctx.parallel
    # Sharding replaces the parameters: the optimizer is built over the shards. DDP
    # wraps after the optimizer, once a resumed strategy stage has set what trains.
    model = parallel.wrap(core) if parallel.shards_in_place else None
    optimizer, scheduler = checkpointer.restore_training(trainer_state, core, controller, scaler, state)
    if model is None:
        model = parallel.wrap(core)
    parts = TrainingParts(core=core, model=model, controller=controller, optimizer=optimizer,
                          scheduler=scheduler, scaler=scaler, wrap=parallel.wrap)
    controller.trainable_changed = False
    if ctx.rank == 0:
        from finetune_trainer.telemetry import WorkerMetrics

        ctx.metrics_sink = WorkerMetrics(ctx.job.name, ctx.trial_id, ctx.task.eval_metrics)
    state.window.started = time.perf_counter()
    done = state.step >= ctx.plan.total_steps
    parts.model.train()
    while not done and state.epoch < ctx.plan.total_epochs:
        done = run_epoch(ctx, parts, state, checkpointer)
    if state.stop_early and ctx.rank == 0:
        log.info("early stopping: %s did not improve for %d evaluations; stopped at step %d",
                 selection_metric(ctx.config)[0], ctx.config.training.early_stopping.patience, state.step)


def _set_up(loop_config: dict[str, Any]):
    """(context, model, strategy controller, gradient scaler) of this worker: the
    job's config with the trial's overrides, rank and device, seeds, precision, this
    rank's data and the model with the strategy applied, on the device."""
    import ray.train
    import ray.train.torch
    import torch

    from finetune_trainer.evaluation import EarlyStopper
    from finetune_trainer.config import with_overrides

    job = JobConfig.model_validate(loop_config["job"])
    config = job.config
    if loop_config.get("overrides"):
        config = with_overrides(config, loop_config["overrides"])
    training = config.training
    context = ray.train.get_context()
    rank, world_size = context.get_world_rank(), context.get_world_size()
    torch.set_num_threads(max(1, int(job.scaling.cpus_per_worker)))
    device = ray.train.torch.get_device()
    seed_everything(training.seed)  # the same new head on every rank
    autocast_dtype, scaler = _precision(training, device, rank)
    parallel, autocast_dtype = parallel_for(
        job.scaling.distributed, rank=rank, world_size=world_size, device=device, autocast_dtype=autocast_dtype,
        # gradual unfreezing leaves parameters unused in some steps
        find_unused_parameters=config.strategy.type == "gradualUnfreezing")
    reducer = Reducer(world_size, device)
    data = _data_and_model(config, rank, world_size, reducer)
    seed_rank_streams(training.seed, rank)  # from here each rank draws its own dropout masks
    train_set, validation_set, collate, label_names, controller, task, data_report = data
    ctx = WorkerContext(task=task,
        job=job, config=config, trial_id=str(loop_config.get("trial") or "run"), rank=rank, world_size=world_size,
        device=device, reducer=reducer, autocast_dtype=autocast_dtype, train_set=train_set,
        validation_set=validation_set, collate=collate, label_names=label_names,
        plan=_plan(training, len(train_set), reducer),
        stopper=EarlyStopper(training.early_stopping) if training.early_stopping else None,
        hooks=loop_config.get("hooks") or NO_HOOKS, data_report=data_report, parallel=parallel,
        overrides=dict(loop_config.get("overrides") or {}))
    parallel.place(controller.model)
    return ctx, controller.model, controller, scaler


def _precision(training: Any, device: Any, rank: int) -> tuple[Any, Any]:
    """(autocast dtype, GradScaler) for `training.precision`: bf16/fp16 on a GPU (a
    scaler for fp16); on a CPU fp32, with a warning."""
    import torch

    if training.precision == "fp32":
        return None, None
    if device.type == "cuda":
        dtype = torch.bfloat16 if training.precision == "bf16" else torch.float16
        return dtype, torch.amp.GradScaler("cuda") if training.precision == "fp16" else None
    if rank == 0:
        log.warning("training.precision %s needs a GPU; this worker has none, so it trains in fp32",
                    training.precision)
    return None, None


def _data_and_model(config: TrainingConfig, rank: int, world_size: int, reducer: Reducer):
    """(train set, validation set, collator, label names, strategy controller, task, data
    report): this rank's shard (sharded before tokenisation, rebalanced across ranks),
    the model with the fine-tuning strategy applied, and the data report of all ranks
    together (as a dict; checkpoints carry it, so finishing need not read the data again)."""
    from finetune_trainer.sharding import rebalance
    from finetune_trainer.splitting import DataReport
    from finetune_trainer.strategies import apply_strategy, loading_kwargs
    from finetune_trainer.tasks import get_task

    training = config.training
    task = get_task(config)
    examples = task.load_examples(config, rank=rank, world_size=world_size, shard_eval=True)
    # Each rank counts disjoint rows (and its own shard's labels), before rebalancing.
    data_report = DataReport.merge(reducer.gather_objects(examples.report)).to_dict()
    if world_size > 1:  # hash shards are even only on average: move the surplus
        examples.train = rebalance(examples.train, rank, config.data.shuffle_seed, reducer.gather_objects)
    label_names = examples.label_names
    with tempfile.TemporaryDirectory(prefix="finetune-model-") as cache:
        model, tokenizer = task.load_model(config.model, label_names, training.dropout, output=config.output,
                                           cache_dir=cache, load_kwargs=loading_kwargs(config.strategy))
    if training.gradient_checkpointing:
        enable_gradient_checkpointing(model)
    controller = apply_strategy(model, config.strategy, task)
    train_set = task.dataset(examples.train, tokenizer, config, train=True)
    validation_set = task.dataset(examples.validation, tokenizer, config)
    return train_set, validation_set, task.collator(tokenizer), label_names, controller, task, data_report


def enable_gradient_checkpointing(model: Any) -> None:
    """Recompute activations in the backward pass (`training.gradientCheckpointing`).
    Non-reentrant checkpointing, so frozen embeddings (LoRA, partial) still pass
    gradients to the trainable layers above them."""
    from finetune_trainer.errors import TrainerError

    if not getattr(model, "supports_gradient_checkpointing", False):
        raise TrainerError(f"training.gradientCheckpointing: {type(model).__name__} does not support gradient "
                           "checkpointing; set it to false")
    if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5.x's name
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    else:  # pragma: no cover - older transformers
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if getattr(model.config, "use_cache", None):
        model.config.use_cache = False


def _plan(training: Any, train_size: int, reducer: Reducer) -> Plan:
    """Batches and steps of the run. Rebalanced shards differ by at most one row; every
    rank takes the smallest shard's number of batches per epoch, so DDP's collective
    calls stay in step."""
    from finetune_trainer.optim import total_optimizer_steps

    batches_per_epoch = reducer.min_int(math.ceil(train_size / training.batch_size))
    if batches_per_epoch < 1:
        raise ValueError("data.train: a worker got no training examples; use fewer workers or more data")
    accumulation = training.gradient_accumulation_steps
    steps_per_epoch = max(1, math.ceil(batches_per_epoch / accumulation))
    total_steps = total_optimizer_steps(batches_per_epoch * training.batch_size, training)
    return Plan(batch_size=training.batch_size, accumulation=accumulation, batches_per_epoch=batches_per_epoch,
                steps_per_epoch=steps_per_epoch, total_steps=total_steps,
                total_epochs=math.ceil(total_steps / steps_per_epoch))


__all__ = ["MODEL_STATE", "STATE_JSON", "TRAINER_STATE", "epoch_order", "train_loop_per_worker"]
