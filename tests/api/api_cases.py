"""A valid FineTuneJob factory and a table of broken ones, shared by the CLI tests and
the CRD tests so both judge exactly the same inputs."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from tests.support.jobs import fine_tune_job

DELETE = object()


def base_job() -> dict[str, Any]:
    """The smallest valid manifest (no namespace, as a user writes it); each bad case
    breaks it in one place."""
    return fine_tune_job("demo", namespace=None, model={"source": "sentence-transformers/all-MiniLM-L6-v2"},
                         data={"train": "s3://data/train.csv"}, output={"uri": "s3://models/out"})


@dataclass(frozen=True)
class BadCase:
    """One broken manifest and what `finetune validate` must say about it.

    `changes` maps dotted paths under the manifest (`spec.training.learningRate`) to
    new values, or to DELETE. `crd` is True when the CRD (schema + CEL) can reject the
    case too, or else the reason it cannot. `crd_path` is where the API server reports
    it, when that differs from the pydantic path.
    """

    id: str
    changes: dict[str, Any]
    path: str
    words: tuple[str, ...]
    crd: bool | str = True
    crd_path: str | None = None

    def manifest(self) -> dict[str, Any]:
        document = base_job()
        for dotted, value in self.changes.items():
            *parents, leaf = dotted.split(".")
            node = document
            for key in parents:
                node = node.setdefault(key, {})
            if value is DELETE:
                del node[leaf]
            else:
                node[leaf] = copy.deepcopy(value)
        return document


METADATA = "metadata is checked by the API server itself; a CRD schema may not constrain it"
IDENTITY = "the API server routes by apiVersion and kind before any schema applies"
REGEX = "CEL cannot tell whether a string is a valid regular expression"
TUNABLE = ("map keys cannot be length-bounded in a structural schema, so a membership test over them "
           "risks the API server's CEL cost limit; the path check with 'did you mean' stays in pydantic")
UNTYPED_LIST = ("the API server's CEL leaves a list of untyped items (values) out of the object's type, so a "
                "rule naming it does not compile (the real kube-apiserver refused the CRD)")
ANY_VALUE = ("a structural schema can leave a node untyped only by preserving any JSON in it, and "
             "candidate values may be numbers, strings or booleans alike")


def _dim(**dim: Any) -> dict[str, Any]:
    return {"spec.tune": {"searchSpace": {"training.learningRate": dim}}}


BAD_CASES = (
    BadCase("lr-negative", {"spec.training": {"learningRate": -1}},
            "spec.training.learningRate", ("must be > 0", "got -1")),
    BadCase("lr-zero", {"spec.training": {"learningRate": 0}},
            "spec.training.learningRate", ("must be > 0", "got 0")),
    BadCase("lr-text", {"spec.training": {"learningRate": "fast"}},
            "spec.training.learningRate", ("must be a number", "got 'fast'")),
    BadCase("batch-zero", {"spec.training": {"batchSize": 0}},
            "spec.training.batchSize", ("must be >= 1", "got 0")),
    BadCase("batch-quoted", {"spec.training": {"batchSize": "16"}},
            "spec.training.batchSize", ("must be an integer", "got '16'")),
    BadCase("batch-fraction", {"spec.training": {"batchSize": 1.5}},
            "spec.training.batchSize", ("must be", "got 1.5")),
    BadCase("epochs-zero", {"spec.training": {"epochs": 0}},
            "spec.training.epochs", ("must be > 0",)),
    BadCase("model-missing", {"spec.model": DELETE}, "spec.model", ("is required",)),
    BadCase("train-missing", {"spec.data": {}}, "spec.data.train", ("is required",)),
    BadCase("output-missing", {"spec.output": DELETE}, "spec.output", ("is required",)),
    BadCase("name-missing", {"metadata": {}}, "metadata.name", ("is required",), crd=METADATA),
    BadCase("name-invalid", {"metadata": {"name": "My_Job"}}, "metadata.name",
            ("lowercase DNS name", "got 'My_Job'"), crd=METADATA),
    BadCase("source-empty", {"spec.model": {"source": ""}}, "spec.model.source", ("must not be empty",)),
    BadCase("task-unknown", {"spec.model": {"source": "m", "task": "object-detection"}}, "spec.model.task",
            ("must be one of: sequence-classification, image-classification, causal-lm", "got 'object-detection'")),
    BadCase("image-on-text-task", {"spec.image": {"skipUnreadable": True}}, "spec",
            ("image: allowed only with model.task image-classification",)),
    BadCase("imagefolder-on-text-task", {"spec.data": {"train": "t", "format": "imagefolder"}}, "spec",
            ("data.format imagefolder is allowed only with model.task image-classification",)),
    BadCase("text-pair-on-image-task", {"spec.model": {"source": "m", "task": "image-classification"},
                                        "spec.data": {"train": "t", "textPairColumn": "b"}}, "spec",
            ("data.textPairColumn cannot be used with model.task image-classification",)),
    BadCase("word-augmentation-on-image-task", {"spec.model": {"source": "m", "task": "image-classification"},
                                                "spec.data": {"train": "t", "augmentation": {"wordSwap": 0.1}}},
            "spec", ("data.augmentation", "cannot be used with model.task image-classification",
                     "use image.augmentation")),
    BadCase("image-augmentation-empty", {"spec.model": {"source": "m", "task": "image-classification"},
                                         "spec.image": {"augmentation": {}}}, "spec.image.augmentation",
            ("set randomResizedCrop, horizontalFlip or colorJitter",)),
    BadCase("image-crop-scale-reversed", {"spec.model": {"source": "m", "task": "image-classification"},
                                          "spec.image": {"augmentation": {"randomResizedCrop": True,
                                                                          "cropScale": [0.9, 0.2]}}},
            "spec.image.augmentation", ("cropScale must be [min, max] with 0 < min <= max <= 1",)),
    BadCase("causal-lm-labels", {"spec.model": {"source": "m", "task": "causal-lm", "labels": ["a", "b"]}}, "spec",
            ("model.labels", "apply to model.task causal-lm")),
    BadCase("causal-lm-feature-extraction", {"spec.model": {"source": "m", "task": "causal-lm"},
                                             "spec.strategy": {"type": "featureExtraction"}}, "spec",
            ("featureExtraction", "need a classification head")),
    BadCase("causal-lm-accuracy-metric", {"spec.model": {"source": "m", "task": "causal-lm"},
                                          "spec.training": {"earlyStopping": {"metric": "eval_accuracy"}}}, "spec",
            ("training.earlyStopping.metric of model.task causal-lm must be eval_loss or eval_perplexity",)),
    BadCase("causal-settings-on-classifier", {"spec.causalLm": {"packing": True}}, "spec",
            ("causalLm settings are allowed only with model.task causal-lm",)),
    BadCase("causal-format-unknown", {"spec.model": {"source": "m", "task": "causal-lm"},
                                      "spec.causalLm": {"format": "alpaca"}}, "spec.causalLm.format",
            ("must be one of: auto, chat, instruction, text", "got 'alpaca'")),
    BadCase("qlora-without-gpu", {"spec.model": {"source": "m", "task": "causal-lm"},
                                  "spec.strategy": {"type": "qlora"}}, "spec",
            ("strategy.type qlora needs resources.worker.gpu > 0",)),
    BadCase("num-labels-one", {"spec.model": {"source": "m", "numLabels": 1}}, "spec.model.numLabels",
            ("must be >= 2", "got 1")),
    BadCase("labels-one", {"spec.model": {"source": "m", "labels": ["a"]}}, "spec.model.labels",
            ("at least 2 entries",)),
    BadCase("labels-count-mismatch", {"spec.model": {"source": "m", "labels": ["a", "b", "c"], "numLabels": 2}},
            "spec.model", ("numLabels must equal the number of labels",)),
    BadCase("labels-duplicate", {"spec.model": {"source": "m", "labels": ["a", "a"]}},
            "spec.model", ("labels must be unique",), crd_path="spec.model.labels"),
    BadCase("format-unknown", {"spec.data": {"train": "t", "format": "xlsx"}}, "spec.data.format",
            ("must be one of: csv, tsv, jsonl, parquet, imagefolder", "got 'xlsx'")),
    BadCase("validation-fraction-high", {"spec.data": {"train": "t", "validationFraction": 0.9}},
            "spec.data.validationFraction", ("must be <= 0.5", "got 0.9")),
    BadCase("seq-length-short", {"spec.data": {"train": "t", "maxSeqLength": 4}},
            "spec.data.maxSeqLength", ("must be >= 8",)),
    BadCase("augmentation-empty", {"spec.data": {"train": "t", "augmentation": {}}},
            "spec.data.augmentation", ("set wordDropout or wordSwap above 0",)),
    BadCase("augmentation-dropout-one", {"spec.data": {"train": "t", "augmentation": {"wordDropout": 1.0}}},
            "spec.data.augmentation.wordDropout", ("must be < 1",)),
    BadCase("strict-not-bool", {"spec.data": {"train": "t", "strict": "yes please"}},
            "spec.data.strict", ("must be true or false",)),
    BadCase("strategy-unknown", {"spec.strategy": {"type": "adapter"}}, "spec.strategy.type",
            ("must be one of: full, partial, featureExtraction, gradualUnfreezing, lora, qlora", "got 'adapter'")),
    BadCase("strategy-settings-mismatch", {"spec.strategy": {"type": "full", "lora": {}}}, "spec.strategy",
            ("lora settings are allowed only with type lora or qlora",)),
    BadCase("lora-rank-zero", {"spec.strategy": {"type": "lora", "lora": {"r": 0}}},
            "spec.strategy.lora.r", ("must be >= 1",)),
    BadCase("lora-no-targets", {"spec.strategy": {"type": "lora", "lora": {"targetModules": []}}},
            "spec.strategy.lora.targetModules", ("at least 1 entries",)),
    BadCase("partial-freezes-nothing", {"spec.strategy": {"type": "partial", "partial": {"freezeEmbeddings": False}}},
            "spec.strategy.partial", ("partial must freeze something",)),
    BadCase("partial-bad-regex",
            {"spec.strategy": {"type": "partial", "partial": {"freezePatterns": ["encoder.(layer"]}}},
            "spec.strategy.partial", ("not a valid regular expression", "encoder.(layer"), crd=REGEX),
    BadCase("optimizer-unknown", {"spec.training": {"optimizer": {"name": "adam"}}},
            "spec.training.optimizer.name", ("must be one of: adamw, sgd, rmsprop", "got 'adam'")),
    BadCase("nesterov-adamw", {"spec.training": {"optimizer": {"nesterov": True}}},
            "spec.training.optimizer", ("nesterov needs name sgd and momentum > 0",)),
    BadCase("warmup-both", {"spec.training": {"scheduler": {"warmupSteps": 10, "warmupRatio": 0.1}}},
            "spec.training.scheduler", ("set warmupSteps or warmupRatio, not both",)),
    BadCase("warmup-ratio-one", {"spec.training": {"scheduler": {"warmupRatio": 1.0}}},
            "spec.training.scheduler.warmupRatio", ("must be < 1", "got 1.0")),
    BadCase("precision-unknown", {"spec.training": {"precision": "fp8"}}, "spec.training.precision",
            ("must be one of: fp32, bf16, fp16",)),
    BadCase("training-typo", {"spec.training": {"lerningRate": 1e-4}}, "spec.training.lerningRate",
            ("unknown field", "did you mean 'learningRate'?")),
    BadCase("spec-typo", {"spec.strategie": {"type": "lora"}}, "spec.strategie",
            ("unknown field", "did you mean 'strategy'?")),
    BadCase("evaluation-unit", {"spec.training": {"evaluation": {"unit": "minute"}}},
            "spec.training.evaluation.unit", ("must be one of: epoch, step", "got 'minute'")),
    BadCase("early-stopping-metric", {"spec.training": {"earlyStopping": {"metric": "accuracy"}}},
            "spec.training.earlyStopping.metric", ("must be one of: eval_loss, eval_accuracy, eval_f1, eval_perplexity",)),
    BadCase("search-space-empty", {"spec.tune": {"searchSpace": {}}}, "spec.tune.searchSpace",
            ("at least 1 entries",)),
    BadCase("dimension-min-max", _dim(type="uniform", min=1e-3, max=1e-5),
            "spec.tune.searchSpace['training.learningRate']", ("need min < max", "type is uniform")),
    BadCase("dimension-values-missing", _dim(type="choice"),
            "spec.tune.searchSpace['training.learningRate']", ("values is required for choice and grid",),
            crd=UNTYPED_LIST),
    BadCase("dimension-loguniform-zero", _dim(type="loguniform", min=0, max=1),
            "spec.tune.searchSpace['training.learningRate']", ("loguniform needs min > 0",)),
    BadCase("dimension-choice-with-min", _dim(type="choice", values=[1e-4], min=1e-5),
            "spec.tune.searchSpace['training.learningRate']", ("min and max are not used with choice",)),
    BadCase("dimension-randint-fraction",
            {"spec.tune": {"searchSpace": {"training.batchSize": {"type": "randint", "min": 1.5, "max": 8}}}},
            "spec.tune.searchSpace['training.batchSize']", ("randint needs whole-number min and max",)),
    BadCase("dimension-values-nested", _dim(type="choice", values=[[1e-4, 1e-3]]),
            "spec.tune.searchSpace['training.learningRate']",
            ("values must be numbers, strings or booleans", "got [0.0001, 0.001]"), crd=ANY_VALUE),
    BadCase("dimension-type-unknown", _dim(type="normal", min=0, max=1),
            "spec.tune.searchSpace['training.learningRate'].type",
            ("must be one of: choice, grid, uniform, loguniform, randint",)),
    BadCase("search-path-unknown",
            {"spec.tune": {"searchSpace": {"training.learningrate": {"type": "choice", "values": [1]}}}},
            "spec.tune.searchSpace['training.learningrate']",
            ("'training.learningrate' is not a tunable field", "did you mean 'training.learningRate'?"), crd=TUNABLE),
    BadCase("concurrency-above-trials",
            {"spec.tune": {"searchSpace": {"training.seed": {"type": "choice", "values": [1, 2]}},
                           "numTrials": 2, "maxConcurrentTrials": 5}},
            "spec.tune", ("maxConcurrentTrials must be <= numTrials", "5 > 2")),
    BadCase("grid-needs-grid-search",
            {"spec.tune": {"searchSpace": {"training.seed": {"type": "grid", "values": [1, 2]}}}},
            "spec.tune", ("grid dimensions need searchAlgorithm grid",)),
    BadCase("bayesian-grid",
            {"spec.tune": {"searchAlgorithm": "bayesian",
                           "searchSpace": {"training.seed": {"type": "grid", "values": [1, 2]}}}},
            "spec.tune", ("bayesian search cannot use grid dimensions",)),
    BadCase("tune-metric-unknown",
            {"spec.tune": {"metric": "eval_auc", "searchSpace": {"training.seed": {"type": "choice", "values": [1]}}}},
            "spec.tune.metric", ("must be one of: eval_loss, eval_accuracy, eval_f1, eval_perplexity", "got 'eval_auc'")),
    BadCase("tune-other-strategy",
            {"spec.tune": {"searchSpace": {"strategy.lora.r": {"type": "choice", "values": [4, 8]}}}},
            "spec", ("tune.searchSpace can tune the settings of strategy.type only", "strategy.type is full")),
    BadCase("endpoint-no-scheme", {"spec.output": {"uri": "s3://b", "endpoint": "minio:9000"}},
            "spec.output.endpoint", ("http:// or https:// URL", "got 'minio:9000'")),
    BadCase("keep-checkpoints-zero", {"spec.output": {"uri": "s3://b", "keepCheckpoints": 0}},
            "spec.output.keepCheckpoints", ("must be >= 1",)),
    BadCase("secret-name-invalid", {"spec.output": {"uri": "s3://b", "secretRef": {"name": "S3 Creds"}}},
            "spec.output.secretRef.name", ("lowercase DNS name", "got 'S3 Creds'")),
    BadCase("workers-zero", {"spec.resources": {"workers": 0}}, "spec.resources.workers", ("must be >= 1",)),
    BadCase("cpu-not-quantity", {"spec.resources": {"worker": {"cpu": "lots"}}}, "spec.resources.worker.cpu",
            ("Kubernetes quantity such as 2, 500m or 8Gi", "got 'lots'")),
    BadCase("cpu-zero", {"spec.resources": {"worker": {"cpu": "0"}}}, "spec.resources.worker.cpu",
            ("cpu must be a positive quantity",), crd_path="spec.resources.worker"),
    BadCase("gpu-negative", {"spec.resources": {"worker": {"gpu": -1}}}, "spec.resources.worker.gpu",
            ("must be >= 0",)),
    BadCase("accelerator-without-gpu", {"spec.resources": {"acceleratorType": "nvidia-tesla-a100"}},
            "spec.resources", ("acceleratorType needs worker.gpu > 0",)),
    BadCase("fsdp-one-worker", {"spec.resources": {"distributed": "fsdp"}}, "spec.resources",
            ("distributed fsdp", "at least 2 workers")),
    BadCase("distributed-unknown", {"spec.resources": {"distributed": "zero3", "workers": 2}},
            "spec.resources.distributed", ("ddp", "fsdp", "got 'zero3'")),
    BadCase("fsdp-gradual-unfreezing", {"spec.resources": {"distributed": "fsdp", "workers": 2},
                                        "spec.strategy": {"type": "gradualUnfreezing"}},
            "spec", ("resources.distributed fsdp cannot run strategy.type gradualUnfreezing",)),
    BadCase("fsdp-fp16", {"spec.resources": {"distributed": "fsdp", "workers": 2, "worker": {"gpu": 1}},
                          "spec.training": {"precision": "fp16"}},
            "spec", ("resources.distributed fsdp cannot run training.precision fp16",)),
    BadCase("ray-accelerator-without-gpu", {"spec.resources": {"rayAcceleratorType": "A100"}},
            "spec.resources", ("rayAcceleratorType needs worker.gpu > 0",)),
    BadCase("ray-accelerator-node-label", {"spec.resources": {"rayAcceleratorType": "nvidia-tesla-a100",
                                                              "worker": {"gpu": 1}}},
            "spec.resources.rayAcceleratorType", ("not an accelerator type Ray knows", "resources.acceleratorType",
                                                  "A100", "H100", "L4")),
    BadCase("toleration-effect", {"spec.resources": {"tolerations": [{"key": "k", "effect": "Sometimes"}]}},
            "spec.resources.tolerations[0].effect",
            ("must be one of: NoSchedule, PreferNoSchedule, NoExecute", "got 'Sometimes'")),
    BadCase("tolerations-not-list", {"spec.resources": {"tolerations": "none"}}, "spec.resources.tolerations",
            ("must be a list", "got 'none'")),
    BadCase("node-selector-number", {"spec.resources": {"nodeSelector": {"pool": 1}}},
            "spec.resources.nodeSelector.pool", ("must be a string", "got 1")),
    BadCase("queue-name-invalid", {"spec.scheduling": {"queueName": "GPU_Queue"}}, "spec.scheduling.queueName",
            ("lowercase DNS name",)),
    BadCase("backoff-too-high", {"spec.scheduling": {"backoffLimit": 101}}, "spec.scheduling.backoffLimit",
            ("must be <= 100", "got 101")),
    BadCase("output-policy-unknown", {"spec.outputPolicy": "Keep"}, "spec.outputPolicy",
            ("must be one of: Retain, Delete", "got 'Keep'")),
    BadCase("model-not-mapping", {"spec.model": "bert-base"}, "spec.model", ("must be a mapping",)),
    BadCase("api-version-wrong", {"apiVersion": "finetune.dev/v1"}, "apiVersion",
            ("must be finetune.dev/v1alpha1", "got 'finetune.dev/v1'"), crd=IDENTITY),
    BadCase("kind-wrong", {"kind": "Job"}, "kind", ("must be FineTuneJob", "got 'Job'"), crd=IDENTITY),
)
