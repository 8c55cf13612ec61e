"""The resources svcnet serves, as data.

One `Resource` per served REST resource, with what discovery advertises about it (group/version,
kind, singular and short names, scope, verbs, subresources, categories). Discovery, routing,
OpenAPI and printing all read this table; adding a kind starts here.
"""

from __future__ import annotations

from dataclasses import dataclass

ALL_VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]
NO_COLLECTION_DELETE = ["create", "delete", "get", "list", "patch", "update", "watch"]


@dataclass(frozen=True)
class Subresource:
    name: str
    kind: str
    verbs: tuple[str, ...]
    group: str | None = None  # None: same group/version as the parent
    version: str | None = None


@dataclass(frozen=True)
class Resource:
    group: str
    version: str
    kind: str
    plural: str
    singular: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    verbs: tuple[str, ...] = tuple(ALL_VERBS)
    subresources: tuple[Subresource, ...] = ()
    categories: tuple[str, ...] = ()

    @property
    def group_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def api_version(self) -> str:
        return self.group_version

    @property
    def list_kind(self) -> str:
        return self.kind + "List"

    @property
    def qualified_kind(self) -> str:
        """`Service`, `Deployment.apps`: the kind as Invalid messages name it."""
        return f"{self.kind}.{self.group}" if self.group else self.kind

    def sub(self, name: str) -> Subresource | None:
        for s in self.subresources:
            if s.name == name:
                return s
        return None


STATUS = Subresource("status", "", ("get", "patch", "update"))
SCALE = Subresource("scale", "Scale", ("get", "patch", "update"), "autoscaling", "v1")

RESOURCES: tuple[Resource, ...] = (
    Resource("", "v1", "Namespace", "namespaces", "namespace", False, ("ns",),
             tuple(NO_COLLECTION_DELETE), (Subresource("status", "Namespace", ("get", "patch", "update")),)),
    Resource("", "v1", "Pod", "pods", "pod", True, ("po",), tuple(ALL_VERBS),
             (Subresource("status", "Pod", ("get", "patch", "update")),
              Subresource("log", "Pod", ("get",)),
              Subresource("exec", "PodExecOptions", ("create", "get")),
              Subresource("binding", "Binding", ("create",))), ("all",)),
    Resource("", "v1", "Service", "services", "service", True, ("svc",), tuple(ALL_VERBS),
             (Subresource("status", "Service", ("get", "patch", "update")),), ("all",)),
    Resource("", "v1", "Endpoints", "endpoints", "endpoints", True, ("ep",)),
    Resource("", "v1", "Node", "nodes", "node", False, ("no",), tuple(ALL_VERBS),
             (Subresource("status", "Node", ("get", "patch", "update")),)),
    Resource("", "v1", "Event", "events", "event", True, ("ev",)),
    Resource("", "v1", "ConfigMap", "configmaps", "configmap", True, ("cm",)),
    Resource("discovery.k8s.io", "v1", "EndpointSlice", "endpointslices", "endpointslice", True),
    Resource("apps", "v1", "Deployment", "deployments", "deployment", True, ("deploy",), tuple(ALL_VERBS),
             (Subresource("status", "Deployment", ("get", "patch", "update")), SCALE), ("all",)),
    Resource("apps", "v1", "ReplicaSet", "replicasets", "replicaset", True, ("rs",), tuple(ALL_VERBS),
             (Subresource("status", "ReplicaSet", ("get", "patch", "update")), SCALE), ("all",)),
    Resource("coordination.k8s.io", "v1", "Lease", "leases", "lease", True),
)

BY_KIND: dict[str, Resource] = {r.kind: r for r in RESOURCES}
BY_GROUP_PLURAL: dict[tuple[str, str], Resource] = {(r.group, r.plural): r for r in RESOURCES}


def group_versions() -> list[tuple[str, str]]:
    """(group, version) pairs in discovery order, the core group first."""
    seen: list[tuple[str, str]] = []
    for r in RESOURCES:
        gv = (r.group, r.version)
        if gv not in seen:
            seen.append(gv)
    return seen


def resources_in(group: str, version: str) -> list[Resource]:
    return [r for r in RESOURCES if r.group == group and r.version == version]


def lookup(group: str, version: str, plural: str) -> Resource | None:
    r = BY_GROUP_PLURAL.get((group, plural))
    if r is None or r.version != version:
        return None
    return r
