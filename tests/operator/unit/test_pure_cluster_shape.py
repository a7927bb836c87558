"""What a job costs and whether it can start on a real GPU cluster: deadlines, worker
deletion, one Ray Train worker per GPU, object store inside /dev/shm, a small submitter
image, a head without CPUs, disk requests and the model-download switch (issue 11)."""

from __future__ import annotations

import json

import pytest

from finetune_operator import builders
from finetune_operator.api import parse_quantity
from finetune_operator.settings import RayJobDefaults, Settings
from finetune_trainer.config import JobConfig
from tests.support.rayjob_schema import assert_valid_rayjob

SETTINGS = Settings()
GPU = {"worker": {"gpu": 1, "cpu": "8", "memory": "32Gi"}}


def _cluster(rayjob: dict) -> tuple[dict, dict]:
    cluster = rayjob["spec"]["rayClusterSpec"]
    return cluster["headGroupSpec"], cluster["workerGroupSpecs"][0]


def _env(group: dict) -> dict[str, str]:
    return {e["name"]: e["value"] for e in group["template"]["spec"]["containers"][0]["env"]}


# ------------------------------------------------------------------- deadlines


def test_gpu_jobs_get_default_deadlines(make_job):
    job_obj, spec = make_job(resources=GPU)
    body = builders.build_rayjob(job_obj, spec, SETTINGS)["spec"]
    assert body["activeDeadlineSeconds"] == SETTINGS.rayjob.gpu_active_deadline_seconds == 172800
    assert body["preRunningDeadlineSeconds"] == SETTINGS.rayjob.gpu_pre_running_deadline_seconds == 1800
    # A live GPU job carrying its default deadline is in line: no patch removes it.
    live = builders.build_rayjob(job_obj, spec, SETTINGS)
    live["status"] = {"jobDeploymentStatus": "Running"}
    assert builders.build_rayjob_patch(live, spec, SETTINGS) is None


def test_the_jobs_own_deadline_and_settings_win(make_job):
    job_obj, spec = make_job(resources=GPU, scheduling={"activeDeadlineSeconds": 600})
    settings = Settings(rayjob=RayJobDefaults(pre_running_deadline_seconds=120, gpu_active_deadline_seconds=None))
    body = builders.build_rayjob(job_obj, spec, settings)["spec"]
    assert body["activeDeadlineSeconds"] == 600
    assert body["preRunningDeadlineSeconds"] == 120
    job_obj, spec = make_job(resources=GPU)
    assert "activeDeadlineSeconds" not in builders.build_rayjob(job_obj, spec, settings)["spec"]


# --------------------------------------------------------------- deletion rules


@pytest.mark.parametrize("ttl", [0, 60, 86400])
def test_workers_are_deleted_when_the_job_ends_and_the_head_after_the_ttl(make_job, ttl):
    job_obj, spec = make_job(resources=GPU, scheduling={"ttlSecondsAfterFinished": ttl})
    body = builders.build_rayjob(job_obj, spec, SETTINGS)["spec"]
    rules = body["deletionStrategy"]["deletionRules"]
    by_condition: dict[str, dict[str, int]] = {}
    for rule in rules:
        condition = dict(rule["condition"])
        seconds = condition.pop("ttlSeconds")
        assert len(condition) == 1, "KubeRay wants exactly one of jobStatus and jobDeploymentStatus"
        by_condition.setdefault(json.dumps(condition), {})[rule["policy"]] = seconds
    assert set(by_condition) == {'{"jobStatus": "SUCCEEDED"}', '{"jobStatus": "FAILED"}',
                                 '{"jobDeploymentStatus": "Failed"}'}
    for policies in by_condition.values():
        # The GPUs are free at once; only the head waits for the TTL.
        assert policies.get("DeleteWorkers", policies["DeleteCluster"]) == 0
        assert policies["DeleteCluster"] == ttl
        assert "DeleteSelf" not in policies  # the FineTuneJob owns the RayJob
    # KubeRay refuses deletionRules beside shutdownAfterJobFinishes or a global TTL.
    assert not body.get("shutdownAfterJobFinishes") and not body.get("ttlSecondsAfterFinished")


def test_older_kuberay_gets_shutdown_after_job_finishes(make_job):
    settings = Settings(rayjob=RayJobDefaults(deletion_rules=False, ttl_seconds_after_finished=30))
    job_obj, spec = make_job(resources={"rayAcceleratorType": "H100", "worker": {"gpu": 8, "ephemeralStorage": "1Ti"}})
    rayjob = builders.build_rayjob(job_obj, spec, settings)
    assert_valid_rayjob(rayjob)
    body = rayjob["spec"]
    assert body["shutdownAfterJobFinishes"] is True and body["ttlSecondsAfterFinished"] == 30
    assert "deletionStrategy" not in body


def test_a_rayjob_made_with_shutdown_keeps_its_ttl_field_on_patch(make_job):
    job_obj, spec = make_job()
    live = builders.build_rayjob(job_obj, spec, Settings(rayjob=RayJobDefaults(deletion_rules=False)))
    live["status"] = {"jobDeploymentStatus": "Running"}
    _, changed = make_job(scheduling={"ttlSecondsAfterFinished": 7})
    assert builders.build_rayjob_patch(live, changed, SETTINGS) == {"spec": {"ttlSecondsAfterFinished": 7}}


# ------------------------------------------------------------ workers per GPU


@pytest.mark.parametrize(("pods", "gpus", "cpu", "workers", "cpus_each"), [
    (4, 2, "8", 8, 3.75),
    (2, 4, "16", 8, 3.875),
    (3, 1, "8", 3, 7.5),
    (2, 0, "4", 2, 3.5),
])
def test_one_ray_train_worker_per_gpu(make_job, pods, gpus, cpu, workers, cpus_each):
    job_obj, spec = make_job(resources={"workers": pods, "worker": {"gpu": gpus, "cpu": cpu, "memory": "64Gi"}})
    config = JobConfig.model_validate(json.loads(builders.build_configmap(job_obj, spec, SETTINGS)["data"]["job.json"]))
    assert config.scaling.num_workers == workers
    assert config.scaling.gpus_per_worker == (1.0 if gpus else 0.0)
    assert config.scaling.cpus_per_worker == pytest.approx(cpus_each)
    # What each pod holds fits the workers Ray packs onto it.
    per_pod = max(gpus, 1)
    assert per_pod * config.scaling.cpus_per_worker <= parse_quantity(cpu)
    from finetune_trainer.ray_train import _scaling_config

    scaling = _scaling_config(config)
    assert scaling.num_workers == workers
    assert scaling.use_gpu is bool(gpus)
    assert scaling.resources_per_worker.get("GPU", 0) == (1 if gpus else 0)


# ------------------------------------------------------------ memory and disk


@pytest.mark.parametrize("resources", [
    {}, GPU, {"sharedMemory": "8Gi", **GPU}, {"head": {"memory": "512Mi"}, "worker": {"memory": "1Gi"}},
])
def test_the_object_store_fits_in_dev_shm(make_job, resources):
    job_obj, spec = make_job(resources=resources)
    for group in _cluster(builders.build_rayjob(job_obj, spec, SETTINGS)):
        shm = next(v for v in group["template"]["spec"]["volumes"] if v["name"] == builders.SHM_VOLUME)
        store = int(group["rayStartParams"]["object-store-memory"])
        assert 75 * 2**20 <= store < parse_quantity(shm["emptyDir"]["sizeLimit"])


def test_pods_request_disk_for_checkpoints(make_job):
    job_obj, spec = make_job(resources={"worker": {"ephemeralStorage": "200Gi"}})
    head, worker = _cluster(builders.build_rayjob(job_obj, spec, SETTINGS))
    requests = {name: g["template"]["spec"]["containers"][0]["resources"]["requests"]
                for name, g in (("head", head), ("worker", worker))}
    assert requests["worker"]["ephemeral-storage"] == "200Gi"
    assert requests["head"]["ephemeral-storage"] == SETTINGS.rayjob.head_ephemeral_storage
    settings = Settings(rayjob=RayJobDefaults(worker_ephemeral_storage=None, head_ephemeral_storage=None))
    job_obj, spec = make_job()
    for group in _cluster(builders.build_rayjob(job_obj, spec, settings)):
        assert "ephemeral-storage" not in group["template"]["spec"]["containers"][0]["resources"]["requests"]


# ------------------------------------------------------------- head, submitter


def test_the_head_offers_no_cpus_to_tasks(make_job):
    job_obj, spec = make_job(resources=GPU)
    head, worker = _cluster(builders.build_rayjob(job_obj, spec, SETTINGS))
    assert head["rayStartParams"]["num-cpus"] == "0"
    assert "num-cpus" not in worker["rayStartParams"]


def test_the_submitter_pulls_a_small_ray_image(make_job):
    job_obj, spec = make_job(resources={"image": "registry.local/trainer:cuda-12.8", **GPU})
    submitter = builders.build_rayjob(job_obj, spec, SETTINGS)["spec"]["submitterPodTemplate"]
    assert submitter["spec"]["containers"][0]["image"] == "rayproject/ray:2.60.0-py311-cpu"
    settings = Settings(rayjob=RayJobDefaults(submitter_image="registry.local/ray-cli:2.60.0"))
    submitter = builders.build_rayjob(job_obj, spec, settings)["spec"]["submitterPodTemplate"]
    assert submitter["spec"]["containers"][0]["image"] == "registry.local/ray-cli:2.60.0"


# ------------------------------------------------------------- model downloads


def test_the_download_switch_reaches_the_driver_only(make_job):
    job_obj, spec = make_job()
    head, worker = _cluster(builders.build_rayjob(job_obj, spec, SETTINGS))
    assert "FINETUNE_ALLOW_DOWNLOADS" not in _env(head)
    settings = Settings(rayjob=RayJobDefaults(allow_model_downloads=True))
    head, worker = _cluster(builders.build_rayjob(job_obj, spec, settings))
    assert _env(head)["FINETUNE_ALLOW_DOWNLOADS"] == "1"
    # Workers load the copy the driver staged; they never reach the hub themselves.
    assert "FINETUNE_ALLOW_DOWNLOADS" not in _env(worker)


def test_a_jobs_own_download_switch_travels_in_its_config(make_job):
    job_obj, spec = make_job(model={"source": "org/some-model", "allowDownload": True})
    config = JobConfig.model_validate(json.loads(builders.build_configmap(job_obj, spec, SETTINGS)["data"]["job.json"]))
    assert config.config.model.allow_download is True


def test_the_gpu_example_frees_its_gpus_and_asks_ray_for_a_real_type():
    from pure_helpers import example_jobs

    from finetune_operator.accelerators import RAY_ACCELERATOR_TYPES
    from finetune_operator.api import FineTuneJob

    [(_, document)] = [(case, doc) for case, doc in example_jobs() if case.startswith("multi-worker-gpu#")]
    spec = FineTuneJob.model_validate(document).spec
    body = builders.build_rayjob(document, spec, SETTINGS)["spec"]
    rules = body["deletionStrategy"]["deletionRules"]
    assert {r["condition"]["ttlSeconds"] for r in rules if r["policy"] == "DeleteWorkers"} == {0}
    assert max(r["condition"]["ttlSeconds"] for r in rules) <= 600, "GPU pods must not idle for hours"
    worker = body["rayClusterSpec"]["workerGroupSpecs"][0]["template"]["spec"]
    assert worker["nodeSelector"]["cloud.google.com/gke-accelerator"] == "nvidia-tesla-a100"
    scaling = spec.job_config("x").scaling
    assert scaling.accelerator_type in RAY_ACCELERATOR_TYPES
    assert spec.model.allow_download, "its model is a hub id: the cluster must be allowed to fetch it"


@pytest.mark.parametrize("settings", [SETTINGS, Settings(rayjob=RayJobDefaults(deletion_rules=False)),
                                      Settings(rayjob=RayJobDefaults(ttl_seconds_after_finished=0))],
                         ids=["rules", "shutdown", "rules-ttl-0"])
def test_kuberays_cel_and_controller_rules_accept_the_rayjob(make_job, settings):
    """Beyond the schema: the CEL rules of KubeRay's CRD (evaluated for real), and the
    deletion checks KubeRay's controller makes before it runs a RayJob."""
    from tests.api.api_harness import api_server_problems
    from tests.support.rayjob_schema import rayjob_openapi_schema

    schema = rayjob_openapi_schema()
    job_obj, spec = make_job(resources={"workers": 2, "worker": {"gpu": 4}})
    body = builders.build_rayjob(job_obj, spec, settings)
    assert api_server_problems(body, schema) == []
    body = body["spec"]
    if not body.get("shutdownAfterJobFinishes"):
        assert not body.get("ttlSecondsAfterFinished"), "a TTL needs shutdownAfterJobFinishes"
    if "deletionStrategy" in body:
        assert not body.get("shutdownAfterJobFinishes"), "deletionRules exclude shutdownAfterJobFinishes"
        assert not body["rayClusterSpec"].get("enableInTreeAutoscaling"), "DeleteWorkers needs no autoscaler"
        order = ("DeleteWorkers", "DeleteCluster", "DeleteSelf")
        for condition in ("SUCCEEDED", "FAILED", "Failed"):
            ttls = [r["condition"]["ttlSeconds"] for p in order for r in body["deletionStrategy"]["deletionRules"]
                    if r["policy"] == p and condition in r["condition"].values()]
            assert ttls == sorted(ttls), "KubeRay wants TTLs non-decreasing from workers to cluster"
