"""`model`: the pre-trained model to start from."""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import Field, model_validator

from finetune_trainer.config.base import Rule, Spec


class ModelSpec(Spec):
    """The pre-trained model to start from."""

    source: str = Field(min_length=1)
    """Where the weights come from: a Hugging Face hub id (`org/name`), a local path,
    or an `s3://bucket/prefix` URI holding a `save_pretrained` folder."""

    revision: Optional[str] = None
    """Hub revision (branch, tag or commit) when `source` is a hub id."""

    allow_download: bool = False
    """Let the driver download a hub-id `source` from the Hugging Face hub: once, into
    the job's output folder (`<uri>/<job>/base-model/`), from where every worker loads
    it. Off (the default), a hub id must already be in the image's model cache."""

    load_dtype: Literal["float32", "bfloat16", "float16", "auto"] = "float32"
    """The dtype the weights are loaded in. `float32` (the default) keeps fp32 master
    weights whatever the checkpoint holds, and `training.precision` bf16/fp16 then runs
    the forward pass under autocast. `bfloat16`/`float16` load (and train) the weights
    in that half precision, with no fp32 copy, to save memory; `auto` keeps the
    checkpoint's own dtype. Half-precision weights cannot train with
    `training.precision: fp16` (its gradient scaler needs fp32 gradients)."""

    task: Literal["sequence-classification", "image-classification", "causal-lm"] = "sequence-classification"
    """What the model is fine-tuned for: `sequence-classification` (a class for a text
    or text pair), `image-classification` (a class for an image; see the `image`
    block) or `causal-lm` (instruction tuning or continued pre-training of a
    decoder-only language model; its settings are the `causalLm` block)."""

    num_labels: Optional[int] = Field(default=None, ge=2, le=10000)
    """Number of classes. Optional when `labels` is given or labels are inferred from
    the training data."""

    labels: Optional[list[str]] = Field(
        default=None, min_length=2, max_length=10000, json_schema_extra={"x-kubernetes-list-type": "set"}
    )
    """Class names, in label-id order, each listed once. Data labels may be these
    names or their integer ids."""

    RULES = (
        Rule("!has(self.labels) || !has(self.numLabels) || size(self.labels) == self.numLabels",
             "numLabels must equal the number of labels when both are given",
             lambda s: s.labels is None or s.num_labels is None or len(s.labels) == s.num_labels,
             lambda s: f"numLabels={s.num_labels}, {len(s.labels)} labels"),
    )

    # The API server checks uniqueness through the list type (a set), not by a rule.
    @model_validator(mode="after")
    def _labels_unique(self) -> "ModelSpec":
        if self.labels is not None and len(set(self.labels)) != len(self.labels):
            raise ValueError("labels must be unique")
        return self

    @property
    def num_classes(self) -> Optional[int]:
        return len(self.labels) if self.labels else self.num_labels
