"""The per-worker training loop that Ray Train's TorchTrainer runs on every worker.

One function, `train_loop_per_worker(loop_config)`, does a whole data-parallel
fine-tune: seed, load the model, apply the strategy, read this rank's shard (sharded
before tokenisation), wrap in DDP (gloo on CPU, NCCL on GPU, chosen by Ray), train
with gradient accumulation, clipping and optional mixed precision, evaluate across
ranks, stop early, and checkpoint through `ray.train.report`.

A checkpoint holds the model, optimizer, scheduler and LR-scaler states plus the step,
epoch, position inside the epoch, RNG states, early-stopping state and loss history,
so a restarted worker group continues exactly where the checkpoint was taken.

Mixed precision: bf16/fp16 use autocast (and a GradScaler for fp16) on GPU only. On
CPU the loop trains in fp32 and logs a warning: CPU autocast is slow for these models
and fp16 is not supported there.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import random
import tempfile
import time
from typing import Any, Optional

from finetune_trainer.checkpointing import MODEL_STATE, STATE_JSON, TRAINER_STATE, rng_state, set_rng_state
from finetune_trainer.config import JobConfig, TrainingConfig

log = logging.getLogger("finetune_trainer.train_loop")

# Test-only fault injection: when FINETUNE_FAULT_EXIT_AT_STEP=K and
# FINETUNE_FAULT_MARKER=PATH reach the loop (the runner forwards them), the last rank
# exits hard after optimizer step K unless PATH exists, and creates PATH first, so
# the fault happens exactly once per run. With FINETUNE_FAULT_AFTER_FILE=PATH it first
# waits (up to a minute) for PATH to appear: Ray Train registers a reported checkpoint
# asynchronously, so a test makes that file once the driver has seen the checkpoint.
FAULT_STEP_ENV = "FINETUNE_FAULT_EXIT_AT_STEP"
FAULT_MARKER_ENV = "FINETUNE_FAULT_MARKER"
FAULT_AFTER_FILE_ENV = "FINETUNE_FAULT_AFTER_FILE"
_FAULT_WAIT_S = 60.0


def selection_metric(config: TrainingConfig) -> tuple[str, str]:
    """The (metric, mode) that ranks checkpoints and trials."""
    if config.tune is not None:
        return config.tune.metric, config.tune.mode
    if config.training.earlyStopping is not None:
        return config.training.earlyStopping.metric, config.training.earlyStopping.mode
    return "eval_loss", "min"


def _seed_everything(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def epoch_order(num_examples: int, seed: int, epoch: int) -> list[int]:
    """The shuffled example order of one epoch: a pure function of seed and epoch, so a
    resumed run sees the same batches it would have seen."""
    import torch

    generator = torch.Generator()
    generator.manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(num_examples, generator=generator).tolist()


class _Reducer:
    """Sums tensors across ranks (no-op for one worker)."""

    def __init__(self, world_size: int, device: Any) -> None:
        self.world_size = world_size
        self.device = device

    def __call__(self, tensor):
        import torch.distributed as dist

        if self.world_size > 1:
            original = tensor.device
            tensor = tensor.to(self.device)
            dist.all_reduce(tensor)
            tensor = tensor.to(original)
        return tensor

    def min_int(self, value: int) -> int:
        import torch
        import torch.distributed as dist

        if self.world_size == 1:
            return value
        tensor = torch.tensor([value], dtype=torch.int64, device=self.device)
        dist.all_reduce(tensor, op=dist.ReduceOp.MIN)
        return int(tensor.item())

    def gather_objects(self, value: Any) -> list[Any]:
        """Every rank's `value` (any picklable object), in rank order."""
        import torch.distributed as dist

        if self.world_size == 1:
            return [value]
        gathered: list[Any] = [None] * self.world_size
        dist.all_gather_object(gathered, value)
        return gathered

    def sum_floats(self, *values: float) -> list[float]:
        import torch

        tensor = torch.tensor(values, dtype=torch.float64)
        return [float(v) for v in self(tensor)]


def _maybe_inject_fault(step: int, rank: int, world_size: int, fault: dict[str, str]) -> None:
    at = fault.get(FAULT_STEP_ENV)
    marker = fault.get(FAULT_MARKER_ENV)
    if not at or not marker or rank != world_size - 1 or step != int(at):
        return
    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return
    os.write(fd, f"{os.getpid()} step {step}\n".encode())
    os.close(fd)
    after = fault.get(FAULT_AFTER_FILE_ENV)
    deadline = time.monotonic() + _FAULT_WAIT_S
    while after and not os.path.exists(after) and time.monotonic() < deadline:
        time.sleep(0.1)
    log.warning("fault injection: rank %d exits hard after step %d", rank, step)
    os._exit(17)


def train_loop_per_worker(loop_config: dict[str, Any]) -> None:
    """Ray Train entry point. `loop_config` holds `job` (a JobConfig as a dict),
    optional `overrides` (dotted path -> value, from a Tune trial), `trial` (an id for
    metric tags), `start_from` (a checkpoint to start from, e.g. a PBT exploit's) and
    `fault` (test hooks)."""
    import ray.train
    import ray.train.torch
    import torch
    from torch.utils.data import DataLoader

    from finetune_trainer.evaluation import EarlyStopper, evaluate
    from finetune_trainer.checkpointing import lineage, read_checkpoint, write_checkpoint
    from finetune_trainer.optim import (
        build_optimizer, build_scheduler, clip_gradients, rebuild_optimizer, restore_optimizer, total_optimizer_steps,
    )
    from finetune_trainer.search_space import with_overrides
    from finetune_trainer.sharding import rebalance
    from finetune_trainer.strategies import apply_strategy, unwrap
    from finetune_trainer.tasks import get_task
    from finetune_trainer.telemetry import WorkerMetrics

    from finetune_trainer.quiet import configure_libraries

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    configure_libraries()  # this worker is a new process: no library tables or bars unless verbose
    job = JobConfig.model_validate(loop_config["job"])
    config = job.config
    if loop_config.get("overrides"):
        config = with_overrides(config, loop_config["overrides"])
    training = config.training
    trial_id = str(loop_config.get("trial") or "run")
    fault = dict(loop_config.get("fault") or {})

    context = ray.train.get_context()
    rank, world_size = context.get_world_rank(), context.get_world_size()
    threads = max(1, int(job.scaling.cpusPerWorker))
    torch.set_num_threads(threads)
    device = ray.train.torch.get_device()
    on_gpu = device.type == "cuda"
    _seed_everything(training.seed)

    # ------------------------------------------------------------ precision
    autocast_dtype = None
    scaler = None
    if training.precision != "fp32":
        if on_gpu:
            autocast_dtype = torch.bfloat16 if training.precision == "bf16" else torch.float16
            if training.precision == "fp16":
                scaler = torch.amp.GradScaler("cuda")
        elif rank == 0:
            log.warning("training.precision %s needs a GPU; this worker has none, so it trains in fp32",
                        training.precision)

    # ------------------------------------------------------------ data + model
    reducer = _Reducer(world_size, device)
    task = get_task(config)
    examples = task.load_examples(config, rank=rank, world_size=world_size, shard_eval=True)
    if world_size > 1:  # hash shards are even only on average: move the surplus
        examples.train = rebalance(examples.train, rank, config.data.shuffleSeed, reducer.gather_objects)
    label_names = examples.label_names
    with tempfile.TemporaryDirectory(prefix="finetune-model-") as cache:
        model, tokenizer = task.load_model(config.model, label_names, training.dropout, output=config.output,
                                           cache_dir=cache)
    controller = apply_strategy(model, config.strategy, task)
    train_set = task.dataset(examples.train, tokenizer, config, train=True)
    validation_set = task.dataset(examples.validation, tokenizer, config)
    collate = task.collator(tokenizer)

    # Rebalanced shards differ by at most one row; every rank takes the smallest
    # shard's number of batches per epoch, so DDP's collective calls stay in step.
    batches_per_epoch = reducer.min_int(math.ceil(len(train_set) / training.batchSize))
    if batches_per_epoch < 1:
        raise ValueError("data.train: a worker got no training examples; use fewer workers or more data")
    accumulation = training.gradientAccumulationSteps
    steps_per_epoch = max(1, math.ceil(batches_per_epoch / accumulation))
    total_steps = total_optimizer_steps(batches_per_epoch * training.batchSize, training)
    total_epochs = math.ceil(total_steps / steps_per_epoch)

    def wrap(module):
        kwargs = {"find_unused_parameters": config.strategy.type == "gradualUnfreezing"}
        return ray.train.torch.prepare_model(module, parallel_strategy_kwargs=kwargs if world_size > 1 else None)

    core = controller.model
    core.to(device)

    def make_optimizer():
        return build_optimizer(core, training)

    # ------------------------------------------------------------ resume
    step, epoch, batch_in_epoch = 0, 0, 0
    resumed_from: Optional[int] = None
    history: list[dict[str, Any]] = []
    stopper = EarlyStopper(training.earlyStopping) if training.earlyStopping else None
    resume_state = None
    # Totals over the whole run, carried across resumes.
    train_seconds = 0.0
    total_samples = 0
    restored_from: Optional[dict[str, Any]] = None
    # The run's own checkpoint first (a restarted worker group); else the one the run
    # was started from (Train V2 has no resume_from_checkpoint: it travels in the config).
    checkpoint = ray.train.get_checkpoint() or loop_config.get("start_from")
    if checkpoint is not None:
        with checkpoint.as_directory() as directory:
            model_state, resume_state, meta = read_checkpoint(directory, device)
            restored_from = meta.get("restored_from")
            if meta.get("trial") not in (None, trial_id):
                # Another trial's weights (a PBT exploit): record where they came from.
                restored_from = lineage(directory, meta)
        core.load_state_dict(model_state)
        del model_state
        step, epoch, batch_in_epoch = meta["step"], meta["epoch"], meta["batch_in_epoch"]
        resumed_from = step
        history = meta.get("history", [])
        train_seconds = float(meta.get("train_runtime_seconds", 0.0))
        total_samples = int(meta.get("train_samples", 0))
        if meta.get("strategy") is not None:
            # The stage the saved optimizer state belongs to; the schedule's stage
            # for this position is applied once that state is loaded.
            controller.load_state_dict(meta["strategy"])
        else:
            controller.restore(epoch=epoch, step=step)
        if stopper is not None and meta.get("early_stopping"):
            stopper.load_state_dict(meta["early_stopping"])
        if rank == 0:
            # print, not only log: Ray forwards worker stdout to the driver's log.
            print(f"finetune: resumed from checkpoint at step {step} (epoch {epoch}, batch {batch_in_epoch})",
                  flush=True)
        log.info("resumed from checkpoint at step %d (epoch %d, batch %d) on rank %d", step, epoch,
                 batch_in_epoch, rank)

    if resume_state is None:
        optimizer = make_optimizer()
        scheduler = build_scheduler(optimizer, training, total_steps)
    else:
        optimizer, scheduler = restore_optimizer(core, training, total_steps, resume_state["optimizer"],
                                                 resume_state["scheduler"])
        # A checkpoint on an epoch's last batch lies before that epoch's unfreezing.
        if controller.restore(epoch=epoch, step=step):
            optimizer, scheduler = rebuild_optimizer(optimizer, scheduler, core, training, total_steps)
        if scaler is not None and resume_state.get("scaler"):
            scaler.load_state_dict(resume_state["scaler"])
        set_rng_state(resume_state["rng"][rank] if rank < len(resume_state["rng"]) else resume_state["rng"][0])
    model = wrap(core)
    controller.trainable_changed = False

    metrics_sink = WorkerMetrics(job.name, trial_id, task.eval_metrics) if rank == 0 else None
    metric_name, metric_mode = selection_metric(config)
    eval_every = training.evaluation
    ckpt_every = training.checkpoint

    # Running totals between two reports.
    window = {"loss_sum": 0.0, "loss_count": 0, "samples": 0, "tokens": 0, "started": time.perf_counter(),
              "steps": 0, "eval_seconds": 0.0}
    last_eval: dict[str, float] = {}
    stop_early = False

    def run_eval() -> dict[str, float]:
        started = time.perf_counter()
        loader = DataLoader(validation_set, batch_size=max(training.batchSize, 32), collate_fn=collate)
        # The unwrapped module: evaluation needs no DDP gradient hooks or buffer syncs.
        scores = evaluate(core, loader, device=device, reduce=reducer, task=task, label_names=label_names)
        window["eval_seconds"] += time.perf_counter() - started
        return scores

    def gather_rng() -> list[Any]:
        return reducer.gather_objects(rng_state())

    def report(with_checkpoint: bool, final: bool = False) -> None:
        nonlocal train_seconds, total_samples
        # Training time only: evaluation is reported by its own clock.
        elapsed = time.perf_counter() - window["started"] - window["eval_seconds"]
        loss_sum, loss_count, samples, tokens = reducer.sum_floats(
            window["loss_sum"], window["loss_count"], window["samples"], window["tokens"])
        train_seconds += elapsed
        total_samples += int(samples)
        values: dict[str, Any] = {
            "step": step, "total_steps": total_steps, "epoch": round(step / steps_per_epoch, 4),
            "learning_rate": float(scheduler.get_last_lr()[0]),
            "samples_per_second": samples / elapsed if elapsed > 0 else 0.0,
            "tokens_per_second": tokens / elapsed if elapsed > 0 else 0.0,
            "train_samples": total_samples, "train_runtime_seconds": train_seconds,
            "world_size": world_size, "final": bool(final), "early_stopped": bool(stop_early),
        }
        if loss_count:
            values["loss"] = loss_sum / loss_count
        if resumed_from is not None:
            values["resumed_from_step"] = resumed_from
        values.update(last_eval)
        history.append({k: values[k] for k in ("step", "loss", *task.eval_metrics) if k in values})
        rng_states = gather_rng() if with_checkpoint else None
        if metrics_sink is not None:
            metrics_sink.record(values, new_steps=int(window["steps"]), new_samples=int(samples))
        values["evaluation_seconds"] = window["eval_seconds"]
        window.update(loss_sum=0.0, loss_count=0, samples=0, tokens=0, steps=0, eval_seconds=0.0)
        if with_checkpoint and rank == 0:
            from ray.train import CheckpointUploadMode

            meta = {"step": step, "epoch": epoch, "batch_in_epoch": batch_in_epoch, "history": history,
                    "strategy": controller.state_dict(), "early_stopping": stopper.state_dict() if stopper else None,
                    "train_samples": total_samples, "train_runtime_seconds": train_seconds,
                    "restored_from": restored_from, "label_names": label_names, "trial": trial_id, "metrics": values}
            directory = write_checkpoint(
                unwrap(model).state_dict(),
                {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                 "scaler": scaler.state_dict() if scaler is not None else None, "rng": rng_states}, meta)
            # Uploaded off the training thread (Ray deletes the folder afterwards): the
            # other ranks go on to their next collective instead of waiting for rank 0.
            ray.train.report(values, checkpoint=ray.train.Checkpoint.from_directory(directory),
                             checkpoint_upload_mode=CheckpointUploadMode.ASYNC)
        else:
            ray.train.report(values, checkpoint=None)
        window["started"] = time.perf_counter()

    def due(interval, unit: str, count: int) -> bool:
        return interval.unit == unit and count > 0 and count % interval.every == 0

    def rewrap_if_needed() -> None:
        nonlocal model, optimizer, scheduler
        if not controller.trainable_changed:
            return
        controller.trainable_changed = False
        # Newly trainable parameters are not in the optimizer or DDP's hooks: rebuild
        # both, carrying the schedule's position and the optimizer's state over.
        optimizer, scheduler = rebuild_optimizer(optimizer, scheduler, core, training, total_steps)
        model = wrap(core)

    done = step >= total_steps
    model.train()
    while not done and epoch < total_epochs:
        order = epoch_order(len(train_set), training.seed + rank, epoch)
        train_set.set_epoch(epoch)
        usable = order[: batches_per_epoch * training.batchSize]
        start = batch_in_epoch * training.batchSize
        loader = DataLoader(train_set, batch_size=training.batchSize, sampler=usable[start:], collate_fn=collate)
        micro = 0
        window_size = accumulation
        for batch in loader:
            batch = {k: v.to(device) for k, v in batch.items()}
            batch_in_epoch += 1
            micro += 1
            if micro == 1:  # an epoch's last window may be short: average over what it has
                window_size = min(accumulation, batches_per_epoch - batch_in_epoch + 1)
            last_of_epoch = batch_in_epoch == batches_per_epoch
            sync = micro % accumulation == 0 or last_of_epoch
            no_sync = model.no_sync() if (world_size > 1 and not sync and hasattr(model, "no_sync")) \
                else contextlib.nullcontext()
            autocast = torch.autocast(device_type=device.type, dtype=autocast_dtype) if autocast_dtype \
                else contextlib.nullcontext()
            with no_sync:
                with autocast:
                    outputs = model(**batch)
                loss = outputs.loss / window_size
                if scaler is not None:
                    scaler.scale(loss).backward()
                else:
                    loss.backward()
            window["loss_sum"] += float(outputs.loss.detach()) * batch["labels"].numel()
            window["loss_count"] += batch["labels"].numel()
            window["samples"] += task.batch_samples(batch)
            if "attention_mask" in batch:
                window["tokens"] += int(batch["attention_mask"].sum())
            if not sync:
                continue
            micro = 0
            if scaler is not None:
                scaler.unscale_(optimizer)
            clip_gradients([p for p in core.parameters() if p.requires_grad], training.maxGradNorm)
            if scaler is not None:
                scaler.step(optimizer)
                scaler.update()
            else:
                optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            window["steps"] += 1
            if controller.on_step_end(step):
                rewrap_if_needed()
            _maybe_inject_fault(step, rank, world_size, fault)
            evaluate_now = due(eval_every, "step", step)
            checkpoint_now = due(ckpt_every, "step", step)
            done = step >= total_steps
            if evaluate_now or checkpoint_now or done:
                if last_of_epoch:
                    epoch, batch_in_epoch = epoch + 1, 0
                last_eval = run_eval()
                if stopper is not None and stopper.update(last_eval):
                    stop_early = True
                    done = True
                report(with_checkpoint=checkpoint_now or done, final=done)
                if last_of_epoch:
                    epoch, batch_in_epoch = epoch - 1, batches_per_epoch
            if done:
                break
        if done:
            break
        # End of a full epoch.
        epoch += 1
        batch_in_epoch = 0
        if controller.on_epoch_end(epoch):
            rewrap_if_needed()
        evaluate_now = due(eval_every, "epoch", epoch)
        checkpoint_now = due(ckpt_every, "epoch", epoch)
        final = epoch >= total_epochs
        if evaluate_now or checkpoint_now or final:
            last_eval = run_eval()
            if stopper is not None and stopper.update(last_eval):
                stop_early = True
            done = final or stop_early
            report(with_checkpoint=checkpoint_now or done, final=done)
    if stop_early and rank == 0:
        log.info("early stopping: %s did not improve for %d evaluations; stopped at step %d",
                 metric_name, training.earlyStopping.patience, step)


__all__ = ["FAULT_AFTER_FILE_ENV", "FAULT_MARKER_ENV", "FAULT_STEP_ENV", "MODEL_STATE", "STATE_JSON", "TRAINER_STATE",
           "epoch_order", "selection_metric", "train_loop_per_worker"]
