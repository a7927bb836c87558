"""The emulator answers fast enough for scenario tests (kmock took minutes for this)."""

from __future__ import annotations

import time

from tests.emulator.helpers import CM, configmap


def test_two_thousand_requests_stay_fast(http, kube):
    started = time.perf_counter()
    for index in range(1000):
        assert http.post(CM, configmap(f"cm-{index}", {"i": str(index)})).status_code == 201
    for index in range(1000):
        assert http.get(f"{CM}/cm-{index}").status_code == 200
    elapsed = time.perf_counter() - started
    assert elapsed / 2000 < 0.020, f"average {elapsed / 2000 * 1000:.1f} ms per request"
    assert len(kube.list("configmaps", "default", label_selector="i in (1, 2, 3)")) == 3
