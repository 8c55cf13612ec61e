"""Discovery documents, built from the resource table (pure).

Two forms, as kube-apiserver serves them:
- legacy: /api (APIVersions), /apis (APIGroupList), /api/v1 and /apis/G/V (APIResourceList);
- aggregated (KEP-3352): /api and /apis answer an APIGroupDiscoveryList when the client asks
  for `application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList`, and then
  client-go makes no per-group-version requests.
"""

from __future__ import annotations

import hashlib

from svcnet.api.resources import Resource, group_versions, resources_in

AGGREGATED_V2 = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
AGGREGATED_V2BETA1 = "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList"


def wants_aggregated(accept: str) -> str | None:
    """The aggregated media type the Accept header asks for first, if any."""
    for part in accept.split(","):
        params = {}
        for p in part.split(";")[1:]:
            if "=" in p:
                k, v = p.strip().split("=", 1)
                params[k] = v
        if params.get("g") == "apidiscovery.k8s.io" and params.get("as") == "APIGroupDiscoveryList":
            if params.get("v") == "v2":
                return AGGREGATED_V2
            if params.get("v") == "v2beta1":
                return AGGREGATED_V2BETA1
    return None


def _storage_hash(r: Resource) -> str:
    return hashlib.sha256(f"{r.group}/{r.version}/{r.kind}".encode()).digest()[:8].hex()


def api_versions(server_address: str) -> dict:
    return {"kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}]}


def _groups() -> list[str]:
    return [g for g, _ in group_versions() if g]


def api_group(group: str) -> dict:
    versions = [{"groupVersion": f"{group}/{v}", "version": v}
                for g, v in group_versions() if g == group]
    return {"kind": "APIGroup", "apiVersion": "v1", "name": group, "versions": versions,
            "preferredVersion": versions[0]}


def api_group_list() -> dict:
    groups = []
    for g in dict.fromkeys(_groups()):
        d = api_group(g)
        d.pop("kind")
        d.pop("apiVersion")
        groups.append(d)
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


def api_resource_list(group: str, version: str) -> dict | None:
    rs = resources_in(group, version)
    if not rs:
        return None
    out = []
    for r in rs:
        entry = {"name": r.plural, "singularName": r.singular, "namespaced": r.namespaced,
                 "kind": r.kind, "verbs": list(r.verbs)}
        if r.short_names:
            entry["shortNames"] = list(r.short_names)
        if r.categories:
            entry["categories"] = list(r.categories)
        entry["storageVersionHash"] = _storage_hash(r)
        out.append(entry)
        for s in r.subresources:
            sub = {"name": f"{r.plural}/{s.name}", "singularName": r.singular,
                   "namespaced": r.namespaced, "kind": s.kind or r.kind, "verbs": list(s.verbs)}
            if s.group is not None:
                sub["group"], sub["version"] = s.group, s.version
            out.append(sub)
    gv = f"{group}/{version}" if group else version
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": out}


def _aggregated_resource(r: Resource) -> dict:
    entry = {
        "resource": r.plural,
        "responseKind": {"group": r.group, "version": r.version, "kind": r.kind},
        "scope": "Namespaced" if r.namespaced else "Cluster",
        "singularResource": r.singular,
        "verbs": list(r.verbs),
    }
    if r.short_names:
        entry["shortNames"] = list(r.short_names)
    if r.categories:
        entry["categories"] = list(r.categories)
    subs = []
    for s in r.subresources:
        subs.append({"subresource": s.name,
                     "responseKind": {"group": s.group if s.group is not None else r.group,
                                      "version": s.version or r.version,
                                      "kind": s.kind or r.kind},
                     "verbs": list(s.verbs)})
    if subs:
        entry["subresources"] = subs
    return entry


def aggregated(core: bool, media_type: str) -> dict:
    """The APIGroupDiscoveryList for /api (core=True) or /apis."""
    items = []
    groups = [""] if core else list(dict.fromkeys(_groups()))
    for g in groups:
        versions = []
        for gg, v in group_versions():
            if gg != g:
                continue
            versions.append({"version": v,
                             "resources": [_aggregated_resource(r) for r in resources_in(g, v)],
                             "freshness": "Current"})
        items.append({"metadata": {"name": g, "creationTimestamp": None}, "versions": versions})
    version = "v2" if media_type == AGGREGATED_V2 else "v2beta1"
    return {"kind": "APIGroupDiscoveryList", "apiVersion": f"apidiscovery.k8s.io/{version}",
            "metadata": {}, "items": items}
