"""The ConfigMap holding the trainer's JobConfig, and where the head pod mounts it.

The training configuration reaches the trainer only through this ConfigMap (mounted on
the head pod, where KubeRay's submitter starts the driver), never through the
entrypoint string, so no user text is ever parsed by a shell.
"""

from __future__ import annotations

import hashlib
import json

from finetune_operator import naming
from finetune_operator.api import FineTuneJobSpec
from finetune_operator.builders.metadata import child_metadata, job_identity
from finetune_operator.settings import Settings

CONFIG_DIR = "/etc/finetune"
CONFIG_FILE = "job.json"
CONFIG_PATH = f"{CONFIG_DIR}/{CONFIG_FILE}"
CONFIG_VOLUME = "finetune-config"


def job_config_json(job_obj: dict, spec: FineTuneJobSpec) -> str:
    """The trainer's input for this job, as the exact JSON the ConfigMap holds."""
    name, namespace, _ = job_identity(job_obj)
    config = spec.job_config(naming.run_name(namespace, name))
    return json.dumps(config.to_dict(), indent=2, sort_keys=True)


def config_hash(job_obj: dict, spec: FineTuneJobSpec) -> str:
    """A short digest of the ConfigMap's JobConfig, stamped on the pods it reached."""
    return hashlib.sha256(job_config_json(job_obj, spec).encode()).hexdigest()[:16]


def build_configmap(job_obj: dict, spec: FineTuneJobSpec, settings: Settings) -> dict:
    """The ConfigMap holding the JobConfig JSON the trainer reads at CONFIG_PATH."""
    name, namespace, _ = job_identity(job_obj)
    metadata = child_metadata(job_obj, naming.configmap_name(name), naming.COMPONENT_CONFIG)
    metadata["annotations"] = {naming.RUN_NAME_ANNOTATION: naming.run_name(namespace, name)}
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata,
        # Immutable: a spec never changes under a live job (admission refuses it), and
        # the kubelet stops watching immutable ConfigMaps, which saves API load.
        "immutable": True,
        "data": {CONFIG_FILE: job_config_json(job_obj, spec)},
    }
