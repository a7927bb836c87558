"""The users' side of the Kubernetes API: FineTuneJobs, their RayJob's submitter pod
and its log, through the official `kubernetes` client and the user's kubeconfig.

Every failure leaves here as a `UserError` that says what was attempted and why it
failed (no cluster, no permission, no such job), never as a client traceback. The
`kubernetes` package is imported inside functions: `finetune validate` must not pay
for it.
"""

from __future__ import annotations

import codecs
import contextlib
import os
from dataclasses import dataclass
from typing import Any, Iterator, Optional

from finetune_operator.api import GROUP, KIND, PLURAL, VERSION
from finetune_operator.builders import SUBMITTER_CONTAINER
from finetune_operator.errors import UserError
from finetune_operator.naming import SUBMITTER_POD_LABELS
REQUEST_TIMEOUT = 30.0


@dataclass
class Connection:
    """An API client and the namespace commands default to."""

    api: Any  # kubernetes.client.ApiClient
    namespace: str
    server: str


def connect(kubeconfig: Optional[str] = None, context: Optional[str] = None,
            namespace: Optional[str] = None) -> Connection:
    """A client for the kubeconfig's current (or the given) context.

    The namespace is the `-n` flag, else the context's namespace, else `default`.
    """
    import yaml
    from kubernetes import client, config
    from kubernetes.config.config_exception import ConfigException

    path = kubeconfig or os.environ.get("KUBECONFIG") or os.path.expanduser("~/.kube/config")
    first_path = path.split(os.pathsep)[0]
    if not kubeconfig and not os.path.exists(first_path) and os.environ.get("KUBERNETES_SERVICE_HOST"):
        configuration = client.Configuration()
        try:
            config.load_incluster_config(client_configuration=configuration)
        except ConfigException as err:
            raise UserError(f"no kubeconfig at {path} and the in-cluster configuration is unusable: {err}") from None
        with contextlib.suppress(OSError):
            with open("/var/run/secrets/kubernetes.io/serviceaccount/namespace") as stream:
                namespace = namespace or stream.read().strip()
        return Connection(client.ApiClient(configuration), namespace or "default", configuration.host)
    if not any(os.path.exists(p) for p in path.split(os.pathsep) if p):
        raise UserError(f"no kubeconfig at {path}: pass --kubeconfig FILE, set KUBECONFIG, "
                        "or run `kubectl config` to create one")
    try:
        contexts, active = config.list_kube_config_contexts(config_file=path)
        if context is not None:
            chosen = next((c for c in contexts if c.get("name") == context), None)
            if chosen is None:
                known = ", ".join(sorted(c.get("name", "") for c in contexts)) or "none"
                raise UserError(f"--context {context!r} is not in {path} (contexts: {known})")
        else:
            chosen = active
        configuration = client.Configuration()
        config.load_kube_config(config_file=path, context=context, client_configuration=configuration,
                                persist_config=False)
    except (ConfigException, yaml.YAMLError, AttributeError, KeyError, TypeError, ValueError) as err:
        # The client reports malformed files with assorted exception types.
        raise UserError(f"cannot use the kubeconfig {path}: {err}") from None
    default_namespace = ((chosen or {}).get("context") or {}).get("namespace") or "default"
    return Connection(client.ApiClient(configuration), namespace or default_namespace, configuration.host)


def _status_message(err: Any) -> str:
    """The `message` of a Kubernetes Status body, else the HTTP reason."""
    import json

    try:
        body = json.loads(err.body or "{}")
    except (TypeError, ValueError):
        body = {}
    if isinstance(body, dict):
        causes = (body.get("details") or {}).get("causes") or []
        if causes:
            return "; ".join(f"{c.get('field', '')}: {c.get('message', '')}".lstrip(": ") for c in causes)
        if body.get("message"):
            return str(body["message"])
    return f"{err.status} {err.reason}".strip()


@contextlib.contextmanager
def api_errors(action: str, connection: Connection, *, not_found: Optional[str] = None) -> Iterator[None]:
    """Turn client failures during `action` (e.g. "get FineTuneJob x") into UserErrors."""
    import urllib3
    from kubernetes.client.exceptions import ApiException

    try:
        yield
    except ApiException as err:
        message = _status_message(err)
        if err.status == 404 and not_found is not None:
            if "the server could not find the requested resource" in message:
                raise UserError(f"the cluster at {connection.server} does not serve {PLURAL}.{GROUP}: "
                                "install the CRD (deploy/crds/) first") from None
            raise UserError(not_found) from None
        if err.status in (401, 403):
            raise UserError(f"not allowed to {action} in {connection.server}: {message}") from None
        if err.status == 422:
            raise UserError(f"the cluster refused to {action}: {message}") from None
        if err.status == 0 or err.status is None:
            raise UserError(f"cannot {action}: {err.reason}") from None
        raise UserError(f"cannot {action} (HTTP {err.status}): {message}") from None
    except (urllib3.exceptions.HTTPError, OSError) as err:
        reason = getattr(err, "reason", None) or err
        raise UserError(f"cannot reach the Kubernetes API server at {connection.server} to {action}: "
                        f"{reason}") from None


class JobsClient:
    """FineTuneJob operations for the CLI."""

    def __init__(self, connection: Connection) -> None:
        from kubernetes import client

        self.connection = connection
        self.custom = client.CustomObjectsApi(connection.api)
        self.core = client.CoreV1Api(connection.api)

    def _missing(self, name: str, namespace: str) -> str:
        return f"{KIND} {name!r} not found in namespace {namespace!r}"

    def get(self, namespace: str, name: str) -> dict[str, Any]:
        with api_errors(f"get {KIND} {name}", self.connection, not_found=self._missing(name, namespace)):
            return self.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name,
                                                            _request_timeout=REQUEST_TIMEOUT)

    def list(self, namespace: Optional[str], label_selector: str = "") -> list[dict[str, Any]]:
        where = f"in namespace {namespace}" if namespace else "in all namespaces"
        with api_errors(f"list {PLURAL} {where}", self.connection, not_found=f"no {PLURAL} {where}"):
            if namespace is None:
                result = self.custom.list_cluster_custom_object(GROUP, VERSION, PLURAL, label_selector=label_selector,
                                                                _request_timeout=REQUEST_TIMEOUT)
            else:
                result = self.custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL,
                                                                   label_selector=label_selector,
                                                                   _request_timeout=REQUEST_TIMEOUT)
        return list(result.get("items") or [])

    def snapshot(self, namespace: str, name: str) -> tuple[dict[str, Any], str]:
        """The job and the resourceVersion to watch it from.

        The version comes from a list, not from the job: a job unchanged for long
        has a version the server may have compacted away (410 Gone on watch).
        """
        with api_errors(f"get {KIND} {name}", self.connection, not_found=self._missing(name, namespace)):
            result = self.custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL,
                                                               field_selector=f"metadata.name={name}",
                                                               _request_timeout=REQUEST_TIMEOUT)
        items = result.get("items") or []
        if not items:
            raise UserError(self._missing(name, namespace))
        return items[0], result["metadata"]["resourceVersion"]

    def create_or_replace(self, namespace: str, body: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """Create the job, or replace the spec of an existing one: ("created" |
        "configured" | "unchanged", the stored object)."""
        from kubernetes.client.exceptions import ApiException

        name = body["metadata"]["name"]
        action = f"create {KIND} {name} in namespace {namespace}"
        with api_errors(action, self.connection, not_found=f"namespace {namespace!r} not found"):
            try:
                created = self.custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body,
                                                                      _request_timeout=REQUEST_TIMEOUT)
                return "created", created
            except ApiException as err:
                if err.status != 409:
                    raise
        current = self.get(namespace, name)
        if current["metadata"].get("deletionTimestamp"):
            raise UserError(f"{KIND} {name} in namespace {namespace} is being deleted; submit it again once "
                            "it is gone")
        desired = {**body, "metadata": {**current["metadata"], **{
            k: v for k, v in body["metadata"].items() if k in ("labels", "annotations")}}}
        desired["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
        with api_errors(f"update {KIND} {name} in namespace {namespace}", self.connection,
                        not_found=self._missing(name, namespace)):
            stored = self.custom.replace_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name, desired,
                                                                  _request_timeout=REQUEST_TIMEOUT)
        changed = stored["metadata"]["resourceVersion"] != current["metadata"]["resourceVersion"]
        return ("configured" if changed else "unchanged"), stored

    def watch_changes(self, namespace: str, name: str, resource_version: str,
                      timeout: float) -> Iterator[tuple[str, dict[str, Any]]]:
        """(event type, object) for this job from `resource_version` on, for at most
        `timeout` seconds. Ends early when the server closes the stream."""
        from kubernetes import watch

        stream = watch.Watch()
        with api_errors(f"watch {KIND} {name}", self.connection, not_found=self._missing(name, namespace)):
            for event in stream.stream(
                self.custom.list_namespaced_custom_object, GROUP, VERSION, namespace, PLURAL,
                field_selector=f"metadata.name={name}", resource_version=resource_version,
                timeout_seconds=max(1, int(timeout)), _request_timeout=timeout + 10,
            ):
                yield event["type"], event["object"]

    def submitter_pod(self, namespace: str, rayjob: str) -> Optional[dict[str, Any]]:
        """The newest pod of the RayJob's submitter Job, or None."""
        for label in SUBMITTER_POD_LABELS:
            with api_errors(f"list pods in namespace {namespace}", self.connection,
                            not_found=f"namespace {namespace!r} not found"):
                pods = self.core.list_namespaced_pod(namespace, label_selector=f"{label}={rayjob}",
                                                     _request_timeout=REQUEST_TIMEOUT).items
            if pods:
                return max(pods, key=lambda pod: pod.metadata.creation_timestamp or 0).to_dict()
        return None

    def pod_log(self, namespace: str, pod: dict[str, Any], *, follow: bool = False,
                tail: Optional[int] = None) -> Iterator[str]:
        """The pod's log as text chunks; with `follow`, until the container ends."""
        name = pod["metadata"]["name"]
        containers = [c["name"] for c in (pod.get("spec") or {}).get("containers") or []]
        container = SUBMITTER_CONTAINER if SUBMITTER_CONTAINER in containers else None
        kwargs: dict[str, Any] = {"follow": follow, "_preload_content": False}
        if container:
            kwargs["container"] = container
        if tail is not None:
            kwargs["tail_lines"] = tail
        if not follow:
            kwargs["_request_timeout"] = REQUEST_TIMEOUT
        with api_errors(f"read the log of pod {name}", self.connection,
                        not_found=f"pod {name!r} is gone from namespace {namespace!r}"):
            response = self.core.read_namespaced_pod_log(name, namespace, **kwargs)
            # Chunks may split a multi-byte character; decode incrementally.
            decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
            try:
                for chunk in response.stream(4096, decode_content=True):
                    yield decoder.decode(chunk)
                yield decoder.decode(b"", final=True)
            finally:
                response.release_conn()
