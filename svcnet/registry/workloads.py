"""Pods, Nodes, Namespaces, Endpoints, EndpointSlices, Deployments and ReplicaSets: Kubernetes
1.32 defaulting and validation.

Theory of operation
-------------------
kube-apiserver takes a written object through defaulting (pkg/apis/*/v1/defaults.go, applied
when the body is decoded, plus the v1 <-> internal conversions that keep paired fields in step),
a few admission plugins, and the kind's validation (pkg/apis/core/validation/validation.go,
pkg/apis/apps/validation, pkg/apis/discovery/validation) and registry strategy. This module does
the same for the fields svcnet uses, with Kubernetes' field paths, message texts and order, and
returns every error at once (the generic strategy has already checked ObjectMeta).

Per kind (`default_*`, `validate_*`, `validate_*_update`, registered at import):

- Pod: SetDefaults_Pod/PodSpec/Container/Probe/HTTPGetAction/ContainerPort/Volume/
  ObjectFieldSelector/ResourceList (quantities rounded up to milli and printed as the apiserver
  prints them), the serviceAccount alias, podIP(s)/hostIP(s) conversion, status.qosClass, and
  the effects of the Priority (priority 0, preemptionPolicy PreemptLowerPriority when there is
  no priorityClassName) and DefaultTolerationSeconds (not-ready / unreachable tolerations, 300 s)
  admission plugins. ValidatePodCreate: ValidatePodSpec (containers, init containers, ports,
  env, envFrom, volumes and mounts, probes, lifecycle, resources, restart/DNS policy,
  tolerations, DNS config, host aliases, readiness and scheduling gates, security-context ids,
  names), pod-specific annotations. ValidatePodUpdate: container add/remove, images,
  activeDeadlineSeconds, tolerations additions, scheduling gates, QoS, and the
  "pod updates may not change fields other than ..." Forbidden error with a diff.
  Status writes (detected as a status that differs from the old one; main-resource writes keep
  the old status): ValidatePodStatusUpdate's conditions, podIPs, hostIPs, container state
  transitions, nominatedNodeName.
- Node: SetDefaults_NodeStatus (allocatable from capacity), podCIDR/podCIDRs conversion,
  quantities. ValidateNode (taints at `metadata.taints`, as Kubernetes names them; capacity and
  allocatable; podCIDRs), ValidateNodeUpdate (duplicate addresses, podCIDRs and providerID
  immutable once set).
- Namespace: SetDefaults_Namespace (the kubernetes.io/metadata.name label), spec.finalizers
  default; ValidateNamespace's finalizer names (at `spec.finalizers`, unindexed, as Kubernetes
  reports them); the status phase rule of ValidateNamespaceStatusUpdate.
- Endpoints: SetDefaults_Endpoints (port protocol); validateEndpointSubsets.
- EndpointSlice: SetDefaults_EndpointPort (name "", protocol TCP); ValidateEndpointSlice
  (addressType, at most 1000 endpoints of 1-100 addresses each, addresses per type, nodeName,
  hostname, deprecatedTopology, zone hints, at most 20000 ports, port names, protocols,
  appProtocol); addressType immutable.
- Deployment / ReplicaSet: SetDefaults_Deployment / SetDefaults_ReplicaSet and the pod
  template's defaults; ValidateDeploymentSpec / ValidateReplicaSetSpec (replicas, selector
  required, non-empty, valid and matching the template labels, the template as
  ValidatePodTemplateSpec with restartPolicy Always only, strategy with IntOrString percent
  rules, minReadySeconds, revisionHistoryLimit, progressDeadlineSeconds > minReadySeconds);
  selector immutable on update (apps/v1); status rules on status writes.

Deliberate deviations, so that what svcnet itself writes stays valid:
- default/kubernetes Endpoints and EndpointSlice may carry a loopback address (svcnet
  advertises 127.0.0.1 when the node has no other), Kubernetes would refuse it.
- An Endpoints address with `nodeName: ""` is accepted (svcnet's Endpoints controller writes
  it for pods without a node; Kubernetes validates the empty name and refuses it).
Not done: affinity, topology spread constraints, sysctls, seccomp/AppArmor, Windows options,
volume sources beyond the required name fields, resource claims, ephemeral containers beyond
"cannot be set on create", the ServiceAccount admission plugin. The spec diff after "pod
updates may not change fields other than" imitates go-cmp's layout at the level of changed
fields; go-cmp's own output is not reproducible (it deliberately varies its whitespace).

Bad values print as field.Error prints them: pointers dereferenced, `null` for nil, structs,
maps and slices in Go's %#v syntax (`map[string]string{"app":"web"}`,
`v1.LabelSelector{MatchLabels:..., MatchExpressions:...}`, `intstr.IntOrString{...}`).
"""

from __future__ import annotations

import copy
import json
import re
from fractions import Fraction
from typing import Any, Iterable

from svcnet.api.errors import (DUPLICATE, INVALID, NOT_FOUND, NOT_SUPPORTED, FieldError,
                               duplicate, forbidden, invalid_value, not_supported, required,
                               too_many)
from svcnet.registry.service import GoValueError
from svcnet.registry.strategy import KindRules, register
from svcnet.registry.validation import (inclusive_range_error, is_dns1123_label,
                                        is_dns1123_subdomain, is_label_value, is_qualified_name,
                                        is_valid_cidr, is_valid_ip, is_valid_port_name,
                                        is_valid_port_num, non_special_ip_errors, parse_ip_sloppy,
                                        validate_annotations, validate_labels)

MAX_INT32 = 2147483647
NONNEGATIVE = "must be greater than or equal to 0"  # apimachineryvalidation.IsNegativeErrorMsg
IMMUTABLE = "field is immutable"


# =============================================================================================
# Reading objects: absent and null read as Go's zero value
# =============================================================================================

def _d(obj: Any, key: str) -> dict:
    v = obj.get(key) if isinstance(obj, dict) else None
    return v if isinstance(v, dict) else {}


def _l(obj: Any, key: str) -> list:
    v = obj.get(key) if isinstance(obj, dict) else None
    return v if isinstance(v, list) else []


def _dl(obj: Any, key: str) -> list[dict]:
    """A list of structs; non-dict entries read as empty structs."""
    return [e if isinstance(e, dict) else {} for e in _l(obj, key)]


def _int(obj: Any, key: str) -> int:
    v = obj.get(key) if isinstance(obj, dict) else None
    return v if isinstance(v, int) and not isinstance(v, bool) else 0


def _ptr_int(obj: Any, key: str) -> int | None:
    v = obj.get(key) if isinstance(obj, dict) else None
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def _str(obj: Any, key: str) -> str:
    v = obj.get(key) if isinstance(obj, dict) else None
    return v if isinstance(v, str) else ""


def _strmap(obj: Any, key: str) -> dict[str, str] | None:
    v = obj.get(key) if isinstance(obj, dict) else None
    return v if isinstance(v, dict) else None


def _idx(path: str, i: int) -> str:
    return f"{path}[{i}]"


def _key(path: str, k: str) -> str:
    return f"{path}[{k}]"


# =============================================================================================
# Bad values in Go's %#v syntax
# =============================================================================================

def _q(s: Any) -> str:
    return json.dumps(s if isinstance(s, str) else str(s), ensure_ascii=False)


def go_map(m: dict | None) -> str:
    """map[string]string as %#v prints it: keys sorted, nil and empty told apart."""
    if m is None:
        return "map[string]string(nil)"
    return "map[string]string{" + ", ".join(f"{_q(k)}:{_q(m[k])}" for k in sorted(m)) + "}"


def go_strings(items: list | None) -> str:
    if items is None:
        return "[]string(nil)"
    return "[]string{" + ", ".join(_q(i) for i in items) + "}"


def go_label_selector(sel: dict) -> str:
    exprs = sel.get("matchExpressions")
    if not isinstance(exprs, list):
        rendered = "[]v1.LabelSelectorRequirement(nil)"
    else:
        rendered = "[]v1.LabelSelectorRequirement{" + ", ".join(
            f"v1.LabelSelectorRequirement{{Key:{_q(_str(e, 'key'))}, "
            f"Operator:{_q(_str(e, 'operator'))}, "
            f"Values:{go_strings(_list_or_none(e, 'values'))}}}"
            for e in exprs) + "}"
    matched = go_map(_strmap(sel, "matchLabels"))
    return f"v1.LabelSelector{{MatchLabels:{matched}, MatchExpressions:{rendered}}}"


def _list_or_none(obj: Any, key: str) -> list | None:
    v = obj.get(key) if isinstance(obj, dict) else None
    return v if isinstance(v, list) else None


def go_intstr(v: Any) -> str:
    if isinstance(v, str):
        return f"intstr.IntOrString{{Type:1, IntVal:0, StrVal:{_q(v)}}}"
    n = v if isinstance(v, int) and not isinstance(v, bool) else 0
    return f'intstr.IntOrString{{Type:0, IntVal:{n}, StrVal:""}}'


_FAKE_POINTER = "0xc000010000"  # Go prints a pointer's address; no address is reproducible


def _go_ptr(type_name: str, value: Any) -> str:
    return f"(*{type_name})(nil)" if value is None else f"(*{type_name})({_FAKE_POINTER})"


def _govalue(kind: tuple[str, str], path: str, rendered: str, detail: str = "") -> FieldError:
    return GoValueError(kind, path, rendered, detail)


# =============================================================================================
# Names
# =============================================================================================

def name_is_dns_subdomain(name: str, prefix: bool = False) -> list[str]:
    """apimachineryvalidation.NameIsDNSSubdomain: a generateName prefix may end in '-'."""
    if prefix and len(name) > 1 and name.endswith("-"):
        name = name[:-1] + "a"
    return is_dns1123_subdomain(name)


def _dns_label_errs(value: str, path: str) -> list[FieldError]:
    return [invalid_value(path, value, m) for m in is_dns1123_label(value)]


def _dns_subdomain_errs(value: str, path: str) -> list[FieldError]:
    return [invalid_value(path, value, m) for m in is_dns1123_subdomain(value)]


def _qualified_name_errs(value: str, path: str) -> list[FieldError]:
    return [invalid_value(path, value, m) for m in is_qualified_name(value)]


def _nonnegative(value: int, path: str) -> list[FieldError]:
    return [invalid_value(path, value, NONNEGATIVE)] if value < 0 else []


_CONFIG_MAP_KEY = re.compile(r"[-._a-zA-Z0-9]+")


def _has_chdir_prefix(value: str) -> list[str]:
    if value == ".":
        return ["must not be '.'"]
    if value == "..":
        return ["must not be '..'"]
    if value.startswith(".."):
        return ["must not start with '..'"]
    return []


def is_config_map_key(value: str) -> list[str]:
    errs = []
    if len(value) > 253:
        errs.append("must be no more than 253 characters")
    if not _CONFIG_MAP_KEY.fullmatch(value):
        errs.append("a valid config key must consist of alphanumeric characters, '-', '_' or '.' "
                    "(e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation "
                    "is '[-._a-zA-Z0-9]+')")
    return errs + _has_chdir_prefix(value)


def is_relaxed_env_var_name(value: str) -> list[str]:
    """IsRelaxedEnvVarName (RelaxedEnvironmentVariableValidation is beta, on, in 1.32)."""
    errs = []
    if not value:
        errs.append("environment variable name must be non-empty")
    if any(ord(c) > 127 or not c.isprintable() or c == "=" for c in value):
        errs.append("a valid environment variable name must consist only of printable ASCII "
                    "characters other than '='")
    return errs


_HTTP_HEADER_NAME = re.compile(r"[-A-Za-z0-9]+")


def is_http_header_name(value: str) -> list[str]:
    if _HTTP_HEADER_NAME.fullmatch(value):
        return []
    return ["a valid HTTP header must consist of alphanumeric characters or '-' (e.g. "
            "'X-Header-Name', regex used for validation is '[-A-Za-z0-9]+')"]


_PERCENT = re.compile(r"[0-9]+%")


def is_valid_percent(value: str) -> list[str]:
    if _PERCENT.fullmatch(value):
        return []
    return ["a valid percent string must be a numeric string followed by an ending '%' (e.g. "
            "'1%',  or '93%', regex used for validation is '[0-9]+%')"]


def is_fully_qualified_domain_name(value: str, path: str) -> list[FieldError]:
    """validation.IsFullyQualifiedDomainName."""
    if not value:
        return [required(path)]
    name = value[:-1] if value.endswith(".") else value
    errs = is_dns1123_subdomain(name)
    if errs:
        return [invalid_value(path, name, ",".join(errs))]
    labels = name.split(".")
    if len(labels) < 2:
        return [invalid_value(path, name, "should be a domain with at least two segments "
                                          "separated by dots")]
    for label in labels:
        errs = is_dns1123_label(label)
        if errs:
            return [invalid_value(path, label, ",".join(errs))]
    return []


def _user_id_errs(value: Any, path: str) -> list[FieldError]:
    """IsValidUserID / IsValidGroupID: 0..MaxInt32."""
    if isinstance(value, int) and not isinstance(value, bool) and not 0 <= value <= MAX_INT32:
        return [invalid_value(path, value, inclusive_range_error(0, MAX_INT32))]
    return []


# =============================================================================================
# Label selectors (metav1 validation, LabelSelectorAsSelector)
# =============================================================================================

SELECTOR_OPS = ("In", "NotIn", "Exists", "DoesNotExist")


def validate_label_selector(sel: dict, path: str) -> list[FieldError]:
    """ValidateLabelSelector with AllowInvalidLabelValueInSelector false."""
    errs = validate_labels(_strmap(sel, "matchLabels"), f"{path}.matchLabels")
    for i, expr in enumerate(_dl(sel, "matchExpressions")):
        p = _idx(f"{path}.matchExpressions", i)
        op, values = _str(expr, "operator"), _l(expr, "values")
        if op in ("In", "NotIn"):
            if not values:
                errs.append(required(f"{p}.values",
                                     "must be specified when `operator` is 'In' or 'NotIn'"))
        elif op in ("Exists", "DoesNotExist"):
            if values:
                errs.append(forbidden(f"{p}.values", "may not be specified when `operator` is "
                                                     "'Exists' or 'DoesNotExist'"))
        else:
            errs.append(invalid_value(f"{p}.operator", op, "not a valid selector operator"))
        errs += _qualified_name_errs(_str(expr, "key"), f"{p}.key")
        for j, v in enumerate(values):
            v = v if isinstance(v, str) else str(v)
            errs += [invalid_value(_idx(f"{p}.values", j), v, m) for m in is_label_value(v)]
    return errs


def selector_parse_error(sel: dict | None) -> bool:
    """Whether metav1.LabelSelectorAsSelector fails on `sel`."""
    if sel is None:
        return False
    for k, v in (_strmap(sel, "matchLabels") or {}).items():
        if is_qualified_name(k) or is_label_value(v if isinstance(v, str) else str(v)):
            return True
    for expr in _dl(sel, "matchExpressions"):
        op, values = _str(expr, "operator"), _l(expr, "values")
        if op not in SELECTOR_OPS or is_qualified_name(_str(expr, "key")):
            return True
        if (op in ("In", "NotIn")) != bool(values):
            return True
        if any(is_label_value(v if isinstance(v, str) else str(v)) for v in values):
            return True
    return False


def selector_matches(sel: dict | None, labels: dict | None) -> bool:
    """A parsed selector's Matches(); a nil selector is labels.Nothing()."""
    if sel is None:
        return False
    labels = labels or {}
    for k, v in (_strmap(sel, "matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for expr in _dl(sel, "matchExpressions"):
        key, op, values = _str(expr, "key"), _str(expr, "operator"), _l(expr, "values")
        has = key in labels
        if op == "In" and not (has and labels[key] in values):
            return False
        if op == "NotIn" and has and labels[key] in values:
            return False
        if op == "Exists" and not has:
            return False
        if op == "DoesNotExist" and has:
            return False
    return True


def _selector_empty(sel: dict | None) -> bool:
    """A parsed (non-nil) selector with no requirements: labels.Everything()."""
    return sel is not None and not _strmap(sel, "matchLabels") and not _l(sel, "matchExpressions")


# =============================================================================================
# Quantities (k8s.io/apimachinery/pkg/api/resource)
# =============================================================================================

_DEC_SUFFIX = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
_BIN_SUFFIX = {"Ki": 10, "Mi": 20, "Gi": 30, "Ti": 40, "Pi": 50, "Ei": 60}
_DEC_BY_EXP = {v: k for k, v in _DEC_SUFFIX.items()}
_BIN_BY_EXP = {v: k for k, v in _BIN_SUFFIX.items()}
_QTY = re.compile(r"([+-]?)(0*)([0-9]*)(?:\.([0-9]*))?([eEinumkKMGTP]*)([-+]?[0-9]*)")
_MAX_QTY = Fraction(2 ** 63 - 1)
DECIMAL_SI, BINARY_SI, DECIMAL_EXPONENT = "DecimalSI", "BinarySI", "DecimalExponent"


class Quantity:
    """A parsed resource.Quantity: exact value, format, the cached string (when ParseQuantity
    keeps the input verbatim) and the int64Amount scale of the fast path (None: inf.Dec)."""

    __slots__ = ("value", "format", "cached", "scale")

    def __init__(self, value: Fraction, fmt: str, cached: str | None, scale: int | None):
        self.value, self.format, self.cached, self.scale = value, fmt, cached, scale

    def __str__(self) -> str:
        return self.cached if self.cached is not None else canonical_quantity(self.value,
                                                                              self.format)


def _ceil_scale(value: Fraction, scale: int) -> Fraction:
    """Round away from zero to a multiple of 10**scale (inf.RoundUp)."""
    unit = Fraction(10) ** scale
    n = value / unit
    if n.denominator == 1:
        return value
    whole = -(-abs(n.numerator) // n.denominator)
    return Fraction(whole if value > 0 else -whole) * unit


def parse_quantity(raw: Any) -> Quantity | None:
    """resource.ParseQuantity; None for what Kubernetes refuses to decode."""
    if isinstance(raw, bool) or raw is None:
        return None
    if isinstance(raw, int):
        raw = str(raw)
    elif isinstance(raw, float):
        raw = str(int(raw)) if raw.is_integer() else repr(raw)
    if not isinstance(raw, str):
        return None
    s = raw.strip()
    if s == "0":
        return Quantity(Fraction(0), DECIMAL_SI, "0", 0)
    m = _QTY.fullmatch(s)
    if not s or not m:
        return None
    sign, _zeros, num, denom, letters, exp_digits = m.groups()
    denom = denom or ""
    if not num and not denom and not _zeros:
        return None
    num = num or "0"
    suffix = letters + exp_digits
    if suffix in _DEC_SUFFIX:
        base, exponent, fmt = 10, _DEC_SUFFIX[suffix], DECIMAL_SI
    elif suffix in _BIN_SUFFIX:
        base, exponent, fmt = 2, _BIN_SUFFIX[suffix], BINARY_SI
    elif len(suffix) > 1 and suffix[0] in "eE" and re.fullmatch(r"[-+]?[0-9]+", suffix[1:]):
        base, exponent, fmt = 10, int(suffix[1:]), DECIMAL_EXPONENT
    else:
        return None
    positive = sign != "-"
    digits = Fraction(int(num + denom)) / Fraction(10) ** len(denom)
    value = digits * (Fraction(10) ** exponent if base == 10 else Fraction(2) ** exponent)
    if not positive:
        value = -value
    # The fast path (int64Amount), which keeps canonical-looking input verbatim.
    if fmt == BINARY_SI:
        precision = (15 - len(num) - int(exponent * 3 / 10) - 1) if not denom else -1
        scale = 0
    else:
        precision, scale = 18 - (len(num) + len(denom)), exponent
    if precision >= 0:
        scale -= len(denom)
        shifted = num + denom
        if scale >= -9 and abs(int(shifted)) < 2 ** 63:
            mantissa = 2 ** exponent if fmt == BINARY_SI else 1
            if abs(int(shifted) * mantissa) < 2 ** 63:
                if fmt == BINARY_SI:
                    keep = exponent % 10 == 0 and int(shifted) & 7 != 0
                else:
                    keep = (scale % 3 == 0 if scale >= 0 else -scale % 3 == 0) and \
                        not shifted.endswith("000") and shifted[0] != "0"
                return Quantity(value, fmt, raw.strip() if keep else None, scale)
    # The slow path (inf.Dec): rounded up to nano, capped at the int64 maximum.
    if value != 0:
        value = _ceil_scale(value, -9)
    if abs(value) > _MAX_QTY:
        value = _MAX_QTY if value > 0 else -_MAX_QTY
    return Quantity(value, fmt, None, None)


def round_up_milli(q: Quantity) -> Quantity:
    """Quantity.RoundUp(-3), as SetDefaults_ResourceList applies it."""
    if q.scale is not None and q.scale >= -3:
        return q
    return Quantity(_ceil_scale(q.value, -3), q.format, None, -3)


def _remove_factors(n: int, base: int) -> tuple[int, int]:
    times = 0
    while n and n % base == 0:
        n //= base
        times += 1
    return n, times


def canonical_quantity(value: Fraction, fmt: str) -> str:
    """Quantity.String() of an uncached quantity (CanonicalizeBytes)."""
    if value == 0:
        return "0"
    if fmt == BINARY_SI and (-1024 < value < 1024 or value.denominator != 1):
        fmt = DECIMAL_SI
    if fmt == BINARY_SI:
        amount, exp = _remove_factors(abs(value.numerator), 1024)
        sign = "-" if value < 0 else ""
        return f"{sign}{amount}{_BIN_BY_EXP.get(exp * 10, '')}"
    exponent, mantissa = 0, value
    while mantissa.denominator != 1:
        mantissa *= 10
        exponent -= 1
    amount, times = _remove_factors(abs(mantissa.numerator), 10)
    exponent += times
    rem = exponent - 3 * int(exponent / 3)  # Go's truncated remainder
    if rem in (1, -2):
        amount, exponent = amount * 10, exponent - 1
    elif rem in (2, -1):
        amount, exponent = amount * 100, exponent - 2
    sign = "-" if value < 0 else ""
    if fmt == DECIMAL_EXPONENT:
        return f"{sign}{amount}" + (f"e{exponent}" if exponent else "")
    return f"{sign}{amount}{_DEC_BY_EXP.get(exponent, '')}"


def _default_resource_list(rl: Any) -> None:
    """SetDefaults_ResourceList: every quantity rounded up to milli, printed as stored."""
    if not isinstance(rl, dict):
        return
    for k, v in list(rl.items()):
        q = parse_quantity(v)
        if q is not None:
            rl[k] = str(round_up_milli(q))


def _quantity(v: Any) -> Quantity | None:
    q = parse_quantity(v)
    return round_up_milli(q) if q is not None else None


# =============================================================================================
# Pod defaulting
# =============================================================================================

NOT_READY_TAINT = "node.kubernetes.io/not-ready"
UNREACHABLE_TAINT = "node.kubernetes.io/unreachable"
DEFAULT_TOLERATION_SECONDS = 300
# The volume sources of validateVolumeSource, in the order it checks them, and the two whose
# "more than 1 volume type" error Kubernetes reports at a misspelt path.
VOLUME_SOURCES = ("emptyDir", "hostPath", "gitRepo", "gcePersistentDisk", "awsElasticBlockStore",
                  "secret", "nfs", "iscsi", "glusterfs", "flocker", "persistentVolumeClaim",
                  "rbd", "cinder", "cephfs", "quobyte", "downwardAPI", "fc", "flexVolume",
                  "configMap", "azureFile", "vsphereVolume", "photonPersistentDisk",
                  "portworxVolume", "azureDisk", "storageos", "projected", "scaleIO", "csi",
                  "ephemeral")
_VOLUME_SOURCE_PATH = {"cephfs": "cephFS", "downwardAPI": "downwarAPI"}


_DOMAIN_COMPONENT = r"[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?"
_DOMAIN = rf"{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*(?::[0-9]+)?"
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_IMAGE_NAME = re.compile(rf"(?:{_DOMAIN}/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*")
_IMAGE_TAG = re.compile(r"[\w][\w.-]{0,127}")


def _image_tag(image: str) -> str:
    """parsers.ParseImageName's tag: "latest" when the image has neither tag nor digest, ""
    when it does not parse (the pull policy then defaults to IfNotPresent)."""
    name, at, digest = image.partition("@")
    last = name.rsplit("/", 1)[-1]
    tag = last.rsplit(":", 1)[1] if ":" in last else ""
    repo = name[:len(name) - len(tag) - 1] if ":" in last else name
    if not _IMAGE_NAME.fullmatch(repo) or (":" in last and not _IMAGE_TAG.fullmatch(tag)) or \
            (at and not digest):
        return ""
    return tag if tag or at else "latest"


def _default_http_get(action: Any) -> None:
    if isinstance(action, dict):
        if not action.get("path"):
            action["path"] = "/"
        if not action.get("scheme"):
            action["scheme"] = "HTTP"


def _default_handler(handler: Any) -> None:
    if isinstance(handler, dict):
        _default_http_get(handler.get("httpGet"))
        grpc = handler.get("grpc")
        if isinstance(grpc, dict) and grpc.get("service") is None:
            grpc["service"] = ""


def _default_probe(probe: Any) -> None:
    """SetDefaults_Probe (and its handler's)."""
    if not isinstance(probe, dict):
        return
    for f, v in (("timeoutSeconds", 1), ("periodSeconds", 10), ("successThreshold", 1),
                 ("failureThreshold", 3)):
        if not probe.get(f):
            probe[f] = v
    _default_handler(probe)


def _default_container(c: dict, host_network: bool) -> None:
    """SetDefaults_Container and the defaults of what a container holds."""
    if not c.get("imagePullPolicy"):
        latest = _image_tag(_str(c, "image")) == "latest"
        c["imagePullPolicy"] = "Always" if latest else "IfNotPresent"
    if not c.get("terminationMessagePath"):
        c["terminationMessagePath"] = "/dev/termination-log"
    if not c.get("terminationMessagePolicy"):
        c["terminationMessagePolicy"] = "File"
    resources = c.get("resources")
    if not isinstance(resources, dict):
        resources = c["resources"] = {}  # a struct, always serialized
    for f in ("limits", "requests"):
        _default_resource_list(resources.get(f))
    for p in _dl(c, "ports"):
        if not p.get("protocol"):
            p["protocol"] = "TCP"
        if host_network and not p.get("hostPort"):
            p["hostPort"] = _int(p, "containerPort")
    for f in ("livenessProbe", "readinessProbe", "startupProbe"):
        _default_probe(c.get(f))
    lifecycle = c.get("lifecycle")
    if isinstance(lifecycle, dict):
        for f in ("postStart", "preStop"):
            _default_handler(lifecycle.get(f))
    for env in _dl(c, "env"):
        field_ref = _d(env.get("valueFrom"), "fieldRef")
        if field_ref and not field_ref.get("apiVersion"):
            field_ref["apiVersion"] = "v1"


def _default_volume(v: dict) -> None:
    """SetDefaults_Volume and the volume sources' defaults."""
    if not any(v.get(s) is not None for s in VOLUME_SOURCES):
        v["emptyDir"] = {}
    for source, mode in (("secret", 420), ("configMap", 420), ("downwardAPI", 420),
                         ("projected", 420)):
        src = v.get(source)
        if isinstance(src, dict) and src.get("defaultMode") is None:
            src["defaultMode"] = mode
    host_path = v.get("hostPath")
    if isinstance(host_path, dict) and host_path.get("type") is None:
        host_path["type"] = ""
    for proj in _dl(v.get("projected"), "sources"):
        token = proj.get("serviceAccountToken")
        if isinstance(token, dict) and token.get("expirationSeconds") is None:
            token["expirationSeconds"] = 3600
    for item in _dl(v.get("downwardAPI"), "items"):
        ref = item.get("fieldRef")
        if isinstance(ref, dict) and not ref.get("apiVersion"):
            ref["apiVersion"] = "v1"


def default_pod_spec(spec: dict) -> None:
    """SetDefaults_PodSpec with everything a pod template's spec holds."""
    if not spec.get("dnsPolicy"):
        spec["dnsPolicy"] = "ClusterFirst"
    if not spec.get("restartPolicy"):
        spec["restartPolicy"] = "Always"
    if not isinstance(spec.get("securityContext"), dict):
        spec["securityContext"] = {}
    if spec.get("terminationGracePeriodSeconds") is None:
        spec["terminationGracePeriodSeconds"] = 30
    if not spec.get("schedulerName"):
        spec["schedulerName"] = "default-scheduler"
    # The deprecated serviceAccount is an alias of serviceAccountName (conversion).
    if not spec.get("serviceAccountName") and spec.get("serviceAccount"):
        spec["serviceAccountName"] = spec["serviceAccount"]
    if spec.get("serviceAccountName"):
        spec["serviceAccount"] = spec["serviceAccountName"]
    else:
        spec.pop("serviceAccount", None)
    host_network = spec.get("hostNetwork") is True
    for f in ("initContainers", "containers", "ephemeralContainers"):
        for c in _dl(spec, f):
            _default_container(c, host_network and f != "ephemeralContainers")
    for v in _dl(spec, "volumes"):
        _default_volume(v)
    _default_resource_list(spec.get("overhead"))


def _admit_pod(spec: dict) -> None:
    """The Priority and DefaultTolerationSeconds admission plugins."""
    if not spec.get("priorityClassName"):
        if spec.get("priority") is None:
            spec["priority"] = 0
        if spec.get("preemptionPolicy") is None:
            spec["preemptionPolicy"] = "PreemptLowerPriority"
    tolerations = spec.get("tolerations")
    tolerations = tolerations if isinstance(tolerations, list) else []
    have = {NOT_READY_TAINT: False, UNREACHABLE_TAINT: False}
    for t in tolerations:
        if isinstance(t, dict) and _str(t, "effect") in ("NoExecute", ""):
            for key in have:
                if _str(t, "key") in (key, ""):
                    have[key] = True
    for key, present in have.items():
        if not present:
            tolerations.append({"key": key, "operator": "Exists", "effect": "NoExecute",
                                "tolerationSeconds": DEFAULT_TOLERATION_SECONDS})
    spec["tolerations"] = tolerations


def _sync_ips(status: dict, single: str, plural: str) -> None:
    """The v1 <-> internal conversion of podIP/podIPs (hostIP/hostIPs): the singular field is
    authoritative when both are set and disagree; the plural one is filled from it."""
    one, many = _str(status, single), _dl(status, plural)
    if one and (not many or _str(many[0], "ip") != one):
        status[plural] = [{"ip": one}]
    elif many and not one:
        status[single] = _str(many[0], "ip")


def default_pod_status(pod: dict) -> None:
    """The status half of a Pod's defaulting (also run on pods/status writes): the IP pairs,
    and a qosClass the writer dropped put back (podStatusStrategy backfills it)."""
    status = pod.get("status")
    if isinstance(status, dict):
        _sync_ips(status, "podIP", "podIPs")
        _sync_ips(status, "hostIP", "hostIPs")
        if not status.get("qosClass"):
            status["qosClass"] = compute_qos(_d(pod, "spec"))


def default_pod(pod: dict) -> None:
    """Defaults a Pod in place (SetDefaults_Pod, SetDefaults_PodSpec, ..., admission)."""
    spec = pod.get("spec")
    if not isinstance(spec, dict):
        spec = pod["spec"] = {}
    # SetDefaults_Pod: requests default to limits; service links on.
    for f in ("containers", "initContainers"):
        for c in _dl(spec, f):
            res = c.get("resources")
            if isinstance(res, dict) and isinstance(res.get("limits"), dict):
                requests = res.get("requests") if isinstance(res.get("requests"), dict) else {}
                for k, v in res["limits"].items():
                    requests.setdefault(k, v)
                res["requests"] = requests
    if spec.get("enableServiceLinks") is None:
        spec["enableServiceLinks"] = True
    default_pod_spec(spec)
    _admit_pod(spec)
    status = pod.get("status")
    if isinstance(status, dict) and not _d(pod, "metadata").get("uid"):
        status["qosClass"] = compute_qos(spec)  # a pod being created (PrepareForCreate)
    default_pod_status(pod)


def compute_qos(spec: dict) -> str:
    """qos.ComputePodQOS (container-level resources)."""
    requests: dict[str, Fraction] = {}
    limits: dict[str, Fraction] = {}
    guaranteed = True
    for c in _dl(spec, "containers") + _dl(spec, "initContainers"):
        res = _d(c, "resources")
        for name, q in _d(res, "requests").items():
            qty = _quantity(q)
            if name in ("cpu", "memory") and qty is not None and qty.value > 0:
                requests[name] = requests.get(name, Fraction(0)) + qty.value
        found = set()
        for name, q in _d(res, "limits").items():
            qty = _quantity(q)
            if name in ("cpu", "memory") and qty is not None and qty.value > 0:
                found.add(name)
                limits[name] = limits.get(name, Fraction(0)) + qty.value
        if found != {"cpu", "memory"}:
            guaranteed = False
    if not requests and not limits:
        return "BestEffort"
    if guaranteed and all(limits.get(k) == v for k, v in requests.items()) and \
            len(requests) == len(limits):
        return "Guaranteed"
    return "Burstable"


# =============================================================================================
# Pod validation: containers
# =============================================================================================

PROTOCOLS = ["SCTP", "TCP", "UDP"]


def _container_ports_errs(ports: list[dict], path: str) -> list[FieldError]:
    """validateContainerPorts."""
    errs: list[FieldError] = []
    names: set[str] = set()
    for i, port in enumerate(ports):
        p = _idx(path, i)
        name = _str(port, "name")
        if name:
            msgs = is_valid_port_name(name)
            if msgs:
                errs += [invalid_value(f"{p}.name", name, m) for m in msgs]
            elif name in names:
                errs.append(duplicate(f"{p}.name", name))
            else:
                names.add(name)
        cport = _int(port, "containerPort")
        if cport == 0:
            errs.append(required(f"{p}.containerPort"))
        else:
            errs += [invalid_value(f"{p}.containerPort", cport, m)
                     for m in is_valid_port_num(cport)]
        hport = _int(port, "hostPort")
        if hport:
            errs += [invalid_value(f"{p}.hostPort", hport, m) for m in is_valid_port_num(hport)]
        proto = _str(port, "protocol")
        if not proto:
            errs.append(required(f"{p}.protocol"))
        elif proto not in PROTOCOLS:
            errs.append(not_supported(f"{p}.protocol", proto, PROTOCOLS))
    return errs


ENV_FIELD_PATHS = ["metadata.name", "metadata.namespace", "metadata.uid", "spec.nodeName",
                   "spec.serviceAccountName", "status.hostIP", "status.hostIPs", "status.podIP",
                   "status.podIPs"]
_DOWNWARD_LABELS = {"metadata.annotations", "metadata.labels", "metadata.name",
                    "metadata.namespace", "metadata.uid", "spec.nodeName", "spec.restartPolicy",
                    "spec.serviceAccountName", "spec.schedulerName", "status.phase",
                    "status.hostIP", "status.hostIPs", "status.podIP", "status.podIPs"}
RESOURCE_FIELD_PATHS = ["limits.cpu", "limits.ephemeral-storage", "limits.memory",
                        "requests.cpu", "requests.ephemeral-storage", "requests.memory"]


def _split_subscript(field_path: str) -> tuple[str, str, bool]:
    """fieldpath.SplitMaybeSubscriptedPath."""
    if not field_path.endswith("']"):
        return field_path, "", False
    parts = field_path[:-2].split("['", 1)
    if len(parts) < 2 or not parts[0]:
        return field_path, "", False
    return parts[0], parts[1], True


def _field_ref_errs(ref: dict, path: str) -> list[FieldError]:
    """validateObjectFieldSelector with the env var field paths."""
    api_version, field_path = _str(ref, "apiVersion"), _str(ref, "fieldPath")
    if not api_version:
        return [required(f"{path}.apiVersion")]
    if not field_path:
        return [required(f"{path}.fieldPath")]
    base, sub, subscripted = _split_subscript(field_path)
    if api_version != "v1":
        err = f"unsupported pod version: {api_version}"
    elif subscripted and base not in ("metadata.annotations", "metadata.labels"):
        err = f"field label does not support subscript: {field_path}"
    elif not subscripted and field_path not in _DOWNWARD_LABELS and field_path != "spec.host":
        err = f"field label not supported: {field_path}"
    else:
        err = ""
    if err:
        return [invalid_value(f"{path}.fieldPath", field_path,
                              f"error converting fieldPath: {err}")]
    if field_path == "spec.host":
        field_path = base = "spec.nodeName"
    if subscripted:
        return _qualified_name_errs(sub.lower() if base == "metadata.annotations" else sub, path)
    if field_path not in ENV_FIELD_PATHS:
        return [not_supported(f"{path}.fieldPath", field_path, ENV_FIELD_PATHS)]
    return []


def _key_selector_errs(sel: dict, path: str) -> list[FieldError]:
    """validateConfigMapKeySelector / validateSecretKeySelector."""
    name = _str(sel, "name")
    errs = [invalid_value(f"{path}.name", name, m) for m in name_is_dns_subdomain(name)]
    key = _str(sel, "key")
    if not key:
        errs.append(required(f"{path}.key"))
    else:
        errs += [invalid_value(f"{path}.key", key, m) for m in is_config_map_key(key)]
    return errs


def _env_errs(env: list[dict], path: str) -> list[FieldError]:
    """ValidateEnv."""
    errs: list[FieldError] = []
    for i, ev in enumerate(env):
        p = _idx(path, i)
        name = _str(ev, "name")
        if not name:
            errs.append(required(f"{p}.name"))
        else:
            errs += [invalid_value(f"{p}.name", name, m) for m in is_relaxed_env_var_name(name)]
        value_from = ev.get("valueFrom")
        if not isinstance(value_from, dict):
            continue
        vp = f"{p}.valueFrom"
        sources = 0
        if isinstance(value_from.get("fieldRef"), dict):
            sources += 1
            errs += _field_ref_errs(value_from["fieldRef"], f"{vp}.fieldRef")
        if isinstance(value_from.get("resourceFieldRef"), dict):
            sources += 1
            resource = _str(value_from["resourceFieldRef"], "resource")
            rp = f"{vp}.resourceFieldRef"
            if not resource:
                errs.append(required(f"{rp}.resource"))
            elif resource not in RESOURCE_FIELD_PATHS and not resource.startswith(
                    ("requests.hugepages-", "limits.hugepages-")):
                errs.append(not_supported(f"{rp}.resource", resource, RESOURCE_FIELD_PATHS))
        for f in ("configMapKeyRef", "secretKeyRef"):
            if isinstance(value_from.get(f), dict):
                sources += 1
                errs += _key_selector_errs(value_from[f], f"{vp}.{f}")
        if sources == 0:
            errs.append(invalid_value(vp, "", "must specify one of: `fieldRef`, "
                                              "`resourceFieldRef`, `configMapKeyRef` or "
                                              "`secretKeyRef`"))
        elif _str(ev, "value"):
            errs.append(invalid_value(vp, "", "may not be specified when `value` is not empty"))
        elif sources > 1:
            errs.append(invalid_value(vp, "", "may not have more than one field specified at a "
                                              "time"))
    return errs


def _env_from_errs(env_from: list[dict], path: str) -> list[FieldError]:
    """ValidateEnvFrom."""
    errs: list[FieldError] = []
    for i, ev in enumerate(env_from):
        p = _idx(path, i)
        prefix = _str(ev, "prefix")
        if prefix:
            errs += [invalid_value(f"{p}.prefix", prefix, m)
                     for m in is_relaxed_env_var_name(prefix)]
        sources = 0
        for f in ("configMapRef", "secretRef"):
            ref = ev.get(f)
            if isinstance(ref, dict):
                sources += 1
                name = _str(ref, "name")
                if not name:
                    errs.append(required(f"{p}.{f}.name"))
                else:
                    errs += [invalid_value(f"{p}.{f}.name", name, m)
                             for m in name_is_dns_subdomain(name, prefix=True)]
        if sources == 0:
            errs.append(invalid_value(path, "", "must specify one of: `configMapRef` or "
                                                "`secretRef`"))
        elif sources > 1:
            errs.append(invalid_value(path, "", "may not have more than one field specified at a "
                                                "time"))
    return errs


def _local_descending_path_errs(value: str, path: str) -> list[FieldError]:
    """validateLocalDescendingPath."""
    errs = []
    if value.startswith("/"):
        errs.append(invalid_value(path, value, "must be a relative path"))
    if ".." in value.split("/"):
        errs.append(invalid_value(path, value, "must not contain '..'"))
    return errs


def _volume_mounts_errs(mounts: list[dict], volumes: set[str], path: str) -> list[FieldError]:
    """ValidateVolumeMounts (without devices, propagation and recursiveReadOnly)."""
    errs: list[FieldError] = []
    seen: set[str] = set()
    for i, mnt in enumerate(mounts):
        p = _idx(path, i)
        name, mount_path = _str(mnt, "name"), _str(mnt, "mountPath")
        if not name:
            errs.append(required(f"{p}.name"))
        if name not in volumes:
            errs.append(FieldError(NOT_FOUND, f"{p}.name", name))
        if not mount_path:
            errs.append(required(f"{p}.mountPath"))
        if mount_path in seen:
            errs.append(invalid_value(f"{p}.mountPath", mount_path, "must be unique"))
        seen.add(mount_path)
        sub_path, expr = _str(mnt, "subPath"), _str(mnt, "subPathExpr")
        if sub_path:
            errs += _local_descending_path_errs(sub_path, f"{path}.subPath")
        if expr:
            if sub_path:
                errs.append(invalid_value(f"{p}.subPathExpr", expr,
                                          "subPathExpr and subPath are mutually exclusive"))
            errs += _local_descending_path_errs(expr, f"{path}.subPathExpr")
    return errs


STANDARD_CONTAINER_RESOURCES = {"cpu", "memory", "ephemeral-storage"}
STANDARD_RESOURCES = STANDARD_CONTAINER_RESOURCES | {
    "requests.cpu", "requests.memory", "requests.ephemeral-storage", "limits.cpu",
    "limits.memory", "limits.ephemeral-storage", "pods", "resourcequotas", "services",
    "replicationcontrollers", "secrets", "configmaps", "persistentvolumeclaims", "storage",
    "requests.storage", "services.nodeports", "services.loadbalancers"}


def _is_native_resource(name: str) -> bool:
    return "/" not in name or "kubernetes.io/" in name


def _is_hugepages(name: str) -> bool:
    return name.startswith("hugepages-")


def _is_extended_resource(name: str) -> bool:
    if _is_native_resource(name) or name.startswith("requests."):
        return False
    return not is_qualified_name("requests." + name)


def _overcommit_allowed(name: str) -> bool:
    return _is_native_resource(name) and not _is_hugepages(name)


def _container_resource_name_errs(name: str, path: str) -> list[FieldError]:
    """validateContainerResourceName."""
    errs = _qualified_name_errs(name, path)
    if not errs and "/" not in name and name not in STANDARD_RESOURCES and \
            not name.startswith(("hugepages-", "requests.hugepages-")):
        errs.append(invalid_value(path, name,
                                  "must be a standard resource type or fully qualified"))
    if "/" not in name:
        if name not in STANDARD_CONTAINER_RESOURCES and not _is_hugepages(name):
            errs.append(invalid_value(path, name, "must be a standard resource for containers"))
    elif not _is_native_resource(name) and not _is_extended_resource(name):
        errs.append(invalid_value(path, name, "doesn't follow extended resource name standard"))
    return errs


def _resources_errs(res: dict, path: str) -> list[FieldError]:
    """ValidateResourceRequirements (quantity checks: non-negative, request <= limit)."""
    errs: list[FieldError] = []
    lim_path, req_path = f"{path}.limits", f"{path}.requests"
    limits, requests = _d(res, "limits"), _d(res, "requests")
    cpu_mem = hugepages = False
    parsed_limits: dict[str, Quantity] = {}
    for name, raw in limits.items():
        p = _key(lim_path, name)
        errs += _container_resource_name_errs(name, p)
        q = _quantity(raw)
        if q is None:
            continue
        parsed_limits[name] = q
        if q.value < 0:
            errs.append(invalid_value(p, str(q), NONNEGATIVE))
        hugepages |= _is_hugepages(name)
        cpu_mem |= name in ("cpu", "memory")
    for name, raw in requests.items():
        p = _key(req_path, name)
        errs += _container_resource_name_errs(name, p)
        q = _quantity(raw)
        if q is None:
            continue
        if q.value < 0:
            errs.append(invalid_value(p, str(q), NONNEGATIVE))
        limit = parsed_limits.get(name)
        if limit is not None:
            if q.value != limit.value and not _overcommit_allowed(name):
                errs.append(invalid_value(req_path, str(q),
                                          f"must be equal to {name} limit of {limit}"))
            elif q.value > limit.value:
                errs.append(invalid_value(req_path, str(q),
                                          f"must be less than or equal to {name} limit of {limit}"))
        elif name not in limits and not _overcommit_allowed(name):
            errs.append(required(lim_path, "Limit must be set for non overcommitable resources"))
        hugepages |= _is_hugepages(name)
        cpu_mem |= name in ("cpu", "memory")
    if hugepages and not cpu_mem:
        errs.append(forbidden(path, "HugePages require cpu or memory"))
    return errs


def _port_num_or_name_errs(port: Any, path: str) -> list[FieldError]:
    """ValidatePortNumOrName."""
    if isinstance(port, str):
        return [invalid_value(path, port, m) for m in is_valid_port_name(port)]
    n = port if isinstance(port, int) and not isinstance(port, bool) else 0
    return [invalid_value(path, n, m) for m in is_valid_port_num(n)]


_PROBE_HANDLERS = ("exec", "httpGet", "tcpSocket", "grpc")
_LIFECYCLE_HANDLERS = ("exec", "httpGet", "tcpSocket", "sleep")


def _handler_errs(handler: dict, kinds: tuple[str, ...], grace: int | None,
                  path: str) -> list[FieldError]:
    """validateHandler."""
    errs: list[FieldError] = []
    count = 0
    for kind in kinds:
        action = handler.get(kind)
        if not isinstance(action, dict):
            continue
        p = f"{path}.{kind}"
        if count:
            errs.append(forbidden(p, "may not specify more than 1 handler type"))
            continue
        count += 1
        if kind == "exec":
            if not _l(action, "command"):
                errs.append(required(f"{p}.command"))
        elif kind == "httpGet":
            if not _str(action, "path"):
                errs.append(required(f"{p}.path"))
            errs += _port_num_or_name_errs(action.get("port"), f"{p}.port")
            scheme = _str(action, "scheme")
            if scheme not in ("HTTP", "HTTPS"):
                errs.append(not_supported(f"{p}.scheme", scheme, ["HTTP", "HTTPS"]))
            for header in _dl(action, "httpHeaders"):
                name = _str(header, "name")
                errs += [invalid_value(f"{p}.httpHeaders", name, m)
                         for m in is_http_header_name(name)]
        elif kind == "tcpSocket":
            errs += _port_num_or_name_errs(action.get("port"), f"{p}.port")
        elif kind == "grpc":
            errs += _port_num_or_name_errs(_int(action, "port"), f"{p}.port")
        elif kind == "sleep":
            seconds = _int(action, "seconds")
            limit = grace if grace is not None else 0
            if seconds <= 0 or seconds > limit:
                errs.append(invalid_value(p, seconds, "must be greater than 0 and less than "
                                                      f"terminationGracePeriodSeconds ({limit})"))
    if count == 0:
        errs.append(required(path, "must specify a handler type"))
    return errs


def _probe_errs(probe: Any, grace: int | None, path: str, kind: str) -> list[FieldError]:
    """validateLivenessProbe / validateReadinessProbe / validateStartupProbe."""
    if not isinstance(probe, dict):
        return []
    errs = _handler_errs(probe, _PROBE_HANDLERS, grace, path)
    for f in ("initialDelaySeconds", "timeoutSeconds", "periodSeconds", "successThreshold",
              "failureThreshold"):
        errs += _nonnegative(_int(probe, f), f"{path}.{f}")
    tgps = _ptr_int(probe, "terminationGracePeriodSeconds")
    if tgps is not None and tgps <= 0:
        errs.append(invalid_value(f"{path}.terminationGracePeriodSeconds", tgps,
                                  "must be greater than 0"))
    if kind in ("liveness", "startup") and _int(probe, "successThreshold") != 1:
        errs.append(invalid_value(f"{path}.successThreshold", _int(probe, "successThreshold"),
                                  "must be 1"))
    if kind == "readiness" and tgps is not None:
        errs.append(invalid_value(f"{path}.terminationGracePeriodSeconds", tgps,
                                  "must not be set for readinessProbes"))
    return errs


def _lifecycle_errs(lifecycle: dict, grace: int | None, path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    for f in ("postStart", "preStop"):
        if isinstance(lifecycle.get(f), dict):
            errs += _handler_errs(lifecycle[f], _LIFECYCLE_HANDLERS, grace, f"{path}.{f}")
    return errs


def _container_common_errs(c: dict, volumes: set[str], path: str) -> list[FieldError]:
    """validateContainerCommon."""
    errs: list[FieldError] = []
    name = _str(c, "name")
    if not name:
        errs.append(required(f"{path}.name"))
    else:
        errs += _dns_label_errs(name, f"{path}.name")
    if not _str(c, "image"):
        errs.append(required(f"{path}.image"))
    policy = _str(c, "terminationMessagePolicy")
    if not policy:
        errs.append(required(f"{path}.terminationMessagePolicy"))
    elif policy not in ("File", "FallbackToLogsOnError"):
        errs.append(not_supported(f"{path}.terminationMessagePolicy", policy,
                                  ["File", "FallbackToLogsOnError"]))
    errs += _container_ports_errs(_dl(c, "ports"), f"{path}.ports")
    errs += _env_errs(_dl(c, "env"), f"{path}.env")
    errs += _env_from_errs(_dl(c, "envFrom"), f"{path}.envFrom")
    errs += _volume_mounts_errs(_dl(c, "volumeMounts"), volumes, f"{path}.volumeMounts")
    pull = _str(c, "imagePullPolicy")
    if not pull:
        errs.append(required(f"{path}.imagePullPolicy"))
    elif pull not in ("Always", "IfNotPresent", "Never"):
        errs.append(not_supported(f"{path}.imagePullPolicy", pull,
                                  ["Always", "IfNotPresent", "Never"]))
    errs += _resources_errs(_d(c, "resources"), f"{path}.resources")
    sc = c.get("securityContext")
    if isinstance(sc, dict):
        errs += _user_id_errs(sc.get("runAsUser"), f"{path}.securityContext.runAsUser")
        errs += _user_id_errs(sc.get("runAsGroup"), f"{path}.securityContext.runAsGroup")
    return errs


def _host_port_conflicts(containers: list[dict], path: str) -> list[FieldError]:
    """checkHostPortConflicts."""
    errs: list[FieldError] = []
    seen: set[str] = set()
    for ci, c in enumerate(containers):
        for pi, port in enumerate(_dl(c, "ports")):
            host_port = _int(port, "hostPort")
            if not host_port:
                continue
            key = f"{_str(port, 'protocol')}/{_str(port, 'hostIP')}/{host_port}"
            if key in seen:
                errs.append(duplicate(f"{_idx(path, ci)}.ports[{pi}].hostPort", key))
            seen.add(key)
    return errs


def _containers_errs(containers: list[dict], volumes: set[str], grace: int | None,
                     path: str) -> list[FieldError]:
    """validateContainers."""
    if not containers:
        return [required(path)]
    errs: list[FieldError] = []
    names: set[str] = set()
    for i, c in enumerate(containers):
        p = _idx(path, i)
        errs += _container_common_errs(c, volumes, p)
        name = _str(c, "name")
        if name in names:
            errs.append(duplicate(f"{p}.name", name))
        names.add(name)
        if isinstance(c.get("lifecycle"), dict):
            errs += _lifecycle_errs(c["lifecycle"], grace, f"{p}.lifecycle")
        errs += _probe_errs(c.get("livenessProbe"), grace, f"{p}.livenessProbe", "liveness")
        errs += _probe_errs(c.get("readinessProbe"), grace, f"{p}.readinessProbe", "readiness")
        errs += _probe_errs(c.get("startupProbe"), grace, f"{p}.startupProbe", "startup")
        if c.get("restartPolicy") is not None:
            errs.append(forbidden(f"{p}.restartPolicy", "may not be set for non-init containers"))
    return errs + _host_port_conflicts(containers, path)


def _init_containers_errs(inits: list[dict], regular: list[dict], volumes: set[str],
                          grace: int | None, path: str) -> list[FieldError]:
    """validateInitContainers."""
    errs: list[FieldError] = []
    names = {_str(c, "name") for c in regular}
    for i, c in enumerate(inits):
        p = _idx(path, i)
        errs += _container_common_errs(c, volumes, p)
        restart = c.get("restartPolicy")
        always = False
        if restart is not None:
            if restart != "Always":
                errs.append(not_supported(f"{p}.restartPolicy", restart, ["Always"]))
            always = restart == "Always"
        name = _str(c, "name")
        if name in names:
            errs.append(duplicate(f"{p}.name", name))
        elif name:
            names.add(name)
        errs += _host_port_conflicts([c], path)
        if always:
            if isinstance(c.get("lifecycle"), dict):
                errs += _lifecycle_errs(c["lifecycle"], grace, f"{p}.lifecycle")
            errs += _probe_errs(c.get("livenessProbe"), grace, f"{p}.livenessProbe", "liveness")
            errs += _probe_errs(c.get("readinessProbe"), grace, f"{p}.readinessProbe",
                                "readiness")
            errs += _probe_errs(c.get("startupProbe"), grace, f"{p}.startupProbe", "startup")
        else:
            for f in ("lifecycle", "livenessProbe", "readinessProbe", "startupProbe"):
                if c.get(f) is not None:
                    errs.append(forbidden(f"{p}.{f}", "may not be set for init containers "
                                                      "without restartPolicy=Always"))
        if _l(c, "resizePolicy"):
            rendered = "[]core.ContainerResizePolicy{" + ", ".join(
                f"core.ContainerResizePolicy{{ResourceName:{_q(_str(r, 'resourceName'))}, "
                f"RestartPolicy:{_q(_str(r, 'restartPolicy'))}}}"
                for r in _dl(c, "resizePolicy")) + "}"
            errs.append(_govalue(INVALID, f"{p}.resizePolicy", rendered,
                                 "must not be set for init containers"))
    return errs


def _volumes_errs(volumes: list[dict], path: str) -> tuple[set[str], list[FieldError]]:
    """ValidateVolumes: names, exactly one source, the sources' required names."""
    errs: list[FieldError] = []
    valid: set[str] = set()
    names: set[str] = set()
    for i, vol in enumerate(volumes):
        p = _idx(path, i)
        el: list[FieldError] = []
        sources = [s for s in VOLUME_SOURCES if vol.get(s) is not None]
        if not sources:
            el.append(required(p, "must specify a volume type"))
        for extra in sources[1:]:
            el.append(forbidden(f"{p}.{_VOLUME_SOURCE_PATH.get(extra, extra)}",
                                "may not specify more than 1 volume type"))
        for source, field in (("configMap", "name"), ("secret", "secretName"),
                              ("hostPath", "path"), ("persistentVolumeClaim", "claimName")):
            if sources[:1] == [source] and not _str(vol.get(source), field):
                el.append(required(f"{p}.{source}.{field}"))
        name = _str(vol, "name")
        if not name:
            el.append(required(f"{p}.name"))
        else:
            el += _dns_label_errs(name, f"{p}.name")
        if name in names:
            el.append(duplicate(f"{p}.name", name))
        if not el:
            names.add(name)
            valid.add(name)
        else:
            errs += el
    return valid, errs


def _tolerations_errs(tolerations: list[dict], path: str) -> list[FieldError]:
    """ValidateTolerations."""
    errs: list[FieldError] = []
    for i, t in enumerate(tolerations):
        p = _idx(path, i)
        key, op, value, effect = (_str(t, "key"), _str(t, "operator"), _str(t, "value"),
                                  _str(t, "effect"))
        if key:
            errs += _qualified_name_errs(key, f"{p}.key")
        if not key and op != "Exists":
            errs.append(invalid_value(f"{p}.operator", op, "operator must be Exists when `key` "
                                                           "is empty, which means \"match all "
                                                           "values and all keys\""))
        if t.get("tolerationSeconds") is not None and effect != "NoExecute":
            errs.append(invalid_value(f"{p}.effect", effect, "effect must be 'NoExecute' when "
                                                             "`tolerationSeconds` is set"))
        if op in ("Equal", ""):
            msgs = is_label_value(value)
            if msgs:
                errs.append(invalid_value(f"{p}.operator", value, ";".join(msgs)))
        elif op == "Exists":
            if value:
                errs.append(_govalue(INVALID, f"{p}.operator", _go_toleration(t),
                                     "value must be empty when `operator` is 'Exists'"))
        else:
            errs.append(not_supported(f"{p}.operator", op, ["Equal", "Exists"]))
        if effect:
            errs += _taint_effect_errs(effect, True, f"{p}.effect")
    return errs


def _go_toleration(t: dict) -> str:
    return (f"core.Toleration{{Key:{_q(_str(t, 'key'))}, Operator:{_q(_str(t, 'operator'))}, "
            f"Value:{_q(_str(t, 'value'))}, Effect:{_q(_str(t, 'effect'))}, "
            f"TolerationSeconds:{_go_ptr('int64', t.get('tolerationSeconds'))}}}")


TAINT_EFFECTS = ["NoSchedule", "PreferNoSchedule", "NoExecute"]


def _taint_effect_errs(effect: str, allow_empty: bool, path: str) -> list[FieldError]:
    if not allow_empty and not effect:
        return [required(path)]
    if effect not in TAINT_EFFECTS:
        return [not_supported(path, effect, TAINT_EFFECTS)]
    return []


DNS_POLICIES = ["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"]
RESTART_POLICIES = ["Always", "OnFailure", "Never"]


def _dns_config_errs(config: Any, policy: str, path: str) -> list[FieldError]:
    """validatePodDNSConfig."""
    if policy == "None":
        if not isinstance(config, dict):
            return [required(path, "must provide `dnsConfig` when `dnsPolicy` is None")]
        if not _l(config, "nameservers"):
            return [required(f"{path}.nameservers", "must provide at least one DNS nameserver "
                                                    "when `dnsPolicy` is None")]
    if not isinstance(config, dict):
        return []
    errs: list[FieldError] = []
    nameservers = [n if isinstance(n, str) else "" for n in _l(config, "nameservers")]
    if len(nameservers) > 3:
        errs.append(_govalue(INVALID, f"{path}.nameservers", go_strings(nameservers),
                             "must not have more than 3 nameservers"))
    for i, ns in enumerate(nameservers):
        errs += [invalid_value(_idx(f"{path}.nameservers", i), ns, m) for m in is_valid_ip(ns)]
    searches = [s if isinstance(s, str) else "" for s in _l(config, "searches")]
    if len(searches) > 32:
        errs.append(_govalue(INVALID, f"{path}.searches", go_strings(searches),
                             "must not have more than 32 search paths"))
    if len(" ".join(searches)) > 2048:
        errs.append(_govalue(INVALID, f"{path}.searches", go_strings(searches),
                             "must not have more than 2048 characters (including spaces) in the "
                             "search list"))
    for i, search in enumerate(searches):
        search = search[:-1] if search.endswith(".") else search
        errs += _dns_subdomain_errs(search, _idx(f"{path}.searches", i))
    for i, option in enumerate(_dl(config, "options")):
        if not _str(option, "name"):
            errs.append(required(_idx(f"{path}.options", i), "must not be empty"))
    return errs


def _pod_security_context_errs(spec: dict, path: str) -> list[FieldError]:
    sc = _d(spec, "securityContext")
    errs = _user_id_errs(sc.get("fsGroup"), f"{path}.fsGroup")
    errs += _user_id_errs(sc.get("runAsUser"), f"{path}.runAsUser")
    errs += _user_id_errs(sc.get("runAsGroup"), f"{path}.runAsGroup")
    for i, gid in enumerate(_l(sc, "supplementalGroups")):
        errs += _user_id_errs(gid, _idx(f"{path}.supplementalGroups", i))
    if spec.get("shareProcessNamespace") is True and spec.get("hostPID") is True:
        errs.append(invalid_value(f"{path}.shareProcessNamespace", True,
                                  "ShareProcessNamespace and HostPID cannot both be enabled"))
    return errs


def validate_pod_spec(spec: dict, path: str, is_pod: bool) -> list[FieldError]:
    """ValidatePodSpec (the subset svcnet validates, in Kubernetes' order)."""
    errs: list[FieldError] = []
    grace = _ptr_int(spec, "terminationGracePeriodSeconds")
    if spec.get("terminationGracePeriodSeconds") is None:
        errs.append(required(f"{path}.terminationGracePeriodSeconds"))
    volumes, vol_errs = _volumes_errs(_dl(spec, "volumes"), f"{path}.volumes")
    errs += vol_errs
    containers = _dl(spec, "containers")
    errs += _containers_errs(containers, volumes, grace, f"{path}.containers")
    errs += _init_containers_errs(_dl(spec, "initContainers"), containers, volumes, grace,
                                  f"{path}.initContainers")
    if spec.get("hostNetwork") is True:  # validatePodHostNetworkDeps
        for i, c in enumerate(containers):
            for j, port in enumerate(_dl(c, "ports")):
                hp, cp = _int(port, "hostPort"), _int(port, "containerPort")
                if (is_pod or hp != 0) and hp != cp:
                    errs.append(invalid_value(f"{path}.containers[{i}].ports[{j}].hostPort", hp,
                                              "must match `containerPort` when `hostNetwork` is "
                                              "true"))
    restart = _str(spec, "restartPolicy")
    if not restart:
        errs.append(required(f"{path}.restartPolicy"))
    elif restart not in RESTART_POLICIES:
        errs.append(not_supported(f"{path}.restartPolicy", restart, RESTART_POLICIES))
    dns = _str(spec, "dnsPolicy")
    if not dns:
        errs.append(required(f"{path}.dnsPolicy"))
    elif dns not in DNS_POLICIES:
        errs.append(not_supported(f"{path}.dnsPolicy", dns, DNS_POLICIES))
    errs += validate_labels(_strmap(spec, "nodeSelector"), f"{path}.nodeSelector")
    errs += _pod_security_context_errs(spec, f"{path}.securityContext")
    errs += _dns_config_errs(spec.get("dnsConfig"), dns, f"{path}.dnsConfig")
    for i, gate in enumerate(_dl(spec, "readinessGates")):
        errs += _qualified_name_errs(_str(gate, "conditionType"),
                                     f"{path}.readinessGates[{i}].conditionType")
    seen_gates: set[str] = set()
    for i, gate in enumerate(_dl(spec, "schedulingGates")):
        name = _str(gate, "name")
        errs += _qualified_name_errs(name, _idx(f"{path}.schedulingGates", i))
        if name in seen_gates:
            errs.append(duplicate(_idx(f"{path}.schedulingGates", i), name))
        seen_gates.add(name)
    for f in ("serviceAccountName", "nodeName"):
        value = _str(spec, f)
        if value:
            errs += [invalid_value(f"{path}.{f}", value, m) for m in name_is_dns_subdomain(value)]
    deadline = _ptr_int(spec, "activeDeadlineSeconds")
    if deadline is not None and not 1 <= deadline <= MAX_INT32:
        errs.append(invalid_value(f"{path}.activeDeadlineSeconds", deadline,
                                  inclusive_range_error(1, MAX_INT32)))
    for f in ("hostname", "subdomain"):
        if _str(spec, f):
            errs += _dns_label_errs(_str(spec, f), f"{path}.{f}")
    errs += _tolerations_errs(_dl(spec, "tolerations"), f"{path}.tolerations")
    for i, alias in enumerate(_dl(spec, "hostAliases")):
        p = _idx(f"{path}.hostAliases", i)
        ip = _str(alias, "ip")
        errs += [invalid_value(f"{p}.ip", ip, m) for m in is_valid_ip(ip)]
        for j, hostname in enumerate(_l(alias, "hostnames")):
            errs += _dns_subdomain_errs(hostname if isinstance(hostname, str) else "",
                                        _idx(f"{p}.hostnames", j))
    for f in ("priorityClassName",):
        if _str(spec, f):
            errs += _dns_subdomain_errs(_str(spec, f), f"{path}.{f}")
    if isinstance(spec.get("runtimeClassName"), str):
        errs += _dns_subdomain_errs(spec["runtimeClassName"], f"{path}.runtimeClassName")
    preemption = spec.get("preemptionPolicy")
    if preemption is not None:
        if preemption == "":
            errs.append(required(f"{path}.preemptionPolicy"))
        elif preemption not in ("PreemptLowerPriority", "Never"):
            errs.append(not_supported(f"{path}.preemptionPolicy", preemption,
                                      ["PreemptLowerPriority", "Never"]))
    os_ = spec.get("os")
    if isinstance(os_, dict):
        name = _str(os_, "name")
        if not name:
            errs.append(required(f"{path}.os.name", "cannot be empty"))
        elif name not in ("linux", "windows"):
            errs.append(not_supported(f"{path}.os", name, ["linux", "windows"]))
    return errs


def _pod_annotations_errs(annotations: dict | None, spec: dict, path: str) -> list[FieldError]:
    """ValidatePodSpecificAnnotations: mirror pods, pod-deletion-cost."""
    annotations = annotations or {}
    errs: list[FieldError] = []
    mirror = "kubernetes.io/config.mirror"
    if mirror in annotations and not _str(spec, "nodeName"):
        errs.append(invalid_value(_key(path, mirror), annotations[mirror],
                                  "must set spec.nodeName if mirror pod annotation is set"))
    cost_key = "controller.kubernetes.io/pod-deletion-cost"
    if cost_key in annotations:
        cost = annotations[cost_key] if isinstance(annotations[cost_key], str) else ""
        ok = bool(re.fullmatch(r"-?[0-9]+", cost)) and (cost[0] == "-" or cost == "0" or
                                                        cost[0] != "0")
        if not ok or not -2 ** 31 <= int(cost) < 2 ** 31:
            errs.append(invalid_value(_key(path, cost_key), cost, "must be a 32bit integer"))
    return errs


def validate_pod(pod: dict) -> list[FieldError]:
    """ValidatePodCreate without ValidateObjectMeta."""
    spec = _d(pod, "spec")
    meta = _d(pod, "metadata")
    errs = _pod_annotations_errs(_strmap(meta, "annotations"), spec, "metadata.annotations")
    errs += validate_pod_spec(spec, "spec", True)
    if not _str(spec, "serviceAccountName"):
        for vi, vol in enumerate(_dl(spec, "volumes")):
            for si, source in enumerate(_dl(vol.get("projected"), "sources")):
                if source.get("serviceAccountToken") is not None:
                    errs.append(forbidden(f"spec.volumes[{vi}].projected.sources[{si}]"
                                          ".serviceAccountToken", "must not be specified when "
                                                                  "serviceAccountName is not set"))
    for f in ("containers", "initContainers"):
        for i, c in enumerate(_dl(spec, f)):
            image = _str(c, "image")
            if image != image.strip():
                errs.append(invalid_value(f"spec.{f}[{i}].image", image,
                                          "must not have leading or trailing whitespace"))
    if _l(spec, "ephemeralContainers"):
        errs.append(forbidden("spec.ephemeralContainers", "cannot be set on create"))
    if _str(spec, "nodeName") and _l(spec, "schedulingGates"):
        errs.append(forbidden("spec.nodeName", "cannot be set until all schedulingGates have "
                                               "been cleared"))
    return errs


def validate_pod_template(template: dict, path: str) -> list[FieldError]:
    """ValidatePodTemplateSpec: labels and annotations at `<path>.labels`/`.annotations`."""
    meta = _d(template, "metadata")
    spec = _d(template, "spec")
    errs = validate_labels(_strmap(meta, "labels"), f"{path}.labels")
    errs += validate_annotations(_strmap(meta, "annotations"), f"{path}.annotations")
    errs += _pod_annotations_errs(_strmap(meta, "annotations"), spec, f"{path}.annotations")
    errs += validate_pod_spec(spec, f"{path}.spec", False)
    if _l(spec, "ephemeralContainers"):
        errs.append(forbidden(f"{path}.spec.ephemeralContainers",
                              "ephemeral containers not allowed in pod template"))
    return errs


# =============================================================================================
# Pod update
# =============================================================================================

UPDATABLE_POD_FIELDS = ("`spec.containers[*].image`,`spec.initContainers[*].image`,"
                        "`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to "
                        "existing tolerations),`spec.terminationGracePeriodSeconds` (allow it "
                        "to be set to 1 if it was previously negative)")


def _semantic(v: Any) -> Any:
    """A value as Go sees it after decoding: null, empty lists and maps, "", 0 and false are
    the zero value (equality.Semantic also treats nil and empty slices and maps alike)."""
    if isinstance(v, dict):
        out = {k: _semantic(x) for k, x in v.items()}
        return {k: x for k, x in out.items() if x is not None}
    if isinstance(v, list):
        return [_semantic(x) for x in v] or None
    if v in ("", 0, False) and not (isinstance(v, float)):
        return None
    return v


def _tolerations_equal(a: dict, b: dict) -> bool:
    a = {k: v for k, v in a.items() if k != "tolerationSeconds"}
    b = {k: v for k, v in b.items() if k != "tolerationSeconds"}
    return _semantic(a) == _semantic(b)


# Internal core.PodSpec field order, and the v1 JSON fields each one holds.
_POD_SPEC_FIELDS = (
    ("Volumes", "volumes"), ("InitContainers", "initContainers"), ("Containers", "containers"),
    ("EphemeralContainers", "ephemeralContainers"), ("RestartPolicy", "restartPolicy"),
    ("TerminationGracePeriodSeconds", "terminationGracePeriodSeconds"),
    ("ActiveDeadlineSeconds", "activeDeadlineSeconds"), ("DNSPolicy", "dnsPolicy"),
    ("NodeSelector", "nodeSelector"), ("ServiceAccountName", "serviceAccountName"),
    ("AutomountServiceAccountToken", "automountServiceAccountToken"), ("NodeName", "nodeName"),
    ("SecurityContext", "securityContext"), ("ImagePullSecrets", "imagePullSecrets"),
    ("Hostname", "hostname"), ("Subdomain", "subdomain"),
    ("SetHostnameAsFQDN", "setHostnameAsFQDN"), ("Affinity", "affinity"),
    ("SchedulerName", "schedulerName"), ("Tolerations", "tolerations"),
    ("HostAliases", "hostAliases"), ("PriorityClassName", "priorityClassName"),
    ("Priority", "priority"), ("PreemptionPolicy", "preemptionPolicy"),
    ("DNSConfig", "dnsConfig"), ("ReadinessGates", "readinessGates"),
    ("RuntimeClassName", "runtimeClassName"), ("Overhead", "overhead"),
    ("EnableServiceLinks", "enableServiceLinks"),
    ("TopologySpreadConstraints", "topologySpreadConstraints"), ("OS", "os"),
    ("SchedulingGates", "schedulingGates"), ("ResourceClaims", "resourceClaims"),
    ("Resources", "resources"),
)
# Fields of the v1 PodSpec that the internal one keeps in its SecurityContext.
_HOST_NAMESPACE_FIELDS = ("hostNetwork", "hostPID", "hostIPC", "shareProcessNamespace",
                          "hostUsers")
_ACRONYMS = {"dns": "DNS", "ip": "IP", "ips": "IPs", "id": "ID", "uid": "UID", "url": "URL",
             "fqdn": "FQDN", "tcp": "TCP", "http": "HTTP", "os": "OS", "sctp": "SCTP"}


def _go_field_name(json_name: str) -> str:
    parts = re.findall(r"[a-z]+|[A-Z][a-z]*|[0-9]+", json_name) or [json_name]
    out = []
    for p in parts:
        low = p.lower()
        out.append(_ACRONYMS.get(low, p[:1].upper() + p[1:]))
    return "".join(out)


def _go_literal(v: Any) -> str:
    """A value in the elided Go syntax go-cmp uses inside a diff."""
    if v is None:
        return "nil"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return str(v)
    if isinstance(v, str):
        return _q(v)
    if isinstance(v, list):
        return "{" + ", ".join(_go_literal(x) for x in v) + "}"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_go_field_name(k)}: {_go_literal(x)}" for k, x in v.items()) + "}"
    return str(v)


def _internal_spec(spec: dict) -> dict[str, Any]:
    """The v1 PodSpec as the internal core.PodSpec's fields (semantic values)."""
    sc = dict(_d(spec, "securityContext"))
    for f in _HOST_NAMESPACE_FIELDS:
        if f in spec:
            sc[f] = spec[f]
    out: dict[str, Any] = {}
    for go_name, json_name in _POD_SPEC_FIELDS:
        out[go_name] = _semantic(sc if json_name == "securityContext" else spec.get(json_name))
    return out


def pod_spec_diff(old: dict, new: dict) -> str:
    """A go-cmp-like diff of two pod specs, at the level of the fields that changed."""
    a, b = _internal_spec(old), _internal_spec(new)
    lines = ["  core.PodSpec{"]
    same = 0

    def flush() -> None:
        nonlocal same
        if same:
            lines.append(f"  \t... // {same} identical fields")
            same = 0

    for go_name, _ in _POD_SPEC_FIELDS:
        if a[go_name] == b[go_name]:
            same += 1
            continue
        flush()
        x, y = a[go_name], b[go_name]
        if isinstance(x, list) and isinstance(y, list) and len(x) == len(y) and \
                all(isinstance(e, dict) for e in x + y):
            elem = go_name[:-1] if go_name.endswith("s") else go_name
            lines.append(f"  \t{go_name}: []core.{elem}{{")
            for ex, ey in zip(x, y):
                if ex == ey:
                    lines.append("  \t\t{...},")
                    continue
                lines.append("  \t\t{")
                for k in dict.fromkeys(list(ex) + list(ey)):
                    if ex.get(k) == ey.get(k):
                        continue
                    name = _go_field_name(k)
                    lines.append(f"- \t\t\t{name}: {_go_literal(ex.get(k))},")
                    lines.append(f"+ \t\t\t{name}: {_go_literal(ey.get(k))},")
                lines.append("  \t\t},")
            lines.append("  \t},")
        else:
            lines.append(f"- \t{go_name}: {_go_literal(x)},")
            lines.append(f"+ \t{go_name}: {_go_literal(y)},")
    flush()
    lines.append("  }")
    return "\n".join(lines) + "\n"


def _container_updates_errs(new: list[dict], old: list[dict],
                            path: str) -> tuple[list[FieldError], bool]:
    """ValidateContainerUpdates."""
    if len(new) != len(old):
        return [forbidden(path, "pod updates may not add or remove containers")], True
    # Its image checks repeat validate_pod's (Kubernetes lists them twice, prints them once).
    return [], False


def _update_qos(pod: dict) -> str:
    status = _d(pod, "status")
    return _str(status, "qosClass") or compute_qos(_d(pod, "spec"))


def validate_pod_update(new: dict, old: dict) -> list[FieldError]:
    """ValidatePodUpdate's own checks (validate_pod(new) runs first), then, for a status
    write, ValidatePodStatusUpdate's. The old pod is compared as decoding would give it back,
    with today's defaults (so a pod stored before a default existed can still be updated)."""
    old = copy.deepcopy(old)
    default_pod(old)
    spec, old_spec = _d(new, "spec"), _d(old, "spec")
    errs = _pod_annotation_update_errs(new, old)
    for f in ("containers", "initContainers"):
        more, stop = _container_updates_errs(_dl(spec, f), _dl(old_spec, f), f"spec.{f}")
        errs += more
        if stop:
            return errs + _pod_status_errs(new, old)
    deadline = _ptr_int(spec, "activeDeadlineSeconds")
    old_deadline = _ptr_int(old_spec, "activeDeadlineSeconds")
    if deadline is not None:
        if not 0 <= deadline <= MAX_INT32:
            return errs + [invalid_value("spec.activeDeadlineSeconds", deadline,
                                         inclusive_range_error(0, MAX_INT32))]
        if old_deadline is not None and old_deadline < deadline:
            return errs + [invalid_value("spec.activeDeadlineSeconds", deadline,
                                         "must be less than or equal to previous value")]
    elif old_deadline is not None:
        errs.append(invalid_value("spec.activeDeadlineSeconds", None,
                                  "must not update from a positive integer to nil value"))
    tolerations = _dl(spec, "tolerations")
    for t in _dl(old_spec, "tolerations"):
        if not any(_tolerations_equal(t, n) for n in tolerations):
            errs.append(forbidden("spec.tolerations", "existing toleration can not be modified "
                                                      "except its tolerationSeconds"))
            break
    old_gates = {_str(g, "name") for g in _dl(old_spec, "schedulingGates")}
    for i, gate in enumerate(_dl(spec, "schedulingGates")):
        if _str(gate, "name") not in old_gates:
            errs.append(forbidden(f"spec.schedulingGates[{i}].name",
                                  f"only deletion is allowed, but found new scheduling gate "
                                  f"'{_str(gate, 'name')}'"))
    if _internal_spec(spec) != _internal_spec(old_spec):
        if _update_qos(old) != compute_qos(spec):
            errs.append(invalid_value("metadata", _str(_d(new, "status"), "qosClass"),
                                      "Pod QoS is immutable"))
        munged = copy.deepcopy(spec)
        for f in ("containers", "initContainers"):
            for c, oc in zip(_dl(munged, f), _dl(old_spec, f)):
                if "image" in oc:
                    c["image"] = oc["image"]
                else:
                    c.pop("image", None)
        for f in ("activeDeadlineSeconds", "schedulingGates", "tolerations"):
            if f in old_spec:
                munged[f] = copy.deepcopy(old_spec[f])
            else:
                munged.pop(f, None)
        old_grace = _ptr_int(old_spec, "terminationGracePeriodSeconds")
        if old_grace is not None and old_grace < 0 and \
                _ptr_int(munged, "terminationGracePeriodSeconds") == 1:
            munged["terminationGracePeriodSeconds"] = old_grace
        if _internal_spec(munged) != _internal_spec(old_spec):
            errs.append(forbidden("spec", "pod updates may not change fields other than "
                                          f"{UPDATABLE_POD_FIELDS}\n"
                                          f"{pod_spec_diff(old_spec, munged)}"))
    return errs + _pod_status_errs(new, old)


def _pod_annotation_update_errs(new: dict, old: dict) -> list[FieldError]:
    """ValidatePodSpecificAnnotationUpdates' mirror-pod rule."""
    mirror = "kubernetes.io/config.mirror"
    a = _strmap(_d(new, "metadata"), "annotations") or {}
    b = _strmap(_d(old, "metadata"), "annotations") or {}
    path = _key("metadata.annotations", mirror)
    if mirror in b and a.get(mirror) != b[mirror]:
        return [forbidden(path, "may not remove or update mirror pod annotation")]
    if mirror in a and mirror not in b:
        return [forbidden(path, "may not add mirror pod annotation")]
    return []


SYSTEM_POD_CONDITIONS = {"PodScheduled", "Ready", "Initialized"}


def _ip_list_errs(status: dict, field: str, kind: str) -> list[FieldError]:
    """validatePodIPs / validateHostIPs."""
    entries = _dl(status, field)
    path = f"status.{field}"
    errs: list[FieldError] = []
    if field == "hostIPs" and entries and _str(status, "hostIP") != _str(entries[0], "ip"):
        errs.append(invalid_value(f"{path}[0].ip", _str(entries[0], "ip"),
                                  "must be equal to `hostIP`"))
    ips = [_str(e, "ip") for e in entries]
    for i, ip in enumerate(ips):
        errs += [invalid_value(_idx(path, i), ip, m) for m in is_valid_ip(ip)]
    if len(ips) > 1:
        families = [parse_ip_sloppy(ip) for ip in ips]
        dual = len(ips) == 2 and all(families) and families[0].version != families[1].version
        rendered = f"[]core.{kind}{{" + ", ".join(f"core.{kind}{{IP:{_q(ip)}}}" for ip in ips) + "}"
        dup_errs = []
        seen: set[str] = set()
        for i, ip in enumerate(ips):
            if ip in seen:
                dup_errs.append(_govalue(DUPLICATE, _idx(path, i), f"core.{kind}{{IP:{_q(ip)}}}"))
            seen.add(ip)
        invalid = [] if dual else [_govalue(INVALID, path, rendered, "may specify no more than "
                                                                    "one IP for each IP family")]
        errs += (dup_errs + invalid) if field == "hostIPs" else (invalid + dup_errs)
    return errs


def _state_transition_errs(new: list[dict], old: list[dict], path: str, restart: str,
                           spec: dict | None = None) -> list[FieldError]:
    """ValidateContainerStateTransition / ValidateInitContainerStateTransition."""
    if restart == "Always":
        return []
    errs: list[FieldError] = []
    restartable = {_str(c, "name") for c in _dl(spec, "initContainers")
                   if _str(c, "restartPolicy") == "Always"} if spec is not None else set()
    for i, st in enumerate(old):
        term = _d(st, "state").get("terminated")
        if not isinstance(term, dict):
            continue
        if _int(term, "exitCode") != 0 and restart == "OnFailure":
            continue
        if _str(st, "name") in restartable:
            continue
        for ns in new:
            if _str(ns, "name") == _str(st, "name") and \
                    not isinstance(_d(ns, "state").get("terminated"), dict):
                errs.append(forbidden(f"{_idx(path, i)}.state",
                                      "may not be transitioned to non-terminated state"))
    return errs


def _pod_status_errs(new: dict, old: dict) -> list[FieldError]:
    """ValidatePodStatusUpdate's checks, for a write that changes the status."""
    status, old_status = _d(new, "status"), _d(old, "status")
    if _semantic(status) == _semantic(old_status):
        return []
    errs: list[FieldError] = []
    for i, cond in enumerate(_dl(status, "conditions")):
        ctype = _str(cond, "type")
        if ctype not in SYSTEM_POD_CONDITIONS:
            errs += _qualified_name_errs(ctype, f"metadata.conditions[{i}].Type")
    if _str(_d(new, "spec"), "nodeName") != _str(_d(old, "spec"), "nodeName"):
        errs.append(forbidden("status.nodeName", "may not be changed directly"))
    nominated = _str(status, "nominatedNodeName")
    if nominated and nominated != _str(old_status, "nominatedNodeName"):
        errs += [invalid_value("status.nominatedNodeName", nominated, m)
                 for m in name_is_dns_subdomain(nominated)]
    old_spec = _d(old, "spec")
    restart = _str(old_spec, "restartPolicy")
    errs += _state_transition_errs(_dl(status, "containerStatuses"),
                                   _dl(old_status, "containerStatuses"),
                                   "status.containerStatuses", restart)
    errs += _state_transition_errs(_dl(status, "initContainerStatuses"),
                                   _dl(old_status, "initContainerStatuses"),
                                   "status.initContainerStatuses", restart, old_spec)
    errs += _state_transition_errs(_dl(status, "ephemeralContainerStatuses"),
                                   _dl(old_status, "ephemeralContainerStatuses"),
                                   "status.ephemeralContainerStatuses", "Never")
    errs += _ip_list_errs(status, "podIPs", "PodIP")
    errs += _ip_list_errs(status, "hostIPs", "HostIP")
    return errs


# =============================================================================================
# Node
# =============================================================================================

def default_node(node: dict) -> None:
    """SetDefaults_NodeStatus, the podCIDR/podCIDRs conversion and the quantities."""
    spec = node.get("spec")
    if not isinstance(spec, dict):
        spec = node["spec"] = {}
    cidr, cidrs = _str(spec, "podCIDR"), _l(spec, "podCIDRs")
    if cidr and (not cidrs or cidrs[0] != cidr):
        spec["podCIDRs"] = [cidr]
    elif cidrs and not cidr and isinstance(cidrs[0], str):
        spec["podCIDR"] = cidrs[0]
    default_node_status(node)


def default_node_status(node: dict) -> None:
    status = node.get("status")
    if not isinstance(status, dict):
        return
    for f in ("capacity", "allocatable"):
        _default_resource_list(status.get(f))
    if status.get("allocatable") is None and isinstance(status.get("capacity"), dict):
        status["allocatable"] = dict(status["capacity"])


def _node_resources_errs(node: dict) -> list[FieldError]:
    """ValidateNodeResources (non-negative quantities)."""
    errs: list[FieldError] = []
    status = _d(node, "status")
    for f in ("capacity", "allocatable"):
        for name, raw in _d(status, f).items():
            q = _quantity(raw)
            if q is not None and q.value < 0:
                errs.append(invalid_value(f"status.{f}.{name}", str(q), NONNEGATIVE))
    return errs


def _node_taints_errs(taints: list[dict], path: str) -> list[FieldError]:
    """validateNodeTaints."""
    errs: list[FieldError] = []
    seen: set[tuple[str, str]] = set()
    for i, t in enumerate(taints):
        p = _idx(path, i)
        key, value, effect = _str(t, "key"), _str(t, "value"), _str(t, "effect")
        errs += _qualified_name_errs(key, f"{p}.key")
        msgs = is_label_value(value)
        if msgs:
            errs.append(invalid_value(f"{p}.value", value, ";".join(msgs)))
        errs += _taint_effect_errs(effect, False, f"{p}.effect")
        if (effect, key) in seen:
            added = "(*v1.Time)(nil)" if t.get("timeAdded") is None else \
                f"(*v1.Time)({_FAKE_POINTER})"
            rendered = (f"core.Taint{{Key:{_q(key)}, Value:{_q(value)}, Effect:{_q(effect)}, "
                        f"TimeAdded:{added}}}")
            errs.append(_govalue(DUPLICATE, p, rendered, "taints must be unique by key and effect "
                                                         "pair"))
            continue
        seen.add((effect, key))
    return errs


def validate_node(node: dict) -> list[FieldError]:
    """ValidateNode without ValidateObjectMeta."""
    spec = _d(node, "spec")
    errs: list[FieldError] = []
    if _l(spec, "taints"):
        errs += _node_taints_errs(_dl(spec, "taints"), "metadata.taints")
    errs += _node_resources_errs(node)
    cidrs = [c if isinstance(c, str) else "" for c in _l(spec, "podCIDRs")]
    for i, cidr in enumerate(cidrs):
        errs += [invalid_value(_idx("spec.podCIDRs", i), cidr, m) for m in is_valid_cidr(cidr)]
    if len(cidrs) > 1:
        fams = [parse_ip_sloppy(c.split("/")[0]) for c in cidrs]
        dual = len(cidrs) == 2 and all(fams) and fams[0].version != fams[1].version
        if not dual:
            errs.append(_govalue(INVALID, "spec.podCIDRs", go_strings(cidrs),
                                 "may specify no more than one CIDR for each IP family"))
        seen: set[str] = set()
        for i, cidr in enumerate(cidrs):
            if cidr in seen:
                errs.append(duplicate(_idx("spec.podCIDRs", i), cidr))
            seen.add(cidr)
    return errs


def validate_node_update(new: dict, old: dict) -> list[FieldError]:
    """ValidateNodeUpdate's checks beyond ValidateNode's (which the strategy runs first)."""
    old = copy.deepcopy(old)
    default_node(old)
    errs: list[FieldError] = []
    seen: set[tuple[str, str]] = set()
    for i, addr in enumerate(_dl(_d(new, "status"), "addresses")):
        key = (_str(addr, "type"), _str(addr, "address"))
        if key in seen:
            errs.append(_govalue(DUPLICATE, _idx("status.addresses", i),
                                 f"core.NodeAddress{{Type:{_q(key[0])}, Address:{_q(key[1])}}}"))
        seen.add(key)
    spec, old_spec = _d(new, "spec"), _d(old, "spec")
    old_cidrs, cidrs = _l(old_spec, "podCIDRs"), _l(spec, "podCIDRs")
    msg = "node updates may not change podCIDR except from \"\" to valid"
    if old_cidrs:
        if len(old_cidrs) != len(cidrs):
            errs.append(forbidden("spec.podCIDRs", msg))
        else:
            errs += [forbidden("spec.podCIDRs", msg) for a, b in zip(old_cidrs, cidrs) if a != b]
    old_provider = _str(old_spec, "providerID")
    if old_provider and old_provider != _str(spec, "providerID"):
        errs.append(forbidden("spec.providerID", "node updates may not change providerID except "
                                                 "from \"\" to valid"))
    if _str(spec, "externalID") != _str(old_spec, "externalID"):
        errs.append(forbidden("spec.externalID", "may not be updated"))
    return errs


# =============================================================================================
# Namespace
# =============================================================================================

STANDARD_FINALIZERS = {"kubernetes", "orphan", "foregroundDeletion"}


def default_namespace(ns: dict) -> None:
    """SetDefaults_Namespace (the name label) and the spec.finalizers svcnet starts with."""
    meta = ns.setdefault("metadata", {})
    labels = meta.get("labels")
    if not isinstance(labels, dict):
        labels = meta["labels"] = {}
    labels["kubernetes.io/metadata.name"] = meta.get("name", "")
    spec = ns.get("spec")
    if not isinstance(spec, dict):
        spec = ns["spec"] = {}
    spec.setdefault("finalizers", ["kubernetes"])


def validate_namespace(ns: dict) -> list[FieldError]:
    """ValidateNamespace's finalizer names (reported at spec.finalizers, unindexed)."""
    errs: list[FieldError] = []
    for f in _l(_d(ns, "spec"), "finalizers"):
        f = f if isinstance(f, str) else ""
        errs += _qualified_name_errs(f, "spec.finalizers")
        if "/" not in f and f not in STANDARD_FINALIZERS:
            errs.append(invalid_value("spec.finalizers", f, "name is neither a standard "
                                                            "finalizer name nor is it fully "
                                                            "qualified"))
    return errs


def validate_namespace_update(new: dict, old: dict) -> list[FieldError]:
    """ValidateNamespaceStatusUpdate's phase rule, for a write that changes the status."""
    status = _d(new, "status")
    if _semantic(status) == _semantic(_d(old, "status")):
        return []
    phase = _str(status, "phase")
    if not _d(new, "metadata").get("deletionTimestamp"):
        if phase != "Active":
            return [invalid_value("status.Phase", phase,
                                  "may only be 'Active' if `deletionTimestamp` is empty")]
    elif phase != "Terminating":
        return [invalid_value("status.Phase", phase,
                              "may only be 'Terminating' if `deletionTimestamp` is not empty")]
    return []


# =============================================================================================
# Endpoints
# =============================================================================================

def _is_api_server_endpoints(obj: dict) -> bool:
    meta = _d(obj, "metadata")
    return meta.get("namespace") == "default" and meta.get("name") == "kubernetes"


def default_endpoints(ep: dict) -> None:
    """SetDefaults_Endpoints."""
    for ss in _dl(ep, "subsets"):
        for port in _dl(ss, "ports"):
            if not port.get("protocol"):
                port["protocol"] = "TCP"


def _endpoint_address_errs(addr: dict, path: str, allow_loopback: bool) -> list[FieldError]:
    ip = _str(addr, "ip")
    errs = [invalid_value(f"{path}.ip", ip, m) for m in is_valid_ip(ip)]
    if _str(addr, "hostname"):
        errs += _dns_label_errs(_str(addr, "hostname"), f"{path}.hostname")
    node_name = _str(addr, "nodeName")
    if node_name:  # svcnet's controller writes "" for pods without a node
        errs += [invalid_value(f"{path}.nodeName", node_name, m)
                 for m in name_is_dns_subdomain(node_name)]
    special = non_special_ip_errors(ip)
    if allow_loopback:
        special = [m for m in special if "loopback" not in m]
    return errs + [invalid_value(f"{path}.ip", ip, m) for m in special]


def _endpoint_port_errs(port: dict, require_name: bool, path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    name = _str(port, "name")
    if require_name and not name:
        errs.append(required(f"{path}.name"))
    elif name:
        errs += _dns_label_errs(name, f"{path}.name")
    errs += [invalid_value(f"{path}.port", _int(port, "port"), m)
             for m in is_valid_port_num(_int(port, "port"))]
    proto = _str(port, "protocol")
    if not proto:
        errs.append(required(f"{path}.protocol"))
    elif proto not in PROTOCOLS:
        errs.append(not_supported(f"{path}.protocol", proto, PROTOCOLS))
    if isinstance(port.get("appProtocol"), str):
        errs += _qualified_name_errs(port["appProtocol"], f"{path}.appProtocol")
    return errs


def validate_endpoints(ep: dict) -> list[FieldError]:
    """ValidateEndpoints without ValidateObjectMeta (validateEndpointSubsets)."""
    errs: list[FieldError] = []
    loopback = _is_api_server_endpoints(ep)
    for i, ss in enumerate(_dl(ep, "subsets")):
        p = _idx("subsets", i)
        addrs, not_ready = _dl(ss, "addresses"), _dl(ss, "notReadyAddresses")
        if not addrs and not not_ready:
            errs.append(required(p, "must specify `addresses` or `notReadyAddresses`"))
        for j, a in enumerate(addrs):
            errs += _endpoint_address_errs(a, f"{p}.addresses[{j}]", loopback)
        for j, a in enumerate(not_ready):
            errs += _endpoint_address_errs(a, f"{p}.notReadyAddresses[{j}]", loopback)
        ports = _dl(ss, "ports")
        for j, port in enumerate(ports):
            errs += _endpoint_port_errs(port, len(ports) > 1, f"{p}.ports[{j}]")
    return errs


# =============================================================================================
# EndpointSlice
# =============================================================================================

ADDRESS_TYPES = ["FQDN", "IPv4", "IPv6"]
MAX_ENDPOINTS, MAX_ADDRESSES, MAX_SLICE_PORTS, MAX_TOPOLOGY_LABELS, MAX_ZONE_HINTS = (
    1000, 100, 20000, 16, 8)


def default_endpoint_slice(es: dict) -> None:
    """SetDefaults_EndpointPort: name "" and protocol TCP."""
    for port in _dl(es, "ports"):
        if port.get("name") is None:
            port["name"] = ""
        if port.get("protocol") is None:
            port["protocol"] = "TCP"


def _slice_address_errs(addr: str, addr_type: str, path: str, loopback: bool) -> list[FieldError]:
    if addr_type in ("IPv4", "IPv6"):
        ip = parse_ip_sloppy(addr)
        want4 = addr_type == "IPv4"
        errs = []
        if ip is None or (ip.version == 4) != want4:
            errs.append(invalid_value(path, addr, f"must be a valid {addr_type} address"))
        special = non_special_ip_errors(addr)
        if loopback:
            special = [m for m in special if "loopback" not in m]
        return errs + [invalid_value(path, addr, m) for m in special]
    if addr_type == "FQDN":
        return is_fully_qualified_domain_name(addr, path)
    return []


def validate_endpoint_slice(es: dict) -> list[FieldError]:
    """ValidateEndpointSlice without ValidateObjectMeta."""
    errs: list[FieldError] = []
    addr_type = _str(es, "addressType")
    if not addr_type:
        errs.append(required("addressType"))
    elif addr_type not in ADDRESS_TYPES:
        errs.append(not_supported("addressType", addr_type, ADDRESS_TYPES))
    loopback = _is_api_server_endpoints(es)
    endpoints = _dl(es, "endpoints")
    if len(endpoints) > MAX_ENDPOINTS:
        errs.append(too_many("endpoints", len(endpoints), MAX_ENDPOINTS))
    else:
        for i, ep in enumerate(endpoints):
            p = _idx("endpoints", i)
            addrs = _l(ep, "addresses")
            if not addrs:
                errs.append(required(f"{p}.addresses", "must contain at least 1 address"))
            elif len(addrs) > MAX_ADDRESSES:
                errs.append(too_many(f"{p}.addresses", len(addrs), MAX_ADDRESSES))
            for j, addr in enumerate(addrs):
                errs += _slice_address_errs(addr if isinstance(addr, str) else "", addr_type,
                                            f"{p}.addresses[{j}]", loopback)
            if isinstance(ep.get("nodeName"), str):
                errs += [invalid_value(f"{p}.nodeName", ep["nodeName"], m)
                         for m in name_is_dns_subdomain(ep["nodeName"])]
            topology = _strmap(ep, "deprecatedTopology")
            if topology and len(topology) > MAX_TOPOLOGY_LABELS:
                errs.append(too_many(f"{p}.deprecatedTopology", len(topology), MAX_TOPOLOGY_LABELS))
            errs += validate_labels(topology, f"{p}.deprecatedTopology")
            if isinstance(ep.get("hostname"), str):
                errs += _dns_label_errs(ep["hostname"], f"{p}.hostname")
            hints = ep.get("hints")
            if isinstance(hints, dict):
                zones = _dl(hints, "forZones")
                zp = f"{p}.hints.forZones"
                if len(zones) > MAX_ZONE_HINTS:
                    errs.append(too_many(zp, len(zones), MAX_ZONE_HINTS))
                else:
                    seen: set[str] = set()
                    for j, zone in enumerate(zones):
                        name = _str(zone, "name")
                        if name in seen:
                            errs.append(duplicate(f"{zp}[{j}].name", name))
                        seen.add(name)
                        errs += [invalid_value(f"{zp}[{j}].name", name, m)
                                 for m in is_label_value(name)]
    ports = _dl(es, "ports")
    if len(ports) > MAX_SLICE_PORTS:
        errs.append(too_many("ports", len(ports), MAX_SLICE_PORTS))
        return errs
    names: set[str] = set()
    for i, port in enumerate(ports):
        p = _idx("ports", i)
        name = _str(port, "name")
        if name:
            errs += _dns_label_errs(name, f"{p}.name")
        if name in names:
            errs.append(duplicate(f"{p}.name", name))
        names.add(name)
        proto = port.get("protocol")
        if proto is None:
            errs.append(required(f"{p}.protocol"))
        elif proto not in PROTOCOLS:
            errs.append(not_supported(f"{p}.protocol", proto, PROTOCOLS))
        if isinstance(port.get("appProtocol"), str):
            errs += _qualified_name_errs(port["appProtocol"], f"{p}.appProtocol")
    return errs


def validate_endpoint_slice_update(new: dict, old: dict) -> list[FieldError]:
    if _str(new, "addressType") != _str(old, "addressType"):
        return [invalid_value("addressType", _str(new, "addressType"), IMMUTABLE)]
    return []


# =============================================================================================
# Deployment and ReplicaSet
# =============================================================================================

def _default_template(spec: dict) -> None:
    template = spec.get("template")
    if not isinstance(template, dict):
        template = spec["template"] = {}
    tspec = template.get("spec")
    if not isinstance(tspec, dict):
        tspec = template["spec"] = {}
    default_pod_spec(tspec)


def default_deployment(dep: dict) -> None:
    """SetDefaults_Deployment and the pod template's defaults."""
    spec = dep.get("spec")
    if not isinstance(spec, dict):
        spec = dep["spec"] = {}
    if spec.get("replicas") is None:
        spec["replicas"] = 1
    strategy = spec.get("strategy")
    if not isinstance(strategy, dict):
        strategy = spec["strategy"] = {}
    if not strategy.get("type"):
        strategy["type"] = "RollingUpdate"
    if strategy["type"] == "RollingUpdate":
        ru = strategy.get("rollingUpdate")
        if not isinstance(ru, dict):
            ru = strategy["rollingUpdate"] = {}
        for f in ("maxUnavailable", "maxSurge"):
            if ru.get(f) is None:
                ru[f] = "25%"
    if spec.get("revisionHistoryLimit") is None:
        spec["revisionHistoryLimit"] = 10
    if spec.get("progressDeadlineSeconds") is None:
        spec["progressDeadlineSeconds"] = 600
    _default_template(spec)


def default_replica_set(rs: dict) -> None:
    """SetDefaults_ReplicaSet and the pod template's defaults."""
    spec = rs.get("spec")
    if not isinstance(spec, dict):
        spec = rs["spec"] = {}
    if spec.get("replicas") is None:
        spec["replicas"] = 1
    _default_template(spec)


def _selector(spec: dict) -> dict | None:
    sel = spec.get("selector")
    return sel if isinstance(sel, dict) else None


def _selector_and_template_errs(spec: dict) -> list[FieldError]:
    """The selector rules and ValidatePodTemplateSpecForReplicaSet (whose message names the
    ReplicaSet for a Deployment too)."""
    errs: list[FieldError] = []
    sel = _selector(spec)
    if sel is None:
        errs.append(required("spec.selector"))
    else:
        errs += validate_label_selector(sel, "spec.selector")
        if _selector_empty(sel):
            errs.append(_govalue(INVALID, "spec.selector", go_label_selector(sel),
                                 "empty selector is invalid for deployment"))
    if selector_parse_error(sel):
        errs.append(_govalue(INVALID, "spec.selector", go_label_selector(sel),
                             "invalid label selector"))
        return errs
    template = _d(spec, "template")
    labels = _strmap(_d(template, "metadata"), "labels")
    if not _selector_empty(sel) and not selector_matches(sel, labels):
        errs.append(_govalue(INVALID, "spec.template.metadata.labels", go_map(labels),
                             "`selector` does not match template `labels`"))
    errs += validate_pod_template(template, "spec.template")
    tspec = _d(template, "spec")
    restart = _str(tspec, "restartPolicy")
    if restart != "Always":
        errs.append(not_supported("spec.template.spec.restartPolicy", restart, ["Always"]))
    if tspec.get("activeDeadlineSeconds") is not None:
        errs.append(forbidden("spec.template.spec.activeDeadlineSeconds",
                              "activeDeadlineSeconds in ReplicaSet is not Supported"))
    return errs


def _percent_value(v: Any) -> tuple[int, bool]:
    if isinstance(v, str) and not is_valid_percent(v):
        return int(v[:-1]), True
    return 0, False


def _int_or_percent_value(v: Any) -> int:
    value, is_percent = _percent_value(v)
    if is_percent:
        return value
    if isinstance(v, str):
        try:
            return int(v)
        except ValueError:
            return 0
    return v if isinstance(v, int) and not isinstance(v, bool) else 0


def _positive_int_or_percent_errs(v: Any, path: str) -> list[FieldError]:
    """ValidatePositiveIntOrPercent."""
    if isinstance(v, str):
        return [_govalue(INVALID, path, go_intstr(v), m) for m in is_valid_percent(v)]
    return _nonnegative(v if isinstance(v, int) and not isinstance(v, bool) else 0, path)


def _strategy_errs(strategy: dict) -> list[FieldError]:
    """ValidateDeploymentStrategy."""
    stype = _str(strategy, "type")
    ru = strategy.get("rollingUpdate")
    if stype == "Recreate":
        if ru is not None:
            return [forbidden("spec.strategy.rollingUpdate",
                              "may not be specified when strategy `type` is 'Recreate'")]
        return []
    if stype == "RollingUpdate":
        if not isinstance(ru, dict):
            return [required("spec.strategy.rollingUpdate",
                             "this should be defaulted and never be nil")]
        path = "spec.strategy.rollingUpdate"
        mu, ms = ru.get("maxUnavailable"), ru.get("maxSurge")
        errs = _positive_int_or_percent_errs(mu, f"{path}.maxUnavailable")
        errs += _positive_int_or_percent_errs(ms, f"{path}.maxSurge")
        if _int_or_percent_value(mu) == 0 and _int_or_percent_value(ms) == 0:
            errs.append(_govalue(INVALID, f"{path}.maxUnavailable", go_intstr(mu),
                                 "may not be 0 when `maxSurge` is 0"))
        value, is_percent = _percent_value(mu)
        if is_percent and value > 100:
            errs.append(_govalue(INVALID, f"{path}.maxUnavailable", go_intstr(mu),
                                 "must not be greater than 100%"))
        return errs
    ru_ptr = _go_ptr("apps.RollingUpdateDeployment", ru)
    return [_govalue(NOT_SUPPORTED, "spec.strategy",
                     f"apps.DeploymentStrategy{{Type:{_q(stype)}, RollingUpdate:{ru_ptr}}}",
                     'supported values: "Recreate", "RollingUpdate"')]


def validate_deployment(dep: dict) -> list[FieldError]:
    """ValidateDeployment without ValidateObjectMeta (ValidateDeploymentSpec)."""
    spec = _d(dep, "spec")
    errs = _nonnegative(_int(spec, "replicas"), "spec.replicas")
    errs += _selector_and_template_errs(spec)
    errs += _strategy_errs(_d(spec, "strategy"))
    min_ready = _int(spec, "minReadySeconds")
    errs += _nonnegative(min_ready, "spec.minReadySeconds")
    history = _ptr_int(spec, "revisionHistoryLimit")
    if history is not None:
        errs += _nonnegative(history, "spec.revisionHistoryLimit")
    deadline = _ptr_int(spec, "progressDeadlineSeconds")
    if deadline is not None:
        errs += _nonnegative(deadline, "spec.progressDeadlineSeconds")
        if deadline <= min_ready:
            errs.append(invalid_value("spec.progressDeadlineSeconds", deadline,
                                      "must be greater than minReadySeconds"))
    return errs


def validate_replica_set(rs: dict) -> list[FieldError]:
    """ValidateReplicaSet without ValidateObjectMeta (ValidateReplicaSetSpec)."""
    spec = _d(rs, "spec")
    errs = _nonnegative(_int(spec, "replicas"), "spec.replicas")
    errs += _nonnegative(_int(spec, "minReadySeconds"), "spec.minReadySeconds")
    return errs + _selector_and_template_errs(spec)


def _selector_immutable_errs(new: dict, old: dict) -> list[FieldError]:
    """The apps/v1 strategies' ValidateImmutableField on spec.selector."""
    sel, old_sel = _selector(_d(new, "spec")), _selector(_d(old, "spec"))
    if _semantic(sel) == _semantic(old_sel):
        return []
    rendered = "null" if sel is None else go_label_selector(sel)
    return [_govalue(INVALID, "spec.selector", rendered, IMMUTABLE)]


def _replicas_status_errs(status: dict, fields: Iterable[str],
                          over: Iterable[str]) -> list[FieldError]:
    errs: list[FieldError] = []
    for f in fields:
        errs += _nonnegative(_int(status, f), f"status.{f}")
    if status.get("collisionCount") is not None:
        errs += _nonnegative(_int(status, "collisionCount"), "status.collisionCount")
    replicas = _int(status, "replicas")
    for f in over:
        if _int(status, f) > replicas:
            errs.append(invalid_value(f"status.{f}", _int(status, f),
                                      "cannot be greater than status.replicas"))
    if _int(status, "availableReplicas") > _int(status, "readyReplicas"):
        errs.append(invalid_value("status.availableReplicas", _int(status, "availableReplicas"),
                                  "cannot be greater than readyReplicas"))
    return errs


def _collision_errs(status: dict, old_status: dict) -> list[FieldError]:
    """IsDecremented(collisionCount)."""
    new_c, old_c = _ptr_int(status, "collisionCount"), _ptr_int(old_status, "collisionCount")
    if old_c is not None and (new_c is None or new_c < old_c):
        return [invalid_value("status.collisionCount", new_c or 0, "cannot be decremented")]
    return []


def validate_deployment_update(new: dict, old: dict) -> list[FieldError]:
    errs = _selector_immutable_errs(new, old)
    status, old_status = _d(new, "status"), _d(old, "status")
    if _semantic(status) != _semantic(old_status):
        errs += _replicas_status_errs(
            status, ("observedGeneration", "replicas", "updatedReplicas", "readyReplicas",
                     "availableReplicas", "unavailableReplicas"),
            ("updatedReplicas", "readyReplicas", "availableReplicas"))
        errs += _collision_errs(status, old_status)
    return errs


def validate_replica_set_update(new: dict, old: dict) -> list[FieldError]:
    errs = _selector_immutable_errs(new, old)
    status, old_status = _d(new, "status"), _d(old, "status")
    if _semantic(status) != _semantic(old_status):
        status = {k: v for k, v in status.items() if k != "collisionCount"}
        errs += _replicas_status_errs(
            status, ("replicas", "fullyLabeledReplicas", "readyReplicas", "availableReplicas",
                     "observedGeneration"),
            ("fullyLabeledReplicas", "readyReplicas", "availableReplicas"))
    return errs


# =============================================================================================
# Registration
# =============================================================================================

register("Pod", KindRules(default=default_pod, validate=validate_pod,
                          validate_update=validate_pod_update, default_status=default_pod_status))
register("Node", KindRules(default=default_node, validate=validate_node,
                           validate_update=validate_node_update,
                           default_status=default_node_status))
register("Namespace", KindRules(default=default_namespace, validate=validate_namespace,
                                validate_update=validate_namespace_update))
register("Endpoints", KindRules(default=default_endpoints, validate=validate_endpoints))
register("EndpointSlice", KindRules(default=default_endpoint_slice,
                                    validate=validate_endpoint_slice,
                                    validate_update=validate_endpoint_slice_update))
register("Deployment", KindRules(default=default_deployment, validate=validate_deployment,
                                 validate_update=validate_deployment_update))
register("ReplicaSet", KindRules(default=default_replica_set, validate=validate_replica_set,
                                 validate_update=validate_replica_set_update))
