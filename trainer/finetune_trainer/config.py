"""The training configuration: what to fine-tune, on what data, and how.

These pydantic models are the single source of truth for the training part of a
FineTuneJob. The operator embeds them in its Kubernetes resource spec, the CRD schema
is generated from them, and the trainer validates its input with the very same code.

Cross-field rules are declared once per model in ``CEL_RULES`` as pairs of a CEL
expression (emitted into the CRD as ``x-kubernetes-validations``) and the message the
API server shows; the pydantic validators below enforce the same rules offline.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal, Optional

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

from finetune_trainer.search_space import check_tunable_path, set_path

# Metrics the trainer computes on the validation split; the only names a metric field
# may take.
EVAL_METRICS = ("eval_loss", "eval_accuracy", "eval_f1")
MetricName = Literal["eval_loss", "eval_accuracy", "eval_f1"]
Mode = Literal["min", "max"]


class Spec(BaseModel):
    """Base for every spec model: camelCase in YAML, unknown fields rejected."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        use_attribute_docstrings=True,
        validate_default=True,
    )

    # (CEL expression, message) pairs, evaluated by the API server on this object.
    CEL_RULES: ClassVar[tuple[tuple[str, str], ...]] = ()

    def to_dict(self) -> dict[str, Any]:
        """The object as it appears in YAML: camelCase, unset optionals left out."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


# --------------------------------------------------------------------------- model


class ModelSpec(Spec):
    """The pre-trained model to start from."""

    source: str = Field(min_length=1)
    """Where the weights come from: a Hugging Face hub id (`org/name`), a local path,
    or an `s3://bucket/prefix` URI holding a `save_pretrained` folder."""

    revision: Optional[str] = None
    """Hub revision (branch, tag or commit) when `source` is a hub id."""

    allowDownload: bool = False
    """Let the driver download a hub-id `source` from the Hugging Face hub: once, into
    the job's output folder (`<uri>/<job>/base-model/`), from where every worker loads
    it. Off (the default), a hub id must already be in the image's model cache."""

    loadDtype: Literal["float32", "bfloat16", "float16", "auto"] = "float32"
    """The dtype the weights are loaded in. `float32` (the default) keeps fp32 master
    weights whatever the checkpoint holds, and `training.precision` bf16/fp16 then runs
    the forward pass under autocast. `bfloat16`/`float16` load (and train) the weights
    in that half precision, with no fp32 copy, to save memory; `auto` keeps the
    checkpoint's own dtype. Half-precision weights cannot train with
    `training.precision: fp16` (its gradient scaler needs fp32 gradients)."""

    task: Literal["sequence-classification"] = "sequence-classification"
    """What the model is fine-tuned for. `sequence-classification` is implemented;
    `causal-lm` and `token-classification` are planned as further values of this enum."""

    numLabels: Optional[int] = Field(default=None, ge=2, le=10000)
    """Number of classes. Optional when `labels` is given or labels are inferred from
    the training data."""

    labels: Optional[list[str]] = Field(
        default=None, min_length=2, max_length=10000, json_schema_extra={"x-kubernetes-list-type": "set"}
    )
    """Class names, in label-id order, each listed once. Data labels may be these
    names or their integer ids."""

    CEL_RULES = (
        (
            "!has(self.labels) || !has(self.numLabels) || size(self.labels) == self.numLabels",
            "numLabels must equal the number of labels when both are given",
        ),
    )

    @model_validator(mode="after")
    def _labels_match(self) -> "ModelSpec":
        if self.labels is not None and self.numLabels is not None:
            if len(self.labels) != self.numLabels:
                raise ValueError(
                    f"numLabels must equal the number of labels when both are given "
                    f"(numLabels={self.numLabels}, {len(self.labels)} labels)"
                )
        if self.labels is not None and len(set(self.labels)) != len(self.labels):
            raise ValueError("labels must be unique")
        return self

    @property
    def num_classes(self) -> Optional[int]:
        return len(self.labels) if self.labels else self.numLabels


# ---------------------------------------------------------------------------- data

DataFormat = Literal["csv", "tsv", "jsonl", "parquet"]


class AugmentationSpec(Spec):
    """Random text augmentation applied to training examples only."""

    wordDropout: float = Field(default=0.0, ge=0.0, lt=1.0)
    """Probability of dropping each word of a training example."""

    wordSwap: float = Field(default=0.0, ge=0.0, lt=1.0)
    """Probability of swapping each word with its right neighbour."""

    CEL_RULES = (
        ("self.wordDropout > 0.0 || self.wordSwap > 0.0",
         "set wordDropout or wordSwap above 0, or leave augmentation out"),
    )

    @model_validator(mode="after")
    def _something_enabled(self) -> "AugmentationSpec":
        if self.wordDropout == 0.0 and self.wordSwap == 0.0:
            raise ValueError("set wordDropout or wordSwap above 0, or leave augmentation out")
        return self


class DataSpec(Spec):
    """The labelled text data: where it lives and how to read it."""

    train: str = Field(min_length=1)
    """Training data: a local path, an `s3://` URI, or `hf://<dataset>[@<split>]` for
    a Hugging Face hub dataset."""

    validation: Optional[str] = None
    """Validation data, as `train`. When absent, `validationFraction` of the training
    data is split off."""

    test: Optional[str] = None
    """Test data, as `train`; scored once at the end with the best checkpoint."""

    format: Optional[DataFormat] = None
    """File format. Inferred from the file extension when absent."""

    textColumn: str = Field(default="text", min_length=1)
    """Column with the input text."""

    textPairColumn: Optional[str] = None
    """Optional second text column, for sentence-pair tasks."""

    labelColumn: str = Field(default="label", min_length=1)
    """Column with the label: a class name or an integer id."""

    validationFraction: float = Field(default=0.1, gt=0.0, le=0.5)
    """Share of the training data held out for validation when no `validation` source
    is given."""

    maxSeqLength: int = Field(default=128, ge=8, le=8192)
    """Token sequences are truncated to this length."""

    maxSamples: Optional[int] = Field(default=None, ge=1)
    """Use at most this many training examples (after shuffling)."""

    shuffleSeed: int = Field(default=42, ge=0)
    """Seed for shuffling and for the validation split."""

    strict: bool = False
    """Fail on rows with a missing value and on duplicate training rows, instead of
    dropping them and reporting the counts."""

    augmentation: Optional[AugmentationSpec] = None
    """Optional random augmentation of training texts."""


# ------------------------------------------------------------------------ strategy

StrategyType = Literal["full", "partial", "featureExtraction", "gradualUnfreezing", "lora"]


class PartialSpec(Spec):
    """What `partial` fine-tuning freezes."""

    freezeEmbeddings: bool = True
    """Freeze the embedding layer."""

    freezeLayers: int = Field(default=0, ge=0, le=1000)
    """Freeze the lowest N transformer layers."""

    freezePatterns: list[str] = Field(default_factory=list, max_length=64)
    """Also freeze parameters whose name matches any of these regular expressions."""

    CEL_RULES = (
        ("self.freezeEmbeddings || self.freezeLayers > 0"
         " || (has(self.freezePatterns) && size(self.freezePatterns) > 0)",
         "partial must freeze something: freezeEmbeddings, freezeLayers or freezePatterns"),
    )

    @model_validator(mode="after")
    def _freezes_something(self) -> "PartialSpec":
        if not (self.freezeEmbeddings or self.freezeLayers or self.freezePatterns):
            raise ValueError(
                "partial must freeze something: freezeEmbeddings, freezeLayers or freezePatterns"
            )
        import re

        for pattern in self.freezePatterns:
            try:
                re.compile(pattern)
            except re.error as err:
                raise ValueError(f"freezePatterns: {pattern!r} is not a valid regular expression: {err}")
        return self


class GradualUnfreezingSpec(Spec):
    """Start with only the head trainable, then unfreeze one more layer from the top
    every `every` units."""

    every: int = Field(default=1, ge=1)
    """How many units between two unfreezing steps."""

    unit: Literal["epoch", "step"] = "epoch"
    """Whether `every` counts epochs or optimizer steps."""

    unfreezeEmbeddings: bool = False
    """Unfreeze the embeddings too once every layer is unfrozen."""


class LoraSpec(Spec):
    """Low-rank adapters (peft LoRA)."""

    r: int = Field(default=8, ge=1, le=1024)
    """Rank of the adapter matrices."""

    alpha: float = Field(default=16.0, gt=0)
    """Scaling numerator; the update is scaled by alpha / r."""

    dropout: float = Field(default=0.05, ge=0.0, lt=1.0)
    """Dropout on the adapter input."""

    targetModules: list[str] = Field(default_factory=lambda: ["query", "value"], min_length=1, max_length=64)
    """Names (suffixes) of the linear modules that get adapters."""

    mergeOnExport: bool = True
    """Export the merged model (true) or only the adapter (false)."""


class StrategySpec(Spec):
    """Which parameters are fine-tuned."""

    type: StrategyType = "full"
    """`full`, `partial`, `featureExtraction`, `gradualUnfreezing` or `lora`."""

    partial: Optional[PartialSpec] = None
    """Settings for `partial`."""

    gradualUnfreezing: Optional[GradualUnfreezingSpec] = None
    """Settings for `gradualUnfreezing`."""

    lora: Optional[LoraSpec] = None
    """Settings for `lora`."""

    CEL_RULES = (
        ("!has(self.partial) || self.type == 'partial'",
         "partial settings are allowed only with type partial"),
        ("!has(self.gradualUnfreezing) || self.type == 'gradualUnfreezing'",
         "gradualUnfreezing settings are allowed only with type gradualUnfreezing"),
        ("!has(self.lora) || self.type == 'lora'",
         "lora settings are allowed only with type lora"),
    )

    @model_validator(mode="after")
    def _settings_match_type(self) -> "StrategySpec":
        for name in ("partial", "gradualUnfreezing", "lora"):
            if getattr(self, name) is not None and self.type != name:
                raise ValueError(f"{name} settings are allowed only with type {name} (type is {self.type})")
        return self

    def resolved(self) -> "StrategySpec":
        """A copy whose settings block for `type` is filled with its defaults."""
        defaults = {"partial": PartialSpec, "gradualUnfreezing": GradualUnfreezingSpec, "lora": LoraSpec}
        if self.type in defaults and getattr(self, self.type) is None:
            return self.model_copy(update={self.type: defaults[self.type]()})
        return self


# ------------------------------------------------------------------------ training


class OptimizerSpec(Spec):
    """The optimizer and its parameters."""

    name: Literal["adamw", "sgd", "rmsprop"] = "adamw"
    """`adamw`, `sgd` or `rmsprop`."""

    beta1: float = Field(default=0.9, ge=0.0, lt=1.0)
    """AdamW first-moment decay."""

    beta2: float = Field(default=0.999, ge=0.0, lt=1.0)
    """AdamW second-moment decay."""

    epsilon: float = Field(default=1e-8, gt=0.0)
    """Numerical-stability term (AdamW, RMSprop)."""

    momentum: float = Field(default=0.0, ge=0.0, lt=1.0)
    """Momentum (SGD, RMSprop)."""

    nesterov: bool = False
    """Nesterov momentum (SGD only; needs momentum > 0)."""

    alpha: float = Field(default=0.99, gt=0.0, lt=1.0)
    """RMSprop smoothing constant."""

    CEL_RULES = (
        ("!self.nesterov || (self.name == 'sgd' && self.momentum > 0.0)",
         "nesterov needs name sgd and momentum > 0"),
    )

    @model_validator(mode="after")
    def _nesterov(self) -> "OptimizerSpec":
        if self.nesterov and not (self.name == "sgd" and self.momentum > 0):
            raise ValueError("nesterov needs name sgd and momentum > 0")
        return self


class SchedulerSpec(Spec):
    """The learning-rate schedule, after an optional linear warmup."""

    name: Literal["linear", "cosine", "constant"] = "linear"
    """`linear` decay to 0, `cosine` decay to 0, or `constant`."""

    warmupSteps: int = Field(default=0, ge=0)
    """Optimizer steps of linear warmup from 0 to the learning rate."""

    warmupRatio: float = Field(default=0.0, ge=0.0, lt=1.0)
    """Warmup as a share of all optimizer steps; used when warmupSteps is 0."""

    CEL_RULES = (
        ("self.warmupSteps == 0 || self.warmupRatio == 0.0",
         "set warmupSteps or warmupRatio, not both"),
    )

    @model_validator(mode="after")
    def _one_warmup(self) -> "SchedulerSpec":
        if self.warmupSteps and self.warmupRatio:
            raise ValueError("set warmupSteps or warmupRatio, not both")
        return self


class IntervalSpec(Spec):
    """Every how many epochs or steps something happens."""

    every: int = Field(default=1, ge=1)
    """How many units between two occurrences."""

    unit: Literal["epoch", "step"] = "epoch"
    """`epoch` or `step` (optimizer steps)."""


class EarlyStoppingSpec(Spec):
    """Stop when a validation metric stops improving."""

    metric: MetricName = "eval_loss"
    """The validation metric to watch."""

    mode: Mode = "min"
    """`min` if lower is better, `max` if higher is better."""

    patience: int = Field(default=3, ge=1)
    """Evaluations without improvement before stopping."""

    minDelta: float = Field(default=0.0, ge=0.0)
    """Smallest change that counts as an improvement."""


class TrainingSpec(Spec):
    """Hyperparameters of one training run."""

    epochs: float = Field(default=3.0, gt=0.0, le=10000)
    """Passes over the training data. Ignored when maxSteps is set."""

    maxSteps: Optional[int] = Field(default=None, ge=1)
    """Stop after this many optimizer steps; overrides epochs."""

    batchSize: int = Field(default=16, ge=1, le=65536)
    """Examples per worker per forward pass. The global batch is batchSize x workers x
    gradientAccumulationSteps."""

    gradientAccumulationSteps: int = Field(default=1, ge=1, le=4096)
    """Forward passes per optimizer step."""

    learningRate: float = Field(default=5e-5, gt=0.0, le=10.0)
    """Peak learning rate."""

    optimizer: OptimizerSpec = Field(default_factory=OptimizerSpec)
    """The optimizer."""

    scheduler: SchedulerSpec = Field(default_factory=SchedulerSpec)
    """The learning-rate schedule."""

    weightDecay: float = Field(default=0.0, ge=0.0, le=1.0)
    """Decoupled weight decay; not applied to biases and LayerNorm weights."""

    dropout: Optional[float] = Field(default=None, ge=0.0, lt=1.0)
    """Override the model's dropout probabilities."""

    maxGradNorm: Optional[float] = Field(default=1.0, gt=0.0)
    """Clip the gradient norm to this value; set to null to disable clipping."""

    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    """Numeric precision. bf16 and fp16 need a GPU; on CPU the trainer falls back to
    fp32 with a warning."""

    seed: int = Field(default=42, ge=0)
    """Seed for weights of new layers, dropout and data order."""

    evaluation: IntervalSpec = Field(default_factory=IntervalSpec)
    """How often to evaluate on the validation split."""

    checkpoint: IntervalSpec = Field(default_factory=IntervalSpec)
    """How often to write a checkpoint."""

    earlyStopping: Optional[EarlyStoppingSpec] = None
    """Stop early when the watched metric stops improving."""


# ---------------------------------------------------------------------------- tune

# Bounded so the API server's CEL cost estimate for rules over the search space stays
# within its limits; no sweep needs more.
MAX_SEARCH_DIMENSIONS = 32
DimensionType = Literal["choice", "grid", "uniform", "loguniform", "randint"]


def _tunable_path(path: str) -> str:
    check_tunable_path(path, TrainingConfig)
    return path


# A search-space key: checked per key, so an error points at the key itself.
TunablePath = Annotated[str, AfterValidator(_tunable_path)]


class SearchDimension(Spec):
    """One hyperparameter's search domain."""

    type: DimensionType
    """`choice` or `grid` over `values`; `uniform`, `loguniform` or `randint` over
    [min, max)."""

    values: Optional[list[Any]] = Field(default=None, min_length=1, max_length=256)
    """Candidate values, for `choice` and `grid`."""

    min: Optional[float] = None
    """Lower bound, for `uniform`, `loguniform` and `randint`."""

    max: Optional[float] = None
    """Upper bound (exclusive for `randint`)."""

    # No rule for "values only with choice and grid": the API server's CEL leaves a list
    # of untyped items (values) out of the object's type, so a rule naming
    # `self.values` does not compile and the CRD is refused. _domain checks it.
    CEL_RULES = (
        ("(self.type == 'choice' || self.type == 'grid') || (has(self.min) && has(self.max) && self.min < self.max)",
         "uniform, loguniform and randint need min < max"),
        ("self.type != 'loguniform' || (has(self.min) && self.min > 0.0)",
         "loguniform needs min > 0"),
        ("!(self.type == 'choice' || self.type == 'grid') || (!has(self.min) && !has(self.max))",
         "min and max are not used with choice and grid; list values instead"),
        ("self.type != 'randint' || !has(self.min) || !has(self.max)"
         " || (double(int(self.min)) == self.min && double(int(self.max)) == self.max)",
         "randint needs whole-number min and max"),
    )

    @model_validator(mode="after")
    def _domain(self) -> "SearchDimension":
        listed = self.type in ("choice", "grid")
        if listed != (self.values is not None):
            raise ValueError(f"values is required for choice and grid, and allowed only there (type is {self.type})")
        if listed:
            if self.min is not None or self.max is not None:
                raise ValueError(
                    f"min and max are not used with choice and grid; list values instead (type is {self.type})"
                )
            for value in self.values or []:
                if not isinstance(value, (int, float, str, bool)):
                    raise ValueError(f"values must be numbers, strings or booleans (got {value!r})")
            return self
        if self.min is None or self.max is None or not self.min < self.max:
            raise ValueError("uniform, loguniform and randint need min < max "
                             f"(type is {self.type}; got min={self.min}, max={self.max})")
        if self.type == "loguniform" and self.min <= 0:
            raise ValueError(f"loguniform needs min > 0 (got {self.min})")
        if self.type == "randint" and (self.min != int(self.min) or self.max != int(self.max)):
            raise ValueError("randint needs whole-number min and max")
        return self


class TuneSchedulerSpec(Spec):
    """How Ray Tune allots resources among trials."""

    name: Literal["fifo", "asha", "pbt"] = "fifo"
    """`fifo` runs every trial to the end; `asha` stops weak trials early; `pbt`
    perturbs hyperparameters of weak trials from strong ones."""

    gracePeriod: int = Field(default=1, ge=1)
    """ASHA: evaluations a trial always gets before it may be stopped."""

    reductionFactor: float = Field(default=2.0, gt=1.0)
    """ASHA: 1/reductionFactor of trials advance at each rung."""

    perturbationInterval: int = Field(default=1, ge=1)
    """PBT: evaluations between two perturbations."""


class TuneSpec(Spec):
    """A hyperparameter sweep run with Ray Tune."""

    searchSpace: dict[TunablePath, SearchDimension] = Field(min_length=1, max_length=MAX_SEARCH_DIMENSIONS)
    """Hyperparameters to search (at most 32), keyed by their path in the spec, for
    example `training.learningRate` or `strategy.lora.r`."""

    searchAlgorithm: Literal["random", "grid", "bayesian"] = "random"
    """`random`, `grid` (every combination of grid values) or `bayesian` (Optuna TPE)."""

    scheduler: TuneSchedulerSpec = Field(default_factory=TuneSchedulerSpec)
    """The trial scheduler."""

    numTrials: int = Field(default=4, ge=1, le=10000)
    """Trials to run (for `grid`: repetitions of the full grid)."""

    maxConcurrentTrials: Optional[int] = Field(default=None, ge=1)
    """Upper bound on trials running at once; by default as many as resources allow."""

    metric: MetricName = "eval_loss"
    """The validation metric that ranks trials."""

    mode: Mode = "min"
    """`min` if lower is better, `max` if higher is better."""


    CEL_RULES = (
        ("!has(self.maxConcurrentTrials) || self.maxConcurrentTrials <= self.numTrials",
         "maxConcurrentTrials must be <= numTrials"),
        ("self.searchAlgorithm != 'bayesian' || self.searchSpace.all(k, self.searchSpace[k].type != 'grid')",
         "bayesian search cannot use grid dimensions; use choice"),
        ("self.searchAlgorithm == 'grid' || self.searchSpace.all(k, self.searchSpace[k].type != 'grid')",
         "grid dimensions need searchAlgorithm grid"),
    )

    @model_validator(mode="after")
    def _consistent(self) -> "TuneSpec":
        if self.maxConcurrentTrials is not None and self.maxConcurrentTrials > self.numTrials:
            raise ValueError(
                f"maxConcurrentTrials must be <= numTrials (got {self.maxConcurrentTrials} > {self.numTrials})"
            )
        grids = sorted(k for k, d in self.searchSpace.items() if d.type == "grid")
        if grids and self.searchAlgorithm == "bayesian":
            raise ValueError(f"bayesian search cannot use grid dimensions; use choice (grid: {', '.join(grids)})")
        if grids and self.searchAlgorithm != "grid":
            raise ValueError(f"grid dimensions need searchAlgorithm grid (grid: {', '.join(grids)})")
        return self


# -------------------------------------------------------------------------- output


class OutputSpec(Spec):
    """Where the model, metrics and checkpoints go."""

    uri: str = Field(min_length=1)
    """`s3://bucket/prefix` or a local path. Each job writes under `<uri>/<job name>/`."""

    endpoint: Optional[str] = Field(default=None, pattern=r"^https?://[^\s/]+(/.*)?$")
    """S3 endpoint URL for S3-compatible stores (MinIO, SeaweedFS, Ceph)."""

    region: Optional[str] = None
    """S3 region."""

    keepCheckpoints: int = Field(default=2, ge=1, le=100)
    """How many checkpoints to keep per trial."""

    @property
    def is_s3(self) -> bool:
        return self.uri.startswith("s3://")


# --------------------------------------------------------------- the whole config


class TrainingConfig(Spec):
    """Everything the trainer needs to know about a fine-tune, and nothing of
    Kubernetes."""

    model: ModelSpec
    """The pre-trained model."""

    data: DataSpec
    """The training, validation and test data."""

    strategy: StrategySpec = Field(default_factory=StrategySpec)
    """Which parameters are fine-tuned."""

    training: TrainingSpec = Field(default_factory=TrainingSpec)
    """Hyperparameters."""

    tune: Optional[TuneSpec] = None
    """Optional hyperparameter sweep."""

    output: OutputSpec
    """Where results go."""

    CEL_RULES = (
        ("!has(self.tune) || self.tune.searchSpace.all(k, ['partial', 'gradualUnfreezing', 'lora'].all(b,"
         " !k.startsWith('strategy.' + b + '.') || (has(self.strategy) ? self.strategy.type : 'full') == b))",
         "tune.searchSpace can tune the settings of strategy.type only"),
    )

    @model_validator(mode="after")
    def _fp16_scaler_needs_fp32_weights(self) -> "TrainingConfig":
        if self.model.loadDtype in ("float16", "bfloat16") and self.training.precision == "fp16":
            raise ValueError(
                f"model.loadDtype {self.model.loadDtype} cannot train with training.precision fp16: the "
                "gradient scaler needs fp32 weights; use model.loadDtype float32 (the default) or "
                "training.precision bf16"
            )
        return self

    @model_validator(mode="after")
    def _tuned_strategy_settings_apply(self) -> "TrainingConfig":
        if self.tune is not None:
            for path in self.tune.searchSpace:
                head, _, rest = path.partition(".")
                if head == "strategy" and "." in rest:
                    block = rest.split(".", 1)[0]
                    if block != self.strategy.type:
                        raise ValueError(
                            f"tune.searchSpace can tune the settings of strategy.type only "
                            f"('{path}' tunes {block}, but strategy.type is {self.strategy.type})"
                        )
        return self


def with_overrides(config: TrainingConfig, overrides: dict[str, Any]) -> TrainingConfig:
    """A validated copy of `config` with dotted-path overrides (a Tune trial's
    hyperparameters) applied."""
    document = config.to_dict()
    for path, value in overrides.items():
        set_path(document, path, value)
    return TrainingConfig.model_validate(document)


class ScalingSpec(Spec):
    """How many Ray Train workers, and what each holds."""

    numWorkers: int = Field(default=1, ge=1, le=4096)
    """Data-parallel workers per trial."""

    cpusPerWorker: float = Field(default=1.0, gt=0)
    """Logical CPUs each worker reserves in Ray."""

    gpusPerWorker: float = Field(default=0.0, ge=0)
    """GPUs each worker reserves; above 0 means training on GPU with NCCL."""

    acceleratorType: Optional[str] = None
    """Ray accelerator type to pin workers to, for example `A100`."""


class JobConfig(Spec):
    """The trainer's whole input: a named training configuration and its scaling.

    The operator writes this as JSON into a ConfigMap; `finetune run` builds it from a
    manifest. The name keys the run's storage, so a restart with the same name and
    output resumes instead of starting over."""

    name: str = Field(min_length=1, max_length=253, pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    """Run name: the storage folder under the output URI."""

    config: TrainingConfig
    """The training configuration."""

    scaling: ScalingSpec = Field(default_factory=ScalingSpec)
    """Workers and their resources."""
