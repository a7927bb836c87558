"""`finetune run FILE`: run a FineTuneJob manifest on a local (embedded) Ray.

The same manifest that goes to the cluster runs here unchanged: it is validated by
the operator's own code, `--set` overrides are applied to the spec before validation,
and the trainer gets the very JobConfig the operator would build. Local relative
paths are made absolute first, because Ray workers do not share the shell's working
directory. Progress is shown live (a bar, and a trials table for sweeps), followed by
a summary of the best trial, its metrics and where the model went.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

from finetune_operator.errors import UserError

# Logical CPUs the embedded Ray declares beyond what the job's workers reserve: Tune
# trial drivers and Ray's own actors mostly wait, so they may share the real cores.
DRIVER_HEADROOM_CPUS = 1


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "run",
        help="run a FineTuneJob manifest on a local Ray",
        description="Train the FineTuneJob in FILE on an embedded Ray (or the cluster in RAY_ADDRESS), "
        "showing progress, then print the best trial, its metrics and the model's location.",
    )
    parser.add_argument("file", metavar="FILE", help="FineTuneJob manifest (YAML)")
    parser.add_argument("--output", metavar="URI", help="override spec.output.uri (local path or s3://bucket/prefix)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="PATH=VALUE",
                        help="override a spec field by its dotted camelCase path, e.g. "
                        "training.learningRate=3e-5 or model.source=/models/minilm (repeatable)")
    parser.add_argument("--workers", type=int, metavar="N", help="override spec.resources.workers")
    parser.add_argument("--name", help="run name (default: metadata.name); keys the output folder")
    parser.add_argument("--cpus", type=float, metavar="N",
                        help="logical CPUs of the embedded Ray (default: enough for the job)")
    parser.add_argument("--plain", action="store_true",
                        help="print progress lines instead of the live display (for logs and CI)")
    parser.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                        help="let transformers, datasets and the hub print their own logs and progress bars")
    parser.set_defaults(func=run)


# ------------------------------------------------------------------ manifest


def parse_override(text: str) -> tuple[str, Any]:
    """`path=value` with the value read as YAML (numbers, booleans, lists)."""
    import yaml

    from finetune_operator import plain_yaml
    from finetune_operator.manifests import format_path

    path, sep, raw = text.partition("=")
    path = path.strip()
    if not sep or not path:
        raise UserError(f"--set {text!r}: expected PATH=VALUE, for example training.learningRate=3e-5")
    if path.startswith("spec."):
        path = path[len("spec."):]
    try:
        value = plain_yaml.load_value(raw) if raw.strip() else ""
    except yaml.YAMLError as err:
        raise UserError(f"--set {path}: cannot read the value {raw!r}: {err}") from None
    except plain_yaml.PlainYamlError as err:
        where = format_path((*path.split("."), *err.loc))
        raise UserError(f"--set {where}: {err.message}") from None
    return path, value


def _absolute_local(uri: str | None, base: Path) -> str | None:
    if uri is None or "://" in uri and not uri.startswith("file://"):
        return uri
    if uri.startswith("file://"):
        uri = uri[len("file://"):]
    path = Path(uri).expanduser()
    return str(path if path.is_absolute() else (base / path).resolve())


def _looks_local(source: str, base: Path) -> bool:
    return "://" not in source and (source.startswith((".", "/", "~")) or (base / source).exists())


def load_job(args: argparse.Namespace):
    """The validated FineTuneJob with overrides applied and local paths absolute."""
    from finetune_operator.manifests import ManifestError, Problem, load_manifests, parse_job
    from finetune_trainer.api import set_path

    documents = load_manifests(args.file)
    if len(documents) != 1:
        raise UserError(f"{args.file}: holds {len(documents)} manifests; `finetune run` runs one at a time")
    index, document = documents[0]
    spec = document.get("spec")
    if not isinstance(spec, dict):
        raise ManifestError([Problem(args.file, "spec", "is required; expected the FineTuneJob spec mapping")])
    for text in args.overrides:
        path, value = parse_override(text)
        try:
            set_path(spec, path, value)
        except ValueError as err:
            raise UserError(f"--set {path}: {err}") from None
    if args.output:
        set_path(spec, "output.uri", args.output)
    if args.workers is not None:
        if args.workers < 1:
            raise UserError(f"--workers: must be 1 or more (got {args.workers})")
        set_path(spec, "resources.workers", args.workers)
    base = Path.cwd()
    data = spec.get("data") if isinstance(spec.get("data"), dict) else {}
    for key in ("train", "validation", "test"):
        if isinstance(data.get(key), str) and not data[key].startswith("hf://"):
            data[key] = _absolute_local(data[key], base)
    model = spec.get("model") if isinstance(spec.get("model"), dict) else {}
    if isinstance(model.get("source"), str) and _looks_local(model["source"], base):
        model["source"] = _absolute_local(model["source"], base)
    output = spec.get("output") if isinstance(spec.get("output"), dict) else {}
    if isinstance(output.get("uri"), str):
        output["uri"] = _absolute_local(output["uri"], base)
    source = args.file if not args.overrides else f"{args.file} (with --set)"
    return parse_job(document, source)


# ------------------------------------------------------------------ Ray


def _start_ray(job_config, cpus: float | None) -> None:
    import ray

    from finetune_trainer.api import local_ray_init_kwargs

    if ray.is_initialized():
        return
    address = os.environ.get("RAY_ADDRESS")
    try:
        if address:
            ray.init(address=address, log_to_driver=False)
            return
        scaling = job_config.scaling
        tune = job_config.config.tune
        concurrent = 1
        if tune is not None:
            concurrent = tune.max_concurrent_trials or min(tune.num_trials, 2)
        needed = scaling.num_workers * scaling.cpus_per_worker * concurrent + DRIVER_HEADROOM_CPUS
        declared = cpus or max(float(os.cpu_count() or 1), needed)
        ray.init(address="local", num_cpus=int(declared + 0.999), include_dashboard=True,
                 log_to_driver=False, configure_logging=True, logging_level="WARNING", **local_ray_init_kwargs())
    except (ConnectionError, RuntimeError, ValueError) as err:
        raise UserError(f"cannot start or reach Ray{f' at RAY_ADDRESS={address}' if address else ''}: {err}") \
            from None


# ------------------------------------------------------------------ display


class LiveView:
    """A rich live display: progress bar, and a trials table when sweeping."""

    def __init__(self, console, sweeping: bool, metric: str) -> None:
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        self.console = console
        self.sweeping = sweeping
        self.metric = metric
        self.progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.percentage:>5.1f}%"),
                                 TextColumn("{task.fields[detail]}"), TimeElapsedColumn(), console=console)
        self.task = self.progress.add_task("training", total=100.0, detail="starting Ray workers")
        self.trials: dict = {}
        self.live = None

    def _renderable(self):
        from rich.console import Group
        from rich.table import Table

        if not self.sweeping or not self.trials:
            return self.progress
        table = Table(title="trials", expand=False)
        for column in ("trial", "hyperparameters", "step", "loss", self.metric, "state"):
            table.add_column(column)
        for trial_id, state in sorted(self.trials.items()):
            latest = state.latest
            params = ", ".join(f"{k.rsplit('.', 1)[-1]}={v:.3g}" if isinstance(v, float) else f"{k.rsplit('.', 1)[-1]}={v}"
                               for k, v in state.hyperparameters.items())
            value = latest.get(self.metric)
            table.add_row(trial_id[-12:], params, str(latest.get("step", "")),
                          f"{latest['loss']:.4f}" if "loss" in latest else "",
                          f"{value:.4f}" if isinstance(value, float) else "", "done" if state.done else "running")
        return Group(self.progress, table)

    def __enter__(self):
        from rich.live import Live

        self.live = Live(self._renderable(), console=self.console, refresh_per_second=4)
        self.live.__enter__()
        return self

    def __exit__(self, *exc):
        self.live.__exit__(*exc)

    def update(self, report, trials) -> None:
        self.trials = trials
        detail = f"step {report.step}" + (f"/{report.total_steps}" if report.total_steps else "")
        if report.trials_total > 1:
            detail += f"  trials {report.trials_completed}/{report.trials_total}"
        if report.metrics.get("loss") is not None:
            detail += f"  loss {report.metrics['loss']:.4f}"
        if self.metric in report.metrics:
            detail += f"  {self.metric} {report.metrics[self.metric]:.4f}"
        self.progress.update(self.task, completed=report.percent, detail=detail)
        if self.live is not None:
            self.live.update(self._renderable())


def _show(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def summary_table(result, elapsed: float):
    from rich.table import Table

    table = Table(title=f"finetune run: {result.name}", show_header=False)
    table.add_column("what", style="bold", no_wrap=True)
    table.add_column("value")
    metrics = result.metrics
    if result.already_finished:
        table.add_row("status", "already finished earlier; not trained again")
    search = metrics.get("search") or {}
    if result.best_trial or search:
        table.add_row("best trial", str((result.best_trial or {}).get("id") or search.get("best_trial")))
    for key, value in (metrics.get("hyperparameters") or {}).items():
        table.add_row(f"trained with {key}", _show(value))
    for key, space in (search.get("space") or {}).items():
        table.add_row(f"searched {key}", str(space))
    for key in ("eval_loss", "eval_accuracy", "eval_f1", "eval_perplexity", "test_loss", "test_accuracy",
                "test_f1", "test_perplexity", "train_samples_per_second", "train_runtime_seconds"):
        value = metrics.get(key)
        if isinstance(value, (int, float)):
            table.add_row(key, f"{value:.4f}")
    table.add_row("model", result.model_uri)
    table.add_row("wall time", f"{elapsed:.0f} s")
    return table


# ------------------------------------------------------------------ command


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from finetune_trainer.api import use_loopback_for_embedded_ray

    use_loopback_for_embedded_ray()  # before anything imports ray
    from finetune_trainer.api import set_verbose

    set_verbose(bool(getattr(args, "verbose", False)))  # before Ray starts: its workers inherit it

    job = load_job(args)
    name = args.name or job.metadata.name
    try:
        job_config = job.spec.job_config(name)
    except ValueError as err:
        raise UserError(f"{args.file}: {err}") from None

    from finetune_trainer.api import TrainerError, check_locally, run_job, selection_metric

    try:  # what can be told here is told before Ray starts, in the job's own words
        check_locally(job_config)
    except TrainerError as err:
        raise UserError(f"job {name} cannot start: {err}") from None
    console = Console()
    started = time.monotonic()
    _start_ray(job_config, args.cpus)
    metric, _ = selection_metric(job_config.config)
    try:
        if args.plain or not console.is_terminal:
            result = run_job(job_config, echo=True)
        else:
            with LiveView(console, job_config.config.tune is not None, metric) as view:
                result = run_job(job_config, progress_callback=view.update, echo=False)
    except TrainerError as err:
        raise UserError(f"job {name} failed: {err}") from None
    finally:
        import ray

        if ray.is_initialized() and not os.environ.get("RAY_ADDRESS"):
            ray.shutdown()
    console.print(summary_table(result, time.monotonic() - started))
    accuracy = result.metrics.get("test_accuracy", result.metrics.get("eval_accuracy"))
    label = "test accuracy" if "test_accuracy" in result.metrics else "validation accuracy"
    perplexity = result.metrics.get("eval_perplexity")
    if isinstance(accuracy, (int, float)):
        console.print(f"{label}: {accuracy:.4f}  model: {result.model_uri}")
    elif isinstance(perplexity, (int, float)):  # a causal LM
        console.print(f"validation perplexity: {perplexity:.4f}  model: {result.model_uri}")
    return 0
