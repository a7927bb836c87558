"""Local and S3 storage behind one pyarrow filesystem interface.

Outputs, checkpoints, data files and model folders may live on local disk or in any
S3-compatible store. pyarrow's S3FileSystem covers both AWS and MinIO/SeaweedFS/Ceph
(boto3 is not an option: it conflicts with the kubernetes client's dependencies).

A model folder counts as present only once its completion marker (`_SUCCESS`) is
written, and the marker is written last, so a reader never takes a half-uploaded
folder for a model.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional, TypeVar
from urllib.parse import urlparse

from finetune_trainer.errors import StorageError

if TYPE_CHECKING:  # pragma: no cover
    from pyarrow import fs as pafs

    from finetune_trainer.config import OutputSpec

log = logging.getLogger(__name__)

SUCCESS_MARKER = "_SUCCESS"
"""Written last into an uploaded folder; its presence means every file is there."""

# Environment variables naming the S3 endpoint when no OutputSpec gives one (the AWS
# SDKs read the same names).
_ENDPOINT_ENV = ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")

T = TypeVar("T")


def is_s3(uri: str) -> bool:
    return uri.startswith("s3://")


def join(uri: str, *parts: str) -> str:
    """`uri` with path parts appended with single slashes (works for s3:// and paths)."""
    out = uri.rstrip("/")
    for part in parts:
        out = f"{out}/{part.strip('/')}"
    return out


def _endpoint(output: "Optional[OutputSpec]") -> Optional[str]:
    if output is not None and output.endpoint:
        return output.endpoint
    for name in _ENDPOINT_ENV:
        if os.environ.get(name):
            return os.environ[name]
    return None


def s3_filesystem(
    output: "Optional[OutputSpec]" = None,
    *,
    max_attempts: int = 3,
    connect_timeout: float = 5.0,
    request_timeout: float = 30.0,
) -> "pafs.S3FileSystem":
    """An S3FileSystem for the store `output` names (endpoint, region); credentials come
    from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (or the usual AWS sources)."""
    from pyarrow import fs as pafs

    kwargs: dict = {
        "retry_strategy": pafs.AwsStandardS3RetryStrategy(max_attempts=max_attempts),
        "connect_timeout": connect_timeout,
        "request_timeout": request_timeout,
    }
    endpoint = _endpoint(output)
    if endpoint:
        parsed = urlparse(endpoint if "://" in endpoint else f"https://{endpoint}")
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise StorageError(f"output.endpoint: {endpoint!r} is not an http(s)://host[:port] URL")
        kwargs["endpoint_override"] = parsed.netloc + parsed.path.rstrip("/")
        kwargs["scheme"] = parsed.scheme
    region = (
        (output.region if output is not None else None)
        or os.environ.get("AWS_REGION")
        or os.environ.get("AWS_DEFAULT_REGION")
    )
    if region:
        kwargs["region"] = region
    elif endpoint:
        kwargs["region"] = "us-east-1"  # S3-compatible stores ignore it; avoids a lookup
    key, secret = os.environ.get("AWS_ACCESS_KEY_ID"), os.environ.get("AWS_SECRET_ACCESS_KEY")
    if key and secret:
        kwargs["access_key"] = key
        kwargs["secret_key"] = secret
        if os.environ.get("AWS_SESSION_TOKEN"):
            kwargs["session_token"] = os.environ["AWS_SESSION_TOKEN"]
    return pafs.S3FileSystem(**kwargs)


def resolve_filesystem(
    uri: str, output: "Optional[OutputSpec]" = None, **s3_options
) -> "tuple[pafs.FileSystem, str]":
    """The filesystem holding `uri` and the path to pass to it.

    `s3://bucket/prefix` gives an S3FileSystem and `bucket/prefix`; a local path (or
    `file://` URI) gives the local filesystem and an absolute path."""
    from pyarrow import fs as pafs

    if not uri:
        raise StorageError("empty storage URI: give a local path or s3://bucket/prefix")
    if is_s3(uri):
        path = uri[len("s3://") :].strip("/")
        if not path:
            raise StorageError(f"{uri!r} names no bucket: use s3://bucket/prefix")
        return s3_filesystem(output, **s3_options), path
    if uri.startswith("file://"):
        uri = urlparse(uri).path
    elif "://" in uri:
        raise StorageError(f"{uri!r}: unsupported scheme; use a local path or s3://bucket/prefix")
    return pafs.LocalFileSystem(), os.path.abspath(uri)


def with_retries(
    action: Callable[[], T], what: str, *, attempts: int = 5, backoff: float = 0.5, max_delay: float = 30.0
) -> T:
    """Run `action`, retrying I/O errors with exponential backoff; StorageError when
    every attempt failed."""
    if attempts < 1:
        raise ValueError("attempts must be >= 1")
    for attempt in range(1, attempts + 1):
        try:
            return action()
        except FileNotFoundError as err:
            raise StorageError(f"{what} failed: not found ({err})") from err
        except OSError as err:
            if attempt == attempts:
                raise StorageError(f"{what} failed after {attempts} attempts: {err}") from err
            delay = min(max_delay, backoff * 2 ** (attempt - 1))
            log.warning(
                "%s failed (attempt %d of %d), retrying in %.1f s: %s", what, attempt, attempts, delay, err
            )
            time.sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover


def _ensure_parent(filesystem: "pafs.FileSystem", path: str) -> None:
    from pyarrow import fs as pafs

    parent = path.rsplit("/", 1)[0] if "/" in path else ""
    if parent and isinstance(filesystem, pafs.LocalFileSystem):
        filesystem.create_dir(parent, recursive=True)


def read_bytes(uri: str, output: "Optional[OutputSpec]" = None, *, attempts: int = 3) -> bytes:
    """The whole content of a file."""
    filesystem, path = resolve_filesystem(uri, output)

    def read() -> bytes:
        with filesystem.open_input_stream(path) as stream:
            return stream.read()

    return with_retries(read, f"reading {uri}", attempts=attempts, backoff=0.2)


def write_bytes(uri: str, data: bytes, output: "Optional[OutputSpec]" = None, *, attempts: int = 3) -> None:
    """Write `data` to a file, replacing it."""
    filesystem, path = resolve_filesystem(uri, output)

    def write() -> None:
        _ensure_parent(filesystem, path)
        with filesystem.open_output_stream(path) as stream:
            stream.write(data)

    with_retries(write, f"writing {uri}", attempts=attempts, backoff=0.2)


def exists(uri: str, output: "Optional[OutputSpec]" = None) -> bool:
    """Whether a file or folder exists at `uri`."""
    from pyarrow import fs as pafs

    filesystem, path = resolve_filesystem(uri, output)
    info = with_retries(lambda: filesystem.get_file_info(path), f"checking {uri}", attempts=3, backoff=0.2)
    return info.type != pafs.FileType.NotFound


def list_files(uri: str, output: "Optional[OutputSpec]" = None) -> list[str]:
    """Paths (relative to `uri`, with /) of every file under the folder `uri`."""
    from pyarrow import fs as pafs

    filesystem, path = resolve_filesystem(uri, output)
    selector = pafs.FileSelector(path, recursive=True, allow_not_found=True)
    infos = with_retries(
        lambda: filesystem.get_file_info(selector), f"listing {uri}", attempts=3, backoff=0.2
    )
    base = path.rstrip("/") + "/"
    return sorted(
        i.path[len(base) :] for i in infos if i.type == pafs.FileType.File and i.path.startswith(base)
    )


def is_complete(uri: str, output: "Optional[OutputSpec]" = None, *, verify: bool = False) -> bool:
    """Whether the folder `uri` holds a finished upload (its marker is present).

    With `verify`, also check that every file the marker lists is there with its
    recorded size (one listing), to catch files deleted or truncated afterwards."""
    if not exists(join(uri, SUCCESS_MARKER), output):
        return False
    if not verify:
        return True
    from pyarrow import fs as pafs

    try:
        manifest = json.loads(read_bytes(join(uri, SUCCESS_MARKER), output))["files"]
    except (ValueError, KeyError, TypeError):
        return False
    filesystem, base = resolve_filesystem(uri, output)
    selector = pafs.FileSelector(base, recursive=True, allow_not_found=True)
    infos = with_retries(
        lambda: filesystem.get_file_info(selector), f"listing {uri}", attempts=3, backoff=0.2
    )
    prefix = base.rstrip("/") + "/"
    sizes = {i.path[len(prefix) :]: i.size for i in infos if i.type == pafs.FileType.File}
    return all(sizes.get(name) == size for name, size in manifest.items())


def upload_dir(
    local_dir: str | os.PathLike,
    uri: str,
    output: "Optional[OutputSpec]" = None,
    *,
    attempts: int = 5,
    backoff: float = 0.5,
    on_file_uploaded: Optional[Callable[[str], None]] = None,
    filesystem: "Optional[pafs.FileSystem]" = None,
) -> list[str]:
    """Copy every file under `local_dir` to the folder `uri`, then write `_SUCCESS`.

    An older marker is removed first, each file is retried with exponential backoff,
    and the marker (a JSON manifest of file names and sizes) goes last, so a failed
    or interrupted upload never looks complete. `on_file_uploaded(relative path)` is
    called after each file (for progress logs). `filesystem` is the store's filesystem
    when the caller has one (e.g. built where the credentials are, and shipped to a Ray
    task), else it is made from `uri` and `output`. Returns the uploaded relative paths."""
    root = Path(local_dir)
    if not root.is_dir():
        raise StorageError(f"cannot upload {root}: not a folder")
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.name != SUCCESS_MARKER)
    resolved, base = resolve_filesystem(uri, output)
    filesystem = filesystem or resolved
    marker = f"{base}/{SUCCESS_MARKER}"

    def drop_marker() -> None:
        from pyarrow import fs as pafs

        if filesystem.get_file_info(marker).type != pafs.FileType.NotFound:
            filesystem.delete_file(marker)

    with_retries(drop_marker, f"clearing the completion marker of {uri}", attempts=attempts, backoff=backoff)
    manifest: dict[str, int] = {}
    for file in files:
        relative = file.relative_to(root).as_posix()
        target = f"{base}/{relative}"

        def put(file: Path = file, target: str = target) -> None:
            _ensure_parent(filesystem, target)
            with open(file, "rb") as source, filesystem.open_output_stream(target) as sink:
                while chunk := source.read(8 << 20):
                    sink.write(chunk)

        with_retries(put, f"uploading {relative} to {uri}", attempts=attempts, backoff=backoff)
        manifest[relative] = file.stat().st_size
        if on_file_uploaded is not None:
            on_file_uploaded(relative)
    body = json.dumps({"files": manifest, "completedAt": time.time()}, indent=1, sort_keys=True).encode()

    def put_marker() -> None:
        with filesystem.open_output_stream(marker) as sink:
            sink.write(body)

    with_retries(put_marker, f"writing the completion marker of {uri}", attempts=attempts, backoff=backoff)
    return list(manifest)


def download_dir(
    uri: str,
    local_dir: str | os.PathLike,
    output: "Optional[OutputSpec]" = None,
    *,
    attempts: int = 5,
    backoff: float = 0.5,
) -> Path:
    """Copy every file under the folder `uri` into `local_dir` (created); returns it."""
    target = Path(local_dir)
    target.mkdir(parents=True, exist_ok=True)
    filesystem, base = resolve_filesystem(uri, output)
    names = list_files(uri, output)
    if not names:
        raise StorageError(f"{uri} is empty or does not exist")
    for name in names:
        destination = target / name
        destination.parent.mkdir(parents=True, exist_ok=True)

        def get(name: str = name, destination: Path = destination) -> None:
            with filesystem.open_input_stream(f"{base}/{name}") as source, open(destination, "wb") as sink:
                while chunk := source.read(8 << 20):
                    sink.write(chunk)

        with_retries(get, f"downloading {name} from {uri}", attempts=attempts, backoff=backoff)
    return target


def open_input(uri: str, output: "Optional[OutputSpec]" = None):
    """A seekable binary file object for `uri` (for parquet and text readers)."""
    filesystem, path = resolve_filesystem(uri, output)
    return with_retries(lambda: filesystem.open_input_file(path), f"opening {uri}", attempts=3, backoff=0.2)


__all__ = [
    "SUCCESS_MARKER",
    "is_s3",
    "join",
    "s3_filesystem",
    "resolve_filesystem",
    "with_retries",
    "read_bytes",
    "write_bytes",
    "exists",
    "list_files",
    "is_complete",
    "upload_dir",
    "download_dir",
    "open_input",
]
