"""The CRD judges manifests as the pydantic models do.

Every example must pass, and every bad manifest of the table that a CRD can express
must fail, under a real JSON Schema validator plus real CEL evaluation of the
`x-kubernetes-validations` rules (see api_harness). Cases only pydantic can catch are
named in the table with the reason, and checked to really pass the CRD, so the list
stays honest.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from api_cases import BAD_CASES, base_job
from api_harness import api_server_problems, apply_defaults, evaluate_rule
from finetune_operator import api
from finetune_operator.api import ComputeSpec, FineTuneJobSpec, ResourcesSpec
from finetune_operator.crd import build_crd, model_schema
from finetune_operator.manifests import load_manifests
from finetune_trainer import config

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((REPO / "examples").glob("*.yaml"))
SCHEMA = build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
CRD_CASES = [c for c in BAD_CASES if c.crd is True]
PYDANTIC_ONLY = [c for c in BAD_CASES if c.crd is not True]


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_crd_accepts_every_example(example: Path) -> None:
    for _, document in load_manifests(example):
        assert api_server_problems(document, SCHEMA) == []


def test_crd_accepts_the_minimal_job() -> None:
    assert api_server_problems(base_job(), SCHEMA) == []


@pytest.mark.parametrize("case", CRD_CASES, ids=lambda case: case.id)
def test_crd_rejects_bad_manifest_at_the_same_field(case) -> None:
    problems = api_server_problems(case.manifest(), SCHEMA)
    assert problems, "the CRD accepted it"
    assert (case.crd_path or case.path) in [path for path, _ in problems], problems


def test_most_bad_cases_are_caught_by_the_crd() -> None:
    assert len(CRD_CASES) >= 60
    assert {c.id for c in PYDANTIC_ONLY} == {
        "name-missing", "name-invalid", "partial-bad-regex", "search-path-unknown", "dimension-values-nested",
        "api-version-wrong", "kind-wrong", "dimension-values-missing",
    }


@pytest.mark.parametrize("case", PYDANTIC_ONLY, ids=lambda case: case.id)
def test_pydantic_only_cases_really_pass_the_crd(case) -> None:
    assert isinstance(case.crd, str) and case.crd
    assert api_server_problems(case.manifest(), SCHEMA) == []


def test_cel_failure_is_reported_at_the_node_with_its_message() -> None:
    job = base_job()
    job["spec"]["training"] = {"scheduler": {"warmupSteps": 10, "warmupRatio": 0.1}}
    assert api_server_problems(job, SCHEMA) == [
        ("spec.training.scheduler", "set warmupSteps or warmupRatio, not both")
    ]


def test_defaults_fill_only_existing_objects() -> None:
    defaulted = apply_defaults(base_job(), SCHEMA)
    assert defaulted["spec"]["data"]["validationFraction"] == 0.1
    assert defaulted["spec"]["model"]["task"] == "sequence-classification"
    assert "training" not in defaulted["spec"]


def test_cel_sees_numbers_written_as_integers_as_doubles() -> None:
    # `wordDropout: 0` and `wordSwap: 1` (an int) must compare with 0.0 as the server does.
    node = model_schema(config.AugmentationSpec)
    rule = node["x-kubernetes-validations"][0]["rule"]
    assert evaluate_rule(rule, {"wordDropout": 0, "wordSwap": 0}, node) is False
    assert evaluate_rule(rule, {"wordDropout": 0, "wordSwap": 0.5}, node) is True


# ------------------------------------------- CEL rules and python validators agree

# Hand-made objects around each rule's edges, valid for every per-field constraint, so
# only the cross-field rules decide.
_SPEC = {"model": {"source": "m"}, "data": {"train": "t"}, "output": {"uri": "o"}}
AGREEMENT = [
    (config.ModelSpec, {"source": "m", "labels": ["a", "b"], "numLabels": 2}),
    (config.ModelSpec, {"source": "m", "labels": ["a", "b"], "numLabels": 3}),
    (config.ModelSpec, {"source": "m", "numLabels": 3}),
    (config.ModelSpec, {"source": "m", "labels": ["a", "b", "a"]}),
    (config.AugmentationSpec, {}),
    (config.AugmentationSpec, {"wordSwap": 0.1}),
    (config.AugmentationSpec, {"wordDropout": 0, "wordSwap": 0}),
    (config.PartialSpec, {}),
    (config.PartialSpec, {"freezeEmbeddings": False}),
    (config.PartialSpec, {"freezeEmbeddings": False, "freezeLayers": 2}),
    (config.PartialSpec, {"freezeEmbeddings": False, "freezePatterns": ["pooler"]}),
    (config.PartialSpec, {"freezeEmbeddings": False, "freezePatterns": []}),
    (config.StrategySpec, {"type": "lora", "lora": {}}),
    (config.StrategySpec, {"lora": {}}),
    (config.StrategySpec, {"type": "partial", "gradualUnfreezing": {}}),
    (config.StrategySpec, {"type": "gradualUnfreezing", "gradualUnfreezing": {"every": 2}}),
    (config.OptimizerSpec, {"name": "sgd", "momentum": 0.9, "nesterov": True}),
    (config.OptimizerSpec, {"name": "sgd", "nesterov": True}),
    (config.OptimizerSpec, {"name": "rmsprop", "momentum": 0.9, "nesterov": True}),
    (config.OptimizerSpec, {"name": "sgd", "momentum": 0.9}),
    (config.SchedulerSpec, {"warmupSteps": 5}),
    (config.SchedulerSpec, {"warmupRatio": 0.2}),
    (config.SchedulerSpec, {"warmupSteps": 5, "warmupRatio": 0.2}),
    (config.SearchDimension, {"type": "choice", "values": [1, "a", True]}),
    # ({"type": "grid"} without values is pydantic's alone: see UNTYPED_LIST in api_cases.)
    (config.SearchDimension, {"type": "uniform", "values": [1]}),
    (config.SearchDimension, {"type": "uniform", "min": 0, "max": 1}),
    (config.SearchDimension, {"type": "uniform", "min": 1, "max": 1}),
    (config.SearchDimension, {"type": "uniform", "max": 1}),
    (config.SearchDimension, {"type": "loguniform", "min": 0.001, "max": 1}),
    (config.SearchDimension, {"type": "loguniform", "min": -1, "max": 1}),
    (config.SearchDimension, {"type": "randint", "min": 1, "max": 9}),
    (config.SearchDimension, {"type": "randint", "min": 1, "max": 8.5}),
    (config.SearchDimension, {"type": "grid", "values": [1], "max": 3}),
    (config.TuneSpec, {"searchSpace": {"training.seed": {"type": "choice", "values": [1]}}, "numTrials": 2,
                       "maxConcurrentTrials": 2}),
    (config.TuneSpec, {"searchSpace": {"training.seed": {"type": "choice", "values": [1]}}, "numTrials": 2,
                       "maxConcurrentTrials": 3}),
    (config.TuneSpec, {"searchSpace": {"training.seed": {"type": "grid", "values": [1]}},
                       "searchAlgorithm": "grid"}),
    (config.TuneSpec, {"searchSpace": {"training.seed": {"type": "grid", "values": [1]}},
                       "searchAlgorithm": "random"}),
    (config.TuneSpec, {"searchSpace": {"training.seed": {"type": "grid", "values": [1]}},
                       "searchAlgorithm": "bayesian"}),
    (config.TuneSpec, {"searchSpace": {"training.seed": {"type": "choice", "values": [1]}},
                       "searchAlgorithm": "bayesian"}),
    (config.TrainingConfig, {"model": {"source": "m"}, "data": {"train": "t"}, "output": {"uri": "o"},
                             "strategy": {"type": "lora"},
                             "tune": {"searchSpace": {"strategy.lora.r": {"type": "choice", "values": [4]}}}}),
    (config.TrainingConfig, {"model": {"source": "m"}, "data": {"train": "t"}, "output": {"uri": "o"},
                             "tune": {"searchSpace": {"strategy.lora.r": {"type": "choice", "values": [4]}}}}),
    (config.TrainingConfig, {"model": {"source": "m"}, "data": {"train": "t"}, "output": {"uri": "o"},
                             "tune": {"searchSpace": {"strategy.type": {"type": "choice",
                                                                       "values": ["full", "lora"]}}}}),
    (config.ImageAugmentationSpec, {}),
    (config.ImageAugmentationSpec, {"horizontalFlip": True}),
    (config.ImageAugmentationSpec, {"colorJitter": 0.2, "cropScale": [0.3, 0.9]}),
    (config.ImageAugmentationSpec, {"randomResizedCrop": True, "cropScale": [0.9, 0.3]}),
    (config.ImageAugmentationSpec, {"randomResizedCrop": True, "cropScale": [0.0, 0.3]}),
    (config.ImageAugmentationSpec, {"randomResizedCrop": True, "cropScale": [0.5, 1.5]}),
    (config.TrainingConfig, {"model": {"source": "m", "task": "image-classification"}, "data": {"train": "t"},
                             "output": {"uri": "o"}, "image": {"skipUnreadable": True}}),
    (config.TrainingConfig, {"model": {"source": "m"}, "data": {"train": "t"}, "output": {"uri": "o"},
                             "image": {"skipUnreadable": True}}),
    (config.TrainingConfig, {"model": {"source": "m"}, "data": {"train": "t", "format": "imagefolder"},
                             "output": {"uri": "o"}}),
    (config.TrainingConfig, {"model": {"source": "m", "task": "image-classification"},
                             "data": {"train": "t", "format": "imagefolder"}, "output": {"uri": "o"}}),
    (config.TrainingConfig, {"model": {"source": "m", "task": "image-classification"},
                             "data": {"train": "t", "textPairColumn": "b"}, "output": {"uri": "o"}}),
    (config.TrainingConfig, {"model": {"source": "m"}, "data": {"train": "t", "textPairColumn": "b"},
                             "output": {"uri": "o"}}),
    (config.TrainingConfig, {"model": {"source": "m", "task": "image-classification"},
                             "data": {"train": "t", "augmentation": {"wordSwap": 0.1}}, "output": {"uri": "o"}}),
    # causal-lm: its rules (causal_lm.CAUSAL_LM_RULES) both ways, and qlora's tuning of strategy.lora.*
    *[(config.TrainingConfig, {"model": {"source": "m", **model}, "data": {"train": "t"}, "output": {"uri": "o"},
                               **blocks})
      for model, blocks in [
          ({"task": "causal-lm"}, {"causalLm": {"packing": True}}),
          ({}, {"causalLm": {"packing": True}}),
          ({"task": "causal-lm", "numLabels": 3}, {}),
          ({"task": "causal-lm"}, {"strategy": {"type": "gradualUnfreezing"}}),
          ({"task": "causal-lm"}, {"strategy": {"type": "qlora"},
                                   "tune": {"searchSpace": {"strategy.lora.r": {"type": "choice", "values": [4]}},
                                            "metric": "eval_perplexity"}}),
          ({"task": "causal-lm"}, {"tune": {"searchSpace": {"training.seed": {"type": "choice", "values": [1]}},
                                            "metric": "eval_f1", "mode": "max"}}),
          ({}, {"tune": {"searchSpace": {"training.seed": {"type": "choice", "values": [1]}},
                         "metric": "eval_perplexity"}}),
          ({"task": "causal-lm"}, {"training": {"earlyStopping": {"metric": "eval_perplexity"}}}),
          ({}, {"training": {"earlyStopping": {"metric": "eval_perplexity"}}}),
      ]],
    (api.FineTuneJobSpec, {"model": {"source": "m", "task": "causal-lm"}, "data": {"train": "t"},
                           "output": {"uri": "o"}, "strategy": {"type": "qlora"}}),
    (api.FineTuneJobSpec, {"model": {"source": "m", "task": "causal-lm"}, "data": {"train": "t"},
                           "output": {"uri": "o"}, "strategy": {"type": "qlora"},
                           "resources": {"worker": {"gpu": 1}}}),
    (api.FineTuneJobSpec, {"model": {"source": "m"}, "data": {"train": "t"}, "output": {"uri": "o"}}),
    (ComputeSpec, {"cpu": "500m"}),
    (ComputeSpec, {"cpu": "0.5"}),
    (ComputeSpec, {"cpu": "0"}),
    (ComputeSpec, {"cpu": "000m"}),
    (ResourcesSpec, {"acceleratorType": "a100", "worker": {"gpu": 1}}),
    (ResourcesSpec, {"acceleratorType": "a100"}),
    (ResourcesSpec, {"acceleratorType": "a100", "worker": {"cpu": "4"}}),
    (ResourcesSpec, {"rayAcceleratorType": "A100", "worker": {"gpu": 1}}),
    (ResourcesSpec, {"rayAcceleratorType": "A100"}),
    (ResourcesSpec, {"distributed": "fsdp"}),
    (ResourcesSpec, {"distributed": "fsdp", "workers": 2}),
    (ResourcesSpec, {"distributed": "fsdp", "worker": {"gpu": 2}}),
    (ResourcesSpec, {"distributed": "ddp"}),
    (FineTuneJobSpec, {**_SPEC, "resources": {"distributed": "fsdp", "workers": 2}, "strategy": {"type": "lora"}}),
    (FineTuneJobSpec, {**_SPEC, "resources": {"distributed": "fsdp", "workers": 2},
                       "strategy": {"type": "gradualUnfreezing"}}),
    (FineTuneJobSpec, {**_SPEC, "strategy": {"type": "gradualUnfreezing"}}),
    (FineTuneJobSpec, {**_SPEC, "resources": {"distributed": "fsdp", "workers": 2},
                       "training": {"precision": "fp16"}}),
    (FineTuneJobSpec, {**_SPEC, "resources": {"distributed": "fsdp", "workers": 2},
                       "training": {"precision": "bf16"}}),
]


def _pydantic_accepts(model: type[BaseModel], document: dict[str, Any]) -> bool:
    try:
        model.model_validate(document)
    except ValidationError:
        return False
    return True


@pytest.mark.parametrize(("model", "document"), AGREEMENT, ids=lambda v: v.__name__ if isinstance(v, type) else "")
def test_cel_rules_and_python_validators_agree(model: type[BaseModel], document: dict[str, Any]) -> None:
    schema = model_schema(model)
    assert _pydantic_accepts(model, document) == (api_server_problems(document, schema) == [])


def test_agreement_cases_cover_both_outcomes_for_every_ruled_model() -> None:
    outcomes: dict[type, set[bool]] = {}
    for model, document in AGREEMENT:
        outcomes.setdefault(model, set()).add(_pydantic_accepts(model, document))
    declaring = {
        m
        for module in (config, api)
        for m in vars(module).values()
        if isinstance(m, type) and issubclass(m, config.Spec)
        and m.__module__.startswith(module.__name__) and m.__dict__.get("RULES")
    }
    assert len(declaring) >= 10
    assert declaring <= set(outcomes)
    assert all(outcomes[m] == {True, False} for m in declaring)
