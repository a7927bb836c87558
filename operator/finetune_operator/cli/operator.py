"""`finetune operator`: run the FineTuneJob operator against a cluster.

This is the operator's entry point, the one module that imports both the handlers and
`runtime` (which stay unaware of each other's start-up). kopf and the handlers are
imported inside the functions, so other subcommands start without them.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
from typing import TYPE_CHECKING, Any

from finetune_operator.errors import UserError

if TYPE_CHECKING:  # kopf comes with runtime, which only `finetune operator` needs
    from finetune_operator.runtime import RuntimeOptions
    from finetune_operator.settings import Settings

_NAMESPACE = re.compile(r"^[a-z0-9*?\[\]!-]([-a-z0-9*?\[\]!]*)?$")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "operator",
        help="run the FineTuneJob operator (kopf) against a Kubernetes cluster",
        description="Watch FineTuneJobs and run each as a KubeRay RayJob. Serves Prometheus "
        "metrics and a /healthz probe; replicas share work through kopf peering.",
    )
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument("-n", "--namespace", action="append", default=[], metavar="NS",
                       help="namespace to watch (repeatable; kopf glob patterns allowed)")
    scope.add_argument("-A", "--all-namespaces", action="store_true", help="watch every namespace")
    parser.add_argument("--kubeconfig", help="kubeconfig file (default: in-cluster, then KUBECONFIG)")
    parser.add_argument("--metrics-port", type=int, default=None,
                        help="Prometheus /metrics port; 0 disables (default: settings, 8080)")
    parser.add_argument("--health-port", type=int, default=None,
                        help="/healthz probe port; 0 disables (default: settings, 8081)")
    parser.add_argument("--bind", default="0.0.0.0", help="address of the metrics and probe servers")
    parser.add_argument("--peering-name", default="finetune-operator",
                        help="kopf peering object shared by the operator's replicas")
    parser.add_argument("--priority", type=int, default=0, help="this replica's peering priority")
    parser.add_argument("--standalone", action="store_true",
                        help="run without peering (a single replica, or tests)")
    parser.add_argument("--resync-seconds", type=float, default=15.0,
                        help="how often each live job is re-read for progress and queueing (default 15)")
    parser.set_defaults(func=run)


def options_from_args(args: argparse.Namespace, settings: Settings) -> RuntimeOptions:
    """Check the flags and turn them into RuntimeOptions; flags win over settings."""
    from finetune_operator.runtime import RuntimeOptions

    if not args.namespace and not args.all_namespaces:
        args.namespace = list(settings.namespaces)
    if args.metrics_port is None:
        args.metrics_port = settings.metrics_port
    if args.health_port is None:
        args.health_port = settings.health_port
    if not args.namespace and not args.all_namespaces:
        raise UserError("choose what to watch: --namespace NS (repeatable), --all-namespaces, "
                        "or the namespaces setting (FINETUNE_NAMESPACES)")
    for namespace in args.namespace:
        if not _NAMESPACE.match(namespace) or len(namespace) > 63:
            raise UserError(f"--namespace: {namespace!r} is not a namespace name or glob pattern")
    for flag, port in (("--metrics-port", args.metrics_port), ("--health-port", args.health_port)):
        if not 0 <= port <= 65535:
            raise UserError(f"{flag}: must be between 0 and 65535 (got {port})")
    if args.metrics_port and args.metrics_port == args.health_port:
        raise UserError("--metrics-port and --health-port must differ")
    if args.kubeconfig and not os.path.isfile(args.kubeconfig):
        raise UserError(f"--kubeconfig: no such file: {args.kubeconfig}")
    if args.resync_seconds <= 0:
        raise UserError(f"--resync-seconds: must be above 0 (got {args.resync_seconds})")
    return RuntimeOptions(
        namespaces=list(args.namespace),
        all_namespaces=args.all_namespaces,
        kubeconfig=args.kubeconfig,
        metrics_port=args.metrics_port,
        health_port=args.health_port,
        host=args.bind,
        peering_name=args.peering_name,
        priority=args.priority,
        standalone=args.standalone,
        resync_seconds=args.resync_seconds,
    )


async def run_operator(options: RuntimeOptions, settings: Settings, *, stop_flag: Any = None,
                       ready_flag: Any = None) -> None:
    """Run the operator in the current event loop until `stop_flag` is set.

    The handlers go into a registry of their own, built from these options and
    settings, rather than into kopf's process-wide default one."""
    import kopf

    from finetune_operator import handlers, runtime

    registry = handlers.register(kopf.OperatorRegistry(), options, settings)
    await kopf.operator(registry=registry, stop_flag=stop_flag, ready_flag=ready_flag,
                        memo=kopf.Memo(), **runtime.kopf_operator_kwargs(options))


def serve(options: RuntimeOptions, settings: Settings) -> None:
    """Run the operator until SIGINT/SIGTERM (what `finetune operator` does)."""
    from finetune_operator import runtime

    if options.kubeconfig:
        os.environ["KUBECONFIG"] = options.kubeconfig
    runtime.preflight(options)
    runtime.quiet_logs()
    asyncio.run(run_operator(options, settings))


def run(args: argparse.Namespace) -> int:
    from finetune_operator.settings import load_settings

    settings = load_settings()
    options = options_from_args(args, settings)
    try:
        serve(options, settings)
    except OSError as err:  # a port in use, most often
        raise UserError(f"cannot start the operator's servers: {err}") from None
    return 0
