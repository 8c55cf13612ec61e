"""Pod, Node, Namespace, Endpoints, EndpointSlice, Deployment and ReplicaSet defaulting and
validation against Kubernetes 1.32's exact field paths and texts.

Each case states the complete list of messages Kubernetes reports for the object after
defaulting, in its order, so a missing, extra or reordered rule fails the case. The kind
functions leave ObjectMeta to the generic strategy; the last part drives the registry itself to
check that what svcnet's own components write stays valid and how the rules plug in.
"""

from __future__ import annotations

import asyncio
import copy
import json

import pytest

from svcnet.api.errors import APIError
from svcnet.api.resources import BY_KIND
from svcnet.registry import strategy
from svcnet.registry import workloads as w
from svcnet.registry.store import Registry
from svcnet.store.memory import MemoryBackend

from tests.unit.k8s_messages import LABEL_MSG, SUBDOMAIN_MSG, NAME_PART_MSG, LABEL_VALUE_MSG, IP_MSG, CIDR_MSG

PORT_RANGE = "must be between 1 and 65535, inclusive"
NONNEG = "must be greater than or equal to 0"
ENV_NAME_MSG = ("a valid environment variable name must consist only of printable ASCII "
                "characters other than '='")
PERCENT_MSG = ("a valid percent string must be a numeric string followed by an ending '%' (e.g. "
               "'1%',  or '93%', regex used for validation is '[0-9]+%')")
UPDATABLE = ("`spec.containers[*].image`,`spec.initContainers[*].image`,"
             "`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing "
             "tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it "
             "was previously negative)")
DEFAULT_TOLERATIONS = [
    {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute",
     "tolerationSeconds": 300},
    {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute",
     "tolerationSeconds": 300},
]


def messages(errs) -> list[str]:
    return [e.message() for e in errs]


def ctr(name: str = "c", image: str = "nginx", **fields) -> dict:
    return {"name": name, "image": image, **fields}


def pod(spec: dict | None = None, annotations: dict | None = None, status: dict | None = None) -> dict:
    meta = {"name": "p", "namespace": "default"}
    if annotations is not None:
        meta["annotations"] = annotations
    body = {"apiVersion": "v1", "kind": "Pod", "metadata": meta,
            "spec": spec if spec is not None else {"containers": [ctr()]}}
    if status is not None:
        body["status"] = status
    return body


def defaulted_pod(spec: dict | None = None, **kw) -> dict:
    p = pod(spec, **kw)
    p.setdefault("status", {"phase": "Pending", "qosClass": "BestEffort"})
    w.default_pod(p)
    return p


def pod_errors(spec: dict, annotations: dict | None = None) -> list[str]:
    return messages(w.validate_pod(defaulted_pod(spec, annotations=annotations)))


# ==============================================================================================
# Pod defaulting
# ==============================================================================================

def test_pod_defaults_as_the_apiserver_stores_them():
    p = defaulted_pod({"containers": [ctr(ports=[{"containerPort": 80}])]})
    assert p["spec"] == {
        "containers": [{"name": "c", "image": "nginx",
                        "ports": [{"containerPort": 80, "protocol": "TCP"}],
                        "resources": {}, "imagePullPolicy": "Always",
                        "terminationMessagePath": "/dev/termination-log",
                        "terminationMessagePolicy": "File"}],
        "enableServiceLinks": True, "dnsPolicy": "ClusterFirst", "restartPolicy": "Always",
        "securityContext": {}, "terminationGracePeriodSeconds": 30,
        "schedulerName": "default-scheduler", "priority": 0,
        "preemptionPolicy": "PreemptLowerPriority", "tolerations": DEFAULT_TOLERATIONS}
    assert p["status"] == {"phase": "Pending", "qosClass": "BestEffort"}
    assert messages(w.validate_pod(p)) == []


@pytest.mark.parametrize("image,policy", [
    ("nginx", "Always"), ("nginx:latest", "Always"), ("nginx:1.25", "IfNotPresent"),
    ("registry.local:5000/team/app", "Always"), ("registry.local:5000/team/app:v2", "IfNotPresent"),
    ("nginx@sha256:" + "a" * 64, "IfNotPresent"), ("nginx:1.25@sha256:" + "a" * 64, "IfNotPresent"),
    ("Nginx", "IfNotPresent"),  # not a reference: no tag is found
])
def test_image_pull_policy_follows_the_tag(image, policy):
    assert defaulted_pod({"containers": [ctr(image=image)]})["spec"]["containers"][0][
        "imagePullPolicy"] == policy


def test_probe_lifecycle_env_and_volume_defaults():
    c = ctr(livenessProbe={"httpGet": {"port": 8080}},
            readinessProbe={"tcpSocket": {"port": "http"}, "periodSeconds": 5},
            startupProbe={"grpc": {"port": 9000}},
            lifecycle={"preStop": {"httpGet": {"port": 80, "path": "/quit"}}},
            env=[{"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}],
            volumeMounts=[{"name": "scratch", "mountPath": "/s"}])
    p = defaulted_pod({"containers": [c], "volumes": [
        {"name": "scratch"}, {"name": "cfg", "configMap": {"name": "cm"}},
        {"name": "tok", "projected": {"sources": [{"serviceAccountToken": {"path": "t"}}]}}],
        "serviceAccountName": "robot"})
    c = p["spec"]["containers"][0]
    assert c["livenessProbe"] == {"httpGet": {"port": 8080, "path": "/", "scheme": "HTTP"},
                                  "timeoutSeconds": 1, "periodSeconds": 10,
                                  "successThreshold": 1, "failureThreshold": 3}
    assert c["readinessProbe"]["periodSeconds"] == 5
    assert c["startupProbe"]["grpc"] == {"port": 9000, "service": ""}
    assert c["lifecycle"]["preStop"]["httpGet"] == {"port": 80, "path": "/quit", "scheme": "HTTP"}
    assert c["env"][0]["valueFrom"]["fieldRef"] == {"fieldPath": "spec.nodeName",
                                                    "apiVersion": "v1"}
    assert p["spec"]["volumes"] == [
        {"name": "scratch", "emptyDir": {}},
        {"name": "cfg", "configMap": {"name": "cm", "defaultMode": 420}},
        {"name": "tok", "projected": {"defaultMode": 420, "sources": [
            {"serviceAccountToken": {"path": "t", "expirationSeconds": 3600}}]}}]
    assert p["spec"]["serviceAccount"] == "robot"  # the deprecated alias
    assert messages(w.validate_pod(p)) == []


def test_resources_default_requests_to_limits_and_print_canonically():
    c = ctr(resources={"limits": {"cpu": "0.5", "memory": "1024Mi"},
                       "requests": {"cpu": "100m"}})
    p = defaulted_pod({"containers": [c]})
    assert p["spec"]["containers"][0]["resources"] == {
        "limits": {"cpu": "500m", "memory": "1Gi"},
        "requests": {"cpu": "100m", "memory": "1Gi"}}
    assert p["status"]["qosClass"] == "Burstable"


@pytest.mark.parametrize("raw,printed", [
    ("100m", "100m"), ("0.5", "500m"), ("1000", "1k"), ("1500m", "1500m"), ("2000m", "2"),
    ("1024Mi", "1Gi"), ("1.5Gi", "1536Mi"), ("3Gi", "3Gi"), ("8Gi", "8Gi"), ("0.5Ki", "512"),
    ("128974848", "128974848"), ("128974848000m", "128974848"), ("129e6", "129e6"),
    ("1e2", "100"), ("129M", "129M"), ("0.0001", "1m"), ("1.1Ki", "1126400m"), ("0", "0"),
    ("0m", "0"), ("007", "007"), (2, "2"), (0.25, "250m"), ("16380276Ki", "16380276Ki"),
])
def test_quantities_print_as_the_apiserver_prints_them(raw, printed):
    assert str(w.round_up_milli(w.parse_quantity(raw))) == printed


def test_qos_class():
    def qos(*resources):
        return w.compute_qos({"containers": [ctr(name=f"c{i}", resources=r)
                                             for i, r in enumerate(resources)]})
    assert qos({}) == "BestEffort"
    assert qos({"limits": {"cpu": "1", "memory": "1Gi"},
                "requests": {"cpu": "1", "memory": "1Gi"}}) == "Guaranteed"
    assert qos({"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "1", "memory": "1Gi"}},
               {}) == "Burstable"
    assert qos({"requests": {"ephemeral-storage": "1Gi"}}) == "BestEffort"


def test_host_network_ports_default_to_host_ports():
    p = defaulted_pod({"hostNetwork": True, "containers": [ctr(ports=[{"containerPort": 53}])]})
    assert p["spec"]["containers"][0]["ports"] == [{"containerPort": 53, "protocol": "TCP",
                                                    "hostPort": 53}]


def test_admission_keeps_existing_tolerations_and_priority_class():
    spec = {"containers": [ctr()], "priorityClassName": "high",
            "tolerations": [{"operator": "Exists"}]}
    p = defaulted_pod(spec)
    assert p["spec"]["tolerations"] == [{"operator": "Exists"}]
    assert "priority" not in p["spec"] and "preemptionPolicy" not in p["spec"]
    p = defaulted_pod({"containers": [ctr()], "tolerations": [
        {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute",
         "tolerationSeconds": 10}]})
    assert [t["key"] for t in p["spec"]["tolerations"]] == [
        "node.kubernetes.io/unreachable", "node.kubernetes.io/not-ready"]


@pytest.mark.parametrize("status,want", [
    ({"podIP": "10.0.0.5"}, {"podIP": "10.0.0.5", "podIPs": [{"ip": "10.0.0.5"}]}),
    ({"podIPs": [{"ip": "10.0.0.5"}]}, {"podIP": "10.0.0.5", "podIPs": [{"ip": "10.0.0.5"}]}),
    ({"podIP": "10.0.0.6", "podIPs": [{"ip": "10.0.0.5"}]},
     {"podIP": "10.0.0.6", "podIPs": [{"ip": "10.0.0.6"}]}),  # podIP is authoritative
    ({"hostIP": "192.168.1.2"}, {"hostIP": "192.168.1.2", "hostIPs": [{"ip": "192.168.1.2"}]}),
])
def test_pod_ip_conversion(status, want):
    p = pod(status=dict(status, qosClass="BestEffort"))
    w.default_pod_status(p)
    assert p["status"] == dict(want, qosClass="BestEffort")


# ==============================================================================================
# Pod validation on create
# ==============================================================================================

POD_CREATE_CASES = [
    ("no containers", {"containers": []}, ["spec.containers: Required value"]),
    ("container name and image", {"containers": [ctr(name="Web_1", image="")]}, [
        f'spec.containers[0].name: Invalid value: "Web_1": {LABEL_MSG}',
        "spec.containers[0].image: Required value"]),
    ("duplicate container", {"containers": [ctr(), ctr()]},
     ['spec.containers[1].name: Duplicate value: "c"']),
    ("termination message policy",
     {"containers": [ctr(terminationMessagePolicy="Sometimes")]},
     ['spec.containers[0].terminationMessagePolicy: Unsupported value: "Sometimes": supported '
      'values: "File", "FallbackToLogsOnError"']),
    ("image pull policy", {"containers": [ctr(imagePullPolicy="Sometimes")]},
     ['spec.containers[0].imagePullPolicy: Unsupported value: "Sometimes": supported values: '
      '"Always", "IfNotPresent", "Never"']),
    ("container ports", {"containers": [ctr(ports=[
        {"name": "HTTP", "containerPort": 80}, {"name": "web", "containerPort": 0},
        {"name": "web", "containerPort": 70000, "hostPort": -1, "protocol": "HTTP"}])]}, [
        'spec.containers[0].ports[0].name: Invalid value: "HTTP": must contain only '
        'alpha-numeric characters (a-z, 0-9), and hyphens (-)',
        'spec.containers[0].ports[0].name: Invalid value: "HTTP": must contain at least one '
        'letter (a-z)',
        "spec.containers[0].ports[1].containerPort: Required value",
        'spec.containers[0].ports[2].name: Duplicate value: "web"',
        f"spec.containers[0].ports[2].containerPort: Invalid value: 70000: {PORT_RANGE}",
        f"spec.containers[0].ports[2].hostPort: Invalid value: -1: {PORT_RANGE}",
        'spec.containers[0].ports[2].protocol: Unsupported value: "HTTP": supported values: '
        '"SCTP", "TCP", "UDP"']),
    ("host port conflict", {"containers": [
        ctr(ports=[{"containerPort": 80, "hostPort": 8080}]),
        ctr(name="d", ports=[{"containerPort": 81, "hostPort": 8080}])]},
     ['spec.containers[1].ports[0].hostPort: Duplicate value: "TCP//8080"']),
    ("env", {"containers": [ctr(env=[
        {"name": ""}, {"name": "A=B"}, {"name": "X", "valueFrom": {}},
        {"name": "Y", "value": "v", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "Z", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels"},
                                    "secretKeyRef": {"name": "s", "key": "k"}}},
        {"name": "F", "valueFrom": {"fieldRef": {"fieldPath": "spec.foo"}}},
        {"name": "G", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "a/b"}}},
        {"name": "H", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['a b']"}}},
        {"name": "my.var-1 with spaces"}])]}, [
        "spec.containers[0].env[0].name: Required value",
        f'spec.containers[0].env[1].name: Invalid value: "A=B": {ENV_NAME_MSG}',
        'spec.containers[0].env[2].valueFrom: Invalid value: "": must specify one of: '
        '`fieldRef`, `resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`',
        'spec.containers[0].env[3].valueFrom: Invalid value: "": may not be specified when '
        '`value` is not empty',
        'spec.containers[0].env[4].valueFrom.fieldRef.fieldPath: Unsupported value: '
        '"metadata.labels": supported values: "metadata.name", "metadata.namespace", '
        '"metadata.uid", "spec.nodeName", "spec.serviceAccountName", "status.hostIP", '
        '"status.hostIPs", "status.podIP", "status.podIPs"',
        'spec.containers[0].env[4].valueFrom: Invalid value: "": may not have more than one '
        'field specified at a time',
        'spec.containers[0].env[5].valueFrom.fieldRef.fieldPath: Invalid value: "spec.foo": '
        'error converting fieldPath: field label not supported: spec.foo',
        'spec.containers[0].env[6].valueFrom.configMapKeyRef.key: Invalid value: "a/b": a valid '
        "config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  "
        "or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')",
        f'spec.containers[0].env[7].valueFrom.fieldRef: Invalid value: "a b": {NAME_PART_MSG}']),
    ("envFrom", {"containers": [ctr(envFrom=[{"prefix": "a=", "configMapRef": {"name": "cm"}},
                                             {}, {"secretRef": {"name": "Bad"}}])]}, [
        f'spec.containers[0].envFrom[0].prefix: Invalid value: "a=": {ENV_NAME_MSG}',
        'spec.containers[0].envFrom: Invalid value: "": must specify one of: `configMapRef` or '
        '`secretRef`',
        f'spec.containers[0].envFrom[2].secretRef.name: Invalid value: "Bad": {SUBDOMAIN_MSG}']),
    ("volumes and mounts", {
        "volumes": [{"name": "data"}, {"name": "data", "emptyDir": {}},
                    {"name": "Two", "emptyDir": {}, "hostPath": {"path": "/x"}},
                    {"name": "cm", "configMap": {}},
                    {"name": "down", "emptyDir": {}, "downwardAPI": {}}],
        "containers": [ctr(volumeMounts=[
            {"name": "data", "mountPath": "/a"}, {"name": "nope", "mountPath": "/a"},
            {"name": "data", "mountPath": "/b", "subPath": "../x"},
            {"name": "data", "mountPath": "/c", "subPath": "/abs"}, {"name": "", "mountPath": ""}])]}, [
        'spec.volumes[1].name: Duplicate value: "data"',
        "spec.volumes[2].hostPath: Forbidden: may not specify more than 1 volume type",
        f'spec.volumes[2].name: Invalid value: "Two": {LABEL_MSG}',
        "spec.volumes[3].configMap.name: Required value",
        "spec.volumes[4].downwarAPI: Forbidden: may not specify more than 1 volume type",
        'spec.containers[0].volumeMounts[1].name: Not found: "nope"',
        'spec.containers[0].volumeMounts[1].mountPath: Invalid value: "/a": must be unique',
        "spec.containers[0].volumeMounts.subPath: Invalid value: \"../x\": must not contain '..'",
        'spec.containers[0].volumeMounts.subPath: Invalid value: "/abs": must be a relative path',
        "spec.containers[0].volumeMounts[4].name: Required value",
        'spec.containers[0].volumeMounts[4].name: Not found: ""',
        "spec.containers[0].volumeMounts[4].mountPath: Required value"]),
    ("resources", {"containers": [ctr(resources={  # requests default to limits, foo included
        "limits": {"cpu": "500m", "foo": "1"},
        "requests": {"cpu": "1", "example.com/gpu": "1", "memory": "-1Gi"}})]}, [
        'spec.containers[0].resources.limits[foo]: Invalid value: "foo": must be a standard '
        'resource type or fully qualified',
        'spec.containers[0].resources.limits[foo]: Invalid value: "foo": must be a standard '
        'resource for containers',
        'spec.containers[0].resources.requests: Invalid value: "1": must be less than or equal '
        'to cpu limit of 500m',
        "spec.containers[0].resources.limits: Required value: Limit must be set for non "
        "overcommitable resources",
        f'spec.containers[0].resources.requests[memory]: Invalid value: "-1Gi": {NONNEG}',
        'spec.containers[0].resources.requests[foo]: Invalid value: "foo": must be a standard '
        'resource type or fully qualified',
        'spec.containers[0].resources.requests[foo]: Invalid value: "foo": must be a standard '
        'resource for containers']),
    ("hugepages", {"containers": [ctr(resources={"limits": {"hugepages-2Mi": "4Mi"}})]},
     ["spec.containers[0].resources: Forbidden: HugePages require cpu or memory"]),
    ("hugepages request must equal limit", {"containers": [ctr(resources={
        "limits": {"hugepages-2Mi": "4Mi", "memory": "1Gi"}, "requests": {"hugepages-2Mi": "2Mi"}})]},
     ['spec.containers[0].resources.requests: Invalid value: "2Mi": must be equal to '
      'hugepages-2Mi limit of 4Mi']),
    ("probes", {"containers": [ctr(
        livenessProbe={"successThreshold": 2, "periodSeconds": -1},
        readinessProbe={"exec": {}, "httpGet": {"port": 80}, "terminationGracePeriodSeconds": 5},
        startupProbe={"httpGet": {"port": "Http_1", "scheme": "FTP",
                                  "httpHeaders": [{"name": "X Y", "value": "1"}]}})]}, [
        "spec.containers[0].livenessProbe: Required value: must specify a handler type",
        f"spec.containers[0].livenessProbe.periodSeconds: Invalid value: -1: {NONNEG}",
        "spec.containers[0].livenessProbe.successThreshold: Invalid value: 2: must be 1",
        "spec.containers[0].readinessProbe.exec.command: Required value",
        "spec.containers[0].readinessProbe.httpGet: Forbidden: may not specify more than 1 "
        "handler type",
        "spec.containers[0].readinessProbe.terminationGracePeriodSeconds: Invalid value: 5: "
        "must not be set for readinessProbes",
        'spec.containers[0].startupProbe.httpGet.port: Invalid value: "Http_1": must contain '
        'only alpha-numeric characters (a-z, 0-9), and hyphens (-)',
        'spec.containers[0].startupProbe.httpGet.scheme: Unsupported value: "FTP": supported '
        'values: "HTTP", "HTTPS"',
        'spec.containers[0].startupProbe.httpGet.httpHeaders: Invalid value: "X Y": a valid HTTP '
        "header must consist of alphanumeric characters or '-' (e.g. 'X-Header-Name', regex "
        "used for validation is '[-A-Za-z0-9]+')"]),
    ("lifecycle sleep and restartPolicy", {"containers": [ctr(
        lifecycle={"preStop": {"sleep": {"seconds": 60}}}, restartPolicy="Always")]}, [
        "spec.containers[0].lifecycle.preStop.sleep: Invalid value: 60: must be greater than 0 "
        "and less than terminationGracePeriodSeconds (30)",
        "spec.containers[0].restartPolicy: Forbidden: may not be set for non-init containers"]),
    ("init containers", {"containers": [ctr()], "initContainers": [
        ctr(name="c"), ctr(name="i", restartPolicy="Never", readinessProbe={"exec": {"command": ["x"]}}),
        ctr(name="s", restartPolicy="Always", readinessProbe={"exec": {"command": ["x"]}})]}, [
        'spec.initContainers[0].name: Duplicate value: "c"',
        'spec.initContainers[1].restartPolicy: Unsupported value: "Never": supported values: '
        '"Always"',
        "spec.initContainers[1].readinessProbe: Forbidden: may not be set for init containers "
        "without restartPolicy=Always"]),
    ("pod policies", {"containers": [ctr()], "restartPolicy": "Sometimes", "dnsPolicy": "Cluster",
                      "preemptionPolicy": "Maybe", "os": {"name": "plan9"}}, [
        'spec.restartPolicy: Unsupported value: "Sometimes": supported values: "Always", '
        '"OnFailure", "Never"',
        'spec.dnsPolicy: Unsupported value: "Cluster": supported values: '
        '"ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"',
        'spec.preemptionPolicy: Unsupported value: "Maybe": supported values: '
        '"PreemptLowerPriority", "Never"',
        'spec.os: Unsupported value: "plan9": supported values: "linux", "windows"']),
    ("node selector and security context", {
        "containers": [ctr(securityContext={"runAsUser": -1})], "nodeSelector": {"disk": "ss d"},
        "hostPID": True, "shareProcessNamespace": True,
        "securityContext": {"runAsGroup": 2147483648, "supplementalGroups": [1, -5]}}, [
        "spec.containers[0].securityContext.runAsUser: Invalid value: -1: must be between 0 and "
        "2147483647, inclusive",
        f'spec.nodeSelector: Invalid value: "ss d": {LABEL_VALUE_MSG}',
        "spec.securityContext.runAsGroup: Invalid value: 2147483648: must be between 0 and "
        "2147483647, inclusive",
        "spec.securityContext.supplementalGroups[1]: Invalid value: -5: must be between 0 and "
        "2147483647, inclusive",
        "spec.securityContext.shareProcessNamespace: Invalid value: true: ShareProcessNamespace "
        "and HostPID cannot both be enabled"]),
    ("dns none without config", {"containers": [ctr()], "dnsPolicy": "None"},
     ["spec.dnsConfig: Required value: must provide `dnsConfig` when `dnsPolicy` is None"]),
    ("dns config", {"containers": [ctr()], "dnsConfig": {
        "nameservers": ["1.1.1.1", "8.8.8.8", "9.9.9.9", "dns"], "searches": ["Corp.example."],
        "options": [{"value": "1"}]}}, [
        'spec.dnsConfig.nameservers: Invalid value: []string{"1.1.1.1", "8.8.8.8", "9.9.9.9", '
        '"dns"}: must not have more than 3 nameservers',
        f'spec.dnsConfig.nameservers[3]: Invalid value: "dns": {IP_MSG}',
        f'spec.dnsConfig.searches[0]: Invalid value: "Corp.example": {SUBDOMAIN_MSG}',
        "spec.dnsConfig.options[0]: Required value: must not be empty"]),
    ("gates and names", {
        "containers": [ctr()], "readinessGates": [{"conditionType": "a/b/c"}],
        "schedulingGates": [{"name": "x"}, {"name": "x"}], "serviceAccountName": "Robot",
        "activeDeadlineSeconds": 0, "hostname": "web_1", "subdomain": "-s",
        "priorityClassName": "High"}, [
        "spec.readinessGates[0].conditionType: Invalid value: \"a/b/c\": a qualified name must "
        "consist of alphanumeric characters, '-', '_' or '.', and must start and end with an "
        "alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for "
        "validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an optional DNS "
        "subdomain prefix and '/' (e.g. 'example.com/MyName')",
        'spec.schedulingGates[1]: Duplicate value: "x"',
        f'spec.serviceAccountName: Invalid value: "Robot": {SUBDOMAIN_MSG}',
        "spec.activeDeadlineSeconds: Invalid value: 0: must be between 1 and 2147483647, "
        "inclusive",
        f'spec.hostname: Invalid value: "web_1": {LABEL_MSG}',
        f'spec.subdomain: Invalid value: "-s": {LABEL_MSG}',
        f'spec.priorityClassName: Invalid value: "High": {SUBDOMAIN_MSG}']),
    ("tolerations", {"containers": [ctr()], "tolerations": [
        {"operator": "Equal", "value": "x"}, {"key": "k", "tolerationSeconds": 5},
        {"key": "k", "operator": "Exists", "value": "v"}, {"key": "k", "operator": "Like"},
        {"key": "k", "effect": "Never"}, {"key": "k", "value": "a b"}]}, [
        'spec.tolerations[0].operator: Invalid value: "Equal": operator must be Exists when '
        '`key` is empty, which means "match all values and all keys"',
        'spec.tolerations[1].effect: Invalid value: "": effect must be \'NoExecute\' when '
        '`tolerationSeconds` is set',
        'spec.tolerations[2].operator: Invalid value: core.Toleration{Key:"k", '
        'Operator:"Exists", Value:"v", Effect:"", TolerationSeconds:(*int64)(nil)}: value must '
        "be empty when `operator` is 'Exists'",
        'spec.tolerations[3].operator: Unsupported value: "Like": supported values: "Equal", '
        '"Exists"',
        'spec.tolerations[4].effect: Unsupported value: "Never": supported values: '
        '"NoSchedule", "PreferNoSchedule", "NoExecute"',
        f'spec.tolerations[5].operator: Invalid value: "a b": {LABEL_VALUE_MSG}']),
    ("host aliases", {"containers": [ctr()], "hostAliases": [
        {"ip": "10.0.0.300", "hostnames": ["ok.example", "Bad"]}]}, [
        f'spec.hostAliases[0].ip: Invalid value: "10.0.0.300": {IP_MSG}',
        f'spec.hostAliases[0].hostnames[1]: Invalid value: "Bad": {SUBDOMAIN_MSG}']),
    ("host network ports", {"hostNetwork": True, "containers": [
        ctr(ports=[{"containerPort": 80, "hostPort": 8080}])]},
     ["spec.containers[0].ports[0].hostPort: Invalid value: 8080: must match `containerPort` "
      "when `hostNetwork` is true"]),
    ("image whitespace, ephemeral containers, gated node", {
        "containers": [ctr(image=" nginx")], "nodeName": "n1",
        "schedulingGates": [{"name": "wait"}],
        "ephemeralContainers": [{"name": "debug", "image": "busybox"}]}, [
        'spec.containers[0].image: Invalid value: " nginx": must not have leading or trailing '
        'whitespace',
        "spec.ephemeralContainers: Forbidden: cannot be set on create",
        "spec.nodeName: Forbidden: cannot be set until all schedulingGates have been cleared"]),
    ("projected token without service account", {
        "containers": [ctr()], "volumes": [{"name": "t", "projected": {"sources": [
            {"serviceAccountToken": {"path": "token"}}]}}]},
     ["spec.volumes[0].projected.sources[0].serviceAccountToken: Forbidden: must not be "
      "specified when serviceAccountName is not set"]),
]


@pytest.mark.parametrize("spec,want", [c[1:] for c in POD_CREATE_CASES],
                         ids=[c[0] for c in POD_CREATE_CASES])
def test_pod_create_validation(spec, want):
    assert pod_errors(copy.deepcopy(spec)) == want


@pytest.mark.parametrize("annotations,spec,want", [
    ({"controller.kubernetes.io/pod-deletion-cost": "007"}, None,
     ['metadata.annotations[controller.kubernetes.io/pod-deletion-cost]: Invalid value: "007": '
      'must be a 32bit integer']),
    ({"controller.kubernetes.io/pod-deletion-cost": "-2147483648"}, None, []),
    ({"controller.kubernetes.io/pod-deletion-cost": "2147483648"}, None,
     ['metadata.annotations[controller.kubernetes.io/pod-deletion-cost]: Invalid value: '
      '"2147483648": must be a 32bit integer']),
    ({"kubernetes.io/config.mirror": "x"}, None,
     ['metadata.annotations[kubernetes.io/config.mirror]: Invalid value: "x": must set '
      'spec.nodeName if mirror pod annotation is set']),
])
def test_pod_specific_annotations(annotations, spec, want):
    assert pod_errors(spec or {"containers": [ctr()]}, annotations) == want


# ==============================================================================================
# Pod updates
# ==============================================================================================

def pod_update_errors(old: dict, mutate) -> list[str]:
    new = copy.deepcopy(old)
    mutate(new)
    new["status"] = copy.deepcopy(old["status"])  # a main-resource write keeps the status
    w.default_pod(new)
    return messages(w.validate_pod(new) + w.validate_pod_update(new, old))


def base_pod(**spec) -> dict:
    """A stored pod: defaulted at creation, with its uid."""
    p = defaulted_pod({"containers": [ctr()], **spec})
    p["metadata"]["uid"] = "0f6ef1d4-6d3c-4d7b-9d2a-6a3c2b1e0a11"
    return p


def test_pod_image_and_allowed_fields_may_change():
    old = base_pod(activeDeadlineSeconds=100)

    def mutate(p):
        p["spec"]["containers"][0]["image"] = "nginx:1.27"
        p["spec"]["activeDeadlineSeconds"] = 50
        p["spec"]["tolerations"].append({"key": "gpu", "operator": "Exists"})
        p["spec"]["tolerations"][0]["tolerationSeconds"] = 30
    assert pod_update_errors(old, mutate) == []


def test_pod_spec_change_is_forbidden_with_a_diff():
    old = base_pod()

    def mutate(p):
        p["spec"]["restartPolicy"] = "Never"
        p["spec"]["containers"][0]["image"] = "nginx:2"  # allowed, not in the diff
    assert pod_update_errors(old, mutate) == [
        f"spec: Forbidden: pod updates may not change fields other than {UPDATABLE}\n"
        "  core.PodSpec{\n"
        "  \t... // 4 identical fields\n"
        '- \tRestartPolicy: "Always",\n'
        '+ \tRestartPolicy: "Never",\n'
        "  \t... // 29 identical fields\n"
        "  }\n"]


def test_pod_container_field_change_diff_names_the_field():
    old = base_pod()

    def mutate(p):
        p["spec"]["containers"][0]["ports"] = [{"containerPort": 80}]
    msg = pod_update_errors(old, mutate)
    assert msg == [
        f"spec: Forbidden: pod updates may not change fields other than {UPDATABLE}\n"
        "  core.PodSpec{\n"
        "  \t... // 2 identical fields\n"
        "  \tContainers: []core.Container{\n"
        "  \t\t{\n"
        "- \t\t\tPorts: nil,\n"
        '+ \t\t\tPorts: {{ContainerPort: 80, Protocol: "TCP"}},\n'
        "  \t\t},\n"
        "  \t},\n"
        "  \t... // 31 identical fields\n"
        "  }\n"]


@pytest.mark.parametrize("mutate,want", [
    (lambda p: p["spec"]["containers"].append(ctr(name="d")),
     ["spec.containers: Forbidden: pod updates may not add or remove containers"]),
    (lambda p: p["spec"]["containers"][0].update(image=""),
     ["spec.containers[0].image: Required value"]),
    (lambda p: p["spec"].update(activeDeadlineSeconds=200),
     ["spec.activeDeadlineSeconds: Invalid value: 200: must be less than or equal to previous "
      "value"]),
    (lambda p: p["spec"].pop("activeDeadlineSeconds"),
     ["spec.activeDeadlineSeconds: Invalid value: null: must not update from a positive "
      "integer to nil value"]),
    (lambda p: p["spec"]["tolerations"].pop(0),
     ["spec.tolerations: Forbidden: existing toleration can not be modified except its "
      "tolerationSeconds"]),
    (lambda p: p["spec"].update(schedulingGates=[{"name": "late"}]),
     ["spec.schedulingGates[0].name: Forbidden: only deletion is allowed, but found new "
      "scheduling gate 'late'"]),
])
def test_pod_update_rules(mutate, want):
    old = base_pod(activeDeadlineSeconds=100, tolerations=[{"key": "a", "operator": "Exists"}])
    assert pod_update_errors(old, mutate) == want


def test_pod_negative_deadline_stops_the_update_checks():
    old = base_pod(activeDeadlineSeconds=100)

    def mutate(p):
        p["spec"]["activeDeadlineSeconds"] = -1
        p["spec"]["restartPolicy"] = "Never"
    assert pod_update_errors(old, mutate) == [
        "spec.activeDeadlineSeconds: Invalid value: -1: must be between 1 and 2147483647, "
        "inclusive",
        "spec.activeDeadlineSeconds: Invalid value: -1: must be between 0 and 2147483647, "
        "inclusive"]


def test_pod_qos_is_immutable():
    old = base_pod()

    def mutate(p):
        p["spec"]["containers"][0]["resources"] = {"limits": {"cpu": "1", "memory": "1Gi"}}
    errs = pod_update_errors(old, mutate)
    assert errs[0] == 'metadata: Invalid value: "BestEffort": Pod QoS is immutable'
    assert errs[1].startswith("spec: Forbidden: pod updates may not change fields other than")


def status_write_errors(old: dict, status: dict) -> list[str]:
    new = copy.deepcopy(old)
    new["status"] = status
    w.default_pod_status(new)
    return messages(w.validate_pod_update(new, old))


def test_pod_status_written_by_the_node_is_valid():
    old = base_pod(nodeName="node-1")
    status = {"phase": "Running", "hostIP": "192.168.1.10", "podIP": "10.244.1.5",
              "startTime": "2025-01-01T00:00:00Z", "qosClass": "BestEffort",
              "conditions": [{"type": t, "status": "True"} for t in
                             ("PodReadyToStartContainers", "Initialized", "Ready",
                              "ContainersReady", "PodScheduled")],
              "containerStatuses": [{"name": "c", "ready": True, "restartCount": 0,
                                     "image": "nginx", "imageID": "", "started": True,
                                     "state": {"running": {"startedAt": "2025-01-01T00:00:01Z"}}}]}
    assert status_write_errors(old, status) == []


@pytest.mark.parametrize("status,want", [
    ({"podIPs": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}, {"ip": "10.0.0.1"}]}, [
        'status.podIPs: Invalid value: []core.PodIP{core.PodIP{IP:"10.0.0.1"}, '
        'core.PodIP{IP:"10.0.0.2"}, core.PodIP{IP:"10.0.0.1"}}: may specify no more than one IP '
        'for each IP family',
        'status.podIPs[2]: Duplicate value: core.PodIP{IP:"10.0.0.1"}']),
    ({"podIP": "10.0.0.999"}, [f'status.podIPs[0]: Invalid value: "10.0.0.999": {IP_MSG}']),
    ({"podIPs": [{"ip": "10.0.0.1"}, {"ip": "fd00::1"}]}, []),
    ({"hostIP": "192.168.1.1", "hostIPs": [{"ip": "192.168.1.1"}, {"ip": "192.168.1.1"}]}, [
        'status.hostIPs[1]: Duplicate value: core.HostIP{IP:"192.168.1.1"}',
        'status.hostIPs: Invalid value: []core.HostIP{core.HostIP{IP:"192.168.1.1"}, '
        'core.HostIP{IP:"192.168.1.1"}}: may specify no more than one IP for each IP family']),
    ({"conditions": [{"type": "Ready"}, {"type": "example.com/ok"}, {"type": "bad type"}]}, [
        "metadata.conditions[2].Type: Invalid value: \"bad type\": name part must consist of "
        "alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric "
        "character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is "
        "'([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"]),
    ({"nominatedNodeName": "Node_1"},
     [f'status.nominatedNodeName: Invalid value: "Node_1": {SUBDOMAIN_MSG}']),
])
def test_pod_status_validation(status, want):
    assert status_write_errors(base_pod(), dict(status, qosClass="BestEffort")) == want


def test_terminated_container_may_not_restart_under_never():
    old = base_pod(restartPolicy="Never")
    old["status"]["containerStatuses"] = [
        {"name": "c", "state": {"terminated": {"exitCode": 0}}}]
    new_status = {"qosClass": "BestEffort",
                  "containerStatuses": [{"name": "c", "state": {"running": {}}}]}
    assert status_write_errors(old, new_status) == [
        "status.containerStatuses[0].state: Forbidden: may not be transitioned to "
        "non-terminated state"]
    old = base_pod()  # restartPolicy Always
    old["status"]["containerStatuses"] = [
        {"name": "c", "state": {"terminated": {"exitCode": 0}}}]
    assert status_write_errors(old, new_status) == []


def test_mirror_pod_annotation_may_not_be_added():
    old = base_pod(nodeName="n1")

    def mutate(p):
        p["metadata"]["annotations"] = {"kubernetes.io/config.mirror": "x"}
    assert pod_update_errors(old, mutate) == [
        "metadata.annotations[kubernetes.io/config.mirror]: Forbidden: may not add mirror pod "
        "annotation"]


# ==============================================================================================
# Nodes
# ==============================================================================================

def agent_node(**spec) -> dict:
    """A Node as a node agent registers it."""
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": "node-1", "labels": {"kubernetes.io/hostname": "node-1",
                                                      "kubernetes.io/os": "linux"}},
            "spec": spec,
            "status": {"capacity": {"cpu": "4", "memory": "16380276Ki", "pods": "110"},
                       "addresses": [{"type": "InternalIP", "address": "192.168.1.10"},
                                     {"type": "Hostname", "address": "node-1"}],
                       "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                                       "lastHeartbeatTime": "2025-01-01T00:00:00Z",
                                       "lastTransitionTime": "2025-01-01T00:00:00Z"}],
                       "nodeInfo": {"kubeletVersion": "v1.32.0", "architecture": "amd64",
                                    "operatingSystem": "linux"},
                       "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}}}}


def test_node_defaults():
    node = agent_node(podCIDR="10.244.1.0/24")
    w.default_node(node)
    assert node["spec"] == {"podCIDR": "10.244.1.0/24", "podCIDRs": ["10.244.1.0/24"]}
    assert node["status"]["allocatable"] == {"cpu": "4", "memory": "16380276Ki", "pods": "110"}
    node = agent_node(podCIDRs=["10.244.2.0/24"])
    w.default_node(node)
    assert node["spec"]["podCIDR"] == "10.244.2.0/24"
    assert messages(w.validate_node(node)) == []


@pytest.mark.parametrize("spec,status,want", [
    ({"taints": [{"key": "a b", "value": "x/y", "effect": "NoSchedule"},
                 {"key": "k"}, {"key": "k", "effect": "Sometimes"},
                 {"key": "d", "effect": "NoExecute"}, {"key": "d", "effect": "NoExecute"}]}, None, [
        "metadata.taints[0].key: Invalid value: \"a b\": name part must consist of alphanumeric "
        "characters, '-', '_' or '.', and must start and end with an alphanumeric character "
        "(e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is "
        "'([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')",
        f'metadata.taints[0].value: Invalid value: "x/y": {LABEL_VALUE_MSG}',
        "metadata.taints[1].effect: Required value",
        'metadata.taints[2].effect: Unsupported value: "Sometimes": supported values: '
        '"NoSchedule", "PreferNoSchedule", "NoExecute"',
        'metadata.taints[4]: Duplicate value: core.Taint{Key:"d", Value:"", Effect:"NoExecute", '
        'TimeAdded:(*v1.Time)(nil)}: taints must be unique by key and effect pair']),
    ({}, {"capacity": {"cpu": "-1", "memory": "1Gi"}},
     [f'status.capacity.cpu: Invalid value: "-1": {NONNEG}',
      f'status.allocatable.cpu: Invalid value: "-1": {NONNEG}']),
    ({"podCIDRs": ["10.244.0.0/24", "10.245.0.0/24", "10.244.0.0/24"]}, None, [
        'spec.podCIDRs: Invalid value: []string{"10.244.0.0/24", "10.245.0.0/24", '
        '"10.244.0.0/24"}: may specify no more than one CIDR for each IP family',
        'spec.podCIDRs[2]: Duplicate value: "10.244.0.0/24"']),
    ({"podCIDR": "10.244.0.300/24"}, None,
     [f'spec.podCIDRs[0]: Invalid value: "10.244.0.300/24": {CIDR_MSG}']),
    ({"podCIDRs": ["10.244.0.0/24", "fd00:10:244::/64"]}, None, []),
])
def test_node_validation(spec, status, want):
    node = agent_node(**spec)
    if status is not None:
        node["status"] = status
    w.default_node(node)
    assert messages(w.validate_node(node)) == want


@pytest.mark.parametrize("old_spec,new_spec,want", [
    ({}, {"podCIDR": "10.244.1.0/24"}, []),  # the node IPAM controller's first assignment
    ({"podCIDR": "10.244.1.0/24"}, {"podCIDR": "10.244.9.0/24"},
     ['spec.podCIDRs: Forbidden: node updates may not change podCIDR except from "" to valid']),
    ({"podCIDRs": ["10.244.1.0/24"]}, {"podCIDRs": ["10.244.1.0/24", "fd00::/64"]},
     ['spec.podCIDRs: Forbidden: node updates may not change podCIDR except from "" to valid']),
    ({"providerID": "a://1"}, {"providerID": "a://2"},
     ['spec.providerID: Forbidden: node updates may not change providerID except from "" to '
      'valid']),
    ({}, {"unschedulable": True, "taints": [{"key": "k", "effect": "NoSchedule"}]}, []),
])
def test_node_update(old_spec, new_spec, want):
    old, new = agent_node(**old_spec), agent_node(**new_spec)
    w.default_node(old)
    w.default_node(new)
    assert messages(w.validate_node(new) + w.validate_node_update(new, old)) == want


def test_node_duplicate_addresses():
    old = agent_node()
    new = copy.deepcopy(old)
    new["status"]["addresses"].append({"type": "Hostname", "address": "node-1"})
    assert messages(w.validate_node_update(new, old)) == [
        'status.addresses[2]: Duplicate value: core.NodeAddress{Type:"Hostname", '
        'Address:"node-1"}']


# ==============================================================================================
# Namespaces
# ==============================================================================================

def test_namespace_defaults_and_finalizers():
    ns = {"metadata": {"name": "team-a"}}
    w.default_namespace(ns)
    assert ns == {"metadata": {"name": "team-a",
                               "labels": {"kubernetes.io/metadata.name": "team-a"}},
                  "spec": {"finalizers": ["kubernetes"]}}
    ns["spec"]["finalizers"] = ["kubernetes", "custom", "example.com/cleanup", "a b/c"]
    assert messages(w.validate_namespace(ns)) == [
        'spec.finalizers: Invalid value: "custom": name is neither a standard finalizer name '
        'nor is it fully qualified',
        f'spec.finalizers: Invalid value: "a b/c": prefix part {SUBDOMAIN_MSG}']


@pytest.mark.parametrize("deleting,phase,want", [
    (False, "Active", []),
    (False, "Terminating",
     ['status.Phase: Invalid value: "Terminating": may only be \'Active\' if '
      '`deletionTimestamp` is empty']),
    (True, "Active",
     ['status.Phase: Invalid value: "Active": may only be \'Terminating\' if '
      '`deletionTimestamp` is not empty']),
])
def test_namespace_status_phase(deleting, phase, want):
    old = {"metadata": {"name": "n"}, "spec": {}, "status": {"phase": "Unknown"}}
    new = copy.deepcopy(old)
    new["status"]["phase"] = phase
    if deleting:
        new["metadata"]["deletionTimestamp"] = "2025-01-01T00:00:00Z"
    assert messages(w.validate_namespace_update(new, old)) == want


# ==============================================================================================
# Endpoints
# ==============================================================================================

def endpoints(subsets: list, name: str = "web") -> dict:
    return {"metadata": {"name": name, "namespace": "default"}, "subsets": subsets}


@pytest.mark.parametrize("subsets,want", [
    ([{"addresses": [{"ip": "10.244.1.5", "nodeName": "node-1",
                      "targetRef": {"kind": "Pod", "name": "p", "namespace": "default"}}],
       "notReadyAddresses": [{"ip": "10.244.1.6", "nodeName": ""}],
       "ports": [{"name": "http", "port": 80}, {"name": "https", "port": 443}]}], []),
    ([{"ports": [{"port": 80}]}],
     ["subsets[0]: Required value: must specify `addresses` or `notReadyAddresses`"]),
    ([{"addresses": [{"ip": "127.0.0.1"}, {"ip": "10.0.0.x", "hostname": "Web"},
                     {"ip": "169.254.1.1", "nodeName": "Node"}],
       "ports": [{"port": 0, "protocol": "HTTP"}, {"name": "a", "port": 1, "appProtocol": "a b"}]}], [
        'subsets[0].addresses[0].ip: Invalid value: "127.0.0.1": may not be in the loopback '
        'range (127.0.0.0/8, ::1/128)',
        f'subsets[0].addresses[1].ip: Invalid value: "10.0.0.x": {IP_MSG}',
        f'subsets[0].addresses[1].hostname: Invalid value: "Web": {LABEL_MSG}',
        'subsets[0].addresses[1].ip: Invalid value: "10.0.0.x": must be a valid IP address',
        f'subsets[0].addresses[2].nodeName: Invalid value: "Node": {SUBDOMAIN_MSG}',
        'subsets[0].addresses[2].ip: Invalid value: "169.254.1.1": may not be in the '
        'link-local range (169.254.0.0/16, fe80::/10)',
        "subsets[0].ports[0].name: Required value",
        f"subsets[0].ports[0].port: Invalid value: 0: {PORT_RANGE}",
        'subsets[0].ports[0].protocol: Unsupported value: "HTTP": supported values: "SCTP", '
        '"TCP", "UDP"',
        "subsets[0].ports[1].appProtocol: Invalid value: \"a b\": name part must consist of "
        "alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric "
        "character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is "
        "'([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"]),
])
def test_endpoints_validation(subsets, want):
    ep = endpoints(subsets)
    w.default_endpoints(ep)
    assert messages(w.validate_endpoints(ep)) == want


def test_endpoints_defaults_and_the_api_server_endpoints():
    ep = endpoints([{"addresses": [{"ip": "127.0.0.1"}], "ports": [{"name": "https", "port": 6443}]}],
                   name="kubernetes")
    w.default_endpoints(ep)
    assert ep["subsets"][0]["ports"] == [{"name": "https", "port": 6443, "protocol": "TCP"}]
    assert messages(w.validate_endpoints(ep)) == []


# ==============================================================================================
# EndpointSlices
# ==============================================================================================

def eps(address_type="IPv4", endpoints=None, ports=None, name="web-abc12") -> dict:
    body = {"metadata": {"name": name, "namespace": "default",
                         "labels": {"kubernetes.io/service-name": "web"}},
            "addressType": address_type, "endpoints": endpoints or [], "ports": ports or []}
    if address_type is None:
        del body["addressType"]
    return body


def test_slice_written_by_the_controller_is_valid_and_ports_default():
    es = eps(endpoints=[{"addresses": ["10.244.1.5"],
                         "conditions": {"ready": True, "serving": True, "terminating": False},
                         "nodeName": "node-1", "zone": "z1", "hostname": "web-0",
                         "targetRef": {"kind": "Pod", "namespace": "default", "name": "web-0",
                                       "uid": "1234"}}],
             ports=[{"name": "http", "protocol": "TCP", "port": 8080}, {"port": 53}])
    w.default_endpoint_slice(es)
    assert es["ports"][1] == {"port": 53, "name": "", "protocol": "TCP"}
    assert messages(w.validate_endpoint_slice(es)) == []


@pytest.mark.parametrize("body,want", [
    (eps(address_type=None), ["addressType: Required value"]),
    (eps(address_type="IP"),
     ['addressType: Unsupported value: "IP": supported values: "FQDN", "IPv4", "IPv6"']),
    (eps(endpoints=[{"addresses": []}, {"addresses": ["fd00::1", "10.0.0.0"]},
                    {"addresses": ["10.0.0.1"], "nodeName": "N", "hostname": "a.b",
                     "deprecatedTopology": {"k": "a b"},
                     "hints": {"forZones": [{"name": "z"}, {"name": "z"}]}}]), [
        "endpoints[0].addresses: Required value: must contain at least 1 address",
        'endpoints[1].addresses[0]: Invalid value: "fd00::1": must be a valid IPv4 address',
        f'endpoints[2].nodeName: Invalid value: "N": {SUBDOMAIN_MSG}',
        f'endpoints[2].deprecatedTopology: Invalid value: "a b": {LABEL_VALUE_MSG}',
        f'endpoints[2].hostname: Invalid value: "a.b": {LABEL_MSG}',
        'endpoints[2].hints.forZones[1].name: Duplicate value: "z"']),
    (eps(address_type="IPv6", endpoints=[{"addresses": ["::1", "10.1.1.1"]}]), [
        'endpoints[0].addresses[0]: Invalid value: "::1": may not be in the loopback range '
        '(127.0.0.0/8, ::1/128)',
        'endpoints[0].addresses[1]: Invalid value: "10.1.1.1": must be a valid IPv6 address']),
    (eps(address_type="FQDN", endpoints=[{"addresses": ["db.example.com.", "db", "Db.example"]}]), [
        'endpoints[0].addresses[1]: Invalid value: "db": should be a domain with at least two '
        'segments separated by dots',
        f'endpoints[0].addresses[2]: Invalid value: "Db.example": {SUBDOMAIN_MSG}']),
    (eps(ports=[{"name": "http", "port": 80}, {"name": "http", "port": 81},
                {"name": "Web", "protocol": "HTTP", "appProtocol": "a b"}]), [
        'ports[1].name: Duplicate value: "http"',
        f'ports[2].name: Invalid value: "Web": {LABEL_MSG}',
        'ports[2].protocol: Unsupported value: "HTTP": supported values: "SCTP", "TCP", "UDP"',
        "ports[2].appProtocol: Invalid value: \"a b\": name part must consist of alphanumeric "
        "characters, '-', '_' or '.', and must start and end with an alphanumeric character "
        "(e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is "
        "'([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"]),
    (eps(endpoints=[{"addresses": ["10.0.0.1"]}] * 1001),
     ["endpoints: Too many: 1001: must have at most 1000 items"]),
    (eps(endpoints=[{"addresses": ["10.0.0.1"] * 101}]),
     ["endpoints[0].addresses: Too many: 101: must have at most 100 items"]),
    (eps(ports=[{"port": p} for p in range(1, 20002)]),
     ["ports: Too many: 20001: must have at most 20000 items"]),
])
def test_endpoint_slice_validation(body, want):
    body = copy.deepcopy(body)
    w.default_endpoint_slice(body)
    assert messages(w.validate_endpoint_slice(body)) == want


def test_endpoint_slice_unspecified_address_and_missing_protocol():
    es = eps(endpoints=[{"addresses": ["0.0.0.0"]}], ports=[{"port": 80, "name": "a"}])
    assert messages(w.validate_endpoint_slice(es)) == [
        'endpoints[0].addresses[0]: Invalid value: "0.0.0.0": may not be unspecified (0.0.0.0)',
        "ports[0].protocol: Required value"]


def test_endpoint_slice_address_type_is_immutable():
    old, new = eps(), eps(address_type="IPv6")
    assert messages(w.validate_endpoint_slice_update(new, old)) == [
        'addressType: Invalid value: "IPv6": field is immutable']


# ==============================================================================================
# Deployments and ReplicaSets
# ==============================================================================================

def kubectl_deployment(**spec) -> dict:
    """What `kubectl create deployment web --image=x --replicas=2` sends."""
    body = {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"containers": [{"name": "x", "image": "x",
                                                           "resources": {}}]}},
                     "strategy": {}},
            "status": {}}
    body["spec"].update(spec)
    return body


def deployment_errors(**spec) -> list[str]:
    d = kubectl_deployment(**spec)
    w.default_deployment(d)
    return messages(w.validate_deployment(d))


def test_deployment_defaults():
    d = kubectl_deployment()
    w.default_deployment(d)
    assert d["spec"] == {
        "replicas": 2, "selector": {"matchLabels": {"app": "web"}},
        "template": {"metadata": {"labels": {"app": "web"}}, "spec": {
            "containers": [{"name": "x", "image": "x", "resources": {},
                            "imagePullPolicy": "Always",
                            "terminationMessagePath": "/dev/termination-log",
                            "terminationMessagePolicy": "File"}],
            "restartPolicy": "Always", "terminationGracePeriodSeconds": 30,
            "dnsPolicy": "ClusterFirst", "securityContext": {},
            "schedulerName": "default-scheduler"}},
        "strategy": {"type": "RollingUpdate",
                     "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}},
        "revisionHistoryLimit": 10, "progressDeadlineSeconds": 600}
    assert messages(w.validate_deployment(d)) == []
    d = {"spec": {"strategy": {"type": "Recreate"}, "template": {}}}
    w.default_deployment(d)
    assert d["spec"]["strategy"] == {"type": "Recreate"} and d["spec"]["replicas"] == 1


DEPLOYMENT_CASES = [
    ("no selector", {"selector": None}, [
        "spec.selector: Required value",
        'spec.template.metadata.labels: Invalid value: map[string]string{"app":"web"}: '
        '`selector` does not match template `labels`']),
    ("empty selector", {"selector": {}}, [
        "spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string(nil), "
        "MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: empty selector is invalid for "
        "deployment"]),
    ("selector mismatch", {"selector": {"matchLabels": {"app": "api"}}}, [
        'spec.template.metadata.labels: Invalid value: map[string]string{"app":"web"}: '
        '`selector` does not match template `labels`']),
    ("selector expressions", {"selector": {"matchLabels": {"app": "web"}, "matchExpressions": [
        {"key": "tier", "operator": "In"}, {"key": "tier", "operator": "Near",
                                            "values": ["a b"]}]}}, [
        "spec.selector.matchExpressions[0].values: Required value: must be specified when "
        "`operator` is 'In' or 'NotIn'",
        'spec.selector.matchExpressions[1].operator: Invalid value: "Near": not a valid '
        'selector operator',
        f'spec.selector.matchExpressions[1].values[0]: Invalid value: "a b": {LABEL_VALUE_MSG}',
        'spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string{"app":'
        '"web"}, MatchExpressions:[]v1.LabelSelectorRequirement{v1.LabelSelectorRequirement{'
        'Key:"tier", Operator:"In", Values:[]string(nil)}, v1.LabelSelectorRequirement{'
        'Key:"tier", Operator:"Near", Values:[]string{"a b"}}}}: invalid label selector']),
    ("replicas and seconds", {"replicas": -1, "minReadySeconds": -2, "revisionHistoryLimit": -3,
                              "progressDeadlineSeconds": -5}, [
        f"spec.replicas: Invalid value: -1: {NONNEG}",
        f"spec.minReadySeconds: Invalid value: -2: {NONNEG}",
        f"spec.revisionHistoryLimit: Invalid value: -3: {NONNEG}",
        f"spec.progressDeadlineSeconds: Invalid value: -5: {NONNEG}",
        "spec.progressDeadlineSeconds: Invalid value: -5: must be greater than minReadySeconds"]),
    ("progress deadline", {"minReadySeconds": 600},
     ["spec.progressDeadlineSeconds: Invalid value: 600: must be greater than minReadySeconds"]),
    ("template", {"template": {"metadata": {"labels": {"app": "web", "bad key": "x"}},
                               "spec": {"restartPolicy": "Never", "activeDeadlineSeconds": 10,
                                        "containers": [{"name": "x", "image": "x"}]}}}, [
        "spec.template.labels: Invalid value: \"bad key\": name part must consist of "
        "alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric "
        "character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is "
        "'([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')",
        'spec.template.spec.restartPolicy: Unsupported value: "Never": supported values: '
        '"Always"',
        "spec.template.spec.activeDeadlineSeconds: Forbidden: activeDeadlineSeconds in "
        "ReplicaSet is not Supported"]),
    ("template containers", {"template": {"metadata": {"labels": {"app": "web"}},
                                          "spec": {"containers": []}}},
     ["spec.template.spec.containers: Required value"]),
    ("max surge percent", {"strategy": {"rollingUpdate": {"maxSurge": "abc",
                                                          "maxUnavailable": "120%"}}}, [
        'spec.strategy.rollingUpdate.maxSurge: Invalid value: intstr.IntOrString{Type:1, '
        f'IntVal:0, StrVal:"abc"}}: {PERCENT_MSG}',
        'spec.strategy.rollingUpdate.maxUnavailable: Invalid value: intstr.IntOrString{Type:1, '
        'IntVal:0, StrVal:"120%"}: must not be greater than 100%']),
    ("both zero", {"strategy": {"rollingUpdate": {"maxSurge": 0, "maxUnavailable": "0%"}}}, [
        'spec.strategy.rollingUpdate.maxUnavailable: Invalid value: intstr.IntOrString{Type:1, '
        'IntVal:0, StrVal:"0%"}: may not be 0 when `maxSurge` is 0']),
    ("negative int", {"strategy": {"rollingUpdate": {"maxUnavailable": -1}}},
     [f"spec.strategy.rollingUpdate.maxUnavailable: Invalid value: -1: {NONNEG}"]),
    ("recreate with rolling update", {"strategy": {"type": "Recreate",
                                                   "rollingUpdate": {"maxSurge": 1}}},
     ["spec.strategy.rollingUpdate: Forbidden: may not be specified when strategy `type` is "
      "'Recreate'"]),
    ("unknown strategy", {"strategy": {"type": "BlueGreen"}}, [
        'spec.strategy: Unsupported value: apps.DeploymentStrategy{Type:"BlueGreen", '
        'RollingUpdate:(*apps.RollingUpdateDeployment)(nil)}: supported values: "Recreate", '
        '"RollingUpdate"']),
]


@pytest.mark.parametrize("spec,want", [c[1:] for c in DEPLOYMENT_CASES],
                         ids=[c[0] for c in DEPLOYMENT_CASES])
def test_deployment_validation(spec, want):
    spec = copy.deepcopy(spec)
    if spec.get("selector", ...) is None:
        d = kubectl_deployment()
        del d["spec"]["selector"]
        w.default_deployment(d)
        assert messages(w.validate_deployment(d)) == want
        return
    assert deployment_errors(**spec) == want


def test_deployment_selector_is_immutable():
    old = kubectl_deployment()
    w.default_deployment(old)
    new = copy.deepcopy(old)
    new["spec"]["selector"] = {"matchLabels": {"app": "web", "v": "2"}}
    new["spec"]["template"]["metadata"]["labels"]["v"] = "2"
    assert messages(w.validate_deployment(new) + w.validate_deployment_update(new, old)) == [
        'spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string{"app":'
        '"web", "v":"2"}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: field is '
        'immutable']
    same = copy.deepcopy(old)
    same["spec"]["selector"]["matchExpressions"] = []  # nil and empty are the same
    same["spec"]["replicas"] = 5
    assert messages(w.validate_deployment_update(same, old)) == []


def test_deployment_status_write():
    old = kubectl_deployment()
    w.default_deployment(old)
    old["status"] = {"collisionCount": 2}
    new = copy.deepcopy(old)
    new["status"] = {"observedGeneration": 1, "replicas": 1, "updatedReplicas": 2,
                     "readyReplicas": 1, "availableReplicas": 2, "collisionCount": 1}
    assert messages(w.validate_deployment_update(new, old)) == [
        "status.updatedReplicas: Invalid value: 2: cannot be greater than status.replicas",
        "status.availableReplicas: Invalid value: 2: cannot be greater than status.replicas",
        "status.availableReplicas: Invalid value: 2: cannot be greater than readyReplicas",
        "status.collisionCount: Invalid value: 1: cannot be decremented"]
    new["status"] = {"observedGeneration": 1, "replicas": 2, "updatedReplicas": 2,
                     "readyReplicas": 2, "availableReplicas": 2, "collisionCount": 2}
    assert messages(w.validate_deployment_update(new, old)) == []


def replica_set(**spec) -> dict:
    body = {"metadata": {"name": "web-1", "namespace": "default"},
            "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}}
    body["spec"].update(spec)
    return body


def test_replica_set_defaults_and_validation():
    rs = replica_set()
    del rs["spec"]["replicas"]
    w.default_replica_set(rs)
    assert rs["spec"]["replicas"] == 1
    assert rs["spec"]["template"]["spec"]["restartPolicy"] == "Always"
    assert messages(w.validate_replica_set(rs)) == []
    rs = replica_set(replicas=-1, minReadySeconds=-1, selector={"matchLabels": {}})
    w.default_replica_set(rs)
    assert messages(w.validate_replica_set(rs)) == [
        f"spec.replicas: Invalid value: -1: {NONNEG}",
        f"spec.minReadySeconds: Invalid value: -1: {NONNEG}",
        "spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string{}, "
        "MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: empty selector is invalid for "
        "deployment"]


def test_replica_set_update_rules():
    old = replica_set()
    w.default_replica_set(old)
    old["status"] = {"replicas": 0}
    new = copy.deepcopy(old)
    new["spec"]["selector"] = {"matchLabels": {"app": "api"}}
    assert messages(w.validate_replica_set_update(new, old)) == [
        'spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string{"app":'
        '"api"}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: field is immutable']
    new = copy.deepcopy(old)
    new["status"] = {"replicas": 1, "fullyLabeledReplicas": 2, "readyReplicas": -1}
    assert messages(w.validate_replica_set_update(new, old)) == [
        f"status.readyReplicas: Invalid value: -1: {NONNEG}",
        "status.fullyLabeledReplicas: Invalid value: 2: cannot be greater than status.replicas",
        "status.availableReplicas: Invalid value: 0: cannot be greater than readyReplicas"]


# ==============================================================================================
# Through the registry: the rules are registered, and what svcnet writes stays valid
# ==============================================================================================

POD, NODE, NS, SLICE, EP, DEP, RS = (BY_KIND[k] for k in (
    "Pod", "Node", "Namespace", "EndpointSlice", "Endpoints", "Deployment", "ReplicaSet"))


def run(coro):
    return asyncio.run(coro)


async def registry() -> Registry:
    backend = MemoryBackend()
    await backend.start()
    reg = Registry(backend)
    await reg.create(NS, {"metadata": {"name": "default"}})
    return reg


def test_rules_are_registered_on_import():
    for kind in ("Pod", "Node", "Namespace", "Endpoints", "EndpointSlice", "Deployment",
                 "ReplicaSet"):
        rules = strategy.rules_for(kind)
        assert rules.validate.__module__ == w.__name__, kind


def test_system_writes_stay_valid():
    async def go():
        reg = await registry()
        node = agent_node()
        node["metadata"]["name"] = "node-1"
        created = await reg.create(NODE, node)
        assert created["status"]["allocatable"] == created["status"]["capacity"]
        # the node IPAM controller assigns the pod CIDR; the agent heartbeats through /status
        created["spec"] = {"podCIDR": "10.244.1.0/24", "podCIDRs": ["10.244.1.0/24"]}
        created = await reg.update(NODE, "", "node-1", created)
        hb = copy.deepcopy(created)
        hb["status"]["conditions"][0]["lastHeartbeatTime"] = "2025-01-01T00:01:00Z"
        await reg.update(NODE, "", "node-1", hb, subresource="status")

        pod = await reg.create(POD, {"metadata": {"name": "web-0", "namespace": "default",
                                                  "labels": {"app": "web"}},
                                     "spec": {"nodeName": "node-1",
                                              "containers": [{"name": "c", "image": "busybox"}]}})
        pod["status"] = {"phase": "Running", "podIP": "10.244.1.5", "hostIP": "192.168.1.10",
                         "conditions": [{"type": "Ready", "status": "True"}],
                         "containerStatuses": [{"name": "c", "ready": True, "restartCount": 0,
                                                "image": "busybox", "imageID": "",
                                                "state": {"running": {}}}]}
        pod = await reg.update(POD, "default", "web-0", pod, subresource="status")
        assert pod["status"]["podIPs"] == [{"ip": "10.244.1.5"}]
        assert pod["status"]["hostIPs"] == [{"ip": "192.168.1.10"}]
        assert pod["status"]["qosClass"] == "BestEffort"
        # a kubectl label change is a main-resource update that leaves the spec alone
        pod["metadata"]["labels"]["tier"] = "fe"
        await reg.update(POD, "default", "web-0", pod)

        for res, body in (
                (SLICE, {"metadata": {"name": "kubernetes", "namespace": "default",
                                      "labels": {"kubernetes.io/service-name": "kubernetes"}},
                         "addressType": "IPv4",
                         "endpoints": [{"addresses": ["127.0.0.1"], "conditions": {"ready": True}}],
                         "ports": [{"name": "https", "port": 6443, "protocol": "TCP"}]}),
                (EP, {"metadata": {"name": "kubernetes", "namespace": "default"},
                      "subsets": [{"addresses": [{"ip": "127.0.0.1"}],
                                   "ports": [{"name": "https", "port": 6443, "protocol": "TCP"}]}]}),
                (SLICE, {"metadata": {"name": "web-x1", "namespace": "default",
                                      "labels": {"kubernetes.io/service-name": "web"}},
                         "addressType": "IPv4",
                         "endpoints": [{"addresses": ["10.244.1.5"], "nodeName": "node-1",
                                        "conditions": {"ready": True, "serving": True,
                                                       "terminating": False},
                                        "targetRef": {"kind": "Pod", "namespace": "default",
                                                      "name": "web-0", "uid": pod["metadata"]["uid"]}}],
                         "ports": [{"name": "", "port": 80, "protocol": "TCP"}]}),
                (EP, {"metadata": {"name": "web", "namespace": "default"},
                      "subsets": [{"addresses": [{"ip": "10.244.1.5", "nodeName": "",
                                                  "targetRef": {"kind": "Pod", "name": "web-0",
                                                                "namespace": "default"}}],
                                   "ports": [{"port": 80, "protocol": "TCP"}]}]})):
            await reg.create(res, body)

        dep = await reg.create(DEP, kubectl_deployment())
        assert dep["spec"]["strategy"]["rollingUpdate"] == {"maxUnavailable": "25%",
                                                            "maxSurge": "25%"}
        dep["spec"]["replicas"] = 3  # kubectl scale
        await reg.update(DEP, "default", "web", dep)
        dep = await reg.get(DEP, "default", "web")
        dep["status"] = {"observedGeneration": 2, "replicas": 3, "updatedReplicas": 3,
                         "readyReplicas": 3, "availableReplicas": 3}
        await reg.update(DEP, "default", "web", dep, subresource="status")
        await reg.create(RS, replica_set())
    run(go())


def test_registry_errors_read_like_kubectl_shows_them():
    async def go():
        reg = await registry()
        await reg.create(DEP, kubectl_deployment())
        dep = await reg.get(DEP, "default", "web")
        dep["spec"]["selector"] = {"matchLabels": {"app": "web2"}}
        with pytest.raises(APIError) as e:
            await reg.update(DEP, "default", "web", dep)
        assert e.value.code == 422
        assert e.value.message == (
            'Deployment.apps "web" is invalid: [spec.template.metadata.labels: Invalid value: '
            'map[string]string{"app":"web"}: `selector` does not match template `labels`, '
            'spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string{'
            '"app":"web2"}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: field is '
            'immutable]')
        with pytest.raises(APIError) as e:
            await reg.create(POD, {"metadata": {"name": "p", "namespace": "default"},
                                   "spec": {"containers": []}})
        assert e.value.message == 'Pod "p" is invalid: spec.containers: Required value'
        assert e.value.details["causes"] == [
            {"reason": "FieldValueRequired", "message": "Required value",
             "field": "spec.containers"}]
        node = agent_node(podCIDR="10.244.1.0/24")
        await reg.create(NODE, node)
        node = await reg.get(NODE, "", "node-1")
        node["spec"] = {"podCIDR": "10.244.7.0/24", "podCIDRs": ["10.244.7.0/24"]}
        with pytest.raises(APIError) as e:
            await reg.update(NODE, "", "node-1", node)
        assert e.value.message == (
            'Node "node-1" is invalid: spec.podCIDRs: Forbidden: node updates may not change '
            'podCIDR except from "" to valid')
    run(go())


def test_pod_update_through_the_registry_shows_the_diff():
    async def go():
        reg = await registry()
        await reg.create(POD, pod())
        p = await reg.get(POD, "default", "p")
        p["spec"]["dnsPolicy"] = "Default"
        with pytest.raises(APIError) as e:
            await reg.update(POD, "default", "p", p)
        assert e.value.message == (
            'Pod "p" is invalid: spec: Forbidden: pod updates may not change fields other than '
            f'{UPDATABLE}\n'
            "  core.PodSpec{\n"
            "  \t... // 7 identical fields\n"
            '- \tDNSPolicy: "ClusterFirst",\n'
            '+ \tDNSPolicy: "Default",\n'
            "  \t... // 26 identical fields\n"
            "  }\n")
        assert json.loads(json.dumps(e.value.status()))["reason"] == "Invalid"
    run(go())


def test_pod_stored_before_todays_defaults_can_still_be_updated():
    old = base_pod(containers=[ctr(resources={"limits": {"cpu": "0.5"}})])
    old["spec"].pop("preemptionPolicy")  # stored without what admission adds now
    old["spec"]["containers"][0]["resources"] = {"limits": {"cpu": "0.5"},
                                                 "requests": {"cpu": "0.5"}}

    def mutate(p):
        p["metadata"]["labels"] = {"tier": "fe"}
    assert pod_update_errors(old, mutate) == []
