"""The causal-LM demo: deterministic chat data, and the tiny Llama and tokenizer the
project writes, loaded and trained on by the causal-lm task as `finetune run` would."""

from __future__ import annotations

import json

from finetune_trainer import demo_chat
from finetune_trainer.config import TrainingConfig
from finetune_trainer.tasks import get_task


def test_the_chat_demo_is_deterministic_and_every_record_has_an_answer():
    first, again = demo_chat.conversations(60, seed=3), demo_chat.conversations(60, seed=3)
    assert first == again and first != demo_chat.conversations(60, seed=4)
    assert all(r["messages"][-1]["role"] == "assistant" for r in first)
    assert any(r["messages"][0]["role"] == "system" for r in first)


def test_the_demo_model_trains_on_the_demo_data(tmp_path):
    paths = demo_chat.write_chat_splits(tmp_path / "data", total=40, seed=3)
    records = [json.loads(line) for line in paths["train"].read_text().splitlines()]
    assert len(records) == 34 and len(paths["validation"].read_text().splitlines()) == 6
    model_dir = demo_chat.write_tiny_causal_lm(tmp_path / "model", demo_chat.conversation_texts(records),
                                               hidden_size=32)
    config = TrainingConfig.model_validate({
        "model": {"source": str(model_dir), "task": "causal-lm"},
        "data": {"train": str(paths["train"]), "validation": str(paths["validation"]), "maxSeqLength": 96},
        "output": {"uri": str(tmp_path / "out")}})
    task = get_task(config)
    examples = task.load_examples(config)
    assert examples.train.format == "chat"  # detected
    model, tokenizer = task.load_model(config.model, [])
    dataset = task.dataset(examples.train, tokenizer, config, train=True)
    batch = task.collator(tokenizer)(dataset.items[:4])
    assert tokenizer.unk_token_id not in batch["input_ids"][batch["labels"] != -100].tolist()  # answers in vocab
    loss = model(**batch).loss
    loss.backward()
    assert float(loss) > 0
