"""One epoch of training on one worker: this rank's batches in the epoch's seeded
order (continuing mid-epoch after a resume), forward and backward under autocast
and, between optimizer steps, without DDP's gradient sync; then clipping, the
optimizer and schedule step, the strategy's step-end work and the step's (or the
epoch's) evaluation, report and checkpoint.
"""

from __future__ import annotations

import contextlib
from typing import Any

from finetune_trainer.loop.checkpointer import Checkpointer
from finetune_trainer.loop.context import TrainingParts, WorkerContext
from finetune_trainer.loop.report import evaluate_and_report
from finetune_trainer.loop.seeding import epoch_order
from finetune_trainer.loop.state import LoopState


def epoch_batches(order: list[int], batch_size: int, batches: int) -> list[list[int]]:
    """`order` cut into `batches` batches of `batch_size` rows, the last taking every
    row left. Every rank takes the same number of batches (the smallest shard's), and
    a shard one row longer than the others would otherwise leave a row of every epoch
    out: its last batch has that row more instead."""
    cuts = [order[i * batch_size:(i + 1) * batch_size] for i in range(batches - 1)]
    return cuts + [order[(batches - 1) * batch_size:]]


def run_epoch(ctx: WorkerContext, parts: TrainingParts, state: LoopState, checkpointer: Checkpointer) -> bool:
    """Train the rest of epoch `state.epoch`; returns whether the run is done (its
    step budget spent, its last epoch over, or early stopping)."""
    import torch
    from torch.utils.data import DataLoader

    plan = ctx.plan
    training = ctx.config.training
    order = epoch_order(len(ctx.train_set), training.seed, state.epoch, rank=ctx.rank)
    ctx.train_set.set_epoch(state.epoch)
    batches = epoch_batches(order, plan.batch_size, plan.batches_per_epoch)
    # A generator of its own: a DataLoader otherwise draws its base seed from the
    # global RNG, so a run resumed mid-epoch (one loader more) would shift every
    # later dropout mask by one draw.
    loader = DataLoader(ctx.train_set, batch_sampler=batches[state.batch_in_epoch:], collate_fn=ctx.collate,
                        generator=torch.Generator().manual_seed(training.seed))
    micro = 0
    window_size = plan.accumulation
    for batch in loader:
        batch = {k: v.to(ctx.device) for k, v in batch.items()}
        state.batch_in_epoch += 1
        micro += 1
        if micro == 1:  # an epoch's last window may be short: average over what it has
            window_size = min(plan.accumulation, plan.batches_per_epoch - state.batch_in_epoch + 1)
        sync = micro % plan.accumulation == 0 or state.batch_in_epoch == plan.batches_per_epoch
        _forward_backward(ctx, parts, state, batch, window_size, sync)
        if not sync:
            continue
        micro = 0
        _optimizer_step(ctx, parts)
        state.step += 1
        state.window.steps += 1
        if parts.controller.on_step_end(state.step):
            parts.rewrap_if_needed(training, plan.total_steps)
        ctx.hooks.after_step(state.step, rank=ctx.rank, world_size=ctx.world_size)
        if evaluate_and_report(ctx, parts, state, checkpointer, unit="step", count=state.step,
                               end=state.step >= plan.total_steps):
            return True
    # End of a full epoch.
    state.epoch += 1
    state.batch_in_epoch = 0
    if parts.controller.on_epoch_end(state.epoch):
        parts.rewrap_if_needed(training, plan.total_steps)
    return evaluate_and_report(ctx, parts, state, checkpointer, unit="epoch", count=state.epoch,
                               end=state.epoch >= plan.total_epochs)


def _forward_backward(ctx: WorkerContext, parts: TrainingParts, state: LoopState, batch: dict[str, Any],
                      window_size: int, sync: bool) -> None:
    """Forward and backward of one batch, its loss averaged over the accumulation
    window; DDP syncs gradients only on the window's last batch."""
    import torch

    model = parts.model
    no_sync = model.no_sync() if (ctx.world_size > 1 and not sync and hasattr(model, "no_sync")) \
        else contextlib.nullcontext()
    autocast = torch.autocast(device_type=ctx.device.type, dtype=ctx.autocast_dtype) if ctx.autocast_dtype \
        else contextlib.nullcontext()
    with no_sync:
        with autocast:
            outputs = model(**batch)
        loss = outputs.loss / window_size
        if parts.scaler is not None:
            parts.scaler.scale(loss).backward()
        else:
            loss.backward()
    state.window.add_batch(float(outputs.loss.detach()), batch, ctx.task.batch_samples(batch),
                           ctx.task.batch_tokens(batch))


def _optimizer_step(ctx: WorkerContext, parts: TrainingParts) -> None:
    """Clip, step the optimizer (through the gradient scaler for fp16) and the
    schedule, and clear the gradients."""
    from finetune_trainer.optim import clip_gradients

    optimizer, scaler = parts.optimizer, parts.scaler
    if scaler is not None:
        scaler.unscale_(optimizer)
    clip_gradients([p for p in parts.core.parameters() if p.requires_grad], ctx.config.training.max_grad_norm)
    if scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    parts.scheduler.step()
    optimizer.zero_grad(set_to_none=True)


__all__ = ["epoch_batches", "epoch_order", "run_epoch"]
