"""Loading models and tokenizers offline (finetune_trainer.modeling)."""

from __future__ import annotations

from pathlib import Path

import pytest
from finetune_trainer.config import ModelSpec
from finetune_trainer.errors import ModelError
from finetune_trainer.modeling import dropout_attributes, minilm_path
from finetune_trainer.tasks.text_classification import load_model_and_tokenizer


def test_local_folder_with_labels_and_dropout_override(tiny_model_path: Path) -> None:
    model, tokenizer = load_model_and_tokenizer(
        ModelSpec(source=str(tiny_model_path)), 3, ["a", "b", "c"], dropout=0.25
    )
    assert model.config.id2label == {0: "a", 1: "b", 2: "c"}
    assert model.config.label2id == {"a": 0, "b": 1, "c": 2}
    assert model.classifier.out_features == 3
    assert dropout_attributes(model.config) == [
        "attention_probs_dropout_prob",
        "classifier_dropout",
        "hidden_dropout_prob",
    ]
    assert all(getattr(model.config, n) == 0.25 for n in dropout_attributes(model.config))
    assert model.dropout.p == 0.25
    assert model.bert.encoder.layer[0].attention.self.dropout.p == 0.25
    assert tokenizer("the movie")["input_ids"][0] == tokenizer.cls_token_id


def test_without_dropout_override_keeps_model_defaults(tiny_model_path: Path) -> None:
    model, _ = load_model_and_tokenizer(ModelSpec(source=str(tiny_model_path)), 2, ["neg", "pos"])
    assert model.config.hidden_dropout_prob == 0.1
    assert model.dropout.p == 0.1


def test_uncached_hub_id_is_a_clear_offline_error(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("FINETUNE_ALLOW_DOWNLOADS", raising=False)
    with pytest.raises(
        ModelError,
        match=r"model.source: 'nobody/no-such-model' .*not in the Hugging Face cache.*"
        r"FINETUNE_ALLOW_DOWNLOADS",
    ):
        load_model_and_tokenizer(ModelSpec(source="nobody/no-such-model"), 2, ["a", "b"])


def test_folder_without_config_is_rejected(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match=r"no config.json"):
        load_model_and_tokenizer(ModelSpec(source=str(tmp_path / "empty")), 2, ["a", "b"])
    with pytest.raises(ModelError, match=r"does not exist"):
        load_model_and_tokenizer(ModelSpec(source=str(tmp_path / "missing")), 2, ["a", "b"])


def test_minilm_loads_offline_as_a_classifier() -> None:
    path = minilm_path()
    assert (path / "model.safetensors").is_file()
    model, tokenizer = load_model_and_tokenizer(ModelSpec(source=str(path)), 2, ["neg", "pos"])
    assert model.config.num_hidden_layers == 6 and model.classifier.out_features == 2
    assert tokenizer.model_max_length >= 128
