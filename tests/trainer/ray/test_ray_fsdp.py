"""`resources.distributed: fsdp` on 2 CPU workers (gloo, a private local Ray) against
DDP on the same tiny BERT, seed and data: the same losses, half the parameters per
worker, LoRA, a resume after a worker dies, and the freezing strategies (partial,
featureExtraction) leaving their frozen weights bit for bit as they were."""

from __future__ import annotations

import pytest

from tests.trainer.ray.conftest import make_job
from tests.trainer.ray.faults import ExitOnceAfterStep
from tests.trainer.ray.test_ray_runner import Reports

pytestmark = pytest.mark.slow

# 96 rows over 2 workers, batch 8: 6 steps per epoch. Evaluated every 2 steps, so each
# run reports steps 2, 4 and 6; checkpointed at step 4.
TRAINING = {"maxSteps": 6, "epochs": 1, "evaluation": {"every": 2, "unit": "step"},
            "checkpoint": {"every": 4, "unit": "step"}}
LORA = {"type": "lora", "lora": {"r": 4, "alpha": 8, "targetModules": ["query", "value"]}}
# What each freezing strategy must leave untouched in the tiny BERT (2 layers): every
# parameter under one of these prefixes.
FROZEN = {
    "partial": ({"type": "partial", "partial": {"freezeEmbeddings": True, "freezeLayers": 1}},
                ("bert.embeddings.", "bert.encoder.layer.0.")),
    "featureExtraction": ({"type": "featureExtraction"}, ("bert.",)),
}


def _run(name, tiny_model, intent_data, tmp_path, distributed, *, strategy=None, hooks=None, reports=None):
    from finetune_trainer.config import JobConfig
    from finetune_trainer.runner import run_job

    job = make_job(name, tiny_model, intent_data, str(tmp_path / "out"), training=TRAINING, strategy=strategy)
    document = job.to_dict()
    document["scaling"]["distributed"] = distributed
    reports = reports or Reports()
    result = run_job(JobConfig.model_validate(document), progress_callback=reports, loop_hooks=hooks)
    return reports, result


def _curve(reports: Reports) -> list[tuple[int, float, float]]:
    return [(h["step"], h["loss"], h["eval_loss"]) for h in reports.history()]


def test_fsdp_trains_like_ddp_with_half_the_parameters_per_worker(ray_local, tiny_model, intent_data, tmp_path):
    ddp, ddp_result = _run("ddp", tiny_model, intent_data, tmp_path, "ddp")
    fsdp, fsdp_result = _run("fsdp", tiny_model, intent_data, tmp_path, "fsdp")

    assert [s for s, _, _ in _curve(fsdp)] == [2, 4, 6]
    for (step, loss, eval_loss), (_, ddp_loss, ddp_eval_loss) in zip(_curve(fsdp), _curve(ddp)):
        assert loss == pytest.approx(ddp_loss, rel=1e-4, abs=1e-5), step
        assert eval_loss == pytest.approx(ddp_eval_loss, rel=1e-4, abs=1e-5), step
    assert fsdp_result.metrics["test_accuracy"] == ddp_result.metrics["test_accuracy"]

    sharded, whole = fsdp.trials["run"].latest, ddp.trials["run"].latest
    assert sharded["model_parameter_bytes"] == whole["model_parameter_bytes"] > 0
    assert whole["worker_parameter_bytes"] == whole["model_parameter_bytes"]
    # Dim-0 shards, padded to a multiple of 2 rows: half the model, give or take a row.
    assert sharded["worker_parameter_bytes"] == pytest.approx(sharded["model_parameter_bytes"] / 2, rel=0.02)


def test_fsdp_lora_resumes_from_its_gathered_checkpoint_after_a_worker_dies(ray_local, tiny_model, intent_data,
                                                                             tmp_path):
    from transformers import AutoModelForSequenceClassification

    straight, _ = _run("lora", tiny_model, intent_data, tmp_path, "fsdp", strategy=LORA)
    marker = tmp_path / "fault-happened"
    fault = ExitOnceAfterStep(step=5, marker=str(marker), after_file=str(tmp_path / "checkpoint-seen"))
    resumed, result = _run("lora-fault", tiny_model, intent_data, tmp_path, "fsdp", strategy=LORA, hooks=fault,
                           reports=Reports(tmp_path / "checkpoint-seen"))

    assert marker.is_file(), "the injected fault did not happen"
    latest = resumed.trials["run"].latest
    assert latest["resumed_from_step"] == 4 and latest["step"] == 6
    # The resumed run (weights, Adam's moments and schedule from step 4's gathered
    # checkpoint, re-sharded) ends where the uninterrupted one did.
    (_, loss, eval_loss), (_, straight_loss, straight_eval_loss) = _curve(resumed)[-1], _curve(straight)[-1]
    assert loss == pytest.approx(straight_loss, rel=1e-4, abs=1e-5)
    assert eval_loss == pytest.approx(straight_eval_loss, rel=1e-4, abs=1e-5)
    # The exported model is a whole one that loads with plain transformers.
    model = AutoModelForSequenceClassification.from_pretrained(tmp_path / "out" / "lora-fault" / "model")
    assert model.num_labels == 3 and result.metrics["steps"] == 6


def _weights(folder) -> dict:
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))


@pytest.mark.parametrize("strategy", sorted(FROZEN))
def test_fsdp_leaves_the_frozen_parameters_of_a_freezing_strategy_bit_identical(ray_local, tiny_model, intent_data,
                                                                                tmp_path, strategy):
    import torch

    spec, frozen_prefixes = FROZEN[strategy]
    name = strategy.lower()  # a job name is lower case
    reports, _ = _run(name, tiny_model, intent_data, tmp_path, "fsdp", strategy=spec)

    assert reports.trials["run"].latest["step"] == 6
    before, after = _weights(tiny_model), _weights(tmp_path / "out" / name / "model")
    assert before.keys() == after.keys()
    frozen = [name for name in before if name.startswith(frozen_prefixes)]
    trained = [name for name in before if not name.startswith(frozen_prefixes)]
    assert frozen and trained
    changed_frozen = [name for name in frozen if not torch.equal(before[name], after[name])]
    assert changed_frozen == [], f"{strategy} under fsdp changed frozen parameters"
    # The rest trained: every trainable tensor moved (the head at least, for both).
    unchanged_trained = [name for name in trained if torch.equal(before[name], after[name])]
    assert unchanged_trained == [], f"{strategy} under fsdp did not train {unchanged_trained}"
