"""Weights load in fp32 whatever the checkpoint's dtype (issue 11, item 5), and
decoder-only models that ship without a pad token batch (issue 11, item 7)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from core_helpers import VOCAB, make_tiny_model_dir, training_config
from finetune_trainer.config import ModelSpec
from finetune_trainer.tasks.text_classification import load_model_and_tokenizer
from pydantic import ValidationError

EOS = "<|endoftext|>"


def save_half(directory: Path, dtype: torch.dtype) -> Path:
    """A tiny BERT classifier checkpoint saved in `dtype`."""
    from transformers import AutoModelForSequenceClassification

    make_tiny_model_dir(directory)
    model = AutoModelForSequenceClassification.from_pretrained(directory, dtype=torch.float32)
    model.to(dtype).save_pretrained(directory)
    return directory


@pytest.mark.parametrize("saved", [torch.float16, torch.bfloat16])
def test_half_precision_checkpoints_load_as_fp32_master_weights(tmp_path, saved):
    path = save_half(tmp_path / "half", saved)
    model, _ = load_model_and_tokenizer(ModelSpec(source=str(path)), 2, ["a", "b"])
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    # Asked for, the checkpoint's own dtype is kept.
    model, _ = load_model_and_tokenizer(ModelSpec(source=str(path), loadDtype="auto"), 2, ["a", "b"])
    assert {p.dtype for n, p in model.named_parameters() if "classifier" not in n} == {saved}


def test_half_weights_with_the_fp16_scaler_are_refused_naming_both_fields(tmp_path):
    with pytest.raises(ValidationError, match=r"model.loadDtype float16 cannot train with training.precision fp16"):
        training_config("t.csv", "out", model={"loadDtype": "float16"}, training={"precision": "fp16"})
    assert training_config("t.csv", "out", model={"loadDtype": "bfloat16"},
                           training={"precision": "bf16"}).model.load_dtype == "bfloat16"


def word_level_tokenizer(directory: Path, specials: dict[str, str]):
    """A fast tokenizer over the test vocabulary with the given special tokens and,
    like GPT-2's and Llama's, no pad token."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {token: i for i, token in enumerate(list(specials.values()) + [t for t in VOCAB if not t.startswith("[")])}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token=specials.get("unk_token", next(iter(specials.values())))))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, **specials)
    assert tokenizer.pad_token is None
    tokenizer.save_pretrained(directory)
    return len(vocab)


def tiny_gpt2(directory: Path) -> Path:
    from transformers import GPT2Config, GPT2LMHeadModel

    size = word_level_tokenizer(directory, {"eos_token": EOS, "bos_token": EOS, "unk_token": EOS})
    torch.manual_seed(0)
    GPT2LMHeadModel(GPT2Config(vocab_size=size, n_embd=32, n_layer=2, n_head=2, n_positions=64,
                               bos_token_id=0, eos_token_id=0)).save_pretrained(directory)
    return directory


def tiny_llama(directory: Path) -> Path:
    from transformers import LlamaConfig, LlamaForCausalLM

    size = word_level_tokenizer(directory, {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"})
    torch.manual_seed(0)
    LlamaForCausalLM(LlamaConfig(vocab_size=size, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                                 num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=64,
                                 bos_token_id=0, eos_token_id=1, pad_token_id=None)).save_pretrained(directory)
    return directory


@pytest.mark.parametrize("build", [tiny_gpt2, tiny_llama], ids=["gpt2", "llama"])
def test_decoder_models_without_a_pad_token_batch_and_classify_each_row_by_its_last_real_token(tmp_path, build):
    path = build(tmp_path / "decoder")
    model, tokenizer = load_model_and_tokenizer(ModelSpec(source=str(path)), 2, ["neg", "pos"])
    assert tokenizer.pad_token == tokenizer.eos_token and model.config.pad_token_id == tokenizer.pad_token_id
    model.eval()
    texts = ["the movie was great and the acting was very good", "bad film"]
    batch = tokenizer(texts, padding=True, return_tensors="pt")
    assert (batch["input_ids"][1] == tokenizer.pad_token_id).any()  # the short row really is padded
    with torch.no_grad():
        batched = model(**batch).logits
        alone = model(**tokenizer(texts[1:], return_tensors="pt")).logits
    # Padding does not change the short row's prediction: the classifier reads its last
    # real token, not a pad.
    torch.testing.assert_close(batched[1:], alone, rtol=1e-4, atol=1e-5)
