"""`model.task: causal-lm`: supervised instruction tuning (and continued pre-training)
of a decoder-only language model.

- `formats`: the record layouts (chat, instruction, text), their checks with errors
  naming the row and field, and rendering a record into prompt and answer segments.
- `batching`: tokenising with the loss mask, packing, the collator, the
  token-weighted evaluation counts and greedy generation for the model card.

Settings are the `causalLm` block (`config.causal_lm_settings`). The model is an
`AutoModelForCausalLM`; its "head" is the output embedding, which LoRA leaves alone
(peft's `CAUSAL_LM` task type, adapters on every linear layer by default).
"""

from __future__ import annotations

import os
from typing import Any, Optional, Sequence

from finetune_trainer import splitting
from finetune_trainer.config import ModelSpec, OutputSpec, TrainingConfig
from finetune_trainer.modeling import load_pretrained
from finetune_trainer.sources import Columns
from finetune_trainer.tasks.base import CardFacts, SplitExamples, Task
from finetune_trainer.tasks.causal_lm import batching
from finetune_trainer.tasks.causal_lm.batching import CAUSAL_LM_EVAL_METRICS, CausalLmCollator, CausalLmDataset
from finetune_trainer.tasks.causal_lm.formats import CausalRows, Records, chat_template, prompt_text, resolve_layout


def _records(rows: list[splitting.Row], fmt: str) -> Records:
    return Records(fmt, [row.values for row in rows], [row.position for row in rows])


def load_examples(config: TrainingConfig, *, rank: int = 0, world_size: int = 1, shard_eval: bool = True
                  ) -> SplitExamples:
    """Read, check, split and shard the records of `config.data` for one rank."""
    layout = resolve_layout(config)
    rows = splitting.split_rows(config, CausalRows(config, layout), rank=rank, world_size=world_size,
                                shard_eval=shard_eval)
    test = _records(rows.test, layout.format) if rows.test is not None else None
    return SplitExamples(_records(rows.train, layout.format), _records(rows.validation, layout.format), test, [],
                         rows.report)


def load_test(config: TrainingConfig) -> Optional[Records]:
    """The whole test split, read from `data.test` alone; None without a test source."""
    if not config.data.test:
        return None
    # `auto` is told from the columns of the test source itself, so the training data
    # is not read again.
    layout = resolve_layout(config.model_copy(update={"data": config.data.model_copy(update={"train": config.data.test})}))
    rows = splitting.scan(config.data.test, config.data, "data.test", CausalRows(config, layout), rank=0,
                          world_size=1, seed=config.data.shuffle_seed, output=config.output,
                          report=splitting.DataReport())
    return _records(rows, layout.format)


class CausalLm(Task):
    """`model.task: causal-lm`: next-token prediction, the loss on the answers."""

    name = "causal-lm"
    peft_task_type = "CAUSAL_LM"
    eval_metrics = CAUSAL_LM_EVAL_METRICS
    default_metric = "eval_loss"
    default_lora_targets = ("all-linear",)

    def columns(self, config: TrainingConfig) -> Columns:
        return resolve_layout(config).columns

    def load_examples(self, config: TrainingConfig, *, rank: int = 0, world_size: int = 1,
                      shard_eval: bool = True) -> SplitExamples:
        return load_examples(config, rank=rank, world_size=world_size, shard_eval=shard_eval)

    def load_test(self, config: TrainingConfig, label_names: Sequence[str]) -> Optional[Records]:
        return load_test(config)

    def dataset(self, examples: Records, processor: Any, config: TrainingConfig, *,
                train: bool = False) -> CausalLmDataset:
        return batching.make_dataset(examples, processor, config, train=train)

    def collator(self, processor: Any) -> CausalLmCollator:
        return CausalLmCollator(processor.pad_token_id)

    def batch_samples(self, batch: dict[str, Any]) -> int:
        return batching.batch_examples(batch)  # examples, also when packed (not packs)

    def batch_tokens(self, batch: dict[str, Any]) -> int:
        return batching.batch_tokens(batch)

    def load_model(self, model: ModelSpec, label_names: Sequence[str], dropout: Optional[float] = None, *,
                   output: Optional[OutputSpec] = None, cache_dir: Optional[str | os.PathLike] = None,
                   load_kwargs: Optional[dict[str, Any]] = None) -> tuple[Any, Any]:
        from transformers import AutoModelForCausalLM

        loaded, tokenizer = load_pretrained(model, AutoModelForCausalLM, purpose="causal language modelling",
                                            head="output layer", dropout=dropout, output=output,
                                            cache_dir=cache_dir, load_kwargs=load_kwargs)
        # No key/value cache while training: it is unused, and with one transformers
        # would not read packed examples' boundaries from their position ids.
        loaded.config.use_cache = False
        return loaded, tokenizer

    def head_modules(self, model: Any) -> list[str]:
        return []

    def evaluation_counts(self, model: Any, dataloader: Any, device: Any, label_names: Sequence[str]) -> tuple:
        return batching.evaluation_counts(model, dataloader, device)

    def metrics_from_counts(self, counts: tuple) -> dict[str, float]:
        return batching.metrics_from_counts(counts)

    def card(self, config: TrainingConfig, label_names: Sequence[str]) -> CardFacts:
        spec = config.causal_lm_settings
        loss = "the whole sequence" if spec.train_on_prompt else "the answer tokens only (prompt labels -100)"
        return CardFacts(
            pipeline_tag="text-generation",
            summary="for text generation (instruction tuning of a causal language model).",
            data_lines=(f"- record layout: {spec.format}; max sequence length {config.data.max_seq_length}; "
                        f"packing {'on' if spec.packing else 'off'}", f"- loss on {loss}"),
        )

    def card_sections(self, config: TrainingConfig, model: Any, processor: Any, examples: SplitExamples,
                      base_model: Any = None) -> list[str]:
        spec = config.causal_lm_settings
        if not spec.sample_generations or base_model is None:
            return []
        records: Records = examples.validation
        template = chat_template(processor, config)
        prompts = [p for p in (prompt_text(v, records.format, processor, template) for v in records.values)
                   if p is not None][: spec.sample_generations]
        if not prompts:
            return []
        tuned = batching.generate_answers(model, processor, prompts, spec.max_new_tokens)
        base = batching.generate_answers(base_model, processor, prompts, spec.max_new_tokens)
        lines = ["## Sample generations", "",
                 f"Greedy answers to {len(prompts)} held-out validation prompts (at most {spec.max_new_tokens} "
                 "new tokens).", "", "| prompt | base model | fine-tuned |", "|---|---|---|"]

        def cell(text: str) -> str:
            return " ".join(text.split()).replace("|", "\\|")[:300] or "(empty)"

        lines += [f"| {cell(p)} | {cell(b)} | {cell(t)} |" for p, b, t in zip(prompts, base, tuned)]
        return lines

    def wants_base_model_for_card(self, config: TrainingConfig) -> bool:
        return config.causal_lm_settings.sample_generations > 0


__all__ = ["CausalLm", "load_examples"]
