"""Every write the loops must judge, seen from the test side through watch streams.

`Recorder` watches FineTuneJobs, RayJobs and ConfigMaps across all namespaces (one
thread each) and keeps, for the namespaces of the run:

- each FineTuneJob's status.phase at every resourceVersion the server sent, so the
  phase sequence of every status write can be checked afterwards;
- every RayJob and ConfigMap uid ever seen, by name and by the job uid it is labelled
  with, so a child created twice (even if one copy was deleted since) is counted.

A stream that ends is re-opened from the last resourceVersion seen (bookmarks keep it
fresh); one that expires (410 Gone) is replaced by a new list, and the gap is counted,
since writes inside it were not seen.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Optional

from chaos.client import JOBS_API, RAYJOBS_API, ChaosApi, JSON
from tests.support.real_kube import api_path
from finetune_operator import naming


@dataclass
class Recorder:
    api: ChaosApi
    namespaces: set[str]
    phases: dict[str, list[tuple[int, Optional[str]]]] = field(default_factory=lambda: defaultdict(list))
    children: dict[str, dict[str, set[str]]] = field(default_factory=lambda: {"rayjobs": defaultdict(set),
                                                                              "configmaps": defaultdict(set)})
    by_owner: dict[str, dict[str, set[str]]] = field(default_factory=lambda: {"rayjobs": defaultdict(set),
                                                                              "configmaps": defaultdict(set)})
    gaps: int = 0
    errors: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.stopped = threading.Event()
        self.lock = threading.Lock()
        self.ready = threading.Barrier(4)
        selector = f"{naming.MANAGED_BY_LABEL}={naming.MANAGED_BY_VALUE}"
        self.threads = [
            threading.Thread(target=self._follow, args=(JOBS_API, "finetunejobs", ""), daemon=True),
            threading.Thread(target=self._follow, args=(RAYJOBS_API, "rayjobs", selector), daemon=True),
            threading.Thread(target=self._follow, args=("v1", "configmaps", selector), daemon=True),
        ]

    def start(self) -> "Recorder":
        for thread in self.threads:
            thread.start()
        try:
            self.ready.wait(timeout=60)  # every stream listed and about to watch
        except threading.BrokenBarrierError:
            raise RuntimeError(f"the recorder's streams did not start: {self.errors}") from None
        return self

    def stop(self) -> None:
        self.stopped.set()
        for thread in self.threads:
            thread.join(timeout=70)

    # ------------------------------------------------------------------ streams

    def _follow(self, api_version: str, plural: str, selector: str) -> None:
        api = self.api.clone()
        params = {"labelSelector": selector} if selector else {}
        first = True
        try:
            while not self.stopped.is_set():
                listed = api.ok(api.request("GET", api_path(api_version, plural), **params))
                for item in listed["items"]:
                    self._seen(plural, item)
                version = listed["metadata"]["resourceVersion"]
                if first:
                    first = False
                    self.ready.wait(timeout=60)
                version = self._watch(api, api_version, plural, selector, version)
                if version is None:
                    with self.lock:
                        self.gaps += 1
        except Exception as err:  # reported: a recorder that stopped early voids the run
            self.errors.append(f"{plural}: {type(err).__name__}: {err}")
        finally:
            api.close()

    def _watch(self, api: ChaosApi, api_version: str, plural: str, selector: str, version: str) -> Optional[str]:
        """Follow streams from `version` until stopped; None when the version expired."""
        while not self.stopped.is_set():
            params = {"labelSelector": selector} if selector else {}
            for event in api.watch(api_version, plural, version, timeout_seconds=5, **params):
                if event["type"] == "ERROR":
                    if (event.get("object") or {}).get("code") == 410:
                        return None
                    raise RuntimeError(f"watch {plural}: {event}")
                obj = event["object"]
                version = obj["metadata"]["resourceVersion"]
                if event["type"] in ("ADDED", "MODIFIED"):
                    self._seen(plural, obj)
        return version

    def _seen(self, plural: str, obj: JSON) -> None:
        meta = obj["metadata"]
        if meta.get("namespace") not in self.namespaces:
            return
        key = f"{meta['namespace']}/{meta['name']}"
        with self.lock:
            if plural == "finetunejobs":
                entry = (int(meta["resourceVersion"]), (obj.get("status") or {}).get("phase"))
                if entry not in self.phases[key]:
                    self.phases[key].append(entry)
                return
            self.children[plural][key].add(meta["uid"])
            owner = (meta.get("labels") or {}).get(naming.JOB_UID_LABEL, "?")
            self.by_owner[plural][owner].add(meta["uid"])
