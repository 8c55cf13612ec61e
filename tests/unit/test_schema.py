"""Typed decoding and strict field validation: kube-apiserver's texts, reproduced."""

from __future__ import annotations

import copy
import json
import time

import pytest

from svcnet.api import schema
from svcnet.api.errors import APIError

SERVICE = {
    "apiVersion": "v1", "kind": "Service",
    "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"},
                 "annotations": {"note": "x"}},
    "spec": {"type": "NodePort", "selector": {"app": "web"}, "sessionAffinity": "None",
             "ipFamilies": ["IPv4"],
             "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP",
                        "nodePort": 30008},
                       {"name": "https", "port": 443, "targetPort": "https"}]},
    "status": {"loadBalancer": {}},
}

DEPLOYMENT = {
    "apiVersion": "apps/v1", "kind": "Deployment",
    "metadata": {"name": "web", "labels": {"app": "web"}},
    "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
             "strategy": {"type": "RollingUpdate",
                          "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 1}},
             "template": {"metadata": {"labels": {"app": "web"}},
                          "spec": {"containers": [{
                              "name": "web", "image": "nginx", "args": ["-g", "daemon off;"],
                              "ports": [{"containerPort": 80}],
                              "env": [{"name": "A", "value": "1"}],
                              "resources": {"limits": {"cpu": "500m", "memory": "128Mi"},
                                            "requests": {"cpu": 0.1}},
                              "readinessProbe": {"httpGet": {"path": "/", "port": "http"},
                                                 "periodSeconds": 5}}]}}},
}


def decode(kind: str, body, mode: str = schema.STRICT, **kw):
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    obj = kw.pop("obj", None)
    version = {"Deployment": "apps/v1", "Lease": "coordination.k8s.io/v1"}.get(kind, "v1")
    return schema.decode(kind, version, raw, json.loads(raw) if obj is None else obj, mode, **kw)


def error(kind: str, body, mode: str = schema.STRICT, **kw) -> APIError:
    with pytest.raises(APIError) as e:
        decode(kind, body, mode, **kw)
    return e.value


def with_(obj: dict, path: str, value) -> dict:
    """A copy of obj with the value at a dotted path (list indexes as numbers) replaced."""
    out = copy.deepcopy(obj)
    *parents, last = [int(p) if p.isdigit() else p for p in path.split(".")]
    node = out
    for p in parents:
        node = node[p]
    node[last] = value
    return out


# --- valid objects -------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", [schema.STRICT, schema.WARN, schema.IGNORE])
def test_valid_objects_decode_unchanged(mode):
    assert decode("Service", SERVICE, mode) == (SERVICE, [])
    assert decode("Deployment", DEPLOYMENT, mode) == (DEPLOYMENT, [])


def test_null_fields_are_dropped():
    """kubectl expose sends creationTimestamp: null; Go decodes it to the zero value."""
    body = with_(SERVICE, "metadata.creationTimestamp", None)
    out, _ = decode("Service", body)
    assert "creationTimestamp" not in out["metadata"]


def test_decode_is_cheap():
    """The server must sustain >= 1000 creates/s on 2 cores: decoding is a small part of it."""
    raw = json.dumps(SERVICE).encode()
    n = 300
    start = time.perf_counter()
    for _ in range(n):
        schema.decode("Service", "v1", raw, json.loads(raw), schema.STRICT)
    assert (time.perf_counter() - start) / n < 300e-6


# --- unknown and duplicate fields ----------------------------------------------------------------

def test_strict_rejects_unknown_fields_with_their_full_paths():
    body = with_(SERVICE, "spec.foo", 1)
    body = with_(body, "spec.ports.1.nmae", "x")
    body = with_(body, "metadata.bogus", {"deep": 1})
    e = error("Service", body)
    assert e.code == 400 and e.reason == "BadRequest"
    assert e.message == (
        'Service in version "v1" cannot be handled as a Service: strict decoding error: '
        'unknown field "metadata.bogus", unknown field "spec.ports[1].nmae", '
        'unknown field "spec.foo"')


def test_unknown_fields_deep_in_a_pod_template():
    body = with_(DEPLOYMENT, "spec.template.spec.initContainers",
                 [{"name": "i", "image": "busybox", "restartPolicy": "Always",
                   "volumeMounts": [{"name": "v", "mountPath": "/v", "hostPath": "/x"}]}])
    body = with_(body, "spec.template.metadata.containers", [])
    e = error("Deployment", body)
    assert e.message == (
        'Deployment in version "v1" cannot be handled as a Deployment: strict decoding error: '
        'unknown field "spec.template.metadata.containers", '
        'unknown field "spec.template.spec.initContainers[0].volumeMounts[0].hostPath"')


def test_field_names_are_case_sensitive():
    assert schema.check_fields("Service", {"Spec": {}, "metadata": {"Name": "x"}}) == [
        'unknown field "Spec"', 'unknown field "metadata.Name"']


def test_duplicate_fields_interleave_with_unknown_fields_in_document_order():
    raw = (b'{"apiVersion":"v1","kind":"Service","metadata":{"name":"x",'
           b'"labels":{"a":"1","a":"2"}},"spec":{"foo":1,"type":"ClusterIP","foo":2,'
           b'"type":"NodePort","ports":[{"port":80,"port":81}]}}')
    e = error("Service", raw)
    assert e.message == (
        'Service in version "v1" cannot be handled as a Service: strict decoding error: '
        'duplicate field "metadata.labels.a", unknown field "spec.foo", '
        'duplicate field "spec.type", duplicate field "spec.ports[0].port"')
    out, warnings = decode("Service", raw, schema.WARN)
    assert out["spec"] == {"type": "NodePort", "ports": [{"port": 81}]}  # the last one wins
    assert len(warnings) == 4


def test_find_duplicate_fields_checks_every_object():
    raw = b'{"spec":{"x":{"y":1,"y":2}},"items":[{"a":1},{"a":1,"a":2}],"spec":{}}'
    assert schema.find_duplicate_fields(raw) == [
        'duplicate field "spec.x.y"', 'duplicate field "items[1].a"', 'duplicate field "spec"']
    assert schema.find_duplicate_fields(b"not: json") == []


def test_strict_errors_are_deduplicated_and_capped_at_100():
    raw = (b'{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"x"},"foo":1,"foo":2,'
           + b",".join(b'"f%d":1' % i for i in range(150)) + b"}")
    _, warnings = decode("ConfigMap", raw, schema.WARN)
    assert warnings[0] == 'unknown field "foo"'
    assert len(warnings) == 100


def test_paths_are_quoted_the_go_way():
    assert schema.check_fields("ConfigMap", {"a\"b\n": 1, "é": 2}) == [
        'unknown field "a\\"b\\n"', 'unknown field "é"']


def test_warn_mode_answers_with_warnings_and_prunes():
    body = with_(with_(SERVICE, "spec.foo", 1), "spec.ports.0.nmae", "x")
    out, warnings = decode("Service", body, schema.WARN)
    assert warnings == ['unknown field "spec.ports[0].nmae"', 'unknown field "spec.foo"']
    assert out == SERVICE


def test_ignore_mode_prunes_silently():
    body = with_(with_(SERVICE, "spec.foo", 1), "metadata.labels", {"app": "web"})
    body = with_(body, "spec.ports.0.nmae", "x")
    out, warnings = decode("Service", body, schema.IGNORE)
    assert warnings == []
    assert out == SERVICE


def test_unknown_fields_are_never_stored_even_inside_known_maps_of_structs():
    body = with_(DEPLOYMENT, "spec.template.spec.containers.0.readinessProbe.httpGet.bogus", 1)
    out, _ = decode("Deployment", body, schema.IGNORE)
    assert out == DEPLOYMENT


def test_raw_extension_and_fields_v1_take_any_json():
    body = with_(SERVICE, "metadata.managedFields", [{
        "manager": "kubectl", "operation": "Update", "apiVersion": "v1",
        "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:ports": {".": {}}}}}])
    assert decode("Service", body) == (body, [])


# --- type errors ---------------------------------------------------------------------------------

TYPE_ERRORS = [
    ("spec.ports.0.port", "abc",
     "json: cannot unmarshal string into Go struct field ServicePort.spec.ports.port of type int32"),
    ("spec.ports.0.port", 1.5,
     "json: cannot unmarshal number 1.5 into Go struct field ServicePort.spec.ports.port of type int32"),
    ("spec.ports.0.port", 99999999999,
     "json: cannot unmarshal number 99999999999 into Go struct field ServicePort.spec.ports.port "
     "of type int32"),
    ("spec.ports.0.port", True,
     "json: cannot unmarshal bool into Go struct field ServicePort.spec.ports.port of type int32"),
    ("spec.ports.0.protocol", 6,
     "json: cannot unmarshal number into Go struct field ServicePort.spec.ports.protocol of type "
     "v1.Protocol"),
    ("spec.type", ["NodePort"],
     "json: cannot unmarshal array into Go struct field ServiceSpec.spec.type of type "
     "v1.ServiceType"),
    ("spec.ports", {"port": 80},
     "json: cannot unmarshal object into Go struct field ServiceSpec.spec.ports of type "
     "[]v1.ServicePort"),
    ("spec.ports.1", "https",
     "json: cannot unmarshal string into Go struct field ServiceSpec.spec.ports of type "
     "v1.ServicePort"),
    ("spec", "x",
     "json: cannot unmarshal string into Go struct field Service.spec of type v1.ServiceSpec"),
    ("metadata.labels.app", 5,
     "json: cannot unmarshal number into Go struct field ObjectMeta.metadata.labels of type string"),
    ("metadata.uid", 5,
     "json: cannot unmarshal number into Go struct field ObjectMeta.metadata.uid of type types.UID"),
    ("spec.ipFamilies", "IPv4",
     "json: cannot unmarshal string into Go struct field ServiceSpec.spec.ipFamilies of type "
     "[]v1.IPFamily"),
    ("spec.ports.0.targetPort", True,
     "json: cannot unmarshal bool into Go struct field ServicePort.spec.ports.targetPort of type "
     "int32"),
    ("spec.ports.0.targetPort", {"x": 1},
     "json: cannot unmarshal object into Go struct field ServicePort.spec.ports.targetPort of type "
     "int32"),
    ("metadata.creationTimestamp", 5,
     "json: cannot unmarshal number into Go struct field ObjectMeta.metadata.creationTimestamp of "
     "type string"),
    ("metadata.creationTimestamp", "abc",
     'parsing time "abc" as "2006-01-02T15:04:05Z07:00": cannot parse "abc" as "2006"'),
    ("metadata.creationTimestamp", "2024-02-30T00:00:00Z",
     'parsing time "2024-02-30T00:00:00Z": day out of range'),
    ("metadata.creationTimestamp", "2024-01-01 00:00:00Z",
     'parsing time "2024-01-01 00:00:00Z" as "2006-01-02T15:04:05Z07:00": cannot parse '
     '" 00:00:00Z" as "T"'),
]


@pytest.mark.parametrize("path,value,message", TYPE_ERRORS)
@pytest.mark.parametrize("mode", [schema.STRICT, schema.IGNORE])
def test_type_errors_fail_in_every_mode(path, value, message, mode):
    body = with_(SERVICE, path, value)
    assert schema.check_types("Service", body) == message
    e = error("Service", body, mode)
    assert e.code == 400 and e.reason == "BadRequest"
    assert e.message == f'Service in version "v1" cannot be handled as a Service: {message}'


def test_int_or_string_takes_both():
    for value in (8080, "http", -1):
        assert schema.check_types("Service", with_(SERVICE, "spec.ports.0.targetPort", value)) is None


def test_a_type_error_wins_over_strict_errors():
    body = with_(with_(SERVICE, "spec.foo", 1), "spec.ports.0.port", "abc")
    assert "cannot unmarshal string" in error("Service", body).message


@pytest.mark.parametrize("value,message", [
    ("abc", "quantities must match the regular expression "
            "'^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"),
    (True, "quantities must match the regular expression "
           "'^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"),
    ("1kk", "unable to parse quantity's suffix"),
])
def test_quantities_are_parsed(value, message):
    body = with_(DEPLOYMENT, "spec.template.spec.containers.0.resources.limits.cpu", value)
    assert error("Deployment", body).message == (
        f'Deployment in version "v1" cannot be handled as a Deployment: {message}')


@pytest.mark.parametrize("value", ["100m", "1.5Gi", "1e3", " 2 ", 0.5, 3, "0", "+1", "1E"])
def test_valid_quantities(value):
    body = with_(DEPLOYMENT, "spec.template.spec.containers.0.resources.limits.cpu", value)
    assert schema.check_types("Deployment", body) is None


def test_micro_time_needs_microseconds():
    lease = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "l"},
             "spec": {"renewTime": "2024-01-01T00:00:00.000000Z", "leaseDurationSeconds": 40}}
    assert decode("Lease", lease) == (lease, [])
    assert schema.check_types("Lease", with_(lease, "spec.renewTime", "2024-01-01T00:00:00Z")) == (
        'parsing time "2024-01-01T00:00:00Z" as "2006-01-02T15:04:05.000000Z07:00": '
        'cannot parse "Z" as ".000000"')


def test_binary_data_must_be_base64():
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"},
          "binaryData": {"a": "aGVsbG8="}}
    assert decode("ConfigMap", cm) == (cm, [])
    assert schema.check_types("ConfigMap", with_(cm, "binaryData.a", "he!lo")) == (
        "illegal base64 data at input byte 2")


# --- patches -------------------------------------------------------------------------------------

PATCHED = with_(with_(SERVICE, "spec.foo", 1), "spec.ports.1.nmae", "x")


def test_strategic_merge_patch_strict_error_is_a_422_naming_the_patch():
    raw = b'{"spec":{"foo":1,"ports":[{"port":443,"nmae":"x"}],"ports":[{"port":443,"nmae":"x"}]}}'
    e = error("Service", raw, obj=PATCHED, patch_type=schema.STRATEGIC_MERGE_PATCH)
    assert e.code == 422 and e.reason == "Invalid"
    detail = ('strict decoding error: duplicate field "spec.ports", unknown field "spec.foo", '
              'unknown field "spec.ports[1].nmae"')
    value = '"map[spec:map[foo:1 ports:[map[nmae:x port:443]]]]"'
    assert e.message == f' "" is invalid: patch: Invalid value: {value}: {detail}'
    assert e.details["causes"] == [{"reason": "FieldValueInvalid", "field": "patch",
                                    "message": f"Invalid value: {value}: {detail}"}]


def test_merge_patch_strict_error_shows_the_patched_object():
    e = error("Service", b'{"spec":{"foo":1}}', obj=PATCHED, patch_type=schema.MERGE_PATCH)
    assert e.code == 422
    assert e.message.startswith(' "" is invalid: patch: Invalid value: "{\\"apiVersion\\":\\"v1\\",')
    assert e.message.endswith(
        ': strict decoding error: unknown field "spec.foo", unknown field "spec.ports[1].nmae"')


def test_patch_in_warn_and_ignore_modes():
    for patch_type in (schema.STRATEGIC_MERGE_PATCH, schema.MERGE_PATCH):
        out, warnings = decode("Service", b'{"spec":{"foo":1}}', schema.WARN, obj=PATCHED,
                               patch_type=patch_type)
        assert out == SERVICE
        assert warnings == ['unknown field "spec.foo"', 'unknown field "spec.ports[1].nmae"']
        assert decode("Service", b'{"spec":{"foo":1}}', schema.IGNORE, obj=PATCHED,
                      patch_type=patch_type) == (SERVICE, [])


def test_patch_type_errors():
    patched = with_(SERVICE, "spec.ports.0.port", "abc")
    raw = b'{"spec":{"ports":[{"port":"abc"}]}}'
    e = error("Service", raw, schema.IGNORE, obj=patched, patch_type=schema.STRATEGIC_MERGE_PATCH)
    assert e.message == (' "" is invalid: patch: Invalid value: '
                         '"map[spec:map[ports:[map[port:abc]]]]": unrecognized type: int32')
    e = error("Service", raw, schema.IGNORE, obj=patched, patch_type=schema.MERGE_PATCH)
    assert e.message.endswith(': json: cannot unmarshal string into Go struct field '
                              'ServicePort.spec.ports.port of type int32')
    e = error("Service", b'{"spec":"x"}', obj=with_(SERVICE, "spec", "x"),
              patch_type=schema.STRATEGIC_MERGE_PATCH)
    assert e.message.endswith(": cannot restore struct from: string")


def test_json_patch_operations_are_checked_too():
    raw = b'[{"op":"add","path":"/metadata/labels","value":{"a":"1","a":"2"},"foo":1}]'
    e = error("Service", raw, obj=SERVICE, patch_type=schema.JSON_PATCH)
    assert e.message.endswith(': strict decoding error: json patch duplicate field '
                              '"[0].value.a", json patch unknown field "[0].foo"')


# --- fieldValidation -----------------------------------------------------------------------------

def test_field_validation_defaults_to_warn():
    assert schema.resolve_mode(None, "CreateOptions") == schema.WARN
    assert schema.resolve_mode("", "PatchOptions") == schema.WARN
    assert schema.resolve_mode("Strict", "UpdateOptions") == schema.STRICT


def test_unknown_field_validation_value_is_invalid():
    with pytest.raises(APIError) as e:
        schema.resolve_mode("strict", "CreateOptions")
    assert e.value.code == 422
    assert e.value.message == (
        'CreateOptions.meta.k8s.io "" is invalid: fieldValidation: Unsupported value: "strict": '
        'supported values: "", "Ignore", "Strict", "Warn"')
