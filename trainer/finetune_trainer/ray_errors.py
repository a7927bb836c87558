"""Reading Ray's wrapped errors: a failed run raises Ray Train or Tune errors that wrap
the workers' and controller's failures, often as text. `explain` turns them into one
paragraph a user can act on: our own error's message when one of ours is inside,
else what the output store or Ray said.
"""

from __future__ import annotations

from finetune_trainer.errors import TrainerError

_STORAGE_WORDS = ("AWS Error", "curlCode", "Could not connect", "Connection refused", "s3://", "StorageError",
                  "NETWORK_CONNECTION")


def _failure_chain(err: BaseException) -> list[BaseException]:
    """The error, its causes, and the worker/controller failures Ray wraps inside."""
    chain: list[BaseException] = []
    pending: list[BaseException] = [err]
    while pending and len(chain) < 20:
        current = pending.pop(0)
        if current is None or any(current is seen for seen in chain):
            continue
        chain.append(current)
        pending.extend(getattr(current, "worker_failures", {}).values())
        for attribute in ("controller_failure", "cause", "__cause__", "__context__"):
            inner = getattr(current, attribute, None)
            if isinstance(inner, BaseException):
                pending.append(inner)
    return chain


def explain(err: BaseException) -> str:
    """A one-paragraph reason for a failed run, from Ray's wrapped errors."""
    chain = _failure_chain(err)
    for candidate in chain:
        if isinstance(candidate, TrainerError):
            return str(candidate)
        if type(candidate).__name__ == "WorkerGroupStartupTimeoutError":
            return ("training failed: the Ray Train workers could not be placed: no node offers what each worker "
                    "asks for (CPUs, GPUs, Ray accelerator type; resources.rayAcceleratorType must be a type the "
                    f"GPU nodes have). Ray said: {str(candidate).splitlines()[0][:300]}")
    lines = [line.strip() for e in chain for line in str(e).splitlines() if line.strip()]
    for line in lines:  # a trainer error raised on a worker arrives as text
        for name in ("DataError", "ModelError", "StorageError", "TrainerError"):
            marker = f"finetune_trainer.errors.{name}: "
            if marker in line:
                return line.split(marker, 1)[1]
    storage_lines = [line for line in lines if any(word in line for word in _STORAGE_WORDS)]
    if storage_lines:
        return f"training failed because the output store is unreachable: {storage_lines[-1][:600]}"
    error_lines = [line for line in lines if "Error" in line and not line.startswith(("File ", "Traceback"))]
    reason = error_lines[-1] if error_lines else (lines[0] if lines else type(err).__name__)
    return f"training failed: {reason[:600]}"



__all__ = ["explain"]
