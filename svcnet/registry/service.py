"""Services: Kubernetes 1.32 defaulting, update preparation and validation.

Theory of operation
-------------------
kube-apiserver takes a written Service through these steps; this module reproduces each of them
for a single-stack IPv4 cluster (IPv4 is the only family with a service CIDR):

1. Decoding applies SetDefaults_Service (pkg/apis/core/v1/defaults.go): type, session affinity,
   port protocol and targetPort, traffic policies, allocateLoadBalancerNodePorts.
2. Storage's beginCreate/beginUpdate (pkg/registry/core/service/storage/storage.go) keeps
   clusterIP and clusterIPs in step (normalizeClusterIPs) and, on update, first patches back the
   values the registry allocated and the client left out (patchAllocatedValues: clusterIP(s),
   nodePorts matched by port name, healthCheckNodePort). This is what lets `kubectl replace` or
   a re-created manifest without clusterIP keep the allocated address.
3. The allocator's initIPFamilyFields (storage/alloc.go) defaults ipFamilyPolicy (SingleStack;
   RequireDualStack for a headless Service without selector; the old policy on update),
   pre-validates the clusterIPs/ipFamilies/ipFamilyPolicy group, refuses families the cluster
   does not have and fills ipFamilies. Its errors are returned alone, before validation.
4. PrepareForUpdate's dropTypeDependentFields (pkg/registry/core/service/strategy.go) clears
   fields a type change made meaningless, when the client did not change them itself.
5. ValidateService / ValidateServiceUpdate (pkg/apis/core/validation/validation.go).

Mapping onto svcnet:
- default_service: 1, the create half of 2, the defaulting half of 3.
- prepare_service_update: 1, the update half of 2, 3 with the old object, 4. Call it before the
  strategy's defaulting, so an omitted ipFamilyPolicy adopts the old one; that defaulting then
  changes nothing, with one exception: when the update is to be refused for dropping the
  secondary family of a headless Service without selector, default_service (which cannot see
  the old object) adds the family back and the error is lost.
- validate_service: the error half of 3 (alone, as Kubernetes returns them), else 5.
- validate_service_update: the same with the update checks, in ValidateServiceUpdate's order.
- The registered validate_update returns only the update checks, because the generic strategy
  runs validate(new) itself before calling it.

svcnet allocates clusterIPs, nodePorts and healthCheckNodePort after validation (Kubernetes does
it before), so validation accepts them unset: Kubernetes' Required error for a missing
healthCheckNodePort is not raised, and nodePort ranges are the allocator's to check.

Bad values print as Kubernetes 1.32's field.Error prints them: pointers dereferenced, a nil
pointer as "null", composite values in Go's %#v syntax (`[]string{"10.0.0.1"}`,
`[]core.IPFamily{"IPv4"}`, `core.ServicePort{...}`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Callable

from svcnet.api.errors import (FieldError, INVALID, DUPLICATE, duplicate, forbidden, invalid_value,
                               not_supported, required)
from svcnet.registry.strategy import KindRules, register
from svcnet.registry.validation import (ip_family, is_dns1123_label, is_dns1123_subdomain,
                                        is_qualified_name, is_valid_cidr, is_valid_ip,
                                        is_valid_port_name, is_valid_port_num,
                                        non_special_ip_errors, validate_labels)

CLUSTER_IP, NODE_PORT, LOAD_BALANCER, EXTERNAL_NAME = ("ClusterIP", "NodePort", "LoadBalancer",
                                                      "ExternalName")
NONE = "None"  # clusterIP of a headless Service, and the affinity that is no affinity
IPV4, IPV6 = "IPv4", "IPv6"
SINGLE_STACK, PREFER_DUAL_STACK, REQUIRE_DUAL_STACK = ("SingleStack", "PreferDualStack",
                                                       "RequireDualStack")
CLUSTER_FAMILIES = (IPV4,)  # the families this cluster has a service CIDR for, primary first
OTHER_FAMILY = {IPV4: IPV6, IPV6: IPV4}

# Supported values, sorted as Kubernetes lists them in "Unsupported value" errors.
SERVICE_TYPES = (CLUSTER_IP, EXTERNAL_NAME, LOAD_BALANCER, NODE_PORT)
SESSION_AFFINITIES = ("ClientIP", NONE)
PROTOCOLS = ("SCTP", "TCP", "UDP")
TRAFFIC_POLICIES = ("Cluster", "Local")
IP_FAMILIES = (IPV4, IPV6)
IP_FAMILY_POLICIES = (PREFER_DUAL_STACK, REQUIRE_DUAL_STACK, SINGLE_STACK)
TRAFFIC_DISTRIBUTIONS = ("PreferClose",)  # ServiceTrafficDistribution is beta, on, in 1.32

DEFAULT_AFFINITY_TIMEOUT = 10800
MAX_AFFINITY_TIMEOUT = 86400

SOURCE_RANGES_ANNOTATION = "service.beta.kubernetes.io/load-balancer-source-ranges"
TOPOLOGY_MODE_ANNOTATION = "service.kubernetes.io/topology-mode"
TOPOLOGY_HINTS_ANNOTATION = "service.kubernetes.io/topology-aware-hints"

LB_ONLY = "may only be used when `type` is 'LoadBalancer'"


# --- Reading a spec (absent and null read as Go's zero value) -------------------------------

def _spec(svc: dict) -> dict:
    spec = svc.get("spec")
    return spec if isinstance(spec, dict) else {}


def _ports(spec: dict) -> list[dict]:
    return [p if isinstance(p, dict) else {} for p in spec.get("ports") or []]


def _node_ports(spec: dict) -> set[int]:
    return {_int(p, "nodePort") for p in _ports(spec)} - {0}


def _int(d: dict, key: str) -> int:
    v = d.get(key)
    return v if isinstance(v, int) and not isinstance(v, bool) else 0


def _str(d: dict, key: str) -> str:
    v = d.get(key)
    return v if isinstance(v, str) else ""


def _type(spec: dict) -> str:
    return _str(spec, "type")


def _is_lb(spec: dict) -> bool:
    return _type(spec) == LOAD_BALANCER


def _needs_cluster_ip(spec: dict) -> bool:
    return _type(spec) != EXTERNAL_NAME


def _needs_node_port(spec: dict) -> bool:
    return _type(spec) in (NODE_PORT, LOAD_BALANCER)


def _externally_accessible(spec: dict) -> bool:
    t = _type(spec)
    return t in (NODE_PORT, LOAD_BALANCER) or (t == CLUSTER_IP and bool(spec.get("externalIPs")))


def _needs_health_check(spec: dict) -> bool:
    return _is_lb(spec) and _str(spec, "externalTrafficPolicy") == "Local"


def _headless(spec: dict) -> bool:
    """isHeadlessService: clusterIPs is exactly ["None"]."""
    return (spec.get("clusterIPs") or []) == [NONE]


def _headless_selectorless(spec: dict) -> bool:
    """The allocator's special case: clusterIP "None" and no selector."""
    return _str(spec, "clusterIP") == NONE and not spec.get("selector")


# --- Bad values as field.Error prints them ----------------------------------------------------

@dataclass
class GoValueError(FieldError):
    """A field error whose bad value is already rendered in Go's %#v syntax."""

    def body(self) -> str:
        s = f"{self.type[0]}: {self.value}"
        return f"{s}: {self.detail}" if self.detail else s


def _go_quote(s: Any) -> str:
    return json.dumps(s, ensure_ascii=False)


def _go_slice(elem: str, items: list | None) -> str:
    if items is None:
        return f"[]{elem}(nil)"
    return f"[]{elem}{{" + ", ".join(_go_quote(i) for i in items) + "}"


def _ips(spec: dict) -> str:
    return _go_slice("string", spec.get("clusterIPs"))


def _families(spec: dict) -> str:
    return _go_slice("core.IPFamily", spec.get("ipFamilies"))


def _ptr(value: Any) -> Any:
    """A pointer field's bad value: dereferenced, or the string "null" when nil."""
    return "null" if value is None else value


def _port_key(protocol: str, port: int) -> str:
    """The (protocol, port) key of the duplicate-port check, a core.ServicePort."""
    return (f'core.ServicePort{{Name:"", Protocol:{_go_quote(protocol)}, '
            f'AppProtocol:(*string)(nil), Port:{port}, '
            f'TargetPort:intstr.IntOrString{{Type:0, IntVal:0, StrVal:""}}, NodePort:0}}')


# --- Defaulting -------------------------------------------------------------------------------

# SetDefaults_Service's field defaults: (field, when it applies, value). A string field is unset
# when absent, null or ""; a pointer field only when absent or null. `type` comes first because
# the others depend on it.
_UNSET_STRING, _UNSET_POINTER = (None, ""), (None,)
_FIELD_DEFAULTS: tuple[tuple[str, Callable[[dict], bool], Any, tuple], ...] = (
    ("type", lambda s: True, CLUSTER_IP, _UNSET_STRING),
    ("sessionAffinity", lambda s: True, NONE, _UNSET_STRING),
    ("externalTrafficPolicy", _externally_accessible, "Cluster", _UNSET_STRING),
    ("internalTrafficPolicy", lambda s: _type(s) in (CLUSTER_IP, NODE_PORT, LOAD_BALANCER),
     "Cluster", _UNSET_POINTER),
    ("allocateLoadBalancerNodePorts", _is_lb, True, _UNSET_POINTER),
)


def _set_defaults(svc: dict) -> None:
    """SetDefaults_Service, as decoding applies it to every Service written."""
    spec = svc.setdefault("spec", {})
    for field, applies, value, unset in _FIELD_DEFAULTS:
        if spec.get(field) in unset and applies(spec):
            spec[field] = value
    if spec["sessionAffinity"] == NONE:
        spec.pop("sessionAffinityConfig", None)
    elif spec["sessionAffinity"] == "ClientIP":
        config = spec.get("sessionAffinityConfig")
        client_ip = config.get("clientIP") if isinstance(config, dict) else None
        if not isinstance(client_ip, dict) or client_ip.get("timeoutSeconds") is None:
            spec["sessionAffinityConfig"] = {
                "clientIP": {"timeoutSeconds": DEFAULT_AFFINITY_TIMEOUT}}
    for port in _ports(spec):
        if not port.get("protocol"):
            port["protocol"] = "TCP"
        if port.get("targetPort") in (None, 0, ""):
            port["targetPort"] = _int(port, "port")
    if _is_lb(spec):  # LoadBalancerIPMode is GA in 1.32
        status = svc.get("status") or {}
        for ingress in (status.get("loadBalancer") or {}).get("ingress") or []:
            if ingress.get("ip") and ingress.get("ipMode") is None:
                ingress["ipMode"] = "VIP"


def _init_ip_families(spec: dict, old_spec: dict | None) -> None:
    """The defaulting half of initIPFamilyFields. Input that its checks would refuse is left
    alone: validation reports it."""
    if not _needs_cluster_ip(spec):
        return
    if spec.get("ipFamilyPolicy") is None:
        if old_spec is not None and old_spec.get("ipFamilyPolicy") is not None:
            spec["ipFamilyPolicy"] = old_spec["ipFamilyPolicy"]
        else:
            headless_selectorless = _headless_selectorless(spec)
            spec["ipFamilyPolicy"] = REQUIRE_DUAL_STACK if headless_selectorless else SINGLE_STACK
    if _cluster_ips_related_errors(spec):
        return
    if old_spec is not None and spec["ipFamilyPolicy"] == SINGLE_STACK:
        # Switching to SingleStack with the lists unchanged releases the secondary entry.
        for field in ("clusterIPs", "ipFamilies"):
            values = spec.get(field) or []
            if values == (old_spec.get(field) or []) and len(values) > 1:
                spec[field] = values[:1]
    if _ip_family_policy_errors(spec, old_spec):
        return
    families = list(spec.get("ipFamilies") or [])
    for i, ip in enumerate(spec.get("clusterIPs") or []):
        if ip == NONE:
            break
        if i >= len(families):
            families.append(ip_family(ip))
    families = families or [CLUSTER_FAMILIES[0]]
    if (_headless_selectorless(spec) and len(families) < 2
            and spec["ipFamilyPolicy"] != SINGLE_STACK):
        families.append(OTHER_FAMILY[families[0]])
    spec["ipFamilies"] = families


def default_service(svc: dict) -> None:
    """Defaults a Service in place, as kube-apiserver does before allocating its IPs."""
    _set_defaults(svc)
    spec = svc["spec"]
    if spec.get("clusterIP") and not spec.get("clusterIPs"):
        spec["clusterIPs"] = [spec["clusterIP"]]
    _init_ip_families(spec, None)


# --- Update preparation -----------------------------------------------------------------------

def _patch_allocated_values(spec: dict, old: dict) -> None:
    """patchAllocatedValues: fill allocated values the client omitted, while the type needs them."""
    if _needs_cluster_ip(old) and _needs_cluster_ip(spec):
        if not spec.get("clusterIP") and old.get("clusterIP"):
            spec["clusterIP"] = old["clusterIP"]
        if not spec.get("clusterIPs") and old.get("clusterIPs"):
            spec["clusterIPs"] = list(old["clusterIPs"])
    if _needs_node_port(old) and _needs_node_port(spec):
        used = _node_ports(old) & _node_ports(spec)  # values the client kept: not reusable
        by_name = {_str(p, "name"): _int(p, "nodePort") for p in _ports(old)}
        for port in _ports(spec):
            node_port = by_name.get(_str(port, "name"), 0)
            if not _int(port, "nodePort") and node_port and node_port not in used:
                port["nodePort"] = node_port
    if (_needs_health_check(old) and _needs_health_check(spec)
            and not _int(spec, "healthCheckNodePort") and _int(old, "healthCheckNodePort")):
        spec["healthCheckNodePort"] = old["healthCheckNodePort"]


def _normalize_cluster_ips(spec: dict, old: dict) -> None:
    """normalizeClusterIPs on update: which of clusterIP and clusterIPs did the client mean?"""
    old_ips = old.get("clusterIPs") or []
    old_ip, new_ip = _str(old, "clusterIP"), _str(spec, "clusterIP")
    if old_ips and not spec.get("clusterIPs") and old_ip == new_ip:
        spec["clusterIPs"] = list(old_ips)
    if old_ip != new_ip and (spec.get("clusterIPs") or []) == old_ips:
        if old_ip and not new_ip:
            spec.pop("clusterIPs", None)
        else:
            spec["clusterIPs"] = [new_ip]


def _same_node_ports(old: dict, new: dict) -> bool:
    """No net-new nodePort: the client did not ask for one while changing the type."""
    return _node_ports(new) <= _node_ports(old)


def _clear_node_ports(spec: dict) -> None:
    for port in _ports(spec):
        port.pop("nodePort", None)


def _clear(*fields: str) -> Callable[[dict], None]:
    def clear(spec: dict) -> None:
        for field in fields:
            spec.pop(field, None)
    return clear


def _same(field: str, zero: Any = None) -> Callable[[dict, dict], bool]:
    """Equal values, reading absent or null as `zero` (Go's zero value of the field)."""
    def value(spec: dict) -> Any:
        v = spec.get(field)
        return zero if v is None else v
    return lambda old, new: value(old) == value(new)


# dropTypeDependentFields: (which specs need the field, did the client leave it unchanged,
# how to clear it). A field is cleared when the old type needed it, the new one does not, and
# the client kept the old value, i.e. it was probably allocated or defaulted, not chosen.
_TYPE_DEPENDENT_FIELDS: tuple[tuple[Callable, Callable, Callable], ...] = (
    (_needs_cluster_ip,
     lambda old, new: _same("clusterIP", "")(old, new) and _same("clusterIPs", [])(old, new),
     _clear("clusterIP", "clusterIPs")),
    (_needs_cluster_ip, lambda old, new: old.get("ipFamilies") == new.get("ipFamilies"),
     _clear("ipFamilies")),
    (_needs_cluster_ip, _same("ipFamilyPolicy", ""), _clear("ipFamilyPolicy")),
    (_needs_node_port, _same_node_ports, _clear_node_ports),
    (_needs_health_check, _same("healthCheckNodePort", 0), _clear("healthCheckNodePort")),
    (_is_lb,
     lambda old, new: old.get("allocateLoadBalancerNodePorts") is not None
     and old.get("allocateLoadBalancerNodePorts") == new.get("allocateLoadBalancerNodePorts"),
     _clear("allocateLoadBalancerNodePorts")),
    (_is_lb, _same("loadBalancerClass"), _clear("loadBalancerClass")),
    (_externally_accessible, _same("externalTrafficPolicy", ""), _clear("externalTrafficPolicy")),
)


def prepare_service_update(new: dict, old: dict) -> None:
    """What kube-apiserver does to an updated Service before validating it (steps 1-4 above).
    `old` is the stored object; `new` is changed in place."""
    _set_defaults(new)
    spec, old_spec = new["spec"], _spec(old)
    _patch_allocated_values(spec, old_spec)
    _normalize_cluster_ips(spec, old_spec)
    _init_ip_families(spec, old_spec)
    for needed, unchanged, clear in _TYPE_DEPENDENT_FIELDS:
        if needed(old_spec) and not needed(spec) and unchanged(old_spec, spec):
            clear(spec)
    if _is_lb(old_spec) and not _is_lb(spec) and isinstance(new.get("status"), dict):
        new["status"]["loadBalancer"] = {}  # no longer a LoadBalancer: its status goes


# --- IP family checks of the allocator (initIPFamilyFields) -----------------------------------

def _cluster_ips_related_errors(spec: dict) -> list[FieldError]:
    """ValidateServiceClusterIPsRelatedFields."""
    if not _needs_cluster_ip(spec):
        return []
    errs: list[FieldError] = []
    cluster_ip, ips = _str(spec, "clusterIP"), spec.get("clusterIPs") or []
    families, policy = spec.get("ipFamilies") or [], spec.get("ipFamilyPolicy")
    if cluster_ip:
        if not ips:
            errs.append(required("spec.clusterIPs"))
        elif ips[0] != cluster_ip:
            errs.append(GoValueError(INVALID, "spec.clusterIPs", _ips(spec),
                                     "first value must match `clusterIP`"))
    elif ips:
        errs.append(GoValueError(INVALID, "spec.clusterIPs", _ips(spec),
                                 "must be empty when `clusterIP` is not specified"))
    for i, family in enumerate(families):
        if family not in IP_FAMILIES:
            errs.append(not_supported(f"spec.ipFamilies[{i}]", family, list(IP_FAMILIES)))
        if family in families[:i]:
            errs.append(duplicate(f"spec.ipFamilies[{i}]", family))
    if policy is not None and policy not in IP_FAMILY_POLICIES:
        errs.append(not_supported("spec.ipFamilyPolicy", policy, list(IP_FAMILY_POLICIES)))
    bad_ips = False
    for i, ip in enumerate(ips):
        if i == 0 and ip == NONE:
            if len(ips) > 1:
                bad_ips = True
                errs.append(GoValueError(INVALID, "spec.clusterIPs", _ips(spec),
                                         "'None' must be the first and only value"))
            continue
        for msg in is_valid_ip(ip):
            bad_ips = True
            errs.append(invalid_value(f"spec.clusterIPs[{i}]", ip, msg))
    if len(ips) > 2:
        errs.append(GoValueError(INVALID, "spec.clusterIPs", _ips(spec),
                                 "may only hold up to 2 values"))
    if bad_ips:
        return errs
    if len(ips) > 1 and {ip_family(ip) for ip in ips} != {IPV4, IPV6}:
        errs.append(GoValueError(INVALID, "spec.clusterIPs", _ips(spec),
                                 "may specify no more than one IP for each IP family"))
    if not _headless(spec):
        for i, (ip, family) in enumerate(zip(ips, families)):
            if family in IP_FAMILIES and ip_family(ip) != family:
                errs.append(invalid_value(
                    f"spec.clusterIPs[{i}]", ip,
                    f"expected an {family} value as indicated by `ipFamilies[{i}]`"))
    return errs


def _released_secondary_errors(spec: dict, old: dict) -> list[FieldError]:
    """On update, fewer clusterIPs or ipFamilies than before needs policy SingleStack."""
    policy = spec.get("ipFamilyPolicy")
    if policy == SINGLE_STACK:
        return []
    return [invalid_value("spec.ipFamilyPolicy", _ptr(policy),
                          f"must be 'SingleStack' to release the secondary {what}")
            for field, what in (("clusterIPs", "cluster IP"), ("ipFamilies", "IP family"))
            if spec.get(field) and len(spec[field]) < len(old.get(field) or [])]


def _ip_family_policy_errors(spec: dict, old: dict | None) -> list[FieldError]:
    """initIPFamilyFields' checks after the pre-validation, for this cluster's families."""
    errs = _released_secondary_errors(spec, old) if old is not None else []
    policy, ips = spec.get("ipFamilyPolicy"), spec.get("clusterIPs") or []
    families = spec.get("ipFamilies") or []
    if policy == SINGLE_STACK:
        errs += [invalid_value("spec.ipFamilyPolicy", policy,
                               "must be 'RequireDualStack' or 'PreferDualStack' when multiple "
                               f"{what} are specified")
                 for field, what in (("clusterIPs", "cluster IPs"), ("ipFamilies", "IP families"))
                 if len(spec.get(field) or []) == 2]
    known = len(families)  # families given, plus those inferred from the IPs so far
    for i, ip in enumerate(ips):
        if ip == NONE:
            break
        if i >= known:
            if ip_family(ip) in CLUSTER_FAMILIES:
                known += 1
            else:
                errs.append(GoValueError(INVALID, f"spec.clusterIPs[{i}]", _ips(spec),
                                         f"{ip_family(ip)} is not configured on this cluster"))
    if errs or _headless_selectorless(spec):  # headless without selector may list any family
        return errs
    if policy == REQUIRE_DUAL_STACK and len(CLUSTER_FAMILIES) < 2:
        errs.append(invalid_value("spec.ipFamilyPolicy", policy,
                                  "this cluster is not configured for dual-stack services"))
    return errs + [invalid_value(f"spec.ipFamilies[{i}]", family, "not configured on this cluster")
                   for i, family in enumerate(families) if family not in CLUSTER_FAMILIES]


def _ip_family_errors(spec: dict, old: dict | None) -> list[FieldError]:
    """All of initIPFamilyFields' errors; Kubernetes returns them alone, before validation."""
    if not _needs_cluster_ip(spec):
        return []
    return _cluster_ips_related_errors(spec) or _ip_family_policy_errors(spec, old)


# --- ValidateService --------------------------------------------------------------------------

def _enum(path: str, value: Any, supported: tuple[str, ...]) -> list[FieldError]:
    """A required enumerated field."""
    if value in (None, ""):
        return [required(path)]
    return [] if value in supported else [not_supported(path, value, list(supported))]


def _port_errors(port: dict, path: str, require_name: bool, names: set[str]) -> list[FieldError]:
    """validateServicePort."""
    errs: list[FieldError] = []
    name = _str(port, "name")
    if require_name and not name:
        errs.append(required(f"{path}.name"))
    elif name:
        errs += [invalid_value(f"{path}.name", name, m) for m in is_dns1123_label(name)]
        if name in names:
            errs.append(duplicate(f"{path}.name", name))
        names.add(name)
    errs += [invalid_value(f"{path}.port", _int(port, "port"), m)
             for m in is_valid_port_num(_int(port, "port"))]
    errs += _enum(f"{path}.protocol", port.get("protocol"), PROTOCOLS)
    target = port.get("targetPort")
    if isinstance(target, str):
        errs += [invalid_value(f"{path}.targetPort", target, m) for m in is_valid_port_name(target)]
    else:
        target = _int(port, "targetPort")
        errs += [invalid_value(f"{path}.targetPort", target, m) for m in is_valid_port_num(target)]
    if port.get("appProtocol") is not None:
        app = port["appProtocol"]
        errs += [invalid_value(f"{path}.appProtocol", app, m) for m in is_qualified_name(app)]
    return errs


def _type_errors(spec: dict) -> list[FieldError]:
    """The per-type rules at the top of ValidateService."""
    t = _type(spec)
    if t in (LOAD_BALANCER, NODE_PORT) and _headless(spec):
        return [invalid_value("spec.clusterIPs[0]", NONE,
                              f"may not be set to 'None' for {t} services")]
    if t != EXTERNAL_NAME:
        return []
    errs = [forbidden(f"spec.{field}", "may not be set for ExternalName services")
            for field in ("clusterIPs", "ipFamilies") if spec.get(field)]
    if spec.get("ipFamilyPolicy") is not None:
        errs.append(forbidden("spec.ipFamilyPolicy", "may not be set for ExternalName services"))
    name = _str(spec, "externalName")
    name = name[:-1] if name.endswith(".") else name  # a CNAME may be fully qualified
    if not name:
        return errs + [required("spec.externalName")]
    return errs + [invalid_value("spec.externalName", name, m) for m in is_dns1123_subdomain(name)]


def _session_affinity_errors(spec: dict) -> list[FieldError]:
    affinity = spec.get("sessionAffinity")
    errs = _enum("spec.sessionAffinity", affinity, SESSION_AFFINITIES)
    config = spec.get("sessionAffinityConfig")
    if affinity == NONE and config is not None:
        errs.append(forbidden("spec.sessionAffinityConfig",
                              "must not be set when session affinity is None"))
    if affinity != "ClientIP":
        return errs
    # validateClientIPAffinityConfig: the first missing level is Required.
    path, why = "spec.sessionAffinityConfig", "when session affinity type is ClientIP"
    for key in ("clientIP", "timeoutSeconds"):
        if not isinstance(config, dict):
            return errs + [required(path, why)]
        config, path = config.get(key), f"{path}.{key}"
    if config is None:
        return errs + [required(path, why)]
    if not isinstance(config, int) or not 0 < config <= MAX_AFFINITY_TIMEOUT:
        errs.append(invalid_value(path, config,
                                  f"must be greater than 0 and less than {MAX_AFFINITY_TIMEOUT}"))
    return errs


def _source_range_errors(svc: dict, spec: dict) -> list[FieldError]:
    """loadBalancerSourceRanges, or else the annotation it replaced. Values may be space-padded."""
    ranges = spec.get("loadBalancerSourceRanges") or []
    annotations = (svc.get("metadata") or {}).get("annotations") or {}
    if ranges:
        path, cidrs = "spec.LoadBalancerSourceRanges", list(enumerate(ranges))
    elif SOURCE_RANGES_ANNOTATION in annotations:
        path = f"metadata.annotations[{SOURCE_RANGES_ANNOTATION}]"
        value = str(annotations[SOURCE_RANGES_ANNOTATION]).strip()
        cidrs = [(None, v) for v in value.split(",")] if value else []
    else:
        return []
    errs = [] if _is_lb(spec) else [forbidden(path, LB_ONLY)]
    for i, cidr in cidrs:
        cidr = str(cidr).strip()
        at = path if i is None else f"{path}[{i}]"
        errs += [invalid_value(at, cidr, m) for m in is_valid_cidr(cidr)]
    return errs


def _load_balancer_class_errors(spec: dict, old: dict | None) -> list[FieldError]:
    """validateLoadBalancerClassField."""
    errs: list[FieldError] = []
    cls = spec.get("loadBalancerClass")
    if old is not None and _is_lb(old) and _is_lb(spec) and old.get("loadBalancerClass") != cls:
        errs.append(invalid_value("spec.loadBalancerClass", _ptr(cls), "may not change once set"))
    if cls is None:
        return errs
    if not _is_lb(spec):
        return errs + [forbidden("spec.loadBalancerClass", LB_ONLY)]
    return errs + [invalid_value("spec.loadBalancerClass", cls, m) for m in is_qualified_name(cls)]


def _traffic_policy_errors(spec: dict) -> list[FieldError]:
    """validateServiceExternalTrafficPolicy, the internal policy and trafficDistribution."""
    errs: list[FieldError] = []
    etp = _str(spec, "externalTrafficPolicy")
    if not _externally_accessible(spec):
        if etp:
            errs.append(invalid_value("spec.externalTrafficPolicy", etp,
                                      "may only be set for externally-accessible services"))
    else:
        errs += _enum("spec.externalTrafficPolicy", etp, TRAFFIC_POLICIES)
    hcnp = _int(spec, "healthCheckNodePort")
    if not _needs_health_check(spec):
        if hcnp:
            errs.append(invalid_value("spec.healthCheckNodePort", hcnp,
                                      "may only be set when `type` is 'LoadBalancer' and "
                                      "`externalTrafficPolicy` is 'Local'"))
    elif hcnp:  # 0 is left for the allocator to fill
        errs += [invalid_value("spec.healthCheckNodePort", hcnp, m)
                 for m in is_valid_port_num(hcnp)]
    itp = spec.get("internalTrafficPolicy")
    if itp is None and _type(spec) in (NODE_PORT, LOAD_BALANCER, CLUSTER_IP):
        errs.append(required("spec.internalTrafficPolicy"))
    elif itp is not None and itp not in TRAFFIC_POLICIES:
        errs.append(not_supported("spec.internalTrafficPolicy", itp, list(TRAFFIC_POLICIES)))
    distribution = spec.get("trafficDistribution")
    if distribution is not None and distribution not in TRAFFIC_DISTRIBUTIONS:
        errs.append(not_supported("spec.trafficDistribution", distribution,
                                  list(TRAFFIC_DISTRIBUTIONS)))
    return errs


def _validate_body(svc: dict) -> list[FieldError]:
    """ValidateService without ValidateObjectMeta (the generic strategy checks metadata)."""
    spec = _spec(svc)
    errs: list[FieldError] = []
    annotations = (svc.get("metadata") or {}).get("annotations") or {}
    mode = annotations.get(TOPOLOGY_MODE_ANNOTATION)
    hints = annotations.get(TOPOLOGY_HINTS_ANNOTATION)
    if mode is not None and hints is not None and mode != hints:
        errs.append(invalid_value(
            f"metadata.annotations[{TOPOLOGY_MODE_ANNOTATION}]", mode,
            f"must match annotations[{TOPOLOGY_HINTS_ANNOTATION}] when both are specified"))
    ports = _ports(spec)
    if not ports and not _headless(spec) and _type(spec) != EXTERNAL_NAME:
        errs.append(required("spec.ports"))
    errs += _type_errors(spec)
    names: set[str] = set()
    for i, port in enumerate(ports):
        errs += _port_errors(port, f"spec.ports[{i}]", len(ports) > 1, names)
    if spec.get("selector") is not None:
        errs += validate_labels(spec["selector"], "spec.selector")
    errs += _session_affinity_errors(spec)
    errs += _cluster_ips_related_errors(spec)
    for i, ip in enumerate(spec.get("externalIPs") or []):
        path = f"spec.externalIPs[{i}]"
        msgs = is_valid_ip(ip) or non_special_ip_errors(ip)
        errs += [invalid_value(path, ip, m) for m in msgs]
    errs += _enum("spec.type", spec.get("type"), SERVICE_TYPES)
    if _type(spec) == CLUSTER_IP:
        errs += [forbidden(f"spec.ports[{i}].nodePort",
                           "may not be used when `type` is 'ClusterIP'")
                 for i, port in enumerate(ports) if _int(port, "nodePort")]
    seen_node_ports: set[tuple[str, int]] = set()
    for i, port in enumerate(ports):
        key = (_str(port, "protocol"), _int(port, "nodePort"))
        if key[1] and key in seen_node_ports:
            errs.append(duplicate(f"spec.ports[{i}].nodePort", key[1]))
        seen_node_ports.add(key)
    seen_ports: set[tuple[str, int]] = set()
    for i, port in enumerate(ports):
        key = (_str(port, "protocol"), _int(port, "port"))
        if key in seen_ports:
            errs.append(GoValueError(DUPLICATE, f"spec.ports[{i}]", _port_key(*key)))
        seen_ports.add(key)
    errs += _source_range_errors(svc, spec)
    if spec.get("allocateLoadBalancerNodePorts") is not None and not _is_lb(spec):
        errs.append(forbidden("spec.allocateLoadBalancerNodePorts", LB_ONLY))
    if _is_lb(spec) and spec.get("allocateLoadBalancerNodePorts") is None:
        errs.append(required("allocateLoadBalancerNodePorts"))  # sic: Kubernetes drops "spec."
    errs += _load_balancer_class_errors(spec, None)
    return errs + _traffic_policy_errors(spec)


def validate_service(svc: dict) -> list[FieldError]:
    """The errors Kubernetes reports for creating this (defaulted) Service."""
    return _ip_family_errors(_spec(svc), None) or _validate_body(svc)


# --- ValidateServiceUpdate --------------------------------------------------------------------

def _changed(path: str, value: str) -> FieldError:
    return GoValueError(INVALID, path, value, "may not change once set")


def _upgrade_downgrade_errors(spec: dict, old: dict) -> list[FieldError]:
    """validateUpgradeDowngradeClusterIPs and ...IPFamilies: the primary clusterIP and family
    are immutable; a secondary one may be added, or released with policy SingleStack. Changes
    to or from ExternalName are exempt, and so is a headless Service, from its families' rules
    as well (the paths and values below are Kubernetes' own, quirks included)."""
    if not (_needs_cluster_ip(spec) and _needs_cluster_ip(old)):
        return []
    errs: list[FieldError] = []
    policy = spec.get("ipFamilyPolicy")
    old_ips, ips = old.get("clusterIPs") or [], spec.get("clusterIPs") or []
    if not (_headless(old) and _headless(spec)):
        if len(old_ips) == len(ips):
            errs += [_changed(f"spec.clusterIPs[{i}]", _ips(spec))
                     for i, ip in enumerate(old_ips) if ip != ips[i]]
        elif len(old_ips) > len(ips):
            if not ips:
                errs.append(GoValueError(INVALID, "spec.clusterIPs[0]", _ips(spec),
                                         "primary clusterIP can not be unset"))
            elif ips[0] != old_ips[0]:
                errs.append(_changed("spec.clusterIPs[0]", _ips(spec)))
            if len(ips) == 1 and policy != SINGLE_STACK:
                errs.append(invalid_value(
                    "spec.ipFamilyPolicy", _ptr(policy),
                    "must be set to 'SingleStack' when releasing the secondary clusterIP"))
        elif old_ips and ips[0] != old_ips[0]:
            errs.append(_changed("spec.clusterIPs[0]", _ips(spec)))
    if _headless(old) or _headless(spec):
        return errs
    old_families, families = old.get("ipFamilies") or [], spec.get("ipFamilies") or []
    if len(old_families) == len(families):
        errs += [_changed("spec.ipFamilies[0]", _families(spec))
                 for i, family in enumerate(old_families) if family != families[i]]
    elif len(old_families) > len(families):
        if not ips:
            errs.append(GoValueError(INVALID, "spec.ipFamilies[0]", _families(spec),
                                     "primary ipFamily can not be unset"))
        if families and families[0] != old_families[0]:
            errs.append(_changed("spec.ipFamilies[0]", _ips(spec)))
        if len(families) == 1 and policy != SINGLE_STACK:
            errs.append(invalid_value(
                "spec.ipFamilyPolicy", _ptr(policy),
                "must be set to 'SingleStack' when releasing the secondary ipFamily"))
    elif old_families and families[0] != old_families[0]:
        errs.append(_changed("spec.ipFamilies[0]", _ips(spec)))
    return errs


def _update_errors(spec: dict, old: dict) -> list[FieldError]:
    """The checks ValidateServiceUpdate adds in front of ValidateService. The loadBalancerClass
    rules run here with the old object and again inside ValidateService, so Kubernetes lists
    their errors twice (its message text, and kubectl, show each once)."""
    errs = _upgrade_downgrade_errors(spec, old) + _load_balancer_class_errors(spec, old)
    if (_needs_health_check(old) and _needs_health_check(spec)
            and _int(spec, "healthCheckNodePort") != _int(old, "healthCheckNodePort")):
        errs.append(forbidden("spec.healthCheckNodePort", "field is immutable"))
    return errs


def validate_service_update(new: dict, old: dict) -> list[FieldError]:
    """The errors Kubernetes reports for this update (after prepare_service_update), in order."""
    spec, old_spec = _spec(new), _spec(old)
    return _ip_family_errors(spec, old_spec) or _update_errors(spec, old_spec) + _validate_body(new)


def _update_checks(new: dict, old: dict) -> list[FieldError]:
    """validate_service_update minus what validate_service(new) reports: the generic strategy
    runs that first and then this."""
    spec, old_spec = _spec(new), _spec(old)
    released = []
    if _needs_cluster_ip(spec) and not _cluster_ips_related_errors(spec):
        released = _released_secondary_errors(spec, old_spec)
    return released + _update_errors(spec, old_spec)


register("Service", KindRules(default=default_service, validate=validate_service,
                              validate_update=_update_checks, prepare_update=prepare_service_update))
