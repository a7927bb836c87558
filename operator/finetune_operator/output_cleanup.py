"""Deleting a job's outputs when it goes (outputPolicy Delete), for the delete handler.

The work is done by a batch Job in the trainer image (builders.build_cleanup_job),
which has the storage libraries and the job's credentials; the operator image has
neither. This module starts that Job and waits for it to finish.
"""

from __future__ import annotations

import asyncio
import logging
import time

import kopf

from finetune_operator import builders
from finetune_operator.kube import ApiError, Conflict, KubeApi
from finetune_operator.settings import Settings

# How often the delete handler looks at its cleanup Job, and how long it waits quietly.
CLEANUP_POLL_SECONDS = 2.0
CLEANUP_WAIT_SECONDS = 600.0

log = logging.getLogger(__name__)


async def delete_outputs(kube: KubeApi, settings: Settings, job: dict) -> None:
    """outputPolicy Delete: run a cleanup Job (trainer image, which has pyarrow and
    the job's credentials) and wait for it; the operator image has no storage
    libraries and never sees storage credentials.

    The wait is a poll inside the handler, not a kopf retry: kopf logs every
    TemporaryError at ERROR, and a cleanup that is still running is no error. One
    INFO line says it waits; a Job still unfinished after CLEANUP_WAIT_SECONDS is
    worth an ERROR, so then kopf retries the handler (which polls again)."""
    meta = job["metadata"]
    namespace = meta["namespace"]
    body = builders.build_cleanup_job(job, settings)
    name = body["metadata"]["name"]
    try:
        await kube.create_job(namespace, body)
    except Conflict:
        pass
    except ApiError as err:
        raise kopf.TemporaryError(f"cannot start the output cleanup Job: {err}", delay=10) from err
    deadline = time.monotonic() + CLEANUP_WAIT_SECONDS
    log.info("waiting for output cleanup Job %s/%s of FineTuneJob %s", namespace, name, meta["name"])
    while True:
        try:
            done = await kube.get_job(namespace, name)
        except ApiError as err:
            raise kopf.TemporaryError(f"cannot read the output cleanup Job {name}: {err}", delay=10) from err
        state = (done or {}).get("status") or {}
        if state.get("succeeded"):
            log.info("outputs of %s/%s deleted", namespace, meta["name"])
            return
        if any(c.get("type") == "Failed" and c.get("status") == "True" for c in state.get("conditions") or []):
            raise kopf.PermanentError(f"output cleanup Job {name} failed; outputs are left in place")
        if done is None:
            raise kopf.TemporaryError(f"output cleanup Job {name} disappeared; starting it again", delay=1)
        if time.monotonic() >= deadline:
            raise kopf.TemporaryError(f"output cleanup Job {name} has not finished after "
                                      f"{CLEANUP_WAIT_SECONDS:.0f} s; still waiting", delay=CLEANUP_POLL_SECONDS)
        log.debug("output cleanup Job %s/%s still running", namespace, name)
        await asyncio.sleep(CLEANUP_POLL_SECONDS)
