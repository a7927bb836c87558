"""Watch streams: initial state, resuming from a version, 410 Gone, bookmarks, timeouts."""

from __future__ import annotations

import threading
import time

from tests.emulator.helpers import CM, configmap
from tests.support.kube_fixtures import start_kube


def collect(http, path, count, **params):
    """The first `count` events of a watch, read on a thread; returns (events, thread)."""
    events = []

    def run():
        for event in http.watch(path, **params):
            events.append(event)
            if len(events) >= count:
                return

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return events, thread


def wait_until(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


def test_watch_without_version_sends_current_state_then_changes(http, kube):
    http.post(CM, configmap("before"))
    events, thread = collect(http, CM, 4, timeoutSeconds=10)
    wait_until(lambda: kube.open_watches() == 1)
    http.post(CM, configmap("after"))
    http.patch(f"{CM}/after", {"data": {"x": "1"}})
    http.delete(f"{CM}/after")
    thread.join(10)
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [
        ("ADDED", "before"), ("ADDED", "after"), ("MODIFIED", "after"), ("DELETED", "after")]
    assert int(events[3]["object"]["metadata"]["resourceVersion"]) > int(
        events[2]["object"]["metadata"]["resourceVersion"])


def test_watch_from_a_version_replays_what_came_after(http):
    first = http.post(CM, configmap("one")).json()
    http.post(CM, configmap("two"))
    http.patch(f"{CM}/one", {"data": {"k": "v"}})
    since = first["metadata"]["resourceVersion"]
    events, thread = collect(http, CM, 2, resourceVersion=since, timeoutSeconds=5)
    thread.join(10)
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [("ADDED", "two"), ("MODIFIED", "one")]


def test_watch_from_a_version_older_than_the_history_is_410_gone(tmp_path):
    kube = start_kube(tmp_path, crds=False, history_size=5)
    try:
        from tests.emulator.helpers import Http
        http = Http(kube.url)
        first = http.post(CM, configmap("c0")).json()
        for index in range(1, 10):
            http.post(CM, configmap(f"c{index}"))
        events = list(http.watch(CM, resourceVersion=first["metadata"]["resourceVersion"]))
        assert len(events) == 1 and events[0]["type"] == "ERROR"
        assert events[0]["object"]["code"] == 410 and events[0]["object"]["reason"] == "Expired"
        recent = http.get(CM).json()["metadata"]["resourceVersion"]
        http.post(CM, configmap("fresh"))
        fresh = next(iter(http.watch(CM, resourceVersion=recent, timeoutSeconds=2)))
        assert fresh["type"] == "ADDED" and fresh["object"]["metadata"]["name"] == "fresh"
    finally:
        kube.stop()


def test_label_selected_watch_sees_objects_enter_and_leave(http, kube):
    http.post(CM, configmap("x", {"app": "other"}))
    events, thread = collect(http, CM, 2, labelSelector="app=web", resourceVersion="1", timeoutSeconds=10)
    wait_until(lambda: kube.open_watches() == 1)
    http.patch(f"{CM}/x", {"metadata": {"labels": {"app": "web"}}})
    http.patch(f"{CM}/x", {"metadata": {"labels": {"app": "gone"}}})
    thread.join(10)
    assert [e["type"] for e in events] == ["ADDED", "DELETED"]


def test_timeout_seconds_ends_the_stream(http):
    started = time.monotonic()
    assert list(http.watch(CM, timeoutSeconds=1, resourceVersion="1")) == []
    assert 0.9 <= time.monotonic() - started < 5


def test_bookmarks_when_allowed(tmp_path):
    kube = start_kube(tmp_path, crds=False, bookmark_interval=0.2)
    try:
        from tests.emulator.helpers import Http
        events = list(Http(kube.url).watch(CM, allowWatchBookmarks="true", timeoutSeconds=1, resourceVersion="1"))
        bookmarks = [e for e in events if e["type"] == "BOOKMARK"]
        assert bookmarks and bookmarks[0]["object"]["metadata"]["resourceVersion"].isdigit()
        assert list(Http(kube.url).watch(CM, timeoutSeconds=0.5, resourceVersion="1")) == []
    finally:
        kube.stop()


def test_close_watches_ends_every_open_stream(http, kube):
    results = []
    threads = [threading.Thread(target=lambda: results.append(list(http.watch(CM, timeoutSeconds=60))),
                                daemon=True) for _ in range(2)]
    for thread in threads:
        thread.start()
    wait_until(lambda: kube.open_watches() == 2)
    assert kube.close_watches() == 2
    for thread in threads:
        thread.join(10)
        assert not thread.is_alive()
    assert kube.open_watches() == 0
