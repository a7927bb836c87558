"""What every child of a FineTuneJob carries: its namespace, labels and owner reference."""

from __future__ import annotations

from finetune_operator import naming
from finetune_operator.api import API_VERSION, KIND


def job_identity(job_obj: dict) -> tuple[str, str, str]:
    """(name, namespace, uid) of a stored FineTuneJob; a clear error when one is missing."""
    meta = job_obj.get("metadata") or {}
    try:
        return meta["name"], meta["namespace"], meta["uid"]
    except KeyError as err:
        raise ValueError(
            f"FineTuneJob object has no metadata.{err.args[0]}; builders need a stored object"
        ) from None


def owner_reference(job_obj: dict) -> dict:
    """The reference that makes Kubernetes garbage-collect a child with its job."""
    name, _, uid = job_identity(job_obj)
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "name": name,
        "uid": uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def child_metadata(job_obj: dict, name: str, component: str) -> dict:
    """Name, namespace, owned labels and owner reference of one child object."""
    job_name, namespace, uid = job_identity(job_obj)
    return {
        "name": name,
        "namespace": namespace,
        "labels": naming.owned_labels(job_name, uid, component),
        "ownerReferences": [owner_reference(job_obj)],
    }
