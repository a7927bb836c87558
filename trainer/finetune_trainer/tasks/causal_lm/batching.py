"""Causal-LM examples as tensors: tokenising segments with loss masks, packing, batching
and the token-weighted evaluation counts.

Labels are the input ids where the loss applies and -100 elsewhere (the prompt, unless
`causalLm.trainOnPrompt`; padding); the model shifts them by one itself.

Packing (`causalLm.packing`) concatenates whole examples into sequences of at most
`data.maxSeqLength` tokens, each example's position ids starting at 0. Batches of
packs carry `position_ids` and no `attention_mask`: transformers then reads the
example boundaries from the position ids (a block-diagonal causal mask for eager and
SDPA attention, variable-length kernels for flash attention), so no token attends
across examples. The first label of every packed example is -100: it would be
predicted from the end of the previous example.
"""

from __future__ import annotations

import logging
import math
from typing import Any, Optional, Sequence

from finetune_trainer.config import TrainingConfig
from finetune_trainer.errors import ModelError
from finetune_trainer.tasks.causal_lm.formats import Records, Segment, chat_template, render

log = logging.getLogger(__name__)

IGNORE = -100


def encode(segments: Sequence[Segment], tokenizer: Any, max_length: int, train_on_prompt: bool,
           bos: bool = False) -> dict[str, list[int]]:
    """Input ids and labels of one rendered example, truncated to `max_length`."""
    ids: list[int] = []
    labels: list[int] = []
    if bos and tokenizer.bos_token_id is not None and tokenizer.bos_token_id != tokenizer.eos_token_id:
        ids.append(tokenizer.bos_token_id)
        labels.append(IGNORE)
    for text, trainable in segments:
        tokens = tokenizer(text, add_special_tokens=False)["input_ids"]
        ids += tokens
        labels += tokens if (trainable or train_on_prompt) else [IGNORE] * len(tokens)
    return {"input_ids": ids[:max_length], "labels": labels[:max_length]}


def pack(items: Sequence[dict[str, list[int]]], max_length: int) -> list[dict[str, list[int]]]:
    """Whole examples concatenated, in order, into sequences of at most `max_length`
    tokens, with per-example position ids and the first label of each example masked."""
    packs: list[dict[str, list[int]]] = []
    current: dict[str, list[int]] = {"input_ids": [], "labels": [], "position_ids": []}
    for item in items:
        size = len(item["input_ids"])
        if current["input_ids"] and len(current["input_ids"]) + size > max_length:
            packs.append(current)
            current = {"input_ids": [], "labels": [], "position_ids": []}
        current["input_ids"] += item["input_ids"]
        current["labels"] += [IGNORE] + item["labels"][1:]
        current["position_ids"] += list(range(size))
    if current["input_ids"]:
        packs.append(current)
    return packs


class CausalLmDataset:
    """Tokenised examples (or packs of them) of one split, ready for `CausalLmCollator`."""

    def __init__(self, items: list[dict[str, list[int]]], dropped: int = 0) -> None:
        self.items = items
        self.dropped = dropped

    def set_epoch(self, epoch: int) -> None:
        """Nothing varies by epoch (the loop's seeded order shuffles the items)."""

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, list[int]]:
        return self.items[index]

    @property
    def tokens(self) -> int:
        return sum(len(item["input_ids"]) for item in self.items)


def make_dataset(records: Records, tokenizer: Any, config: TrainingConfig, *, train: bool = False
                 ) -> CausalLmDataset:
    """One split's dataset: every record rendered and tokenised; examples whose loss
    would cover no token (an answer cut off by `data.maxSeqLength`) are left out and
    counted; the training split is packed when `causalLm.packing` is set."""
    spec = config.causal_lm_settings
    template = chat_template(tokenizer, config)
    if records.format == "chat" and template is None:
        raise ModelError("causalLm.chatTemplate: the tokenizer of model.source has no chat template, and chat data "
                         "needs one; give a Jinja template in causalLm.chatTemplate")
    max_length = config.data.max_seq_length
    items, dropped = [], 0
    for values in records.values:
        segments = render(values, records.format, tokenizer, template)
        item = encode(segments, tokenizer, max_length, spec.train_on_prompt, bos=template is None)
        if all(label == IGNORE for label in item["labels"][1:]):
            dropped += 1
            continue
        items.append(item)
    if dropped:
        log.warning("%d of %d examples have no answer token within data.maxSeqLength %d and are left out",
                    dropped, len(records), max_length)
    if train and spec.packing:
        packed = pack(items, max_length)
        log.info("packing: %d examples in %d sequences of up to %d tokens", len(items), len(packed), max_length)
        items = packed
    return CausalLmDataset(items, dropped)


class CausalLmCollator:
    """Pads a list of items to the longest: input ids with the pad token, labels with
    -100; plain examples get an attention mask, packs position ids (the padding is one
    more sequence of its own, so it never joins a real example)."""

    def __init__(self, pad_token_id: int) -> None:
        self.pad_token_id = pad_token_id

    def __call__(self, items: Sequence[dict[str, list[int]]]) -> dict[str, Any]:
        import torch

        longest = max(len(item["input_ids"]) for item in items)
        packed = "position_ids" in items[0]
        batch: dict[str, list[list[int]]] = {"input_ids": [], "labels": []}
        batch["position_ids" if packed else "attention_mask"] = []
        for item in items:
            size = len(item["input_ids"])
            pad = longest - size
            batch["input_ids"].append(item["input_ids"] + [self.pad_token_id] * pad)
            batch["labels"].append(item["labels"] + [IGNORE] * pad)
            if packed:
                batch["position_ids"].append(item["position_ids"] + list(range(pad)))
            else:
                batch["attention_mask"].append([1] * size + [0] * pad)
        return {key: torch.tensor(value, dtype=torch.long) for key, value in batch.items()}


def _padding_starts(batch: dict[str, Any]) -> list[Optional[int]]:
    """Per row of a packed batch, where the collator's padding sequence starts (None: no padding)."""
    positions, labels = batch["position_ids"], batch["labels"]
    starts: list[Optional[int]] = []
    for row in range(positions.shape[0]):
        last = int((positions[row] == 0).nonzero().flatten()[-1])
        starts.append(last if last > 0 and bool((labels[row, last:] == IGNORE).all()) else None)
    return starts


def batch_examples(batch: dict[str, Any]) -> int:
    """Examples in a batch: its rows, or for packs the examples packed into them."""
    if "position_ids" not in batch:
        return int(batch["input_ids"].shape[0])
    sequences = int((batch["position_ids"] == 0).sum())
    return sequences - sum(1 for start in _padding_starts(batch) if start is not None)


def batch_tokens(batch: dict[str, Any]) -> int:
    """Real (non-pad) tokens of a batch: the attention mask's ones, or for packs every
    position before the padding sequence the collator appended."""
    if "attention_mask" in batch:
        return int(batch["attention_mask"].sum())
    length = int(batch["position_ids"].shape[1])
    return sum(length if start is None else start for start in _padding_starts(batch))


# ---------------------------------------------------------------- evaluation

CAUSAL_LM_EVAL_METRICS = {
    "eval_loss": "Validation loss (mean over answer tokens)",
    "eval_perplexity": "Validation perplexity (exp of the loss)",
}


def evaluation_counts(model: Any, dataloader: Any, device: Any = "cpu") -> tuple[Any]:
    """(tensor [summed token loss, loss tokens],) over this rank's batches: the loss
    of every label that is not -100, so sums over ranks give the exact mean."""
    import torch
    import torch.nn.functional as F

    was_training = model.training
    model.eval()
    stats = torch.zeros(2, dtype=torch.float64, device=device)
    try:
        with torch.no_grad():
            for batch in dataloader:
                batch = {k: v.to(device) for k, v in batch.items()}
                labels = batch.pop("labels")
                logits = model(**batch).logits[:, :-1].float()
                targets = labels[:, 1:]
                keep = targets != IGNORE
                if bool(keep.any()):
                    stats[0] += F.cross_entropy(logits[keep], targets[keep], reduction="sum").double()
                    stats[1] += int(keep.sum())
    finally:
        model.train(was_training)
    return (stats,)


def metrics_from_counts(counts: tuple) -> dict[str, float]:
    (stats,) = counts
    loss_sum, count = float(stats[0]), int(stats[1])
    if count == 0:
        return {"eval_loss": float("nan"), "eval_perplexity": float("nan")}
    loss = loss_sum / count
    return {"eval_loss": loss, "eval_perplexity": math.exp(min(loss, 700.0))}


def generate_answers(model: Any, tokenizer: Any, prompts: Sequence[str], max_new_tokens: int,
                     device: Optional[Any] = None) -> list[str]:
    """Greedy answers of `model` to `prompts` (for the model card)."""
    import torch

    was_training = model.training
    model.eval()
    answers = []
    try:
        with torch.no_grad():
            for prompt in prompts:
                ids = tokenizer(prompt, add_special_tokens=False, return_tensors="pt")["input_ids"]
                if device is not None:
                    ids = ids.to(device)
                out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False,
                                     max_new_tokens=max_new_tokens, pad_token_id=tokenizer.pad_token_id,
                                     use_cache=True)
                answers.append(tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True).strip())
    finally:
        model.train(was_training)
    return answers


__all__ = ["CAUSAL_LM_EVAL_METRICS", "IGNORE", "CausalLmCollator", "CausalLmDataset", "batch_examples", "batch_tokens", "encode",
           "evaluation_counts", "generate_answers", "make_dataset", "metrics_from_counts", "pack"]
