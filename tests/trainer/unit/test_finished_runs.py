"""A finished run is the job's result only if the same training configuration wrote it
(runner.load_finished): a FineTuneJob deleted and created again under its old name with
another spec, or a local manifest edited and run again, must not get the old model."""

from __future__ import annotations

import json

import pytest

from tests.support.jobs import job_config


def _finished(tmp_path, job, **metrics):
    from finetune_trainer import storage
    from finetune_trainer.ray_train import job_uri

    work = tmp_path / "work"
    (work / "model").mkdir(parents=True)
    (work / "metrics.json").write_text(json.dumps({"eval_loss": 0.5, **metrics}))
    storage.upload_dir(work, job_uri(job), job.config.output)


def test_a_finished_run_of_the_same_configuration_is_returned(tmp_path):
    from finetune_trainer.finishing import CONFIG_FINGERPRINT, config_fingerprint
    from finetune_trainer.runner import load_finished

    job = job_config(output={"uri": str(tmp_path / "out")})
    _finished(tmp_path, job, **{CONFIG_FINGERPRINT: config_fingerprint(job.config)})
    result = load_finished(job)
    assert result is not None and result.already_finished and result.metrics["eval_loss"] == 0.5
    # Where the output lives is not part of the configuration that trained the model.
    moved = job.model_copy(update={"config": job.config.model_copy(
        update={"output": job.config.output.model_copy(update={"keep_checkpoints": 5})})})
    assert config_fingerprint(moved.config) == config_fingerprint(job.config)


def test_a_finished_run_of_another_configuration_is_refused_not_returned(tmp_path):
    from finetune_trainer.config import with_overrides
    from finetune_trainer.errors import StorageError
    from finetune_trainer.finishing import CONFIG_FINGERPRINT, config_fingerprint
    from finetune_trainer.runner import load_finished

    job = job_config(output={"uri": str(tmp_path / "out")})
    _finished(tmp_path, job, **{CONFIG_FINGERPRINT: config_fingerprint(job.config)})
    edited = job.model_copy(update={"config": with_overrides(job.config, {"training.epochs": 7})})
    with pytest.raises(StorageError, match=r"output.uri: .* already holds a finished run named .* different "
                                           r"configuration; delete that folder"):
        load_finished(edited)


def test_a_run_recorded_before_fingerprints_is_still_returned(tmp_path):
    from finetune_trainer.runner import load_finished

    job = job_config(output={"uri": str(tmp_path / "out")})
    _finished(tmp_path, job)
    assert load_finished(job) is not None
