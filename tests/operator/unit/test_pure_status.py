"""Status: the RayJob state table row by row, condition transition times, deadlines,
missing RayJobs, Kueue holds, progress and the terminal rule."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
import yaml

from pure_helpers import REPO
from tests.support.rayjob_schema import strict_schema
from finetune_operator import status as st
from finetune_operator.admission import ADMITTED, AdmissionDecision
from finetune_operator.api import FineTuneJobStatus
from finetune_trainer.progress import ProgressReport, TrialSummary

NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=timezone.utc)
LATER = NOW + timedelta(minutes=5)
QUEUED = AdmissionDecision("queued", "Queued", "waiting for a slot: position 2", 2)


def rayjob(deployment="", job_status="", reason=None, message=None, failed=None, succeeded=None,
           suspend=False, start="2026-03-01T11:59:00Z", end=None):
    body = {"jobDeploymentStatus": deployment, "jobStatus": job_status}
    for key, value in (("reason", reason), ("message", message), ("failed", failed),
                       ("succeeded", succeeded), ("startTime", start), ("endTime", end)):
        if value is not None:
            body[key] = value
    return {"apiVersion": "ray.io/v1", "kind": "RayJob", "metadata": {"name": "reviews"},
            "spec": {"suspend": suspend}, "status": body}


def conditions_of(status):
    return {c["type"]: c for c in status["conditions"]}


def assert_valid(status):
    """Every status we write parses as the API's status model."""
    FineTuneJobStatus.model_validate(status)


# ------------------------------------------------------------------- the state table

TABLE = [
    # (jobDeploymentStatus, jobStatus, KubeRay reason) -> (phase, reason, retrying)
    ("", "", None, "Pending", "RayJobCreated", False),
    ("Initializing", "", None, "Pending", "Initializing", False),
    ("Waiting", "", None, "Pending", "WaitingForSubmission", False),
    ("Scheduling", "", None, "Pending", "Scheduling", False),
    ("Scheduled", "", None, "Pending", "Scheduled", False),
    ("Running", "PENDING", None, "Running", "Running", False),
    ("Running", "RUNNING", None, "Running", "Running", False),
    ("Retrying", "FAILED", None, "Running", "Retrying", True),
    ("Suspending", "STOPPED", None, "Suspended", "Suspending", False),
    ("Suspended", "", None, "Suspended", "Suspended", False),
    ("Complete", "SUCCEEDED", None, "Succeeded", "Succeeded", False),
    ("Complete", "FAILED", None, "Failed", "AppFailed", False),
    ("Complete", "STOPPED", None, "Failed", "Stopped", False),
    ("Complete", "", None, "Failed", "CompletedWithoutSuccess", False),
    ("Failed", "FAILED", "AppFailed", "Failed", "AppFailed", False),
    ("Failed", "RUNNING", "DeadlineExceeded", "Failed", "DeadlineExceeded", False),
    ("Failed", "", "SubmissionFailed", "Failed", "SubmissionFailed", False),
    ("Failed", "", "JobDeploymentStatusTransitionGracePeriodExceeded", "Failed",
     "JobDeploymentStatusTransitionGracePeriodExceeded", False),
    ("Failed", "", None, "Failed", "RayJobFailed", False),
    ("ValidationFailed", "", "ValidationFailed", "Failed", "ValidationFailed", False),
    ("ValidationFailed", "", None, "Failed", "ValidationFailed", False),
    ("SomethingNew", "", None, "Pending", "UnknownRayJobState", False),
]


@pytest.mark.parametrize(("deployment", "job_status", "reason", "phase", "our_reason", "retrying"), TABLE)
def test_state_table(deployment, job_status, reason, phase, our_reason, retrying):
    assert st.map_rayjob_state(deployment, job_status, reason) == st.RayJobOutcome(phase, our_reason, retrying)


def test_table_covers_every_kuberay_deployment_status():
    """Every deployment status KubeRay v1.7 can write has a row (statuses read from
    the CRD's printer columns are free text, so the list is KubeRay's Go enum)."""
    kuberay = {"", "Initializing", "Running", "Complete", "Failed", "ValidationFailed", "Suspending",
               "Suspended", "Retrying", "Waiting", "Scheduling", "Scheduled"}
    assert kuberay <= set(st.RAYJOB_STATES) | {"Complete"}
    assert {row[0] for row in TABLE} >= kuberay


@pytest.mark.parametrize(("deployment", "job_status", "reason", "phase", "our_reason", "retrying"),
                         [row for row in TABLE if row[3] != "Pending" or row[4] != "UnknownRayJobState"])
def test_compute_status_follows_the_table(make_job, deployment, job_status, reason, phase, our_reason, retrying):
    job_obj, spec = make_job()
    status = st.compute_status(job_obj, spec, rayjob(deployment, job_status, reason, failed=1 if retrying else None),
                               None, ADMITTED, NOW)
    assert_valid(status)
    assert status["phase"] == phase
    conditions = conditions_of(status)
    assert conditions["Accepted"]["status"] == "True"
    assert status["rayJobName"] == "reviews"
    assert status["observedGeneration"] == 1
    if phase != "Pending":
        assert conditions[phase]["status"] == "True"
        assert conditions[phase]["reason"] == our_reason
    assert ("Retrying" in conditions and conditions["Retrying"]["status"] == "True") is retrying
    true_conditions = {t for t, c in conditions.items() if c["status"] == "True"} - {"Accepted", "Retrying"}
    assert true_conditions == ({phase} if phase != "Pending" else set())
    assert ("completionTime" in status) is (phase in ("Succeeded", "Failed"))


# -------------------------------------------------------------------------- conditions


def test_transition_time_moves_only_when_status_flips():
    first = st.set_condition([], "Running", "True", "Running", "started", NOW, 1)
    same = st.set_condition(first, "Running", "True", "Running", "50% done", LATER, 2)
    assert same[0]["lastTransitionTime"] == "2026-03-01T12:00:00Z"
    assert same[0]["message"] == "50% done" and same[0]["observedGeneration"] == 2
    flipped = st.set_condition(same, "Running", "False", "Succeeded", "", LATER, 2)
    assert flipped[0]["lastTransitionTime"] == "2026-03-01T12:05:00Z"
    assert first[0]["message"] == "started", "set_condition must not mutate its input"


def test_conditions_keep_a_fixed_order():
    conditions = []
    for type_ in ("Succeeded", "Accepted", "Running"):
        conditions = st.set_condition(conditions, type_, "True", type_, "", NOW)
    assert [c["type"] for c in conditions] == ["Accepted", "Running", "Succeeded"]


def test_a_job_through_its_life_keeps_transition_times(make_job):
    job_obj, spec = make_job()
    t0, t1, t2, t3 = (NOW + timedelta(minutes=m) for m in (0, 1, 2, 3))
    s0 = st.compute_status(job_obj, spec, None, None, QUEUED, t0)
    assert s0["phase"] == "Queued" and conditions_of(s0)["Queued"]["message"].endswith("position 2")
    job_obj["status"] = s0
    s1 = st.compute_status(job_obj, spec, rayjob("Initializing"), None, ADMITTED, t1)
    assert s1["phase"] == "Pending"
    assert conditions_of(s1)["Queued"]["status"] == "False"
    assert conditions_of(s1)["Queued"]["lastTransitionTime"] == st.format_time(t1)
    assert conditions_of(s1)["Accepted"]["lastTransitionTime"] == st.format_time(t0)
    job_obj["status"] = s1
    s2 = st.compute_status(job_obj, spec, rayjob("Running", "RUNNING"), None, ADMITTED, t2)
    job_obj["status"] = s2
    s3 = st.compute_status(job_obj, spec, rayjob("Running", "RUNNING"), None, ADMITTED, t3)
    assert conditions_of(s3)["Running"]["lastTransitionTime"] == st.format_time(t2)
    assert not st.status_changed(s2, s3)
    job_obj["status"] = s3
    s4 = st.compute_status(job_obj, spec, rayjob("Complete", "SUCCEEDED", end="2026-03-01T12:03:30Z"),
                           ProgressReport(state="succeeded", percent=100, modelUri="s3://models/reviews/team-a-reviews/model"),
                           ADMITTED, t3)
    assert s4["phase"] == "Succeeded"
    assert s4["completionTime"] == "2026-03-01T12:03:30Z"
    assert s4["modelUri"] == "s3://models/reviews/team-a-reviews/model"
    assert conditions_of(s4)["Running"]["status"] == "False"
    assert s4["startTime"] == s1["startTime"]
    assert_valid(s4)


# ------------------------------------------------------------ before and without a RayJob


def test_invalid_spec_fails_without_a_rayjob(make_job):
    job_obj, _ = make_job()
    status = st.compute_status(job_obj, "training.learningRate: must be > 0", None, None, ADMITTED, NOW)
    assert status["phase"] == "Failed"
    accepted = conditions_of(status)["Accepted"]
    assert (accepted["status"], accepted["reason"]) == ("False", "InvalidSpec")
    assert "training.learningRate" in status["message"]
    assert_valid(status)


def test_rejected_admission_fails_with_its_reason(make_job):
    job_obj, spec = make_job()
    decision = AdmissionDecision("rejected", "StorageNotAllowed", "output.uri: not under s3://team-a/")
    status = st.compute_status(job_obj, spec, None, None, decision, NOW)
    assert status["phase"] == "Failed"
    assert conditions_of(status)["Failed"]["reason"] == "StorageNotAllowed"
    assert conditions_of(status)["Accepted"]["status"] == "False"


@pytest.mark.parametrize(("admission", "suspend", "phase", "reason"), [
    (ADMITTED, False, "Pending", "Admitted"),
    (QUEUED, False, "Queued", "Queued"),
    (ADMITTED, True, "Suspended", "Suspended"),
])
def test_no_rayjob_yet(make_job, admission, suspend, phase, reason):
    job_obj, spec = make_job(scheduling={"suspend": suspend})
    status = st.compute_status(job_obj, spec, None, None, admission, NOW)
    assert status["phase"] == phase
    if phase != "Pending":
        assert conditions_of(status)[phase]["reason"] == reason
    assert "startTime" not in status and status.get("attempt") is None


@pytest.mark.parametrize("phase", ["Pending", "Running", "Suspended", "Queued"])
def test_a_rayjob_that_vanishes_fails_the_job(make_job, phase):
    job_obj, spec = make_job(status={"phase": phase, "rayJobName": "reviews",
                                     "startTime": "2026-03-01T11:00:00Z", "attempt": 1})
    status = st.compute_status(job_obj, spec, None, None, ADMITTED, NOW)
    assert status["phase"] == "Failed"
    assert conditions_of(status)["Failed"]["reason"] == "RayJobMissing"
    assert "re-create" in status["message"]


def test_name_recorded_before_creation_is_not_missing(make_job):
    """The RayJob name is written to status before the RayJob exists; until the
    RayJob was seen (startTime), its absence is just 'not created yet'."""
    job_obj, spec = make_job(status={"phase": "Pending", "rayJobName": "reviews"})
    status = st.compute_status(job_obj, spec, None, None, ADMITTED, NOW)
    assert status["phase"] == "Pending"


# -------------------------------------------------------------- deadlines, Kueue, attempts


def test_deadline_backstop(make_job):
    job_obj, spec = make_job(scheduling={"activeDeadlineSeconds": 600})
    job_obj["status"] = {"phase": "Pending", "startTime": "2026-03-01T11:40:00Z", "rayJobName": "reviews"}
    status = st.compute_status(job_obj, spec, rayjob("Initializing"), None, ADMITTED, NOW)
    assert status["phase"] == "Failed"
    assert conditions_of(status)["Failed"]["reason"] == "DeadlineExceeded"
    assert "600s" in status["message"]
    within = st.compute_status(job_obj, spec, rayjob("Initializing"), None, ADMITTED,
                               datetime(2026, 3, 1, 11, 49, tzinfo=timezone.utc))
    assert within["phase"] == "Pending"


def test_deadline_does_not_apply_while_suspended(make_job):
    job_obj, spec = make_job(scheduling={"activeDeadlineSeconds": 60, "suspend": True})
    job_obj["status"] = {"phase": "Suspended", "startTime": "2026-03-01T10:00:00Z", "rayJobName": "reviews"}
    status = st.compute_status(job_obj, spec, rayjob("Suspended", suspend=True), None, ADMITTED, NOW)
    assert status["phase"] == "Suspended"


def test_kueue_hold_shows_as_queued(make_job):
    job_obj, spec = make_job(scheduling={"queueName": "gpu-queue"})
    status = st.compute_status(job_obj, spec, rayjob("Suspended", suspend=True), None, ADMITTED, NOW)
    assert status["phase"] == "Queued"
    assert conditions_of(status)["Queued"]["reason"] == "WaitingForKueue"
    admitted = st.compute_status(job_obj, spec, rayjob("Running", "RUNNING", suspend=False), None, ADMITTED, NOW)
    assert admitted["phase"] == "Running"


@pytest.mark.parametrize(("deployment", "job_status", "failed", "succeeded", "attempt"), [
    ("Initializing", "", None, None, 1),
    ("Running", "RUNNING", 0, 0, 1),
    ("Retrying", "FAILED", 1, 0, 2),
    ("Running", "RUNNING", 2, 0, 3),
    ("Complete", "SUCCEEDED", 1, 1, 2),
    ("Failed", "FAILED", 3, 0, 3),
])
def test_attempt_number(make_job, deployment, job_status, failed, succeeded, attempt):
    job_obj, spec = make_job(scheduling={"backoffLimit": 2})
    status = st.compute_status(job_obj, spec, rayjob(deployment, job_status, failed=failed, succeeded=succeeded),
                               None, ADMITTED, NOW)
    assert status["attempt"] == attempt


def test_retrying_message_counts_attempts(make_job):
    job_obj, spec = make_job(scheduling={"backoffLimit": 2})
    status = st.compute_status(job_obj, spec, rayjob("Retrying", "FAILED", failed=1), None, ADMITTED, NOW)
    assert status["message"] == "attempt 2 of 3 starting on a new Ray cluster"


def test_unknown_state_keeps_the_running_phase(make_job):
    job_obj, spec = make_job(status={"phase": "Running", "rayJobName": "reviews", "startTime": "2026-03-01T11:59:00Z"})
    status = st.compute_status(job_obj, spec, rayjob("Teleporting"), None, ADMITTED, NOW)
    assert status["phase"] == "Running"
    assert "Teleporting" in status["message"]


# ----------------------------------------------------------------------------- progress


def test_progress_is_copied_and_kept(make_job):
    job_obj, spec = make_job(tune={"metric": "eval_accuracy", "mode": "max", "numTrials": 2,
                                   "searchSpace": {"training.learningRate": {"type": "loguniform",
                                                                              "min": 1e-5, "max": 1e-3}}})
    report = ProgressReport(step=40, totalSteps=120, epoch=1.0, percent=33.3, trialsCompleted=1, trialsTotal=2,
                            metrics={"eval_loss": 0.5}, bestMetrics={"eval_accuracy": 0.91234, "eval_loss": 0.4},
                            bestTrial=TrialSummary(id="t1", hyperparameters={"training.learningRate": 1e-4}),
                            modelUri="s3://not-yet", message="trial 2 of 2 training")
    status = st.compute_status(job_obj, spec, rayjob("Running", "RUNNING"), report, ADMITTED, NOW)
    assert status["progress"] == {"step": 40, "totalSteps": 120, "epoch": 1.0, "percent": 33.3,
                                  "trialsCompleted": 1, "trialsTotal": 2}
    assert status["metrics"] == {"eval_loss": 0.5}
    assert status["bestMetric"] == "eval_accuracy=0.9123"
    assert status["bestTrial"] == {"id": "t1", "hyperparameters": {"training.learningRate": 1e-4}}
    assert "modelUri" not in status, "the model URI is published only once the run succeeded"
    assert status["message"] == "trial 2 of 2 training"
    assert_valid(status)
    job_obj["status"] = status
    later = st.compute_status(job_obj, spec, rayjob("Running", "RUNNING"), None, ADMITTED, LATER)
    assert later["progress"] == status["progress"] and later["bestTrial"] == status["bestTrial"]


def test_terminal_status_is_final(make_job):
    job_obj, spec = make_job(status={"phase": "Succeeded", "rayJobName": "reviews", "startTime": "2026-03-01T10:00:00Z",
                                     "completionTime": "2026-03-01T11:00:00Z", "observedGeneration": 1,
                                     "conditions": [], "modelUri": "s3://m"})
    job_obj["metadata"]["generation"] = 2  # the user edited ttlSecondsAfterFinished
    status = st.compute_status(job_obj, spec, None, None, ADMITTED, NOW)
    assert status["phase"] == "Succeeded" and status["modelUri"] == "s3://m"
    assert status["observedGeneration"] == 2


# ------------------------------------------------------------------------ status_changed


@pytest.mark.parametrize(("old", "new", "changed"), [
    (None, {"phase": "Pending"}, True),
    ({"phase": "Running"}, {"phase": "Running", "modelUri": None}, False),
    ({"phase": "Running", "progress": {"step": 1}}, {"phase": "Running", "progress": {"step": 2}}, True),
    ({"phase": "Running", "conditions": [{"type": "Running", "message": "a"}]},
     {"phase": "Running", "conditions": [{"type": "Running", "message": "b"}]}, True),
])
def test_status_changed(old, new, changed):
    assert st.status_changed(old, new) is changed


def test_status_validates_against_the_generated_crd(make_job):
    """The status we write fits the CRD's structural status schema (no field the API
    server would prune)."""
    import jsonschema

    crd_path = REPO / "deploy" / "crds" / "finetune.dev_finetunejobs.yaml"
    if not crd_path.exists():
        pytest.skip("deploy/crds not generated in this checkout")
    crd = yaml.safe_load(crd_path.read_text())
    schema = strict_schema(crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"])
    job_obj, spec = make_job()
    report = ProgressReport(step=1, percent=10, bestMetrics={"eval_loss": 0.2},
                            bestTrial=TrialSummary(id="t", hyperparameters={"x": 1}))
    for rj in (rayjob("Running", "RUNNING"), rayjob("Retrying", failed=1), rayjob("Complete", "SUCCEEDED")):
        status = st.compute_status(job_obj, spec, rj, report, ADMITTED, NOW)
        errors = list(jsonschema.Draft4Validator(schema).iter_errors(status))
        assert not errors, [e.message for e in errors]


def test_compute_status_does_not_touch_its_inputs(make_job):
    import copy

    job_obj, spec = make_job(status={"phase": "Pending", "rayJobName": "reviews",
                                     "conditions": [{"type": "Accepted", "status": "True", "reason": "Accepted",
                                                     "message": "", "lastTransitionTime": "2026-03-01T10:00:00Z"}]})
    rj = rayjob("Running", "RUNNING")
    before = copy.deepcopy((job_obj, rj))
    st.compute_status(job_obj, spec, rj, ProgressReport(step=3), ADMITTED, NOW)
    assert (job_obj, rj) == before
