"""kopf handlers: the triggers that call the one reconcile function.

Everything a handler does is `reconcile.reconcile(namespace, name)`; they only differ
in *when* it runs:

- create / update / resume of a FineTuneJob (kopf retries on TemporaryError);
- any event on a RayJob we own (KubeRay moved it on), which wakes its owner;
- a timer on every live job, for progress, deadlines and the queue;
- deletion of a job with `outputPolicy: Delete`, the only case with a finalizer.

The per-namespace queue needs every job's place, which a kopf index keeps in memory
from the same watch stream (no extra LIST calls).

Nothing registers at import: `register(registry, options, settings)` adds the handlers
to a kopf registry, so the timer's interval comes from the options the process was
started with (kopf fixes a timer's interval when the handler is registered).
"""

from __future__ import annotations

import copy
import functools
from typing import Any

import kopf

from finetune_operator import admission, naming, reconcile, runtime
from finetune_operator.api import GROUP, PLURAL, TERMINAL_PHASES, VERSION, Phase
from finetune_operator.kube import RAYJOB_GROUP, RAYJOB_PLURAL, RAYJOB_VERSION, KubeApi
from finetune_operator.settings import Settings


def _controller(memo: kopf.Memo) -> reconcile.Controller:
    return memo["controller"]


def login(**kwargs: Any) -> Any:
    return runtime.login(**kwargs)


async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, logger: Any,
                  options: runtime.RuntimeOptions, operator_settings: Settings, **_: Any) -> None:
    """`options` and `operator_settings` are bound by `register`; `settings` is kopf's."""
    runtime.configure(settings, options)
    controller = reconcile.Controller(KubeApi(settings), operator_settings)
    memo["controller"] = controller
    memo["metrics_server"] = runtime.start_metrics_server(options, controller.metrics.registry)
    logger.info("finetune operator started (resync every %.0fs)", options.resync_seconds)


async def shutdown(memo: kopf.Memo, **_: Any) -> None:
    server = memo.get("metrics_server")
    if server is not None:
        server.shutdown()
        server.server_close()


async def job_phases(namespace: str, name: str, status: kopf.Status, **_: Any) -> Any:
    """{(namespace, phase): [name]}: the jobs gauge, kept by kopf."""
    return {(namespace, status.get("phase") or Phase.PENDING): name}


async def jobs_by_namespace(body: kopf.Body, namespace: str, memo: kopf.Memo, **_: Any) -> Any:
    """{namespace: [JobSummary]}: the queue's view of every job, kept by kopf."""
    controller = memo.get("controller")
    if controller is None:  # events before start-up finished; the resume handler catches up
        return None
    return {namespace: admission.summarize(dict(body), controller.settings)}


async def job_seen(memo: kopf.Memo, job_phases: kopf.Index, **_: Any) -> None:
    """Any change of any job (status included): refresh the jobs-by-phase gauge from
    the index kopf has just updated. Cheap: one entry per (namespace, phase)."""
    controller = memo.get("controller")
    if controller is not None:
        controller.update_phase_counts({key: len(names) for key, names in job_phases.items()})


async def job_appeared(body: kopf.Body, namespace: str, name: str, memo: kopf.Memo, logger: Any,
                       jobs_by_namespace: kopf.Index, **_: Any) -> None:
    """A new job, or every job at operator start-up. The body has just been read from
    the API (created or listed), so it is used as is: one GET fewer per new job."""
    await _controller(memo).reconcile(namespace, name, queue=_queue(jobs_by_namespace, namespace),
                                      logger=logger, body=copy.deepcopy(dict(body)))


async def job_changed(namespace: str, name: str, memo: kopf.Memo, logger: Any,
                      jobs_by_namespace: kopf.Index, **_: Any) -> None:
    await _controller(memo).reconcile(namespace, name, queue=_queue(jobs_by_namespace, namespace),
                                      logger=logger)


async def resync(namespace: str, name: str, status: kopf.Status, memo: kopf.Memo, logger: Any,
                 jobs_by_namespace: kopf.Index, resync_seconds: float, **_: Any) -> None:
    """`resync_seconds` is bound by `register`, the same as the timer's interval."""
    controller = _controller(memo)
    if not controller.resync_due(namespace, name, status.get("phase"), resync_seconds):
        return
    await controller.reconcile(namespace, name, queue=_queue(jobs_by_namespace, namespace), logger=logger)


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


async def job_deleted(body: kopf.Body, memo: kopf.Memo, logger: Any, **_: Any) -> None:
    """outputPolicy Delete: remove the job's artifacts before the finalizer goes."""
    await _controller(memo).cleanup_outputs(dict(body), logger=logger)


def _queue(index: kopf.Index, namespace: str) -> list[admission.JobSummary]:
    return [summary for summary in index.get(namespace, []) if summary is not None]


def _is_live(status: kopf.Status, **_: Any) -> bool:
    return status.get("phase") not in TERMINAL_PHASES


def _deletes_outputs(spec: kopf.Spec, **_: Any) -> bool:
    return spec.get("outputPolicy") == "Delete"


def register(registry: kopf.OperatorRegistry, options: runtime.RuntimeOptions,
             settings: Settings) -> kopf.OperatorRegistry:
    """Add every handler to `registry`, with what the process was started with bound in.

    Handlers are bound with functools.partial, whose kopf id is the function's own
    name (so progress annotations and index names stay those of the functions)."""
    resync_seconds = options.resync_seconds
    kopf.on.login(registry=registry)(login)
    kopf.on.startup(registry=registry)(
        functools.partial(startup, options=options, operator_settings=settings))
    kopf.on.cleanup(registry=registry)(shutdown)
    kopf.index(GROUP, VERSION, PLURAL, registry=registry)(job_phases)
    kopf.index(GROUP, VERSION, PLURAL, registry=registry)(jobs_by_namespace)
    kopf.on.event(GROUP, VERSION, PLURAL, registry=registry)(job_seen)
    kopf.on.create(GROUP, VERSION, PLURAL, registry=registry)(job_appeared)
    kopf.on.resume(GROUP, VERSION, PLURAL, registry=registry)(job_appeared)
    kopf.on.update(GROUP, VERSION, PLURAL, registry=registry)(job_changed)
    kopf.timer(GROUP, VERSION, PLURAL, interval=resync_seconds, initial_delay=resync_seconds,
               when=_is_live, registry=registry)(
        functools.partial(resync, resync_seconds=resync_seconds))
    _timer_needs_no_finalizer(registry, "resync")
    kopf.on.event(RAYJOB_GROUP, RAYJOB_VERSION, RAYJOB_PLURAL, registry=registry,
                  labels={naming.MANAGED_BY_LABEL: naming.MANAGED_BY_VALUE})(rayjob_event)
    kopf.on.delete(GROUP, VERSION, PLURAL, when=_deletes_outputs, registry=registry)(job_deleted)
    return registry


def _timer_needs_no_finalizer(registry: kopf.OperatorRegistry, handler_id: str) -> None:
    """kopf puts a finalizer on every object that has a timer, to stop the timer before
    the object goes. Ours holds nothing to clean up, and a finalizer on every job
    would cost a PATCH per job and block namespace deletion while the operator is
    down; only outputPolicy Delete needs one (the delete handler adds it)."""
    for handler in registry._spawning.get_all_handlers():
        if handler.id == handler_id:
            object.__setattr__(handler, "requires_finalizer", False)
