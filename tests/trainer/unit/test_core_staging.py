"""A hub-id model is downloaded once, by the driver, into the job's storage; workers
are handed that copy (issue 11). No hub is reachable here: a stand-in for
`huggingface_hub.snapshot_download` serves a tiny model and counts the downloads."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from finetune_trainer import staging, storage
from finetune_trainer.config import JobConfig
from finetune_trainer.errors import ModelError
from finetune_trainer.tasks.text_classification import load_model_and_tokenizer

HUB_ID = "acme/tiny-classifier"


def _job(output: Path, source: str = HUB_ID, allow: bool = False, name: str = "hub-job") -> JobConfig:
    return JobConfig.model_validate({"name": name, "config": {
        "model": {"source": source, "revision": "v1", "allowDownload": allow},
        "data": {"train": "s3://data/train.csv"},
        "output": {"uri": str(output)},
    }})


@pytest.fixture
def fake_hub(monkeypatch, tmp_path_factory, tiny_model_path: Path):
    """A hub that serves HUB_ID (a tiny saved model) and records every download."""
    import huggingface_hub

    calls: list[dict] = []

    def snapshot_download(repo_id, *, revision=None, local_dir=None, local_files_only=False, **_):
        calls.append({"repo": repo_id, "revision": revision, "offline": local_files_only})
        if local_files_only or repo_id != HUB_ID:
            raise huggingface_hub.errors.LocalEntryNotFoundError(f"{repo_id} not cached")
        shutil.copytree(tiny_model_path, local_dir, dirs_exist_ok=True)
        (Path(local_dir) / ".cache").mkdir(exist_ok=True)
        return local_dir

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    monkeypatch.delenv("FINETUNE_ALLOW_DOWNLOADS", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path_factory.mktemp("empty-hf-home")))
    return calls


def test_the_driver_downloads_once_and_workers_get_the_staged_copy(fake_hub, tmp_path):
    job = _job(tmp_path / "out", allow=True)
    staged = staging.stage_model(job)
    target = staging.staged_uri(job)
    assert target == str((tmp_path / "out" / "hub-job" / "base-model").resolve())
    assert staged.config.model.source == target and staged.config.model.revision is None
    assert storage.is_complete(target)
    assert not (Path(target) / ".cache").exists()
    assert [c["repo"] for c in fake_hub] == [HUB_ID] and fake_hub[0]["revision"] == "v1"
    # What a worker does with its config: load from the copy, offline, without the hub.
    model, tokenizer = load_model_and_tokenizer(staged.config.model, 2, ["neg", "pos"])
    assert model.config.num_labels == 2 and tokenizer("hello")["input_ids"]
    # Everything else of the job is as it was; the user's own config keeps the hub id.
    assert staged.config.model_dump(exclude={"model"}) == job.config.model_dump(exclude={"model"})
    assert job.config.model.source == HUB_ID


def test_a_retry_reuses_the_staged_copy(fake_hub, tmp_path):
    job = _job(tmp_path / "out", allow=True)
    first = staging.stage_model(job)
    second = staging.stage_model(job)
    assert first == second
    assert len(fake_hub) == 1


def test_the_operators_switch_allows_downloads_too(fake_hub, tmp_path, monkeypatch):
    monkeypatch.setenv("FINETUNE_ALLOW_DOWNLOADS", "1")
    staged = staging.stage_model(_job(tmp_path / "out"))
    assert staged.config.model.source.endswith("/hub-job/base-model")
    assert len(fake_hub) == 1 and not fake_hub[0]["offline"]


def test_with_downloads_off_an_uncached_hub_id_is_a_clear_error(fake_hub, tmp_path):
    with pytest.raises(ModelError) as caught:
        staging.stage_model(_job(tmp_path / "out"))
    message = str(caught.value)
    assert message.startswith(f"model.source: '{HUB_ID}'")
    assert "model.allowDownload" in message and "FINETUNE_ALLOW_DOWNLOADS" in message
    assert all(call["offline"] for call in fake_hub), "nothing may be downloaded with downloads off"
    assert not (tmp_path / "out").exists()


def test_an_unknown_repository_names_the_field(fake_hub, tmp_path):
    with pytest.raises(ModelError, match=r"^model.source: cannot download 'acme/missing'"):
        staging.stage_model(_job(tmp_path / "out", source="acme/missing", allow=True))


def test_folders_and_object_storage_are_not_staged(fake_hub, tmp_path, tiny_model_path):
    for source in (str(tiny_model_path), "s3://models/base/minilm", "./relative/folder"):
        job = _job(tmp_path / "out", source=source, allow=True)
        assert staging.stage_model(job) is job
    assert fake_hub == []
