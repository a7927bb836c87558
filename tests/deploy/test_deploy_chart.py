"""The Helm chart, rendered by the real Helm engine and validated object by object."""

from __future__ import annotations

import os
import subprocess
import tomllib
from typing import Any

import helm_python
import pytest
import yaml

from deploy_support import CHART, DEPLOY, ROOT, find, render, the, validate_object

# The value sets a release is likely to use, each rendered and validated in full.
VALUE_SETS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "two-namespaces": {"watch": {"namespaces": ["team-a", "team-b"]}},
    "ha-monitored": {
        "replicaCount": 3,
        "serviceMonitor": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}},
        "prometheusRule": {"enabled": True, "queuedForMinutes": 45},
    },
    "ha-namespaced-scheduled": {
        "replicaCount": 2,
        "watch": {"namespaces": ["ml"]},
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoSchedule"}],
        "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{
            "weight": 100,
            "podAffinityTerm": {"topologyKey": "kubernetes.io/hostname", "labelSelector": {
                "matchLabels": {"app.kubernetes.io/name": "finetune-operator"}}},
        }]}},
        "extraEnv": [{"name": "FINETUNE_CONCURRENCY_LIMIT", "value": "2"}],
        "settings": {"storage_prefixes": {"ml": "s3://models/ml/"}},
        "imagePullSecrets": [{"name": "ghcr"}],
    },
}


@pytest.fixture(scope="module", params=sorted(VALUE_SETS))
def rendered(request: pytest.FixtureRequest) -> tuple[str, list[dict[str, Any]]]:
    return request.param, render(VALUE_SETS[request.param])


def _deployment(objects: list[dict[str, Any]]) -> dict[str, Any]:
    return the(objects, "Deployment", "finetune-operator")


def _container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    (container,) = _deployment(objects)["spec"]["template"]["spec"]["containers"]
    return container


def test_versions_agree_with_the_package() -> None:
    """Chart and images are tagged with the Python package's version."""
    import finetune_operator

    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["appVersion"] == version == finetune_operator.__version__
    assert chart["version"] == version


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_helm_lint_finds_nothing(name: str) -> None:
    report = helm_python.lint(CHART, VALUE_SETS[name], strict=True, namespace="finetune-system")
    findings = [m for m in report["messages"] if m["severity"] >= 2]  # warnings and errors
    assert not report["errors"] and not findings, report


def test_every_object_is_valid_for_its_schema(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    _, objects = rendered
    assert objects
    for obj in objects:
        validate_object(obj, objects)


def test_crds_are_valid_and_the_chart_ships_the_generated_ones() -> None:
    chart_crds = sorted(p.name for p in (CHART / "crds").glob("*.yaml"))
    assert chart_crds and chart_crds == sorted(p.name for p in (DEPLOY / "crds").glob("*.yaml"))
    for name in chart_crds:
        crd = yaml.safe_load((CHART / "crds" / name).read_text())
        assert crd == yaml.safe_load((DEPLOY / "crds" / name).read_text())
        validate_object(crd, [])


def test_pod_is_locked_down(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    _, objects = rendered
    pod = _deployment(objects)["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    container = _container(objects)
    context = container["securityContext"]
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert context["seccompProfile"] == {"type": "RuntimeDefault"}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]
    assert container["resources"]["limits"]["memory"]


def test_only_the_operator_pod_mounts_an_api_token(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    _, objects = rendered
    assert the(objects, "ServiceAccount")["automountServiceAccountToken"] is False
    pod = _deployment(objects)["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is True
    assert pod["serviceAccountName"] == the(objects, "ServiceAccount")["metadata"]["name"]


def test_probes_and_metrics_ports_match_the_operator_flags(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    _, objects = rendered
    container = _container(objects)
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    command = " ".join(container.get("command", []) + container["args"])
    assert f"--metrics-port={ports['metrics']}" in command
    assert f"--health-port={ports['health']}" in command
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "health"}
    service = the(objects, "Service", "finetune-operator-metrics")
    assert service["spec"]["ports"][0]["targetPort"] == "metrics"
    pod_labels = _deployment(objects)["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()


def test_settings_file_is_one_the_operator_accepts(rendered: tuple[str, list[dict[str, Any]]], tmp_path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """The ConfigMap is read by the operator's own settings loader, as in the pod."""
    from finetune_operator.settings import load_settings

    name, objects = rendered
    config_map = the(objects, "ConfigMap", "finetune-operator-settings")
    path = tmp_path / "settings.yaml"
    path.write_text(config_map["data"]["settings.yaml"])
    for variable in [v for v in os.environ if v.startswith("FINETUNE_")]:
        monkeypatch.delenv(variable)
    settings = load_settings(str(path))
    values = VALUE_SETS[name]
    assert settings.namespaces == values.get("watch", {}).get("namespaces", [])
    assert settings.default_image == "ghcr.io/finetune-dev/finetune-trainer:0.1.0"
    assert (settings.metrics_port, settings.health_port) == (8080, 8081)
    assert settings.storage_prefixes == values.get("settings", {}).get("storage_prefixes", {})
    container = _container(objects)
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["FINETUNE_SETTINGS_FILE"] == "/etc/finetune/settings.yaml"
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    pod = _deployment(objects)["spec"]["template"]["spec"]
    (volume,) = [v for v in pod["volumes"] if v["name"] == mounts["/etc/finetune"]]
    assert volume["configMap"]["name"] == config_map["metadata"]["name"]


def test_a_settings_change_rolls_the_pods() -> None:
    before = _deployment(render())["spec"]["template"]["metadata"]["annotations"]["checksum/settings"]
    after = _deployment(render({"settings": {"concurrency_limit": 9}}))
    assert after["spec"]["template"]["metadata"]["annotations"]["checksum/settings"] != before


def test_cluster_wide_by_default_and_namespaces_when_listed() -> None:
    assert "--all-namespaces" in _container(render())["args"]
    args = _container(render({"watch": {"namespaces": ["team-a", "team-b"]}}))["args"]
    assert "--namespace=team-a" in args and "--namespace=team-b" in args
    assert "--all-namespaces" not in args


def test_single_replica_runs_standalone_without_peering_or_pdb() -> None:
    objects = render()
    assert "--standalone" in _container(objects)["args"]
    assert not find(objects, "PodDisruptionBudget")
    assert not find(objects, "CustomResourceDefinition")
    assert not find(objects, "ServiceMonitor") and not find(objects, "PrometheusRule")


@pytest.mark.parametrize("namespaces", [[], ["team-a", "team-b"]])
def test_replicas_peer_with_distinct_priorities(namespaces: list[str]) -> None:
    objects = render({"replicaCount": 3, "watch": {"namespaces": namespaces}})
    assert _deployment(objects)["spec"]["replicas"] == 3
    pdb = the(objects, "PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"].items() <= \
        _deployment(objects)["spec"]["template"]["metadata"]["labels"].items()
    assert {c["metadata"]["name"] for c in find(objects, "CustomResourceDefinition")} == {
        "clusterkopfpeerings.kopf.dev", "kopfpeerings.kopf.dev"}
    if namespaces:
        peerings = find(objects, "KopfPeering")
        assert sorted(p["metadata"]["namespace"] for p in peerings) == namespaces
        assert not find(objects, "ClusterKopfPeering")
    else:
        peerings = [the(objects, "ClusterKopfPeering")]
    assert {p["metadata"]["name"] for p in peerings} == {"finetune-operator"}
    for peering in peerings:  # created after the CRDs exist
        assert "post-install" in peering["metadata"]["annotations"]["helm.sh/hook"]

    # Run the container's real shell line, with `finetune` replaced by echo, for two
    # pod names: kopf freezes every replica that shares a priority.
    container = _container(objects)
    assert container["command"] == ["/bin/sh", "-c"]
    (line,) = container["args"]
    assert "--standalone" not in line and "--peering-name=finetune-operator" in line
    priorities = set()
    for pod in ("finetune-operator-5d8f9c7b4-x2x7q", "finetune-operator-5d8f9c7b4-kq9zt"):
        out = subprocess.run(["/bin/sh", "-c", line.replace("exec finetune ", "exec echo ", 1)],
                             env={"POD_NAME": pod, "PATH": "/usr/bin:/bin"}, capture_output=True,
                             text=True, check=True).stdout
        (priority,) = [a.split("=", 1)[1] for a in out.split() if a.startswith("--priority=")]
        priorities.add(int(priority))
    assert len(priorities) == 2


def test_monitoring_objects_point_at_the_metrics_service() -> None:
    objects = render(VALUE_SETS["ha-monitored"])
    service = the(objects, "Service", "finetune-operator-metrics")
    monitor = the(objects, "ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["namespaceSelector"]["matchNames"] == [service["metadata"]["namespace"]]
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] == service["spec"]["ports"][0]["name"]
    rule = the(objects, "PrometheusRule")
    (queued,) = [r for g in rule["spec"]["groups"] for r in g["rules"] if r["alert"] == "FineTuneJobsQueuedTooLong"]
    assert queued["for"] == "45m"


def test_scheduling_values_reach_the_pod() -> None:
    values = VALUE_SETS["ha-namespaced-scheduled"]
    objects = render(values)
    pod = _deployment(objects)["spec"]["template"]["spec"]
    for key in ("nodeSelector", "tolerations", "affinity", "imagePullSecrets"):
        assert pod[key] == values[key]
    env = {e["name"]: e.get("value") for e in _container(objects)["env"]}
    assert env["FINETUNE_CONCURRENCY_LIMIT"] == "2"


def test_images_default_to_the_app_version_and_can_be_overridden() -> None:
    assert _container(render())["image"] == "ghcr.io/finetune-dev/finetune-operator:0.1.0"
    objects = render({"image": {"repository": "registry.local/op", "tag": "dev"},
                      "trainer": {"image": {"repository": "registry.local/trainer", "tag": "cu128"}}})
    assert _container(objects)["image"] == "registry.local/op:dev"
    settings = yaml.safe_load(the(objects, "ConfigMap")["data"]["settings.yaml"])
    assert settings["default_image"] == "registry.local/trainer:cu128"


@pytest.mark.parametrize(("values", "message"), [
    ({"replicaCount": "two"}, "at '/replicaCount': got string, want integer"),
    ({"replicaCount": 0}, "at '/replicaCount': minimum: got 0, want 1"),
    ({"watch": {"namespaces": "team-a"}}, "at '/watch/namespaces': got string, want array"),
    ({"watch": {"namespaces": ["Team_A"]}}, "at '/watch/namespaces/0'"),
    ({"metrics": {"port": 70000}}, "at '/metrics/port': maximum: got 70,000, want 65,535"),
    ({"serviceMonitor": {"enabled": "yes"}}, "at '/serviceMonitor/enabled': got string, want boolean"),
    ({"replicas": 2}, "additional properties 'replicas' not allowed"),
])
def test_bad_values_fail_the_schema_naming_the_key(values: dict[str, Any], message: str) -> None:
    with helm_python.Chart.load(CHART) as chart:
        with pytest.raises(helm_python.HelmValuesError) as caught:
            chart.render(values, name="finetune-operator", namespace="finetune-system")
    assert message in str(caught.value)


def test_settings_the_chart_owns_are_refused_with_the_value_to_use() -> None:
    with helm_python.Chart.load(CHART) as chart:
        with pytest.raises(helm_python.HelmRenderError) as caught:
            chart.render({"settings": {"metrics_port": 9000}}, name="x", namespace="y")
    assert "settings.metrics_port: the chart sets this from metrics.port; set that value instead" in str(caught.value)


def test_replicas_without_peering_are_refused() -> None:
    with helm_python.Chart.load(CHART) as chart:
        with pytest.raises(helm_python.HelmRenderError) as caught:
            chart.render({"replicaCount": 2, "peering": {"enabled": False}}, name="x", namespace="y")
    assert "replicaCount > 1 needs peering.enabled: true" in str(caught.value)


def test_notes_tell_how_to_submit_a_first_job() -> None:
    with helm_python.Chart.load(CHART) as chart:
        notes = chart.render({"watch": {"namespaces": ["ml"]}}, name="finetune-operator",
                             namespace="finetune-system")["finetune-operator/templates/NOTES.txt"]
    assert "It serves FineTuneJobs in: ml." in notes
    assert "kubectl apply -f examples/" in notes and "kuberay-operator" in notes
