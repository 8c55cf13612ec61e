"""Per-kind strategies: what the registry does to an object around a write.

A strategy is stateless and has fixed hooks, as in kube-apiserver's pkg/registry:
  prepare_for_create(obj)            wipe status, set generation, defaulting
  prepare_for_update(new, old)       keep status (main resource), bump generation on spec change
  prepare_for_status_update(new, old) keep everything but status
  validate(obj) / validate_update(new, old) -> [FieldError]
Kinds without a `status` subresource (ConfigMap, Event, EndpointSlice, Lease, Endpoints) are
written whole. Deeper, kind-specific rules (Services, Pods, ...) plug in through `KIND_RULES`.
"""

from __future__ import annotations

from typing import Callable

from svcnet.api.errors import FieldError
from svcnet.api.resources import Resource
from svcnet.jsonutil import clone
from svcnet.registry.validation import validate_object_meta, validate_object_meta_update

# Name rule per kind (ValidateObjectMeta's nameFn in pkg/apis/*/validation).
NAME_RULE = {
    "Namespace": "dns1123-label",
    "Service": "dns1035-label",
}
# Kinds whose metadata.generation tracks spec changes.
GENERATION_KINDS = {"Deployment", "ReplicaSet", "EndpointSlice"}
# What a created object's status starts as, for kinds with a status subresource.
INITIAL_STATUS: dict[str, Callable[[dict], dict]] = {
    "Namespace": lambda o: {"phase": "Active"},
    "Pod": lambda o: {"phase": "Pending", "qosClass": "BestEffort"},
    "Service": lambda o: {"loadBalancer": {}},
    "Node": lambda o: o.get("status") or {},  # nodes register with their status
    "Deployment": lambda o: {},
    "ReplicaSet": lambda o: {"replicas": 0},
}

Validator = Callable[[dict], list[FieldError]]
UpdateValidator = Callable[[dict, dict], list[FieldError]]
Defaulter = Callable[[dict], None]


class KindRules:
    """Kind-specific defaulting and validation; subsystems register richer ones."""

    def __init__(self, default: Defaulter | None = None, validate: Validator | None = None,
                 validate_update: UpdateValidator | None = None,
                 prepare_update: Callable[[dict, dict], None] | None = None,
                 default_status: Defaulter | None = None):
        self.default = default or (lambda o: None)
        self.validate = validate or (lambda o: [])
        self.validate_update = validate_update or (lambda n, o: [])
        # Runs on a main-resource update before defaulting (e.g. carry allocated values over).
        self.prepare_update = prepare_update or (lambda n, o: None)
        # Defaulting of a /status write (decoding defaults the whole body; only status stays).
        self.default_status = default_status or (lambda o: None)


def _default_namespace(obj: dict) -> None:
    labels = obj["metadata"].setdefault("labels", {})
    labels["kubernetes.io/metadata.name"] = obj["metadata"]["name"]
    obj.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])


def _default_pod(obj: dict) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("securityContext", {})
    spec.setdefault("enableServiceLinks", True)
    for c in spec.get("containers") or []:
        if isinstance(c, dict):
            c.setdefault("terminationMessagePath", "/dev/termination-log")
            c.setdefault("terminationMessagePolicy", "File")
            c.setdefault("imagePullPolicy", "IfNotPresent")
            c.setdefault("resources", {})
            for p in c.get("ports") or []:
                if isinstance(p, dict):
                    p.setdefault("protocol", "TCP")


KIND_RULES: dict[str, KindRules] = {
    "Namespace": KindRules(default=_default_namespace),
    "Pod": KindRules(default=_default_pod),
}


def register(kind: str, rules: KindRules) -> None:
    KIND_RULES[kind] = rules


def rules_for(kind: str) -> KindRules:
    return KIND_RULES.get(kind) or KindRules()


def has_status(res: Resource) -> bool:
    return res.sub("status") is not None


def prepare_for_create(res: Resource, obj: dict) -> None:
    if has_status(res):
        obj["status"] = INITIAL_STATUS.get(res.kind, lambda o: {})(obj)
    meta = obj["metadata"]
    if res.kind in GENERATION_KINDS:
        meta["generation"] = 1
    else:
        meta.pop("generation", None)
    rules_for(res.kind).default(obj)


def _spec_of(obj: dict) -> dict:
    return {k: v for k, v in obj.items() if k not in ("metadata", "status", "kind", "apiVersion")}


def prepare_for_update(res: Resource, new: dict, old: dict) -> None:
    """A main-resource write: status is kept from `old`; generation bumps on a spec change."""
    if has_status(res):
        if "status" in old:
            new["status"] = clone(old["status"])
        else:
            new.pop("status", None)
    meta, old_meta = new["metadata"], old["metadata"]
    if res.kind in GENERATION_KINDS:
        gen = old_meta.get("generation", 1)
        meta["generation"] = gen + 1 if _spec_of(new) != _spec_of(old) else gen
    else:
        meta.pop("generation", None)
    rules = rules_for(res.kind)
    rules.prepare_update(new, old)
    rules.default(new)


# Metadata a status write may not change (ResetObjectMetaForStatus).
_STATUS_META_RESET = ("labels", "annotations", "finalizers", "ownerReferences", "generation",
                      "deletionTimestamp", "deletionGracePeriodSeconds")


def prepare_for_status_update(res: Resource, new: dict, old: dict) -> None:
    """A /status write changes status only."""
    status = new.get("status")
    meta = new["metadata"]
    fresh = clone(old)
    for f in _STATUS_META_RESET:
        fresh["metadata"].pop(f, None)
        if f in old["metadata"]:
            fresh["metadata"][f] = clone(old["metadata"][f])
    if "managedFields" in meta:
        fresh["metadata"]["managedFields"] = meta["managedFields"]
    if status is None:
        fresh.pop("status", None)
    else:
        fresh["status"] = status
    new.clear()
    new.update(fresh)
    rules_for(res.kind).default_status(new)


def validate(res: Resource, obj: dict) -> list[FieldError]:
    errs = validate_object_meta(obj["metadata"], res.namespaced,
                                NAME_RULE.get(res.kind, "dns1123-subdomain"))
    return errs + rules_for(res.kind).validate(obj)


def validate_update(res: Resource, new: dict, old: dict) -> list[FieldError]:
    errs = validate_object_meta(new["metadata"], res.namespaced,
                                NAME_RULE.get(res.kind, "dns1123-subdomain"))
    errs += validate_object_meta_update(new["metadata"], old["metadata"])
    rules = rules_for(res.kind)
    return errs + rules.validate(new) + rules.validate_update(new, old)
