"""The generated CRD: a structural schema the API server accepts, committed without
drift, with the identity, printer columns and descriptions `kubectl` shows."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Iterator, Optional

import celpy
import kubernetes_validate
import pytest
import yaml
from pydantic import Field, ValidationError

from finetune_operator import api
from finetune_operator.cli import main
from finetune_operator.crd import CRD_PATHS, SchemaError, build_crd, model_schema, render_crd
from finetune_trainer.config import Rule, SchedulerSpec, Spec

REPO = Path(__file__).resolve().parents[2]
FORBIDDEN_KEYS = {"$ref", "$defs", "anyOf", "oneOf", "allOf", "not", "title", "definitions", "const"}


def schema() -> dict[str, Any]:
    return build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def walk(node: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every schema node under `node`, with a readable path."""
    yield path, node
    for name, child in node.get("properties", {}).items():
        yield from walk(child, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        yield from walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from walk(node["additionalProperties"], f"{path}{{}}")


# Nodes allowed to carry no type, and why: each holds values of any shape.
UNTYPED_NODES = {
    ".spec.tune.searchSpace{}.values[]": "candidate values may be numbers, strings or booleans",
}
# Typed nodes that keep unknown fields, and why.
OPEN_NODES = {
    ".status.bestTrial.hyperparameters": "sampled values keyed by spec path; any JSON value",
}


def test_schema_is_structural() -> None:
    nodes = list(walk(schema()))
    assert len(nodes) > 150
    untyped, open_nodes = {}, {}
    for path, node in nodes:
        assert not FORBIDDEN_KEYS & set(node), (path, FORBIDDEN_KEYS & set(node))
        if "type" not in node:
            untyped[path] = node
            assert node.get("x-kubernetes-preserve-unknown-fields") is True, path
        elif node.get("x-kubernetes-preserve-unknown-fields"):
            open_nodes[path] = node
        if "properties" in node:
            # Structural: an object lists its fields or its value schema, never both.
            assert "additionalProperties" not in node, path
            assert node["type"] == "object", path
        if "default" in node:
            assert isinstance(node["default"], (str, int, float, bool)), path
        assert isinstance(node.get("description", ""), str)
    assert set(untyped) == set(UNTYPED_NODES)
    assert set(open_nodes) == set(OPEN_NODES)


def test_every_field_has_a_description_for_kubectl_explain() -> None:
    fields = [(path, node) for path, node in walk(schema()) if path.count(".") >= 2 and path[-1] not in "]}"]
    assert len(fields) > 120
    missing = [path for path, node in fields if not node.get("description")]
    assert missing == []


def explain(path: str) -> str:
    """What `kubectl explain finetunejob.<path>` prints as the field's description."""
    node = schema()
    for name in path.split("."):
        node = node["properties"][name]
    return node["description"]


def test_explain_texts_are_useful() -> None:
    assert explain("spec.training.learningRate") == "Peak learning rate."
    assert "gradientAccumulationSteps" in explain("spec.training.batchSize")
    assert explain("spec.strategy.lora.r") == "Rank of the adapter matrices."
    assert "Kueue LocalQueue" in explain("spec.scheduling.queueName")
    # Docstrings are re-flowed to one line, not cut at their line breaks.
    assert "\n" not in explain("spec.model.source")
    assert explain("spec.model.source").endswith("holding a `save_pretrained` folder.")


# CEL validation rules are GA from Kubernetes 1.29; check the oldest such and the newest.
@pytest.mark.parametrize("version", ["1.29", kubernetes_validate.latest_version()])
def test_the_api_server_schema_of_crds_accepts_it(version: str) -> None:
    crd = yaml.safe_load(render_crd())
    # Raises ValidationError on any unknown or mistyped key; returns the version used.
    assert version.startswith(kubernetes_validate.validate(crd, version, strict=True))


def test_kubernetes_validate_rejects_a_broken_crd() -> None:
    """The check above can fail: a misspelt keyword is refused."""
    crd = build_crd()
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["maxProperty"] = 3
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(crd, "1.33", strict=True)


def test_identity_and_subresources() -> None:
    crd = build_crd()
    assert crd["metadata"]["name"] == "finetunejobs.finetune.dev"
    names = crd["spec"]["names"]
    assert (names["kind"], names["plural"], names["singular"]) == ("FineTuneJob", "finetunejobs", "finetunejob")
    assert names["shortNames"] == ["ftj"]
    assert set(names["categories"]) == {"ml", "finetune"}
    (version,) = crd["spec"]["versions"]
    assert (version["name"], version["served"], version["storage"]) == ("v1alpha1", True, True)
    assert version["subresources"] == {"status": {}}


def test_printer_columns_point_at_status_fields() -> None:
    (version,) = build_crd()["spec"]["versions"]
    columns = {c["name"]: c for c in version["additionalPrinterColumns"]}
    assert list(columns) == ["Phase", "Progress", "Best metric", "Model", "Age"]
    root = schema()
    for column in columns.values():
        node = root
        for part in column["jsonPath"].strip(".").split("."):
            node = node["properties"][part] if part != "creationTimestamp" else {"type": "string"}
        assert node["type"] in ("string", "number", "integer"), column
    assert columns["Age"]["type"] == "date"


def test_optional_fields_are_simply_not_required() -> None:
    spec = schema()["properties"]["spec"]
    assert spec["required"] == ["model", "data", "output"]
    data = spec["properties"]["data"]
    assert data["required"] == ["train"]
    assert data["properties"]["validation"] == {
        "description": data["properties"]["validation"]["description"],
        "type": "string",
    }
    # Null is accepted only where it means something other than leaving the field out.
    nullable = [path for path, node in walk(schema()) if node.get("nullable")]
    assert nullable == [".spec.training.maxGradNorm"]


def test_bounds_enums_defaults_and_cel_rules_are_kept() -> None:
    training = schema()["properties"]["spec"]["properties"]["training"]["properties"]
    assert training["learningRate"]["minimum"] == 0 and training["learningRate"]["exclusiveMinimum"] is True
    assert training["learningRate"]["maximum"] == 10
    assert training["learningRate"]["default"] == 5e-5
    assert training["precision"]["enum"] == ["fp32", "bf16", "fp16"]
    assert training["scheduler"]["x-kubernetes-validations"] == [
        {"rule": rule.cel, "message": rule.message} for rule in SchedulerSpec.RULES
    ]
    worker = schema()["properties"]["spec"]["properties"]["resources"]["properties"]["worker"]
    assert worker["properties"]["cpu"]["pattern"] == api.QUANTITY_PATTERN


def test_one_rule_is_both_the_crds_cel_and_the_offline_check_with_its_detail() -> None:
    class Window(Spec):
        low: int = 0
        high: int = 1

        RULES = (Rule("self.low < self.high", "low must be below high", lambda s: s.low < s.high,
                      lambda s: f"got {s.low} >= {s.high}"),)

    assert model_schema(Window)["x-kubernetes-validations"] == [
        {"rule": "self.low < self.high", "message": "low must be below high"}]
    assert Window(low=0, high=2).high == 2
    with pytest.raises(ValidationError, match=r"low must be below high \(got 3 >= 1\)"):
        Window(low=3)


def test_the_status_phase_enum_is_the_phase_constants() -> None:
    """One declaration: the CRD's phase enum and default come from api.Phase."""
    phase = schema()["properties"]["status"]["properties"]["phase"]
    assert phase["enum"] == ["Pending", "Queued", "Running", "Succeeded", "Failed", "Suspended"]
    assert phase["enum"] == list(api.PHASES) and phase["default"] == api.Phase.PENDING
    assert api.TERMINAL_PHASES == ("Succeeded", "Failed")


def test_every_cel_rule_compiles() -> None:
    rules = [v["rule"] for _, node in walk(schema()) for v in node.get("x-kubernetes-validations", [])]
    assert len(rules) >= 18
    environment = celpy.Environment()
    for rule in rules:
        environment.compile(rule)


def _bounded(node: dict[str, Any]) -> bool:
    if node.get("type") == "array":
        return "maxItems" in node
    if node.get("type") == "object" and "additionalProperties" in node:
        return "maxProperties" in node
    return True


def test_collections_under_or_inside_cel_rules_are_bounded() -> None:
    """The API server estimates each rule's worst-case cost from maxItems/maxProperties
    and rejects a CRD whose rules could be too expensive. Every list or map that holds
    a rule, or that a rule iterates with a macro, must be bounded."""
    nodes = dict(walk(schema()))
    with_rules = [path for path, node in nodes.items() if "x-kubernetes-validations" in node]
    for path in with_rules:
        for ancestor in (p for p in nodes if path.startswith(p) and p != path):
            assert _bounded(nodes[ancestor]), f"{ancestor} holds rules at {path} but is unbounded"
        for validation in nodes[path]["x-kubernetes-validations"]:
            for iterated in re.findall(r"self((?:\.\w+)+)\.(?:all|exists|exists_one|map|filter)\(", validation["rule"]):
                child = path + iterated
                assert child in nodes and _bounded(nodes[child]), f"{validation['rule']} iterates unbounded {child}"
            for scanned in re.findall(r"self((?:\.\w+)+)\.(?:matches|startsWith|endsWith|contains)\(",
                                      validation["rule"]):
                child = path + scanned
                assert "maxLength" in nodes[child], f"{validation['rule']} scans unbounded string {child}"


def test_a_union_type_is_refused_with_a_clear_error() -> None:
    class Ambiguous(Spec):
        size: Optional[int | str] = None

    with pytest.raises(SchemaError, match="Ambiguous.size: a union of several types"):
        model_schema(Ambiguous)


def test_a_constraint_without_a_crd_equivalent_is_refused() -> None:
    class Distinct(Spec):
        tags: list[str] = Field(default_factory=list, json_schema_extra={"uniqueItems": True})

    with pytest.raises(SchemaError, match="Distinct.tags: 'uniqueItems' has no structural-schema equivalent"):
        model_schema(Distinct)


@pytest.mark.parametrize("relative", CRD_PATHS, ids=str)
def test_committed_crd_matches_the_generator(relative: Path) -> None:
    committed = (REPO / relative).read_text()
    assert committed == render_crd(), f"{relative} is stale: run `finetune crd --write` (make crd)"


def test_crd_command_prints_the_crd(capsys) -> None:
    assert main(["crd"]) == 0
    assert capsys.readouterr().out == render_crd()


def test_crd_write_creates_both_files(tmp_path: Path, capsys) -> None:
    (tmp_path / "deploy").mkdir()
    (tmp_path / "charts").mkdir()
    assert main(["crd", "--write", "--root", str(tmp_path)]) == 0
    for relative in CRD_PATHS:
        assert (tmp_path / relative).read_text() == render_crd()
    assert capsys.readouterr().out.count("wrote ") == 2


def test_crd_write_outside_the_repository_is_a_clear_error(tmp_path: Path, capsys) -> None:
    assert main(["crd", "--write", "--root", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "is not the repository root" in err and "Traceback" not in err


def _field_type(nodes: dict[str, Any], path: str) -> Optional[str]:
    node = nodes.get(path)
    return node.get("type") if node else None


def test_cel_comparisons_use_literals_of_the_field_type() -> None:
    """cel-go, unlike celpy, type-checks rules when the CRD is created: comparing a
    `number` field (a double) with `0` has no overload, nor an `integer` with `0.0`."""
    nodes = dict(walk(schema()))
    checked = 0
    for path, node in nodes.items():
        for validation in node.get("x-kubernetes-validations", []):
            pattern = r"self((?:\.\w+)+)\s*(?:==|!=|<=|>=|<|>)\s*(-?\d+(?:\.\d+)?)(?![\w.])"
            for field, literal in re.findall(pattern, validation["rule"]):
                kind = _field_type(nodes, path + field)
                assert kind in ("integer", "number"), (validation["rule"], field)
                assert ("." in literal) == (kind == "number"), f"{validation['rule']}: {field} is {kind}, {literal}"
                checked += 1
    assert checked >= 8
