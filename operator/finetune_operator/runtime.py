"""Starting the operator: kopf settings, login, peering, probes and the metrics server.

A leaf: it knows kopf, not the handlers. The entry point that runs kopf with the
handlers registered is `finetune_operator.cli.operator` (`serve`, `run_operator`).
The kopf settings are applied once, at start-up, and chosen for a cluster with a
thousand FineTuneJobs: handler progress and the diff base live in annotations (so the
CRD's structural status is never polluted by `status.kopf`), watches are re-opened
every few minutes so a silently dropped stream is noticed, API errors are retried with
a bounded back-off, and kopf's own per-handler log Events are off (we post our own,
with a fixed set of reasons, only on phase changes).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Any, Optional

import kopf

from finetune_operator import naming
from finetune_operator.api import GROUP

logger = logging.getLogger(__name__)

SERVICE_ACCOUNT_TOKEN = "/var/run/secrets/kubernetes.io/serviceaccount/token"


@dataclass
class RuntimeOptions:
    """How this operator process runs; the flags of `finetune operator`."""

    namespaces: list[str] = field(default_factory=list)
    """Namespaces (or kopf glob patterns) to watch; empty with all_namespaces."""

    all_namespaces: bool = False
    """Watch the whole cluster."""

    kubeconfig: Optional[str] = None
    """Kubeconfig path; in a pod the service account is used instead."""

    metrics_port: int = 8080
    """Prometheus /metrics port (0 disables the server)."""

    health_port: int = 8081
    """Liveness/readiness probe port, served at /healthz (0 disables it)."""

    host: str = "0.0.0.0"
    """Address the probe and metrics servers bind to."""

    peering_name: str = "finetune-operator"
    """Kopf peering object shared by replicas; only the highest priority one works."""

    priority: int = 0
    """This replica's peering priority."""

    standalone: bool = False
    """Run without peering (single replica, or tests)."""

    resync_seconds: float = 15.0
    """How often each live job is re-read (progress, stuck detection, queue)."""


def configure(settings: kopf.OperatorSettings, options: RuntimeOptions) -> None:
    """Apply the kopf settings once, from the start-up handler."""
    settings.persistence.finalizer = naming.FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration",
    )
    # After kopf patches its own annotations it waits for the watch event with that
    # resourceVersion before handling the object again; a stale event handled earlier
    # looks like a second creation. Under load (1,000 jobs at once) 5 s is too short.
    settings.persistence.consistency_timeout = 60
    # Our own Events carry the fixed reasons; kopf's handler-log Events would add a
    # write per handler call for 1,000 jobs.
    settings.posting.level = logging.WARNING
    settings.posting.enabled = True
    # Re-open watches every 5 minutes (server side) and give up on a silent stream
    # after 6, so a dropped connection costs at most minutes, not forever.
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 360
    settings.watching.connect_timeout = 10
    settings.watching.reconnect_backoff = 1.0
    settings.networking.request_timeout = 30
    settings.networking.connect_timeout = 10
    settings.networking.error_backoffs = (0.2, 0.5, 1, 2, 5, 10)
    # Handlers are async; the thread pool only serves kopf's own sync helpers.
    settings.execution.max_workers = 4
    settings.peering.name = options.peering_name
    settings.peering.priority = options.priority
    settings.peering.standalone = options.standalone
    settings.peering.clusterwide = options.all_namespaces
    settings.peering.mandatory = not options.standalone


def login(**kwargs: Any) -> Optional[kopf.ConnectionInfo]:
    """In a pod: the service account. Elsewhere: the kubeconfig (KUBECONFIG or ~/.kube).

    kopf's own login helpers are used, not the kubernetes client, so the operator's
    process never imports the synchronous client (tens of MB of generated models)."""
    if os.path.exists(SERVICE_ACCOUNT_TOKEN):
        return kopf.login_with_service_account(**kwargs)
    info = kopf.login_with_kubeconfig(**kwargs)
    if info is None:
        raise kopf.LoginError(
            "no Kubernetes credentials: pass --kubeconfig, set KUBECONFIG, or run in a pod "
            "with a service account"
        )
    return info


def start_metrics_server(options: RuntimeOptions, registry: Any) -> Optional[Any]:
    """Serve /metrics of the operator's registry on a thread of its own, so a busy
    event loop never delays a scrape. Returns the server (for shutdown)."""
    if not options.metrics_port:
        return None
    from prometheus_client import start_http_server

    server, _thread = start_http_server(options.metrics_port, addr=options.host, registry=registry)
    return server


def kopf_operator_kwargs(options: RuntimeOptions) -> dict[str, Any]:
    """The arguments of `kopf.operator` that the options decide."""
    liveness = f"http://{options.host}:{options.health_port}/healthz" if options.health_port else None
    return dict(
        clusterwide=options.all_namespaces,
        namespaces=list(options.namespaces),
        standalone=options.standalone,
        priority=options.priority,
        peering_name=options.peering_name,
        liveness_endpoint=liveness,
    )


def quiet_logs() -> None:
    """kopf logs every handler success at INFO; with 1,000 jobs that is most of the
    operator's CPU. Keep its per-object lines at WARNING unless -v asked for DEBUG."""
    if logging.getLogger().getEffectiveLevel() > logging.DEBUG:
        for name in ("kopf.objects", "aiohttp.access"):
            logging.getLogger(name).setLevel(logging.WARNING)


def preflight(options: RuntimeOptions) -> None:
    """Fail fast, with a plain message, on what kopf would otherwise retry forever or
    report with a traceback: no credentials, an unreadable kubeconfig, a busy port."""
    import socket

    from finetune_operator.errors import UserError

    if not os.path.exists(SERVICE_ACCOUNT_TOKEN):
        try:
            info = kopf.login_with_kubeconfig(settings=kopf.OperatorSettings())
        except Exception as err:  # kopf reads the file itself; any failure is the file's fault
            where = os.environ.get("KUBECONFIG") or "~/.kube/config"
            raise UserError(f"cannot use the kubeconfig {where}: {type(err).__name__}: {err}") from None
        if info is None:
            raise UserError("no Kubernetes credentials: pass --kubeconfig FILE, set KUBECONFIG, "
                            "or run in a pod with a service account")
    for flag, port in (("--metrics-port", options.metrics_port), ("--health-port", options.health_port)):
        if not port:
            continue
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((options.host, port))
            except OSError as err:
                raise UserError(f"{flag}: cannot listen on {options.host}:{port}: {err.strerror}") from None
