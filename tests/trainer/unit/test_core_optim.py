"""Optimizers, schedules, step arithmetic and gradient clipping (finetune_trainer.optim)."""

from __future__ import annotations

import math

import pytest
import torch
from finetune_trainer.config import StrategySpec, TrainingSpec
from finetune_trainer.optim import (
    build_optimizer,
    build_scheduler,
    clip_gradients,
    steps_per_epoch,
    total_optimizer_steps,
)
from finetune_trainer.strategies import apply_strategy


def _model(path):
    from transformers import AutoModelForSequenceClassification

    return AutoModelForSequenceClassification.from_pretrained(path)


def _spec(**kwargs) -> TrainingSpec:
    return TrainingSpec.model_validate(kwargs)


@pytest.mark.parametrize(
    ("optimizer", "cls", "expected"),
    [
        (
            {"name": "adamw", "beta1": 0.8, "beta2": 0.95, "epsilon": 1e-6},
            torch.optim.AdamW,
            {"betas": (0.8, 0.95), "eps": 1e-6},
        ),
        (
            {"name": "sgd", "momentum": 0.9, "nesterov": True},
            torch.optim.SGD,
            {"momentum": 0.9, "nesterov": True},
        ),
        (
            {"name": "rmsprop", "alpha": 0.9, "momentum": 0.5, "epsilon": 1e-7},
            torch.optim.RMSprop,
            {"alpha": 0.9, "momentum": 0.5, "eps": 1e-7},
        ),
    ],
)
def test_optimizer_type_and_parameters(tiny_model_path, optimizer, cls, expected) -> None:
    built = build_optimizer(_model(tiny_model_path), _spec(learningRate=3e-4, optimizer=optimizer))
    assert type(built) is cls
    for group in built.param_groups:
        assert group["lr"] == 3e-4
        for key, value in expected.items():
            assert group[key] == value


@pytest.mark.parametrize("optimizer", [{"name": "adamw"}, {"name": "sgd", "momentum": 0.9}, {"name": "rmsprop"}])
def test_fast_kernels_take_the_same_steps_as_the_reference_loop(tiny_model_path, optimizer) -> None:
    """AdamW and SGD run fused on CPU (RMSprop multi-tensor), and three steps move every
    weight where torch's per-tensor implementation moves it."""
    spec = _spec(learningRate=1e-3, weightDecay=0.01, optimizer=optimizer)
    ours_model, reference_model = _model(tiny_model_path), _model(tiny_model_path)
    ours = build_optimizer(ours_model, spec)
    reference = build_optimizer(reference_model, spec)
    for group in reference.param_groups:
        group.update(fused=None, foreach=False)
    kernel = "foreach" if optimizer["name"] == "rmsprop" else "fused"
    assert all(group[kernel] for group in ours.param_groups)
    generator = torch.Generator().manual_seed(0)
    for _ in range(3):
        for ours_param, reference_param in zip(ours_model.parameters(), reference_model.parameters()):
            gradient = torch.randn(ours_param.shape, generator=generator)
            ours_param.grad, reference_param.grad = gradient.clone(), gradient.clone()
        ours.step()
        reference.step()
    for (name, ours_param), reference_param in zip(ours_model.named_parameters(), reference_model.parameters()):
        assert torch.allclose(ours_param, reference_param, atol=1e-6), name


def test_weight_decay_skips_bias_and_layernorm(tiny_model_path) -> None:
    model = _model(tiny_model_path)
    optimizer = build_optimizer(model, _spec(weightDecay=0.01))
    names = {id(p): n for n, p in model.named_parameters()}
    decayed = {names[id(p)] for g in optimizer.param_groups if g["weight_decay"] == 0.01 for p in g["params"]}
    plain = {names[id(p)] for g in optimizer.param_groups if g["weight_decay"] == 0.0 for p in g["params"]}
    assert decayed and plain and not decayed & plain
    assert all(n.endswith(".bias") or "LayerNorm" in n for n in plain)
    assert "bert.encoder.layer.0.attention.output.LayerNorm.weight" in plain
    assert "bert.embeddings.LayerNorm.weight" in plain
    assert "bert.encoder.layer.0.attention.self.query.weight" in decayed
    assert "classifier.weight" in decayed
    assert decayed | plain == {n for n, _ in model.named_parameters()}


def test_optimizer_gets_only_trainable_parameters(tiny_model_path) -> None:
    model = _model(tiny_model_path)
    apply_strategy(model, StrategySpec(type="featureExtraction"))
    optimizer = build_optimizer(model, _spec())
    optimised = {id(p) for g in optimizer.param_groups for p in g["params"]}
    assert optimised == {id(model.classifier.weight), id(model.classifier.bias)}


@pytest.mark.parametrize("name", ["linear", "cosine", "constant"])
def test_scheduler_warmup_shape(tiny_model_path, name: str) -> None:
    training = _spec(learningRate=1e-3, scheduler={"name": name, "warmupSteps": 10})
    optimizer = build_optimizer(_model(tiny_model_path), training)
    scheduler = build_scheduler(optimizer, training, total_steps=100)
    lrs = []
    for _ in range(100):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    lrs.append(optimizer.param_groups[0]["lr"])
    assert lrs[0] == 0.0
    assert lrs[5] == pytest.approx(5e-4)
    assert lrs[10] == pytest.approx(1e-3)
    assert all(a <= b for a, b in zip(lrs[:10], lrs[1:11]))
    if name == "constant":
        assert lrs[100] == pytest.approx(1e-3)
    else:
        assert lrs[100] == pytest.approx(0.0, abs=1e-12)
        assert lrs[55] == pytest.approx(
            5e-4 if name == "linear" else 1e-3 * 0.5 * (1 + math.cos(math.pi * 0.5))
        )


def test_warmup_ratio(tiny_model_path) -> None:
    training = _spec(learningRate=1e-3, scheduler={"name": "linear", "warmupRatio": 0.2})
    optimizer = build_optimizer(_model(tiny_model_path), training)
    scheduler = build_scheduler(optimizer, training, total_steps=50)
    for _ in range(10):
        optimizer.step()
        scheduler.step()
    assert optimizer.param_groups[0]["lr"] == pytest.approx(1e-3)


def test_step_arithmetic() -> None:
    assert steps_per_epoch(100, _spec(batchSize=16)) == 7
    assert steps_per_epoch(100, _spec(batchSize=16, gradientAccumulationSteps=2)) == 4
    assert total_optimizer_steps(100, _spec(batchSize=16, epochs=3)) == 21
    assert total_optimizer_steps(100, _spec(batchSize=16, epochs=1.5)) == 11
    assert total_optimizer_steps(100, _spec(batchSize=16, epochs=3, maxSteps=5)) == 5


def test_gradient_clipping_bounds_the_norm(tiny_model_path) -> None:
    model = _model(tiny_model_path)
    batch = {"input_ids": torch.tensor([[2, 10, 11, 3]]), "labels": torch.tensor([1])}
    (model(**batch).loss * 1000).backward()
    params = list(model.parameters())
    before = clip_gradients(params, None)
    assert before > 1.0
    reported = clip_gradients(params, 0.5)
    assert reported == pytest.approx(before, rel=1e-4)
    after = torch.stack([p.grad.norm(2) for p in params if p.grad is not None]).norm(2)
    assert float(after) == pytest.approx(0.5, rel=1e-4)


def test_unfreezing_keeps_the_schedule_position_and_the_optimizer_state(tiny_model_path) -> None:
    """The optimizer rebuilt after an unfreeze runs its first step at the schedule's
    rate for that global step (not at step 0's), and the parameters that were already
    trainable keep Adam's moments."""
    from finetune_trainer.optim import rebuild_optimizer

    model = _model(tiny_model_path)
    spec = StrategySpec.model_validate({"type": "gradualUnfreezing", "gradualUnfreezing": {"every": 3,
                                                                                          "unit": "step"}})
    controller = apply_strategy(model, spec)
    training = _spec(learningRate=1e-3, scheduler={"name": "linear", "warmupSteps": 4}, maxSteps=10)
    optimizer = build_optimizer(model, training)
    scheduler = build_scheduler(optimizer, training, 10)
    batch = {"input_ids": torch.tensor([[2, 10, 11, 3], [2, 12, 13, 3]]), "labels": torch.tensor([1, 0])}
    for _ in range(3):
        model(**batch).loss.backward()
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
    before = {name: {k: v.clone() for k, v in optimizer.state[p].items()}
              for name, p in model.named_parameters() if p.requires_grad}
    assert controller.on_step_end(3)
    optimizer, scheduler = rebuild_optimizer(optimizer, scheduler, model, training, 10)

    # The same schedule, stepped 3 times on its own: linear warmup over 4 steps.
    reference = build_scheduler(torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1e-3), training, 10)
    for _ in range(3):
        reference.optimizer.step()
        reference.step()
    expected = reference.get_last_lr()[0]
    assert expected == pytest.approx(0.75e-3)
    assert [group["lr"] for group in optimizer.param_groups] == pytest.approx([expected] * len(optimizer.param_groups))
    assert scheduler.get_last_lr() == pytest.approx([expected] * len(optimizer.param_groups))
    assert scheduler.last_epoch == 3

    parameters = dict(model.named_parameters())
    for name, state in before.items():
        kept = optimizer.state[parameters[name]]
        assert kept.keys() == state.keys() and all(torch.equal(kept[k], state[k]) for k in state), name
    newly = {name for name, p in parameters.items() if p.requires_grad} - set(before)
    assert newly and not any(optimizer.state.get(parameters[name]) for name in newly)
    # The next step moves the newly trainable layer (a zero rate would leave it).
    layer = next(name for name in sorted(newly) if name.endswith("weight"))
    start = parameters[layer].detach().clone()
    model(**batch).loss.backward()
    optimizer.step()
    assert not torch.equal(parameters[layer], start)


def test_restored_optimizer_takes_hyperparameters_from_the_new_config(tiny_model_path) -> None:
    """A PBT explore changes the rate and decay of a trial that restores another's
    checkpoint: the moments and the schedule's position come from the checkpoint, the
    hyperparameters from the trial's own config."""
    from finetune_trainer.optim import restore_optimizer

    model = _model(tiny_model_path)
    old = _spec(learningRate=1e-3, weightDecay=0.0, scheduler={"name": "linear", "warmupSteps": 2}, maxSteps=10)
    optimizer = build_optimizer(model, old)
    scheduler = build_scheduler(optimizer, old, 10)
    batch = {"input_ids": torch.tensor([[2, 10, 11, 3]]), "labels": torch.tensor([1])}
    for _ in range(4):
        model(**batch).loss.backward()
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
    new = _spec(learningRate=4e-3, weightDecay=0.1, scheduler={"name": "linear", "warmupSteps": 2}, maxSteps=10)
    restored, restored_scheduler = restore_optimizer(model, new, 10, optimizer.state_dict(), scheduler.state_dict())
    # Linear decay after 2 warmup steps: at step 4 of 10 the factor is (10-4)/(10-2).
    assert [g["lr"] for g in restored.param_groups] == pytest.approx([4e-3 * 6 / 8] * len(restored.param_groups))
    assert restored_scheduler.last_epoch == 4
    assert sorted(g["weight_decay"] for g in restored.param_groups) == [0.0, 0.1]
    parameters = [p for g in optimizer.param_groups for p in g["params"]]
    assert all(torch.equal(restored.state[p]["exp_avg"], optimizer.state[p]["exp_avg"]) for p in parameters)
