"""Errors the trainer raises for bad input or an unreachable store.

Each message is complete on its own (which field, file, row or URI; what is allowed),
so the driver can print `str(err)` to the user and the operator can copy it into the
FineTuneJob status without a traceback.
"""

from __future__ import annotations


class TrainerError(Exception):
    """A problem the user can fix: bad configuration, data, model or storage."""


class DataError(TrainerError):
    """The training, validation or test data cannot be used as given."""


class ModelError(TrainerError):
    """The pre-trained model cannot be found or loaded."""


class StorageError(TrainerError):
    """Reading from or writing to the output or data store failed."""


__all__ = ["TrainerError", "DataError", "ModelError", "StorageError"]
