"""`finetune list` and `finetune status`."""

from __future__ import annotations

import json

from tests.support.jobs import fine_tune_job

RUNNING = {
    "phase": "Running", "rayJobName": "job1-r1", "attempt": 1, "startTime": "2026-01-01T00:00:00Z",
    "progress": {"step": 40, "totalSteps": 120, "epoch": 1.0, "percent": 33.3, "trialsCompleted": 0,
                 "trialsTotal": 1},
    "metrics": {"eval_loss": 0.41, "eval_accuracy": 0.8125},
    "bestMetrics": {"eval_loss": 0.39}, "bestMetric": "eval_loss=0.39",
    "conditions": [{"type": "Running", "status": "True", "reason": "RayJobRunning", "message": "training",
                    "lastTransitionTime": "2026-01-01T00:00:00Z"}],
}


def test_list_empty_namespace(cli):
    code, out, _ = cli("list")
    assert code == 0 and out.strip() == "No finetunejobs found in namespace default."


def test_list_shows_phase_progress_best_metric_and_age(cli, kube):
    kube.create(fine_tune_job("job1"))
    kube.patch_status("finetunejobs", "job1", RUNNING, namespace="default")
    kube.create(fine_tune_job("job2"))
    code, out, _ = cli("list")
    assert code == 0
    lines = [line.split() for line in out.splitlines() if line.strip()]
    assert lines[0] == ["NAME", "PHASE", "PROGRESS", "BEST", "METRIC", "AGE"]
    rows = {row[0]: row for row in lines[2:]}
    assert rows["job1"][1:6] == ["Running", "33%", "(step", "40/120)", "eval_loss=0.39"]
    assert rows["job1"][6].endswith(("s", "m"))
    assert rows["job2"][1:4] == ["Pending", "-", "-"]


def test_list_all_namespaces_and_selector(cli, kube):
    kube.create_namespace("team-b")
    kube.create(fine_tune_job("a", labels={"team": "nlp"}))
    kube.create(fine_tune_job("b", namespace="team-b", labels={"team": "vision"}))
    code, out, _ = cli("list", "-A")
    rows = [line.split()[:2] for line in out.splitlines()[2:] if line.strip()]
    assert code == 0 and out.splitlines()[0].split()[0] == "NAMESPACE"
    assert rows == [["default", "a"], ["team-b", "b"]]
    code, out, _ = cli("list", "-A", "-l", "team=vision")
    assert [line.split()[:2] for line in out.splitlines()[2:] if line.strip()] == [["team-b", "b"]]
    code, out, _ = cli("list", "-n", "team-b")
    assert "b" in out.split() and "a" not in out.split()


def test_status_shows_phase_conditions_metrics_and_model(cli, kube):
    kube.create(fine_tune_job("job1"))
    done = dict(RUNNING, phase="Succeeded", modelUri="s3://bucket/out/job1/model",
                completionTime="2026-01-01T01:00:00Z", observedGeneration=1)
    kube.patch_status("finetunejobs", "job1", done, namespace="default")
    code, out, _ = cli("status", "job1")
    assert code == 0
    fields = dict(line.split(":", 1) for line in out.splitlines() if ":" in line and not line.startswith(" "))
    assert fields["Phase"].strip() == "Succeeded"
    assert fields["Model"].strip() == "s3://bucket/out/job1/model"
    assert fields["RayJob"].strip() == "job1-r1 (attempt 1)"
    assert "eval_accuracy=0.8125" in fields["Metrics"] and "eval_loss=0.41" in fields["Metrics"]
    assert fields["Progress"].strip() == "33% (step 40/120)"
    assert "Conditions:" in out and "RayJobRunning" in out and "Note:" not in out


def test_status_notes_an_unobserved_spec_change(cli, kube):
    kube.create(fine_tune_job("job1"))
    kube.patch_status("finetunejobs", "job1", {"phase": "Running", "observedGeneration": 1}, namespace="default")
    kube.patch("finetunejobs", "job1", {"spec": {"outputPolicy": "Delete"}}, namespace="default")
    code, out, _ = cli("status", "job1")
    assert code == 0 and "has not yet seen the latest spec (generation 2, observed 1)" in out


def test_status_json_and_not_found(cli, kube):
    kube.create(fine_tune_job("job1"))
    code, out, _ = cli("status", "job1", "-o", "json")
    assert code == 0 and json.loads(out)["metadata"]["name"] == "job1"
    code, out, err = cli("status", "ghost")
    assert code == 1 and out == ""
    assert err.strip() == "error: FineTuneJob 'ghost' not found in namespace 'default'"


def test_server_errors_are_reported_with_their_code(cli, kube):
    kube.fail_next("list", "finetunejobs", code=500, message="etcd is down")
    code, _, err = cli("list")
    assert code == 1 and "HTTP 500" in err and "etcd is down" in err and "Traceback" not in err


def test_kubeconfig_from_the_environment_and_its_context_namespace(kube_env, capsys, tmp_path):
    from finetune_operator.cli import main

    kube_env.create_namespace("team-c")
    kube_env.create(fine_tune_job("in-c", namespace="team-c"))
    assert main(["list"]) == 0  # KUBECONFIG is set by kube_env; its context namespace is default
    assert "No finetunejobs found in namespace default." in capsys.readouterr().out
    kube_env.write_kubeconfig(tmp_path / "team-c.kubeconfig", namespace="team-c")
    assert main(["list", "--kubeconfig", str(tmp_path / "team-c.kubeconfig")]) == 0
    assert "in-c" in capsys.readouterr().out
