"""Fetch a hub-id model once, on the driver, before any worker starts.

Workers run offline: were each to download a hub model itself, N workers would hit the
hub N times (and each pod needs egress). Instead the driver downloads it once into the
job's own storage, `<output uri>/<job>/base-model/`, and hands the workers a JobConfig
whose `model.source` points there; a retried or resumed job finds the copy and
downloads nothing. Downloads are allowed by `model.allowDownload` or by
FINETUNE_ALLOW_DOWNLOADS=1 (which the operator sets on the head pod when its
`allow_model_downloads` setting is on). Without either, a hub id must already be in the
image's model cache, and the driver says so before the cluster's workers start.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path
from typing import Optional

from finetune_trainer import storage
from finetune_trainer.config import JobConfig
from finetune_trainer.errors import ModelError, StorageError
from finetune_trainer.modeling import ALLOW_DOWNLOADS_ENV, downloads_allowed

log = logging.getLogger(__name__)

STAGED_DIR = "base-model"
# Weights for other frameworks and runtimes, which transformers' PyTorch loader never reads.
IGNORED_FILES = ["*.onnx", "onnx/*", "*.h5", "*.msgpack", "*.tflite", "*.ot", "openvino/*", "*.gguf",
                 "coreml/*"]


def is_hub_id(source: str) -> bool:
    """Whether `source` names a hub repository rather than a folder (as the model
    loader decides: an existing local path, a path-like string or s3:// is a folder)."""
    if storage.is_s3(source) or source.startswith(("file://", "/", "./", "../", "~")):
        return False
    return not Path(source).expanduser().exists()


def staged_uri(job: JobConfig) -> str:
    """Where the driver keeps the job's copy of a hub model."""
    root = storage.join(job.config.output.uri, job.name)
    if not storage.is_s3(root):
        # Workers may run in another directory: give them an absolute path.
        root = str(Path(root).expanduser().resolve())
    return storage.join(root, STAGED_DIR)


def _snapshot(repo_id: str, revision: Optional[str], target: Optional[Path]) -> None:
    """Download into `target`; with no target, only look the repository up in the
    local cache (raises when it is not there)."""
    from huggingface_hub import snapshot_download

    snapshot_download(repo_id, revision=revision, local_dir=str(target) if target else None,
                      local_files_only=target is None, ignore_patterns=IGNORED_FILES)


def stage_model(job: JobConfig) -> JobConfig:
    """The JobConfig the workers get: `model.source` pointing at the job's staged copy
    of a hub model, downloaded here if need be; unchanged for folders and s3://."""
    model = job.config.model
    if not is_hub_id(model.source):
        return job
    if not (model.allow_download or downloads_allowed()):
        require_cached(model.source, model.revision)
        return job
    target = staged_uri(job)
    output = job.config.output
    if not storage.is_complete(target, output):
        log.info("downloading %s from the Hugging Face hub once, to %s", model.source, target)
        with tempfile.TemporaryDirectory(prefix="finetune-hub-") as scratch:
            try:
                _snapshot(model.source, model.revision, Path(scratch))
            except Exception as err:  # hub errors are many (HTTP, auth, not found)
                raise ModelError(f"model.source: cannot download {model.source!r} from the Hugging Face hub: "
                                 f"{type(err).__name__}: {err}") from err
            shutil.rmtree(Path(scratch) / ".cache", ignore_errors=True)  # the hub client's own records
            if not (Path(scratch) / "config.json").is_file():
                raise ModelError(f"model.source: the hub repository {model.source!r} holds no config.json; "
                                 "it is not a transformers model")
            try:
                storage.upload_dir(scratch, target, output)
            except StorageError as err:
                raise StorageError(f"cannot keep the downloaded model at {target}: {err}") from err
    else:
        log.info("using the copy of %s staged at %s", model.source, target)
    staged = model.model_copy(update={"source": target, "revision": None})
    config = job.config.model_copy(update={"model": staged})
    return job.model_copy(update={"config": config})


def require_cached(source: str, revision: Optional[str]) -> None:
    """A clear error, before any worker starts, when an offline hub id is not cached."""
    try:
        _snapshot(source, revision, None)
    except Exception:
        raise ModelError(
            f"model.source: {source!r} is a Hugging Face hub id that is not in this image's model cache, "
            f"and downloads are off; set model.allowDownload: true (or {ALLOW_DOWNLOADS_ENV}=1, the "
            "operator's allow_model_downloads setting) to download it once into the job's storage, or point "
            "model.source at a local or s3:// save_pretrained folder"
        ) from None


__all__ = ["STAGED_DIR", "is_hub_id", "require_cached", "stage_model", "staged_uri"]
