"""Storage on local disk and on a real S3 server (SeaweedFS), including outages."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
from core_helpers import make_tiny_model_dir, sentiment_rows, training_config, write_rows
from finetune_trainer import storage
from finetune_trainer.config import ModelSpec, OutputSpec
from finetune_trainer.errors import StorageError
from finetune_trainer.tasks.text_classification import load_examples, load_model_and_tokenizer

from tests.support.s3 import s3_bucket, s3_store  # noqa: F401  (pytest fixtures)


def _folder(root: Path, files: dict[str, bytes]) -> Path:
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root


FILES = {"config.json": b"{}", "weights/part-1.bin": b"x" * 1000, "weights/part-2.bin": b"y" * 2000}


def test_local_upload_marker_and_download(tmp_path: Path) -> None:
    source = _folder(tmp_path / "src", FILES)
    target = str(tmp_path / "out" / "model")
    assert not storage.is_complete(target)
    uploaded = storage.upload_dir(source, target)
    assert sorted(uploaded) == sorted(FILES)
    assert storage.is_complete(target)
    manifest = json.loads(storage.read_bytes(storage.join(target, storage.SUCCESS_MARKER)))
    assert manifest["files"] == {name: len(data) for name, data in FILES.items()}
    back = storage.download_dir(target, tmp_path / "back")
    assert {p.relative_to(back).as_posix(): p.read_bytes() for p in back.rglob("*") if p.is_file()} == {
        **FILES,
        storage.SUCCESS_MARKER: storage.read_bytes(storage.join(target, storage.SUCCESS_MARKER)),
    }


def test_verify_catches_files_lost_after_upload(tmp_path: Path) -> None:
    target = tmp_path / "model"
    storage.upload_dir(_folder(tmp_path / "src", FILES), str(target))
    assert storage.is_complete(str(target), verify=True)
    (target / "weights" / "part-2.bin").write_bytes(b"short")
    assert storage.is_complete(str(target))  # the marker alone cannot tell
    assert not storage.is_complete(str(target), verify=True)
    (target / "weights" / "part-2.bin").unlink()
    assert not storage.is_complete(str(target), verify=True)


def test_marker_is_written_last(tmp_path: Path) -> None:
    source = _folder(tmp_path / "src", FILES)
    target = str(tmp_path / "model")
    storage.upload_dir(source, target)
    seen = []
    storage.upload_dir(source, target, on_file_uploaded=lambda name: seen.append(storage.is_complete(target)))
    assert seen == [False, False, False]  # the old marker went first, the new one comes after the files
    assert storage.is_complete(target)


def test_bad_uris_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="unsupported scheme"):
        storage.resolve_filesystem("gs://bucket/x")
    with pytest.raises(StorageError, match="names no bucket"):
        storage.resolve_filesystem("s3://")
    with pytest.raises(StorageError, match="not found"):
        storage.read_bytes(str(tmp_path / "missing.txt"))
    with pytest.raises(StorageError, match="output.endpoint"):
        storage.s3_filesystem(OutputSpec.model_construct(uri="s3://b", endpoint="ftp://x", region=None))


def _output(store, bucket: str) -> OutputSpec:
    return OutputSpec(uri=f"s3://{bucket}/runs", endpoint=store.endpoint, region=store.region)


def test_s3_round_trip(s3_store, s3_bucket, tmp_path: Path) -> None:  # noqa: F811
    output = _output(s3_store, s3_bucket)
    uri = f"s3://{s3_bucket}/runs/job-1/model"
    storage.write_bytes(f"s3://{s3_bucket}/runs/job-1/progress.json", b'{"step": 1}', output)
    assert storage.read_bytes(f"s3://{s3_bucket}/runs/job-1/progress.json", output) == b'{"step": 1}'
    assert storage.exists(f"s3://{s3_bucket}/runs/job-1/progress.json", output)
    assert not storage.exists(f"s3://{s3_bucket}/runs/job-1/nothing", output)
    storage.upload_dir(_folder(tmp_path / "src", FILES), uri, output)
    assert storage.is_complete(uri, output, verify=True)
    assert storage.list_files(uri, output) == sorted([*FILES, storage.SUCCESS_MARKER])
    back = storage.download_dir(uri, tmp_path / "back", output)
    assert (back / "weights" / "part-2.bin").read_bytes() == FILES["weights/part-2.bin"]


@pytest.mark.slow  # restarting SeaweedFS takes about 30 s
def test_s3_outage_mid_upload_fails_clearly_without_marker(s3_store, s3_bucket, tmp_path: Path) -> None:  # noqa: F811
    output = _output(s3_store, s3_bucket)
    uri = f"s3://{s3_bucket}/runs/job-2/model"
    source = _folder(tmp_path / "src", FILES)
    storage.upload_dir(source, uri, output)
    assert storage.is_complete(uri, output)

    def stop_after_first(name: str) -> None:
        if s3_store.running:
            s3_store.stop()

    with pytest.raises(StorageError) as err:
        storage.upload_dir(source, uri, output, attempts=2, backoff=0.05, on_file_uploaded=stop_after_first)
    assert "after 2 attempts" in str(err.value) and uri in str(err.value)
    assert "weights/part-1.bin" in str(err.value)  # the file after the first one (sorted order)
    s3_store.start()
    assert not storage.is_complete(uri, output)  # the old marker was removed before the new upload
    storage.upload_dir(source, uri, output)
    assert storage.is_complete(uri, output)


@pytest.mark.slow  # restarting SeaweedFS takes about 30 s
def test_s3_upload_retries_through_a_restart(s3_store, s3_bucket, tmp_path: Path) -> None:  # noqa: F811
    output = _output(s3_store, s3_bucket)
    uri = f"s3://{s3_bucket}/runs/job-3/model"
    source = _folder(tmp_path / "src", FILES)
    restarter: list[threading.Thread] = []

    def bounce(name: str) -> None:
        if not restarter:
            s3_store.stop()
            restarter.append(threading.Thread(target=s3_store.start))
            restarter[0].start()

    storage.upload_dir(source, uri, output, attempts=10, backoff=0.5, on_file_uploaded=bounce)
    restarter[0].join(timeout=120)
    assert storage.is_complete(uri, output)
    back = storage.download_dir(uri, tmp_path / "back", output)
    assert (back / "weights" / "part-2.bin").read_bytes() == FILES["weights/part-2.bin"]


@pytest.mark.parametrize("fmt", ["csv", "parquet", "jsonl"])
def test_data_from_s3(s3_store, s3_bucket, tmp_path: Path, fmt: str) -> None:  # noqa: F811
    local = write_rows(tmp_path / f"train.{fmt}", sentiment_rows(40))
    uri = f"s3://{s3_bucket}/data/train.{fmt}"
    output = _output(s3_store, s3_bucket)
    storage.write_bytes(uri, local.read_bytes(), output)
    config = training_config(uri, output.uri, output={"endpoint": s3_store.endpoint})
    from_s3 = load_examples(config)
    from_disk = load_examples(training_config(str(local), str(tmp_path / "o")))
    assert (
        from_s3.train.texts == from_disk.train.texts
        and from_s3.validation.labels == from_disk.validation.labels
    )
    missing = training_config(
        f"s3://{s3_bucket}/data/none.csv", output.uri, output={"endpoint": s3_store.endpoint}
    )
    with pytest.raises(Exception, match=r"data.train.*none\.csv.*not found"):
        load_examples(missing)


def test_model_from_s3(s3_store, s3_bucket, tmp_path: Path) -> None:  # noqa: F811
    output = _output(s3_store, s3_bucket)
    uri = f"s3://{s3_bucket}/models/tiny"
    storage.upload_dir(make_tiny_model_dir(tmp_path / "tiny"), uri, output)
    model, tokenizer = load_model_and_tokenizer(
        ModelSpec(source=uri), 2, ["neg", "pos"], output=output, cache_dir=tmp_path / "cache"
    )
    assert model.config.id2label == {0: "neg", 1: "pos"} and tokenizer.vocab_size > 10
