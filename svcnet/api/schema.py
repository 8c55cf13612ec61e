"""Typed decoding and field validation of request bodies, as kube-apiserver's decoder does them.

Theory of operation
-------------------
kube-apiserver decodes every POST/PUT body into the kind's Go struct (sigs.k8s.io/json, case
sensitive). That decoding is where two classes of mistakes are caught, before any strategy or
validation runs:

  - a value of the wrong JSON type ("port": "abc") fails the request whatever the mode, with
    400 `Service in version "v1" cannot be handled as a Service: json: cannot unmarshal string
    into Go struct field ServicePort.spec.ports.port of type int32`. Go names the innermost
    struct and the path of struct fields that leads to the value (no list indexes, no map keys);
    values with a decoder of their own (IntOrString, Quantity, Time, []byte) fail with that
    decoder's message.
  - unknown fields and duplicate fields ("strict decoding errors") are handled by the request's
    `fieldValidation`: Strict fails with 400 `... cannot be handled as a Service: strict decoding
    error: unknown field "spec.foo", duplicate field "spec.type"`; Warn (the default when the
    parameter is absent) answers normally with one warning per error (a `Warning: 299 - "<text>"`
    header each); Ignore drops them silently. Paths here are full JSON paths with indexes
    (`spec.ports[0].nmae`, map keys included), errors come in document order, deduplicated,
    at most 100.
Either way unknown fields never reach the store: `decode` returns the object pruned to the
schema (and with null fields dropped, which is what decoding into Go and encoding back yields).

PATCH bodies are decoded differently (endpoints/handlers/patch.go): duplicate fields are found in
the patch document itself (schema-less, any object), unknown fields in the patched object, and a
failure is a 422 `"" is invalid: patch: Invalid value: "<patch>": strict decoding error: ...` whose
value is the patch as Go prints a map (strategic merge patch) or the patched object's JSON (JSON
and merge patches). Strategic merge patches reach the Go struct through the unstructured
converter, whose type errors read `unrecognized type: int32`, `cannot restore struct from: string`.
Server-side apply (application/apply-patch+yaml) is outside this module: its unknown fields are
the apply engine's "field not declared in schema" errors.

The schemas are the served OpenAPI schemas (svcnet.api.openapi.SCHEMAS), compiled at import into
a tree of `_Node`s: a struct node maps each JSON field name to its child node, so a walk costs one
dict lookup per field. Go type names that the OpenAPI schema does not carry (named string types
such as v1.Protocol, types.UID, v1.ResourceList) come from _GO_TYPES.
"""

from __future__ import annotations

import binascii
import json
import re

from svcnet.api import errors
from svcnet.api.openapi import SCHEMAS

STRICT, WARN, IGNORE = "Strict", "Warn", "Ignore"

STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"

_MAX_STRICT_ERRORS = 100  # sigs.k8s.io/json stops collecting there

(_STRUCT, _LIST, _MAP, _STRING, _INT, _BOOL, _FLOAT, _BYTES, _INT_OR_STRING, _QUANTITY,
 _TIME, _MICRO_TIME, _ANY) = range(13)

_SPECIAL = {
    "io.k8s.apimachinery.pkg.util.intstr.IntOrString": (_INT_OR_STRING, "intstr.IntOrString"),
    "io.k8s.apimachinery.pkg.api.resource.Quantity": (_QUANTITY, "resource.Quantity"),
    "io.k8s.apimachinery.pkg.apis.meta.v1.Time": (_TIME, "v1.Time"),
    "io.k8s.apimachinery.pkg.apis.meta.v1.MicroTime": (_MICRO_TIME, "v1.MicroTime"),
}

# Go types of fields whose type is a named type in k8s.io/api (definition, JSON field).
_GO_TYPES = {
    ("ServiceSpec", "type"): "v1.ServiceType",
    ("ServiceSpec", "sessionAffinity"): "v1.ServiceAffinity",
    ("ServiceSpec", "externalTrafficPolicy"): "v1.ServiceExternalTrafficPolicy",
    ("ServiceSpec", "internalTrafficPolicy"): "v1.ServiceInternalTrafficPolicy",
    ("ServiceSpec", "ipFamilies"): "[]v1.IPFamily",
    ("ServiceSpec", "ipFamilyPolicy"): "v1.IPFamilyPolicy",
    ("ServicePort", "protocol"): "v1.Protocol",
    ("ContainerPort", "protocol"): "v1.Protocol",
    ("EndpointPort", "protocol"): "v1.Protocol",
    ("PortStatus", "protocol"): "v1.Protocol",
    ("EndpointSlice", "addressType"): "v1.AddressType",
    ("LoadBalancerIngress", "ipMode"): "v1.LoadBalancerIPMode",
    ("Container", "imagePullPolicy"): "v1.PullPolicy",
    ("Container", "terminationMessagePolicy"): "v1.TerminationMessagePolicy",
    ("Container", "restartPolicy"): "v1.ContainerRestartPolicy",
    ("PodSpec", "restartPolicy"): "v1.RestartPolicy",
    ("PodSpec", "dnsPolicy"): "v1.DNSPolicy",
    ("PodSpec", "preemptionPolicy"): "v1.PreemptionPolicy",
    ("PodStatus", "phase"): "v1.PodPhase",
    ("PodStatus", "qosClass"): "v1.PodQOSClass",
    ("PodCondition", "type"): "v1.PodConditionType",
    ("PodCondition", "status"): "v1.ConditionStatus",
    ("NamespaceSpec", "finalizers"): "[]v1.FinalizerName",
    ("NamespaceStatus", "phase"): "v1.NamespacePhase",
    ("NodeCondition", "type"): "v1.NodeConditionType",
    ("NodeCondition", "status"): "v1.ConditionStatus",
    ("NodeAddress", "type"): "v1.NodeAddressType",
    ("NodeStatus", "phase"): "v1.NodePhase",
    ("Taint", "effect"): "v1.TaintEffect",
    ("Toleration", "operator"): "v1.TolerationOperator",
    ("Toleration", "effect"): "v1.TaintEffect",
    ("HTTPGetAction", "scheme"): "v1.URIScheme",
    ("VolumeMount", "mountPropagation"): "v1.MountPropagationMode",
    ("Condition", "status"): "v1.ConditionStatus",
    ("DeploymentStrategy", "type"): "v1.DeploymentStrategyType",
    ("DeploymentCondition", "type"): "v1.DeploymentConditionType",
    ("DeploymentCondition", "status"): "v1.ConditionStatus",
    ("ReplicaSetCondition", "type"): "v1.ReplicaSetConditionType",
    ("ReplicaSetCondition", "status"): "v1.ConditionStatus",
    ("LabelSelectorRequirement", "operator"): "v1.LabelSelectorOperator",
    ("DeleteOptions", "propagationPolicy"): "v1.DeletionPropagation",
    ("ManagedFieldsEntry", "operation"): "v1.ManagedFieldsOperationType",
    ("LeaseSpec", "strategy"): "v1.CoordinatedLeaseStrategy",
    ("ObjectMeta", "uid"): "types.UID",
    ("OwnerReference", "uid"): "types.UID",
    ("ObjectReference", "uid"): "types.UID",
    ("StatusDetails", "uid"): "types.UID",
    ("Status", "reason"): "v1.StatusReason",
    ("StatusCause", "reason"): "v1.CauseType",
    ("ResourceRequirements", "limits"): "v1.ResourceList",
    ("ResourceRequirements", "requests"): "v1.ResourceList",
    ("VolumeResourceRequirements", "limits"): "v1.ResourceList",
    ("VolumeResourceRequirements", "requests"): "v1.ResourceList",
    ("NodeStatus", "capacity"): "v1.ResourceList",
    ("NodeStatus", "allocatable"): "v1.ResourceList",
    ("PodSpec", "overhead"): "v1.ResourceList",
    ("ContainerStatus", "allocatedResources"): "v1.ResourceList",
    ("PodStatus", "allocatedResources"): "v1.ResourceList",
}

_QUANTITY_FORMAT = ("quantities must match the regular expression "
                    "'^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'")
_QUANTITY_SUFFIX = "unable to parse quantity's suffix"
_QUANTITY_SUFFIXES = {"", "n", "u", "m", "k", "M", "G", "T", "P", "E",
                      "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"}
_QUANTITY_RE = re.compile(r"([+-]?)(0*)([0-9]*)(?:\.([0-9]*))?([eEinumkKMGTP]*)([-+]?[0-9]*)")
_BASE64 = re.compile(r"[A-Za-z0-9+/]*={0,2}")


class _Node:
    __slots__ = ("kind", "go", "name", "fields", "item", "bits")

    def __init__(self, kind: int, go: str, item: _Node | None = None, bits: int = 0):
        self.kind = kind
        self.go = go          # Go type, as Go's decoder names it in errors
        self.name = ""        # struct: Go struct name
        self.fields: dict[str, _Node] = {}
        self.item = item      # list item / map value
        self.bits = bits      # integer width


class _Pairs(list):
    """A JSON object as its (key, value) pairs in document order, duplicates included."""


class _Mismatch(Exception):
    """A value that does not decode into its Go type.

    `detail` is set when the type's own decoder rejects the value with a message of its own
    (Quantity, Time, []byte); otherwise the error is Go's UnmarshalTypeError."""

    def __init__(self, node: _Node, value, stack: list, struct: str, detail: str = ""):
        super().__init__(detail)
        self.node, self.value, self.stack, self.struct, self.detail = (
            node, value, list(stack), struct, detail)


def _compile() -> dict[str, _Node]:
    structs: dict[str, _Node] = {}

    def struct(definition: str) -> _Node:
        node = structs.get(definition)
        if node is None:
            name = definition.rsplit(".", 1)[1]
            node = structs[definition] = _Node(_STRUCT, "v1." + name)
            node.name = name
            for prop, schema in SCHEMAS[definition]["properties"].items():
                node.fields[prop] = field(schema, _GO_TYPES.get((name, prop)))
        return node

    def field(schema: dict, go: str | None) -> _Node:
        schema = schema.get("allOf", [schema])[0]
        if "$ref" in schema:
            target = schema["$ref"].rsplit("/", 1)[1]
            if target in _SPECIAL:
                kind, go_name = _SPECIAL[target]
                return _Node(kind, go_name)
            if "properties" not in SCHEMAS[target]:
                return _Node(_ANY, "runtime.RawExtension")
            return struct(target)
        t = schema["type"]
        if t == "array":
            item = field(schema["items"], go[2:] if go else None)
            return _Node(_LIST, go or "[]" + item.go, item)
        if t == "object":
            value = field(schema["additionalProperties"], None)
            return _Node(_MAP, go or "map[string]" + value.go, value)
        if t == "integer":
            return _Node(_INT, go or schema["format"], bits=int(schema["format"][3:]))
        if t == "string":
            if schema.get("format") == "byte":
                return _Node(_BYTES, "[]uint8")
            return _Node(_STRING, go or "string")
        return _Node(_BOOL, "bool") if t == "boolean" else _Node(_FLOAT, "float64")

    roots = {}
    for definition, schema in SCHEMAS.items():
        for gvk in schema.get("x-kubernetes-group-version-kind", ()):
            roots.setdefault(gvk["kind"], struct(definition))
    return roots


_ROOTS = _compile()


# ---------------------------------------------------------------------------------------------
# The walk: check types, collect strict errors, build the pruned object.

def _strict(errs: dict, what: str, stack: list, key: str) -> None:
    if len(errs) < _MAX_STRICT_ERRORS:
        errs.setdefault(f"{what} {_go_quote(_path(stack, key))}")


def _path(stack: list, key: str | None = None) -> str:
    """`spec.ports[0].name`: the JSON path of `key` under `stack` (struct fields are str, map
    keys 1-tuples, list indexes int)."""
    out = ""
    for step in stack + ([key] if key is not None else []):
        if type(step) is int:
            out += f"[{step}]"
        else:
            step = step if type(step) is str else step[0]
            out = f"{out}.{step}" if out else step
    return out


def _walk(node: _Node, v, stack: list, struct: str, errs: dict | None):
    """Return `v` decoded as `node`: unknown fields dropped, null fields dropped, `_Pairs`
    turned into dicts. Strict errors go to `errs` (when not None); a wrongly typed value
    raises _Mismatch."""
    kind = node.kind
    if kind == _STRUCT:
        tv = type(v)
        if tv is dict:
            items, seen = v.items(), None
        elif tv is _Pairs:
            items, seen = v, set()
        else:
            raise _Mismatch(node, v, stack, struct)
        fields = node.fields
        out = {}
        for key, val in items:
            child = fields.get(key)
            if child is None:
                if errs is not None:
                    _strict(errs, "unknown field", stack, key)
                continue
            if seen is not None:
                if key in seen:
                    _strict(errs, "duplicate field", stack, key)
                seen.add(key)
            if val is None:
                out.pop(key, None)
                continue
            ck = child.kind
            if ck == _STRING and type(val) is str:
                out[key] = val
                continue
            stack.append(key)
            out[key] = _walk(child, val, stack, node.name, errs)
            stack.pop()
        return out
    if kind == _LIST:
        if type(v) is not list:
            raise _Mismatch(node, v, stack, struct)
        item = node.item
        if item.kind == _STRING and all(type(x) is str for x in v):
            return v
        out = []
        for i, x in enumerate(v):
            if x is None:
                out.append(None)
                continue
            stack.append(i)
            out.append(_walk(item, x, stack, struct, errs))
            stack.pop()
        return out
    if kind == _MAP:
        tv = type(v)
        if tv is dict:
            items, seen = v.items(), None
        elif tv is _Pairs:
            items, seen = v, set()
        else:
            raise _Mismatch(node, v, stack, struct)
        value = node.item
        out = {}
        for key, val in items:
            if seen is not None:
                if key in seen:
                    _strict(errs, "duplicate field", stack, key)
                seen.add(key)
            if val is None or (value.kind == _STRING and type(val) is str):
                out[key] = val
                continue
            stack.append((key,))
            out[key] = _walk(value, val, stack, struct, errs)
            stack.pop()
        return out
    if kind == _STRING:
        if type(v) is str:
            return v
    elif kind == _INT:
        if type(v) is int and -(1 << (node.bits - 1)) <= v < (1 << (node.bits - 1)):
            return v
    elif kind == _INT_OR_STRING:
        if type(v) is str or (type(v) is int and -(1 << 31) <= v < (1 << 31)):
            return v
    elif kind == _BOOL:
        if type(v) is bool:
            return v
    elif kind == _FLOAT:
        if type(v) in (int, float):
            return v
    elif kind == _QUANTITY:
        detail = _quantity_error(v)
        if not detail:
            return v
        raise _Mismatch(node, v, stack, struct, detail)
    elif kind in (_TIME, _MICRO_TIME):
        if type(v) is str:
            detail = _time_error(v, kind == _MICRO_TIME)
            if not detail:
                return v
            raise _Mismatch(node, v, stack, struct, detail)
    elif kind == _BYTES:
        if type(v) is str:
            detail = _base64_error(v)
            if not detail:
                return v
            raise _Mismatch(node, v, stack, struct, detail)
    else:  # _ANY: RawExtension, FieldsV1 take any JSON
        return _plain(v)
    raise _Mismatch(node, v, stack, struct)


def _plain(v):
    """`v` with every _Pairs turned into a dict (the last of duplicate keys wins)."""
    if type(v) is _Pairs:
        return {k: _plain(x) for k, x in v}
    if type(v) is dict:
        return {k: _plain(x) for k, x in v.items()}
    if type(v) is list:
        return [_plain(x) for x in v]
    return v


def _pairs(raw: bytes):
    """`raw` parsed keeping every key of every object in document order; None if it is not
    JSON (a YAML body: its duplicates are YAML's business)."""
    try:
        return json.loads(raw, object_pairs_hook=_Pairs)
    except ValueError:
        return None


# ---------------------------------------------------------------------------------------------
# Values with decoders of their own.

def _quantity_error(v) -> str:
    """resource.Quantity's UnmarshalJSON: numbers and strings that parse as a quantity."""
    if type(v) is bool or type(v) not in (int, float, str):
        return _QUANTITY_FORMAT  # the JSON text (true, {...}) does not parse
    s = v.strip() if type(v) is str else json.dumps(v)
    if not s:
        return _QUANTITY_FORMAT
    if s == "0":
        return ""
    m = _QUANTITY_RE.fullmatch(s)
    if m is None:
        return _QUANTITY_FORMAT
    suffix = m.group(5) + m.group(6)
    if suffix in _QUANTITY_SUFFIXES:
        return ""
    if len(suffix) > 1 and suffix[0] in "eE" and re.fullmatch(r"[-+]?[0-9]+", suffix[1:]):
        return ""
    return _QUANTITY_SUFFIX


# time.Parse layouts of metav1.Time (RFC3339) and metav1.MicroTime (RFC3339Micro), as the
# chunks Go's parser walks: (layout element, digits, lowest, highest, range error name).
_RFC3339 = "2006-01-02T15:04:05Z07:00"
_RFC3339_MICRO = "2006-01-02T15:04:05.000000Z07:00"


def _time_error(s: str, micro: bool) -> str:
    """The error of Go's time.Parse(layout, s), or "" when `s` parses."""
    layout = _RFC3339_MICRO if micro else _RFC3339
    value = s

    def bad(elem: str, rest: str) -> str:
        return (f"parsing time {_go_quote(s)} as {_go_quote(layout)}: cannot parse "
                f"{_go_quote(rest)} as {_go_quote(elem)}")

    fields = {}
    for elem, sep in (("2006", "-"), ("01", "-"), ("02", "T"), ("15", ":"), ("04", ":"),
                      ("05", "")):
        width = 4 if elem == "2006" else 2
        digits = value[:width]
        if elem == "15":  # hours may have one digit
            digits = value[:2] if value[1:2].isdigit() else value[:1]
        if len(digits) < (1 if elem == "15" else width) or not digits.isascii() \
                or not digits.isdigit():
            return bad(elem, value)
        fields[elem] = int(digits)
        value = value[len(digits):]
        limit = {"01": (1, 12, "month"), "15": (0, 23, "hour"), "04": (0, 59, "minute"),
                 "05": (0, 59, "second")}.get(elem)
        if limit and not limit[0] <= fields[elem] <= limit[1]:
            return f"parsing time {_go_quote(s)}: {limit[2]} out of range"
        if sep:
            if not value.startswith(sep):
                return bad(sep, value)
            value = value[1:]
    if micro:
        if len(value) < 7 or value[0] not in ".," or not value[1:7].isdigit():
            return bad(".000000", value)
        value = value[7:]
    elif len(value) >= 2 and value[0] in ".," and value[1].isdigit():
        n = 2
        while n < len(value) and value[n].isdigit():
            n += 1
        value = value[n:]
    if value.startswith("Z"):
        value = value[1:]
    elif (len(value) >= 6 and value[0] in "+-" and value[3] == ":"
          and value[1:3].isdigit() and value[4:6].isdigit()):
        value = value[6:]
    else:
        return bad("Z07:00", value)
    if value:
        return f"parsing time {_go_quote(s)}: extra text: {_go_quote(value)}"
    year, month, day = fields["2006"], fields["01"], fields["02"]
    leap = year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
    days = [31, 29 if leap else 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][month - 1]
    if not 1 <= day <= days:
        return f"parsing time {_go_quote(s)}: day out of range"
    return ""


def _base64_error(s: str) -> str:
    """encoding/base64 StdEncoding (line breaks ignored) as []byte's decoder applies it."""
    text = s.replace("\r", "").replace("\n", "")
    m = _BASE64.match(text)
    if m.end() < len(text):
        return f"illegal base64 data at input byte {m.end()}"
    try:
        binascii.a2b_base64(text.encode(), strict_mode=True)
    except binascii.Error:
        return f"illegal base64 data at input byte {len(text) - len(text) % 4}"
    return ""


# ---------------------------------------------------------------------------------------------
# Error texts.

def _go_quote(s: str) -> str:
    """strconv.Quote: a Go double-quoted literal (printable characters kept as they are)."""
    out = ['"']
    for ch in s:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch.isprintable():
            out.append(ch)
        elif ch in "\a\b\f\n\r\t\v":
            out.append({"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r",
                        "\t": "\\t", "\v": "\\v"}[ch])
        elif ord(ch) < 0x100:
            out.append(f"\\x{ord(ch):02x}")
        elif ord(ch) < 0x10000:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(f"\\U{ord(ch):08x}")
    out.append('"')
    return "".join(out)


def _json_kind(v) -> str:
    if type(v) is str:
        return "string"
    if type(v) is bool:
        return "bool"
    if type(v) in (dict, _Pairs):
        return "object"
    return "array" if type(v) is list else "number"


def _json_decoder_error(m: _Mismatch) -> str:
    """The error of sigs.k8s.io/json decoding the value into its Go field."""
    if m.detail:
        return m.detail
    node, v = m.node, m.value
    value = _json_kind(v)
    go = node.go
    if node.kind in (_INT, _INT_OR_STRING):
        go = node.go if node.kind == _INT else "int32"
        if value == "number":  # a fraction, or out of range: Go quotes the literal
            value = f"number {_number_text(v)}"
    elif node.kind in (_TIME, _MICRO_TIME):
        go = "string"
    field = ".".join(s for s in m.stack if type(s) is str)
    return f"json: cannot unmarshal {value} into Go struct field {m.struct}.{field} of type {go}"


def _converter_error(m: _Mismatch) -> str:
    """The error of runtime.DefaultUnstructuredConverter converting the patched object (how a
    strategic merge patch reaches the Go struct)."""
    node, v = m.node, m.value
    src = {str: "string", bool: "bool", int: "int64", float: "float64", dict: "map",
           _Pairs: "map", list: "slice"}[type(v)]
    if node.kind == _STRUCT:
        return f"cannot restore struct from: {src}"
    if node.kind == _BYTES and src == "string":
        return f"error decoding from json: {m.detail}"
    if node.kind in (_LIST, _BYTES):
        return f"cannot restore slice from {src}"
    if node.kind == _MAP:
        return f"cannot restore map from {src}"
    if node.kind == _INT_OR_STRING:  # json.Marshal, then IntOrString.UnmarshalJSON
        value = _json_kind(v)
        if value == "number":
            value = f"number {_number_text(v)}"
        return f"json: cannot unmarshal {value} into Go value of type int32"
    if node.kind in (_TIME, _MICRO_TIME) and type(v) is not str:
        return f"json: cannot unmarshal {_json_kind(v)} into Go value of type string"
    if m.detail:
        return m.detail
    dst = {_STRING: "string", _BOOL: "bool", _FLOAT: "float64"}.get(node.kind, node.go)
    if src in ("int64", "float64") and dst == "string":
        return f"cannot convert {src} to {node.go}" if src == "int64" \
            else "unrecognized type: string"
    if src == "float64" and node.kind == _INT:
        return f"cannot convert float64 to {node.go}"
    return f"unrecognized type: {dst}"


def _number_text(v) -> str:
    return str(v) if type(v) is int else repr(v)


def _go_sprint(v) -> str:
    """fmt.Sprintf("%+v", v) of a decoded JSON value (map keys sorted, as Go prints them)."""
    if type(v) is dict:
        return "map[" + " ".join(f"{k}:{_go_sprint(v[k])}" for k in sorted(v)) + "]"
    if type(v) is list:
        return "[" + " ".join(_go_sprint(x) for x in v) + "]"
    if v is None:
        return "<nil>"
    if type(v) is bool:
        return "true" if v else "false"
    if type(v) is float:
        if v.is_integer() and abs(v) < 1e21:
            return str(int(v))
        text = repr(v)
        return re.sub(r"e([+-]?)(\d)$", lambda g: f"e{g[1] or '+'}0{g[2]}", text) \
            if "e" in text else text
    return str(v)


# ---------------------------------------------------------------------------------------------
# Public API.

def resolve_mode(directive: str | None, options_kind: str) -> str:
    """The fieldValidation directive of a request: Warn when absent, as kube-apiserver defaults
    it; an unknown value is the 422 of Validate{Create,Update,Patch}Options (`options_kind` is
    "CreateOptions", "UpdateOptions" or "PatchOptions")."""
    if not directive:
        return WARN
    if directive in (STRICT, WARN, IGNORE):
        return directive
    raise errors.invalid(options_kind, "meta.k8s.io", "", [
        errors.not_supported("fieldValidation", directive, ["", IGNORE, STRICT, WARN])])


def check_types(kind: str, obj: dict) -> str | None:
    """Go's decoding error for the first value of `obj` that does not fit its type, e.g.
    `json: cannot unmarshal string into Go struct field ServicePort.spec.ports.port of type
    int32`, or None. (decode() puts it in the Kubernetes message.)"""
    try:
        _walk(_ROOTS[kind], obj, [], kind, None)
    except _Mismatch as m:
        return _json_decoder_error(m)
    return None


def check_fields(kind: str, obj: dict) -> list[str]:
    """The unknown-field errors of `obj` in document order: `unknown field "spec.ports[0].nmae"`.
    The walk stops at the first wrongly typed value (check_types reports it)."""
    errs: dict = {}
    try:
        _walk(_ROOTS[kind], obj, [], kind, errs)
    except _Mismatch:
        pass
    return list(errs)


def find_duplicate_fields(raw: bytes) -> list[str]:
    """`duplicate field "metadata.labels.app"` for every repeated key of any object of the JSON
    document `raw`, in document order: what decoding a patch into map[string]interface{} with
    sigs.k8s.io/json's UnmarshalStrict reports. [] if `raw` is not JSON."""
    errs: dict = {}
    _visit_duplicates(_pairs(raw), [], errs)
    return list(errs)


def _visit_duplicates(v, stack: list, errs: dict) -> None:
    if type(v) is _Pairs:
        seen = set()
        for key, val in v:
            if key in seen:
                _strict(errs, "duplicate field", stack, key)
            seen.add(key)
            stack.append(key)
            _visit_duplicates(val, stack, errs)
            stack.pop()
    elif type(v) is list:
        for i, x in enumerate(v):
            stack.append(i)
            _visit_duplicates(x, stack, errs)
            stack.pop()


_JSON_PATCH_OP = ("op", "path", "from", "value")


def _patch_document_errors(raw: bytes, patch_type: str) -> list[str]:
    """Strict errors of the patch document itself. A JSON patch is decoded into []jsonPatchOp
    (unknown and duplicate operation fields, duplicates inside values), its errors prefixed
    "json patch "; other patches into a map (duplicates anywhere)."""
    if patch_type != JSON_PATCH:
        return find_duplicate_fields(raw)
    errs: dict = {}
    ops = _pairs(raw)
    for i, op in enumerate(ops if type(ops) is list else ()):
        if type(op) is not _Pairs:
            continue
        seen = set()
        for key, val in op:
            if key not in _JSON_PATCH_OP:
                _strict(errs, "unknown field", [i], key)
                continue
            if key in seen:
                _strict(errs, "duplicate field", [i], key)
            seen.add(key)
            _visit_duplicates(val, [i, key], errs)
    return ["json patch " + e for e in errs]


def decode(kind: str, api_version: str, raw: bytes, obj: dict, mode: str,
           patch_type: str | None = None) -> tuple[dict, list[str]]:
    """Decode a request body of `kind` the way kube-apiserver does before storing it.

    Create/update (`patch_type` None): `raw` is the body and `obj` that body parsed, unmodified
    (in Strict and Warn modes the object is decoded from `raw` itself, to see duplicate keys in
    document order; pass b"" for a body that is not JSON, and `obj` is used). For a patch, `raw`
    is the patch document, `obj` the patched object and `patch_type` the patch's content type
    (strategic merge, merge or JSON patch). `mode` is the resolved fieldValidation (see
    resolve_mode). `obj` must be a JSON object.

    Returns the object with unknown and null fields dropped, and the warnings to send (Warn
    mode: one per strict error, each for a `Warning: 299 - "<text>"` header). Raises
    errors.APIError: 400 for a type error or (Strict) a strict decoding error on create/update,
    422 `"" is invalid: patch: Invalid value: ...` for the same in a patch.
    """
    version = api_version.rsplit("/", 1)[-1]
    strict = mode != IGNORE
    source = obj
    if strict and patch_type is None:
        parsed = _pairs(raw)
        if type(parsed) is _Pairs:
            source = parsed
    errs: dict | None = {} if strict else None
    try:
        out = _walk(_ROOTS[kind], source, [], kind, errs)
    except _Mismatch as m:
        if patch_type is None:
            raise errors.bad_request(
                f"{kind} in version {_go_quote(version)} cannot be handled as a {kind}: "
                f"{_json_decoder_error(m)}") from None
        detail = (_converter_error(m) if patch_type == STRATEGIC_MERGE_PATCH
                  else _json_decoder_error(m))
        raise _patch_error(patch_type, raw, obj, detail) from None
    messages = list(errs) if errs else []
    if strict and patch_type is not None:
        messages = _patch_document_errors(raw, patch_type) + sorted(messages)
    if not messages:
        return out, []
    if mode == WARN:
        return out, messages
    detail = "strict decoding error: " + ", ".join(messages)
    if patch_type is None:
        raise errors.bad_request(
            f"{kind} in version {_go_quote(version)} cannot be handled as a {kind}: {detail}")
    raise _patch_error(patch_type, raw, obj, detail)


def _patch_error(patch_type: str, raw: bytes, patched: dict, detail: str) -> errors.APIError:
    """The 422 of a patch whose result does not decode: its value is the patch as Go prints a
    map (strategic merge patch) or the patched object's JSON (JSON and merge patches)."""
    if patch_type == STRATEGIC_MERGE_PATCH:
        value = _go_sprint(json.loads(raw))
    else:
        value = json.dumps(patched, separators=(",", ":"), sort_keys=True, ensure_ascii=False)
    return errors.invalid("", "", "", [errors.invalid_value("patch", value, detail)])
