"""Kubernetes protobuf request bodies: golden bytes, round trips, zero values, malformed input."""

from __future__ import annotations

import random
import timeit

import pytest

from svcnet.api import protobuf
from svcnet.api.errors import APIError
from svcnet.api.resources import RESOURCES

# The exact 67 bytes kubectl v1.34.3 sends for
# `kubectl create configmap demo --from-literal=hello=engenho` (captured from a live kubectl).
GOLDEN_CONFIGMAP = bytes.fromhex(
    "6b387300"                                  # magic "k8s\0"
    "0a0f" "0a027631" "1209436f6e6669674d6170"  # Unknown.typeMeta {apiVersion "v1", kind "ConfigMap"}
    "1228"                                      # Unknown.raw, 40 bytes:
    "0a14"                                      #   ConfigMap.metadata (1), 20 bytes:
    "0a0464656d6f"                              #     name "demo"
    "1200" "1a00" "2200" "2a00" "3200"          #     generateName namespace selfLink uid resourceVersion ""
    "3800"                                      #     generation 0
    "4200"                                      #     creationTimestamp: Go's zero time, empty message
    "1210" "0a0568656c6c6f" "1207656e67656e686f"  # ConfigMap.data (2) entry {key "hello", value "engenho"}
    "1a00" "2200")                              # Unknown.contentEncoding "", contentType ""

# `kubectl create service clusterip web --tcp=80:8080`, written out by hand from the gogo rules:
# fields in number order, every non-pointer field present even when zero, nil pointers, lists and
# maps absent.
SERVICE = {
    "apiVersion": "v1", "kind": "Service",
    "metadata": {"name": "web", "labels": {"app": "web"}},
    "spec": {"ports": [{"name": "80-8080", "protocol": "TCP", "port": 80, "targetPort": 8080}],
             "selector": {"app": "web"}, "type": "ClusterIP"},
}
SERVICE_BYTES = bytes.fromhex(
    "6b387300"
    "0a0d" "0a027631" "120753657276696365"      # typeMeta {apiVersion "v1", kind "Service"}
    "1269"                                      # raw, 105 bytes: Service
    "0a1f"                                      # metadata (1), 31 bytes: ObjectMeta
    "0a03776562"                                #   name (1) "web"
    "1200" "1a00" "2200" "2a00" "3200"          #   generateName namespace selfLink uid resourceVersion
    "3800"                                      #   generation (7) varint 0
    "4200"                                      #   creationTimestamp (8): zero time, empty
    "5a0a" "0a03617070" "1203776562"            #   labels (11) entry {key "app", value "web"}
    "1242"                                      # spec (2), 66 bytes: ServiceSpec
    "0a1b"                                      #   ports (1), 27 bytes: ServicePort
    "0a0738302d38303830"                        #     name (1) "80-8080"
    "1203544350"                                #     protocol (2) "TCP"
    "1850"                                      #     port (3) varint 80
    "2207" "0800" "10903f" "1a00"               #     targetPort (4) IntOrString {type 0, intVal 8080, strVal ""}
    "2800"                                      #     nodePort (5) 0
    "120a" "0a03617070" "1203776562"            #   selector (2) entry {key "app", value "web"}
    "1a00"                                      #   clusterIP (3) ""
    "2209436c75737465724950"                    #   type (4) "ClusterIP"
    "3a00" "4200" "5200" "5a00"                 #   sessionAffinity loadBalancerIP externalName externalTrafficPolicy ""
    "6000" "6800"                               #   healthCheckNodePort 0, publishNotReadyAddresses false
    "1a02" "0a00"                               # status (3): ServiceStatus {loadBalancer {}}
    "1a00" "2200")                              # contentEncoding, contentType ""

NAMESPACE = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-a"}}

CONFIGMAP = {
    "apiVersion": "v1", "kind": "ConfigMap",
    "metadata": {"name": "settings", "namespace": "default", "annotations": {"a": "b"},
                 "creationTimestamp": "2026-01-02T03:04:05Z", "uid": "7d0f1c1e-0000-4000-8000-1"},
    "data": {"x": "1", "empty": ""}, "binaryData": {"blob": "AAEC/w=="}, "immutable": False,
}

DEPLOYMENT = {
    "apiVersion": "apps/v1", "kind": "Deployment",
    "metadata": {"name": "d", "labels": {"app": "d"}, "generation": 3,
                 "ownerReferences": [{"apiVersion": "v1", "kind": "X", "name": "o", "uid": "u",
                                      "controller": True, "blockOwnerDeletion": False}]},
    "spec": {
        "replicas": 0,
        "selector": {"matchLabels": {"app": "d"},
                     "matchExpressions": [{"key": "tier", "operator": "In", "values": ["a", "b"]}]},
        "template": {
            "metadata": {"labels": {"app": "d"}},
            "spec": {
                "containers": [{
                    "name": "i", "image": "nginx:1.27", "args": ["-g", "daemon off;"],
                    "ports": [{"containerPort": 80, "protocol": "TCP"}],
                    "env": [{"name": "A", "value": "1"},
                            {"name": "B", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
                    "resources": {"limits": {"cpu": "500m", "memory": "128Mi"},
                                  "requests": {"cpu": "0"}},
                    "readinessProbe": {"httpGet": {"path": "/", "port": "http"}, "periodSeconds": 5},
                    "livenessProbe": {"tcpSocket": {"port": 80}},
                    "securityContext": {"runAsUser": 0, "runAsNonRoot": False,
                                        "capabilities": {"drop": ["ALL"]}},
                }],
                "volumes": [{"name": "scratch", "emptyDir": {}},
                            {"name": "cfg", "configMap": {"name": "settings", "defaultMode": 420}}],
                "terminationGracePeriodSeconds": 0,
                "securityContext": {"supplementalGroups": [1, 2], "fsGroup": 2000},
                "tolerations": [{"key": "k", "operator": "Exists", "effect": "NoSchedule"}],
            },
        },
        "strategy": {"type": "RollingUpdate",
                     "rollingUpdate": {"maxUnavailable": 0, "maxSurge": "25%"}},
        "revisionHistoryLimit": 10,
    },
    "status": {"replicas": 2, "conditions": [{"type": "Available", "status": "True",
                                              "lastTransitionTime": "2025-12-31T23:59:59Z"}]},
}

EVENT = {
    "apiVersion": "v1", "kind": "Event",
    "metadata": {"name": "e.1", "namespace": "default",
                 "deletionTimestamp": "1970-01-01T00:00:00Z", "deletionGracePeriodSeconds": 0},
    "involvedObject": {"kind": "Pod", "name": "p", "namespace": "default"},
    "reason": "Started", "count": 2, "type": "Normal",
    "eventTime": "2026-01-02T03:04:05.123456Z",
    "series": {"count": 3, "lastObservedTime": "2026-01-02T03:04:06.000001Z"},
    "reportingComponent": "kubelet",
}

LEASE = {
    "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
    "metadata": {"name": "node-1", "namespace": "kube-node-lease",
                 "managedFields": [{"manager": "kubelet", "operation": "Update", "apiVersion": "v1",
                                    "time": "2026-01-02T03:04:05Z", "fieldsType": "FieldsV1",
                                    "fieldsV1": {"f:spec": {"f:holderIdentity": {}}}}]},
    "spec": {"holderIdentity": "node-1", "leaseDurationSeconds": 40,
             "renewTime": "2026-01-02T03:04:05.500000Z", "leaseTransitions": 0},
}

ENDPOINTSLICE = {
    "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
    "metadata": {"name": "web-abc", "labels": {"kubernetes.io/service-name": "web"}},
    "addressType": "IPv4",
    "endpoints": [{"addresses": ["10.0.0.5"],
                   "conditions": {"ready": False, "serving": True, "terminating": False},
                   "nodeName": "n1", "targetRef": {"kind": "Pod", "name": "web-1"}}],
    "ports": [{"name": "", "protocol": "TCP", "port": 8080}],
}

NODE = {
    "apiVersion": "v1", "kind": "Node",
    "metadata": {"name": "n1"},
    "spec": {"podCIDR": "10.244.0.0/24", "taints": [{"key": "k", "effect": "NoSchedule"}]},
    "status": {"capacity": {"cpu": "4", "pods": "110"},
               "addresses": [{"type": "InternalIP", "address": "192.0.2.1"}],
               "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
               "nodeInfo": {"kubeletVersion": "v1.32.0", "architecture": "amd64"}},
}

SCALE = {"apiVersion": "autoscaling/v1", "kind": "Scale",
         "metadata": {"name": "d", "namespace": "default", "resourceVersion": "42"},
         "spec": {"replicas": 5}}

DELETE_OPTIONS = {"apiVersion": "meta.k8s.io/v1", "kind": "DeleteOptions",
                  "gracePeriodSeconds": 0, "propagationPolicy": "Foreground",
                  "preconditions": {"uid": "u"}, "dryRun": ["All"]}


def bad_request(raw: bytes) -> str:
    with pytest.raises(APIError) as e:
        protobuf.decode(raw)
    assert (e.value.code, e.value.reason) == (400, "BadRequest")
    return e.value.message


def raw_body(body: bytes) -> tuple[bytes, bytes]:
    """(everything up to the object's own bytes, the object's bytes) of an encoded body."""
    type_meta_len = body[5]
    raw_at = 4 + 2 + type_meta_len  # magic, typeMeta tag and length, typeMeta
    length, pos = protobuf._varint(body, raw_at + 1, len(body))
    return body[:raw_at], body[pos:pos + length]


def with_raw(prefix: bytes, raw: bytes) -> bytes:
    return prefix + b"\x12" + protobuf._encode_varint(len(raw)) + raw


# --- content type ----------------------------------------------------------------------------

@pytest.mark.parametrize("content_type,expected", [
    ("application/vnd.kubernetes.protobuf", True),
    ("application/vnd.kubernetes.protobuf; charset=utf-8", True),
    ("Application/VND.Kubernetes.Protobuf", True),
    ("application/vnd.kubernetes.protobuf;stream=watch", True),
    ("application/json", False),
    ("application/yaml", False),
    ("", False),
])
def test_is_protobuf(content_type, expected):
    assert protobuf.is_protobuf(content_type) is expected


# --- golden bytes ----------------------------------------------------------------------------

def test_golden_configmap_from_kubectl():
    expected = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "demo"},
                "data": {"hello": "engenho"}}
    assert protobuf.decode(GOLDEN_CONFIGMAP) == expected
    assert list(protobuf.decode(GOLDEN_CONFIGMAP))[:2] == ["apiVersion", "kind"]
    assert protobuf.encode(expected) == GOLDEN_CONFIGMAP


def test_service_bytes_written_by_hand():
    assert protobuf.decode(SERVICE_BYTES) == SERVICE
    assert protobuf.encode(SERVICE) == SERVICE_BYTES


# --- round trips -----------------------------------------------------------------------------

@pytest.mark.parametrize("obj", [SERVICE, NAMESPACE, CONFIGMAP, DEPLOYMENT, EVENT, LEASE,
                                 ENDPOINTSLICE, NODE, SCALE, DELETE_OPTIONS],
                         ids=lambda o: o["kind"])
def test_round_trip(obj):
    # `immutable: false` is a pointer: the explicit false survives.
    assert protobuf.decode(protobuf.encode(obj)) == obj


def test_pointer_zeros_survive_and_plain_zeros_do_not():
    d = protobuf.decode(protobuf.encode(DEPLOYMENT))
    spec = d["spec"]
    assert spec["replicas"] == 0                                   # *int32
    assert spec["strategy"]["rollingUpdate"]["maxUnavailable"] == 0  # *IntOrString
    assert spec["strategy"]["rollingUpdate"]["maxSurge"] == "25%"
    pod = spec["template"]["spec"]
    assert pod["volumes"][0] == {"name": "scratch", "emptyDir": {}}  # *EmptyDirVolumeSource
    assert pod["terminationGracePeriodSeconds"] == 0
    assert pod["containers"][0]["securityContext"]["runAsUser"] == 0
    # gogo wrote minReadySeconds 0, paused false, status.observedGeneration 0 ...: all dropped.
    assert "minReadySeconds" not in spec and "paused" not in spec
    assert "observedGeneration" not in d["status"]
    assert "creationTimestamp" not in d["metadata"]


def test_non_pointer_quantity_reads_as_go_writes_it():
    # resource.Quantity is a struct: an unset divisor is written (and served) as "0".
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
           "spec": {"containers": [{"name": "c", "env": [{"name": "M", "valueFrom": {
               "resourceFieldRef": {"resource": "limits.memory"}}}]}]}}
    env = protobuf.decode(protobuf.encode(pod))["spec"]["containers"][0]["env"][0]
    assert env["valueFrom"]["resourceFieldRef"] == {"resource": "limits.memory", "divisor": "0"}


def test_time_forms():
    # metav1.Time keeps whole seconds only; MicroTime keeps microseconds; the epoch is not zero.
    ns = {"apiVersion": "v1", "kind": "Namespace",
          "metadata": {"name": "t", "creationTimestamp": "1970-01-01T00:00:00Z"}}
    assert protobuf.decode(protobuf.encode(ns)) == ns
    prefix, raw = raw_body(protobuf.encode(NAMESPACE))
    # metadata {creationTimestamp {seconds 1767323045, nanos 999}}: nanos are dropped.
    ts = b"\x08" + protobuf._encode_varint(1767323045) + b"\x10\xe7\x07"
    meta = b"\x42" + bytes([len(ts)]) + ts
    decoded = protobuf.decode(with_raw(prefix, b"\x0a" + bytes([len(meta)]) + meta))
    assert decoded["metadata"] == {"creationTimestamp": "2026-01-02T03:04:05Z"}


# --- wire-format details ---------------------------------------------------------------------

def test_unknown_fields_are_skipped():
    prefix, raw = raw_body(SERVICE_BYTES)
    extra = (b"\xc8\x3e\x96\x01"                      # field 1001 varint 150
             b"\xd1\x3e" + bytes(8) +                 # field 1002 fixed64
             b"\xdd\x3e" + bytes(4) +                 # field 1003 fixed32
             b"\xe2\x3e\x03abc" +                     # field 1004 bytes "abc"
             b"\xeb\x3e" b"\x08\x01" b"\xec\x3e")     # field 1005 group holding a varint
    assert protobuf.decode(with_raw(prefix, extra + raw + extra)) == SERVICE


def test_packed_repeated_scalars():
    prefix, _ = raw_body(protobuf.encode({"apiVersion": "v1", "kind": "Pod"}))
    # Pod {spec (2) {securityContext (14) {supplementalGroups (4), packed: [1, 300]}}}
    groups = b"\x22\x03\x01\xac\x02"
    security_context = b"\x72" + bytes([len(groups)]) + groups
    spec = b"\x12" + bytes([len(security_context)]) + security_context
    decoded = protobuf.decode(with_raw(prefix, spec))
    assert decoded["spec"]["securityContext"]["supplementalGroups"] == [1, 300]


def test_repeated_message_fields_merge_and_scalars_take_the_last():
    prefix, _ = raw_body(SERVICE_BYTES)
    first = b"\x0a\x05\x0a\x03one"                     # metadata {name "one"}
    second = b"\x0a\x0b\x1a\x02ns\x5a\x05\x0a\x01a\x12\x00"  # metadata {namespace "ns", labels {a: ""}}
    third = b"\x0a\x05\x0a\x03two"                     # metadata {name "two"}
    decoded = protobuf.decode(with_raw(prefix, first + second + third))
    assert decoded["metadata"] == {"name": "two", "namespace": "ns", "labels": {"a": ""}}


def test_negative_integers():
    obj = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
           "spec": {"containers": [{"name": "c", "livenessProbe": {
               "exec": {"command": ["true"]}, "initialDelaySeconds": -1}}],
               "activeDeadlineSeconds": -5}}
    assert protobuf.decode(protobuf.encode(obj)) == obj


# --- malformed input -------------------------------------------------------------------------

def test_envelope_errors():
    assert bad_request(b"") == "empty data"
    assert bad_request(b"{\"kind\": \"Pod\"}") == (
        "provided data does not appear to be a protobuf message, expected prefix [107 56 115 0]")
    assert bad_request(b"k8s").startswith("provided data does not appear")
    assert bad_request(b"k8s\x00") == "empty body"
    assert bad_request(b"k8s\x00\x12\x00") == (
        "Object 'Kind' is missing in 'runtime.TypeMeta{APIVersion:\"\", Kind:\"\"}'")
    no_version = b"k8s\x00\x0a\x05\x12\x03Pod"
    assert bad_request(no_version) == (
        "Object 'apiVersion' is missing in 'runtime.TypeMeta{APIVersion:\"\", Kind:\"Pod\"}'")


def test_unknown_kind():
    body = protobuf.encode(SERVICE).replace(b"\x12\x07Service", b"\x12\x07Secrets")
    assert bad_request(body) == 'no kind "Secrets" is registered for version "v1"'
    other_version = protobuf.encode(SERVICE).replace(b"\x0a\x02v1", b"\x0a\x02v2")
    assert bad_request(other_version) == 'no kind "Service" is registered for version "v2"'


def test_truncated_bodies():
    body = protobuf.encode(DEPLOYMENT)
    for cut in range(5, len(body)):
        try:
            protobuf.decode(body[:cut])
        except APIError as e:
            assert (e.code, e.reason) == (400, "BadRequest")
    prefix, raw = raw_body(body)
    message = bad_request(with_raw(prefix, raw[:-3]))
    assert message == ('Deployment in version "v1" cannot be handled as a Deployment: '
                       "unexpected EOF")


def test_wrong_wire_type():
    prefix, _ = raw_body(SERVICE_BYTES)
    # ServiceSpec.ports[].port (field 3) sent as a string
    port = b"\x0a\x04\x1a\x0280"
    spec = b"\x12" + bytes([len(port)]) + port
    assert bad_request(with_raw(prefix, spec)).endswith("proto: wrong wireType = 2 for field port")


@pytest.mark.parametrize("raw,message", [
    (b"\x00\x00", "proto: illegal tag 0 (wire type 0)"),
    (b"\x0c", "proto: wiretype end group for non-group"),
    (b"\xa7\x06", "proto: illegal wireType 7"),      # field 100, wire type 7
    (b"\xf8\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", "proto: integer overflow"),
])
def test_invalid_wire_data(raw, message):
    prefix, _ = raw_body(SERVICE_BYTES)
    assert bad_request(with_raw(prefix, raw)).endswith(message)


def test_random_input_only_raises_bad_request():
    rng = random.Random(1234)
    samples = [protobuf.encode(o) for o in (SERVICE, DEPLOYMENT, EVENT, LEASE, NODE)]
    for i in range(4000):
        if i % 3 == 0:
            data = bytes(rng.randrange(256) for _ in range(rng.randrange(64)))
            data = protobuf.MAGIC + data if i % 2 else data
        else:
            data = bytearray(rng.choice(samples))
            for _ in range(rng.randrange(1, 6)):
                data[rng.randrange(4, len(data))] = rng.randrange(256)
            data = bytes(data)
        try:
            protobuf.decode(data)
        except APIError as e:
            assert (e.code, e.reason) == (400, "BadRequest")


# --- table -----------------------------------------------------------------------------------

def test_every_served_kind_decodes():
    kinds = [(r.group_version, r.kind) for r in RESOURCES]
    kinds += [("autoscaling/v1", "Scale"), ("v1", "DeleteOptions"), ("apps/v1", "DeleteOptions")]
    for api_version, kind in kinds:
        obj = {"apiVersion": api_version, "kind": kind}
        # A new kind needs its Go structs in scripts/gen_proto_fields.py (SPEC and KINDS).
        assert protobuf.decode(protobuf.encode(obj)) == obj


def test_decoding_a_service_is_fast():
    per_call = min(timeit.repeat(lambda: protobuf.decode(SERVICE_BYTES), number=200, repeat=5)) / 200
    assert per_call < 0.0002
