"""CRD schema validation, pruning, defaulting and CEL rules on custom resources."""

from __future__ import annotations

from tests.emulator.helpers import FTJ
from tests.support.jobs import fine_tune_job


def causes(response):
    assert response.status_code == 422, response.text
    return {(c["field"], c["message"]) for c in response.json()["details"]["causes"]}


def test_defaults_are_filled_and_unknown_fields_pruned(http):
    body = fine_tune_job()
    body["spec"]["model"]["notAField"] = 1
    body["spec"]["bogus"] = {"x": 1}
    stored = http.post(FTJ, body).json()
    assert "notAField" not in stored["spec"]["model"] and "bogus" not in stored["spec"]
    assert stored["spec"]["outputPolicy"] == "Retain"
    assert stored["spec"]["data"]["textColumn"] == "text"


def test_type_enum_and_required_errors_name_the_field(http):
    body = fine_tune_job()
    body["spec"]["outputPolicy"] = "Keep"
    body["spec"]["data"]["maxSeqLength"] = "long"
    del body["spec"]["output"]
    found = causes(http.post(FTJ, body))
    fields = {field for field, _ in found}
    assert {"spec.outputPolicy", "spec.data.maxSeqLength"} <= fields
    assert any("output" in message and field == "spec" for field, message in found)
    message = http.post(FTJ, body).json()["message"]
    assert message.startswith('FineTuneJob.finetune.dev "job1" is invalid: ')


def test_cel_rules_are_evaluated(http):
    body = fine_tune_job(model={"labels": ["neg", "pos"], "numLabels": 3})
    found = causes(http.post(FTJ, body))
    assert ("spec.model", "numLabels must equal the number of labels when both are given") in found


def test_updates_are_validated_too(http):
    http.post(FTJ, fine_tune_job())
    response = http.patch(f"{FTJ}/job1", {"spec": {"outputPolicy": "Nope"}})
    assert ("spec.outputPolicy" in {f for f, _ in causes(response)})
    assert http.get(f"{FTJ}/job1").json()["spec"]["outputPolicy"] == "Retain"


def test_rayjob_crd_validates_too(http):
    rayjob = {"apiVersion": "ray.io/v1", "kind": "RayJob", "metadata": {"name": "rj"},
              "spec": {"entrypoint": "python -m x", "shutdownAfterJobFinishes": "yes"}}
    response = http.post("/apis/ray.io/v1/namespaces/default/rayjobs", rayjob)
    assert "spec.shutdownAfterJobFinishes" in {f for f, _ in causes(response)}
    rayjob["spec"]["shutdownAfterJobFinishes"] = True
    assert http.post("/apis/ray.io/v1/namespaces/default/rayjobs", rayjob).status_code == 201


def test_every_cel_rule_of_our_crd_compiles(kube):
    kube.create(fine_tune_job(), namespace="default")
    assert kube.store.cel_skipped == []


def test_registering_a_crd_serves_it_and_deleting_it_stops(http, kube):
    crd = {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
           "metadata": {"name": "widgets.example.com"},
           "spec": {"group": "example.com", "scope": "Namespaced",
                    "names": {"kind": "Widget", "plural": "widgets"},
                    "versions": [{"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": {
                        "type": "object", "properties": {"spec": {"type": "object", "properties": {
                            "size": {"x-kubernetes-int-or-string": True},
                            "note": {"type": "string", "nullable": True}}}}}}}]}}
    created = http.post("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd).json()
    assert {c["type"] for c in created["status"]["conditions"]} == {"NamesAccepted", "Established"}
    widgets = "/apis/example.com/v1/namespaces/default/widgets"
    ok = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"},
          "spec": {"size": "10%", "note": None}}
    assert http.post(widgets, ok).status_code == 201
    bad = dict(ok, metadata={"name": "w2"}, spec={"size": [1]})
    assert "spec.size" in {f for f, _ in causes(http.post(widgets, bad))}
    http.delete("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.example.com")
    assert http.get(widgets).status_code == 404
    assert kube.store.objects.get(("example.com", "widgets")) is None


def test_crd_name_must_match_its_names(http):
    crd = {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
           "metadata": {"name": "wrong.example.com"},
           "spec": {"group": "example.com", "scope": "Namespaced", "names": {"kind": "Widget", "plural": "widgets"},
                    "versions": [{"name": "v1", "served": True, "storage": True}]}}
    response = http.post("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd)
    assert "metadata.name" in {f for f, _ in causes(response)}


def test_cel_types_numbers_by_schema_and_runs_transition_rules_on_update_only(http):
    crd = {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
           "metadata": {"name": "gadgets.example.com"},
           "spec": {"group": "example.com", "scope": "Namespaced", "names": {"kind": "Gadget", "plural": "gadgets"},
                    "versions": [{"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": {
                        "type": "object", "properties": {"spec": {
                            "type": "object",
                            "properties": {"rate": {"type": "number"}, "owner": {"type": "string"}},
                            "x-kubernetes-validations": [
                                {"rule": "self.rate >= 0.0", "message": "rate must not be negative",
                                 "fieldPath": ".rate"},
                                {"rule": "self.owner == oldSelf.owner", "message": "owner is immutable"},
                            ]}}}}}]}}
    assert http.post("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd).status_code == 201
    gadgets = "/apis/example.com/v1/namespaces/default/gadgets"
    body = {"apiVersion": "example.com/v1", "kind": "Gadget", "metadata": {"name": "g"},
            "spec": {"rate": 0, "owner": "ann"}}  # an integer in a number field
    assert http.post(gadgets, body).status_code == 201
    assert ("spec.rate", "rate must not be negative") in causes(
        http.patch(f"{gadgets}/g", {"spec": {"rate": -1}}))
    assert ("spec", "owner is immutable") in causes(http.patch(f"{gadgets}/g", {"spec": {"owner": "bob"}}))
    assert http.patch(f"{gadgets}/g", {"spec": {"rate": 2}}).status_code == 200


def test_updating_a_crd_changes_the_schema_it_enforces(http):
    crds = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
    crd = {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
           "metadata": {"name": "things.example.com"},
           "spec": {"group": "example.com", "scope": "Namespaced", "names": {"kind": "Thing", "plural": "things"},
                    "versions": [{"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": {
                        "type": "object", "properties": {"spec": {"type": "object", "properties": {
                            "size": {"type": "integer"}}}}}}}]}}
    http.post(crds, crd)
    things = "/apis/example.com/v1/namespaces/default/things"
    thing = {"apiVersion": "example.com/v1", "kind": "Thing", "metadata": {"name": "t1"}, "spec": {"size": 50}}
    assert http.post(things, thing).status_code == 201
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    schema["properties"]["spec"]["properties"]["size"]["maximum"] = 10
    assert http.put(f"{crds}/things.example.com", crd).status_code == 200
    thing["metadata"]["name"] = "t2"
    assert "spec.size" in {f for f, _ in causes(http.post(things, thing))}


def test_openapi_exclusive_bounds_are_booleans(http):
    body = fine_tune_job(training={"learningRate": 0})  # exclusiveMinimum: true, minimum: 0
    assert "spec.training.learningRate" in {f for f, _ in causes(http.post(FTJ, body))}
    body = fine_tune_job(training={"learningRate": 1e-5})
    assert http.post(FTJ, body).status_code == 201
