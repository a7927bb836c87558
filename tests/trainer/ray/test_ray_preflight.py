"""`finetune run` tells what it can tell locally before Ray starts: a data file that
is not there, a misnamed column, an offline hub id that is not cached. Each fails in
well under a second, with the job's own message, and Ray is never started."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from finetune_operator.cli import main

from tests.trainer.ray.test_ray_cli import _manifest


@pytest.fixture
def no_ray(monkeypatch):
    import ray

    if ray.is_initialized():
        ray.shutdown()
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    starts = []

    def refuse(*args, **kwargs):  # the CLI shuts a Ray it started down again: catch the start itself
        starts.append(kwargs)
        raise RuntimeError("this test does not let Ray start")

    monkeypatch.setattr(ray, "init", refuse)
    yield ray
    assert not starts, "Ray was started before the local checks failed"
    assert not ray.is_initialized()


def _run(manifest: Path, *overrides: str) -> int:
    argv = ["run", str(manifest), "--plain"]
    for text in overrides:
        argv += ["--set", text]
    started = time.monotonic()
    code = main(argv)
    assert time.monotonic() - started < 10
    return code


def test_missing_data_file_fails_before_ray(no_ray, tiny_model, intent_data, tmp_path, capsys):
    manifest = _manifest(tmp_path / "job.yaml", tiny_model, intent_data)
    missing = tmp_path / "nowhere" / "test.csv"
    assert _run(manifest, f"data.test={missing}") == 1
    err = capsys.readouterr().err
    assert not no_ray.is_initialized()
    assert f"data.test: {missing} not found" in err and "Traceback" not in err


def test_missing_column_fails_before_ray(no_ray, tiny_model, intent_data, tmp_path, capsys):
    manifest = _manifest(tmp_path / "job.yaml", tiny_model, intent_data)
    assert _run(manifest, "data.labelColumn=intent") == 1
    err = capsys.readouterr().err
    assert not no_ray.is_initialized()
    assert f"data.train ({intent_data['train']}): column 'intent' (data.labelColumn) not found" in err
    assert "available columns: 'text', 'label'" in err and "Traceback" not in err


def test_uncached_offline_hub_id_fails_before_ray(no_ray, tiny_model, intent_data, tmp_path, capsys,
                                                  monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-hf-cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("FINETUNE_ALLOW_DOWNLOADS", raising=False)
    manifest = _manifest(tmp_path / "job.yaml", tiny_model, intent_data)
    assert _run(manifest, "model.source=sentence-transformers/all-MiniLM-L6-v2") == 1
    err = capsys.readouterr().err
    assert not no_ray.is_initialized()
    assert "model.source: 'sentence-transformers/all-MiniLM-L6-v2' is a Hugging Face hub id that is not in " \
           "this image's model cache" in err
    assert "Traceback" not in err


def test_a_local_folder_without_a_model_fails_before_ray(no_ray, tiny_model, intent_data, tmp_path, capsys):
    manifest = _manifest(tmp_path / "job.yaml", tiny_model, intent_data)
    (tmp_path / "empty-model").mkdir()
    assert _run(manifest, f"model.source={tmp_path / 'empty-model'}") == 1
    err = capsys.readouterr().err
    assert "model.source:" in err and "holds no config.json" in err


def test_s3_sources_are_left_to_the_job(tiny_model, intent_data, tmp_path):
    from finetune_trainer.config import JobConfig
    from finetune_trainer.errors import DataError
    from finetune_trainer.preflight import check_locally

    from tests.trainer.ray.conftest import make_job

    job = make_job("remote", tiny_model, intent_data, str(tmp_path / "out"))
    document = job.to_dict()
    document["config"]["data"]["train"] = "s3://no-such-bucket/train.csv"
    check_locally(JobConfig.model_validate(document))  # nothing fetched, so nothing raised
    document["config"]["data"]["train"] = str(tmp_path / "missing.csv")
    with pytest.raises(DataError, match="data.train: .*missing.csv not found"):
        check_locally(JobConfig.model_validate(document))
