"""A fast, in-process Kubernetes API server for tests.

Why not kmock's `KubernetesEmulator`: it matches every request against its whole
history (1,000 GETs took minutes) and has no uid, resourceVersion, generation,
status subresource, garbage collection or schema validation. This emulator keeps
objects in a dict per resource keyed by (namespace, name), events in a bounded ring
buffer, and implements the API server semantics our operator depends on. What it
emulates and what it simplifies is listed in tests/README.md.

It runs an aiohttp server on its own event loop in a background thread. All state
lives on that loop; the test-side methods (`create`, `get`, `patch_status`, ...)
hop onto the loop, so tests and HTTP clients see one consistent store.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import copy
import dataclasses
import datetime
import json
import logging
import re
import threading
import uuid
from typing import Any, Callable, Iterable, Optional

import jsonpatch
from aiohttp import web

from tests.support.kube_schema import SchemaChecker, prune_and_default
from tests.support.kube_selectors import SelectorError, parse_field_selector, parse_label_selector

JSON = dict[str, Any]
logger = logging.getLogger(__name__)

ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
CLOSE = object()  # Sentinel put into a watch queue to end the stream.


def now_rfc3339() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# ============================================================================ errors


class ApiError(Exception):
    """A failure the API server reports as a `Status` body with an HTTP code."""

    def __init__(self, code: int, reason: str, message: str, *, details: Optional[JSON] = None) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details or {}

    def status(self) -> JSON:
        body = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details:
            body["details"] = self.details
        return body


def not_found(rtype: "ResourceType", name: str) -> ApiError:
    return ApiError(404, "NotFound", f'{rtype.qualified} "{name}" not found',
                    details={"name": name, "group": rtype.group, "kind": rtype.plural})


def conflict(rtype: "ResourceType", name: str) -> ApiError:
    return ApiError(
        409, "Conflict",
        f'Operation cannot be fulfilled on {rtype.qualified} "{name}": the object has been modified; '
        "please apply your changes to the latest version and try again",
        details={"name": name, "group": rtype.group, "kind": rtype.plural},
    )


def invalid(rtype: "ResourceType", name: str, causes: list[tuple[str, str]]) -> ApiError:
    """422 Invalid with one cause per (field path, message), as the API server words it."""
    summary = ", ".join(f"{field}: {message}" for field, message in causes)
    return ApiError(
        422, "Invalid", f'{rtype.kind}.{rtype.group or "core"} "{name}" is invalid: {summary}',
        details={
            "name": name, "group": rtype.group, "kind": rtype.kind,
            "causes": [{"reason": "FieldValueInvalid", "message": message, "field": field}
                       for field, message in causes],
        },
    )


# ===================================================================== resource types


@dataclasses.dataclass
class ResourceType:
    """One served resource: where it lives in the URL space and how it behaves."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool
    singular: str = ""
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    subresources: frozenset[str] = frozenset()
    schema: Optional[JSON] = None  # openAPIV3Schema, for custom resources
    verbs: tuple[str, ...] = ALL_VERBS
    _schema_validator: Any = dataclasses.field(default=None, repr=False)
    _cel_rules: Any = dataclasses.field(default=None, repr=False)

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def storage_key(self) -> tuple[str, str]:
        return (self.group, self.plural)

    @property
    def qualified(self) -> str:
        return f"{self.plural}.{self.group}" if self.group else self.plural

    def discovery(self) -> list[JSON]:
        entries = [{
            "name": self.plural,
            "singularName": self.singular or self.kind.lower(),
            "namespaced": self.namespaced,
            "kind": self.kind,
            "verbs": list(self.verbs),
            "shortNames": list(self.short_names),
            "categories": list(self.categories),
        }]
        for sub in sorted(self.subresources):
            verbs = ["get"] if sub == "log" else ["get", "patch", "update"]
            kind = "Pod" if sub == "log" else self.kind
            entries.append({"name": f"{self.plural}/{sub}", "singularName": "", "namespaced": self.namespaced,
                            "kind": kind, "verbs": verbs})
        return entries


def _builtin(group: str, version: str, plural: str, kind: str, namespaced: bool = True,
             subresources: Iterable[str] = (), short_names: tuple[str, ...] = ()) -> ResourceType:
    return ResourceType(group=group, version=version, plural=plural, kind=kind, namespaced=namespaced,
                        singular=kind.lower(), subresources=frozenset(subresources), short_names=short_names)


def builtin_resources() -> list[ResourceType]:
    """The built-in resources kopf, the operator and the CLI touch."""
    return [
        _builtin("", "v1", "namespaces", "Namespace", namespaced=False, subresources=["status"],
                 short_names=("ns",)),
        _builtin("", "v1", "configmaps", "ConfigMap", short_names=("cm",)),
        _builtin("", "v1", "secrets", "Secret"),
        _builtin("", "v1", "events", "Event", short_names=("ev",)),
        _builtin("", "v1", "pods", "Pod", subresources=["status", "log"], short_names=("po",)),
        _builtin("", "v1", "services", "Service", subresources=["status"], short_names=("svc",)),
        _builtin("", "v1", "serviceaccounts", "ServiceAccount", short_names=("sa",)),
        _builtin("batch", "v1", "jobs", "Job", subresources=["status"]),
        _builtin("coordination.k8s.io", "v1", "leases", "Lease"),
        _builtin("events.k8s.io", "v1", "events", "Event", short_names=("ev",)),
        _builtin("apiextensions.k8s.io", "v1", "customresourcedefinitions", "CustomResourceDefinition",
                 namespaced=False, subresources=["status"], short_names=("crd", "crds")),
    ]


def kopf_peering_crds() -> list[JSON]:
    """kopf's peering CRDs (ClusterKopfPeering, KopfPeering), minimal but structural.

    kopf keeps its peers in `status` of these objects and needs no status subresource.
    """
    def crd(kind: str, plural: str, scope: str) -> JSON:
        return {
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": f"{plural}.kopf.dev"},
            "spec": {
                "group": "kopf.dev",
                "scope": scope,
                "names": {"kind": kind, "plural": plural, "singular": kind.lower()},
                "versions": [{
                    "name": "v1", "served": True, "storage": True,
                    "schema": {"openAPIV3Schema": {
                        "type": "object",
                        "properties": {"status": {"type": "object",
                                                  "x-kubernetes-preserve-unknown-fields": True}},
                    }},
                }],
            },
        }
    return [crd("ClusterKopfPeering", "clusterkopfpeerings", "Cluster"),
            crd("KopfPeering", "kopfpeerings", "Namespaced")]


def resource_types_from_crd(crd: JSON) -> list[ResourceType]:
    """One ResourceType per served version of a CustomResourceDefinition."""
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    types = []
    for version in spec.get("versions") or []:
        if not version.get("served", True):
            continue
        subresources = set((version.get("subresources") or {}).keys())
        types.append(ResourceType(
            group=spec["group"], version=version["name"], plural=names["plural"], kind=names["kind"],
            namespaced=spec.get("scope", "Namespaced") == "Namespaced",
            singular=names.get("singular", names["kind"].lower()),
            short_names=tuple(names.get("shortNames") or ()), categories=tuple(names.get("categories") or ()),
            subresources=frozenset(subresources),
            schema=(version.get("schema") or {}).get("openAPIV3Schema"),
        ))
    return types


# =============================================================================== patches


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def apply_patch(rtype: ResourceType, name: str, current: JSON, patch: Any, content_type: str) -> JSON:
    """The object after a PATCH request of the given content type."""
    content_type = content_type.split(";")[0].strip()
    if content_type == "application/json-patch+json":
        if not isinstance(patch, list):
            raise ApiError(400, "BadRequest", "a JSON patch must be a list of operations")
        try:
            return jsonpatch.apply_patch(current, patch)
        except jsonpatch.JsonPatchTestFailed as err:
            raise ApiError(422, "Invalid", f"the server rejected our request due to an error in our request: "
                                           f"{err}") from None
        except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as err:
            raise ApiError(422, "Invalid", f"the server rejected our request due to an error in our request: "
                                           f"{err}") from None
    if content_type in ("application/merge-patch+json", "application/strategic-merge-patch+json"):
        if not isinstance(patch, dict):
            raise ApiError(400, "BadRequest", "a merge patch must be a JSON object")
        return merge_patch(current, patch)
    raise ApiError(415, "UnsupportedMediaType", f"the body of the request was in an unknown format - "
                                                f"accepted media types include: application/json-patch+json, "
                                                f"application/merge-patch+json, "
                                                f"application/strategic-merge-patch+json (got {content_type!r})")


# ============================================================================= metadata

_QUALIFIED_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


def _key_errors(field: str, key: str) -> list[tuple[str, str]]:
    """A label or annotation key: an optional DNS-subdomain prefix and a name of at
    most 63 characters, as the API server checks them."""
    prefix, _, name = key.rpartition("/")
    problems = []
    if prefix and (len(prefix) > 253 or not DNS_SUBDOMAIN.match(prefix)):
        problems.append("prefix part must be a lowercase RFC 1123 subdomain of at most 253 characters")
    if not name or len(name) > 63 or not _QUALIFIED_NAME.match(name):
        problems.append("name part must be at most 63 characters: alphanumerics, '-', '_' or '.', "
                        "starting and ending with an alphanumeric")
    return [(field, f"Invalid value: {key!r}: {problem}") for problem in problems]


def metadata_errors(meta: JSON) -> list[tuple[str, str]]:
    """What the API server rejects in any object's labels, annotations and owner references."""
    causes: list[tuple[str, str]] = []
    for key in ("labels", "annotations"):
        mapping = meta.get(key)
        if mapping is None:
            continue
        if not isinstance(mapping, dict) or not all(isinstance(v, str) for v in mapping.values()):
            causes.append((f"metadata.{key}", "must map strings to strings"))
            continue
        for name, value in mapping.items():
            causes += _key_errors(f"metadata.{key}", name)
            if key == "labels" and (len(value) > 63 or not _LABEL_VALUE.match(value)):
                causes.append(("metadata.labels", f"Invalid value: {value!r}: a label value must be at most 63 "
                                                   "characters: alphanumerics, '-', '_' or '.', starting and "
                                                   "ending with an alphanumeric"))
    annotations = meta.get("annotations")
    if isinstance(annotations, dict) and sum(len(k) + len(str(v)) for k, v in annotations.items()) > 256 * 1024:
        causes.append(("metadata.annotations", "Too long: must have at most 262144 bytes"))
    references = meta.get("ownerReferences") or []
    for index, reference in enumerate(references):
        for field in ("apiVersion", "kind", "name", "uid"):
            if not (isinstance(reference, dict) and reference.get(field)):
                causes.append((f"metadata.ownerReferences[{index}].{field}", "Required value"))
    if sum(1 for r in references if isinstance(r, dict) and r.get("controller")) > 1:
        causes.append(("metadata.ownerReferences", "Invalid value: only one reference can have Controller set "
                                                   "to true"))
    return causes


# ================================================================================ store


@dataclasses.dataclass
class HistoryEvent:
    resource_version: int
    storage_key: tuple[str, str]
    type: str
    obj: JSON
    old: Optional[JSON]


@dataclasses.dataclass(eq=False)
class Watcher:
    storage_key: tuple[str, str]
    namespace: Optional[str]
    labels: Callable[[dict[str, str]], bool]
    fields: Callable[[JSON], bool]
    queue: asyncio.Queue

    def matches(self, obj: Optional[JSON]) -> bool:
        if obj is None:
            return False
        meta = obj["metadata"]
        if self.namespace is not None and meta.get("namespace") != self.namespace:
            return False
        return self.labels(meta.get("labels") or {}) and self.fields(obj)


@dataclasses.dataclass
class FaultRule:
    verb: str
    plural: str
    code: int
    remaining: int
    message: str


@dataclasses.dataclass
class PodLog:
    text: str = ""
    changed: Optional[asyncio.Event] = None


class Store:
    """All API objects, their history and their watchers. Used on the loop thread only.

    Stored objects are never mutated in place: every write stores a new dict, so
    history entries and watch queues can share them safely.
    """

    def __init__(self, history_size: int = 1000) -> None:
        self.resource_version = 0
        self.types: dict[tuple[str, str, str], ResourceType] = {}
        self.objects: dict[tuple[str, str], dict[tuple[Optional[str], str], JSON]] = {}
        self.by_uid: dict[str, tuple[tuple[str, str], tuple[Optional[str], str]]] = {}
        self.dependents: dict[str, set[str]] = collections.defaultdict(set)
        # uids of objects deleted for good: an object created with owners that are all
        # among them is collected at once (the real collector deletes such a dependent
        # once it finds its owners gone).
        self.deleted_uids: set[str] = set()
        self.history: collections.deque[HistoryEvent] = collections.deque(maxlen=history_size)
        self.history_floor = 0  # Watching from a version below this gets 410 Gone.
        self.watchers: set[Watcher] = set()
        self.faults: list[FaultRule] = []
        self.pod_logs: dict[tuple[str, str], PodLog] = {}
        self.request_counts: collections.Counter[tuple[str, str]] = collections.Counter()
        self.cel_skipped: list[str] = []
        self.now: Callable[[], str] = now_rfc3339  # Tests may freeze or move the clock.
        self.closing = False  # Set on shutdown: streams end instead of waiting.
        for rtype in builtin_resources():
            self.add_type(rtype)

    # ------------------------------------------------------------------ resource types

    def add_type(self, rtype: ResourceType) -> None:
        self.types[(rtype.group, rtype.version, rtype.plural)] = rtype
        self.objects.setdefault(rtype.storage_key, {})

    def resolve(self, group: str, version: str, plural: str) -> ResourceType:
        try:
            return self.types[(group, version, plural)]
        except KeyError:
            where = f"{group}/{version}" if group else version
            raise ApiError(404, "NotFound", f"the server could not find the requested resource "
                                            f"({plural} in {where})") from None

    def find_type(self, reference: str) -> ResourceType:
        """A resource by plural, plural.group, kind or short name, like kubectl."""
        reference_lower = reference.lower()
        for rtype in self.types.values():
            names = {rtype.plural, rtype.qualified, rtype.kind.lower(), rtype.singular, *rtype.short_names}
            if reference_lower in names or reference in names:
                return rtype
        raise KeyError(f"no resource type {reference!r}; known: "
                       f"{sorted({t.qualified for t in self.types.values()})}")

    def type_for_body(self, body: JSON) -> ResourceType:
        api_version, kind = body.get("apiVersion", ""), body.get("kind", "")
        group, _, version = api_version.rpartition("/")
        for rtype in self.types.values():
            if rtype.group == group and rtype.version == version and rtype.kind == kind:
                return rtype
        raise KeyError(f"no resource type for apiVersion={api_version!r} kind={kind!r}")

    def checker(self, rtype: ResourceType) -> Optional[SchemaChecker]:
        if rtype.schema is None:
            return None
        if rtype._schema_validator is None:
            rtype._schema_validator = SchemaChecker(rtype.schema)
            self.cel_skipped += rtype._schema_validator.cel_skipped
        return rtype._schema_validator

    # -------------------------------------------------------------------------- events

    def _next_version(self) -> int:
        self.resource_version += 1
        return self.resource_version

    def _emit(self, rtype: ResourceType, event_type: str, obj: JSON, old: Optional[JSON]) -> None:
        if len(self.history) == self.history.maxlen:
            self.history_floor = self.history[0].resource_version
        event = HistoryEvent(int(obj["metadata"]["resourceVersion"]), rtype.storage_key, event_type, obj, old)
        self.history.append(event)
        if rtype.storage_key == ("", "pods"):  # Log followers stop when their pod ends.
            log = self.pod_logs.get((obj["metadata"].get("namespace") or "", obj["metadata"]["name"]))
            if log is not None and log.changed is not None:
                log.changed.set()
        for watcher in self.watchers:
            if watcher.storage_key == rtype.storage_key:
                translated = translate_for_watcher(watcher, event)
                if translated is not None:
                    watcher.queue.put_nowait(translated)

    def close_watches(self) -> int:
        for watcher in self.watchers:
            watcher.queue.put_nowait(CLOSE)
        return len(self.watchers)

    # ---------------------------------------------------------------------- faults

    def take_fault(self, verb: str, plural: str) -> Optional[ApiError]:
        for rule in self.faults:
            if rule.remaining > 0 and rule.verb in (verb, "*") and rule.plural in (plural, "*"):
                rule.remaining -= 1
                reasons = {400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound",
                           409: "Conflict", 410: "Expired", 422: "Invalid", 429: "TooManyRequests",
                           500: "InternalError", 503: "ServiceUnavailable", 504: "Timeout"}
                return ApiError(rule.code, reasons.get(rule.code, "Unknown"), rule.message)
        return None

    # ------------------------------------------------------------------------ reads

    def get(self, rtype: ResourceType, namespace: Optional[str], name: str) -> JSON:
        obj = self.objects[rtype.storage_key].get((namespace if rtype.namespaced else None, name))
        if obj is None:
            raise not_found(rtype, name)
        return obj

    def list(self, rtype: ResourceType, namespace: Optional[str], label_selector: str = "",
             field_selector: str = "") -> list[JSON]:
        labels = parse_label_selector(label_selector)
        fields = parse_field_selector(field_selector)
        items = []
        for (obj_namespace, _), obj in self.objects[rtype.storage_key].items():
            if namespace is not None and rtype.namespaced and obj_namespace != namespace:
                continue
            if labels(obj["metadata"].get("labels") or {}) and fields(obj):
                items.append(obj)
        items.sort(key=lambda o: (o["metadata"].get("namespace") or "", o["metadata"]["name"]))
        return items

    # ----------------------------------------------------------------------- writes

    def create(self, rtype: ResourceType, namespace: Optional[str], body: JSON) -> JSON:
        if not isinstance(body, dict):
            raise ApiError(400, "BadRequest", "the request body must be a JSON object")
        obj = copy.deepcopy(body)
        obj["apiVersion"], obj["kind"] = rtype.api_version, rtype.kind
        meta = obj.setdefault("metadata", {})
        if not isinstance(meta, dict):
            raise ApiError(400, "BadRequest", "metadata must be an object")
        if rtype.namespaced:
            body_namespace = meta.get("namespace")
            if namespace is None:
                namespace = body_namespace
            if body_namespace and body_namespace != namespace:
                raise ApiError(400, "BadRequest", "the namespace of the provided object does not match "
                                                  "the namespace sent on the request")
            if not namespace:
                raise invalid(rtype, meta.get("name", ""), [("metadata.namespace", "Required value")])
            self._require_live_namespace(namespace)
            meta["namespace"] = namespace
        else:
            meta.pop("namespace", None)
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
        name = meta.get("name")
        if not name:
            raise invalid(rtype, "", [("metadata.name", "Required value: name or generateName is required")])
        self._check_name(rtype, name)
        if (namespace if rtype.namespaced else None, name) in self.objects[rtype.storage_key]:
            raise ApiError(409, "AlreadyExists", f'{rtype.qualified} "{name}" already exists',
                           details={"name": name, "group": rtype.group, "kind": rtype.plural})
        for server_field in ("uid", "resourceVersion", "creationTimestamp", "deletionTimestamp",
                             "deletionGracePeriodSeconds", "generation"):
            meta.pop(server_field, None)
        if "status" in rtype.subresources and rtype.schema is not None:
            obj.pop("status", None)
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = self.now()
        meta["generation"] = 1
        obj = self._admit(rtype, obj, None)
        if rtype.plural == "customresourcedefinitions" and rtype.group == "apiextensions.k8s.io":
            obj = self._establish_crd(obj)
        meta = obj["metadata"]
        meta["resourceVersion"] = str(self._next_version())
        self._put(rtype, obj)
        self._emit(rtype, "ADDED", obj, None)
        owners = [ref.get("uid") for ref in meta.get("ownerReferences") or []]
        if owners and all(owner in self.deleted_uids for owner in owners):
            # Created for an owner that is already gone (a controller racing the
            # owner's deletion): garbage, collected as the real collector would.
            self._delete_by_uid(meta["uid"], "Background")
        return obj

    def replace(self, rtype: ResourceType, namespace: Optional[str], name: str, body: JSON,
                subresource: Optional[str] = None) -> JSON:
        """PUT: the whole object (or its status) replaced, with optimistic concurrency."""
        current = self.get(rtype, namespace, name)
        if not isinstance(body, dict):
            raise ApiError(400, "BadRequest", "the request body must be a JSON object")
        body_meta = body.get("metadata") or {}
        if body_meta.get("name") not in (None, name):
            raise ApiError(400, "BadRequest", "the name of the object does not match the name on the URL")
        sent_version = body_meta.get("resourceVersion")
        if sent_version and sent_version != current["metadata"]["resourceVersion"]:
            raise conflict(rtype, name)
        return self._write(rtype, current, copy.deepcopy(body), subresource)

    def patch(self, rtype: ResourceType, namespace: Optional[str], name: str, patch: Any, content_type: str,
              subresource: Optional[str] = None) -> JSON:
        current = self.get(rtype, namespace, name)
        if isinstance(patch, dict):
            sent_version = (patch.get("metadata") or {}).get("resourceVersion")
            if sent_version and sent_version != current["metadata"]["resourceVersion"]:
                raise conflict(rtype, name)
        patched = apply_patch(rtype, name, current, patch, content_type)
        if not isinstance(patched, dict):
            raise ApiError(422, "Invalid", "the patch made the object something other than a JSON object")
        return self._write(rtype, current, patched, subresource)

    def _write(self, rtype: ResourceType, current: JSON, new: JSON, subresource: Optional[str]) -> JSON:
        old_meta = current["metadata"]
        if subresource == "status":
            merged = copy.deepcopy(current)
            if "status" in new:
                merged["status"] = new["status"]
            else:
                merged.pop("status", None)
            new = merged
        elif subresource is not None:
            raise ApiError(405, "MethodNotAllowed", f"{subresource} cannot be written")
        else:
            if "status" in rtype.subresources:
                if "status" in current:
                    new["status"] = copy.deepcopy(current["status"])
                else:
                    new.pop("status", None)
            new_meta = new.setdefault("metadata", {})
            for server_field in ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds",
                                 "generation", "namespace", "name"):
                if server_field in old_meta:
                    new_meta[server_field] = old_meta[server_field]
                else:
                    new_meta.pop(server_field, None)
            if old_meta.get("deletionTimestamp"):
                added = set(new_meta.get("finalizers") or []) - set(old_meta.get("finalizers") or [])
                if added:
                    raise invalid(rtype, old_meta["name"], [(
                        "metadata.finalizers",
                        f"Forbidden: no new finalizers can be added if the object is being deleted, "
                        f"found new finalizers {sorted(added)}")])
        new["apiVersion"], new["kind"] = rtype.api_version, rtype.kind
        new["metadata"]["resourceVersion"] = old_meta["resourceVersion"]
        new = self._admit(rtype, new, current)
        if new == current:
            return current  # A no-op write changes nothing, not even the resourceVersion.
        if self._spec_changed(rtype, current, new):
            new["metadata"]["generation"] = int(old_meta.get("generation", 1)) + 1
        new["metadata"]["resourceVersion"] = str(self._next_version())
        if new["metadata"].get("deletionTimestamp") and not new["metadata"].get("finalizers"):
            self._put(rtype, new)
            self._remove(rtype, new)
            return new
        self._put(rtype, new)
        if rtype.storage_key == ("apiextensions.k8s.io", "customresourcedefinitions") and subresource is None:
            for served in resource_types_from_crd(new):  # A changed schema applies from now on.
                self.add_type(served)
        self._emit(rtype, "MODIFIED", new, current)
        return new

    @staticmethod
    def _spec_changed(rtype: ResourceType, old: JSON, new: JSON) -> bool:
        ignored = {"metadata", "status"} if "status" in rtype.subresources else {"metadata"}
        strip = lambda obj: {k: v for k, v in obj.items() if k not in ignored}  # noqa: E731
        return strip(old) != strip(new)

    def delete(self, rtype: ResourceType, namespace: Optional[str], name: str,
               options: Optional[JSON] = None) -> JSON:
        """DELETE: mark when finalizers remain (or foreground), otherwise remove."""
        options = options or {}
        current = self.get(rtype, namespace, name)
        preconditions = options.get("preconditions") or {}
        if preconditions.get("uid") and preconditions["uid"] != current["metadata"]["uid"]:
            raise ApiError(409, "Conflict", f'Precondition failed: UID in precondition: {preconditions["uid"]}, '
                                            f'UID in object meta: {current["metadata"]["uid"]}')
        if preconditions.get("resourceVersion") and \
                preconditions["resourceVersion"] != current["metadata"]["resourceVersion"]:
            raise conflict(rtype, name)
        policy = options.get("propagationPolicy") or "Background"
        if policy not in ("Background", "Foreground", "Orphan"):
            raise ApiError(400, "BadRequest", f"propagationPolicy {policy!r} is not one of Background, "
                                              "Foreground, Orphan")
        if policy == "Orphan":
            self._orphan_dependents(current["metadata"]["uid"])
        finalizers = list(current["metadata"].get("finalizers") or [])
        if policy == "Foreground" and self.dependents.get(current["metadata"]["uid"]):
            if "foregroundDeletion" not in finalizers:
                finalizers.append("foregroundDeletion")
        if rtype.plural == "namespaces" and not rtype.group:
            return self._delete_namespace(rtype, current)
        if not finalizers:
            self._remove(rtype, current)
            return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                    "details": {"name": name, "group": rtype.group, "kind": rtype.plural,
                                "uid": current["metadata"]["uid"]}}
        if current["metadata"].get("deletionTimestamp") and finalizers == current["metadata"].get("finalizers"):
            return current
        marked = copy.deepcopy(current)
        marked["metadata"]["finalizers"] = finalizers
        marked["metadata"].setdefault("deletionTimestamp", self.now())
        marked["metadata"].setdefault("deletionGracePeriodSeconds", 0)
        if not current["metadata"].get("deletionTimestamp"):
            marked["metadata"]["generation"] = int(current["metadata"].get("generation", 1)) + 1
        marked["metadata"]["resourceVersion"] = str(self._next_version())
        self._put(rtype, marked)
        self._emit(rtype, "MODIFIED", marked, current)
        if "foregroundDeletion" in finalizers:
            for dependent_uid in list(self.dependents.get(marked["metadata"]["uid"], ())):
                self._delete_by_uid(dependent_uid, "Foreground")
            self._settle_foreground(marked["metadata"]["uid"])
        return self.objects[rtype.storage_key].get(self._key(rtype, marked), marked)

    # --------------------------------------------------------- storage and lifecycle

    @staticmethod
    def _key(rtype: ResourceType, obj: JSON) -> tuple[Optional[str], str]:
        return (obj["metadata"].get("namespace") if rtype.namespaced else None, obj["metadata"]["name"])

    def _put(self, rtype: ResourceType, obj: JSON) -> None:
        key = self._key(rtype, obj)
        old = self.objects[rtype.storage_key].get(key)
        uid = obj["metadata"]["uid"]
        if old is not None:
            for ref in old["metadata"].get("ownerReferences") or []:
                self.dependents.get(ref.get("uid"), set()).discard(uid)
        for ref in obj["metadata"].get("ownerReferences") or []:
            if ref.get("uid"):
                self.dependents[ref["uid"]].add(uid)
        self.objects[rtype.storage_key][key] = obj
        self.by_uid[uid] = (rtype.storage_key, key)

    def _type_of_storage(self, storage_key: tuple[str, str]) -> ResourceType:
        for rtype in self.types.values():
            if rtype.storage_key == storage_key:
                return rtype
        raise KeyError(storage_key)

    def _remove(self, rtype: ResourceType, obj: JSON) -> None:
        """Remove an object for good, then collect its garbage."""
        key = self._key(rtype, obj)
        if self.objects[rtype.storage_key].pop(key, None) is None:
            return
        uid = obj["metadata"]["uid"]
        self.by_uid.pop(uid, None)
        self.deleted_uids.add(uid)
        for ref in obj["metadata"].get("ownerReferences") or []:
            self.dependents.get(ref.get("uid"), set()).discard(uid)
        final = copy.deepcopy(obj)
        final["metadata"]["resourceVersion"] = str(self._next_version())
        self._emit(rtype, "DELETED", final, obj)
        if rtype.storage_key == ("", "pods"):
            log = self.pod_logs.pop(key, None)  # type: ignore[arg-type]
            if log is not None and log.changed is not None:
                log.changed.set()
        # Garbage collection: dependents whose owners are all gone go too.
        for dependent_uid in list(self.dependents.pop(uid, set())):
            place = self.by_uid.get(dependent_uid)
            if place is None:
                continue
            dependent = self.objects[place[0]][place[1]]
            owners = [ref.get("uid") for ref in dependent["metadata"].get("ownerReferences") or []]
            if not any(owner in self.by_uid for owner in owners):
                self._delete_by_uid(dependent_uid, "Background")
        for ref in obj["metadata"].get("ownerReferences") or []:
            self._settle_foreground(ref.get("uid"))
        if rtype.namespaced:
            self._settle_namespace(obj["metadata"].get("namespace"))
        if rtype.storage_key == ("apiextensions.k8s.io", "customresourcedefinitions"):
            self._unregister_crd(obj)

    def _delete_by_uid(self, uid: str, policy: str) -> None:
        place = self.by_uid.get(uid)
        if place is None:
            return
        rtype = self._type_of_storage(place[0])
        namespace, name = place[1]
        try:
            self.delete(rtype, namespace, name, {"propagationPolicy": policy})
        except ApiError:
            pass  # Already gone or being deleted.

    def _orphan_dependents(self, owner_uid: str) -> None:
        for dependent_uid in list(self.dependents.get(owner_uid, ())):
            place = self.by_uid.get(dependent_uid)
            if place is None:
                continue
            rtype = self._type_of_storage(place[0])
            dependent = self.objects[place[0]][place[1]]
            updated = copy.deepcopy(dependent)
            updated["metadata"]["ownerReferences"] = [
                ref for ref in dependent["metadata"].get("ownerReferences") or [] if ref.get("uid") != owner_uid]
            if not updated["metadata"]["ownerReferences"]:
                del updated["metadata"]["ownerReferences"]
            self._write(rtype, dependent, updated, None)

    def _settle_foreground(self, owner_uid: Optional[str]) -> None:
        """Finish a foreground deletion once no blocking dependents remain."""
        place = self.by_uid.get(owner_uid or "")
        if place is None:
            return
        owner = self.objects[place[0]][place[1]]
        if "foregroundDeletion" not in (owner["metadata"].get("finalizers") or []):
            return
        for dependent_uid in self.dependents.get(owner_uid, ()):
            dep_place = self.by_uid.get(dependent_uid)
            if dep_place is None:
                continue
            dependent = self.objects[dep_place[0]][dep_place[1]]
            for ref in dependent["metadata"].get("ownerReferences") or []:
                if ref.get("uid") == owner_uid and ref.get("blockOwnerDeletion"):
                    return
        updated = copy.deepcopy(owner)
        updated["metadata"]["finalizers"] = [f for f in owner["metadata"]["finalizers"]
                                             if f != "foregroundDeletion"]
        self._write(self._type_of_storage(place[0]), owner, updated, None)

    def _require_live_namespace(self, namespace: str) -> None:
        ns = self.objects[("", "namespaces")].get((None, namespace))
        if ns is None:
            raise ApiError(404, "NotFound", f'namespaces "{namespace}" not found',
                           details={"name": namespace, "kind": "namespaces"})
        if ns["metadata"].get("deletionTimestamp"):
            raise ApiError(403, "Forbidden", f"unable to create new content in namespace {namespace} "
                                             "because it is being terminated")

    def _delete_namespace(self, rtype: ResourceType, current: JSON) -> JSON:
        name = current["metadata"]["name"]
        if not current["metadata"].get("deletionTimestamp"):
            marked = copy.deepcopy(current)
            marked["metadata"]["deletionTimestamp"] = self.now()
            marked.setdefault("status", {})["phase"] = "Terminating"
            marked["metadata"]["resourceVersion"] = str(self._next_version())
            self._put(rtype, marked)
            self._emit(rtype, "MODIFIED", marked, current)
        for storage_key, objects in self.objects.items():
            for (obj_namespace, obj_name) in [k for k in objects if k[0] == name]:
                other = self._type_of_storage(storage_key)
                if (obj_namespace, obj_name) in objects:
                    try:
                        self.delete(other, obj_namespace, obj_name)
                    except ApiError:
                        pass
        self._settle_namespace(name)
        return self.objects[rtype.storage_key].get((None, name), current)

    def _settle_namespace(self, namespace: Optional[str]) -> None:
        ns = self.objects[("", "namespaces")].get((None, namespace or ""))
        if ns is None or not ns["metadata"].get("deletionTimestamp"):
            return
        if any(key[0] == namespace for objects in self.objects.values() for key in objects):
            return
        self._remove(self.types[("", "v1", "namespaces")], ns)

    # ------------------------------------------------------------------ validation

    def _check_name(self, rtype: ResourceType, name: str) -> None:
        pattern, limit = (DNS_LABEL, 63) if rtype.plural == "namespaces" else (DNS_SUBDOMAIN, 253)
        if len(name) > limit or not pattern.match(name):
            raise invalid(rtype, name, [("metadata.name", f"Invalid value: {name!r}: a lowercase RFC 1123 "
                                                          f"name of at most {limit} characters: lowercase "
                                                          "letters, digits, '-' (and '.' in subdomains)")])

    def _admit(self, rtype: ResourceType, obj: JSON, old: Optional[JSON]) -> JSON:
        """Defaulting, pruning and validation before an object is stored."""
        meta = obj["metadata"]
        causes = metadata_errors(meta)
        if causes:
            raise invalid(rtype, meta.get("name", ""), causes)
        if rtype.storage_key == ("", "secrets") and "stringData" in obj:
            data = obj.setdefault("data", {})
            for key, value in (obj.pop("stringData") or {}).items():
                data[key] = base64.b64encode(str(value).encode()).decode()
        if rtype.storage_key in (("", "configmaps"), ("", "secrets")):
            size = sum(len(k) + len(str(v)) for part in ("data", "binaryData") for k, v in (obj.get(part) or {}).items())
            if size > 1024 * 1024:
                raise invalid(rtype, meta.get("name", ""), [("[]", "Too long: must have at most 1048576 bytes")])
        if rtype.storage_key == ("", "namespaces") and old is None:
            obj.setdefault("spec", {"finalizers": ["kubernetes"]})
            obj.setdefault("status", {"phase": "Active"})
        checker = self.checker(rtype)
        if checker is None:
            return obj
        body = {k: v for k, v in obj.items() if k not in ("apiVersion", "kind", "metadata")}
        body = prune_and_default(body, rtype.schema)
        old_body = None if old is None else {k: v for k, v in old.items() if k not in ("apiVersion", "kind", "metadata")}
        causes = checker.errors(body, old_body)
        if causes:
            raise invalid(rtype, meta.get("name", ""), causes)
        return {"apiVersion": obj["apiVersion"], "kind": obj["kind"], "metadata": meta, **body}

    # ------------------------------------------------------------------------- CRDs

    def _establish_crd(self, crd: JSON) -> JSON:
        spec = crd.get("spec") or {}
        names = spec.get("names") or {}
        name = crd["metadata"]["name"]
        crd_type = self.types[("apiextensions.k8s.io", "v1", "customresourcedefinitions")]
        if not spec.get("group") or not names.get("plural") or not names.get("kind"):
            raise invalid(crd_type, name, [("spec", "group, names.plural and names.kind are required")])
        if name != f"{names['plural']}.{spec['group']}":
            raise invalid(crd_type, name, [("metadata.name",
                                            f"must be spec.names.plural+\".\"+spec.group: "
                                            f"{names['plural']}.{spec['group']}")])
        for rtype in resource_types_from_crd(crd):
            self.add_type(rtype)
        crd["status"] = {
            "acceptedNames": names,
            "storedVersions": [v["name"] for v in spec.get("versions") or [] if v.get("storage")],
            "conditions": [
                {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts",
                 "message": "no conflicts found", "lastTransitionTime": self.now()},
                {"type": "Established", "status": "True", "reason": "InitialNamesAccepted",
                 "message": "the initial names have been accepted", "lastTransitionTime": self.now()},
            ],
        }
        return crd

    def _unregister_crd(self, crd: JSON) -> None:
        spec = crd.get("spec") or {}
        storage_key = (spec.get("group"), (spec.get("names") or {}).get("plural"))
        for rtype in [t for t in self.types.values() if t.storage_key == storage_key]:
            for obj in list(self.objects.get(storage_key, {}).values()):
                self._remove(rtype, obj)
            del self.types[(rtype.group, rtype.version, rtype.plural)]
        self.objects.pop(storage_key, None)  # type: ignore[arg-type]


def translate_for_watcher(watcher: Watcher, event: HistoryEvent) -> Optional[tuple[str, JSON]]:
    """The event a filtered watch sees: objects entering or leaving its selection
    arrive as ADDED or DELETED, as on a real API server."""
    now_matches = watcher.matches(event.obj)
    if event.type == "ADDED":
        return ("ADDED", event.obj) if now_matches else None
    if event.type == "DELETED":
        return ("DELETED", event.obj) if now_matches else None
    was_matching = watcher.matches(event.old)
    if now_matches and was_matching:
        return ("MODIFIED", event.obj)
    if now_matches:
        return ("ADDED", event.obj)
    if was_matching:
        return ("DELETED", event.obj)
    return None


# ============================================================================ HTTP layer


def _json_response(body: Any, status: int = 200) -> web.Response:
    return web.Response(body=json.dumps(body, separators=(",", ":")), status=status,
                        content_type="application/json")


class HttpApi:
    """Routes Kubernetes REST paths to the store."""

    def __init__(self, store: Store, *, bookmark_interval: float = 5.0, default_watch_timeout: float = 1800.0):
        self.store = store
        self.bookmark_interval = bookmark_interval
        self.default_watch_timeout = default_watch_timeout

    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 2**20)
        app.router.add_route("*", "/{tail:.*}", self.dispatch)
        return app

    # ----------------------------------------------------------------- discovery

    def discovery(self, path: str) -> Optional[JSON]:
        types = list(self.store.types.values())
        if path == "/version":
            return {"major": "1", "minor": "33", "gitVersion": "v1.33.0-emulator", "platform": "linux/amd64"}
        if path == "/api":
            return {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}
        if path == "/apis":
            groups: dict[str, list[str]] = {}
            for rtype in types:
                if rtype.group:
                    versions = groups.setdefault(rtype.group, [])
                    if rtype.version not in versions:
                        versions.append(rtype.version)
            return {"kind": "APIGroupList", "apiVersion": "v1", "groups": [
                {"name": group, "versions": [{"groupVersion": f"{group}/{v}", "version": v} for v in versions],
                 "preferredVersion": {"groupVersion": f"{group}/{versions[0]}", "version": versions[0]}}
                for group, versions in sorted(groups.items())]}
        match = re.fullmatch(r"/api/(v1)|/apis/([^/]+)/([^/]+)", path)
        if match:
            group, version = ("", "v1") if match[1] else (match[2], match[3])
            served = [t for t in types if t.group == group and t.version == version]
            if not served:
                return None
            return {"kind": "APIResourceList", "apiVersion": "v1",
                    "groupVersion": f"{group}/{version}" if group else version,
                    "resources": [entry for t in served for entry in t.discovery()]}
        match = re.fullmatch(r"/apis/([^/]+)", path)
        if match:
            versions = sorted({t.version for t in types if t.group == match[1]})
            if versions:
                return {"kind": "APIGroup", "apiVersion": "v1", "name": match[1],
                        "versions": [{"groupVersion": f"{match[1]}/{v}", "version": v} for v in versions],
                        "preferredVersion": {"groupVersion": f"{match[1]}/{versions[0]}", "version": versions[0]}}
        return None

    # ------------------------------------------------------------------- routing

    def parse(self, path: str) -> tuple[ResourceType, Optional[str], Optional[str], Optional[str]]:
        """(resource type, namespace, name, subresource) of a resource path."""
        parts = [p for p in path.split("/") if p]
        if parts[:2] == ["api", "v1"]:
            group, version, rest = "", "v1", parts[2:]
        elif parts[:1] == ["apis"] and len(parts) >= 3:
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        namespace = None
        if len(rest) >= 3 and rest[0] == "namespaces" and (group, version, rest[2]) in self.store.types:
            namespace, rest = rest[1], rest[2:]
        if not rest or len(rest) > 3:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        rtype = self.store.resolve(group, version, rest[0])
        name = rest[1] if len(rest) > 1 else None
        subresource = rest[2] if len(rest) > 2 else None
        if subresource is not None and subresource not in rtype.subresources:
            raise ApiError(404, "NotFound", f"the server could not find the requested resource "
                                            f"({rtype.qualified}/{subresource})")
        if namespace is not None and not rtype.namespaced:
            raise ApiError(404, "NotFound", f"{rtype.qualified} is not namespaced")
        return rtype, namespace, name, subresource

    @staticmethod
    def verb_of(method: str, name: Optional[str], query: Any) -> str:
        if method == "GET":
            if name is None:
                return "watch" if query.get("watch") in ("true", "1") else "list"
            return "get"
        if method == "DELETE":
            return "deletecollection" if name is None else "delete"
        return {"POST": "create", "PUT": "update", "PATCH": "patch"}.get(method, method.lower())

    async def dispatch(self, request: web.Request) -> web.StreamResponse:
        try:
            document = self.discovery(request.path)
            if document is not None:
                return _json_response(document)
            if request.path in ("/healthz", "/livez", "/readyz"):
                return web.Response(text="ok")
            rtype, namespace, name, subresource = self.parse(request.path)
            verb = self.verb_of(request.method, name, request.query)
            self.store.request_counts[(verb, rtype.plural)] += 1
            fault = self.store.take_fault(verb, rtype.plural)
            if fault is not None:
                raise fault
            if verb not in rtype.verbs:
                raise ApiError(405, "MethodNotAllowed", f"{verb} is not allowed on {rtype.qualified}")
            return await self.handle(request, verb, rtype, namespace, name, subresource)
        except ApiError as err:
            return _json_response(err.status(), status=err.code)
        except SelectorError as err:
            return _json_response(ApiError(400, "BadRequest", str(err)).status(), status=400)
        except Exception as err:  # noqa: BLE001 - an emulator bug must reach the client readably
            logger.exception("kube emulator: %s %s failed", request.method, request.path_qs)
            failure = ApiError(500, "InternalError", f"emulator error on {request.method} {request.path}: "
                                                     f"{type(err).__name__}: {err}")
            return _json_response(failure.status(), status=500)

    async def _body(self, request: web.Request) -> Any:
        raw = await request.read()
        if not raw:
            return None
        if request.content_type.endswith("protobuf"):
            raise ApiError(415, "UnsupportedMediaType", "this emulator speaks JSON only, not protobuf "
                                                        f"(got {request.content_type!r})")
        try:
            return json.loads(raw)
        except ValueError as err:
            raise ApiError(400, "BadRequest", f"the request body is not valid JSON: {err}") from None

    async def handle(self, request: web.Request, verb: str, rtype: ResourceType, namespace: Optional[str],
                     name: Optional[str], subresource: Optional[str]) -> web.StreamResponse:
        store = self.store
        query = request.query
        if verb == "watch":
            return await self.watch(request, rtype, namespace)
        if verb == "list":
            items = store.list(rtype, namespace, query.get("labelSelector", ""), query.get("fieldSelector", ""))
            return _json_response(self._list_body(rtype, items, query))
        if verb == "get":
            if subresource == "log":
                return await self.pod_log(request, rtype, namespace, name)  # type: ignore[arg-type]
            return _json_response(store.get(rtype, namespace, name))  # type: ignore[arg-type]
        if verb == "create":
            if name is not None:
                raise ApiError(405, "MethodNotAllowed", "POST to a named object is not allowed")
            return _json_response(store.create(rtype, namespace, await self._body(request)), status=201)
        if verb == "update":
            return _json_response(store.replace(rtype, namespace, name, await self._body(request),  # type: ignore
                                                subresource))
        if verb == "patch":
            return _json_response(store.patch(rtype, namespace, name, await self._body(request),  # type: ignore
                                              request.content_type, subresource))
        if verb == "delete":
            options = dict(await self._body(request) or {})
            if query.get("propagationPolicy"):
                options["propagationPolicy"] = query["propagationPolicy"]
            return _json_response(store.delete(rtype, namespace, name, options))  # type: ignore[arg-type]
        if verb == "deletecollection":
            items = store.list(rtype, namespace, query.get("labelSelector", ""), query.get("fieldSelector", ""))
            for item in items:
                store.delete(rtype, item["metadata"].get("namespace"), item["metadata"]["name"])
            return _json_response(self._list_body(rtype, items, {}))
        raise ApiError(405, "MethodNotAllowed", f"{request.method} is not supported")

    def _list_body(self, rtype: ResourceType, items: list[JSON], query: Any) -> JSON:
        metadata: JSON = {"resourceVersion": str(self.store.resource_version)}
        limit = int(query.get("limit") or 0)
        start = int(query.get("continue") or 0) if str(query.get("continue") or "0").isdigit() else 0
        if limit > 0:
            page = items[start:start + limit]
            if start + limit < len(items):
                metadata["continue"] = str(start + limit)
                metadata["remainingItemCount"] = len(items) - start - limit
            items = page
        return {"apiVersion": rtype.api_version, "kind": f"{rtype.kind}List", "metadata": metadata,
                "items": items}

    # --------------------------------------------------------------------- watch

    async def watch(self, request: web.Request, rtype: ResourceType, namespace: Optional[str]) -> web.StreamResponse:
        query = request.query
        store = self.store
        labels = parse_label_selector(query.get("labelSelector", ""))
        fields = parse_field_selector(query.get("fieldSelector", ""))
        timeout = float(query.get("timeoutSeconds") or self.default_watch_timeout)
        bookmarks = query.get("allowWatchBookmarks") in ("true", "1")
        since = query.get("resourceVersion") or ""
        if since and not since.isdigit():
            raise ApiError(400, "BadRequest", f"resourceVersion {since!r} is not a valid resource version")
        response = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
        await response.prepare(request)

        # From here to registration there is no await: no event can slip between.
        watcher = Watcher(rtype.storage_key, namespace if rtype.namespaced else None, labels, fields,
                          asyncio.Queue())
        if since not in ("", "0") and int(since) < store.history_floor:
            gone = ApiError(410, "Expired", f"too old resource version: {since} ({store.history_floor})")
            await response.write(self._line("ERROR", gone.status()))
            return response
        if since in ("", "0"):
            initial = [("ADDED", obj) for obj in store.list(rtype, watcher.namespace) if watcher.matches(obj)]
        else:
            initial = [translated for event in store.history
                       if event.resource_version > int(since) and event.storage_key == rtype.storage_key
                       for translated in [translate_for_watcher(watcher, event)] if translated is not None]
        if store.closing:
            return response
        store.watchers.add(watcher)
        try:
            for event_type, obj in initial:
                await response.write(self._line(event_type, obj))
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            while True:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                wait = min(remaining, self.bookmark_interval) if bookmarks else remaining
                try:
                    item = await asyncio.wait_for(watcher.queue.get(), timeout=wait)
                except asyncio.TimeoutError:
                    if bookmarks and deadline - loop.time() > 0:
                        await response.write(self._line("BOOKMARK", {
                            "apiVersion": rtype.api_version, "kind": rtype.kind,
                            "metadata": {"resourceVersion": str(store.resource_version)}}))
                    continue
                if item is CLOSE:
                    break
                await response.write(self._line(*item))
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            store.watchers.discard(watcher)
        return response

    @staticmethod
    def _line(event_type: str, obj: JSON) -> bytes:
        return (json.dumps({"type": event_type, "object": obj}, separators=(",", ":")) + "\n").encode()

    # ------------------------------------------------------------------- pod logs

    async def pod_log(self, request: web.Request, rtype: ResourceType, namespace: Optional[str],
                      name: str) -> web.StreamResponse:
        store = self.store
        store.get(rtype, namespace, name)
        key = (namespace or "", name)
        log = store.pod_logs.setdefault(key, PodLog())
        tail = request.query.get("tailLines")
        if tail is not None and not tail.lstrip("-").isdigit():
            raise ApiError(400, "BadRequest", f"tailLines {tail!r} is not an integer")
        text = log.text
        if tail is not None:
            lines = text.splitlines(keepends=True)
            text = "".join(lines[-int(tail):]) if int(tail) > 0 else ""
        if request.query.get("follow") not in ("true", "1"):
            return web.Response(text=text, content_type="text/plain")
        response = web.StreamResponse(status=200, headers={"Content-Type": "text/plain"})
        await response.prepare(request)
        await response.write(text.encode())
        sent = len(log.text)
        try:
            while not store.closing:
                pod = store.objects[rtype.storage_key].get(key)
                if pod is None:
                    break
                if log.changed is None:
                    log.changed = asyncio.Event()
                if len(log.text) > sent:
                    await response.write(log.text[sent:].encode())
                    sent = len(log.text)
                phase = (pod.get("status") or {}).get("phase")
                if phase in ("Succeeded", "Failed"):
                    break
                log.changed.clear()
                try:
                    await asyncio.wait_for(log.changed.wait(), timeout=1.0)
                except asyncio.TimeoutError:
                    pass
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        return response


# ======================================================================== the emulator


class KubeEmulator:
    """The server on a background thread, with a synchronous test-side handle.

    Test-side calls use the same store code as HTTP requests but bypass fault
    injection and request counting, so tests can arrange and inspect state freely.
    """

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, history_size: int = 1000,
                 bookmark_interval: float = 5.0) -> None:
        self.host = host
        self.port = port
        self.store = Store(history_size=history_size)
        self.rest = HttpApi(self.store, bookmark_interval=bookmark_interval)
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._thread: Optional[threading.Thread] = None
        self._runner: Optional[web.AppRunner] = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    # ---------------------------------------------------------------- life cycle

    def start(self) -> "KubeEmulator":
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(target=loop.run_forever, name="kube-emulator", daemon=True)
        self._thread.start()
        self._run(self._start_site)
        return self

    async def _start_site(self) -> None:
        self._runner = web.AppRunner(self.rest.app(), access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    def stop(self) -> None:
        if self._loop is None:
            return

        def close() -> None:
            self.store.closing = True
            self.store.close_watches()
        self._call(close)
        for log in self.store.pod_logs.values():
            if log.changed is not None:
                self._loop.call_soon_threadsafe(log.changed.set)
        if self._runner is not None:
            self._run(lambda: self._runner.cleanup())  # type: ignore[union-attr]
        self._loop.call_soon_threadsafe(self._loop.stop)
        assert self._thread is not None
        self._thread.join(timeout=10)
        self._loop.close()
        self._loop = None

    def __enter__(self) -> "KubeEmulator":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def _run(self, coroutine_function: Callable[[], Any], timeout: float = 30) -> Any:
        assert self._loop is not None, "the emulator is not running"
        return asyncio.run_coroutine_threadsafe(coroutine_function(), self._loop).result(timeout)

    def _call(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run a store function on the loop thread and return a private copy of its result."""
        if self._loop is None:
            return copy.deepcopy(function(*args, **kwargs))

        async def call() -> Any:
            return copy.deepcopy(function(*args, **kwargs))
        return self._run(call)

    # ----------------------------------------------------------- test-side access

    def register_crd(self, crd: JSON) -> JSON:
        """Create a CustomResourceDefinition, which serves its resources at once."""
        return self.create(crd)

    def create(self, body: JSON, namespace: Optional[str] = None) -> JSON:
        def create() -> JSON:
            rtype = self.store.type_for_body(body)
            ns = (namespace or (body.get("metadata") or {}).get("namespace")) if rtype.namespaced else None
            return self.store.create(rtype, ns, body)
        return self._call(create)

    def get(self, resource: str, name: str, namespace: Optional[str] = None) -> JSON:
        return self._call(lambda: self.store.get(self.store.find_type(resource), namespace, name))

    def exists(self, resource: str, name: str, namespace: Optional[str] = None) -> bool:
        try:
            self.get(resource, name, namespace)
        except ApiError as err:
            if err.code == 404:
                return False
            raise
        return True

    def list(self, resource: str, namespace: Optional[str] = None, label_selector: str = "",
             field_selector: str = "") -> list[JSON]:
        return self._call(lambda: self.store.list(self.store.find_type(resource), namespace, label_selector,
                                                  field_selector))

    def replace(self, body: JSON, subresource: Optional[str] = None) -> JSON:
        def replace() -> JSON:
            rtype = self.store.type_for_body(body)
            meta = body["metadata"]
            return self.store.replace(rtype, meta.get("namespace"), meta["name"], body, subresource)
        return self._call(replace)

    def patch(self, resource: str, name: str, patch: Any, namespace: Optional[str] = None,
              subresource: Optional[str] = None, content_type: str = "application/merge-patch+json") -> JSON:
        return self._call(lambda: self.store.patch(self.store.find_type(resource), namespace, name, patch,
                                                   content_type, subresource))

    def patch_status(self, resource: str, name: str, status: JSON, namespace: Optional[str] = None) -> JSON:
        """Merge-patch `.status`, as a controller (KubeRay, the kubelet) would."""
        def patch() -> JSON:
            rtype = self.store.find_type(resource)
            sub = "status" if "status" in rtype.subresources else None
            return self.store.patch(rtype, namespace, name, {"status": status}, "application/merge-patch+json",
                                    sub)
        return self._call(patch)

    def delete(self, resource: str, name: str, namespace: Optional[str] = None,
               propagation_policy: Optional[str] = None) -> JSON:
        options = {"propagationPolicy": propagation_policy} if propagation_policy else None
        return self._call(lambda: self.store.delete(self.store.find_type(resource), namespace, name, options))

    def set_clock(self, now: Callable[[], str]) -> None:
        """Use `now()` (an RFC 3339 string) for creation and deletion timestamps."""
        def set_now() -> None:
            self.store.now = now
        self._call(set_now)

    def create_namespace(self, name: str) -> JSON:
        return self.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})

    def set_pod_log(self, namespace: str, pod: str, text: str, *, append: bool = False) -> None:
        """Set (or extend) what GET pods/{pod}/log returns; wakes followers."""
        def set_log() -> None:
            self.store.get(self.store.find_type("pods"), namespace, pod)
            log = self.store.pod_logs.setdefault((namespace, pod), PodLog())
            log.text = log.text + text if append else text
            if log.changed is not None:
                log.changed.set()
        self._call(set_log)

    def fail_next(self, verb: str, resource: str, code: int = 500, times: int = 1,
                  message: Optional[str] = None) -> None:
        """The next `times` HTTP requests of `verb` on `resource` ("*" for any) fail with `code`."""
        plural = resource if resource == "*" else self._call(lambda: self.store.find_type(resource).plural)
        rule = FaultRule(verb, plural, code, times, message or f"injected failure {code} for {verb} {plural}")
        self._call(lambda: self.store.faults.append(rule))

    def clear_faults(self) -> None:
        """Drop every fault rule fail_next set that has not run out yet."""
        self._call(self.store.faults.clear)

    def close_watches(self) -> int:
        """End every open watch stream now, as an API server restart would. Returns how many."""
        return self._call(self.store.close_watches)

    def open_watches(self) -> int:
        return self._call(lambda: len(self.store.watchers))

    def request_count(self, verb: str, resource: str) -> int:
        """How many HTTP requests of `verb` on `resource` the server has answered."""
        return self._call(lambda: self.store.request_counts[(verb, self.store.find_type(resource).plural)])

    def request_counts(self) -> dict[tuple[str, str], int]:
        """Every (verb, plural) the server has answered over HTTP, with how many times."""
        return self._call(lambda: dict(self.store.request_counts))

    @property
    def resource_version(self) -> int:
        return self._call(lambda: self.store.resource_version)

    def kubeconfig(self, namespace: str = "default", context: str = "emulator") -> JSON:
        """A kubeconfig document pointing at this server, with no authentication."""
        return {
            "apiVersion": "v1", "kind": "Config", "current-context": context,
            "clusters": [{"name": context, "cluster": {"server": self.url}}],
            "users": [{"name": context, "user": {"token": "emulator"}}],
            "contexts": [{"name": context, "context": {"cluster": context, "user": context,
                                                       "namespace": namespace}}],
        }


def main(argv: Optional[list[str]] = None) -> None:
    """Run the emulator on its own, e.g. to point kopf or kubectl at it by hand."""
    import argparse
    import time

    import yaml

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--crd", action="append", default=[], help="CRD YAML file to register")
    parser.add_argument("--namespace", action="append", default=["default"], help="namespace to create")
    args = parser.parse_args(argv)
    emulator = KubeEmulator(port=args.port).start()
    for crd in kopf_peering_crds():
        emulator.register_crd(crd)
    for path in args.crd:
        with open(path) as stream:
            for document in yaml.load_all(stream, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
                if document:
                    emulator.register_crd(document)
    for namespace in dict.fromkeys(args.namespace):
        emulator.create_namespace(namespace)
    print(f"Kubernetes API emulator on {emulator.url}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        emulator.stop()


if __name__ == "__main__":
    main()
