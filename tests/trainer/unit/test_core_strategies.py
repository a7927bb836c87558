"""Fine-tuning strategies, asserted by what real optimizer steps change."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
from finetune_trainer.config import StrategySpec, TrainingSpec
from finetune_trainer.errors import TrainerError
from finetune_trainer.optim import build_optimizer
from finetune_trainer.strategies import apply_strategy, export_model, parameter_groups


def _load(path: Path):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    return AutoModelForSequenceClassification.from_pretrained(path), AutoTokenizer.from_pretrained(path)


def _batch(tokenizer):
    texts = ["a great movie", "the worst film ever", "boring plot", "wonderful acting and music"]
    batch = tokenizer(texts, padding=True, return_tensors="pt")
    batch["labels"] = torch.tensor([1, 0, 0, 1])
    return batch


def _snapshot(model) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def _train(model, tokenizer, steps: int = 3) -> None:
    optimizer = build_optimizer(model, TrainingSpec(learningRate=1e-2))
    batch = _batch(tokenizer)
    model.train()
    for _ in range(steps):
        optimizer.zero_grad()
        model(**batch).loss.backward()
        optimizer.step()


def _changed(before: dict[str, torch.Tensor], model) -> set[str]:
    return {name for name, p in model.named_parameters() if not torch.equal(before[name], p.detach())}


def test_full_changes_every_parameter(tiny_model_dir) -> None:
    model, tokenizer = _load(tiny_model_dir())
    controller = apply_strategy(model, StrategySpec(type="full"))
    before = _snapshot(controller.model)
    _train(controller.model, tokenizer)
    assert _changed(before, controller.model) == set(before)


def test_partial_freezes_embeddings_and_lowest_layers(tiny_model_dir) -> None:
    model, tokenizer = _load(tiny_model_dir(num_layers=3))
    spec = StrategySpec.model_validate(
        {
            "type": "partial",
            "partial": {
                "freezeEmbeddings": True,
                "freezeLayers": 2,
                "freezePatterns": [r"pooler\.dense\.bias"],
            },
        }
    )
    controller = apply_strategy(model, spec)
    before = _snapshot(model)
    _train(model, tokenizer)
    changed = _changed(before, model)
    frozen = {
        n
        for n in before
        if n.startswith(("bert.embeddings.", "bert.encoder.layer.0.", "bert.encoder.layer.1."))
    }
    frozen.add("bert.pooler.dense.bias")
    assert frozen and not changed & frozen
    assert changed == set(before) - frozen
    assert controller.trainable_parameters() == sorted(set(before) - frozen)


def test_partial_rejects_more_layers_than_the_model_has(tiny_model_dir) -> None:
    model, _ = _load(tiny_model_dir(num_layers=2))
    spec = StrategySpec.model_validate({"type": "partial", "partial": {"freezeLayers": 5}})
    with pytest.raises(TrainerError, match=r"strategy.partial.freezeLayers is 5.*only 2 layers"):
        apply_strategy(model, spec)


def test_feature_extraction_trains_only_the_head(tiny_model_dir) -> None:
    model, tokenizer = _load(tiny_model_dir())
    apply_strategy(model, StrategySpec(type="featureExtraction"))
    before = _snapshot(model)
    _train(model, tokenizer)
    assert _changed(before, model) == {"classifier.weight", "classifier.bias"}


@pytest.mark.parametrize("unit", ["epoch", "step"])
def test_gradual_unfreezing_grows_the_trainable_set_on_schedule(tiny_model_dir, caplog, unit: str) -> None:
    model, tokenizer = _load(tiny_model_dir(num_layers=3))
    spec = StrategySpec.model_validate(
        {
            "type": "gradualUnfreezing",
            "gradualUnfreezing": {"every": 2, "unit": unit, "unfreezeEmbeddings": True},
        }
    )
    caplog.set_level(logging.INFO, logger="finetune_trainer.strategies")
    controller = apply_strategy(model, spec)
    groups = parameter_groups(model)
    head = set(groups.head)
    expected_after = {  # units completed -> trainable set
        0: head,
        1: head,
        2: head | set(groups.other) | set(groups.layers[2]),
        3: head | set(groups.other) | set(groups.layers[2]),
        4: head | set(groups.other) | set(groups.layers[2]) | set(groups.layers[1]),
        6: head | set(groups.other) | set().union(*map(set, groups.layers)),
        8: set(n for n, _ in model.named_parameters()),
        10: set(n for n, _ in model.named_parameters()),
    }
    hook = controller.on_epoch_end if unit == "epoch" else controller.on_step_end
    changes = []
    for units in range(0, 11):
        if units:
            controller.trainable_changed = False
            changed = hook(units)
            assert changed == controller.trainable_changed
            if changed:
                changes.append(units)
        if units in expected_after:
            assert set(controller.trainable_parameters()) == expected_after[units], units
        before = _snapshot(model)
        _train(model, tokenizer, steps=1)
        assert _changed(before, model) == set(controller.trainable_parameters())
    assert changes == [2, 4, 6, 8]
    messages = [
        r.getMessage() for r in caplog.records if r.getMessage().startswith("gradual unfreezing: layers")
    ]
    assert messages == [
        f"gradual unfreezing: layers 2..2 now trainable (after {unit} 2)",
        f"gradual unfreezing: layers 1..2 now trainable (after {unit} 4)",
        f"gradual unfreezing: layers 0..2 now trainable (after {unit} 6)",
        f"gradual unfreezing: layers 0..2 now trainable, embeddings too (after {unit} 8)",
    ]
    assert [h["at"] for h in controller.history] == [0, 2, 4, 6, 8]
    # The other unit's hook does nothing.
    other = controller.on_step_end if unit == "epoch" else controller.on_epoch_end
    assert other(100) is False


def test_gradual_unfreezing_restore_reapplies_the_schedule(tiny_model_dir) -> None:
    model, _ = _load(tiny_model_dir(num_layers=3))
    spec = StrategySpec.model_validate({"type": "gradualUnfreezing", "gradualUnfreezing": {"every": 1}})
    controller = apply_strategy(model, spec)
    controller.restore(epoch=2)
    groups = parameter_groups(model)
    assert set(controller.trainable_parameters()) == set(groups.head) | set(groups.other) | set(
        groups.layers[1]
    ) | set(groups.layers[2])


def _lora_spec(merge: bool) -> StrategySpec:
    return StrategySpec.model_validate(
        {"type": "lora", "lora": {"r": 4, "alpha": 8, "dropout": 0.0, "mergeOnExport": merge}}
    )


def test_lora_trains_only_adapters_and_head_and_exports_merged(tiny_model_dir, tmp_path: Path) -> None:
    from transformers import AutoModelForSequenceClassification

    model, tokenizer = _load(tiny_model_dir())
    controller = apply_strategy(model, _lora_spec(merge=True))
    peft_model = controller.model
    before = _snapshot(peft_model)
    _train(peft_model, tokenizer)
    changed = _changed(before, peft_model)
    assert changed, "nothing trained"
    for name in changed:
        assert "lora_" in name or "modules_to_save" in name, name
    assert any("lora_A" in n for n in changed) and any("lora_B" in n for n in changed)
    assert any("modules_to_save" in n and "classifier" in n for n in changed)
    assert all(("query" in n or "value" in n) for n in changed if "lora_" in n)

    out = export_model(peft_model, _lora_spec(merge=True), tmp_path / "merged", tokenizer)
    merged = AutoModelForSequenceClassification.from_pretrained(out)
    assert not any("lora" in n for n, _ in merged.named_parameters())
    batch = {k: v for k, v in _batch(tokenizer).items() if k != "labels"}
    peft_model.eval()
    merged.eval()
    with torch.no_grad():
        assert torch.allclose(peft_model(**batch).logits, merged(**batch).logits, atol=1e-5)
    assert (out / "tokenizer_config.json").is_file()
    # Exporting merged a copy: the training model still has its adapters.
    assert any("lora_A" in n for n, _ in peft_model.named_parameters())


def test_lora_adapter_only_export(tiny_model_dir, tmp_path: Path) -> None:
    from peft import PeftModel

    base_dir = tiny_model_dir()
    model, tokenizer = _load(base_dir)
    controller = apply_strategy(model, _lora_spec(merge=False))
    _train(controller.model, tokenizer)
    out = export_model(controller.model, _lora_spec(merge=False), tmp_path / "adapter", tokenizer)
    assert (out / "adapter_config.json").is_file() and (out / "adapter_model.safetensors").is_file()
    assert not (out / "model.safetensors").exists()
    base, _ = _load(base_dir)
    reloaded = PeftModel.from_pretrained(base, out)
    batch = {k: v for k, v in _batch(tokenizer).items() if k != "labels"}
    controller.model.eval()
    reloaded.eval()
    with torch.no_grad():
        assert torch.allclose(controller.model(**batch).logits, reloaded(**batch).logits, atol=1e-5)


def test_lora_unknown_target_modules_lists_available(tiny_model_dir) -> None:
    model, _ = _load(tiny_model_dir())
    spec = StrategySpec.model_validate({"type": "lora", "lora": {"targetModules": ["q_proj"]}})
    with pytest.raises(TrainerError, match=r"strategy.lora.targetModules.*q_proj.*available:.*query.*value"):
        apply_strategy(model, spec)


def _tiny(kind: str):
    """Tiny random classifiers of other encoder families, built from a config."""
    import transformers as tf

    common = {"vocab_size": 99, "num_labels": 3}
    if kind == "distilbert":
        config = tf.DistilBertConfig(
            dim=32, n_layers=3, n_heads=2, hidden_dim=37, max_position_embeddings=64, **common
        )
        return tf.DistilBertForSequenceClassification(config)
    if kind == "roberta":
        config = tf.RobertaConfig(
            hidden_size=32, num_hidden_layers=3, num_attention_heads=2, intermediate_size=37,
            max_position_embeddings=70, pad_token_id=1, **common,
        )  # fmt: skip
        return tf.RobertaForSequenceClassification(config)
    config = tf.ElectraConfig(
        embedding_size=16, hidden_size=32, num_hidden_layers=3, num_attention_heads=2, intermediate_size=37,
        max_position_embeddings=64, **common,
    )  # fmt: skip
    return tf.ElectraForSequenceClassification(config)


@pytest.mark.parametrize(
    ("kind", "head", "layers"),
    [
        ("distilbert", {"pre_classifier", "classifier"}, "distilbert.transformer.layer"),
        ("roberta", {"classifier"}, "roberta.encoder.layer"),
        ("electra", {"classifier"}, "electra.encoder.layer"),
    ],
)
def test_strategies_find_heads_and_layers_of_other_encoders(kind: str, head: set, layers: str) -> None:
    from finetune_trainer.strategies import find_layer_list, head_module_names

    torch.manual_seed(0)
    model = _tiny(kind)
    assert set(head_module_names(model)) == head
    assert find_layer_list(model)[0] == layers
    groups = parameter_groups(model)
    assert groups.embeddings and all(".embeddings." in n for n in groups.embeddings)
    spec = StrategySpec.model_validate({"type": "gradualUnfreezing", "gradualUnfreezing": {"every": 1}})
    controller = apply_strategy(model, spec)
    assert {n.split(".")[0] for n in controller.trainable_parameters()} == head
    controller.on_epoch_end(1)
    top = f"{layers}.2."
    assert {n for n in controller.trainable_parameters() if n.startswith(layers)} == {
        n for n, _ in model.named_parameters() if n.startswith(top)
    }
    batch = {"input_ids": torch.randint(3, 99, (4, 10)), "labels": torch.tensor([0, 1, 2, 0])}
    before = _snapshot(model)
    optimizer = build_optimizer(model, TrainingSpec(learningRate=1e-2))
    model(**batch).loss.backward()
    optimizer.step()
    assert _changed(before, model) == set(controller.trainable_parameters())
