"""Checks cheap enough to run on the user's machine before Ray starts.

A missing data file, a misnamed column or an uncached offline hub model would
otherwise surface only once Ray and its workers are up (some 20 seconds later). This
module runs the same checks the workers and the driver run, through the very same
functions, so the message is the one the job would have failed with. Only what is
local is looked at: s3:// and hf:// sources are left to the job.
"""

from __future__ import annotations

from finetune_trainer import storage
from finetune_trainer.config import JobConfig, TrainingConfig
from finetune_trainer.modeling import downloads_allowed, resolve_model_source
from finetune_trainer.splitting import no_data_rows
from finetune_trainer.staging import is_hub_id, require_cached
from finetune_trainer.tasks import get_task


def _is_local(source: str) -> bool:
    return not storage.is_s3(source) and not source.startswith("hf://")


def check_model(config: TrainingConfig) -> None:
    """A local folder must hold a model; an offline hub id must be in the local cache."""
    model = config.model
    if storage.is_s3(model.source):
        return
    if is_hub_id(model.source):
        if not (model.allow_download or downloads_allowed()):
            require_cached(model.source, model.revision)
        return
    resolve_model_source(model)


def check_data(config: TrainingConfig) -> None:
    """Every local data source exists, has a data row, and its first file has the
    configured columns (reading its header and first row only)."""
    spec = config.data
    task = get_task(config)
    for field_name, source in (("data.train", spec.train), ("data.validation", spec.validation),
                               ("data.test", spec.test)):
        if source is None or not _is_local(source):
            continue
        rows = task.read_rows(config, source, field_name)
        try:
            if next(rows, None) is None:
                raise no_data_rows(field_name, source)
        finally:
            rows.close()


def check_locally(job: JobConfig) -> None:
    """Raise the job's own TrainerError (ModelError, DataError) for what can be told now."""
    check_model(job.config)
    check_data(job.config)


__all__ = ["check_data", "check_locally", "check_model"]
