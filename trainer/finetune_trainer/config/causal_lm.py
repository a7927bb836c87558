"""`causalLm`: how a causal language model is instruction-tuned (`model.task: causal-lm`).

The block sits beside `data` rather than inside it because `data.format` already
names the *file* format (csv, jsonl, parquet); `causalLm.format` names the *record*
layout inside those files (chat messages, instruction/input/output, plain text).
The plain-text layout reads `data.textColumn`.

The rules that tie the block to the rest of the config (only with `causal-lm`; no
labels; no head-only strategies; the metrics a causal LM reports) are declared here
once, as CEL for the CRD and as a Python check for `TrainingConfig`'s validator.
"""

from __future__ import annotations

from typing import Any, Literal, Optional

from pydantic import Field

from finetune_trainer.config.base import Rule, Spec

CAUSAL_LM_TASK = "causal-lm"
CausalLmFormat = Literal["auto", "chat", "instruction", "text"]
CAUSAL_LM_METRICS = ("eval_loss", "eval_perplexity")
"""The metrics a causal LM reports (what `tune.metric` and early stopping may watch)."""
CLASSIFIER_ONLY_STRATEGIES = ("featureExtraction", "gradualUnfreezing")
"""Strategies that train a task head first: a causal LM's head is its output
embedding (often tied to the input embedding), so they do not apply."""


class CausalLmSpec(Spec):
    """Instruction tuning of a causal language model: the record layout, the prompt
    template, what the loss covers and whether short examples are packed."""

    format: CausalLmFormat = "auto"
    """Record layout: `chat` (a `messages` list of {role, content}, roles system, user
    and assistant), `instruction` (instruction / optional input / output columns, the
    alpaca layout), `text` (one `data.textColumn` column, for continued pre-training),
    or `auto`: detected from the training data's columns in that order."""

    messages_column: str = Field(default="messages", min_length=1)
    """Column holding the chat messages (`chat`)."""

    instruction_column: str = Field(default="instruction", min_length=1)
    """Column holding the instruction (`instruction`)."""

    input_column: str = Field(default="input", min_length=1)
    """Column holding the optional input that follows the instruction (`instruction`);
    the data may leave the column out entirely."""

    output_column: str = Field(default="output", min_length=1)
    """Column holding the wanted answer (`instruction`)."""

    chat_template: Optional[str] = Field(default=None, min_length=1, max_length=65536)
    """A Jinja chat template (the transformers `chat_template` format) used when the
    tokenizer has none. `chat` data needs a template from one of the two;
    `instruction` data without one is laid out as `### Instruction:` / `### Input:` /
    `### Response:`."""

    train_on_prompt: bool = False
    """Train on the whole sequence. Off (the default), the loss covers only the
    assistant / output tokens and the prompt's labels are -100."""

    packing: bool = False
    """Pack short training examples into sequences of `data.maxSeqLength` tokens.
    Position ids restart at every example, so attention does not cross examples (the
    model builds a block-diagonal causal mask from them). Evaluation never packs."""

    sample_generations: int = Field(default=0, ge=0, le=16)
    """Greedy answers to this many held-out validation prompts, by the base model and
    the fine-tuned one, written into the model card (0: none)."""

    max_new_tokens: int = Field(default=32, ge=1, le=1024)
    """Longest answer generated for the model card."""


# Rules on TrainingConfig (and FineTuneJobSpec, which extends it): what only a causal
# LM, or only a classifier, can use.
_IS_CAUSAL = f"self.model.task == '{CAUSAL_LM_TASK}'"
_STRATEGY = "(has(self.strategy) ? self.strategy.type : 'full')"


def _causal(config: Any) -> bool:
    return config.model.task == CAUSAL_LM_TASK


def _early_metric(config: Any) -> Optional[str]:
    return config.training.early_stopping.metric if config.training.early_stopping else None


CAUSAL_LM_RULES: tuple[Rule, ...] = (
    Rule(f"!has(self.causalLm) || {_IS_CAUSAL}", "causalLm settings are allowed only with model.task causal-lm",
         lambda c: c.causal_lm is None or _causal(c), lambda c: f"model.task is {c.model.task}"),
    Rule(f"!({_IS_CAUSAL}) || (!has(self.model.labels) && !has(self.model.numLabels))",
         "model.labels and model.numLabels do not apply to model.task causal-lm (it predicts tokens, not classes)",
         lambda c: not _causal(c) or (c.model.labels is None and c.model.num_labels is None)),
    Rule(f"!({_IS_CAUSAL}) || !({_STRATEGY} in {list(CLASSIFIER_ONLY_STRATEGIES)})",
         "strategy.type featureExtraction and gradualUnfreezing need a classification head; model.task causal-lm "
         "allows full, partial, lora and qlora",
         lambda c: not _causal(c) or c.strategy.type not in CLASSIFIER_ONLY_STRATEGIES,
         lambda c: f"strategy.type is {c.strategy.type}"),
    Rule(f"!({_IS_CAUSAL}) || !has(self.tune) || (has(self.tune.metric) ? self.tune.metric : 'eval_loss')"
         f" in {list(CAUSAL_LM_METRICS)}",
         "tune.metric of model.task causal-lm must be eval_loss or eval_perplexity",
         lambda c: not _causal(c) or c.tune is None or c.tune.metric in CAUSAL_LM_METRICS,
         lambda c: f"got {c.tune.metric}"),
    Rule(f"{_IS_CAUSAL} || !has(self.tune) || !has(self.tune.metric) || self.tune.metric != 'eval_perplexity'",
         "tune.metric eval_perplexity needs model.task causal-lm",
         lambda c: _causal(c) or c.tune is None or c.tune.metric != "eval_perplexity",
         lambda c: f"model.task is {c.model.task}; allowed: eval_loss, eval_accuracy, eval_f1"),
    Rule(f"!({_IS_CAUSAL}) || !has(self.training) || !has(self.training.earlyStopping)"
         f" || (has(self.training.earlyStopping.metric) ? self.training.earlyStopping.metric : 'eval_loss')"
         f" in {list(CAUSAL_LM_METRICS)}",
         "training.earlyStopping.metric of model.task causal-lm must be eval_loss or eval_perplexity",
         lambda c: not _causal(c) or _early_metric(c) in (None, *CAUSAL_LM_METRICS),
         lambda c: f"got {_early_metric(c)}"),
    Rule(f"{_IS_CAUSAL} || !has(self.training) || !has(self.training.earlyStopping)"
         " || !has(self.training.earlyStopping.metric) || self.training.earlyStopping.metric != 'eval_perplexity'",
         "training.earlyStopping.metric eval_perplexity needs model.task causal-lm",
         lambda c: _causal(c) or _early_metric(c) != "eval_perplexity",
         lambda c: f"model.task is {c.model.task}; allowed: eval_loss, eval_accuracy, eval_f1"),
)


__all__ = ["CAUSAL_LM_METRICS", "CAUSAL_LM_RULES", "CAUSAL_LM_TASK", "CLASSIFIER_ONLY_STRATEGIES",
           "CausalLmFormat", "CausalLmSpec"]
