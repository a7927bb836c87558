"""Saving and restoring the loop's checkpoints (their layout is in
`finetune_trainer.checkpointing`).

`Checkpointer.save` hands a checkpoint to Ray Train with the report it belongs to;
`restore` puts a run back where a checkpoint left it: weights, strategy stage, early
stopping, position and totals, then optimizer, schedule, gradient scaler and this
rank's random-number states.
"""

from __future__ import annotations

import logging
from typing import Any, Optional

from finetune_trainer.checkpointing import lineage, read_checkpoint, rng_state, set_rng_state, write_checkpoint
from finetune_trainer.errors import TrainerError
from finetune_trainer.loop.context import TrainingParts, WorkerContext
from finetune_trainer.loop.state import LoopState

log = logging.getLogger("finetune_trainer.train_loop")


class Checkpointer:
    """Writes this worker group's checkpoints and reads one back."""

    def __init__(self, ctx: WorkerContext) -> None:
        self.ctx = ctx

    # ------------------------------------------------------------ save

    def report(self, values: dict[str, Any], parts: TrainingParts, state: LoopState, *, with_checkpoint: bool) -> None:
        """`ray.train.report(values)`, with a checkpoint of the run when asked. Every
        rank calls it: the random-number states are gathered from all ranks, and rank 0
        writes the checkpoint."""
        import ray.train

        ctx = self.ctx
        rng_states = ctx.reducer.gather_objects(rng_state()) if with_checkpoint else None
        # Under FSDP gathering the states is a collective: every rank takes part.
        model_state, optimizer_state = ctx.parallel.full_states(parts.model, parts.core, parts.optimizer) \
            if with_checkpoint else (None, None)
        if not with_checkpoint or ctx.rank != 0:
            ray.train.report(values, checkpoint=None)
            return
        from ray.train import CheckpointUploadMode

        directory = write_checkpoint(model_state, self._trainer_state(parts, optimizer_state, rng_states),
                                     self._meta(values, parts, state))
        # Uploaded off the training thread (Ray deletes the folder afterwards): the
        # other ranks go on to their next collective instead of waiting for rank 0.
        ray.train.report(values, checkpoint=ray.train.Checkpoint.from_directory(directory),
                         checkpoint_upload_mode=CheckpointUploadMode.ASYNC)

    def _trainer_state(self, parts: TrainingParts, optimizer_state: dict[str, Any],
                       rng_states: list[Any]) -> dict[str, Any]:
        # `distributed` says how the optimizer state is keyed: by position (ddp) or by
        # parameter name (fsdp, gathered from the shards).
        return {"optimizer": optimizer_state, "scheduler": parts.scheduler.state_dict(),
                "scaler": parts.scaler.state_dict() if parts.scaler is not None else None, "rng": rng_states,
                "distributed": self.ctx.parallel.name}

    def _meta(self, values: dict[str, Any], parts: TrainingParts, state: LoopState) -> dict[str, Any]:
        ctx = self.ctx
        epoch, batch_in_epoch = state.position(ctx.plan)
        return {"step": state.step, "epoch": epoch, "batch_in_epoch": batch_in_epoch, "history": state.history,
                "strategy": parts.controller.state_dict(),
                "early_stopping": ctx.stopper.state_dict() if ctx.stopper else None,
                "train_samples": state.total_samples, "train_runtime_seconds": state.train_seconds,
                "restored_from": state.restored_from, "label_names": ctx.label_names, "trial": ctx.trial_id,
                "data_report": ctx.data_report, "hyperparameters": ctx.overrides or {}, "metrics": values}

    # ------------------------------------------------------------ restore

    def restore_progress(self, checkpoint: Any, core: Any, controller: Any, state: LoopState) -> Optional[dict]:
        """Load `checkpoint` (None: a fresh start) into the model, the strategy, the early
        stopper and `state`; returns the trainer state (optimizer, schedule, scaler, RNG)
        for `restore_training`, or None without a checkpoint."""
        ctx = self.ctx
        if checkpoint is None:
            return None
        with checkpoint.as_directory() as directory:
            # A model about to be sharded loads on the host; sharding moves it.
            target = "cpu" if ctx.parallel.shards_in_place else ctx.device
            model_state, trainer_state, meta = read_checkpoint(directory, target)
            state.restored_from = meta.get("restored_from")
            if meta.get("trial") not in (None, ctx.trial_id):
                # Another trial's weights (a PBT exploit): record where they came from.
                state.restored_from = lineage(directory, meta)
        core.load_state_dict(model_state)
        del model_state
        state.step, state.epoch, state.batch_in_epoch = meta["step"], meta["epoch"], meta["batch_in_epoch"]
        state.resumed_from = state.step
        state.history = meta.get("history", [])
        state.train_seconds = float(meta.get("train_runtime_seconds", 0.0))
        state.total_samples = int(meta.get("train_samples", 0))
        if meta.get("strategy") is not None:
            # The stage the saved optimizer state belongs to; the schedule's stage
            # for this position is applied once that state is loaded.
            controller.load_state_dict(meta["strategy"])
        else:
            controller.restore(epoch=state.epoch, step=state.step)
        if ctx.stopper is not None and meta.get("early_stopping"):
            ctx.stopper.load_state_dict(meta["early_stopping"])
        if ctx.rank == 0:
            # print, not only log: Ray forwards worker stdout to the driver's log.
            print(f"finetune: resumed from checkpoint at step {state.step} (epoch {state.epoch}, "
                  f"batch {state.batch_in_epoch})", flush=True)
        log.info("resumed from checkpoint at step %d (epoch %d, batch %d) on rank %d", state.step, state.epoch,
                 state.batch_in_epoch, ctx.rank)
        return trainer_state

    def restore_training(self, trainer_state: Optional[dict], core: Any, controller: Any, scaler: Any,
                         state: LoopState) -> tuple[Any, Any]:
        """(optimizer, scheduler): new ones for a fresh start; else restored from
        `trainer_state`, with the gradient scaler and this rank's random-number states."""
        from finetune_trainer.optim import build_optimizer, build_scheduler, rebuild_optimizer, restore_optimizer

        training, total_steps = self.ctx.config.training, self.ctx.plan.total_steps
        parallel = self.ctx.parallel
        if trainer_state is None:
            optimizer = build_optimizer(core, training)
            return optimizer, build_scheduler(optimizer, training, total_steps)
        saved = trainer_state.get("distributed", "ddp")
        if saved != parallel.name:
            raise TrainerError(
                f"resources.distributed: the checkpoint to resume from was written under {saved} and this run "
                f"uses {parallel.name}; resume with resources.distributed {saved}, or start a new job"
            )
        optimizer, scheduler = restore_optimizer(
            core, training, total_steps, trainer_state["optimizer"], trainer_state["scheduler"],
            load=lambda optimizer, saved_state: parallel.load_optimizer_state(core, optimizer, saved_state))
        # A checkpoint on an epoch's last batch lies before that epoch's unfreezing.
        if controller.restore(epoch=state.epoch, step=state.step):
            optimizer, scheduler = rebuild_optimizer(optimizer, scheduler, core, training, total_steps)
        if scaler is not None and trainer_state.get("scaler"):
            scaler.load_state_dict(trainer_state["scaler"])
        rng = trainer_state["rng"]
        set_rng_state(rng[self.ctx.rank] if self.ctx.rank < len(rng) else rng[0])
        return optimizer, scheduler


__all__ = ["Checkpointer"]
