"""`strategy`: which parameters are fine-tuned."""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import Field, model_validator

from finetune_trainer.config.base import Rule, Spec

StrategyType = Literal["full", "partial", "featureExtraction", "gradualUnfreezing", "lora", "qlora"]


class PartialSpec(Spec):
    """What `partial` fine-tuning freezes."""

    freeze_embeddings: bool = True
    """Freeze the embedding layer."""

    freeze_layers: int = Field(default=0, ge=0, le=1000)
    """Freeze the lowest N transformer layers."""

    freeze_patterns: list[str] = Field(default_factory=list, max_length=64)
    """Also freeze parameters whose name matches any of these regular expressions."""

    RULES = (
        Rule("self.freezeEmbeddings || self.freezeLayers > 0"
             " || (has(self.freezePatterns) && size(self.freezePatterns) > 0)",
             "partial must freeze something: freezeEmbeddings, freezeLayers or freezePatterns",
             lambda s: bool(s.freeze_embeddings or s.freeze_layers or s.freeze_patterns)),
    )

    # CEL cannot tell whether a string is a valid regular expression.
    @model_validator(mode="after")
    def _patterns_compile(self) -> "PartialSpec":
        import re

        for pattern in self.freeze_patterns:
            try:
                re.compile(pattern)
            except re.error as err:
                raise ValueError(f"freezePatterns: {pattern!r} is not a valid regular expression: {err}")
        return self


class GradualUnfreezingSpec(Spec):
    """Start with only the head trainable, then unfreeze one more layer from the top
    every `every` units."""

    every: int = Field(default=1, ge=1)
    """How many units between two unfreezing steps."""

    unit: Literal["epoch", "step"] = "epoch"
    """Whether `every` counts epochs or optimizer steps."""

    unfreeze_embeddings: bool = False
    """Unfreeze the embeddings too once every layer is unfrozen."""


class LoraSpec(Spec):
    """Low-rank adapters (peft LoRA)."""

    r: int = Field(default=8, ge=1, le=1024)
    """Rank of the adapter matrices."""

    alpha: float = Field(default=16.0, gt=0)
    """Scaling numerator; the update is scaled by alpha / r."""

    dropout: float = Field(default=0.05, ge=0.0, lt=1.0)
    """Dropout on the adapter input."""

    target_modules: Optional[list[str]] = Field(default=None, min_length=1, max_length=64)
    """Names (suffixes) of the linear modules that get adapters, or `[all-linear]` for
    every linear layer but the output layer. Default: the task's, `[query, value]`
    for sequence classification (BERT's names) and `[all-linear]` for causal-lm."""

    merge_on_export: bool = True
    """Export the adapter merged into the base as a plain `save_pretrained` model that
    loads without peft (true), or only the adapter, loadable with peft on top of the
    base model (false). `qlora` always exports the adapter alone (its base is 4-bit)."""


class StrategySpec(Spec):
    """Which parameters are fine-tuned."""

    type: StrategyType = "full"
    """`full`, `partial`, `featureExtraction`, `gradualUnfreezing`, `lora`, or `qlora`
    (LoRA on a 4-bit base loaded with bitsandbytes; needs a CUDA GPU per worker)."""

    partial: Optional[PartialSpec] = None
    """Settings for `partial`."""

    gradual_unfreezing: Optional[GradualUnfreezingSpec] = None
    """Settings for `gradualUnfreezing`."""

    lora: Optional[LoraSpec] = None
    """Settings for `lora` and `qlora`."""

    RULES = (
        *(Rule(f"!has(self.{name}) || self.type == '{name}'",
               f"{name} settings are allowed only with type {name}",
               lambda s, name=name, field=field: getattr(s, field) is None or s.type == name,
               lambda s: f"type is {s.type}")
          for field, name in (("partial", "partial"), ("gradual_unfreezing", "gradualUnfreezing"))),
        Rule("!has(self.lora) || self.type == 'lora' || self.type == 'qlora'",
             "lora settings are allowed only with type lora or qlora",
             lambda s: s.lora is None or s.type in ("lora", "qlora"),
             lambda s: f"type is {s.type}"),
    )

    def resolved(self) -> "StrategySpec":
        """A copy whose settings block for `type` is filled with its defaults."""
        defaults = {"partial": PartialSpec, "gradual_unfreezing": GradualUnfreezingSpec, "lora": LoraSpec}
        block = self.settings_block
        if block in defaults and getattr(self, block) is None:
            return self.model_copy(update={block: defaults[block]()})
        return self

    @property
    def settings_block(self) -> Optional[str]:
        """The attribute of the settings block `type` reads (`qlora` reads `lora`), if
        any; its manifest key is `settings_key`."""
        blocks = {"partial": "partial", "gradualUnfreezing": "gradual_unfreezing", "lora": "lora", "qlora": "lora"}
        return blocks.get(self.type)

    @property
    def settings_key(self) -> Optional[str]:
        """The manifest key of the settings block `type` reads, if any."""
        block = self.settings_block
        return type(self).model_fields[block].alias if block else None
