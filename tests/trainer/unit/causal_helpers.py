"""Tiny causal-LM fixtures: chat/instruction/text records and a random 2-layer Llama
(hidden size 32) with a word-level tokenizer and chat template, built by the project's
own `demo_chat.write_tiny_causal_lm` in well under a second."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional, Sequence

TOPICS = ["billing", "login", "shipping", "refund", "technical"]


def chat_records(n: int) -> list[dict[str, Any]]:
    """`n` distinct chat records; every third has a system prompt, every fourth two turns."""
    records = []
    for i in range(n):
        topic = TOPICS[i % len(TOPICS)]
        messages = [{"role": "user", "content": f"help with my {topic} problem number {i}"},
                    {"role": "assistant", "content": f"this is a {topic} question ."}]
        if i % 4 == 3:
            messages += [{"role": "user", "content": "thanks , anything else"},
                         {"role": "assistant", "content": "no , that is all ."}]
        if i % 3 == 0:
            messages.insert(0, {"role": "system", "content": "you route support messages"})
        records.append({"messages": messages})
    return records


def instruction_records(n: int, with_input: bool = True) -> list[dict[str, Any]]:
    rows = []
    for i in range(n):
        row = {"instruction": f"name the team for problem {i}", "output": f"the {TOPICS[i % 5]} team ."}
        if with_input:
            row["input"] = f"my {TOPICS[i % 5]} is broken" if i % 2 else ""
        rows.append(row)
    return rows


def text_records(n: int) -> list[dict[str, Any]]:
    return [{"text": f"the {TOPICS[i % 5]} team handles problem {i} ."} for i in range(n)]


def vocabulary_texts() -> list[str]:
    texts = [m["content"] for r in chat_records(40) for m in r["messages"]]
    texts += [v for r in instruction_records(40) for v in r.values()] + [r["text"] for r in text_records(40)]
    texts += ["### instruction : input : response : team name for problem broken is my"]
    return texts


def make_tiny_causal_lm(directory: Path, seed: int = 0, tie_embeddings: bool = False) -> Path:
    from finetune_trainer.demo_chat import write_tiny_causal_lm

    return write_tiny_causal_lm(directory, vocabulary_texts(), hidden_size=32, layers=2, seed=seed,
                                tie_embeddings=tie_embeddings, max_positions=256)


def write_jsonl(path: Path, records: Sequence[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def causal_config(model: Path, train: Path, tmp: Path, validation: Optional[Path] = None, **blocks: Any):
    """A causal-LM TrainingConfig; `blocks` are top-level sections (causalLm, strategy, ...)."""
    from finetune_trainer.config import TrainingConfig

    raw: dict[str, Any] = {"model": {"source": str(model), "task": "causal-lm"},
                           "data": {"train": str(train), "maxSeqLength": 64},
                           "output": {"uri": str(tmp / "out")}}
    if validation is not None:
        raw["data"]["validation"] = str(validation)
    for key, value in blocks.items():
        raw[key] = {**raw.get(key, {}), **value}
    return TrainingConfig.model_validate(raw)
