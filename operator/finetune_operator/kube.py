"""The operator's one door to the Kubernetes API.

Every call the operator makes (besides kopf's own watching and event posting) goes
through `KubeApi`, and every method names the permission it needs from
`permissions.API_OPERATIONS`. It rides on kopf's asynchronous client
(`kopf._cogs.clients.api`, pinned with kopf==1.45.2): the same aiohttp session, the
same credentials vault and re-login on 401, and the same retries with back-off on 5xx,
429 and dropped connections that kopf's watchers use. One event loop, no threads:
1,000 jobs cost a few coroutines each, not a thread each.

Outside a running operator (benchmarks, test helpers), `standalone()` sets up the
credentials vault kopf would have set up.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import urllib.parse
from typing import Any, AsyncIterator, Optional

import kopf
from kopf._cogs.clients import api as kopf_api
from kopf._cogs.clients import auth as kopf_auth
from kopf._cogs.clients import errors as kopf_errors
from kopf._cogs.structs import credentials as kopf_credentials

from finetune_operator.api import GROUP, PLURAL, VERSION
from finetune_operator.permissions import needs

# Errors callers distinguish; everything else is an ApiError.
ApiError = kopf_errors.APIError
NotFound = kopf_errors.APINotFoundError
Conflict = kopf_errors.APIConflictError
Invalid = kopf_errors.APIUnprocessableEntityError

RAYJOB_GROUP = "ray.io"
RAYJOB_VERSION = "v1"
RAYJOB_PLURAL = "rayjobs"

_MERGE_PATCH = {"Content-Type": "application/merge-patch+json"}

logger = logging.getLogger(__name__)


def _path(group: str, version: str, namespace: str, plural: str, name: str = "", sub: str = "") -> str:
    base = f"/api/{version}" if not group else f"/apis/{group}/{version}"
    parts = [base, "namespaces", _quote(namespace), plural]
    if name:
        parts.append(_quote(name))
    if sub:
        parts.append(sub)
    return "/".join(parts)


def _quote(segment: str) -> str:
    return urllib.parse.quote(segment, safe="")


# Requests in flight at once, like client-go's QPS/burst limits: a thousand jobs
# reconciled together would otherwise open a thousand connections, overflow the API
# server's accept queue ("connection refused") and spend their time in retries.
MAX_IN_FLIGHT = 100


class KubeApi:
    """Typed-by-name calls for the objects the operator reads and writes."""

    def __init__(self, settings: kopf.OperatorSettings, log: logging.Logger | None = None,
                 max_in_flight: int = MAX_IN_FLIGHT) -> None:
        self.settings = settings
        self.logger = log or logger
        self._in_flight = asyncio.Semaphore(max_in_flight)

    async def _request(self, method: str, url: str, payload: object = None,
                       headers: Optional[dict[str, str]] = None) -> tuple[int, Any]:
        async with self._in_flight:
            response = await kopf_api.request(
                method, url, payload=payload, headers=headers, settings=self.settings, logger=self.logger,
            )
            async with response:
                if response.content_type == "application/json":
                    return response.status, await response.json()
                return response.status, await response.text()

    async def _json(self, method: str, url: str, payload: object = None,
                    headers: Optional[dict[str, str]] = None) -> Any:
        _status, body = await self._request(method, url, payload, headers)
        return body

    async def _get_or_none(self, url: str) -> Optional[dict[str, Any]]:
        try:
            return await self._json("get", url)
        except NotFound:
            return None

    # ------------------------------------------------------------------ FineTuneJobs

    @needs("finetunejobs.get")
    async def get_finetunejob(self, namespace: str, name: str) -> Optional[dict[str, Any]]:
        return await self._get_or_none(_path(GROUP, VERSION, namespace, PLURAL, name))

    @needs("finetunejobs.patch")
    async def patch_finetunejob(self, namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        return await self._json("patch", _path(GROUP, VERSION, namespace, PLURAL, name), patch, _MERGE_PATCH)

    @needs("finetunejobs/status.patch")
    async def patch_finetunejob_status(self, namespace: str, name: str, status: dict[str, Any],
                                       resource_version: Optional[str] = None) -> dict[str, Any]:
        """Merge-patch `status` (only the keys given; None deletes a key). With
        `resource_version`, only if the job is still at that version (else Conflict)."""
        url = _path(GROUP, VERSION, namespace, PLURAL, name, "status")
        body: dict[str, Any] = {"status": status}
        if resource_version:
            body["metadata"] = {"resourceVersion": resource_version}
        return await self._json("patch", url, body, _MERGE_PATCH)

    # ----------------------------------------------------------------------- RayJobs

    @needs("rayjobs.get")
    async def get_rayjob(self, namespace: str, name: str) -> Optional[dict[str, Any]]:
        return await self._get_or_none(_path(RAYJOB_GROUP, RAYJOB_VERSION, namespace, RAYJOB_PLURAL, name))

    @needs("rayjobs.create")
    async def create_rayjob(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        url = _path(RAYJOB_GROUP, RAYJOB_VERSION, namespace, RAYJOB_PLURAL)
        return await self._json("post", url, body)

    @needs("rayjobs.patch")
    async def patch_rayjob(self, namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        url = _path(RAYJOB_GROUP, RAYJOB_VERSION, namespace, RAYJOB_PLURAL, name)
        return await self._json("patch", url, patch, _MERGE_PATCH)

    @needs("rayjobs.delete")
    async def delete_rayjob(self, namespace: str, name: str) -> None:
        url = _path(RAYJOB_GROUP, RAYJOB_VERSION, namespace, RAYJOB_PLURAL, name)
        with contextlib.suppress(NotFound):
            await self._json("delete", url, {"propagationPolicy": "Background"})

    # --------------------------------------------------------------------- ConfigMaps

    @needs("configmaps.get")
    async def get_configmap(self, namespace: str, name: str) -> Optional[dict[str, Any]]:
        return await self._get_or_none(_path("", "v1", namespace, "configmaps", name))

    @needs("configmaps.create")
    async def create_configmap(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        return await self._json("post", _path("", "v1", namespace, "configmaps"), body)

    # ------------------------------------------------------------------------ Secrets

    @needs("secrets.get")
    async def secret_exists(self, namespace: str, name: str) -> bool:
        return await self._get_or_none(_path("", "v1", namespace, "secrets", name)) is not None

    # --------------------------------------------------------------------------- Pods

    @needs("pods.list")
    async def list_pods(self, namespace: str, label_selector: str) -> list[dict[str, Any]]:
        query = urllib.parse.urlencode({"labelSelector": label_selector})
        listing = await self._json("get", f"{_path('', 'v1', namespace, 'pods')}?{query}")
        return list(listing.get("items") or [])

    @needs("pods/log.get")
    async def read_pod_log(self, namespace: str, name: str, tail_lines: int) -> Optional[str]:
        """The last `tail_lines` lines of a pod's log, or None if the pod is gone."""
        url = f"{_path('', 'v1', namespace, 'pods', name, 'log')}?tailLines={int(tail_lines)}"
        try:
            _status, body = await self._request("get", url)
        except NotFound:
            return None
        return body if isinstance(body, str) else json.dumps(body)

    # --------------------------------------------------------------------- batch Jobs

    @needs("jobs.create")
    async def create_job(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        return await self._json("post", _path("batch", "v1", namespace, "jobs"), body)

    @needs("jobs.get")
    async def get_job(self, namespace: str, name: str) -> Optional[dict[str, Any]]:
        return await self._get_or_none(_path("batch", "v1", namespace, "jobs", name))


@contextlib.asynccontextmanager
async def standalone(server: str, *, settings: kopf.OperatorSettings | None = None,
                     token: str | None = None, ca_path: str | None = None) -> AsyncIterator[KubeApi]:
    """A `KubeApi` usable outside a running operator, against `server` (plain URL).

    Sets up the credentials vault that kopf sets up for its own tasks, so the very
    same client code runs in benchmarks and test helpers."""
    settings = settings or kopf.OperatorSettings()
    vault = kopf_credentials.Vault()
    await vault.populate({"standalone": kopf_credentials.ConnectionInfo(server=server, token=token, ca_path=ca_path)})
    reset = kopf_auth.vault_var.set(vault)
    try:
        yield KubeApi(settings)
    finally:
        kopf_auth.vault_var.reset(reset)
        await vault.close()
