"""Server-side apply and managedFields: structured-merge-diff and the apiserver fieldmanager.

Theory of operation
-------------------
Every object carries `metadata.managedFields`: one entry per *manager identity* (manager name,
operation, and for "Update" entries the apiVersion, plus the subresource), each owning a set of
field paths. A path is a tuple of path elements, encoded as sortable tuples so that Python's
ordering is structured-merge-diff's (fieldpath.PathElement.Compare):

    (0, "spec")                          f:spec            a field of a map
    (1, (("port", v), ("protocol", v)))  k:{"port":80,…}   an item of a list-map, keys sorted
    (2, v)                               v:"finalizer"     an item of a set
    (3, 0)                               i:0               an index (never produced: atomic
                                                           lists are owned whole)

where `v` is a value encoded by `_enc` ((rank, value), ranked as SMD's value.Compare ranks types).
A FieldSet is a frozenset of such paths; `to_fields_v1`/`from_fields_v1` convert it to and from
the FieldsV1 JSON trie, in SMD's serialisation order (members and children merged in path
element order, the "." self-marker written last).

There is no OpenAPI schema here: list types and atomic maps come from `patchmeta` (the
x-kubernetes-list-type / -map-type data of k8s.io/api), every other map is treated as a struct.
Two schema facts are added below: the key defaults of list-maps (`protocol` defaults to "TCP",
which is why `k:{"port":80,"protocol":"TCP"}` identifies a port applied without a protocol) and,
in `_ZERO`, the JSON shape of each kind's zero value (what runtime.DefaultUnstructuredConverter
produces for an empty Go struct: non-pointer structs are `{}`, non-omitempty slices `null`).
Comparisons always run on objects completed with that shape, so that a Go-typed field that is
always present (spec, status.loadBalancer, a container's resources) never looks "added"; this
is what decides where the "." markers of Update entries appear.

The SMD operations are ported from sigs.k8s.io/structured-merge-diff/v4 (typed/*.go,
merge/update.go), as pure functions on JSON-like values:

  `_collect`  TypedValue.ToFieldSet: leaves, list items, atomic lists/maps as single leaves
  `_compare`  TypedValue.Compare: added / modified / removed, non-leaf nodes recorded when they
              appear or disappear (the postItemHook), empty containers compared as leaves
  `_merge`    TypedValue.Merge: the applied config wins on leaves, maps merge by key, list-maps
              and sets merge by item (mergingWalker.visitListItems ordering), atomic replaces
  `_remove`   TypedValue.RemoveItems
  `_prune`    Updater.prune: fields this applier applied last time, no longer applies and nobody
              else owns are removed from the object
  `_take`     Updater.update: changed fields move away from other managers; for apply, a
              changed field another manager owns is a conflict unless `force`

around which the apiserver's fieldmanager chain (k8s.io/apimachinery/pkg/util/managedfields/
internal) is rebuilt: version check, last-applied upgrade for manager "kubectl"
(lastappliedmanager.go / lastappliedupdater.go), "before-first-apply" tracking of objects
without managed fields (skipnonapplied.go), the cap of ten Update entries ("ancient-changes",
capmanagers.go), manager identities (buildmanagerinfo.go), timestamps (managedfieldsupdater.go:
an operation that changes nothing does not bump its entry's time), the fields no entry may own
(stripmeta.go) and the fields a strategy resets (GetResetFields: status on the main resource,
spec and a little metadata on /status), which no entry owns either.

Errors are the Status bodies kube-apiserver 1.32 sends: 409 "Apply failed with N conflict(s)"
with one FieldManagerConflict cause per field, 400 "invalid object type", 400 "metadata.
managedFields must be nil", 400 "error decoding YAML: …", 422 PatchOptions without a
fieldManager, and the 500 (reason Unknown, i.e. empty) "failed to create typed patch object"
that SMD's typed conversion produces for a list-map item without its key or a duplicated key.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import yaml

from svcnet.api import errors
from svcnet.api.errors import APIError, FieldError
from svcnet.api.patchmeta import is_atomic_map, list_meta
from svcnet.api.resources import BY_KIND
from svcnet.jsonutil import clone

LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
FIELD_MANAGER_MAX_LENGTH = 128
MAX_UPDATE_MANAGERS = 10
_TOTAL_ANNOTATION_SIZE_LIMIT = 256 * 1024
_BEFORE_FIRST_APPLY = "before-first-apply"
_ANCIENT_CHANGES = "ancient-changes"

PathElement = tuple
Path = tuple
FieldSet = frozenset  # of Path

_ABSENT = object()  # a field that is not there (JSON null is None, a value)


def _f(*names: str) -> Path:
    return tuple((0, n) for n in names)


# stripmeta.go: never owned by anyone.
_STRIPPED = frozenset({
    _f("apiVersion"), _f("kind"), _f("metadata"), _f("metadata", "name"),
    _f("metadata", "namespace"), _f("metadata", "creationTimestamp"), _f("metadata", "selfLink"),
    _f("metadata", "uid"), _f("metadata", "clusterName"), _f("metadata", "generation"),
    _f("metadata", "managedFields"), _f("metadata", "resourceVersion"),
})

# The strategies' GetResetFields, by kind and subresource.
_MAIN_RESETS_STATUS = {"": (_f("status"),), "status": (_f("spec"),)}
_WORKLOAD_RESETS = {"": (_f("status"),), "status": (_f("spec"), _f("metadata", "labels"))}
_RESET_FIELDS: dict[str, dict[str, tuple[Path, ...]]] = {
    "Pod": {"": (_f("status"),),
            "status": (_f("spec"), _f("metadata", "deletionTimestamp"),
                       _f("metadata", "ownerReferences"))},
    "Service": _MAIN_RESETS_STATUS,
    "Node": _MAIN_RESETS_STATUS,
    "Namespace": _MAIN_RESETS_STATUS,
    "Deployment": _WORKLOAD_RESETS,
    "ReplicaSet": _WORKLOAD_RESETS,
}

# OpenAPI defaults of list-map key fields (ServicePort.protocol, ContainerPort.protocol).
_KEY_DEFAULTS = {"protocol": "TCP"}

# The zero value of each kind as the unstructured converter writes it, by schema path ("*" is
# a list item): fields a Go object always carries. Only shapes that exist in the zero value.
_META_ZERO = {"creationTimestamp": None}
_CONTAINER_ZERO = {"name": "", "resources": {}}
_POD_SPEC_ZERO = {("spec",): {"containers": None},
                  **{("spec", c, "*"): _CONTAINER_ZERO
                     for c in ("containers", "initContainers", "ephemeralContainers")}}
_TEMPLATE_ZERO = {("spec", "template"): {"metadata": {}, "spec": {}},
                  ("spec", "template", "metadata"): _META_ZERO,
                  **{("spec", "template") + p: z for p, z in _POD_SPEC_ZERO.items()}}
_ZERO: dict[str, dict[tuple, dict]] = {
    "Pod": {(): {"metadata": {}, "spec": {}, "status": {}}, ("metadata",): _META_ZERO,
            **_POD_SPEC_ZERO},
    "Service": {(): {"metadata": {}, "spec": {}, "status": {}}, ("metadata",): _META_ZERO,
                ("status",): {"loadBalancer": {}}},
    "Namespace": {(): {"metadata": {}, "spec": {}, "status": {}}, ("metadata",): _META_ZERO},
    "Node": {(): {"metadata": {}, "spec": {}, "status": {}}, ("metadata",): _META_ZERO,
             ("status",): {"daemonEndpoints": {}, "nodeInfo": {}},
             ("status", "daemonEndpoints"): {"kubeletEndpoint": {}},
             ("status", "daemonEndpoints", "kubeletEndpoint"): {"Port": 0},
             ("status", "nodeInfo"): dict.fromkeys(
                 ("machineID", "systemUUID", "bootID", "kernelVersion", "osImage",
                  "containerRuntimeVersion", "kubeletVersion", "kubeProxyVersion",
                  "operatingSystem", "architecture"), "")},
    "Endpoints": {(): {"metadata": {}}, ("metadata",): _META_ZERO},
    "ConfigMap": {(): {"metadata": {}}, ("metadata",): _META_ZERO},
    "Event": {(): {"metadata": {}, "involvedObject": {}, "source": {}, "firstTimestamp": None,
                   "lastTimestamp": None, "eventTime": None, "reportingComponent": "",
                   "reportingInstance": ""},
              ("metadata",): _META_ZERO},
    "EndpointSlice": {(): {"metadata": {}, "addressType": "", "endpoints": None, "ports": None},
                      ("metadata",): _META_ZERO},
    "Deployment": {(): {"metadata": {}, "spec": {}, "status": {}}, ("metadata",): _META_ZERO,
                   ("spec",): {"selector": None, "template": {}, "strategy": {}},
                   **_TEMPLATE_ZERO},
    "ReplicaSet": {(): {"metadata": {}, "spec": {}, "status": {}}, ("metadata",): _META_ZERO,
                   ("spec",): {"selector": None, "template": {}}, ("status",): {"replicas": 0},
                   **_TEMPLATE_ZERO},
    "Lease": {(): {"metadata": {}, "spec": {}}, ("metadata",): _META_ZERO},
}


# ---- values, path elements, paths ----------------------------------------------------------

def _enc(v: Any) -> tuple:
    """A hashable, ordered form of a JSON value; equal iff SMD's value.Equals says so."""
    if isinstance(v, bool):
        return (2, v)
    if isinstance(v, (int, float)):
        return (0, v)
    if isinstance(v, str):
        return (1, v)
    if isinstance(v, list):
        return (3, tuple(_enc(x) for x in v))
    if isinstance(v, dict):
        return (4, tuple(sorted((k, _enc(x)) for k, x in v.items())))
    return (5, 0)


def _dec(e: tuple) -> Any:
    rank, v = e
    if rank == 3:
        return [_dec(x) for x in v]
    if rank == 4:
        return {k: _dec(x) for k, x in v}
    return None if rank == 5 else v


def _equal(a: Any, b: Any) -> bool:
    return _enc(a) == _enc(b)


def _go_number(n: int | float) -> str:
    if isinstance(n, float) and n.is_integer() and abs(n) < 1e21:
        return str(int(n))
    return repr(n)


def _go_quote(s: str) -> str:
    """Go's %q for the strings that occur in field paths and manager names."""
    return json.dumps(s, ensure_ascii=False)


def _go_jsonable(v: Any) -> Any:
    if isinstance(v, float) and v.is_integer() and abs(v) < 1e21:
        return int(v)
    if isinstance(v, dict):
        return {k: _go_jsonable(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_go_jsonable(x) for x in v]
    return v


def _go_json(v: Any, sort_keys: bool = True) -> str:
    """encoding/json's compact output: sorted map keys, HTML characters escaped."""
    s = json.dumps(_go_jsonable(v), separators=(",", ":"), ensure_ascii=False,
                   sort_keys=sort_keys)
    for ch, esc in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"),
                    ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        s = s.replace(ch, esc)
    return s


def _to_string(v: Any) -> str:
    """value.ToString, as field paths print key and set values."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return _go_number(v)
    if isinstance(v, str):
        return _go_quote(v)
    if isinstance(v, list):
        return "[" + ",".join(_to_string(x) for x in v) + "]"
    return "".join(f"{k}={_to_string(x)}" for k, x in sorted(v.items()))


def _pe_string(pe: PathElement) -> str:
    tag, x = pe
    if tag == 0:
        return "." + x
    if tag == 1:
        return "[" + ",".join(f"{k}={_to_string(_dec(e))}" for k, e in x) + "]"
    if tag == 2:
        return f"[={_to_string(_dec(x))}]"
    return f"[{x}]"


def path_string(path: Path) -> str:
    """fieldpath.Path.String(): `.spec.ports[port=80,protocol="TCP"].targetPort`."""
    return "".join(_pe_string(pe) for pe in path)


def _pe_key(pe: PathElement) -> str:
    tag, x = pe
    if tag == 0:
        return "f:" + x
    if tag == 1:
        return "k:{" + ",".join(_go_json(k) + ":" + _go_json(_dec(e)) for k, e in x) + "}"
    if tag == 2:
        return "v:" + _go_json(_dec(x))
    return f"i:{x}"


def _parse_pe(s: str) -> PathElement | None:
    """DeserializePathElement; None for an unknown element type (SMD drops those)."""
    if len(s) < 2:
        raise ValueError("key must be 2 characters long:")
    if s[1] != ":":
        raise ValueError(f"missing colon: {s}")
    tag, body = s[0], s[2:]
    if tag == "f":
        return (0, body)
    if tag == "k":
        fields = json.loads(body)
        if not isinstance(fields, dict):
            raise ValueError(f"expected an object in {s}")
        return (1, tuple(sorted((k, _enc(v)) for k, v in fields.items())))
    if tag == "v":
        return (2, _enc(json.loads(body)))
    if tag == "i":
        return (3, int(body))
    return None


def _key_of(item: Any, keys: tuple[str, ...]) -> PathElement:
    if item is None:
        raise _ItemError("associative list with keys may not have a null element")
    if not isinstance(item, dict):
        raise _ItemError("associative list with keys may not have non-map elements")
    fields = []
    for k in keys:
        if k in item:
            fields.append((k, _enc(item[k])))
        elif k in _KEY_DEFAULTS:
            fields.append((k, _enc(_KEY_DEFAULTS[k])))
        else:
            raise _ItemError(f"associative list with keys has an element that omits key field "
                             f"{_go_quote(k)} (and doesn't have default value)")
    return (1, tuple(sorted(fields)))


def _set_item(item: Any) -> PathElement:
    if isinstance(item, dict):
        raise _ItemError("associative list without keys has an element that's a map type")
    if isinstance(item, list):
        raise _ItemError("not supported: associative list with lists as elements")
    if item is None:
        raise _ItemError("associative list without keys has an element that's an explicit null")
    return (2, _enc(item))


class _ItemError(Exception):
    """A list item that cannot be identified (listItemToPathElement)."""


class _TypedError(Exception):
    """Typed conversion failed: SMD's ValidationErrors, already formatted."""

    def __init__(self, messages: list[str]):
        super().__init__("\n".join(messages))
        self.messages = messages

    def text(self) -> str:
        if len(self.messages) == 1:
            return self.messages[0]
        return "\n".join(["errors:"] + ["  " + m for m in self.messages])


def _error_at(path: Path, message: str) -> str:
    return f"{path_string(path)}: {message}" if path else message


def _index(items: list, kind: str, sp: tuple, path: Path, errs: list[str],
           strict: bool) -> tuple[list[PathElement], dict[PathElement, list]]:
    """The items of a list-map or set by path element, in order; duplicates grouped."""
    meta = list_meta(kind, sp)
    order: list[PathElement] = []
    observed: dict[PathElement, list] = {}
    for i, item in enumerate(items):
        try:
            pe = _key_of(item, meta.map_keys) if meta.list_type == "map" else _set_item(item)
        except _ItemError as e:
            errs.append(_error_at(path, f"element {i}: {e}"))
            continue
        if pe in observed:
            if strict:
                errs.append(_error_at(path, f"duplicate entries for key {_pe_string(pe)}"))
            observed[pe].append(item)
            continue
        observed[pe] = [item]
        order.append(pe)
    return order, observed


def _granular_list(kind: str, sp: tuple) -> bool:
    return list_meta(kind, sp).list_type != "atomic"


# ---- FieldSet and FieldsV1 -----------------------------------------------------------------

def _collect(v: Any, kind: str, sp: tuple, path: Path, out: set, errs: list[str],
             strict: bool) -> None:
    """ToFieldSet: every leaf and list item of `v` (struct and map paths are not members)."""
    if isinstance(v, dict):
        if is_atomic_map(kind, sp):
            out.add(path)
            return
        for k, x in v.items():
            _collect(x, kind, sp + (k,), path + ((0, k),), out, errs, strict)
    elif isinstance(v, list):
        if not _granular_list(kind, sp):
            out.add(path)
            return
        order, observed = _index(v, kind, sp, path, errs, strict)
        for pe in order:
            _collect(observed[pe][0], kind, sp + ("*",), path + (pe,), out, errs, strict)
            out.add(path + (pe,))
    elif not (v is None and _granular_list(kind, sp)) and path:
        out.add(path)


def _paths(obj: Any, kind: str, strict: bool = False) -> FieldSet:
    out: set = set()
    errs: list[str] = []
    _collect(obj, kind, (), (), out, errs, strict)
    if errs:
        raise _TypedError(errs)
    return frozenset(out)


def fieldset(obj: dict, kind: str) -> FieldSet:
    """The fields an applied configuration of `kind` specifies (SMD's ToFieldSet)."""
    try:
        return _paths(obj, kind, strict=True)
    except _TypedError as e:
        raise _typed_error("patch", obj, e) from None


def _tree(fs: FieldSet) -> dict:
    """The set as a trie: path element -> [is member, children]."""
    root: dict = {}
    for path in fs:
        node = root
        for pe in path[:-1]:
            node = node.setdefault(pe, [False, {}])[1]
        node.setdefault(path[-1], [False, {}])[0] = True
    return root


def _emit(node: dict, include_self: bool) -> dict:
    out: dict = {}
    for pe in sorted(node):
        member, children = node[pe]
        out[_pe_key(pe)] = _emit(children, member) if children else {}
    if include_self and out:
        out["."] = {}
    return out


def to_fields_v1(fs: FieldSet) -> dict:
    """The FieldsV1 trie of a set, keys in the order SMD writes them ("." last)."""
    return _emit(_tree(fs), False)


def _read(node: dict, prefix: Path, out: set) -> None:
    for key, sub in node.items():
        if key == ".":
            continue
        pe = _parse_pe(key)
        if pe is None:
            continue
        if not isinstance(sub, dict):
            raise ValueError(f"expected an object under {key}")
        p = prefix + (pe,)
        before = len(out)
        _read(sub, p, out)
        if "." in sub or len(out) == before:
            out.add(p)


def from_fields_v1(d: dict) -> FieldSet:
    """Parse a FieldsV1 trie (ValueError when it is malformed)."""
    if not isinstance(d, dict):
        raise ValueError("fieldsV1 must be an object")
    out: set = set()
    _read(d, (), out)
    return frozenset(out)


def _with_named_parents(fs: FieldSet) -> FieldSet:
    """Set.EnsureNamedFieldsAreMembers: the fields on the way to each path become members."""
    out = set(fs)
    for p in fs:
        for i in range(1, len(p)):
            if p[i - 1][0] == 0:
                out.add(p[:i])
    return frozenset(out)


def _recursive_difference(fs: FieldSet, prefixes: FieldSet) -> FieldSet:
    if not prefixes:
        return fs
    return frozenset(p for p in fs
                     if not any(p[:i] in prefixes for i in range(1, len(p) + 1)))


def _iteration_key(path: Path) -> tuple:
    """Set.Iterate order: a node's members, then its children, depth first."""
    return tuple((int(i < len(path) - 1), pe) for i, pe in enumerate(path))


# ---- typed operations ----------------------------------------------------------------------

def _typed(obj: dict, kind: str) -> dict:
    """`obj` completed with the fields its Go type always carries."""
    table = _ZERO.get(kind)
    out = clone(obj)
    if table:
        _fill(out, table, ())
    return out


def _fill(v: Any, table: dict, sp: tuple) -> None:
    if isinstance(v, dict):
        for k, zero in table.get(sp, {}).items():
            if k not in v or (v[k] is None and isinstance(zero, dict)):
                v[k] = clone(zero)
        for k, x in v.items():
            _fill(x, table, sp + (k,))
    elif isinstance(v, list):
        for x in v:
            _fill(x, table, sp + ("*",))


@dataclass
class _Comparison:
    added: set
    modified: set
    removed: set

    def changed(self) -> FieldSet:
        return frozenset(self.added | self.modified)

    def excluding(self, prefixes: FieldSet) -> _Comparison:
        return _Comparison(set(_recursive_difference(frozenset(self.added), prefixes)),
                           set(_recursive_difference(frozenset(self.modified), prefixes)),
                           set(_recursive_difference(frozenset(self.removed), prefixes)))


def _is_map_node(l: Any, r: Any, kind: str, sp: tuple) -> bool:
    sides = (l, r)
    return (any(isinstance(x, dict) for x in sides)
            and all(x is _ABSENT or x is None or isinstance(x, dict) for x in sides)
            and not is_atomic_map(kind, sp))


def _is_list_node(l: Any, r: Any, kind: str, sp: tuple) -> bool:
    sides = (l, r)
    return (any(isinstance(x, list) for x in sides)
            and all(x is _ABSENT or x is None or isinstance(x, list) for x in sides)
            and _granular_list(kind, sp))


def _compare_leaf(l: Any, r: Any, path: Path, c: _Comparison) -> None:
    if not path:
        return
    if l is _ABSENT:
        c.added.add(path)
    elif r is _ABSENT:
        c.removed.add(path)
    elif not _equal(l, r):
        c.modified.add(path)


def _compare_node(l: Any, r: Any, path: Path, c: _Comparison) -> None:
    if path and l is _ABSENT:
        c.added.add(path)
    elif path and r is _ABSENT:
        c.removed.add(path)


def _cmp(l: Any, r: Any, kind: str, sp: tuple, path: Path, c: _Comparison,
         errs: list[str]) -> None:
    if _is_map_node(l, r, kind, sp):
        lm = l if isinstance(l, dict) else {}
        rm = r if isinstance(r, dict) else {}
        if not lm and not rm:
            _compare_leaf(l, r, path, c)
            return
        for k in dict.fromkeys([*lm, *rm]):
            _cmp(lm.get(k, _ABSENT), rm.get(k, _ABSENT), kind, sp + (k,), path + ((0, k),), c,
                 errs)
        _compare_node(l, r, path, c)
    elif _is_list_node(l, r, kind, sp):
        ll = l if isinstance(l, list) else []
        rl = r if isinstance(r, list) else []
        if not ll and not rl:
            _compare_leaf(l, r, path, c)
            return
        lo, lobs = _index(ll, kind, sp, path, errs, False)
        ro, robs = _index(rl, kind, sp, path, errs, False)
        for pe in dict.fromkeys([*lo, *ro]):
            _cmp(lobs[pe][0] if pe in lobs else _ABSENT, robs[pe][0] if pe in robs else _ABSENT,
                 kind, sp + ("*",), path + (pe,), c, errs)
        _compare_node(l, r, path, c)
    else:
        _compare_leaf(l, r, path, c)


def _compare(old: dict, new: dict, kind: str) -> _Comparison:
    """TypedValue.Compare of the two objects as their Go types see them."""
    c = _Comparison(set(), set(), set())
    errs: list[str] = []
    _cmp(_typed(old, kind), _typed(new, kind), kind, (), (), c, errs)
    if errs:
        raise _TypedError(errs)
    return c


def _merge(l: Any, r: Any, kind: str, sp: tuple) -> Any:
    """TypedValue.Merge (ruleKeepRHS): `r` is the applied configuration."""
    if r is _ABSENT:
        return l
    if l is _ABSENT:
        return clone(r)
    if _is_map_node(l, r, kind, sp):
        lm = l if isinstance(l, dict) else {}
        rm = r if isinstance(r, dict) else {}
        if not lm and not rm:
            return clone(r)
        return {k: _merge(lm.get(k, _ABSENT), rm.get(k, _ABSENT), kind, sp + (k,))
                for k in dict.fromkeys([*lm, *rm])}
    if _is_list_node(l, r, kind, sp):
        ll = l if isinstance(l, list) else []
        rl = r if isinstance(r, list) else []
        if not ll and not rl:
            return clone(r)
        return _merge_list(ll, rl, kind, sp)
    return clone(r)


def _merge_list(ll: list, rl: list, kind: str, sp: tuple) -> list:
    """mergingWalker.visitListItems: the applied order wins for the items it names.

    Both lists were typed already, so item errors cannot occur here."""
    ro, robs = _index(rl, kind, sp, (), [], False)
    lo, lobs = _index(ll, kind, sp, (), [], False)
    shared = [pe for pe in ro if pe in lobs]
    nxt = shared.pop(0) if shared else None
    out: list = []

    def item(pe: PathElement) -> Any:
        """The applied item merged into the live one of the same key (duplicates of it go)."""
        return _merge(lobs[pe][0] if pe in lobs else _ABSENT, robs[pe][0], kind, sp + ("*",))

    li = ri = 0
    while li < len(lo) or ri < len(ro):
        if li < len(lo) and ri < len(ro):
            pe = lo[li]
            if pe == ro[ri]:
                out.append(item(pe))
                li, ri = li + 1, ri + 1
                nxt = shared.pop(0) if shared else None
                continue
            if pe in robs and nxt is not None and nxt != pe:
                li += 1
                continue
        if li < len(lo) and lo[li] not in robs:
            out.extend(clone(lobs[lo[li]]))  # duplicates the config leaves alone stay
            li += 1
            continue
        if ri < len(ro):
            pe = ro[ri]
            out.append(item(pe))
            ri += 1
            if nxt is not None and nxt == pe:
                nxt = shared.pop(0) if shared else None
    return out


def _remove(v: Any, node: dict, kind: str, sp: tuple) -> Any:
    """RemoveItems: drop the members of the trie `node` from `v` (containers left empty go)."""
    if isinstance(v, dict):
        if is_atomic_map(kind, sp):
            return _ABSENT
        out = {}
        for k, x in v.items():
            entry = node.get((0, k))
            if entry is None:
                out[k] = x
            elif not entry[0]:
                kept = _remove(x, entry[1], kind, sp + (k,))
                if kept is not _ABSENT:
                    out[k] = kept
        return out or _ABSENT
    if isinstance(v, list):
        if not _granular_list(kind, sp):
            return _ABSENT
        out_items = []
        meta = list_meta(kind, sp)
        for x in v:
            try:
                pe = _key_of(x, meta.map_keys) if meta.list_type == "map" else _set_item(x)
            except _ItemError:
                out_items.append(x)
                continue
            entry = node.get(pe)
            if entry is None:
                out_items.append(x)
            elif not entry[0]:
                kept = _remove(x, entry[1], kind, sp + ("*",))
                if kept is not _ABSENT:
                    out_items.append(kept)
        return out_items or _ABSENT
    return v


def _remove_items(obj: dict, fs: FieldSet, kind: str) -> dict:
    if not fs:
        return obj
    kept = _remove(obj, _tree(fs), kind, ())
    return {} if kept is _ABSENT else kept


# ---- managers ------------------------------------------------------------------------------

# A manager identity (BuildManagerIdentifier): name, operation, apiVersion ("" for Apply,
# which keeps one identity across versions), subresource.
ManagerKey = tuple[str, str, str, str]


@dataclass(frozen=True)
class _Entry:
    fields: FieldSet
    api_version: str
    applied: bool
    time: str | None


Managed = dict  # ManagerKey -> _Entry


def _identifier(key: ManagerKey) -> str:
    """The identity's JSON, as Go marshals the ManagedFieldsEntry it comes from."""
    name, op, api_version, sub = key
    d = {k: v for k, v in (("manager", name), ("operation", op), ("apiVersion", api_version),
                           ("subresource", sub)) if v}
    return _go_json(d, sort_keys=False)


def _print_manager(key: ManagerKey) -> str:
    """conflict.go printManager."""
    name, op, api_version, sub = key
    s = _go_quote(name)
    if sub:
        s += f" with subresource {_go_quote(sub)}"
    if op == "Update":
        s += f" using {api_version}"
    return s


def _decode(entries: Any) -> Managed:
    """DecodeManagedFields (ValueError when an entry is not valid)."""
    if not isinstance(entries, list):
        raise ValueError("managedFields must be a list")
    managed: Managed = {}
    for i, e in enumerate(entries):
        if not isinstance(e, dict):
            raise ValueError(f"managed fields entry {i} is not an object")
        op = e.get("operation")
        if op not in ("Apply", "Update"):
            raise ValueError("operation must be `Apply` or `Update`")
        api_version = e.get("apiVersion") or ""
        if not api_version:
            raise ValueError("apiVersion must not be empty")
        ftype = e.get("fieldsType") or ""
        if ftype != "FieldsV1":
            raise ValueError(f"missing fieldsType in managed fields entry {i}" if not ftype
                             else f"invalid fieldsType {ftype!r} in managed fields entry {i}")
        key = (e.get("manager") or "", op, api_version if op == "Update" else "",
               e.get("subresource") or "")
        managed[key] = _Entry(from_fields_v1(e.get("fieldsV1") or {}), api_version,
                              op == "Apply", e.get("time"))
    return managed


def _seconds(t: str | None) -> float:
    if not t:
        return 0
    try:
        return datetime.fromisoformat(t).timestamp()
    except ValueError:
        return 0


def _encode(managed: Managed) -> list[dict]:
    """encodeManagedFields, sorted by operation, time, manager, apiVersion, subresource."""
    entries = []
    for key, entry in managed.items():
        name, _, _, sub = key
        e: dict = {"manager": name, "operation": "Apply" if entry.applied else "Update",
                   "apiVersion": entry.api_version}
        if entry.time is not None:
            e["time"] = entry.time
        e["fieldsType"] = "FieldsV1"
        e["fieldsV1"] = to_fields_v1(entry.fields)
        if sub:
            e["subresource"] = sub
        entries.append(e)
    entries.sort(key=lambda e: (e["operation"], _seconds(e.get("time")), e["manager"],
                                e["apiVersion"], e.get("subresource", "")))
    return entries


def _set_managed(obj: dict, managed: Managed) -> dict:
    meta = obj.setdefault("metadata", {})
    entries = _encode(managed)
    if entries:
        meta["managedFields"] = entries
    else:
        meta.pop("managedFields", None)
    return obj


def _without_managed(obj: dict) -> dict:
    out = clone(obj)
    if isinstance(out.get("metadata"), dict):
        out["metadata"].pop("managedFields", None)
    return out


def _cap_updaters(managed: Managed) -> Managed:
    """capmanagers.go: at most ten Update entries; the oldest merge into "ancient-changes"."""
    updaters = [k for k, e in managed.items() if not e.applied]
    if len(updaters) <= MAX_UPDATE_MANAGERS:
        return managed
    out = dict(managed)
    updaters.sort(key=lambda k: (int(_seconds(managed[k].time)), _identifier(k)))
    first_of_version: dict[str, ManagerKey] = {}
    length = len(updaters)
    for key in updaters:
        if length <= MAX_UPDATE_MANAGERS:
            break
        entry = out[key]
        version = entry.api_version
        if version not in first_of_version:
            first_of_version[version] = key
            continue
        bucket = (_ANCIENT_CHANGES, "Update", version, "")
        if bucket not in out:
            out[bucket] = out.pop(first_of_version[version])
        out[bucket] = _Entry(entry.fields | out[bucket].fields, version, False, entry.time)
        del out[key]
        length -= 1
    return out


# ---- scope ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Scope:
    kind: str
    api_version: str
    subresource: str

    @property
    def reset(self) -> FieldSet:
        return frozenset(_RESET_FIELDS.get(self.kind, {}).get(self.subresource, ()))


def _scope(kind: str, subresource: str, fallback_api_version: str) -> _Scope:
    res = BY_KIND.get(kind)
    return _Scope(kind, res.api_version if res else fallback_api_version, subresource)


def _gvk_string(obj: dict) -> str:
    """schema.GroupVersionKind.String() of an unstructured object."""
    api_version = obj.get("apiVersion") if isinstance(obj.get("apiVersion"), str) else ""
    kind = obj.get("kind") if isinstance(obj.get("kind"), str) else ""
    parts = api_version.split("/")
    if api_version in ("", "/"):
        group, version = "", ""
    elif len(parts) == 1:
        group, version = "", parts[0]
    elif len(parts) == 2:
        group, version = parts
    else:
        return "/, Kind="
    return f"{group}/{version}, Kind={kind}"


def _typed_error(which: str, obj: dict, e: _TypedError) -> APIError:
    """What kube-apiserver answers when SMD refuses an object: a 500 of reason Unknown."""
    meta = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
    nn = f"{meta.get('namespace') or ''}/{meta.get('name') or ''}"
    return APIError(500, "", f"failed to create typed {which} object ({nn}; {_gvk_string(obj)}): "
                             f"{e.text()}")


# ---- update --------------------------------------------------------------------------------

def _record_update(old: dict, new: dict, managed: Managed, key: ManagerKey, scope: _Scope,
                   now: str) -> Managed:
    """Updater.Update under managedFieldsUpdater and stripMetaManager."""
    c = _compare(old, new, scope.kind).excluding(scope.reset)
    changed = c.changed()
    out: Managed = {}
    for k, e in managed.items():
        fields = e.fields - changed - c.removed
        if fields:
            out[k] = replace(e, fields=fields)
    mine = _recursive_difference(changed - c.removed, scope.reset) - _STRIPPED
    if mine:
        prev = out.get(key)
        out[key] = _Entry(mine | (prev.fields if prev else frozenset()), scope.api_version,
                          False, now)
    return _cap_updaters(out)


def _is_reset(entries: Any) -> bool:
    """isResetManagedFields: `[]` or `[{}]` asks for managedFields to be cleared."""
    if not isinstance(entries, list):
        return False
    return not entries or (len(entries) == 1 and isinstance(entries[0], dict)
                           and not any(entries[0].values()))


def _decode_or_empty(obj: dict | None) -> Managed:
    try:
        return _decode(((obj or {}).get("metadata") or {}).get("managedFields") or [])
    except ValueError:
        return {}


def _live_or_new(old: dict | None, new: dict, subresource: str) -> Managed:
    """decodeLiveOrNew: which managedFields an ordinary write starts from."""
    if subresource:
        return _decode_or_empty(old)
    provided = (new.get("metadata") or {}).get("managedFields")
    if _is_reset(provided):
        return {}
    try:
        managed = _decode(provided) if provided is not None else {}
    except ValueError:
        managed = {}
    return managed or _decode_or_empty(old)


def update_managed_fields(old: dict | None, new: dict, manager: str, kind: str, now: str,
                          subresource: str = "") -> dict:
    """`new` with metadata.managedFields updated for a create (old None), update or patch.

    The fields that differ between `old` and `new` become `manager`'s (operation Update) and
    leave every other entry. A managedFields list sent in `new` is honoured when it decodes
    (not on subresources), `[]` clears tracking; an object whose tracking was cleared stays
    untracked until it is applied to. If the objects cannot be compared (a list-map item
    without its key), the old managedFields are kept, as UpdateNoErrors does.
    """
    scope = _scope(kind, subresource, new.get("apiVersion") or "")
    managed = _live_or_new(old, new, subresource)
    result = _without_managed(new)
    result.setdefault("metadata", {})
    creating = old is None or not (old.get("metadata") or {}).get("uid")
    if not managed and not creating:
        return result
    key = (manager or "unknown", "Update", scope.api_version, subresource)
    try:
        managed = _record_update(_without_managed(old) if old else {}, result, managed, key,
                                 scope, now)
    except _TypedError:
        previous = ((old or {}).get("metadata") or {}).get("managedFields")
        if previous:
            result["metadata"]["managedFields"] = clone(previous)
        return result
    return _set_managed(result, managed)


# ---- apply ---------------------------------------------------------------------------------

class _Conflicts(Exception):
    def __init__(self, by_manager: dict[ManagerKey, FieldSet]):
        super().__init__("conflicts")
        self.by_manager = by_manager


def _take(live: dict, new: dict, managed: Managed, key: ManagerKey, force: bool,
          scope: _Scope) -> Managed:
    """Updater.update: changed fields leave other managers; owned ones conflict."""
    c = _compare(live, new, scope.kind).excluding(scope.reset)
    changed = c.changed()
    conflicts = {k: e.fields & changed for k, e in managed.items()
                 if k != key and e.fields & changed}
    if conflicts and not force:
        raise _Conflicts(conflicts)
    out: Managed = {}
    for k, e in managed.items():
        fields = e.fields if k == key else e.fields - changed - c.removed
        if fields:
            out[k] = replace(e, fields=fields)
    return out


def _prune(merged: dict, managed: Managed, last: _Entry | None, kind: str) -> dict:
    """Updater.prune: remove what the applier dropped from its config and nobody else owns."""
    if last is None or not last.fields:
        return merged
    last_set = _with_named_parents(last.fields)
    owned = _with_named_parents(frozenset().union(*(e.fields for e in managed.values())))
    merged_set = _with_named_parents(_paths(merged, kind))
    pruned = _remove_items(merged, last_set, kind)
    pruned_set = _with_named_parents(_paths(pruned, kind))
    pruned = _remove_items(merged, merged_set - (pruned_set | owned), kind)  # addBackOwnedItems
    pruned_set = _with_named_parents(_paths(pruned, kind))
    return _remove_items(merged, (merged_set - pruned_set) & last_set, kind)  # addBackDangling


def _apply_once(live: dict, config: dict, config_set: FieldSet, managed: Managed,
                key: ManagerKey, force: bool, scope: _Scope,
                now: str) -> tuple[dict, Managed]:
    """Updater.Apply with the skip-non-applied, strip-meta and timestamp wrappers."""
    if not managed:
        before = (_BEFORE_FIRST_APPLY, "Update", scope.api_version, scope.subresource)
        managed = _record_update({}, live, managed, before, scope, now)
    merged = _merge(live, config, scope.kind, ())
    last = managed.get(key)
    managed = dict(managed)
    managed[key] = _Entry(_recursive_difference(config_set, scope.reset), scope.api_version,
                          True, last.time if last else None)
    merged = _prune(merged, managed, last, scope.kind)
    managed = _take(live, merged, managed, key, force, scope)
    if key in managed:
        mine = managed[key].fields - _STRIPPED
        if mine:
            managed[key] = replace(managed[key], fields=mine)
        else:
            del managed[key]
    if _equal(_typed(live, scope.kind), _typed(merged, scope.kind)):
        return clone(live), managed
    if key in managed:
        managed[key] = replace(managed[key], time=now)
    return merged, managed


def _allowed_by_last_applied(live: dict, scope: _Scope) -> FieldSet:
    """lastappliedmanager.go: fields whose client-side applied value is still the live one."""
    raw = ((live.get("metadata") or {}).get("annotations") or {}).get(LAST_APPLIED)
    if not raw:
        return frozenset()
    try:
        last = json.loads(raw)
        if not isinstance(last, dict) or last.get("apiVersion") != scope.api_version:
            return frozenset()
        fields = _paths(last, scope.kind)
        c = _compare(last, live, scope.kind)
    except (ValueError, _TypedError):
        return frozenset()
    return fields - c.modified - c.added - c.removed


def _last_applied_value(config: dict) -> str:
    """buildLastApplied: the applied configuration without the annotation, as JSON."""
    obj = clone(config)
    meta = obj.get("metadata")
    if isinstance(meta, dict) and isinstance(meta.get("annotations"), dict):
        meta["annotations"].pop(LAST_APPLIED, None)
    return _go_json(obj) + "\n"


def _set_last_applied(obj: dict, value: str) -> None:
    annotations = obj.setdefault("metadata", {}).setdefault("annotations", {})
    annotations[LAST_APPLIED] = value
    if sum(len(k) + len(v) for k, v in annotations.items()) > _TOTAL_ANNOTATION_SIZE_LIMIT:
        del annotations[LAST_APPLIED]


def _drop_nulls(v: Any) -> Any:
    """What the object's Go type keeps of explicit nulls in the applied configuration."""
    if isinstance(v, dict):
        return {k: _drop_nulls(x) for k, x in v.items() if x is not None}
    if isinstance(v, list):
        return [_drop_nulls(x) for x in v]
    return v


def _conflict_error(by_manager: dict[ManagerKey, FieldSet]) -> APIError:
    """conflict.go NewConflictError: 409, one FieldManagerConflict cause per field."""
    managers = sorted(by_manager, key=_identifier)
    conflicts = [(k, p) for k in managers for p in sorted(by_manager[k], key=_iteration_key)]
    causes = [{"reason": "FieldManagerConflict", "message": f"conflict with {_print_manager(k)}",
               "field": path_string(p)} for k, p in conflicts]
    if len(conflicts) == 1:
        k, p = conflicts[0]
        message = f"Apply failed with 1 conflict: conflict with {_print_manager(k)}: " \
                  f"{path_string(p)}"
    else:
        lines = []
        for k in managers:
            lines.append(f"conflicts with {_print_manager(k)}:")
            lines.extend(f"- {path_string(p)}" for kk, p in conflicts if kk == k)
        message = f"Apply failed with {len(conflicts)} conflicts: " + "\n".join(lines)
    return APIError(409, "Conflict", message, {"causes": causes})


def server_side_apply(live: dict | None, applied: dict, manager: str, force: bool, kind: str,
                      now: str, subresource: str = "") -> dict:
    """The object after applying `applied` for `manager` (not yet defaulted or validated).

    `live` is None when the apply creates the object. Raises APIError: 400 for an applied
    object of another kind/version or one carrying managedFields, 409 for conflicts (unless
    `force`), 500 for a configuration SMD cannot type (a list-map item missing its key).
    Fields a strategy resets (status here, spec on /status) are merged as sent but owned by
    nobody; resetting them is the strategy's job.
    """
    scope = _scope(kind, subresource, (live or applied).get("apiVersion") or "")
    expected = f"{scope.api_version}, Kind={kind}" if "/" in scope.api_version \
        else f"/{scope.api_version}, Kind={kind}"
    if _gvk_string(applied) != expected:
        raise errors.bad_request(f"invalid object type: {_gvk_string(applied)}")
    meta = applied.get("metadata")
    if isinstance(meta, dict) and isinstance(meta.get("managedFields"), list):
        raise errors.bad_request("metadata.managedFields must be nil")
    try:
        managed = _decode(((live or {}).get("metadata") or {}).get("managedFields") or [])
    except ValueError as e:
        raise APIError(500, "", f"failed to decode managed fields: {e}") from None
    config_set = fieldset(applied, kind)
    body = _without_managed(live) if live is not None else {}
    try:
        _paths(body, kind)
    except _TypedError as e:
        raise _typed_error("live", body, e) from None
    key = (manager or "unknown", "Apply", "", subresource)
    try:
        try:
            result, managed = _apply_once(body, applied, config_set, managed, key, force, scope,
                                          now)
        except _Conflicts as c:
            if manager != "kubectl":
                raise
            allowed = _allowed_by_last_applied(body, scope)
            remaining = {k: fs - allowed for k, fs in c.by_manager.items() if fs - allowed}
            if remaining:
                raise _Conflicts(remaining) from None
            result, managed = _apply_once(body, applied, config_set, managed, key, True, scope,
                                          now)
    except _Conflicts as c:
        raise _conflict_error(c.by_manager) from None
    result = _drop_nulls(result)
    if manager == "kubectl" and ((result.get("metadata") or {}).get("annotations")
                                 or {}).get(LAST_APPLIED):
        _set_last_applied(result, _last_applied_value(applied))
    return _set_managed(result, managed)


# ---- request helpers -----------------------------------------------------------------------

def _field_manager_errors(field_manager: str) -> list[FieldError]:
    """ValidateFieldManager: at most 128 bytes, printable characters only."""
    errs: list[FieldError] = []
    if len(field_manager.encode()) > FIELD_MANAGER_MAX_LENGTH:
        errs.append(errors.too_long("fieldManager", field_manager, FIELD_MANAGER_MAX_LENGTH))
    for i, ch in enumerate(field_manager):
        if not ch.isprintable():
            errs.append(errors.invalid_value("fieldManager", field_manager,
                                             f"invalid character U+{ord(ch):04X} "
                                             f"(at position {i})"))
    return errs


def validate_field_manager(field_manager: str | None, options_kind: str) -> None:
    """422 for a fieldManager parameter kube-apiserver refuses (CreateOptions, UpdateOptions,
    PatchOptions)."""
    errs = _field_manager_errors(field_manager or "")
    if errs:
        raise errors.invalid(options_kind, "meta.k8s.io", "", errs)


def require_apply_manager(field_manager: str | None) -> str:
    """The fieldManager of an apply patch, which must be given (ValidatePatchOptions)."""
    errs = [] if field_manager else [errors.required("fieldManager",
                                                     "is required for apply patch")]
    errs += _field_manager_errors(field_manager or "")
    if errs:
        raise errors.invalid("PatchOptions", "meta.k8s.io", "", errs)
    return field_manager


def manager_or_user_agent(field_manager: str | None, user_agent: str | None) -> str:
    """managerOrUserAgent: the fieldManager, else the User-Agent up to its first "/"."""
    if field_manager:
        return field_manager
    out = ""
    for ch in (user_agent or "").split("/")[0]:
        if not ch.isprintable():
            continue
        if len((out + ch).encode()) > FIELD_MANAGER_MAX_LENGTH:
            break
        out += ch
    return out


class _ApplyLoader(yaml.SafeLoader):
    """YAML as sigs.k8s.io/yaml reads it into JSON: timestamps stay strings."""


_ApplyLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}

_GO_JSON_TYPE = ((bool, "bool"), ((int, float), "number"), (str, "string"), (list, "array"))


def _jsonish(v: Any) -> Any:
    """YAML data as JSON data (map keys become strings, as sigs.k8s.io/yaml converts them)."""
    if isinstance(v, dict):
        return {_key_string(k): _jsonish(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_jsonish(x) for x in v]
    if isinstance(v, float) and (v != v or v in (float("inf"), float("-inf"))):
        raise ValueError(f"json: unsupported value: {v}")
    if isinstance(v, (bytes, set)):
        raise ValueError(f"json: unsupported type: {type(v).__name__}")
    return v


def _key_string(k: Any) -> str:
    if isinstance(k, str):
        return k
    if isinstance(k, bool):
        return "true" if k else "false"
    if isinstance(k, (int, float)):
        return _go_number(k)
    raise ValueError(f"unsupported map key of type: {type(k).__name__}, key: {k!r}")


def parse_apply_body(body: bytes) -> dict:
    """The applied configuration of an application/apply-patch+yaml body (YAML or JSON).

    The first YAML document counts, as go-yaml's Unmarshal reads it; an empty body is an empty
    configuration (server_side_apply then refuses its type). Anything else that is not a
    mapping is 400 "error decoding YAML: …".
    """
    try:
        doc = json.loads(body)
    except ValueError:
        try:
            doc = next(iter(yaml.load_all(body, Loader=_ApplyLoader)), None)
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f"line {mark.line + 1}: " if mark is not None else ""
            problem = getattr(e, "problem", None) or str(e)
            raise errors.bad_request(f"error decoding YAML: error converting YAML to JSON: "
                                     f"yaml: {where}{problem}") from None
    try:
        doc = _jsonish(doc)
    except ValueError as e:
        raise errors.bad_request(f"error decoding YAML: error converting YAML to JSON: {e}") \
            from None
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        got = next(name for types, name in _GO_JSON_TYPE if isinstance(doc, types))
        raise errors.bad_request(
            "error decoding YAML: error unmarshaling JSON: while decoding JSON: json: cannot "
            f"unmarshal {got} into Go value of type map[string]interface {{}}")
    return doc
