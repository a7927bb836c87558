"""Keep the libraries' own chatter out of a run's output unless asked for.

transformers prints a LOAD REPORT table for every model whose new head it
initialises, and transformers / huggingface_hub / datasets draw a progress bar for
every load and save. Ray Tune's newer console output prints a configuration table and
result paths at the start of every sweep even at verbose=0; its older output, chosen
with RAY_AIR_NEW_OUTPUT=0, honours verbose=0. In a fine-tuning job both are expected and say nothing: the
trainer reports a new head once in its own words instead. With FINETUNE_VERBOSE=1
(`finetune -v run`) the libraries speak as they normally would.

Ray workers are separate processes, so the switch travels as environment variables:
`library_env()` is what a locally started Ray passes to its workers, and every
worker calls `configure_libraries()` when it starts.
"""

from __future__ import annotations

import contextlib
import logging
import os
from typing import Iterator

VERBOSE_ENV = "FINETUNE_VERBOSE"


def verbose() -> bool:
    return os.environ.get(VERBOSE_ENV, "").lower() in ("1", "true", "yes")


def library_env(is_verbose: bool | None = None) -> dict[str, str]:
    """Environment variables that set the libraries' verbosity in a new process."""
    is_verbose = verbose() if is_verbose is None else is_verbose
    if is_verbose:
        return {VERBOSE_ENV: "1", "TRANSFORMERS_VERBOSITY": "info", "HF_HUB_DISABLE_PROGRESS_BARS": "0",
                "HF_DATASETS_DISABLE_PROGRESS_BARS": "0"}
    return {VERBOSE_ENV: "0", "TRANSFORMERS_VERBOSITY": "warning", "HF_HUB_DISABLE_PROGRESS_BARS": "1",
            "HF_DATASETS_DISABLE_PROGRESS_BARS": "1", "RAY_AIR_NEW_OUTPUT": "0"}


def set_verbose(is_verbose: bool) -> None:
    """Choose for this process and for every process it starts (a local Ray's workers)."""
    os.environ.update(library_env(is_verbose))
    configure_libraries()


def configure_libraries() -> None:
    """Apply the chosen verbosity to the libraries this process has (or will) import."""
    is_verbose = verbose()
    for name, value in library_env(is_verbose).items():
        os.environ.setdefault(name, value)
    try:
        import transformers.utils.logging as hf_logging
    except ImportError:  # pragma: no cover - transformers is a trainer dependency
        hf_logging = None
    if hf_logging is not None:
        if is_verbose:
            hf_logging.set_verbosity_info()
            hf_logging.enable_progress_bar()
        else:
            hf_logging.set_verbosity_warning()
            hf_logging.disable_progress_bar()
    try:
        import huggingface_hub.utils as hub_utils
    except ImportError:  # pragma: no cover
        hub_utils = None
    if hub_utils is not None:
        (hub_utils.enable_progress_bars if is_verbose else hub_utils.disable_progress_bars)()
    try:
        import datasets.utils.logging as ds_logging
    except ImportError:
        ds_logging = None
    if ds_logging is not None:
        if is_verbose:
            ds_logging.enable_progress_bar()
        else:
            ds_logging.set_verbosity_warning()
            ds_logging.disable_progress_bar()


@contextlib.contextmanager
def quiet_loading() -> Iterator[None]:
    """Around `from_pretrained` / `save_pretrained`: no LOAD REPORT, no progress bars.

    The report is a transformers *warning*, so warning level is not enough while a
    model loads; errors still come through. Verbose runs see everything."""
    if verbose():
        yield
        return
    import transformers.utils.logging as hf_logging

    level = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity(logging.ERROR)
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()


__all__ = ["VERBOSE_ENV", "configure_libraries", "library_env", "quiet_loading", "set_verbose", "verbose"]
