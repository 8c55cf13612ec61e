"""GET /openapi/v2 and what kubectl 1.32 does with it: `kubectl apply|create|replace -f` of a
`kind: List` with kubectl's default validation (client-side, against the v2 schemas: kubectl
skips its server-side fieldValidation check for Lists), the error it prints for an unknown field
inside an item, and `kubectl explain --output plaintext-openapiv2`."""

from __future__ import annotations

import re

import pytest

PROTO = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf"


def items_list(name: str, port: int = 80, extra: str = "") -> str:
    return f"""
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Service
  metadata:
    name: {name}
  spec:
    selector: {{app: {name}}}
    ports:
    - port: {port}
      targetPort: 8080{extra}
- apiVersion: apps/v1
  kind: Deployment
  metadata:
    name: {name}
  spec:
    replicas: 0
    selector:
      matchLabels: {{app: {name}}}
    template:
      metadata:
        labels: {{app: {name}}}
      spec:
        containers:
        - name: web
          image: registry.k8s.io/e2e-test-images/agnhost:2.53
          ports:
          - containerPort: 8080
"""


def test_apply_create_replace_of_a_list_with_default_validation(kubectl, namespace):
    ns = ("-n", namespace)
    out = kubectl(*ns, "apply", "-f", "-", input=items_list("a")).stdout
    assert out.split("\n")[:2] == ["service/a created", "deployment.apps/a created"]
    out = kubectl(*ns, "apply", "-f", "-", input=items_list("a", 81)).stdout
    assert out.split("\n")[:2] == ["service/a configured", "deployment.apps/a unchanged"]
    assert kubectl.json(*ns, "get", "svc", "a")["spec"]["ports"][0]["port"] == 81

    out = kubectl(*ns, "create", "-f", "-", input=items_list("b")).stdout
    assert out.split("\n")[:2] == ["service/b created", "deployment.apps/b created"]
    out = kubectl(*ns, "replace", "-f", "-", input=items_list("b", 82)).stdout
    assert out.split("\n")[:2] == ["service/b replaced", "deployment.apps/b replaced"]
    assert kubectl.json(*ns, "get", "svc", "b")["spec"]["ports"][0]["port"] == 82

    # What `kubectl get ... -o yaml` prints (a List with status, managedFields, timestamps)
    # goes back in unchanged.
    dump = kubectl(*ns, "get", "svc,deploy", "-o", "yaml").stdout
    assert dump.startswith("apiVersion: v1\nitems:\n") and "kind: List" in dump
    out = kubectl(*ns, "apply", "-f", "-", input=dump).stdout
    assert out.splitlines() == ["service/a configured", "service/b configured",
                                "deployment.apps/a configured", "deployment.apps/b configured"]
    out = kubectl(*ns, "replace", "-f", "-", input=dump, check=False)
    assert out.returncode == 1 and "the object has been modified" in out.stderr  # stale RVs


def test_unknown_field_in_a_list_item_is_reported_as_kubectl_reports_it(kubectl, namespace):
    p = kubectl("-n", namespace, "apply", "-f", "-", input=items_list("c", extra="\n      portz: 1"),
                check=False)
    assert p.returncode == 1
    assert p.stderr.strip() == (
        'error: error validating "STDIN": error validating data: '
        'ValidationError(Service.spec.ports[0]): unknown field "portz" in '
        'io.k8s.api.core.v1.ServicePort; if you choose to ignore these errors, turn validation '
        'off with --validate=false')
    assert kubectl("-n", namespace, "get", "svc,deploy", "-o", "name").stdout == ""
    # as the message says, --validate=false sends it anyway (the server drops the field)
    p = kubectl("-n", namespace, "apply", "--validate=false", "-f", "-",
                input=items_list("c", extra="\n      portz: 1"))
    assert "service/c created" in p.stdout
    # a single object is still validated by the server (fieldValidation=Strict)
    p = kubectl("-n", namespace, "create", "-f", "-", check=False, input=(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: d}\ndataz: {a: b}\n"))
    assert p.returncode == 1
    assert p.stderr.strip() == ('Error from server (BadRequest): error when creating "STDIN": '
                                'ConfigMap in version "v1" cannot be handled as a ConfigMap: '
                                'strict decoding error: unknown field "dataz"')


def test_explain_from_the_v2_document(kubectl):
    out = kubectl("explain", "services.spec.ports.port", "--output=plaintext-openapiv2").stdout
    assert "KIND:     Service" in out and "FIELD:    port <integer>" in out
    out = kubectl("explain", "deployments.spec", "--output=plaintext-openapiv2").stdout
    assert "RESOURCE: spec <Object>" in out and "replicas\t<integer>" in out


def test_openapi_v2_is_served_as_kube_apiserver_serves_it(server):
    status, headers, doc = server.request("GET", "/openapi/v2")
    assert status == 200 and headers["Content-Type"] == "application/json"
    assert doc["swagger"] == "2.0"
    etag = headers["Etag"]
    assert re.fullmatch(r'"[0-9A-F]{128}"', etag) and headers["Vary"] == "Accept"
    svc = doc["definitions"]["io.k8s.api.core.v1.Service"]
    assert svc["x-kubernetes-group-version-kind"] == [{"group": "", "kind": "Service",
                                                       "version": "v1"}]
    assert svc["properties"]["spec"]["$ref"] == "#/definitions/io.k8s.api.core.v1.ServiceSpec"
    port = doc["definitions"]["io.k8s.api.core.v1.ServicePort"]["properties"]
    assert port["targetPort"]["$ref"].endswith("intstr.IntOrString") and "default" not in port["protocol"]
    patch = doc["paths"]["/api/v1/namespaces/{namespace}/services/{name}"]["patch"]
    assert "fieldValidation" in [p.get("name") for p in patch["parameters"]]

    status, headers, raw = server.request("GET", "/openapi/v2", headers={"Accept": PROTO})
    assert status == 200
    assert headers["Content-Type"] == "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"
    assert headers["Etag"] == etag and isinstance(raw, bytes) and raw[:1] == b"\x0a"  # swagger=1

    status, _, _ = server.request("GET", "/openapi/v2", headers={"If-None-Match": etag})
    assert status == 304
    status, _, body = server.request("GET", "/openapi/v2", headers={"Accept": "text/html"})
    assert status == 406 and body["reason"] == "NotAcceptable"


@pytest.mark.parametrize("accept,expected", [
    ("application/json", "application/json"),
    ("*/*", "application/json"),
    (PROTO + ", application/json;q=0.9", "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"),
    ("application/json;q=0.5, application/com.github.proto-openapi.spec.v2.v1.0+protobuf",
     "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"),
])
def test_openapi_v2_content_negotiation(server, accept, expected):
    status, headers, body = server.request("GET", "/openapi/v2", headers={"Accept": accept})
    assert status == 200 and headers["Content-Type"] == expected
