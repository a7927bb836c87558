"""The strategy's controller: the model to train and, for gradual unfreezing, the
schedule that changes its trainable set during training."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Optional

from finetune_trainer.config import StrategySpec
from finetune_trainer.strategies.layers import ParameterGroups, set_trainable, trainable_names

log = logging.getLogger(__name__)


@dataclass
class StrategyController:
    """The model to train (for LoRA the peft wrapper) and the strategy's schedule.

    Use `controller.model` for training: with LoRA it is not the model passed in."""

    model: Any
    spec: StrategySpec
    groups: Optional[ParameterGroups] = None
    trainable_changed: bool = False
    history: list[dict[str, Any]] = field(default_factory=list)
    unfrozen_layers: int = 0
    embeddings_unfrozen: bool = False

    @property
    def num_layers(self) -> int:
        return len(self.groups.layers) if self.groups else 0

    # -------------------------------------------------------- gradual unfreezing

    def _gradual(self):
        return self.spec.gradual_unfreezing if self.spec.type == "gradualUnfreezing" else None

    def _set_stage(self, layers: int, embeddings: bool) -> set[str]:
        """Make the head plus the top `layers` layers (and the embeddings) trainable."""
        assert self.groups is not None
        names = set(self.groups.head)
        if layers:
            names.update(self.groups.other)
        for index in range(self.num_layers - layers, self.num_layers):
            names.update(self.groups.layers[index])
        if embeddings:
            names.update(self.groups.embeddings)
        set_trainable(self.model, names)
        self.unfrozen_layers, self.embeddings_unfrozen = layers, embeddings
        return names

    def _apply_gradual(self, units: int, unit: str) -> bool:
        settings = self._gradual()
        assert settings is not None and self.groups is not None
        stages = units // settings.every
        layers = min(self.num_layers, stages)
        embeddings = settings.unfreeze_embeddings and stages > self.num_layers
        if layers == self.unfrozen_layers and embeddings == self.embeddings_unfrozen:
            return False
        names = self._set_stage(layers, embeddings)
        self.trainable_changed = True
        lowest = self.num_layers - layers
        text = (
            f"layers {lowest}..{self.num_layers - 1} now trainable"
            if layers
            else "only the head is trainable"
        )
        if embeddings:
            text += ", embeddings too"
        log.info("gradual unfreezing: %s (after %s %d)", text, unit, units)
        self.history.append(
            {
                "unit": unit,
                "at": units,
                "layers": [lowest, self.num_layers - 1] if layers else [],
                "embeddings": embeddings,
                "trainable": len(names),
            }
        )
        return True

    def on_epoch_end(self, epoch: int) -> bool:
        """Call after each epoch with the number of epochs completed (1-based).
        Returns True when the trainable set changed."""
        settings = self._gradual()
        return bool(settings and settings.unit == "epoch" and self._apply_gradual(epoch, "epoch"))

    def on_step_end(self, step: int) -> bool:
        """Call after each optimizer step with the number of steps completed (1-based).
        Returns True when the trainable set changed."""
        settings = self._gradual()
        return bool(settings and settings.unit == "step" and self._apply_gradual(step, "step"))

    def restore(self, *, epoch: int = 0, step: int = 0) -> bool:
        """Re-apply the schedule when resuming from a checkpoint taken at epoch/step.
        Returns True when the trainable set changed."""
        settings = self._gradual()
        return bool(settings and self._apply_gradual(epoch if settings.unit == "epoch" else step, settings.unit))

    def state_dict(self) -> dict[str, Any]:
        """The unfreezing stage, saved with a checkpoint: the optimizer state saved
        beside it covers exactly the parameters trainable at this stage."""
        return {"unfrozen_layers": self.unfrozen_layers, "embeddings_unfrozen": self.embeddings_unfrozen}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Return to a saved unfreezing stage (before loading the optimizer state saved with it)."""
        if self._gradual() is None:
            return
        layers, embeddings = int(state["unfrozen_layers"]), bool(state["embeddings_unfrozen"])
        if (layers, embeddings) != (self.unfrozen_layers, self.embeddings_unfrozen):
            self._set_stage(layers, embeddings)
            self.trainable_changed = True

    def trainable_parameters(self) -> list[str]:
        return sorted(trainable_names(self.model))


__all__ = ["StrategyController"]
