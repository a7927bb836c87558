"""`finetune wait` and `finetune logs`."""

from __future__ import annotations

import time

from tests.cli.helpers import when_watched
from tests.support.jobs import fine_tune_job


def _pod(kube, name, rayjob, created_labels=None):
    labels = {"batch.kubernetes.io/job-name": rayjob, "job-name": rayjob, **(created_labels or {})}
    return kube.create({"apiVersion": "v1", "kind": "Pod",
                        "metadata": {"name": name, "namespace": "default", "labels": labels},
                        "spec": {"containers": [{"name": "ray-job-submitter", "image": "rayproject/ray"}]}})


def test_wait_returns_at_once_for_a_finished_job(cli, kube):
    kube.create(fine_tune_job())
    kube.patch_status("finetunejobs", "job1", {"phase": "Succeeded", "modelUri": "s3://b/model"}, namespace="default")
    code, out, _ = cli("wait", "job1")
    assert code == 0 and out.strip() == "FineTuneJob job1 Succeeded: s3://b/model"


def test_wait_follows_the_job_to_success(cli, kube):
    kube.create(fine_tune_job())

    def progress_then_succeed():
        kube.patch_status("finetunejobs", "job1", {"phase": "Running"}, namespace="default")
        kube.patch_status("finetunejobs", "job1", {"phase": "Succeeded", "modelUri": "s3://b/m"}, namespace="default")

    thread = when_watched(kube, progress_then_succeed)
    code, out, _ = cli("wait", "job1", "--timeout", "30")
    thread.join(5)
    assert code == 0 and "Succeeded: s3://b/m" in out


def test_wait_exits_1_when_the_job_fails(cli, kube):
    kube.create(fine_tune_job())
    thread = when_watched(kube, lambda: kube.patch_status(
        "finetunejobs", "job1", {"phase": "Failed", "message": "out of memory"}, namespace="default"))
    code, out, _ = cli("wait", "job1", "--timeout", "30")
    thread.join(5)
    assert code == 1 and out.strip() == "FineTuneJob job1 Failed: out of memory"


def test_wait_survives_dropped_watch_streams(cli, kube):
    kube.create(fine_tune_job())

    def drop_then_finish():
        kube.close_watches()
        kube.patch_status("finetunejobs", "job1", {"phase": "Succeeded"}, namespace="default")

    thread = when_watched(kube, drop_then_finish)
    code, out, _ = cli("wait", "job1", "--timeout", "30")
    thread.join(5)
    assert code == 0 and "Succeeded" in out


def test_wait_times_out_with_exit_2(cli, kube):
    kube.create(fine_tune_job())
    kube.patch_status("finetunejobs", "job1", {"phase": "Running"}, namespace="default")
    started = time.monotonic()
    code, _, err = cli("wait", "job1", "--timeout", "1.5")
    assert code == 2 and "timed out after 1.5 s waiting for FineTuneJob job1 (phase Running)" in err
    assert 1.4 < time.monotonic() - started < 15


def test_wait_reports_deletion_and_bad_timeout(cli, kube, capsys):
    kube.create(fine_tune_job())
    thread = when_watched(kube, lambda: kube.delete("finetunejobs", "job1", namespace="default"))
    code, _, err = cli("wait", "job1", "--timeout", "30")
    thread.join(5)
    assert code == 1 and "was deleted while waiting" in err
    try:
        cli("wait", "job1", "--timeout", "-3")
    except SystemExit as exit:
        assert exit.code == 2
    assert "--timeout must be positive" in capsys.readouterr().err


def test_logs_prints_the_newest_submitter_pod_log(cli, kube):
    kube.create(fine_tune_job())
    kube.patch_status("finetunejobs", "job1", {"phase": "Running", "rayJobName": "job1-r1"}, namespace="default")
    kube.set_clock(lambda: "2026-01-01T00:00:02Z")
    _pod(kube, "job1-r1-new", "job1-r1")
    kube.set_clock(lambda: "2026-01-01T00:00:01Z")
    _pod(kube, "job1-r1-old", "job1-r1")  # created later by name order, earlier by timestamp
    kube.set_pod_log("default", "job1-r1-old", "old attempt\n")
    _pod(kube, "other", "someone-else")
    kube.set_pod_log("default", "job1-r1-new", "line 1\nline 2\nfinetune-progress: {}\n")
    code, out, _ = cli("logs", "job1")
    assert code == 0 and out == "line 1\nline 2\nfinetune-progress: {}\n"
    code, out, _ = cli("logs", "job1", "--tail", "1")
    assert out == "finetune-progress: {}\n"


def test_logs_follow_prints_as_lines_arrive_until_the_pod_ends(kube, capsys):
    import threading

    from finetune_operator.cli import main

    kube.create(fine_tune_job())
    kube.patch_status("finetunejobs", "job1", {"phase": "Running", "rayJobName": "rj"}, namespace="default")
    _pod(kube, "rj-abc", "rj")
    kube.set_pod_log("default", "rj-abc", "first \u00e9t\u00e9\n")
    capsys.readouterr()
    codes = []
    thread = threading.Thread(target=lambda: codes.append(
        main(["logs", "job1", "-f", "--kubeconfig", str(kube.kubeconfig_path)])), daemon=True)
    thread.start()
    seen = ""
    deadline = time.monotonic() + 20
    while "first" not in seen:  # printed while the pod still runs
        assert time.monotonic() < deadline, seen
        seen += capsys.readouterr().out
        time.sleep(0.01)
    assert thread.is_alive()
    kube.set_pod_log("default", "rj-abc", "second\n", append=True)
    kube.patch_status("pods", "rj-abc", {"phase": "Succeeded"}, namespace="default")
    thread.join(10)
    assert not thread.is_alive() and codes == [0]
    assert seen + capsys.readouterr().out == "first \u00e9t\u00e9\nsecond\n"


def test_logs_before_the_job_started_or_after_cleanup(cli, kube):
    kube.create(fine_tune_job())
    code, _, err = cli("logs", "job1")
    assert code == 1 and "has no RayJob yet (phase Pending)" in err
    kube.patch_status("finetunejobs", "job1", {"phase": "Succeeded", "rayJobName": "rj"}, namespace="default")
    code, _, err = cli("logs", "job1")
    assert code == 1 and "RayJob rj of FineTuneJob job1 has no submitter pod" in err
    code, _, err = cli("logs", "nope")
    assert code == 1 and "'nope' not found" in err


def test_wait_recovers_when_the_jobs_version_is_older_than_the_watch_history(tmp_path, capsys):
    """A job unchanged while much else changed: its own resourceVersion is gone
    from the server's history (410), so `wait` must watch from a list's version."""
    from tests.cli.helpers import Cli
    from tests.support.kube_fixtures import start_kube

    kube = start_kube(tmp_path, history_size=3)
    try:
        kube.create(fine_tune_job())
        kube.patch_status("finetunejobs", "job1", {"phase": "Running"}, namespace="default")
        for index in range(10):
            kube.create({"apiVersion": "v1", "kind": "ConfigMap",
                         "metadata": {"name": f"noise-{index}", "namespace": "default"}})
        thread = when_watched(kube, lambda: kube.patch_status("finetunejobs", "job1", {"phase": "Succeeded"},
                                                              namespace="default"))
        started = time.monotonic()
        code, out, _ = Cli(kube, capsys)("wait", "job1", "--timeout", "30")
        thread.join(5)
        assert code == 0 and "Succeeded" in out
        assert time.monotonic() - started < 5
        assert kube.request_count("list", "finetunejobs") == 1  # no 410-and-retry loop
    finally:
        kube.stop()


def test_logs_into_a_closed_pipe_ends_quietly(kube):
    import os
    import subprocess
    import sys

    kube.create(fine_tune_job())
    kube.patch_status("finetunejobs", "job1", {"phase": "Running", "rayJobName": "rj"}, namespace="default")
    _pod(kube, "rj-abc", "rj")
    kube.set_pod_log("default", "rj-abc", "".join(f"line {i}\n" for i in range(200_000)))
    process = subprocess.Popen(
        [sys.executable, "-c", "import sys; from finetune_operator.cli import main; sys.exit(main())",
         "logs", "job1", "--kubeconfig", str(kube.kubeconfig_path)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=dict(os.environ))
    assert process.stdout.readline() == b"line 0\n"
    process.stdout.close()  # like `| head -1`
    stderr = process.stderr.read().decode()
    assert process.wait(timeout=60) == 0, stderr
    assert "Traceback" not in stderr and "BrokenPipe" not in stderr
