"""Fine-tuning strategies on image classifiers (ViT, ResNet, ConvNeXt, Swin), asserted
as for text: by what real optimizer steps change (frozen tensors bit-identical)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from finetune_trainer.config import StrategySpec, TrainingSpec
from finetune_trainer.optim import build_optimizer
from finetune_trainer.strategies import apply_strategy, export_model, parameter_groups
from finetune_trainer.tasks import get_task
from image_helpers import ARCHITECTURES

TASK = get_task("image-classification")
LABELS = ["zero", "one", "two"]
LORA_TARGETS = {"vit": ["q_proj", "v_proj"], "swin": ["q_proj", "v_proj"], "convnext": ["pwconv1"],
                "resnet": ["convolution"]}
STACKS = {"vit": "vit.layers", "swin": "swin.encoder.layers", "convnext": "convnext.encoder.stages",
          "resnet": "resnet.encoder.stages"}
EMBEDDINGS = {"vit": "vit.embeddings.", "swin": "swin.embeddings.", "convnext": "convnext.embeddings.",
              "resnet": "resnet.embedder."}


def _load(model_dir: Path):
    from finetune_trainer.config import ModelSpec

    return TASK.load_model(ModelSpec(source=str(model_dir), task="image-classification"), LABELS)


def _batch() -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return {"pixel_values": torch.randn(6, 3, 16, 16, generator=generator), "labels": torch.tensor([0, 1, 2] * 2)}


def _snapshot(model) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def _train(model, steps: int = 3) -> None:
    optimizer = build_optimizer(model, TrainingSpec(learningRate=1e-2, weightDecay=0.0))
    batch = _batch()
    model.train()
    for _ in range(steps):
        optimizer.zero_grad()
        model(**batch).loss.backward()
        optimizer.step()


def _changed(before: dict[str, torch.Tensor], model) -> set[str]:
    return {name for name, p in model.named_parameters() if not torch.equal(before[name], p.detach())}


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_the_head_is_replaced_for_the_jobs_labels(image_model_dir, architecture: str) -> None:
    model, processor = _load(image_model_dir(architecture))
    assert model.config.id2label == dict(enumerate(LABELS)) and model.config.num_labels == 3
    assert TASK.head_modules(model) == ["classifier"]
    assert model(pixel_values=_batch()["pixel_values"]).logits.shape == (6, 3)  # the checkpoint's head had 10
    assert type(processor).__name__.startswith(("ViTImageProcessor", "ConvNextImageProcessor"))


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_full_changes_every_parameter(image_model_dir, architecture: str) -> None:
    model, _ = _load(image_model_dir(architecture))
    controller = apply_strategy(model, StrategySpec(type="full"), TASK)
    before = _snapshot(controller.model)
    _train(controller.model)
    assert _changed(before, controller.model) == set(before)


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_partial_freezes_the_embeddings_and_the_lowest_stage(image_model_dir, architecture: str) -> None:
    model, _ = _load(image_model_dir(architecture))
    spec = StrategySpec.model_validate({"type": "partial", "partial": {"freezeEmbeddings": True, "freezeLayers": 1}})
    controller = apply_strategy(model, spec, TASK)
    before = _snapshot(model)
    _train(model)
    frozen = {n for n in before if n.startswith((EMBEDDINGS[architecture], f"{STACKS[architecture]}.0."))}
    assert frozen and not _changed(before, model) & frozen  # bit-identical
    assert _changed(before, model) == set(before) - frozen
    assert controller.trainable_parameters() == sorted(set(before) - frozen)


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_feature_extraction_trains_only_the_head(image_model_dir, architecture: str) -> None:
    model, _ = _load(image_model_dir(architecture))
    apply_strategy(model, StrategySpec(type="featureExtraction"), TASK)
    before = _snapshot(model)
    _train(model)
    assert _changed(before, model) == {n for n in before if n.startswith("classifier.")}


def test_gradual_unfreezing_opens_the_stages_top_down(image_model_dir) -> None:
    model, _ = _load(image_model_dir("resnet"))
    spec = StrategySpec.model_validate({"type": "gradualUnfreezing",
                                        "gradualUnfreezing": {"every": 1, "unit": "step", "unfreezeEmbeddings": True}})
    controller = apply_strategy(model, spec, TASK)
    groups = parameter_groups(model, TASK)
    assert len(groups.layers) == 2
    head = {n for n in _snapshot(model) if n.startswith("classifier.")}
    assert set(controller.trainable_parameters()) == head
    before = _snapshot(model)
    _train(model, steps=1)
    assert _changed(before, model) == head
    assert controller.on_step_end(1)  # the top stage opens
    top = {n for n in before if n.startswith("resnet.encoder.stages.1.")}
    before = _snapshot(model)
    _train(model, steps=1)
    assert _changed(before, model) == head | top
    assert controller.on_step_end(2) and controller.on_step_end(3)  # the bottom stage, then the stem
    assert set(controller.trainable_parameters()) == set(before)


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_lora_trains_only_adapters_and_head_and_exports_a_plain_model(image_model_dir, tmp_path: Path,
                                                                      architecture: str) -> None:
    from transformers import AutoImageProcessor, AutoModelForImageClassification

    model, processor = _load(image_model_dir(architecture))
    spec = StrategySpec.model_validate({"type": "lora", "lora": {"r": 4, "targetModules": LORA_TARGETS[architecture],
                                                                 "mergeOnExport": True}})
    controller = apply_strategy(model, spec, TASK)
    wrapped = controller.model
    before = _snapshot(wrapped)
    _train(wrapped)
    changed = _changed(before, wrapped)
    assert changed and all("lora_" in n or ".classifier." in n for n in changed)
    assert any("lora_" in n for n in changed) and any(".classifier." in n for n in changed)
    base = {n for n in before if "lora_" not in n and "classifier" not in n}
    assert base and not changed & base  # the backbone stays bit-identical
    wrapped.eval()
    pixels = _batch()["pixel_values"]
    with torch.no_grad():
        expected = wrapped(pixel_values=pixels).logits
    export_model(wrapped, spec, tmp_path / "model", processor)
    loaded = AutoModelForImageClassification.from_pretrained(tmp_path / "model").eval()
    AutoImageProcessor.from_pretrained(tmp_path / "model")
    with torch.no_grad():
        assert torch.allclose(loaded(pixel_values=pixels).logits, expected, atol=1e-5)
    assert loaded.config.id2label == dict(enumerate(LABELS))
