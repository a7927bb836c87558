"""Library chatter (transformers' LOAD REPORT, progress bars) stays out of a run's
output unless verbose (finetune_trainer.quiet)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from finetune_trainer import quiet
from finetune_trainer.config import ModelSpec
from finetune_trainer.tasks.text_classification import load_model_and_tokenizer

LIBRARY_ENV = ("FINETUNE_VERBOSE", "TRANSFORMERS_VERBOSITY", "HF_HUB_DISABLE_PROGRESS_BARS",
               "HF_DATASETS_DISABLE_PROGRESS_BARS")


@pytest.fixture
def library_state(monkeypatch):
    """Let a test choose the verbosity; put the libraries back as they were after."""
    import transformers.utils.logging as hf_logging

    level, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    for name in LIBRARY_ENV:
        monkeypatch.delenv(name, raising=False)

    def choose(is_verbose: bool) -> None:
        for name, value in quiet.library_env(is_verbose).items():
            monkeypatch.setenv(name, value)
        quiet.configure_libraries()

    yield choose
    hf_logging.set_verbosity(level)
    (hf_logging.enable_progress_bar if bars else hf_logging.disable_progress_bar)()


def _load_and_save(model_path: Path, out: Path) -> None:
    # Three labels on a two-label checkpoint: transformers initialises a new head.
    model, _ = load_model_and_tokenizer(ModelSpec(source=str(model_path)), 3, ["a", "b", "c"])
    model.save_pretrained(out)


def test_quiet_by_default_with_one_line_of_our_own(library_state, tiny_model_path, tmp_path, capfd, caplog):
    library_state(False)
    with caplog.at_level(logging.INFO):
        _load_and_save(tiny_model_path, tmp_path / "saved")
    printed = "".join(capfd.readouterr()) + caplog.text  # transformers' handler may have either
    assert "LOAD REPORT" not in printed and "Loading weights" not in printed
    assert "Writing model shards" not in printed
    ours = [r.getMessage() for r in caplog.records if "classification head" in r.getMessage()]
    assert ours == ["new classification head initialised: classifier.bias, classifier.weight"]


def test_verbose_lets_the_libraries_speak(library_state, tiny_model_path, tmp_path, capfd, caplog):
    library_state(True)
    with caplog.at_level(logging.INFO):
        _load_and_save(tiny_model_path, tmp_path / "saved")
    printed = "".join(capfd.readouterr()) + caplog.text
    assert "LOAD REPORT" in printed and "Loading weights" in printed


def test_ray_workers_get_the_same_choice(library_state):
    from finetune_trainer.runner import local_ray_init_kwargs

    library_state(False)
    env = local_ray_init_kwargs()["runtime_env"]["env_vars"]
    assert env["FINETUNE_VERBOSE"] == "0" and env["HF_HUB_DISABLE_PROGRESS_BARS"] == "1"
    assert env["TRANSFORMERS_VERBOSITY"] == "warning"
    library_state(True)
    env = local_ray_init_kwargs()["runtime_env"]["env_vars"]
    assert env["FINETUNE_VERBOSE"] == "1" and env["HF_HUB_DISABLE_PROGRESS_BARS"] == "0"


def test_a_fresh_worker_process_is_quiet_by_its_environment(library_state, monkeypatch):
    """What a Ray worker does first (train_loop_per_worker): read the choice from the env."""
    import transformers.utils.logging as hf_logging

    hf_logging.enable_progress_bar()
    hf_logging.set_verbosity_info()
    monkeypatch.setenv("FINETUNE_VERBOSE", "0")
    quiet.configure_libraries()
    assert hf_logging.get_verbosity() == logging.WARNING and not hf_logging.is_progress_bar_enabled()
