"""The OpenAPI v3 documents: what kubectl needs from them (see svcnet.api.openapi)."""

from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path

import pytest

from svcnet.api import openapi
from svcnet.api.resources import RESOURCES

ROOT = Path(__file__).resolve().parents[2]
GROUP_VERSIONS = ["api/v1", "apis/apps/v1", "apis/discovery.k8s.io/v1",
                  "apis/coordination.k8s.io/v1"]


def doc(path: str) -> dict:
    return json.loads(openapi.openapi_v3_document(path))


def operations(d: dict):
    for path, item in d["paths"].items():
        for method, op in item.items():
            if method != "parameters":
                yield path, method, op


def test_index_lists_every_group_version_with_its_content_hash():
    index = openapi.openapi_v3_index()
    assert sorted(index["paths"]) == sorted(GROUP_VERSIONS)
    for path, entry in index["paths"].items():
        body = openapi.openapi_v3_document(path)
        digest = hashlib.sha512(body).hexdigest().upper()
        assert entry == {"serverRelativeURL": f"/openapi/v3/{path}?hash={digest}"}
        assert openapi.openapi_v3_hash(path) == digest


def test_unknown_group_version_has_no_document():
    assert openapi.openapi_v3_document("apis/batch/v1") is None
    assert openapi.openapi_v3_hash("apis/batch/v1") is None


def test_document_is_openapi_3_served_as_json():
    d = doc("api/v1")
    assert d["openapi"] == "3.0.0"
    assert openapi.CONTENT_TYPE == "application/json"
    assert d["components"]["securitySchemes"]["BearerToken"]["in"] == "header"


@pytest.mark.parametrize("r", RESOURCES, ids=lambda r: r.kind)
def test_every_kind_has_a_patch_operation_with_field_validation(r):
    """kubectl's queryParamVerifierV3: the patch operation of the kind, with fieldValidation."""
    d = doc(openapi.gv_path(r.group, r.version))
    gvk = {"group": r.group, "version": r.version, "kind": r.kind}
    patches = [op for _, method, op in operations(d)
               if method == "patch" and op["x-kubernetes-group-version-kind"] == gvk]
    assert patches
    for op in patches:
        params = {(p["name"], p["in"]) for p in op["parameters"]}
        assert {("fieldValidation", "query"), ("dryRun", "query"), ("fieldManager", "query"),
                ("force", "query")} <= params


@pytest.mark.parametrize("path", GROUP_VERSIONS)
def test_every_operation_names_its_action_and_kind(path):
    for _, method, op in operations(doc(path)):
        assert op["x-kubernetes-action"] in (
            "get", "list", "post", "put", "patch", "delete", "deletecollection")
        assert set(op["x-kubernetes-group-version-kind"]) == {"group", "version", "kind"}
        if method in ("post", "put", "patch"):
            assert "fieldValidation" in {p["name"] for p in op["parameters"]}


@pytest.mark.parametrize("path", GROUP_VERSIONS)
def test_every_ref_resolves_within_the_document(path):
    d = doc(path)
    schemas = d["components"]["schemas"]
    refs = []

    def walk(node):
        if isinstance(node, dict):
            if "$ref" in node:
                refs.append(node["$ref"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(d)
    assert refs
    for ref in refs:
        assert ref.startswith("#/components/schemas/")
        assert ref.rsplit("/", 1)[1] in schemas


@pytest.mark.parametrize("r", RESOURCES, ids=lambda r: r.kind)
def test_kinds_and_list_kinds_carry_their_group_version_kind(r):
    """kubectl explain finds the schema of a kind by x-kubernetes-group-version-kind."""
    schemas = doc(openapi.gv_path(r.group, r.version))["components"]["schemas"]
    for kind in (r.kind, r.list_kind):
        gvk = {"group": r.group, "version": r.version, "kind": kind}
        assert [n for n, s in schemas.items()
                if gvk in s.get("x-kubernetes-group-version-kind", [])]


def test_definitions_use_kubernetes_names():
    schemas = doc("api/v1")["components"]["schemas"]
    for name in ("io.k8s.api.core.v1.Service", "io.k8s.api.core.v1.ServicePort",
                 "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
                 "io.k8s.apimachinery.pkg.util.intstr.IntOrString",
                 "io.k8s.apimachinery.pkg.api.resource.Quantity",
                 "io.k8s.apimachinery.pkg.apis.meta.v1.Time",
                 "io.k8s.apimachinery.pkg.apis.meta.v1.MicroTime",
                 "io.k8s.api.core.v1.Event"):
        assert name in schemas
    assert schemas["io.k8s.apimachinery.pkg.util.intstr.IntOrString"]["format"] == "int-or-string"
    assert schemas["io.k8s.apimachinery.pkg.apis.meta.v1.Time"] == {
        "description": schemas["io.k8s.apimachinery.pkg.apis.meta.v1.Time"]["description"],
        "format": "date-time", "type": "string"}
    apps = doc("apis/apps/v1")["components"]["schemas"]
    assert "io.k8s.api.apps.v1.DeploymentSpec" in apps
    assert "io.k8s.api.core.v1.PodTemplateSpec" in apps
    assert apps["io.k8s.api.autoscaling.v1.Scale"]["x-kubernetes-group-version-kind"] == [
        {"group": "autoscaling", "kind": "Scale", "version": "v1"}]


def test_service_schema_matches_kubernetes():
    schemas = doc("api/v1")["components"]["schemas"]
    service = schemas["io.k8s.api.core.v1.Service"]
    assert service["properties"]["spec"]["description"]
    assert service["properties"]["spec"]["allOf"] == [
        {"$ref": "#/components/schemas/io.k8s.api.core.v1.ServiceSpec"}]
    spec = schemas["io.k8s.api.core.v1.ServiceSpec"]
    assert spec["description"] == "ServiceSpec describes the attributes that a user creates on a service."
    assert spec["properties"]["ports"]["x-kubernetes-patch-merge-key"] == "port"
    assert spec["properties"]["ports"]["x-kubernetes-patch-strategy"] == "merge"
    assert spec["properties"]["ports"]["x-kubernetes-list-type"] == "map"
    assert spec["properties"]["ports"]["x-kubernetes-list-map-keys"] == ["port", "protocol"]
    assert spec["properties"]["selector"]["x-kubernetes-map-type"] == "atomic"
    port = schemas["io.k8s.api.core.v1.ServicePort"]
    assert port["required"] == ["port"]
    assert port["properties"]["port"] == {
        "default": 0, "description": "The port that will be exposed by this service.",
        "format": "int32", "type": "integer"}
    assert port["properties"]["protocol"]["default"] == "TCP"
    assert port["properties"]["targetPort"]["allOf"] == [
        {"$ref": "#/components/schemas/io.k8s.apimachinery.pkg.util.intstr.IntOrString"}]
    container = schemas["io.k8s.api.core.v1.Container"]
    assert "name" in container["required"]
    assert container["properties"]["ports"]["x-kubernetes-patch-merge-key"] == "containerPort"
    meta = schemas["io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"]
    assert meta["properties"]["generation"]["format"] == "int64"
    assert meta["properties"]["finalizers"]["x-kubernetes-list-type"] == "set"


def test_paths_follow_the_resource_table():
    d = doc("api/v1")
    pods = d["paths"]["/api/v1/namespaces/{namespace}/pods"]
    assert set(pods) == {"get", "post", "delete", "parameters"}
    assert pods["get"]["operationId"] == "listCoreV1NamespacedPod"
    assert pods["delete"]["operationId"] == "deleteCoreV1CollectionNamespacedPod"
    assert d["paths"]["/api/v1/pods"]["get"]["operationId"] == "listCoreV1PodForAllNamespaces"
    namespaces = d["paths"]["/api/v1/namespaces"]
    assert set(namespaces) == {"get", "post", "parameters"}  # no deletecollection
    status = d["paths"]["/api/v1/namespaces/{namespace}/services/{name}/status"]
    assert status["patch"]["operationId"] == "patchCoreV1NamespacedServiceStatus"
    log = d["paths"]["/api/v1/namespaces/{namespace}/pods/{name}/log"]["get"]
    assert log["responses"]["200"]["content"] == {"text/plain": {"schema": {"type": "string"}}}
    scale = doc("apis/apps/v1")["paths"][
        "/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale"]
    assert scale["put"]["description"] == "replace scale of the specified Deployment"
    assert scale["put"]["x-kubernetes-group-version-kind"] == {
        "group": "autoscaling", "kind": "Scale", "version": "v1"}


def test_committed_schemas_are_what_the_generator_writes():
    """Regenerate with scripts/gen_openapi.py after changing patchmeta or the resource table."""
    spec = importlib.util.spec_from_file_location("gen_openapi", ROOT / "scripts" / "gen_openapi.py")
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    assert gen.render(gen.generate()) == gen.OUT.read_text(encoding="utf-8")


def test_a_hash_source_salts_every_hash_consistently():
    body = openapi.openapi_v3_document("api/v1")
    digest = hashlib.sha512(b"build-7" + body).hexdigest().upper()
    assert openapi.openapi_v3_hash("api/v1", "build-7") == digest
    assert openapi.openapi_v3_index("build-7")["paths"]["api/v1"] == {
        "serverRelativeURL": f"/openapi/v3/api/v1?hash={digest}"}
