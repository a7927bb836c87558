"""End to end: two replicas, as the chart runs them, share the work through kopf peering.

The API emulator serves the chart's own kopf peering CRDs and peering object. Two
`finetune operator` processes run the container's exact shell line from the rendered
HA Deployment (each with its own pod name, so each derives its own priority). The
lower one must pause in favour of the higher; jobs are reconciled; when the active
replica stops, the standby resumes and reconciles the next job.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest

from deploy_support import ROOT, find, free_port, http_ok, poll, render, stop, the
from tests.support.kube_fixtures import FINETUNE_CRD, RAYJOB_CRD, KubeHandle, load_crds, start_kube
from tests.support.jobs import runnable_job

pytestmark = pytest.mark.e2e

PODS = ("finetune-operator-6b7c9d5f4-2xkqp", "finetune-operator-6b7c9d5f4-w8zrn")


@pytest.fixture
def objects() -> list[dict[str, Any]]:
    return render({"replicaCount": 2})


@pytest.fixture
def kube(tmp_path: Path, objects: list[dict[str, Any]]) -> Iterator[KubeHandle]:
    handle = start_kube(tmp_path, crds=False)
    try:
        for crd in [*find(objects, "CustomResourceDefinition"), *load_crds(FINETUNE_CRD), *load_crds(RAYJOB_CRD)]:
            handle.register_crd(crd)
        peering = the(objects, "ClusterKopfPeering")
        handle.create({k: v for k, v in peering.items() if k != "status"})
        yield handle
    finally:
        handle.stop()


class Replica:
    """One operator pod: the rendered container's shell line, run by /bin/sh."""

    def __init__(self, pod: str, line: str, kube: KubeHandle, tmp_path: Path, settings: Path) -> None:
        self.pod = pod
        self.health_port = free_port()
        self.log_path = tmp_path / f"{pod}.log"
        # The rendered line with this test's ports and the emulator's kubeconfig; the
        # peering name and priority flags stay exactly as rendered.
        line = line.replace("--metrics-port=8080", f"--metrics-port={free_port()}")
        line = line.replace("--health-port=8081", f"--health-port={self.health_port}")
        line += f" --kubeconfig={kube.kubeconfig_path} --bind=127.0.0.1 --resync-seconds=1"
        env = {k: v for k, v in os.environ.items() if not k.startswith("FINETUNE_") and k != "KUBECONFIG"}
        env.update({"POD_NAME": pod, "POD_NAMESPACE": "finetune-system", "FINETUNE_SETTINGS_FILE": str(settings),
                    "PYTHONUNBUFFERED": "1", "PATH": f"{Path(sys.executable).parent}:{env.get('PATH', '')}"})
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(["/bin/sh", "-c", line], stdout=log, stderr=subprocess.STDOUT,
                                            env=env, cwd=ROOT)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def working(self) -> bool:
        """Whether kopf's last word on peering was to resume (it starts paused)."""
        lines = [line for line in self.log().splitlines()
                 if "Resuming operations after the pause" in line or "Pausing operations" in line]
        return bool(lines) and "Resuming" in lines[-1]

    def priority(self) -> int:
        """The priority the container line derives from this pod's name."""
        out = subprocess.run(["/bin/sh", "-c", "printf '%s' \"$POD_NAME\" | cksum | cut -d ' ' -f 1"],
                             env={"POD_NAME": self.pod, "PATH": "/usr/bin:/bin"}, capture_output=True,
                             text=True, check=True).stdout
        return int(out)

    def healthy(self) -> bool:
        assert self.process.poll() is None, f"{self.pod} exited:\n{self.log()[-4000:]}"
        return http_ok(f"http://127.0.0.1:{self.health_port}/healthz")


def has_phase(obj: dict[str, Any]) -> bool:
    return bool((obj.get("status") or {}).get("phase"))


def test_one_replica_works_and_the_other_takes_over(kube: KubeHandle, objects: list[dict[str, Any]],
                                                     tmp_path: Path) -> None:
    (container,) = the(objects, "Deployment")["spec"]["template"]["spec"]["containers"]
    (line,) = container["args"]
    settings = tmp_path / "settings.yaml"
    settings.write_text(the(objects, "ConfigMap")["data"]["settings.yaml"])
    replicas = [Replica(pod, line, kube, tmp_path, settings) for pod in PODS]
    try:
        for replica in replicas:
            poll(f"{replica.pod} healthy", replica.healthy, 60, lambda r=replica: r.log()[-4000:])

        def peers() -> dict[str, Any]:
            status = kube.get("clusterkopfpeerings", "finetune-operator").get("status") or {}
            return status if len(status) == 2 else {}

        priorities = sorted(p["priority"] for p in poll("both replicas in the peering object", peers, 30).values())
        assert priorities[0] != priorities[1], "replicas must not share a priority (kopf would freeze both)"

        # kopf starts paused and logs only changes: "Resuming ..." when it begins to
        # work, "Pausing ... in favour of" when a higher peer appears. Exactly one
        # replica must end up working.
        def working() -> list[Replica]:
            return [r for r in replicas if r.working()]

        # The replica whose pod name hashes highest (as the container line computes it).
        by_priority = sorted(replicas, key=lambda r: r.priority())
        expected_active, expected_standby = by_priority[-1], by_priority[0]
        assert sorted(r.priority() for r in replicas) == priorities

        poll("only the highest-priority replica working", lambda: working() == [expected_active], 30,
             lambda: "\n".join(r.log()[-2000:] for r in replicas))
        active, standby = expected_active, expected_standby
        assert "Pausing all operators" not in active.log() + standby.log()

        kube.create(runnable_job("first"))
        kube.wait_for("finetunejobs", "first", has_phase, "default", timeout=30)

        stop(active.process)  # SIGTERM: kopf withdraws from peering on its way out
        poll("the standby taking over", standby.working, 30, lambda: standby.log()[-3000:])
        kube.create(runnable_job("second"))
        kube.wait_for("finetunejobs", "second", has_phase, "default", timeout=30)
    finally:
        for replica in replicas:
            stop(replica.process)
