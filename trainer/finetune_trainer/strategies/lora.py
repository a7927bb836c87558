"""LoRA and QLoRA: peft adapters on the chosen linear layers (the task's head trained in
full beside them), and the 4-bit loading QLoRA needs."""

from __future__ import annotations

import logging
from typing import Any, Optional

from finetune_trainer.config import StrategySpec
from finetune_trainer.errors import TrainerError
from finetune_trainer.tasks import Task

log = logging.getLogger(__name__)

ALL_LINEAR = "all-linear"


def lora_targets(spec: StrategySpec, task: Task) -> list[str]:
    """`strategy.lora.targetModules`, else the task's default."""
    settings = spec.resolved().lora
    assert settings is not None
    return list(settings.target_modules or task.default_lora_targets)


def _linear_types() -> tuple[type, ...]:
    from torch import nn

    try:  # a 4-bit base (qlora) holds bitsandbytes' linear layers
        import bitsandbytes as bnb  # type: ignore[import-not-found]

        return (nn.Linear, bnb.nn.Linear4bit)
    except ImportError:
        return (nn.Linear,)


def apply_lora(model: Any, spec: StrategySpec, task: Task) -> Any:
    from peft import LoraConfig, TaskType, get_peft_model
    from torch import nn

    settings = spec.lora
    assert settings is not None
    targets = lora_targets(spec, task)
    # Linear layers (bitsandbytes' 4-bit ones under qlora), and the convolutions of
    # convolutional vision models (peft adapts both).
    linear = {name for name, module in model.named_modules() if isinstance(module, (*_linear_types(), nn.Conv2d))}
    head = task.head_modules(model)
    if ALL_LINEAR in targets:
        if len(targets) > 1:
            raise TrainerError(f"strategy.lora.targetModules: {ALL_LINEAR} stands alone (got {targets})")
        target_modules: Any = ALL_LINEAR
        matched = "every linear layer but the output layer"
    else:
        matches = [
            n
            for n in linear
            if any(n == t or n.endswith("." + t) for t in targets)
            and not any(n == h or n.startswith(h + ".") for h in head)
        ]
        if not matches:
            available = sorted({n.rsplit(".", 1)[-1] for n in linear})
            raise TrainerError(
                f"strategy.lora.targetModules {targets} match no linear layer of "
                f"{type(model).__name__}; available: {', '.join(available)} (or {ALL_LINEAR})"
            )
        target_modules, matched = targets, f"{len(matches)} modules"
    config = LoraConfig(
        task_type=TaskType(task.peft_task_type) if task.peft_task_type else None,
        r=settings.r,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=target_modules,
        modules_to_save=head or None,
    )
    wrapped = get_peft_model(model, config)
    log.info("lora: adapters on %s, head %s trained in full", matched, ", ".join(head) or "(none)")
    return wrapped


def loading_kwargs(strategy: StrategySpec, has_cuda: Optional[bool] = None) -> dict[str, Any]:
    """What `from_pretrained` needs for `strategy`: for `qlora` a 4-bit NF4
    bitsandbytes quantization config (double quantization, bf16 compute). A clear
    error when no CUDA device or no bitsandbytes is there."""
    if strategy.type != "qlora":
        return {}
    import torch

    if not (torch.cuda.is_available() if has_cuda is None else has_cuda):
        raise TrainerError("strategy.type qlora needs a CUDA GPU on every worker (bitsandbytes 4-bit loading); "
                           "this worker has none: give the workers GPUs or use strategy.type lora")
    try:
        import bitsandbytes  # type: ignore[import-not-found]  # noqa: F401
    except ImportError:
        raise TrainerError("strategy.type qlora needs the bitsandbytes package in the trainer image; install it "
                           "or use strategy.type lora") from None
    from transformers import BitsAndBytesConfig

    return {"quantization_config": BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.bfloat16)}


__all__ = ["ALL_LINEAR", "apply_lora", "loading_kwargs", "lora_targets"]
