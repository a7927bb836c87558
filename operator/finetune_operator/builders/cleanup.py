"""The batch Job that deletes a job's outputs when it goes (outputPolicy Delete).

It runs in the trainer image, which has the storage libraries, with the job's S3
Secret as environment; the operator itself never sees storage credentials.
"""

from __future__ import annotations

import json
from typing import Any

from finetune_operator import naming
from finetune_operator.builders.pods import container_security, pod_security
from finetune_operator.settings import Settings

# Deletes `<output.uri>/<run name>` with the trainer's own storage code; runs in the
# trainer image, with the job's S3 Secret as environment.
CLEANUP_SCRIPT = """\
import json, os
from finetune_trainer.api import OutputSpec, join, resolve_filesystem
output = OutputSpec.model_validate(json.loads(os.environ["FINETUNE_OUTPUT"]))
filesystem, path = resolve_filesystem(join(output.uri, os.environ["FINETUNE_RUN_NAME"]), output)
try:
    filesystem.delete_dir(path)
except FileNotFoundError:
    pass
print("deleted", path)
"""


def build_cleanup_job(job: dict, settings: Settings) -> dict:
    """The batch Job that deletes a job's artifacts (outputPolicy Delete). Pure.

    It is not owned by the FineTuneJob (it must outlive it for the finalizer to see
    it finish) and removes itself 10 minutes after it ends."""
    meta = job["metadata"]
    spec = job.get("spec") or {}
    output = dict(spec.get("output") or {})
    secret = (output.pop("secretRef", None) or {}).get("name")
    run = naming.run_name(meta["namespace"], meta["name"])
    container: dict[str, Any] = {
        "name": "cleanup",
        "image": (spec.get("resources") or {}).get("image") or settings.default_image,
        "command": ["python", "-c", CLEANUP_SCRIPT],
        "env": [{"name": "FINETUNE_OUTPUT", "value": json.dumps(output, sort_keys=True)},
                {"name": "FINETUNE_RUN_NAME", "value": run}],
        "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"cpu": "500m", "memory": "512Mi"}},
        # Read-only root: Python's scratch files go to an emptyDir at /tmp.
        "securityContext": container_security(settings, read_only_root=True),
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }
    if secret:
        container["envFrom"] = [{"secretRef": {"name": secret}}]
    labels = naming.owned_labels(meta["name"], meta["uid"], naming.COMPONENT_CLEANUP)
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": naming.cleanup_job_name(meta["name"]), "namespace": meta["namespace"], "labels": labels},
        "spec": {
            "backoffLimit": 3,
            "ttlSecondsAfterFinished": 600,
            "template": {"metadata": {"labels": labels},
                         "spec": {"restartPolicy": "Never", "containers": [container],
                                  "automountServiceAccountToken": False,  # it never calls the API
                                  "securityContext": pod_security(settings),
                                  "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}}]}},
        },
    }
