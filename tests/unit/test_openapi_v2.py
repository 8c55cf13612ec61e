"""The /openapi/v2 document: its v3 -> v2 rules, the gnostic protobuf encoding (read back with
a plain protobuf wire reader) and the Accept negotiation."""

from __future__ import annotations

import json

import pytest
import yaml

from svcnet.api import openapi, openapi_v2
from svcnet.api.openapi_v2 import JSON, PROTOBUF


def wire(buf: bytes) -> list[tuple[int, int | bytes]]:
    """(field number, varint or bytes) of one protobuf message, in order."""
    out, pos = [], 0
    while pos < len(buf):
        key, pos = varint(buf, pos)
        number, kind = key >> 3, key & 7
        if kind == 0:
            value, pos = varint(buf, pos)
        elif kind == 2:
            n, pos = varint(buf, pos)
            value, pos = buf[pos:pos + n], pos + n
            assert len(value) == n, "truncated"
        else:
            raise AssertionError(f"wire type {kind}")
        out.append((number, value))
    return out


def varint(buf: bytes, pos: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return result, pos


def field(msg: bytes, number: int) -> list:
    return [v for n, v in wire(msg) if n == number]


def named(msg: bytes, number: int) -> dict[str, bytes]:
    """A gnostic map (repeated {name=1, value=2}) as a dict of value bytes."""
    return {field(e, 1)[0].decode(): field(e, 2)[0] for e in field(msg, number)}


def test_a_small_document_encodes_to_known_bytes():
    doc = {"swagger": "2.0", "info": {"title": "K", "version": "v"},
           "definitions": {"A": {"type": "object", "required": [""],
                                 "x-kubernetes-map-type": "atomic"}}}
    ext = b"\x0a\x15x-kubernetes-map-type" + b"\x12\x0a" + b"\x12\x08\"atomic\""
    schema = (b"\x9a\x01\x00"                    # required=19: [""] (repeated keeps "")
              b"\xb2\x01\x08\x0a\x06object"       # type=22: TypeItem{value=1}
              + b"\xfa\x01\x23" + ext)           # vendor_extension=31: NamedAny{name, Any{yaml=2}}
    named_schema = b"\x0a\x01A" + b"\x12\x34" + schema
    assert openapi_v2.to_protobuf(doc) == (
        b"\x0a\x032.0"                          # swagger=1
        b"\x12\x06\x0a\x01K\x12\x01v"           # info=2 {title=1, version=2}
        + b"\x4a\x3b" + b"\x0a\x39" + named_schema)  # definitions=9 {NamedSchema=1}


def test_unknown_keys_are_refused():
    with pytest.raises(KeyError):
        openapi_v2.to_protobuf({"swagger": "2.0", "info": {"title": "K", "nope": 1}})


def test_v3_schemas_take_their_v2_form():
    spec = openapi_v2.schema(openapi.SCHEMAS["io.k8s.api.core.v1.ServiceSpec"])
    ports = spec["properties"]["ports"]
    assert ports["items"] == {"$ref": "#/definitions/io.k8s.api.core.v1.ServicePort"}
    assert ports["x-kubernetes-patch-merge-key"] == "port"
    port = openapi_v2.schema(openapi.SCHEMAS["io.k8s.api.core.v1.ServicePort"])["properties"]
    assert port["targetPort"] == {
        "$ref": "#/definitions/io.k8s.apimachinery.pkg.util.intstr.IntOrString",
        "description": port["targetPort"]["description"]}
    assert port["protocol"] == {"description": port["protocol"]["description"], "type": "string"}
    ios = openapi_v2.schema(openapi.SCHEMAS["io.k8s.apimachinery.pkg.util.intstr.IntOrString"])
    assert ios["type"] == "string" and ios["format"] == "int-or-string" and "oneOf" not in ios


def test_the_document_has_no_v3_leftovers_and_every_reference_resolves():
    doc = json.loads(openapi_v2.document_json())
    assert set(doc["definitions"]) == set(openapi.SCHEMAS)
    refs = []

    def walk(node, key=""):
        if isinstance(node, dict):
            for k, v in node.items():
                assert k not in ("allOf", "oneOf", "default", "requestBody", "content",
                                 "components", "nullable"), (key, k)
                if k == "$ref":
                    refs.append(v)
                walk(v, k)
        elif isinstance(node, list):
            for v in node:
                walk(v, key)

    walk(doc)
    assert refs and all(r.startswith("#/definitions/") and r[14:] in doc["definitions"]
                        for r in refs)


def test_the_protobuf_reads_back_as_the_json_document():
    doc = json.loads(openapi_v2.document_json())
    pb = openapi_v2.document_protobuf()
    assert field(pb, 1) == [b"2.0"]
    definitions = named(field(pb, 9)[0], 1)
    assert list(definitions) == list(doc["definitions"])
    svc = definitions["io.k8s.api.core.v1.Service"]
    exts = named(svc, 31)
    gvk = yaml.safe_load(field(exts["x-kubernetes-group-version-kind"], 2)[0].decode())
    assert gvk == [{"group": "", "kind": "Service", "version": "v1"}]
    props = named(field(svc, 25)[0], 1)
    assert list(props) == list(doc["definitions"]["io.k8s.api.core.v1.Service"]["properties"])
    assert field(props["spec"], 1) == [b"#/definitions/io.k8s.api.core.v1.ServiceSpec"]
    ports = named(field(definitions["io.k8s.api.core.v1.ServiceSpec"], 25)[0], 1)["ports"]
    assert field(field(ports, 22)[0], 1) == [b"array"]

    paths = named(field(pb, 8)[0], 2)
    assert list(paths) == list(doc["paths"])
    patch = field(paths["/api/v1/namespaces/{namespace}/services/{name}"], 8)[0]
    names = []
    for item in field(patch, 8):                          # ParametersItem
        parameter = field(item, 1)[0]                     # .parameter
        body = field(parameter, 1)                        # BodyParameter
        if body:
            names.append(field(body[0], 2)[0].decode())
        else:                                             # NonBodyParameter.query
            names.append(field(field(field(parameter, 2)[0], 3)[0], 4)[0].decode())
    assert names == ["body", "dryRun", "fieldManager", "fieldValidation", "force"]
    op_exts = named(patch, 13)
    assert yaml.safe_load(field(op_exts["x-kubernetes-group-version-kind"], 2)[0].decode()) == \
        {"group": "", "kind": "Service", "version": "v1"}


@pytest.mark.parametrize("accept,expected", [
    ("", JSON),
    ("*/*", JSON),
    ("application/json", JSON),
    ("application/com.github.proto-openapi.spec.v2@v1.0+protobuf", PROTOBUF),
    ("application/com.github.proto-openapi.spec.v2.v1.0+protobuf", PROTOBUF),
    ("application/json;q=0.5, application/com.github.proto-openapi.spec.v2.v1.0+protobuf",
     PROTOBUF),
    ("application/*;q=0.9, application/com.github.proto-openapi.spec.v2.v1.0+protobuf;q=0.8",
     JSON),
    ("text/html, application/json;q=0", None),
    ("text/plain", None),
])
def test_negotiation(accept, expected):
    offer = openapi_v2.negotiate(accept)
    assert (offer and offer[0]) == expected
