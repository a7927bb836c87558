"""`finetune submit`: validate locally, then create or update on the cluster."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.cli.helpers import JOB_YAML
from tests.support.kube_fixtures import start_kube


def write(tmp_path, text, name="job.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_submit_creates_then_reports_unchanged_then_configured(cli, kube, tmp_path):
    path = write(tmp_path, JOB_YAML.format(name="job1"))
    code, out, _ = cli("submit", path)
    assert code == 0 and "finetunejobs.finetune.dev/job1 created (namespace default)" in out
    stored = kube.get("finetunejobs", "job1", "default")
    assert stored["spec"]["training"]["learningRate"] == 5e-5  # a number, as kubectl would send it
    assert stored["metadata"]["labels"] == {"team": "nlp"}

    code, out, _ = cli("submit", path)
    assert code == 0 and "job1 unchanged" in out
    assert kube.get("finetunejobs", "job1", "default")["metadata"]["generation"] == 1

    write(tmp_path, JOB_YAML.format(name="job1").replace("5e-5", "1e-4"))
    code, out, _ = cli("submit", path)
    assert code == 0 and "job1 configured" in out
    updated = kube.get("finetunejobs", "job1", "default")
    assert updated["spec"]["training"]["learningRate"] == 1e-4 and updated["metadata"]["generation"] == 2


def test_submit_many_documents_into_the_namespace_flag(cli, kube, tmp_path):
    kube.create_namespace("team-a")
    path = write(tmp_path, JOB_YAML.format(name="a") + "---\n" + JOB_YAML.format(name="b"))
    code, out, _ = cli("submit", path, "-n", "team-a")
    assert code == 0, out
    assert {j["metadata"]["name"] for j in kube.list("finetunejobs", "team-a")} == {"a", "b"}


def test_invalid_manifest_names_the_field_and_creates_nothing(cli, kube, tmp_path):
    bad = JOB_YAML.format(name="bad").replace("labels: [neg, pos]", "labels: [neg, pos]\n    bogus: 1")
    path = write(tmp_path, JOB_YAML.format(name="good") + "---\n" + bad)
    code, _, err = cli("submit", path)
    assert code == 1
    assert "spec.model.bogus" in err and "Traceback" not in err
    assert kube.list("finetunejobs", "default") == []


def test_namespace_conflict_between_file_and_flag_sends_nothing(cli, kube, tmp_path):
    kube.create_namespace("other")
    text = JOB_YAML.format(name="j").replace("  name: j\n", "  name: j\n  namespace: default\n")
    code, _, err = cli("submit", write(tmp_path, JOB_YAML.format(name="first") + "---\n" + text), "-n", "other")
    assert code == 1 and "job.yaml[1]: metadata.namespace is 'default' but --namespace is 'other'" in err
    assert kube.list("finetunejobs") == []


def test_missing_namespace_and_forbidden_are_clear(cli, kube, tmp_path):
    path = write(tmp_path, JOB_YAML.format(name="j"))
    code, _, err = cli("submit", path, "-n", "nowhere")
    assert code == 1 and "namespace 'nowhere' not found" in err
    kube.fail_next("create", "finetunejobs", code=403, message='finetunejobs.finetune.dev is forbidden: User "x" '
                                                                "cannot create resource")
    code, _, err = cli("submit", path)
    assert code == 1 and err.startswith("error: not allowed to create FineTuneJob j") and "forbidden" in err


def test_cluster_without_the_crd(tmp_path, capsys):
    from finetune_operator.cli import main

    bare = start_kube(tmp_path, crds=False)
    try:
        code = main(["submit", "--kubeconfig", str(bare.kubeconfig_path), write(tmp_path, JOB_YAML.format(name="j"))])
        err = capsys.readouterr().err
        assert code == 1 and "does not serve finetunejobs.finetune.dev" in err and "install the CRD" in err
    finally:
        bare.stop()


def test_unreachable_server_and_bad_kubeconfig_print_no_traceback(tmp_path):
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        "clusters: [{name: c, cluster: {server: 'http://127.0.0.1:9'}}]\n"
        "users: [{name: c, user: {token: t}}]\n"
        "contexts: [{name: c, context: {cluster: c, user: c}}]\n")
    env = dict(os.environ, KUBECONFIG=str(kubeconfig))
    finetune = [sys.executable, "-c", "import sys; from finetune_operator.cli import main; sys.exit(main())"]
    result = subprocess.run([*finetune, "list"], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "cannot reach the Kubernetes API server at http://127.0.0.1:9" in result.stderr
    assert "Traceback" not in result.stderr

    result = subprocess.run([*finetune, "list", "--context", "nope"], env=env, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 1 and "--context 'nope' is not in" in result.stderr and "(contexts: c)" in result.stderr

    result = subprocess.run([*finetune, "list", "--kubeconfig", str(tmp_path / "missing")], env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and "no kubeconfig at" in result.stderr and "Traceback" not in result.stderr


def test_submit_reads_standard_input(cli, kube, monkeypatch):
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO(JOB_YAML.format(name="from-stdin")))
    code, out, _ = cli("submit", "-")
    assert code == 0 and "from-stdin created" in out
    assert kube.exists("finetunejobs", "from-stdin", "default")


def test_the_cli_starts_without_importing_the_kubernetes_client():
    probe = ("import sys; from finetune_operator.cli import build_parser; build_parser(); "
             "heavy = sorted(m for m in ('kubernetes', 'kopf', 'torch', 'ray', 'transformers') if m in sys.modules); "
             "print(heavy)")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_malformed_kubeconfig_is_a_clear_error(tmp_path, capsys):
    from finetune_operator.cli import main

    for text in ("not: [valid", "apiVersion: v1\nkind: Config\n", "- just\n- a list\n"):
        kubeconfig = tmp_path / "kubeconfig"
        kubeconfig.write_text(text)
        code = main(["list", "--kubeconfig", str(kubeconfig)])
        err = capsys.readouterr().err
        assert code == 1 and err.startswith(f"error: cannot use the kubeconfig {kubeconfig}: "), (text, err)


def test_a_server_side_rejection_is_shown_with_its_field(cli, kube, tmp_path):
    # The CRD and the CLI validate alike, so a server-only rejection is injected;
    # the real server words it like this Status.
    kube.fail_next("create", "finetunejobs", code=422,
                   message='FineTuneJob.finetune.dev "j" is invalid: spec.model: numLabels must equal the number of labels')
    code, _, err = cli("submit", write(tmp_path, JOB_YAML.format(name="j")))
    assert code == 1
    assert err.strip() == ('error: the cluster refused to create FineTuneJob j in namespace default: '
                           'FineTuneJob.finetune.dev "j" is invalid: spec.model: numLabels must equal the number '
                           'of labels')


def test_submit_over_a_job_being_deleted_is_refused(cli, kube, tmp_path):
    path = write(tmp_path, JOB_YAML.format(name="j"))
    assert cli("submit", path)[0] == 0
    kube.patch("finetunejobs", "j", {"metadata": {"finalizers": ["test/hold"]}}, namespace="default")
    kube.delete("finetunejobs", "j", namespace="default")
    code, _, err = cli("submit", path)
    assert code == 1 and "is being deleted; submit it again once it is gone" in err
