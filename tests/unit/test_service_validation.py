"""Service defaulting, update preparation and validation against Kubernetes 1.32's exact texts.

Every case states the complete list of messages Kubernetes reports, in its order, so a missing,
extra or reordered rule fails the case. Services are written as kubectl sends them and go
through default_service (and prepare_service_update for updates) first, as in the registry.
"""

from __future__ import annotations

import copy

import pytest

from svcnet.registry import strategy
from svcnet.registry.service import (_update_checks, default_service, prepare_service_update,
                                     validate_service, validate_service_update)

from tests.unit.k8s_messages import LABEL_MSG, SUBDOMAIN_MSG, NAME_PART_MSG, LABEL_VALUE_MSG, IP_MSG, CIDR_MSG

DROP = object()  # a spec value meaning "leave the field out"

RANGE_MSG = "must be between 1 and 65535, inclusive"
LB_ONLY = "may only be used when `type` is 'LoadBalancer'"
SRC_ANNOTATION = "service.beta.kubernetes.io/load-balancer-source-ranges"


def port_key(port: int, protocol: str = "TCP") -> str:
    return (f'core.ServicePort{{Name:"", Protocol:"{protocol}", AppProtocol:(*string)(nil), '
            f'Port:{port}, TargetPort:intstr.IntOrString{{Type:0, IntVal:0, StrVal:""}}, NodePort:0}}')


def service(spec: dict | None = None, annotations: dict | None = None) -> dict:
    """A Service as a client sends it: selector app=web and one port 80 unless overridden."""
    body = {"selector": {"app": "web"}, "ports": [{"port": 80}]}
    body.update(spec or {})
    meta = {"name": "web", "namespace": "default"}
    if annotations:
        meta["annotations"] = annotations
    return {"apiVersion": "v1", "kind": "Service", "metadata": meta,
            "spec": {k: v for k, v in body.items() if v is not DROP}}


def create_messages(spec: dict, annotations: dict | None = None, tweak=None) -> list[str]:
    svc = service(spec, annotations)
    default_service(svc)
    if tweak:
        tweak(svc["spec"])
    return [e.message() for e in validate_service(svc)]


# (case, spec, expected messages); each row exercises one rule of ValidateService or of the
# allocator's IP family checks.
CREATE_CASES = [
    ("type unsupported", {"type": "Foo"},
     ['spec.type: Unsupported value: "Foo": supported values: "ClusterIP", "ExternalName", '
      '"LoadBalancer", "NodePort"']),
    ("ports required", {"ports": DROP}, ["spec.ports: Required value"]),
    ("port names required when several", {"ports": [{"port": 80}, {"port": 81}]},
     ["spec.ports[0].name: Required value", "spec.ports[1].name: Required value"]),
    ("port name is a DNS label", {"ports": [{"name": "HTTP", "port": 80}]},
     [f'spec.ports[0].name: Invalid value: "HTTP": {LABEL_MSG}']),
    ("port names unique", {"ports": [{"name": "a", "port": 80}, {"name": "a", "port": 81}]},
     ['spec.ports[1].name: Duplicate value: "a"']),
    ("protocol unsupported", {"ports": [{"port": 80, "protocol": "HTTP"}]},
     ['spec.ports[0].protocol: Unsupported value: "HTTP": supported values: "SCTP", "TCP", "UDP"']),
    ("port above range", {"ports": [{"port": 70000, "targetPort": 8080}]},
     [f"spec.ports[0].port: Invalid value: 70000: {RANGE_MSG}"]),
    ("port missing: port and defaulted targetPort both 0", {"ports": [{"name": "x"}]},
     [f"spec.ports[0].port: Invalid value: 0: {RANGE_MSG}",
      f"spec.ports[0].targetPort: Invalid value: 0: {RANGE_MSG}"]),
    ("targetPort number range", {"ports": [{"port": 80, "targetPort": 65536}]},
     [f"spec.ports[0].targetPort: Invalid value: 65536: {RANGE_MSG}"]),
    ("targetPort name needs a letter", {"ports": [{"port": 80, "targetPort": "8080"}]},
     ['spec.ports[0].targetPort: Invalid value: "8080": must contain at least one letter (a-z)']),
    ("targetPort name: every rule reported", {"ports": [{"port": 80, "targetPort": "-A"}]},
     ['spec.ports[0].targetPort: Invalid value: "-A": must contain only alpha-numeric characters '
      '(a-z, 0-9), and hyphens (-)',
      'spec.ports[0].targetPort: Invalid value: "-A": must contain at least one letter (a-z)',
      'spec.ports[0].targetPort: Invalid value: "-A": must not begin or end with a hyphen']),
    ("targetPort name length", {"ports": [{"port": 80, "targetPort": "abcdefghijklmnop"}]},
     ['spec.ports[0].targetPort: Invalid value: "abcdefghijklmnop": must be no more than 15 '
      'characters']),
    ("targetPort name hyphens", {"ports": [{"port": 80, "targetPort": "a--b"}]},
     ['spec.ports[0].targetPort: Invalid value: "a--b": must not contain consecutive hyphens']),
    ("appProtocol is a qualified name", {"ports": [{"port": 80, "appProtocol": "bad proto"}]},
     [f'spec.ports[0].appProtocol: Invalid value: "bad proto": {NAME_PART_MSG}']),
    ("nodePort forbidden on ClusterIP", {"ports": [{"port": 80, "nodePort": 30080}]},
     ["spec.ports[0].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'"]),
    ("duplicate protocol and port",
     {"ports": [{"name": "a", "port": 80}, {"name": "b", "port": 80, "targetPort": 81}]},
     [f"spec.ports[1]: Duplicate value: {port_key(80)}"]),
    ("duplicate protocol and nodePort",
     {"type": "NodePort", "ports": [{"name": "a", "port": 80, "nodePort": 30080},
                                    {"name": "b", "port": 81, "nodePort": 30080}]},
     ["spec.ports[1].nodePort: Duplicate value: 30080"]),
    ("selector values are label values", {"selector": {"app": "bad value"}},
     [f'spec.selector: Invalid value: "bad value": {LABEL_VALUE_MSG}']),
    ("sessionAffinity unsupported", {"sessionAffinity": "Sticky"},
     ['spec.sessionAffinity: Unsupported value: "Sticky": supported values: "ClientIP", "None"']),
    ("affinity timeout zero",
     {"sessionAffinity": "ClientIP", "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 0}}},
     ["spec.sessionAffinityConfig.clientIP.timeoutSeconds: Invalid value: 0: must be greater than 0 "
      "and less than 86400"]),
    ("affinity timeout above a day",
     {"sessionAffinity": "ClientIP",
      "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 86401}}},
     ["spec.sessionAffinityConfig.clientIP.timeoutSeconds: Invalid value: 86401: must be greater "
      "than 0 and less than 86400"]),
    ("clusterIP not an IP", {"clusterIP": "abc"},
     [f'spec.clusterIPs[0]: Invalid value: "abc": {IP_MSG}']),
    ("clusterIPs at most two",
     {"clusterIP": "10.0.0.1", "clusterIPs": ["10.0.0.1", "2001:db8::1", "10.0.0.3"]},
     ['spec.clusterIPs: Invalid value: []string{"10.0.0.1", "2001:db8::1", "10.0.0.3"}: may only '
      'hold up to 2 values']),
    ("clusterIPs one per family",
     {"clusterIP": "10.0.0.1", "clusterIPs": ["10.0.0.1", "10.0.0.2"],
      "ipFamilyPolicy": "PreferDualStack"},
     ['spec.clusterIPs: Invalid value: []string{"10.0.0.1", "10.0.0.2"}: may specify no more than '
      'one IP for each IP family']),
    ("None first and only", {"clusterIP": "None", "clusterIPs": ["None", "10.0.0.1"]},
     ['spec.clusterIPs: Invalid value: []string{"None", "10.0.0.1"}: \'None\' must be the first '
      'and only value']),
    ("clusterIPs[0] must match clusterIP", {"clusterIP": "10.0.0.1", "clusterIPs": ["10.0.0.2"]},
     ['spec.clusterIPs: Invalid value: []string{"10.0.0.2"}: first value must match `clusterIP`']),
    ("clusterIPs need clusterIP", {"clusterIPs": ["10.0.0.2"]},
     ['spec.clusterIPs: Invalid value: []string{"10.0.0.2"}: must be empty when `clusterIP` is not '
      'specified']),
    ("clusterIP of a family the cluster lacks", {"clusterIP": "2001:db8::1"},
     ['spec.clusterIPs[0]: Invalid value: []string{"2001:db8::1"}: IPv6 is not configured on this '
      'cluster']),
    ("clusterIP must match its family", {"clusterIP": "10.0.0.1", "ipFamilies": ["IPv6"]},
     ['spec.clusterIPs[0]: Invalid value: "10.0.0.1": expected an IPv6 value as indicated by '
      '`ipFamilies[0]`']),
    ("ipFamilies unsupported", {"ipFamilies": ["IPv5"]},
     ['spec.ipFamilies[0]: Unsupported value: "IPv5": supported values: "IPv4", "IPv6"']),
    ("ipFamilies unique", {"ipFamilies": ["IPv4", "IPv4"], "ipFamilyPolicy": "PreferDualStack"},
     ['spec.ipFamilies[1]: Duplicate value: "IPv4"']),
    ("ipFamilies the cluster lacks", {"ipFamilies": ["IPv6"]},
     ['spec.ipFamilies[0]: Invalid value: "IPv6": not configured on this cluster']),
    ("secondary family the cluster lacks",
     {"ipFamilies": ["IPv4", "IPv6"], "ipFamilyPolicy": "PreferDualStack"},
     ['spec.ipFamilies[1]: Invalid value: "IPv6": not configured on this cluster']),
    ("SingleStack with two families", {"ipFamilies": ["IPv4", "IPv6"]},
     ['spec.ipFamilyPolicy: Invalid value: "SingleStack": must be \'RequireDualStack\' or '
      '\'PreferDualStack\' when multiple IP families are specified']),
    ("SingleStack with two cluster IPs",
     {"clusterIP": "10.0.0.1", "clusterIPs": ["10.0.0.1", "2001:db8::1"]},
     ['spec.ipFamilyPolicy: Invalid value: "SingleStack": must be \'RequireDualStack\' or '
      '\'PreferDualStack\' when multiple cluster IPs are specified',
      'spec.clusterIPs[1]: Invalid value: []string{"10.0.0.1", "2001:db8::1"}: IPv6 is not '
      'configured on this cluster']),
    ("ipFamilyPolicy unsupported", {"ipFamilyPolicy": "DualStack"},
     ['spec.ipFamilyPolicy: Unsupported value: "DualStack": supported values: "PreferDualStack", '
      '"RequireDualStack", "SingleStack"']),
    ("RequireDualStack on a single-stack cluster", {"ipFamilyPolicy": "RequireDualStack"},
     ['spec.ipFamilyPolicy: Invalid value: "RequireDualStack": this cluster is not configured for '
      'dual-stack services']),
    ("externalIPs are IPs", {"externalIPs": ["1.2.3"]},
     [f'spec.externalIPs[0]: Invalid value: "1.2.3": {IP_MSG}']),
    ("externalIPs not special",
     {"externalIPs": ["127.0.0.1", "::", "169.254.1.1", "224.0.0.5", "ff02::1"]},
     ['spec.externalIPs[0]: Invalid value: "127.0.0.1": may not be in the loopback range '
      '(127.0.0.0/8, ::1/128)',
      'spec.externalIPs[1]: Invalid value: "::": may not be unspecified (::)',
      'spec.externalIPs[2]: Invalid value: "169.254.1.1": may not be in the link-local range '
      '(169.254.0.0/16, fe80::/10)',
      'spec.externalIPs[3]: Invalid value: "224.0.0.5": may not be in the link-local multicast '
      'range (224.0.0.0/24, ff02::/10)',
      'spec.externalIPs[4]: Invalid value: "ff02::1": may not be in the link-local multicast range '
      '(224.0.0.0/24, ff02::/10)']),
    ("headless LoadBalancer", {"type": "LoadBalancer", "clusterIP": "None"},
     ["spec.clusterIPs[0]: Invalid value: \"None\": may not be set to 'None' for LoadBalancer "
      "services"]),
    ("headless NodePort", {"type": "NodePort", "clusterIP": "None"},
     ["spec.clusterIPs[0]: Invalid value: \"None\": may not be set to 'None' for NodePort services"]),
    ("ExternalName needs externalName", {"type": "ExternalName"},
     ["spec.externalName: Required value"]),
    ("ExternalName is a DNS subdomain", {"type": "ExternalName", "externalName": "Foo_Bar."},
     [f'spec.externalName: Invalid value: "Foo_Bar": {SUBDOMAIN_MSG}']),
    ("ExternalName drops one trailing dot only",
     {"type": "ExternalName", "externalName": "example.com.."},
     [f'spec.externalName: Invalid value: "example.com.": {SUBDOMAIN_MSG}']),
    ("ExternalName takes no cluster IP fields",
     {"type": "ExternalName", "externalName": "example.com", "clusterIP": "10.0.0.1",
      "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack"},
     ["spec.clusterIPs: Forbidden: may not be set for ExternalName services",
      "spec.ipFamilies: Forbidden: may not be set for ExternalName services",
      "spec.ipFamilyPolicy: Forbidden: may not be set for ExternalName services"]),
    ("source ranges only for LoadBalancer", {"loadBalancerSourceRanges": ["10.0.0.0/8"]},
     [f"spec.LoadBalancerSourceRanges: Forbidden: {LB_ONLY}"]),
    ("source ranges are CIDRs",
     {"type": "LoadBalancer", "loadBalancerSourceRanges": [" 10.0.0.0/8 ", "10.0.0.0/33"]},
     [f'spec.LoadBalancerSourceRanges[1]: Invalid value: "10.0.0.0/33": {CIDR_MSG}']),
    ("allocateLoadBalancerNodePorts only for LoadBalancer",
     {"allocateLoadBalancerNodePorts": False},
     [f"spec.allocateLoadBalancerNodePorts: Forbidden: {LB_ONLY}"]),
    ("loadBalancerClass only for LoadBalancer", {"loadBalancerClass": "example.com/lb"},
     [f"spec.loadBalancerClass: Forbidden: {LB_ONLY}"]),
    ("loadBalancerClass is a qualified name",
     {"type": "LoadBalancer", "loadBalancerClass": "example.com/my lb"},
     [f'spec.loadBalancerClass: Invalid value: "example.com/my lb": {NAME_PART_MSG}']),
    ("externalTrafficPolicy only when externally accessible",
     {"externalTrafficPolicy": "Local"},
     ['spec.externalTrafficPolicy: Invalid value: "Local": may only be set for '
      'externally-accessible services']),
    ("externalTrafficPolicy unsupported", {"type": "NodePort", "externalTrafficPolicy": "Global"},
     ['spec.externalTrafficPolicy: Unsupported value: "Global": supported values: "Cluster", '
      '"Local"']),
    ("healthCheckNodePort only for LoadBalancer with Local",
     {"type": "NodePort", "healthCheckNodePort": 30000},
     ["spec.healthCheckNodePort: Invalid value: 30000: may only be set when `type` is "
      "'LoadBalancer' and `externalTrafficPolicy` is 'Local'"]),
    ("healthCheckNodePort range",
     {"type": "LoadBalancer", "externalTrafficPolicy": "Local", "healthCheckNodePort": 70000},
     [f"spec.healthCheckNodePort: Invalid value: 70000: {RANGE_MSG}"]),
    ("internalTrafficPolicy unsupported", {"internalTrafficPolicy": "Zone"},
     ['spec.internalTrafficPolicy: Unsupported value: "Zone": supported values: "Cluster", '
      '"Local"']),
    ("trafficDistribution: only PreferClose in 1.32", {"trafficDistribution": "PreferSameZone"},
     ['spec.trafficDistribution: Unsupported value: "PreferSameZone": supported values: '
      '"PreferClose"']),
]


@pytest.mark.parametrize("case,spec,expected", CREATE_CASES, ids=[c[0] for c in CREATE_CASES])
def test_create_rule(case, spec, expected):
    assert create_messages(spec) == expected


# Rules that defaulting normally satisfies: the spec is changed after defaulting to reach them.
def _set(**fields):
    return lambda spec: spec.update(fields)


def _drop(field):
    return lambda spec: spec.pop(field)


TWEAKED_CASES = [
    ("type required", {}, _set(type=""), ["spec.type: Required value"]),
    ("sessionAffinity required", {}, _set(sessionAffinity=""),
     ["spec.sessionAffinity: Required value"]),
    ("affinity config forbidden with None", {},
     _set(sessionAffinityConfig={"clientIP": {"timeoutSeconds": 10}}),
     ["spec.sessionAffinityConfig: Forbidden: must not be set when session affinity is None"]),
    ("affinity config required with ClientIP", {"sessionAffinity": "ClientIP"},
     _set(sessionAffinityConfig=None),
     ["spec.sessionAffinityConfig: Required value: when session affinity type is ClientIP"]),
    ("affinity clientIP required", {"sessionAffinity": "ClientIP"}, _set(sessionAffinityConfig={}),
     ["spec.sessionAffinityConfig.clientIP: Required value: when session affinity type is ClientIP"]),
    ("affinity timeout required", {"sessionAffinity": "ClientIP"},
     _set(sessionAffinityConfig={"clientIP": {}}),
     ["spec.sessionAffinityConfig.clientIP.timeoutSeconds: Required value: when session affinity "
      "type is ClientIP"]),
    ("protocol required", {}, lambda spec: spec["ports"][0].update(protocol=""),
     ["spec.ports[0].protocol: Required value"]),
    ("externalTrafficPolicy required", {"type": "NodePort"}, _drop("externalTrafficPolicy"),
     ["spec.externalTrafficPolicy: Required value"]),
    ("internalTrafficPolicy required", {}, _drop("internalTrafficPolicy"),
     ["spec.internalTrafficPolicy: Required value"]),
    ("allocateLoadBalancerNodePorts required, with Kubernetes' path", {"type": "LoadBalancer"},
     _drop("allocateLoadBalancerNodePorts"), ["allocateLoadBalancerNodePorts: Required value"]),
    ("clusterIPs required with clusterIP", {"clusterIP": "10.0.0.1"}, _drop("clusterIPs"),
     ["spec.clusterIPs: Required value"]),
]


@pytest.mark.parametrize("case,spec,tweak,expected", TWEAKED_CASES,
                         ids=[c[0] for c in TWEAKED_CASES])
def test_create_rule_behind_defaults(case, spec, tweak, expected):
    assert create_messages(spec, tweak=tweak) == expected


ANNOTATION_CASES = [
    ("source range annotation only for LoadBalancer", {}, {SRC_ANNOTATION: "10.0.0.0/8"},
     [f"metadata.annotations[{SRC_ANNOTATION}]: Forbidden: {LB_ONLY}"]),
    ("source range annotation values are CIDRs", {"type": "LoadBalancer"},
     {SRC_ANNOTATION: " 10.0.0.0/8, bad "},
     [f'metadata.annotations[{SRC_ANNOTATION}]: Invalid value: "bad": {CIDR_MSG}']),
    ("the field wins over the annotation",
     {"type": "LoadBalancer", "loadBalancerSourceRanges": ["10.0.0.0/8"]},
     {SRC_ANNOTATION: "bad"}, []),
    ("topology annotations must agree", {},
     {"service.kubernetes.io/topology-mode": "Auto",
      "service.kubernetes.io/topology-aware-hints": "Disabled"},
     ['metadata.annotations[service.kubernetes.io/topology-mode]: Invalid value: "Auto": must match '
      'annotations[service.kubernetes.io/topology-aware-hints] when both are specified']),
]


@pytest.mark.parametrize("case,spec,annotations,expected", ANNOTATION_CASES,
                         ids=[c[0] for c in ANNOTATION_CASES])
def test_create_annotation_rule(case, spec, annotations, expected):
    assert create_messages(spec, annotations) == expected


MULTI_ERROR_CASES = [
    ("all at once, in ValidateService's order",
     {"type": "Foo", "sessionAffinity": "Sticky", "selector": {"app": "bad value"},
      "ports": [{"name": "a", "port": 70000, "protocol": "HTTP"}, {"name": "a", "port": 80}]},
     [f"spec.ports[0].port: Invalid value: 70000: {RANGE_MSG}",
      'spec.ports[0].protocol: Unsupported value: "HTTP": supported values: "SCTP", "TCP", "UDP"',
      f"spec.ports[0].targetPort: Invalid value: 70000: {RANGE_MSG}",
      'spec.ports[1].name: Duplicate value: "a"',
      f'spec.selector: Invalid value: "bad value": {LABEL_VALUE_MSG}',
      'spec.sessionAffinity: Unsupported value: "Sticky": supported values: "ClientIP", "None"',
      'spec.type: Unsupported value: "Foo": supported values: "ClusterIP", "ExternalName", '
      '"LoadBalancer", "NodePort"']),
    ("duplicate names and ports, as kubectl create svc shows them",
     {"ports": [{"name": "80", "port": 80}, {"name": "443", "port": 443},
                {"name": "443", "port": 443}]},
     ['spec.ports[2].name: Duplicate value: "443"',
      f"spec.ports[2]: Duplicate value: {port_key(443)}"]),
    ("LoadBalancer fields, in order",
     {"type": "LoadBalancer", "loadBalancerSourceRanges": ["nope"], "loadBalancerClass": "a b",
      "internalTrafficPolicy": "Zone", "trafficDistribution": "Random",
      "externalIPs": ["0.0.0.0"]},
     ['spec.externalIPs[0]: Invalid value: "0.0.0.0": may not be unspecified (0.0.0.0)',
      f'spec.LoadBalancerSourceRanges[0]: Invalid value: "nope": {CIDR_MSG}',
      f'spec.loadBalancerClass: Invalid value: "a b": {NAME_PART_MSG}',
      'spec.internalTrafficPolicy: Unsupported value: "Zone": supported values: "Cluster", "Local"',
      'spec.trafficDistribution: Unsupported value: "Random": supported values: "PreferClose"']),
    ("the allocator's IP family errors come alone, before validation",
     {"clusterIP": "abc", "type": "Foo", "ports": [{"port": 70000}]},
     [f'spec.clusterIPs[0]: Invalid value: "abc": {IP_MSG}']),
]


@pytest.mark.parametrize("case,spec,expected", MULTI_ERROR_CASES,
                         ids=[c[0] for c in MULTI_ERROR_CASES])
def test_create_reports_all_errors_in_order(case, spec, expected):
    assert create_messages(spec) == expected


VALID_SPECS = [
    ("plain ClusterIP", {}),
    ("explicit clusterIP", {"clusterIP": "10.0.0.10"}),
    ("headless without ports", {"clusterIP": "None", "ports": DROP}),
    ("headless without selector (dual-stack families allowed)",
     {"clusterIP": "None", "selector": DROP}),
    ("ExternalName with a trailing dot and no ports",
     {"type": "ExternalName", "externalName": "db.example.com.", "ports": DROP, "selector": DROP}),
    ("NodePort before nodePort allocation", {"type": "NodePort"}),
    ("NodePort with a requested nodePort",
     {"type": "NodePort", "ports": [{"port": 80, "nodePort": 30080}]}),
    ("LoadBalancer Local before healthCheckNodePort allocation",
     {"type": "LoadBalancer", "externalTrafficPolicy": "Local"}),
    ("same port, two protocols",
     {"ports": [{"name": "dns", "port": 53, "protocol": "UDP"}, {"name": "dns-tcp", "port": 53}]}),
    ("externalIPs make ClusterIP externally accessible",
     {"externalIPs": ["192.0.2.1", "010.0.0.1"], "externalTrafficPolicy": "Local"}),
    ("ClientIP affinity for a day",
     {"sessionAffinity": "ClientIP",
      "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 86400}}}),
    ("named targetPort and appProtocol",
     {"ports": [{"port": 80, "targetPort": "http", "appProtocol": "kubernetes.io/h2c"}]}),
    ("PreferDualStack on a single-stack cluster", {"ipFamilyPolicy": "PreferDualStack"}),
    ("trafficDistribution PreferClose", {"trafficDistribution": "PreferClose"}),
    ("LoadBalancer with space-padded source ranges and a class",
     {"type": "LoadBalancer", "loadBalancerSourceRanges": [" 10.0.0.0/8"],
      "loadBalancerClass": "example.com/lb", "allocateLoadBalancerNodePorts": False}),
    ("selectorless Service", {"selector": DROP}),
]


@pytest.mark.parametrize("case,spec", VALID_SPECS, ids=[c[0] for c in VALID_SPECS])
def test_valid_service(case, spec):
    assert create_messages(spec) == []


# (case, spec as sent, spec after defaulting)
DEFAULT_CASES = [
    ("ClusterIP", {"ports": [{"port": 80}]},
     {"type": "ClusterIP", "sessionAffinity": "None", "internalTrafficPolicy": "Cluster",
      "ipFamilyPolicy": "SingleStack", "ipFamilies": ["IPv4"], "selector": {"app": "web"},
      "ports": [{"port": 80, "protocol": "TCP", "targetPort": 80}]}),
    ("ports keep what was given; 0 and empty targetPorts become the port",
     {"ports": [{"name": "a", "port": 53, "protocol": "UDP", "targetPort": "dns"},
                {"name": "b", "port": 80, "targetPort": 0},
                {"name": "c", "port": 81, "targetPort": ""}]},
     {"type": "ClusterIP", "sessionAffinity": "None", "internalTrafficPolicy": "Cluster",
      "ipFamilyPolicy": "SingleStack", "ipFamilies": ["IPv4"], "selector": {"app": "web"},
      "ports": [{"name": "a", "port": 53, "protocol": "UDP", "targetPort": "dns"},
                {"name": "b", "port": 80, "protocol": "TCP", "targetPort": 80},
                {"name": "c", "port": 81, "protocol": "TCP", "targetPort": 81}]}),
    ("ClientIP gets the 3 hour timeout", {"sessionAffinity": "ClientIP"},
     {"type": "ClusterIP", "sessionAffinity": "ClientIP", "internalTrafficPolicy": "Cluster",
      "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 10800}},
      "ipFamilyPolicy": "SingleStack", "ipFamilies": ["IPv4"], "selector": {"app": "web"},
      "ports": [{"port": 80, "protocol": "TCP", "targetPort": 80}]}),
    ("affinity None drops the config",
     {"sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 60}}},
     {"type": "ClusterIP", "sessionAffinity": "None", "internalTrafficPolicy": "Cluster",
      "ipFamilyPolicy": "SingleStack", "ipFamilies": ["IPv4"], "selector": {"app": "web"},
      "ports": [{"port": 80, "protocol": "TCP", "targetPort": 80}]}),
    ("NodePort", {"type": "NodePort"},
     {"type": "NodePort", "sessionAffinity": "None", "internalTrafficPolicy": "Cluster",
      "externalTrafficPolicy": "Cluster", "ipFamilyPolicy": "SingleStack", "ipFamilies": ["IPv4"],
      "selector": {"app": "web"}, "ports": [{"port": 80, "protocol": "TCP", "targetPort": 80}]}),
    ("LoadBalancer", {"type": "LoadBalancer"},
     {"type": "LoadBalancer", "sessionAffinity": "None", "internalTrafficPolicy": "Cluster",
      "externalTrafficPolicy": "Cluster", "allocateLoadBalancerNodePorts": True,
      "ipFamilyPolicy": "SingleStack", "ipFamilies": ["IPv4"], "selector": {"app": "web"},
      "ports": [{"port": 80, "protocol": "TCP", "targetPort": 80}]}),
    ("externalIPs get an external traffic policy", {"externalIPs": ["192.0.2.1"]},
     {"type": "ClusterIP", "sessionAffinity": "None", "internalTrafficPolicy": "Cluster",
      "externalTrafficPolicy": "Cluster", "externalIPs": ["192.0.2.1"],
      "ipFamilyPolicy": "SingleStack", "ipFamilies": ["IPv4"], "selector": {"app": "web"},
      "ports": [{"port": 80, "protocol": "TCP", "targetPort": 80}]}),
    ("ExternalName gets no IP or traffic fields",
     {"type": "ExternalName", "externalName": "example.com", "ports": DROP, "selector": DROP},
     {"type": "ExternalName", "externalName": "example.com", "sessionAffinity": "None"}),
    ("clusterIP fills clusterIPs and the family", {"clusterIP": "10.0.0.10"},
     {"type": "ClusterIP", "sessionAffinity": "None", "internalTrafficPolicy": "Cluster",
      "clusterIP": "10.0.0.10", "clusterIPs": ["10.0.0.10"], "ipFamilyPolicy": "SingleStack",
      "ipFamilies": ["IPv4"], "selector": {"app": "web"},
      "ports": [{"port": 80, "protocol": "TCP", "targetPort": 80}]}),
    ("headless with selector is single-stack", {"clusterIP": "None", "ports": DROP},
     {"type": "ClusterIP", "sessionAffinity": "None", "internalTrafficPolicy": "Cluster",
      "clusterIP": "None", "clusterIPs": ["None"], "ipFamilyPolicy": "SingleStack",
      "ipFamilies": ["IPv4"], "selector": {"app": "web"}}),
    ("headless without selector requires dual-stack, on any cluster",
     {"clusterIP": "None", "ports": DROP, "selector": DROP},
     {"type": "ClusterIP", "sessionAffinity": "None", "internalTrafficPolicy": "Cluster",
      "clusterIP": "None", "clusterIPs": ["None"], "ipFamilyPolicy": "RequireDualStack",
      "ipFamilies": ["IPv4", "IPv6"]}),
    ("headless without selector, SingleStack asked",
     {"clusterIP": "None", "selector": DROP, "ports": DROP, "ipFamilyPolicy": "SingleStack"},
     {"type": "ClusterIP", "sessionAffinity": "None", "internalTrafficPolicy": "Cluster",
      "clusterIP": "None", "clusterIPs": ["None"], "ipFamilyPolicy": "SingleStack",
      "ipFamilies": ["IPv4"]}),
    ("PreferDualStack gets the one family there is", {"ipFamilyPolicy": "PreferDualStack"},
     {"type": "ClusterIP", "sessionAffinity": "None", "internalTrafficPolicy": "Cluster",
      "ipFamilyPolicy": "PreferDualStack", "ipFamilies": ["IPv4"], "selector": {"app": "web"},
      "ports": [{"port": 80, "protocol": "TCP", "targetPort": 80}]}),
    ("explicit values are kept",
     {"type": "NodePort", "externalTrafficPolicy": "Local", "internalTrafficPolicy": "Local"},
     {"type": "NodePort", "sessionAffinity": "None", "internalTrafficPolicy": "Local",
      "externalTrafficPolicy": "Local", "ipFamilyPolicy": "SingleStack", "ipFamilies": ["IPv4"],
      "selector": {"app": "web"}, "ports": [{"port": 80, "protocol": "TCP", "targetPort": 80}]}),
]


@pytest.mark.parametrize("case,spec,expected", DEFAULT_CASES, ids=[c[0] for c in DEFAULT_CASES])
def test_defaults(case, spec, expected):
    svc = service(spec)
    default_service(svc)
    assert svc["spec"] == expected


def test_defaulting_is_idempotent():
    svc = service({"type": "LoadBalancer", "clusterIP": "None", "selector": DROP})
    default_service(svc)
    again = copy.deepcopy(svc)
    default_service(again)
    assert again == svc


def test_load_balancer_ingress_ip_mode_defaults_to_vip():
    svc = service({"type": "LoadBalancer"})
    svc["status"] = {"loadBalancer": {"ingress": [{"ip": "192.0.2.1"}, {"hostname": "lb.example"}]}}
    default_service(svc)
    assert svc["status"]["loadBalancer"]["ingress"] == [{"ip": "192.0.2.1", "ipMode": "VIP"},
                                                        {"hostname": "lb.example"}]


# --- Updates ------------------------------------------------------------------------------------

def stored(spec: dict) -> dict:
    """A created Service as the registry stores it: defaulted, then allocated."""
    svc = service(spec)
    default_service(svc)
    assert validate_service(svc) == []
    s = svc["spec"]
    if s["type"] != "ExternalName" and not s.get("clusterIP"):
        s["clusterIP"], s["clusterIPs"] = "10.0.0.10", ["10.0.0.10"]
    if s["type"] in ("NodePort", "LoadBalancer"):
        for i, port in enumerate(s["ports"]):
            port.setdefault("nodePort", 30000 + i)
    if s["type"] == "LoadBalancer" and s.get("externalTrafficPolicy") == "Local":
        s.setdefault("healthCheckNodePort", 30100)
    svc["status"] = {"loadBalancer": {}}
    return svc


def update(old: dict, spec: dict) -> tuple[dict, list[str]]:
    """Write `spec` over `old` as kubectl replace does (a whole new object), then prepare,
    default and validate it in the generic strategy's order."""
    new = service(spec)
    new["status"] = copy.deepcopy(old["status"])
    prepare_service_update(new, old)
    default_service(new)
    return new, [e.message() for e in validate_service_update(new, old)]


# (case, old spec, new spec as sent, expected messages)
UPDATE_ERROR_CASES = [
    ("clusterIP may not change", {}, {"clusterIP": "10.0.0.99"},
     ['spec.clusterIPs[0]: Invalid value: []string{"10.0.0.99"}: may not change once set']),
    ("headless may not become headful", {"clusterIP": "None"}, {"clusterIP": "10.0.0.5"},
     ['spec.clusterIPs[0]: Invalid value: []string{"10.0.0.5"}: may not change once set']),
    ("the primary family may not change", {}, {"ipFamilies": ["IPv6"]},
     ['spec.clusterIPs[0]: Invalid value: "10.0.0.10": expected an IPv6 value as indicated by '
      '`ipFamilies[0]`']),
    ("loadBalancerClass may not change", {"type": "LoadBalancer", "loadBalancerClass": "a.io/lb"},
     {"type": "LoadBalancer", "loadBalancerClass": "b.io/lb"},
     ['spec.loadBalancerClass: Invalid value: "b.io/lb": may not change once set']),
    ("loadBalancerClass may not be added to a LoadBalancer", {"type": "LoadBalancer"},
     {"type": "LoadBalancer", "loadBalancerClass": "b.io/lb"},
     ['spec.loadBalancerClass: Invalid value: "b.io/lb": may not change once set']),
    ("loadBalancerClass may not be removed",
     {"type": "LoadBalancer", "loadBalancerClass": "a.io/lb"},
     {"type": "LoadBalancer"},
     ['spec.loadBalancerClass: Invalid value: "null": may not change once set']),
    ("loadBalancerClass on another type: Kubernetes checks it twice", {},
     {"loadBalancerClass": "a.io/lb"},
     [f"spec.loadBalancerClass: Forbidden: {LB_ONLY}",
      f"spec.loadBalancerClass: Forbidden: {LB_ONLY}"]),
    ("healthCheckNodePort is immutable while needed",
     {"type": "LoadBalancer", "externalTrafficPolicy": "Local"},
     {"type": "LoadBalancer", "externalTrafficPolicy": "Local", "healthCheckNodePort": 30200},
     ["spec.healthCheckNodePort: Forbidden: field is immutable"]),
    ("a nodePort asked for while leaving NodePort is kept, and refused",
     {"type": "NodePort"}, {"ports": [{"port": 80, "nodePort": 30555}]},
     ["spec.ports[0].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'"]),
    ("update checks come first, then ValidateService's",
     {}, {"clusterIP": "10.0.0.99", "sessionAffinity": "Sticky"},
     ['spec.clusterIPs[0]: Invalid value: []string{"10.0.0.99"}: may not change once set',
      'spec.sessionAffinity: Unsupported value: "Sticky": supported values: "ClientIP", "None"']),
]


@pytest.mark.parametrize("case,old,spec,expected", UPDATE_ERROR_CASES,
                         ids=[c[0] for c in UPDATE_ERROR_CASES])
def test_update_rule(case, old, spec, expected):
    assert update(stored(old), spec)[1] == expected


def test_secondary_family_is_released_only_with_single_stack():
    # Kubernetes' own flow: the allocator's family checks see the old object once. (A
    # default_service(new) after this would add IPv6 back: see the module docstring.)
    old = stored({"clusterIP": "None", "selector": DROP})
    new = service({"clusterIP": "None", "selector": DROP, "ipFamilies": ["IPv4"]})
    prepare_service_update(new, old)
    assert [e.message() for e in validate_service_update(new, old)] == [
        'spec.ipFamilyPolicy: Invalid value: "RequireDualStack": must be \'SingleStack\' to release '
        'the secondary IP family']
    assert [e.message() for e in _update_checks(new, old)] == [
        'spec.ipFamilyPolicy: Invalid value: "RequireDualStack": must be \'SingleStack\' to release '
        'the secondary IP family']


def test_replace_without_cluster_ip_keeps_the_allocated_one():
    new, errs = update(stored({}), {})
    assert errs == []
    assert (new["spec"]["clusterIP"], new["spec"]["clusterIPs"]) == ("10.0.0.10", ["10.0.0.10"])


def test_replace_keeps_node_ports_by_port_name_and_health_check_node_port():
    old = stored({"type": "LoadBalancer", "externalTrafficPolicy": "Local",
                  "ports": [{"name": "http", "port": 80}, {"name": "https", "port": 443}]})
    new, errs = update(old, {"type": "LoadBalancer", "externalTrafficPolicy": "Local",
                             "ports": [{"name": "https", "port": 8443}, {"name": "http", "port": 80}]})
    assert errs == []
    assert [p["nodePort"] for p in new["spec"]["ports"]] == [30001, 30000]
    assert new["spec"]["healthCheckNodePort"] == 30100


def test_replace_does_not_reuse_a_node_port_taken_by_another_port():
    ports = [{"name": "a", "port": 80}, {"name": "b", "port": 81}]
    old = stored({"type": "NodePort", "ports": copy.deepcopy(ports)})
    ports[0]["nodePort"] = 30001  # b's nodePort, now asked for by a
    new, errs = update(old, {"type": "NodePort", "ports": ports})
    assert errs == []
    assert [p.get("nodePort") for p in new["spec"]["ports"]] == [30001, None]


def test_node_port_to_cluster_ip_drops_node_ports_and_external_policy():
    old = stored({"type": "NodePort"})
    edited = copy.deepcopy(old)
    edited["spec"]["type"] = "ClusterIP"  # kubectl edit: only the type changes
    new, errs = update(old, edited["spec"])
    assert errs == []
    assert "nodePort" not in new["spec"]["ports"][0]
    assert "externalTrafficPolicy" not in new["spec"]
    assert new["spec"]["clusterIPs"] == ["10.0.0.10"]


def test_load_balancer_to_cluster_ip_drops_load_balancer_fields_and_status():
    old = stored({"type": "LoadBalancer", "externalTrafficPolicy": "Local",
                  "loadBalancerClass": "a.io/lb"})
    old["status"] = {"loadBalancer": {"ingress": [{"ip": "192.0.2.1", "ipMode": "VIP"}]}}
    edited = copy.deepcopy(old)
    edited["spec"]["type"] = "ClusterIP"
    new, errs = update(old, edited["spec"])
    assert errs == []
    for field in ("allocateLoadBalancerNodePorts", "loadBalancerClass", "healthCheckNodePort",
                  "externalTrafficPolicy"):
        assert field not in new["spec"], field
    assert new["status"] == {"loadBalancer": {}}


def test_changed_allocate_load_balancer_node_ports_is_kept_and_refused():
    old = stored({"type": "LoadBalancer"})
    edited = copy.deepcopy(old)
    edited["spec"].update(type="ClusterIP", allocateLoadBalancerNodePorts=False)
    assert update(old, edited["spec"])[1] == [
        f"spec.allocateLoadBalancerNodePorts: Forbidden: {LB_ONLY}"]


def test_cluster_ip_to_external_name_clears_ip_fields():
    old = stored({})
    edited = copy.deepcopy(old)
    edited["spec"].update(type="ExternalName", externalName="example.com")
    new, errs = update(old, edited["spec"])
    assert errs == []
    for field in ("clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"):
        assert field not in new["spec"], field


def test_external_name_to_cluster_ip_gets_ip_families():
    old = stored({"type": "ExternalName", "externalName": "example.com"})
    new, errs = update(old, {})
    assert errs == []
    assert (new["spec"]["ipFamilyPolicy"], new["spec"]["ipFamilies"]) == ("SingleStack", ["IPv4"])
    assert "clusterIP" not in new["spec"]  # the allocator assigns one


def test_omitted_ip_family_policy_is_kept_from_the_stored_service():
    new, errs = update(stored({"ipFamilyPolicy": "PreferDualStack"}), {})
    assert errs == []
    assert new["spec"]["ipFamilyPolicy"] == "PreferDualStack"


def test_switching_to_single_stack_releases_the_secondary_family():
    old = stored({"clusterIP": "None", "selector": DROP})
    edited = copy.deepcopy(old)
    edited["spec"]["ipFamilyPolicy"] = "SingleStack"
    new, errs = update(old, edited["spec"])
    assert errs == []
    assert new["spec"]["ipFamilies"] == ["IPv4"]


def test_registered_rules_split_create_and_update_checks():
    rules = strategy.rules_for("Service")
    assert (rules.default, rules.validate, rules.validate_update) == (
        default_service, validate_service, _update_checks)
    old = stored({})
    new = service({"clusterIP": "10.0.0.99", "sessionAffinity": "Sticky"})
    prepare_service_update(new, old)
    default_service(new)
    # The generic strategy runs validate(new), then validate_update(new, old): nothing twice.
    assert [e.message() for e in rules.validate(new) + rules.validate_update(new, old)] == [
        'spec.sessionAffinity: Unsupported value: "Sticky": supported values: "ClientIP", "None"',
        'spec.clusterIPs[0]: Invalid value: []string{"10.0.0.99"}: may not change once set']


def test_causes_carry_kubernetes_reasons():
    svc = service({"ports": [{"name": "a", "port": 80}, {"name": "b", "port": 80}]})
    default_service(svc)
    (err,) = validate_service(svc)
    assert err.cause() == {"reason": "FieldValueDuplicate", "field": "spec.ports[1]",
                           "message": f"Duplicate value: {port_key(80)}"}
