"""The base of every spec model, and the metric names a metric field may take."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

# Metrics the trainer computes on the validation split; the only names a metric field
# may take.
# (eval_perplexity: causal-lm only; eval_accuracy and eval_f1: classification only.)
EVAL_METRICS = ("eval_loss", "eval_accuracy", "eval_f1", "eval_perplexity")
MetricName = Literal["eval_loss", "eval_accuracy", "eval_f1", "eval_perplexity"]
Mode = Literal["min", "max"]


class Spec(BaseModel):
    """Base for every spec model: camelCase in YAML, unknown fields rejected."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        use_attribute_docstrings=True,
        validate_default=True,
    )

    # (CEL expression, message) pairs, evaluated by the API server on this object.
    CEL_RULES: ClassVar[tuple[tuple[str, str], ...]] = ()

    def to_dict(self) -> dict[str, Any]:
        """The object as it appears in YAML: camelCase, unset optionals left out."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")
