"""Evaluating and reporting: at the end of every optimizer step and every epoch the
loop asks `evaluate_and_report` whether an evaluation or a checkpoint is due (or the
run ends); if so it scores the validation split across ranks, updates early
stopping and reports the window's metrics to Ray Train, with a checkpoint when one
is due or the run is done.
"""

from __future__ import annotations

import time
from typing import Any

from finetune_trainer.loop.checkpointer import Checkpointer
from finetune_trainer.loop.context import TrainingParts, WorkerContext
from finetune_trainer.loop.state import LoopState, due



def evaluate(ctx: WorkerContext, parts: TrainingParts, state: LoopState) -> dict[str, float]:
    """Scores of the validation split over every rank's shard; the time it took counts
    as evaluation time, not training time."""
    import torch
    from torch.utils.data import DataLoader

    from finetune_trainer.evaluation import evaluate as score

    started = time.perf_counter()
    loader = DataLoader(ctx.validation_set, batch_size=max(ctx.config.training.batch_size, 32),
                        collate_fn=ctx.collate, generator=torch.Generator().manual_seed(ctx.config.training.seed))
    # The unwrapped module: evaluation needs no DDP gradient hooks or buffer syncs.
    # (Under FSDP it is the sharded module itself, whose forwards are collectives.)
    end = ctx.parallel.evaluation_end(parts.core, len(loader), ctx.reducer, lambda: _throwaway(ctx, parts))
    scores = score(parts.core, loader, device=ctx.device, reduce=ctx.reducer, task=ctx.task,
                   label_names=ctx.label_names, before_reduce=end)
    state.window.eval_seconds += time.perf_counter() - started
    return scores


def _throwaway(ctx: WorkerContext, parts: TrainingParts) -> None:
    """One forward whose result is dropped, on this rank's first training example (a
    rank may have no validation rows at all)."""
    from finetune_trainer.loop.parallel import throwaway_forward

    batch = {k: v.to(ctx.device) for k, v in ctx.collate([ctx.train_set[0]]).items()}
    throwaway_forward(parts.core, batch)()


def evaluate_and_report(ctx: WorkerContext, parts: TrainingParts, state: LoopState, checkpointer: Checkpointer,
                        *, unit: str, count: int, end: bool) -> bool:
    """At the end of step or epoch `count` (`unit` "step" or "epoch"): when an
    evaluation or a checkpoint is due there, or the run ends (`end`), evaluate, update
    early stopping and report. Returns whether the run is done (its end, or early
    stopping)."""
    training = ctx.config.training
    checkpoint_now = due(training.checkpoint, unit, count)
    if not (due(training.evaluation, unit, count) or checkpoint_now or end):
        return False
    state.last_eval = evaluate(ctx, parts, state)
    if ctx.stopper is not None and ctx.stopper.update(state.last_eval):
        state.stop_early = True
    done = end or state.stop_early
    report(ctx, parts, state, checkpointer, with_checkpoint=checkpoint_now or done, final=done)
    return done


def report(ctx: WorkerContext, parts: TrainingParts, state: LoopState, checkpointer: Checkpointer, *,
           with_checkpoint: bool, final: bool) -> None:
    """Report the window's metrics (summed over ranks) and the last evaluation to Ray
    Train, with a checkpoint when asked, and start a new window."""
    window = state.window
    values, samples = _metrics(ctx, parts, state, final)
    state.history.append({k: values[k] for k in ("step", "loss", *ctx.task.eval_metrics) if k in values})
    if ctx.metrics_sink is not None:
        ctx.metrics_sink.record(values, new_steps=int(window.steps), new_samples=int(samples))
    values["evaluation_seconds"] = window.eval_seconds
    window.clear()
    checkpointer.report(values, parts, state, with_checkpoint=with_checkpoint)
    window.started = time.perf_counter()


def _metrics(ctx: WorkerContext, parts: TrainingParts, state: LoopState, final: bool) -> tuple[dict[str, Any], float]:
    """(the report's values, the window's samples over all ranks); adds the window to
    the run's totals."""
    window, plan = state.window, ctx.plan
    # Training time only: evaluation is reported by its own clock.
    elapsed = time.perf_counter() - window.started - window.eval_seconds
    loss_sum, loss_count, samples, tokens = ctx.reducer.sum_floats(
        window.loss_sum, window.loss_count, window.samples, window.tokens)
    state.train_seconds += elapsed
    state.total_samples += int(samples)
    values: dict[str, Any] = {
        "step": state.step, "total_steps": plan.total_steps, "epoch": round(state.step / plan.steps_per_epoch, 4),
        "learning_rate": float(parts.scheduler.get_last_lr()[0]),
        "samples_per_second": samples / elapsed if elapsed > 0 else 0.0,
        "tokens_per_second": tokens / elapsed if elapsed > 0 else 0.0,
        "train_samples": state.total_samples, "train_runtime_seconds": state.train_seconds,
        "world_size": ctx.world_size, "final": bool(final), "early_stopped": bool(state.stop_early),
        "distributed": ctx.parallel.name,
    }
    values.update(_memory(ctx, parts))
    if loss_count:
        values["loss"] = loss_sum / loss_count
    if state.resumed_from is not None:
        values["resumed_from_step"] = state.resumed_from
    values.update(state.last_eval)
    return values, samples


def _memory(ctx: WorkerContext, parts: TrainingParts) -> dict[str, int]:
    """The largest worker's parameter bytes and peak memory, and the whole model's
    parameter bytes: what sharding saves, beside what it cost."""
    from finetune_trainer.loop.parallel import peak_memory_bytes

    local, whole = ctx.parallel.parameter_bytes(parts.core)
    worker_parameters, peak = ctx.reducer.max_floats(local, peak_memory_bytes(ctx.device))
    return {"worker_parameter_bytes": int(worker_parameters), "model_parameter_bytes": int(whole),
            "worker_peak_memory_bytes": int(peak)}


__all__ = ["evaluate", "evaluate_and_report", "report"]
