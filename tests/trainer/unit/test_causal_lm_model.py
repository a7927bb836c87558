"""causal-lm models: the config refuses what cannot work (field named), the strategies
(full, partial, lora with all-linear or named targets; qlora's CPU-only error and its
GPU path), export of the adapter alone and merged (merged logits equal the adapter
model's, and the merged folder loads with AutoModelForCausalLM, no peft), and
gradient checkpointing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from causal_helpers import make_tiny_causal_lm
from pydantic import ValidationError

from finetune_trainer.config import JobConfig, ModelSpec, StrategySpec, TrainingConfig
from finetune_trainer.errors import TrainerError
from finetune_trainer.strategies import apply_strategy, export_model, loading_kwargs, trainable_names
from finetune_trainer.tasks import get_task

TASK = get_task("causal-lm")
BASE = {"model": {"source": "m", "task": "causal-lm"}, "data": {"train": "t.jsonl"}, "output": {"uri": "/tmp/o"}}


@pytest.fixture(scope="module")
def lm_dir(tmp_path_factory) -> Path:
    return make_tiny_causal_lm(tmp_path_factory.mktemp("tiny-llama"))


def _load(path: Path):
    return TASK.load_model(ModelSpec(source=str(path), task="causal-lm"), [])


def _config(**blocks):
    raw = json.loads(json.dumps(BASE))
    for key, value in blocks.items():
        raw[key] = {**raw.get(key, {}), **value}
    return raw


# ------------------------------------------------------------------- config


@pytest.mark.parametrize("blocks, message", [
    ({"model": {"labels": ["a", "b"]}}, r"model.labels and model.numLabels do not apply to model.task causal-lm"),
    ({"model": {"numLabels": 3}}, r"model.labels and model.numLabels do not apply to model.task causal-lm"),
    ({"strategy": {"type": "featureExtraction"}},
     r"need a classification head; model.task causal-lm allows .* \(strategy.type is featureExtraction\)"),
    ({"strategy": {"type": "gradualUnfreezing"}},
     r"need a classification head; model.task causal-lm allows .* \(strategy.type is gradualUnfreezing\)"),
    ({"tune": {"searchSpace": {"training.learningRate": {"type": "choice", "values": [1e-4]}},
               "metric": "eval_accuracy", "mode": "max"}},
     r"tune.metric of model.task causal-lm must be eval_loss or eval_perplexity \(got eval_accuracy\)"),
    ({"training": {"earlyStopping": {"metric": "eval_f1", "mode": "max"}}},
     r"training.earlyStopping.metric of model.task causal-lm must be eval_loss or eval_perplexity"),
])
def test_a_causal_lm_config_refuses_what_cannot_work(blocks, message):
    with pytest.raises(ValidationError, match=message):
        TrainingConfig.model_validate(_config(**blocks))


def test_causal_settings_and_perplexity_need_the_causal_task():
    classifier = {"model": {"task": "sequence-classification"}}
    with pytest.raises(ValidationError, match=r"causalLm settings are allowed only with model.task causal-lm"):
        TrainingConfig.model_validate(_config(**classifier, causalLm={"packing": True}))
    with pytest.raises(ValidationError, match=r"tune.metric eval_perplexity needs model.task causal-lm"):
        TrainingConfig.model_validate(_config(**classifier, tune={
            "searchSpace": {"training.learningRate": {"type": "choice", "values": [1e-4]}},
            "metric": "eval_perplexity"}))
    ok = TrainingConfig.model_validate(_config(causalLm={"packing": True}, strategy={"type": "qlora",
                                                                                     "lora": {"r": 4}}))
    assert ok.causal_lm_settings.packing and ok.strategy.resolved().lora.r == 4


def test_qlora_needs_gpus_on_the_workers():
    config = _config(strategy={"type": "qlora"})
    with pytest.raises(ValidationError, match=r"strategy.type qlora .* needs a CUDA GPU .*scaling.gpusPerWorker"):
        JobConfig.model_validate({"name": "j", "config": config})
    JobConfig.model_validate({"name": "j", "config": config, "scaling": {"gpusPerWorker": 1}})


def test_qlora_on_a_cpu_only_worker_is_a_clear_error():
    with pytest.raises(TrainerError, match=r"strategy.type qlora needs a CUDA GPU on every worker"):
        loading_kwargs(StrategySpec(type="qlora"), has_cuda=False)
    assert loading_kwargs(StrategySpec(type="lora"), has_cuda=False) == {}


@pytest.mark.gpu
def test_qlora_loads_the_base_in_4_bits_and_trains_adapters_on_a_gpu(lm_dir):
    pytest.importorskip("bitsandbytes")
    spec = StrategySpec(type="qlora")
    model, _ = TASK.load_model(ModelSpec(source=str(lm_dir), task="causal-lm"), [],
                               load_kwargs=loading_kwargs(spec))
    controller = apply_strategy(model, spec, TASK)
    names = trainable_names(controller.model)
    assert names and all("lora_" in n for n in names)
    ids = torch.tensor([[2, 5, 6, 7, 3]], device=model.device)
    loss = controller.model(input_ids=ids, labels=ids).loss
    loss.backward()
    assert torch.isfinite(loss)


# --------------------------------------------------------------- strategies


def test_full_trains_everything(lm_dir):
    model, _ = _load(lm_dir)
    controller = apply_strategy(model, StrategySpec(type="full"), TASK)
    assert trainable_names(controller.model) == {n for n, _ in model.named_parameters()}


@pytest.mark.parametrize("tied", [False, True])
def test_partial_freezes_embeddings_and_low_layers(tmp_path, tied):
    model, _ = _load(make_tiny_causal_lm(tmp_path / "m", tie_embeddings=tied))
    spec = StrategySpec.model_validate({"type": "partial", "partial": {"freezeEmbeddings": True, "freezeLayers": 1}})
    controller = apply_strategy(model, spec, TASK)
    trainable = trainable_names(controller.model)
    assert not any(n.startswith(("model.embed_tokens", "model.layers.0.")) for n in trainable)
    assert any(n.startswith("model.layers.1.") for n in trainable)
    assert ("lm_head.weight" in trainable) == (not tied)  # tied: the output layer is the embedding


def test_lora_defaults_to_every_linear_layer_of_a_causal_lm(lm_dir):
    model, _ = _load(lm_dir)
    controller = apply_strategy(model, StrategySpec(type="lora"), TASK)
    adapted = {n.split(".lora_A")[0].rsplit(".", 1)[-1] for n in trainable_names(controller.model) if "lora_A" in n}
    assert adapted == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    assert all("lora_" in n for n in trainable_names(controller.model))  # no head trained in full
    assert controller.model.peft_config["default"].task_type == "CAUSAL_LM"


def test_lora_target_modules_by_name(lm_dir):
    model, _ = _load(lm_dir)
    spec = StrategySpec.model_validate({"type": "lora", "lora": {"targetModules": ["q_proj", "v_proj"]}})
    controller = apply_strategy(model, spec, TASK)
    adapted = {n.split(".lora_A")[0].rsplit(".", 1)[-1] for n in trainable_names(controller.model) if "lora_A" in n}
    assert adapted == {"q_proj", "v_proj"}
    wrong = StrategySpec.model_validate({"type": "lora", "lora": {"targetModules": ["query"]}})
    with pytest.raises(TrainerError, match=r"targetModules \['query'\] match no linear layer.*q_proj.*all-linear"):
        apply_strategy(_load(lm_dir)[0], wrong, TASK)


# ------------------------------------------------------------------- export


def _trained_lora(lm_dir, merge: bool):
    model, tokenizer = _load(lm_dir)
    spec = StrategySpec.model_validate({"type": "lora", "lora": {"r": 4, "mergeOnExport": merge}})
    controller = apply_strategy(model, spec, TASK)
    torch.manual_seed(3)
    with torch.no_grad():  # as if trained: adapters that change the output
        for name, parameter in controller.model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0, 0.2)
    controller.model.eval()
    return controller.model, tokenizer, spec


IDS = torch.tensor([[2, 5, 9, 12, 7, 3, 11, 4]])


def test_the_merged_export_loads_without_peft_and_gives_the_adapter_models_logits(tmp_path, lm_dir):
    from transformers import AutoModelForCausalLM

    model, tokenizer, spec = _trained_lora(lm_dir, merge=True)
    with torch.no_grad():
        adapter_logits = model(input_ids=IDS).logits
    out = export_model(model, spec, tmp_path / "merged", tokenizer)
    assert not (out / "adapter_config.json").exists()
    merged = AutoModelForCausalLM.from_pretrained(out)
    assert type(merged).__name__ == "LlamaForCausalLM" and not hasattr(merged, "peft_config")
    with torch.no_grad():
        torch.testing.assert_close(merged(input_ids=IDS).logits, adapter_logits, rtol=1e-4, atol=1e-5)
    plain = AutoModelForCausalLM.from_pretrained(lm_dir)
    with torch.no_grad():
        assert not torch.allclose(plain(input_ids=IDS).logits, adapter_logits, atol=1e-3)  # the adapter mattered


def test_the_adapter_alone_exports_and_loads_with_peft_on_the_base(tmp_path, lm_dir):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model, tokenizer, spec = _trained_lora(lm_dir, merge=False)
    with torch.no_grad():
        adapter_logits = model(input_ids=IDS).logits
    out = export_model(model, spec, tmp_path / "adapter", tokenizer)
    assert (out / "adapter_config.json").is_file() and not (out / "model.safetensors").exists()
    reloaded = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(lm_dir), out).eval()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(input_ids=IDS).logits, adapter_logits, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------- gradient checkpointing


def test_gradient_checkpointing_gives_the_same_gradients(lm_dir):
    from finetune_trainer.train_loop import enable_gradient_checkpointing

    grads = []
    for checkpointing in (False, True):
        torch.manual_seed(0)
        model, _ = _load(lm_dir)
        model.train()
        if checkpointing:
            enable_gradient_checkpointing(model)
            assert model.is_activation_checkpointing
        controller = apply_strategy(model, StrategySpec(type="lora"), TASK)
        torch.manual_seed(1)
        controller.model(input_ids=IDS, labels=IDS).loss.backward()
        grads.append({n: p.grad.clone() for n, p in controller.model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys() and grads[0]
    for name in grads[0]:
        torch.testing.assert_close(grads[1][name], grads[0][name], rtol=1e-4, atol=1e-6)
