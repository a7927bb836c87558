"""kopf handlers: the triggers that call the one reconcile function.

Everything a handler does is `reconcile.reconcile(namespace, name)`; they only differ
in *when* it runs:

- create / update / resume of a FineTuneJob (kopf retries on TemporaryError);
- any event on a RayJob we own (KubeRay moved it on), which wakes its owner;
- a timer on every live job, for progress, deadlines and the queue;
- deletion of a job with `outputPolicy: Delete`, the only case with a finalizer.

The per-namespace queue needs every job's place, which a kopf index keeps in memory
from the same watch stream (no extra LIST calls).
"""

from __future__ import annotations

import copy
import os
from typing import Any

import kopf

from finetune_operator import admission, naming, reconcile, runtime
from finetune_operator.api import GROUP, PLURAL, TERMINAL_PHASES, VERSION
from finetune_operator.kube import RAYJOB_GROUP, RAYJOB_PLURAL, RAYJOB_VERSION, KubeApi
from finetune_operator.settings import load_settings

# Read when this module is imported (runtime.run sets it from --resync-seconds first):
# kopf fixes a timer's interval when the handler is registered.
RESYNC_SECONDS = float(os.environ.get("FINETUNE_RESYNC_SECONDS", "15"))


def _controller(memo: kopf.Memo) -> reconcile.Controller:
    return memo["controller"]


@kopf.on.login()
def login(**kwargs: Any) -> Any:
    return runtime.login(**kwargs)


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, logger: Any, **_: Any) -> None:
    options = memo.get("options") or runtime.RuntimeOptions(standalone=True)
    runtime.configure(settings, options)
    operator_settings = memo.get("settings") or load_settings()
    controller = reconcile.Controller(KubeApi(settings), operator_settings)
    memo["controller"] = controller
    memo["metrics_server"] = runtime.start_metrics_server(options, controller.metrics.registry)
    logger.info("finetune operator started (resync every %.0fs)", RESYNC_SECONDS)


@kopf.on.cleanup()
async def shutdown(memo: kopf.Memo, **_: Any) -> None:
    server = memo.get("metrics_server")
    if server is not None:
        server.shutdown()
        server.server_close()


@kopf.index(GROUP, VERSION, PLURAL)
async def job_phases(namespace: str, name: str, status: kopf.Status, **_: Any) -> Any:
    """{(namespace, phase): [name]}: the jobs gauge, kept by kopf."""
    return {(namespace, status.get("phase") or "Pending"): name}


@kopf.index(GROUP, VERSION, PLURAL)
async def jobs_by_namespace(body: kopf.Body, namespace: str, memo: kopf.Memo, **_: Any) -> Any:
    """{namespace: [JobSummary]}: the queue's view of every job, kept by kopf."""
    controller = memo.get("controller")
    if controller is None:  # events before start-up finished; the resume handler catches up
        return None
    return {namespace: admission.summarize(dict(body), controller.settings)}


@kopf.on.event(GROUP, VERSION, PLURAL)
async def job_seen(memo: kopf.Memo, job_phases: kopf.Index, **_: Any) -> None:
    """Any change of any job (status included): refresh the jobs-by-phase gauge from
    the index kopf has just updated. Cheap: one entry per (namespace, phase)."""
    controller = memo.get("controller")
    if controller is not None:
        controller.update_phase_counts({key: len(names) for key, names in job_phases.items()})


@kopf.on.resume(GROUP, VERSION, PLURAL)
@kopf.on.create(GROUP, VERSION, PLURAL)
async def job_appeared(body: kopf.Body, namespace: str, name: str, memo: kopf.Memo, logger: Any,
                       jobs_by_namespace: kopf.Index, **_: Any) -> None:
    """A new job, or every job at operator start-up. The body has just been read from
    the API (created or listed), so it is used as is: one GET fewer per new job."""
    await _controller(memo).reconcile(namespace, name, queue=_queue(jobs_by_namespace, namespace),
                                      logger=logger, body=copy.deepcopy(dict(body)))


@kopf.on.update(GROUP, VERSION, PLURAL)
async def job_changed(namespace: str, name: str, memo: kopf.Memo, logger: Any,
                      jobs_by_namespace: kopf.Index, **_: Any) -> None:
    await _controller(memo).reconcile(namespace, name, queue=_queue(jobs_by_namespace, namespace),
                                      logger=logger)


@kopf.timer(GROUP, VERSION, PLURAL, interval=RESYNC_SECONDS, initial_delay=RESYNC_SECONDS,
            when=lambda status, **_: status.get("phase") not in TERMINAL_PHASES)
async def resync(namespace: str, name: str, status: kopf.Status, memo: kopf.Memo, logger: Any,
                 jobs_by_namespace: kopf.Index, **_: Any) -> None:
    controller = _controller(memo)
    if not controller.resync_due(namespace, name, status.get("phase"), RESYNC_SECONDS):
        return
    await controller.reconcile(namespace, name, queue=_queue(jobs_by_namespace, namespace), logger=logger)


def _timer_needs_no_finalizer(handler_id: str) -> None:
    """kopf puts a finalizer on every object that has a timer, to stop the timer before
    the object goes. Ours holds nothing to clean up, and a finalizer on every job
    would cost a PATCH per job and block namespace deletion while the operator is
    down; only outputPolicy Delete needs one (the delete handler adds it)."""
    for handler in kopf.get_default_registry()._spawning.get_all_handlers():
        if handler.id == handler_id:
            object.__setattr__(handler, "requires_finalizer", False)


_timer_needs_no_finalizer("resync")


@kopf.on.event(RAYJOB_GROUP, RAYJOB_VERSION, RAYJOB_PLURAL,
               labels={naming.MANAGED_BY_LABEL: naming.MANAGED_BY_VALUE})
async def rayjob_event(body: kopf.Body, namespace: str, memo: kopf.Memo, logger: Any,
                       jobs_by_namespace: kopf.Index, **_: Any) -> None:
    """KubeRay changed a RayJob we own: reconcile the FineTuneJob that owns it."""
    controller = memo.get("controller")
    if controller is None or not body.get("status"):
        return  # nothing KubeRay observed yet: the creating reconcile has it in hand
    owner = next((ref for ref in body.metadata.get("ownerReferences") or []
                  if ref.get("kind") == "FineTuneJob" and ref.get("controller")), None)
    if owner is None:
        return
    try:
        await controller.reconcile(namespace, owner["name"], queue=_queue(jobs_by_namespace, namespace),
                                   logger=logger)
    except kopf.TemporaryError as err:
        # Event handlers are not retried; the owner's timer will pick it up.
        logger.warning("reconcile of %s/%s after a RayJob event failed: %s", namespace, owner["name"], err)


@kopf.on.delete(GROUP, VERSION, PLURAL, when=lambda spec, **_: spec.get("outputPolicy") == "Delete")
async def job_deleted(body: kopf.Body, memo: kopf.Memo, logger: Any, **_: Any) -> None:
    """outputPolicy Delete: remove the job's artifacts before the finalizer goes."""
    await _controller(memo).cleanup_outputs(dict(body), logger=logger)


def _queue(index: kopf.Index, namespace: str) -> list[admission.JobSummary]:
    return [summary for summary in index.get(namespace, []) if summary is not None]
