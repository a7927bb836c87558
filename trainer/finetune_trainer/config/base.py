"""The base of every spec model, its cross-field rules, and the metric names a metric
field may take."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Literal, Optional

from pydantic import BaseModel, ConfigDict, model_validator
from pydantic.alias_generators import to_camel

# Metrics the trainer computes on the validation split; the only names a metric field
# may take.
# (eval_perplexity: causal-lm only; eval_accuracy and eval_f1: classification only.)
EVAL_METRICS = ("eval_loss", "eval_accuracy", "eval_f1", "eval_perplexity")
MetricName = Literal["eval_loss", "eval_accuracy", "eval_f1", "eval_perplexity"]
Mode = Literal["min", "max"]


@dataclass(frozen=True)
class Rule:
    """One cross-field rule of a spec model, written once for both checkers.

    The API server evaluates `cel` (the CRD carries it in the model's
    `x-kubernetes-validations`) and shows `message`; offline, `holds` is the same rule
    over the validated model, and the error is `message`, followed in parentheses by
    `detail` (what the offline check can say about the values) when there is one.
    """

    cel: str
    message: str
    holds: Callable[[Any], bool]
    detail: Optional[Callable[[Any], str]] = None

    def check(self, model: Any) -> None:
        """Raise the rule's message if `model` breaks it."""
        if not self.holds(model):
            raise ValueError(f"{self.message} ({self.detail(model)})" if self.detail else self.message)


class Spec(BaseModel):
    """Base for every spec model: camelCase in YAML, unknown fields rejected, and the
    model's `RULES` checked."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        use_attribute_docstrings=True,
        validate_default=True,
    )

    # The model's cross-field rules, in the order they are checked (and listed in the
    # CRD). Checks CEL cannot express are plain validators of the model.
    RULES: ClassVar[tuple[Rule, ...]] = ()

    @model_validator(mode="after")
    def _obey_rules(self) -> Any:
        # A model whose plain checks must come first overrides this validator (same
        # name) and calls check_rules itself.
        self.check_rules()
        return self

    def check_rules(self) -> None:
        """Raise the message of the first rule this object breaks."""
        for rule in self.RULES:
            rule.check(self)

    def to_dict(self) -> dict[str, Any]:
        """The object as it appears in YAML: camelCase, unset optionals left out."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")
