"""How lists and maps of the served kinds merge: the patch metadata of k8s.io/api, as data.

Strategic merge patch reads `patchStrategy`/`patchMergeKey` (the Go struct tags); server-side
apply reads `x-kubernetes-list-type`, `x-kubernetes-list-map-keys` and `x-kubernetes-map-type`.
Both come from the same place in Kubernetes (k8s.io/api release-1.32 types.go), so they live in
one table here.

Paths are tuples of JSON field names from the object root; a list element is written "*", e.g.
("spec", "template", "spec", "containers", "*", "ports"). A list not in the table is atomic
(replaced whole) for both SMP and SSA, as Kubernetes does for lists without tags; a map not in
the table is granular (merged key by key), except those listed in ATOMIC_MAPS.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ListMeta:
    # Strategic merge patch: merge list items by `smp_key` (None: primitive list merged as a
    # set when smp_merge is True, else replaced). `retain_keys` adds the retainKeys strategy.
    smp_merge: bool
    smp_key: str | None
    # Server-side apply: "map" (keys below), "set" or "atomic".
    list_type: str
    map_keys: tuple[str, ...] = ()
    retain_keys: bool = False


def _m(key: str, *map_keys: str, retain: bool = False) -> ListMeta:
    return ListMeta(True, key, "map", map_keys or (key,), retain)


SET = ListMeta(True, None, "set")
ATOMIC = ListMeta(False, None, "atomic")
# Listed with patchStrategy merge for SMP but atomic for SSA (node addresses in 1.32).
MERGE_BUT_ATOMIC_FOR_APPLY = lambda key: ListMeta(True, key, "atomic")  # noqa: E731

_CONTAINER = {
    ("ports",): _m("containerPort", "containerPort", "protocol"),
    ("env",): _m("name"),
    ("envFrom",): ATOMIC,
    ("volumeMounts",): _m("mountPath"),
    ("volumeDevices",): _m("devicePath"),
    ("resizePolicy",): ATOMIC,
    ("command",): ATOMIC,
    ("args",): ATOMIC,
}

_POD_SPEC: dict[tuple[str, ...], ListMeta] = {
    ("volumes",): _m("name", retain=True),
    ("imagePullSecrets",): _m("name"),
    ("hostAliases",): _m("ip"),
    ("topologySpreadConstraints",): _m("topologyKey", "topologyKey", "whenUnsatisfiable"),
    ("schedulingGates",): _m("name"),
    ("resourceClaims",): _m("name", retain=True),
    ("tolerations",): ATOMIC,
    ("readinessGates",): ATOMIC,
}
for _c in ("containers", "initContainers", "ephemeralContainers"):
    _POD_SPEC[(_c,)] = _m("name")
    for _p, _meta in _CONTAINER.items():
        _POD_SPEC[(_c, "*") + _p] = _meta

_METADATA = {
    ("metadata", "finalizers"): SET,
    ("metadata", "ownerReferences"): _m("uid"),
    ("metadata", "managedFields"): ATOMIC,
}

_CONDITIONS = {("status", "conditions"): _m("type")}


def _under(prefix: tuple[str, ...], table: dict) -> dict:
    return {prefix + k: v for k, v in table.items()}


_POD_TEMPLATE = {**_under(("spec", "template", "spec"), _POD_SPEC),
                 **_under(("spec", "template"), _METADATA)}

LISTS: dict[str, dict[tuple[str, ...], ListMeta]] = {
    "Pod": {**_METADATA, **_under(("spec",), _POD_SPEC), **_CONDITIONS,
            ("status", "podIPs"): _m("ip"), ("status", "hostIPs"): _m("ip")},
    "Service": {**_METADATA, ("spec", "ports"): _m("port", "port", "protocol"),
                **_CONDITIONS},
    "Node": {**_METADATA, ("spec", "podCIDRs"): SET, **_CONDITIONS,
             ("status", "addresses"): MERGE_BUT_ATOMIC_FOR_APPLY("type")},
    "Namespace": {**_METADATA, **_CONDITIONS},
    "Deployment": {**_METADATA, **_POD_TEMPLATE, **_CONDITIONS},
    "ReplicaSet": {**_METADATA, **_POD_TEMPLATE, **_CONDITIONS},
    "EndpointSlice": {**_METADATA},
    "Endpoints": {**_METADATA},
    "Event": {**_METADATA},
    "ConfigMap": {**_METADATA},
    "Lease": {**_METADATA},
}

# Maps that are replaced whole (x-kubernetes-map-type: atomic / +structType=atomic).
_LABEL_SELECTOR = ("matchLabels", "matchExpressions")
ATOMIC_MAPS: dict[str, set[tuple[str, ...]]] = {
    "Service": {("spec", "selector")},
    "Deployment": {("spec", "selector")},
    "ReplicaSet": {("spec", "selector")},
}

# Structs patched with the retainKeys strategy (fields absent from the patch are cleared).
RETAIN_KEYS: dict[str, set[tuple[str, ...]]] = {
    "Deployment": {("spec", "strategy")},
}


def list_meta(kind: str, path: tuple[str, ...]) -> ListMeta:
    """Metadata of the list at `path` in an object of `kind` (ATOMIC when not listed)."""
    return LISTS.get(kind, {}).get(tuple(path), ATOMIC)


def is_atomic_map(kind: str, path: tuple[str, ...]) -> bool:
    return tuple(path) in ATOMIC_MAPS.get(kind, set())


def retains_keys(kind: str, path: tuple[str, ...]) -> bool:
    return tuple(path) in RETAIN_KEYS.get(kind, set())
