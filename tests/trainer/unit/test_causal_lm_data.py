"""causal-lm data: the record layouts (detected and named), each bad record's error
naming its row and field, loss masking (and that masked positions get no gradient),
packing (an example's logits inside a pack equal its logits alone) and the
token-weighted evaluation."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from causal_helpers import (
    causal_config, chat_records, instruction_records, make_tiny_causal_lm, text_records, write_jsonl,
)
from core_helpers import write_rows

from finetune_trainer.errors import DataError, ModelError
from finetune_trainer.tasks import get_task
from finetune_trainer.tasks.causal_lm.batching import IGNORE, CausalLmCollator, pack
from finetune_trainer.tasks.causal_lm.formats import resolve_layout

TASK = get_task("causal-lm")


@pytest.fixture(scope="module")
def lm_dir(tmp_path_factory) -> Path:
    return make_tiny_causal_lm(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="module")
def lm(lm_dir):
    return TASK.load_model(TASK_MODEL(lm_dir), [])


def TASK_MODEL(path):
    from finetune_trainer.config import ModelSpec

    return ModelSpec(source=str(path), task="causal-lm")


def _prepare(config, tokenizer, train=True):
    examples = TASK.load_examples(config)
    return examples, TASK.dataset(examples.train, tokenizer, config, train=train)


# ------------------------------------------------------------------ layouts


@pytest.mark.parametrize("records, suffix, layout", [
    (chat_records(20), "jsonl", "chat"),
    (instruction_records(20), "jsonl", "instruction"),
    (instruction_records(20, with_input=False), "csv", "instruction"),
    (text_records(20), "parquet", "text"),
])
def test_the_layout_is_detected_from_the_columns(tmp_path, lm_dir, lm, records, suffix, layout):
    train = write_rows(tmp_path / f"train.{suffix}", records)
    config = causal_config(lm_dir, train, tmp_path)
    assert resolve_layout(config).format == layout
    examples, dataset = _prepare(config, lm[1])
    assert examples.train.format == layout and len(examples.train) + len(examples.validation) == 20
    assert len(dataset) == len(examples.train)


def test_a_named_layout_with_its_own_column_names(tmp_path, lm_dir, lm):
    rows = [{"q": r["instruction"], "a": r["output"]} for r in instruction_records(10)]
    train = write_jsonl(tmp_path / "train.jsonl", rows)
    config = causal_config(lm_dir, train, tmp_path, causalLm={"format": "instruction", "instructionColumn": "q",
                                                               "outputColumn": "a"})
    examples, dataset = _prepare(config, lm[1])
    item = dataset[0]
    text = lm[1].decode([t for t, label in zip(item["input_ids"], item["labels"]) if label != IGNORE])
    assert text.startswith("the ") and text.endswith("team . </s>")


def test_a_named_layout_whose_column_is_missing_names_the_setting(tmp_path, lm_dir):
    train = write_jsonl(tmp_path / "train.jsonl", text_records(5))
    config = causal_config(lm_dir, train, tmp_path, causalLm={"format": "chat"})
    with pytest.raises(DataError, match=r"column 'messages' \(causalLm.messagesColumn\) not found"):
        TASK.load_examples(config)


def test_data_of_no_layout_is_refused_naming_the_settings(tmp_path, lm_dir):
    train = write_jsonl(tmp_path / "train.jsonl", [{"prompt": "a", "completion": "b"}])
    with pytest.raises(DataError, match=r"cannot tell the record layout.*set causalLm.format"):
        TASK.load_examples(causal_config(lm_dir, train, tmp_path))


@pytest.mark.parametrize("bad, field", [
    ({"messages": "hello"}, r"row 3, field messages: not a JSON list"),
    ({"messages": []}, r"row 3, field messages: expected a non-empty list"),
    ({"messages": [{"role": "bot", "content": "x"}]}, r"row 3, field messages\[0\].role: 'bot' is not one of"),
    ({"messages": [{"role": "user", "content": 5}]}, r"row 3, field messages\[0\].content: expected text, got int"),
    ({"messages": [{"role": "user", "content": "hi"}]}, r"row 3, field messages: no assistant message"),
    ({"messages": [{"role": "assistant", "content": "hi"}]}, r"row 3, field messages\[0\].role: the first message"),
    ({"messages": ["hi"]}, r"row 3, field messages\[0\]: expected an object"),
])
def test_a_bad_chat_record_names_its_row_and_field(tmp_path, lm_dir, bad, field):
    records = chat_records(4)
    records[2] = bad
    train = write_jsonl(tmp_path / "train.jsonl", records)
    with pytest.raises(DataError, match=r"data.train \(.*train.jsonl\): " + field):
        TASK.load_examples(causal_config(lm_dir, train, tmp_path, causalLm={"format": "chat"}))


def test_an_instruction_record_without_output_is_dropped_or_refused_in_strict_mode(tmp_path, lm_dir):
    records = instruction_records(10)
    records[4]["output"] = ""
    train = write_jsonl(tmp_path / "train.jsonl", records)
    examples = TASK.load_examples(causal_config(lm_dir, train, tmp_path))
    assert examples.report.dropped_missing == 1
    strict = causal_config(lm_dir, train, tmp_path, data={"strict": True})
    with pytest.raises(DataError, match=r"row 5, column 'output': value is missing"):
        TASK.load_examples(strict)


def test_chat_data_needs_a_template(tmp_path, lm_dir, lm):
    import shutil

    bare = tmp_path / "bare"
    shutil.copytree(lm_dir, bare)
    for name in ("chat_template.jinja",):
        (bare / name).unlink(missing_ok=True)
    config_file = bare / "tokenizer_config.json"
    import json

    settings = json.loads(config_file.read_text())
    settings.pop("chat_template", None)
    config_file.write_text(json.dumps(settings))
    model, tokenizer = TASK.load_model(TASK_MODEL(bare), [])
    assert not tokenizer.chat_template
    train = write_jsonl(tmp_path / "train.jsonl", chat_records(6))
    config = causal_config(bare, train, tmp_path)
    with pytest.raises(ModelError, match=r"causalLm.chatTemplate: the tokenizer of model.source has no chat"):
        _prepare(config, tokenizer)
    # A template given in the spec renders the data.
    given = causal_config(bare, train, tmp_path, causalLm={"chatTemplate": lm[1].chat_template})
    assert len(_prepare(given, tokenizer)[1]) > 0


# ------------------------------------------------------------------ masking


def _trained_text(tokenizer, item) -> str:
    return tokenizer.decode([t for t, label in zip(item["input_ids"], item["labels"]) if label != IGNORE])


def test_only_assistant_tokens_carry_labels_by_default(tmp_path, lm_dir, lm):
    tokenizer = lm[1]
    records = chat_records(4)
    train = write_jsonl(tmp_path / "train.jsonl", records)
    config = causal_config(lm_dir, train, tmp_path, data={"validationFraction": 0.01})
    examples, dataset = _prepare(config, tokenizer)
    by_row = dict(zip(examples.train.rows, dataset.items))
    two_turns = by_row[4]  # record 3 (row 4): two assistant turns, a system prompt
    assert _trained_text(tokenizer, two_turns) == "this is a refund question . </s> no , that is all . </s>"
    whole = causal_config(lm_dir, train, tmp_path, data={"validationFraction": 0.01},
                          causalLm={"trainOnPrompt": True})
    examples, dataset = _prepare(whole, tokenizer)
    item = dict(zip(examples.train.rows, dataset.items))[4]
    assert item["labels"] == item["input_ids"]


def test_masked_positions_carry_no_gradient(tmp_path, lm_dir, lm):
    model, tokenizer = lm
    train = write_jsonl(tmp_path / "train.jsonl", instruction_records(8))
    _, dataset = _prepare(causal_config(lm_dir, train, tmp_path), tokenizer)
    batch = CausalLmCollator(tokenizer.pad_token_id)(dataset.items[:4])
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    logits.retain_grad()
    loss = model.loss_function(logits, batch["labels"], vocab_size=model.config.vocab_size)
    loss.backward()
    # Position t predicts label t+1: a masked label means no gradient at t.
    masked = batch["labels"][:, 1:] == IGNORE
    per_position = logits.grad[:, :-1].abs().sum(-1)
    prompt = masked & batch["attention_mask"][:, 1:].bool()  # masked real tokens, not padding
    assert prompt.sum() > (~masked).sum()  # instruction prompts are longer than their answers
    assert torch.count_nonzero(per_position[masked]) == 0
    assert bool((per_position[~masked] > 0).all())


def test_an_answer_cut_off_by_max_seq_length_is_left_out(tmp_path, lm_dir, lm):
    records = instruction_records(6)
    records[0]["instruction"] = " ".join(["problem"] * 80)
    train = write_jsonl(tmp_path / "train.jsonl", records)
    config = causal_config(lm_dir, train, tmp_path, data={"validationFraction": 0.01})
    examples, dataset = _prepare(config, lm[1])
    assert dataset.dropped == 1 and len(dataset) == len(examples.train) - 1


# ------------------------------------------------------------------ packing


def test_packs_hold_whole_examples_with_restarting_positions():
    items = [{"input_ids": [1] * n, "labels": [5] * n} for n in (3, 4, 2, 6)]
    packs = pack(items, 8)
    assert [len(p["input_ids"]) for p in packs] == [7, 8]
    assert packs[0]["position_ids"] == [0, 1, 2, 0, 1, 2, 3]
    assert packs[1]["labels"] == [IGNORE, 5, IGNORE, 5, 5, 5, 5, 5]


def test_an_example_inside_a_pack_has_the_logits_it_has_alone(tmp_path, lm_dir, lm):
    model, tokenizer = lm
    model.eval()
    train = write_jsonl(tmp_path / "train.jsonl", chat_records(12))
    config = causal_config(lm_dir, train, tmp_path, data={"validationFraction": 0.01, "maxSeqLength": 128},
                           causalLm={"packing": True})
    examples, packed = _prepare(config, tokenizer)
    plain = TASK.dataset(examples.train, tokenizer, config, train=False)
    assert len(packed) < len(plain)
    collate = CausalLmCollator(tokenizer.pad_token_id)
    batch = collate(packed.items[:2])  # the second pack is padded to the first's length
    assert "attention_mask" not in batch
    with torch.no_grad():
        packed_logits = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"]).logits
        offset = 0
        for item in plain.items:
            size = len(item["input_ids"])
            if offset + size > len(packed.items[0]["input_ids"]):
                break
            alone = model(input_ids=torch.tensor([item["input_ids"]])).logits[0]
            torch.testing.assert_close(packed_logits[0, offset:offset + size], alone, rtol=1e-4, atol=1e-5)
            last = (offset, size, alone)
            offset += size
    assert offset == len(packed.items[0]["input_ids"])
    # Without the restarting positions attention would cross examples: the logits change.
    with torch.no_grad():
        start, size, alone = last
        crossing = model(input_ids=batch["input_ids"][:1]).logits[0, start:start + size]
    assert start > 0 and not torch.allclose(crossing, alone, atol=1e-3)


def test_packed_batches_count_their_real_tokens(tmp_path, lm_dir, lm):
    tokenizer = lm[1]
    collate = CausalLmCollator(tokenizer.pad_token_id)
    items = pack([{"input_ids": [7] * n, "labels": [7] * n} for n in (3, 4, 6)], 8)
    assert len(items) == 2 and TASK.batch_tokens(collate(items)) == 13
    assert TASK.batch_samples(collate(items)) == 3  # examples, not packs
    plain = collate([{"input_ids": [7] * 3, "labels": [7] * 3}, {"input_ids": [7] * 5, "labels": [7] * 5}])
    assert TASK.batch_tokens(plain) == 8 and TASK.batch_samples(plain) == 2


# ---------------------------------------------------------------- evaluation


def test_eval_loss_is_the_mean_over_answer_tokens_and_perplexity_its_exp(tmp_path, lm_dir, lm):
    from torch.utils.data import DataLoader

    from finetune_trainer.evaluation import evaluate

    model, tokenizer = lm
    train = write_jsonl(tmp_path / "train.jsonl", instruction_records(9))
    _, dataset = _prepare(causal_config(lm_dir, train, tmp_path, data={"validationFraction": 0.01}), tokenizer,
                          train=False)
    collate = CausalLmCollator(tokenizer.pad_token_id)
    metrics = evaluate(model, DataLoader(dataset, batch_size=4, collate_fn=collate), task=TASK, label_names=[])
    # One example at a time, weighted by its answer tokens: batching must not change it.
    total, count = 0.0, 0
    with torch.no_grad():
        for item in dataset.items:
            batch = collate([item])
            tokens = int((batch["labels"][:, 1:] != IGNORE).sum())
            total += float(model(**batch).loss) * tokens
            count += tokens
    assert metrics["eval_loss"] == pytest.approx(total / count, rel=1e-5)
    assert metrics["eval_perplexity"] == pytest.approx(math.exp(metrics["eval_loss"]), rel=1e-9)
    assert set(metrics) == set(TASK.eval_metrics)
