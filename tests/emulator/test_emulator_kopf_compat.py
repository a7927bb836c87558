"""A real `kopf run` process against the emulator: discovery, watch, finalizers,
status patches, events and peering all work the way kopf expects."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

import pytest

from tests.support.jobs import fine_tune_job

OPERATOR = textwrap.dedent('''
    import kopf

    @kopf.on.startup()
    def configure(settings, **_):
        settings.watching.server_timeout = 10
        settings.posting.level = 0

    @kopf.on.create("finetune.dev", "v1alpha1", "finetunejobs")
    def created(body, patch, **_):
        patch.status["phase"] = "Running"
        patch.status["message"] = "picked up by kopf"
        kopf.info(body, reason="Picked", message="the emulator works")

    @kopf.on.update("finetune.dev", "v1alpha1", "finetunejobs", field="spec.outputPolicy")
    def updated(new, patch, **_):
        patch.status["message"] = f"policy is now {new}"

    @kopf.on.delete("finetune.dev", "v1alpha1", "finetunejobs")
    def deleted(**_):
        pass
''')


@pytest.fixture
def kopf_operator(kube, tmp_path):
    script = tmp_path / "operator.py"
    script.write_text(OPERATOR)
    log = open(tmp_path / "kopf.log", "w+")
    env = dict(os.environ, KUBECONFIG=str(kube.kubeconfig_path))
    kube.create({"apiVersion": "kopf.dev/v1", "kind": "KopfPeering",
                 "metadata": {"name": "default", "namespace": "default"}})
    process = subprocess.Popen(
        [sys.executable, "-m", "kopf", "run", "--namespace=default", "--peering=default", "--verbose", str(script)],
        env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        yield process, log
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def test_kopf_operator_runs_against_the_emulator(kube, kopf_operator):
    process, log = kopf_operator
    try:
        kube.create(fine_tune_job(), namespace="default")
        job = kube.wait_for("finetunejobs", "job1", lambda o: (o.get("status") or {}).get("phase") == "Running",
                            namespace="default", timeout=60)
        assert job["status"]["message"] == "picked up by kopf"
        assert "kopf.zalando.org/KopfFinalizerMarker" in job["metadata"]["finalizers"]
        deadline = time.monotonic() + 30
        while not [e for e in kube.list("events", "default") if e.get("reason") == "Picked"]:
            assert time.monotonic() < deadline, "kopf posted no event"
            time.sleep(0.05)
        kube.patch("finetunejobs", "job1", {"spec": {"outputPolicy": "Delete"}}, namespace="default")
        kube.wait_for("finetunejobs", "job1",
                      lambda o: o["status"].get("message") == "policy is now Delete", namespace="default", timeout=30)
        peering = kube.wait_for("kopfpeerings", "default", lambda o: bool(o.get("status")), namespace="default",
                                timeout=30)
        assert len(peering["status"]) == 1  # this operator announced itself as a peer
        kube.delete("finetunejobs", "job1", namespace="default")
        kube.wait_gone("finetunejobs", "job1", namespace="default", timeout=30)
        kube.close_watches()  # kopf must re-list and carry on after its streams drop
        kube.create(fine_tune_job("job2"), namespace="default")
        kube.wait_for("finetunejobs", "job2", lambda o: (o.get("status") or {}).get("phase") == "Running",
                      namespace="default", timeout=60)
        assert process.poll() is None
    except AssertionError:
        log.seek(0)
        print(log.read()[-20000:])
        raise
