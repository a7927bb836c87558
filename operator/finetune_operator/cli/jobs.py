"""`finetune submit | list | status | wait | logs`: FineTuneJobs on a cluster.

These talk to the cluster of the current kubeconfig context, like kubectl. Each
command imports the Kubernetes client only when it runs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import datetime, timezone
from typing import Any, Optional

from finetune_operator.api import GROUP, KIND, PLURAL, TERMINAL_PHASES
from finetune_operator.errors import UserError

EXIT_SUCCEEDED, EXIT_FAILED, EXIT_TIMEOUT = 0, 1, 2


def register(subparsers: Any) -> None:
    connection = argparse.ArgumentParser(add_help=False)
    group = connection.add_argument_group("cluster")
    group.add_argument("--kubeconfig", metavar="FILE", help="kubeconfig file (default: $KUBECONFIG or ~/.kube/config)")
    group.add_argument("--context", help="kubeconfig context (default: the current one)")
    group.add_argument("-n", "--namespace", help="namespace (default: the context's, else 'default')")

    submit = subparsers.add_parser("submit", parents=[connection], help="create or update FineTuneJobs from a file",
                                   description="Validate the FineTuneJobs in FILE and create them on the cluster; "
                                               "a job that exists already gets the file's spec.")
    submit.add_argument("file", metavar="FILE", help="YAML manifest with one or more FineTuneJobs ('-' for stdin)")
    submit.set_defaults(func=_submit)

    listing = subparsers.add_parser("list", parents=[connection], help="list FineTuneJobs",
                                    description="A table of FineTuneJobs: phase, progress, best metric and age.")
    listing.add_argument("-A", "--all-namespaces", action="store_true", help="list jobs in every namespace")
    listing.add_argument("-l", "--selector", default="", help="label selector, e.g. team=nlp")
    listing.set_defaults(func=_list)

    status = subparsers.add_parser("status", parents=[connection], help="show one FineTuneJob's status",
                                   description="Phase, conditions, progress, metrics and model URI of a job.")
    status.add_argument("name", metavar="NAME")
    status.add_argument("-o", "--output", choices=("text", "json", "yaml"), default="text",
                        help="text (default), or the whole object as json or yaml")
    status.set_defaults(func=_status)

    wait = subparsers.add_parser("wait", parents=[connection], help="wait until a FineTuneJob finishes",
                                 description="Watch a job until it Succeeded (exit 0) or Failed (exit 1); "
                                             "exit 2 when the timeout passes first.")
    wait.add_argument("name", metavar="NAME")
    wait.add_argument("--timeout", type=_positive_seconds, default=None, metavar="SECONDS",
                      help="give up after this many seconds (default: wait forever)")
    wait.set_defaults(func=_wait)

    logs = subparsers.add_parser("logs", parents=[connection], help="print a FineTuneJob's training log",
                                 description="Print the log of the job's RayJob submitter pod, where the "
                                             "trainer's driver output goes.")
    logs.add_argument("name", metavar="NAME")
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing until the pod ends")
    logs.add_argument("--tail", type=int, default=None, metavar="LINES", help="only the last LINES lines")
    logs.set_defaults(func=_logs)


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--timeout must be a number of seconds (got {text!r})") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"--timeout must be positive (got {text})")
    return value


def _jobs(args: argparse.Namespace) -> Any:
    from finetune_operator.client import JobsClient, connect

    return JobsClient(connect(args.kubeconfig, args.context, args.namespace))


# ---------------------------------------------------------------------------- submit


def _read_documents(path: str) -> list[tuple[str, dict[str, Any]]]:
    """(label for messages, validated document) for each FineTuneJob in the file."""
    from finetune_operator.manifests import (
        ManifestError,
        document_label,
        load_manifests,
        parse_documents,
        parse_job,
    )

    if path == "-":
        source, documents = "<stdin>", parse_documents(sys.stdin.read(), "<stdin>")
    else:
        source, documents = path, load_manifests(path)
    problems, validated = [], []
    for index, document in documents:
        label = document_label(source, index, len(documents))
        try:
            parse_job(document, label)
        except ManifestError as err:
            problems.extend(err.problems)
            continue
        validated.append((label, document))
    if problems:
        raise ManifestError(problems)
    return validated


def _submit(args: argparse.Namespace) -> int:
    documents = _read_documents(args.file)
    for label, document in documents:  # Every check before anything is sent.
        written = document["metadata"].get("namespace")
        if args.namespace and written and written != args.namespace:
            raise UserError(f"{label}: metadata.namespace is {written!r} but --namespace is "
                            f"{args.namespace!r}; drop one of them")
    jobs = _jobs(args)
    for _, document in documents:
        namespace = document["metadata"].get("namespace") or jobs.connection.namespace
        outcome, _ = jobs.create_or_replace(namespace, document)
        print(f"{PLURAL}.{GROUP}/{document['metadata']['name']} {outcome} (namespace {namespace})")
    return 0


# ------------------------------------------------------------------------------ list


def _console() -> Any:
    from rich.console import Console

    columns = os.environ.get("COLUMNS", "")
    width = None if sys.stdout.isatty() else (int(columns) if columns.isdigit() else 200)
    return Console(file=sys.stdout, width=width, highlight=False, soft_wrap=False)


def age(timestamp: Optional[str], now: Optional[datetime] = None) -> str:
    """How long ago, kubectl style: 45s, 12m, 3h, 5d."""
    if not timestamp:
        return "-"
    try:
        then = datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    except ValueError:
        return "-"
    seconds = max(0, int(((now or datetime.now(timezone.utc)) - then).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def progress_text(status: dict[str, Any]) -> str:
    """`42% (step 40/120)`, with the trial count for sweeps; `-` before any report."""
    progress = status.get("progress") or {}
    if not progress:
        return "-"
    text = f"{progress.get('percent', 0):.0f}%"
    parts = []
    if progress.get("totalSteps"):
        parts.append(f"step {progress.get('step', 0)}/{progress['totalSteps']}")
    if (progress.get("trialsTotal") or 1) > 1:
        parts.append(f"trials {progress.get('trialsCompleted', 0)}/{progress['trialsTotal']}")
    return f"{text} ({', '.join(parts)})" if parts else text


def best_metric_text(status: dict[str, Any]) -> str:
    if status.get("bestMetric"):
        return str(status["bestMetric"])
    best = status.get("bestMetrics") or {}
    if best:
        key = sorted(best)[0]
        return f"{key}={best[key]:.4g}"
    return "-"


def _list(args: argparse.Namespace) -> int:
    from rich import box
    from rich.table import Table

    jobs = _jobs(args)
    namespace = None if args.all_namespaces else jobs.connection.namespace
    items = jobs.list(namespace, args.selector)
    if not items:
        where = "in any namespace" if namespace is None else f"in namespace {namespace}"
        print(f"No {PLURAL} found {where}.")
        return 0
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
    if namespace is None:
        table.add_column("NAMESPACE", no_wrap=True)
    for column in ("NAME", "PHASE", "PROGRESS", "BEST METRIC", "AGE"):
        table.add_column(column, no_wrap=True)
    for item in sorted(items, key=lambda i: (i["metadata"].get("namespace", ""), i["metadata"]["name"])):
        status = item.get("status") or {}
        row = [item["metadata"]["name"], status.get("phase") or "Pending", progress_text(status),
               best_metric_text(status), age(item["metadata"].get("creationTimestamp"))]
        if namespace is None:
            row.insert(0, item["metadata"].get("namespace", ""))
        table.add_row(*row)
    _console().print(table)
    return 0


# ---------------------------------------------------------------------------- status


def _format_metrics(metrics: dict[str, Any]) -> str:
    return "  ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in sorted(metrics.items()))


def _status(args: argparse.Namespace) -> int:
    jobs = _jobs(args)
    job = jobs.get(jobs.connection.namespace, args.name)
    if args.output == "json":
        print(json.dumps(job, indent=2, sort_keys=True))
        return 0
    if args.output == "yaml":
        import yaml

        print(yaml.safe_dump(job, sort_keys=False), end="")
        return 0
    status = job.get("status") or {}
    rows: list[tuple[str, str]] = [
        ("Name", job["metadata"]["name"]),
        ("Namespace", job["metadata"].get("namespace", "")),
        ("Phase", status.get("phase") or "Pending"),
    ]
    optional = [
        ("Message", status.get("message")),
        ("RayJob", status.get("rayJobName") and f"{status['rayJobName']} (attempt {status.get('attempt', 1)})"),
        ("Started", status.get("startTime")),
        ("Completed", status.get("completionTime")),
        ("Progress", progress_text(status) if status.get("progress") else None),
        ("Metrics", _format_metrics(status.get("metrics") or {})),
        ("Best metrics", _format_metrics(status.get("bestMetrics") or {})),
        ("Best trial", status.get("bestTrial") and (
            f"{status['bestTrial'].get('id')} {_format_metrics(status['bestTrial'].get('hyperparameters') or {})}")),
        ("Model", status.get("modelUri")),
    ]
    rows += [(key, str(value)) for key, value in optional if value]
    width = max(len(key) for key, _ in rows) + 2
    for key, value in rows:
        print(f"{key + ':':<{width}}{value}")
    if status.get("observedGeneration") not in (None, job["metadata"].get("generation")):
        print(f"{'Note:':<{width}}the operator has not yet seen the latest spec "
              f"(generation {job['metadata'].get('generation')}, observed {status.get('observedGeneration')})")
    conditions = status.get("conditions") or []
    if conditions:
        from rich import box
        from rich.table import Table

        table = Table(title=None, box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
        for column in ("TYPE", "STATUS", "REASON", "AGE", "MESSAGE"):
            table.add_column(column, no_wrap=column != "MESSAGE")
        for condition in conditions:
            table.add_row(condition.get("type", ""), condition.get("status", ""), condition.get("reason", ""),
                          age(condition.get("lastTransitionTime")), condition.get("message", ""))
        print("Conditions:")
        _console().print(table)
    return 0


# ------------------------------------------------------------------------------ wait


def _wait(args: argparse.Namespace) -> int:
    jobs = _jobs(args)
    namespace = jobs.connection.namespace
    deadline = None if args.timeout is None else time.monotonic() + args.timeout
    job, version = jobs.snapshot(namespace, args.name)
    while True:
        phase = (job.get("status") or {}).get("phase") or "Pending"
        if phase in TERMINAL_PHASES:
            return _finished(job)
        remaining = 300.0 if deadline is None else deadline - time.monotonic()
        if remaining <= 0:
            raise UserError(f"timed out after {args.timeout:g} s waiting for {KIND} {args.name} "
                            f"(phase {phase})", exit_code=EXIT_TIMEOUT)
        job, version = _next_state(jobs, namespace, args.name, version, min(remaining, 300.0))


class _Deleted(Exception):
    pass


def _next_state(jobs: Any, namespace: str, name: str, version: str, timeout: float) -> tuple[dict[str, Any], str]:
    """The job after its next change and the version to go on from; or a fresh
    snapshot when the watch ends without one.

    A watch may end early (server timeout, dropped stream, 410 Gone); the snapshot
    then catches any change made in between.
    """
    started = time.monotonic()
    try:
        for event_type, obj in jobs.watch_changes(namespace, name, version, timeout):
            if event_type == "DELETED":
                raise _Deleted()
            if event_type in ("ADDED", "MODIFIED"):
                return obj, obj["metadata"]["resourceVersion"]
    except _Deleted:
        raise UserError(f"{KIND} {name} was deleted while waiting for it", exit_code=EXIT_FAILED) from None
    except UserError:
        # The watch request failed (dropped connection, server error). Back off
        # briefly so a persistent failure does not spin; the snapshot reports it.
        time.sleep(min(1.0, max(0.0, timeout - (time.monotonic() - started))))
    return jobs.snapshot(namespace, name)


def _finished(job: dict[str, Any]) -> int:
    status = job.get("status") or {}
    name, phase = job["metadata"]["name"], status.get("phase")
    detail = status.get("modelUri") if phase == "Succeeded" else status.get("message")
    print(f"{KIND} {name} {phase}" + (f": {detail}" if detail else ""))
    return EXIT_SUCCEEDED if phase == "Succeeded" else EXIT_FAILED


# ------------------------------------------------------------------------------ logs


def _logs(args: argparse.Namespace) -> int:
    jobs = _jobs(args)
    namespace = jobs.connection.namespace
    job = jobs.get(namespace, args.name)
    status = job.get("status") or {}
    rayjob = status.get("rayJobName")
    if not rayjob:
        raise UserError(f"{KIND} {args.name} has no RayJob yet (phase {status.get('phase') or 'Pending'}); "
                        "there is no log to show until it starts")
    pod = jobs.submitter_pod(namespace, rayjob)
    if pod is None:
        raise UserError(f"RayJob {rayjob} of {KIND} {args.name} has no submitter pod in namespace {namespace} "
                        "(not started yet, or already cleaned up)")
    try:
        for chunk in jobs.pod_log(namespace, pod, follow=args.follow, tail=args.tail):
            sys.stdout.write(chunk)
            sys.stdout.flush()
    except BrokenPipeError:
        # The reader went away (`finetune logs NAME | head`): stop quietly, as cat does,
        # and keep Python's exit-time flush from failing on the closed pipe too.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0
