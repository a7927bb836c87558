"""The output-cleanup Job (outputPolicy Delete): a pure builder, compared literally."""

from __future__ import annotations

import json

from pure_helpers import stored_job, is_dns1123_label
from finetune_operator import builders, naming
from finetune_operator.settings import Settings


def test_cleanup_job_for_a_job_with_a_secret():
    job, _ = stored_job("scratch", namespace="team-a", uid="uid-1", outputPolicy="Delete",
                       output={"uri": "s3://models/x", "secretRef": {"name": "s3-creds"}})
    labels = {
        "app.kubernetes.io/managed-by": "finetune-operator",
        "app.kubernetes.io/part-of": "finetune",
        "app.kubernetes.io/component": "cleanup",
        "finetune.dev/job-name": "scratch",
        "finetune.dev/job-uid": "uid-1",
    }
    output = {key: value for key, value in job["spec"]["output"].items() if key != "secretRef"}
    assert builders.build_cleanup_job(job, Settings(default_image="trainer:1")) == {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "scratch-cleanup", "namespace": "team-a", "labels": labels},
        "spec": {
            "backoffLimit": 3,
            "ttlSecondsAfterFinished": 600,
            "template": {"metadata": {"labels": labels}, "spec": {
                "restartPolicy": "Never",
                "automountServiceAccountToken": False,
                "containers": [{
                    "name": "cleanup",
                    "image": "trainer:1",
                    "command": ["python", "-c", builders.CLEANUP_SCRIPT],
                    "env": [{"name": "FINETUNE_OUTPUT", "value": json.dumps(output, sort_keys=True)},
                            {"name": "FINETUNE_RUN_NAME", "value": "team-a-scratch"}],
                    "resources": {"requests": {"cpu": "100m", "memory": "256Mi"},
                                  "limits": {"cpu": "500m", "memory": "512Mi"}},
                    "securityContext": {"runAsNonRoot": True, "runAsUser": 1000, "allowPrivilegeEscalation": False,
                                        "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"},
                                        "readOnlyRootFilesystem": True},
                    "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
                    "envFrom": [{"secretRef": {"name": "s3-creds"}}],
                }],
                "securityContext": {"runAsNonRoot": True, "runAsUser": 1000, "fsGroup": 1000,
                                    "seccompProfile": {"type": "RuntimeDefault"}},
                "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}}],
            }},
        },
    }


def test_cleanup_job_name_fits_a_label_and_ends_in_cleanup():
    name = naming.cleanup_job_name("x" * 253)
    assert name.startswith("x" * 30) and name.endswith(f"-{naming.short_hash('x' * 253)}-cleanup")
    assert len(name) <= 48 and is_dns1123_label(name)
    assert naming.cleanup_job_name("scratch") == "scratch-cleanup"


def test_long_job_names_get_distinct_cleanup_jobs():
    # Names that agree on their first 60 characters: cutting the RayJob name (whose
    # hash is at its end) used to leave one hash character, so about one pair in 16
    # collided.
    names = [f"{'tenant-training-run-' * 3}{i}" for i in range(500)]
    cleanup = {naming.cleanup_job_name(name) for name in names}
    assert len(cleanup) == len(names)
    assert all(len(name) <= 48 and name.endswith(f"-{naming.short_hash(job)}-cleanup") for name, job in
               zip(map(naming.cleanup_job_name, names), names))
