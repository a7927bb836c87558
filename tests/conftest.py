"""Session-wide test set-up: every Ray the tests start is embedded, so it stays on
loopback (set before any test module imports ray)."""

from finetune_trainer.local_ray import use_loopback_for_embedded_ray

use_loopback_for_embedded_ray()
