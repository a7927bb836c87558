"""Fixtures for the trainer-core tests; the helpers live in core_helpers (a unique
module name, so test files can import them whatever else pytest collects)."""

from core_helpers import *  # noqa: F401,F403
from image_helpers import digits_dir, image_model_dir  # noqa: F401,E402  (image-classification fixtures)
