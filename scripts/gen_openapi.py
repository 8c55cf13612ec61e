"""Generate svcnet/api/data/openapi-schemas.json: the OpenAPI v3 schemas of the served kinds.

Theory of operation
-------------------
The official Python client ships one pydantic model per Kubernetes definition, generated from
the apiserver's own OpenAPI document: `openapi_types` (attribute -> type string such as "int",
"List[V1ServicePort]", "Dict[str, str]"), `attribute_map` (attribute -> JSON name), the field
descriptions and whether a field is required. This script walks the closure of the models that
the served kinds reach (see ROOTS) and turns each into the schema kube-apiserver serves for it,
under its real definition name (`io.k8s.api.core.v1.ServicePort`,
`io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta`, ...).

The Python models lose a few facts that the Go types carry; the tables below put them back:
  - INT64: integer fields that are int64 in Go (everything else is int32);
  - MICRO_TIME / QUANTITY / OBJECT_FIELDS: fields whose Python type ("datetime", "str",
    "object") stands for MicroTime, Quantity, IntOrString, FieldsV1 or RawExtension;
  - META_TYPES: which models live in k8s.io/apimachinery meta/v1 rather than an API group;
  - DEFAULTS: the `+default` markers of the served types.
List and map merge semantics (x-kubernetes-list-type, -list-map-keys, -patch-strategy,
-patch-merge-key, -map-type) come from svcnet.api.patchmeta, the one table the server's
strategic merge patch and server-side apply also read, so kubectl's client-side apply computes
its patches with exactly the semantics the server applies.

Properties that reference another definition use `allOf: [{$ref}]` with the description beside
it, as kube-apiserver's v3 documents do. Output: one definition per line, keys sorted, so that a
regeneration diffs readably. Run from the repository root:

    .venv/bin/python scripts/gen_openapi.py
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import kubernetes.client.models as models

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from svcnet.api import patchmeta  # noqa: E402
from svcnet.api.resources import RESOURCES  # noqa: E402

OUT = ROOT / "svcnet" / "api" / "data" / "openapi-schemas.json"

META = "io.k8s.apimachinery.pkg.apis.meta.v1."
TIME = META + "Time"
MICRO = META + "MicroTime"
FIELDS_V1 = META + "FieldsV1"
QUANTITY_REF = "io.k8s.apimachinery.pkg.api.resource.Quantity"
INT_OR_STRING = "io.k8s.apimachinery.pkg.util.intstr.IntOrString"
RAW_EXTENSION = "io.k8s.apimachinery.pkg.runtime.RawExtension"

# Models of k8s.io/apimachinery/pkg/apis/meta/v1 (by name without the V1 prefix).
META_TYPES = {
    "ObjectMeta", "ListMeta", "LabelSelector", "LabelSelectorRequirement", "ManagedFieldsEntry",
    "OwnerReference", "Status", "StatusDetails", "StatusCause", "DeleteOptions", "Preconditions",
    "Condition", "WatchEvent",
}

# core/v1 models that only kinds of other groups reach.
CORE_TYPES = {"PodTemplateSpec"}

# (definition short name, JSON field) pairs that are int64 in Go; other integers are int32.
INT64 = {
    ("ObjectMeta", "generation"), ("ObjectMeta", "deletionGracePeriodSeconds"),
    ("ListMeta", "remainingItemCount"), ("DeleteOptions", "gracePeriodSeconds"),
    ("Condition", "observedGeneration"), ("PodCondition", "observedGeneration"),
    ("PodStatus", "observedGeneration"), ("DeploymentStatus", "observedGeneration"),
    ("ReplicaSetStatus", "observedGeneration"), ("PodSpec", "activeDeadlineSeconds"),
    ("PodSpec", "terminationGracePeriodSeconds"), ("Probe", "terminationGracePeriodSeconds"),
    ("PodSecurityContext", "runAsUser"), ("PodSecurityContext", "runAsGroup"),
    ("PodSecurityContext", "fsGroup"), ("PodSecurityContext", "supplementalGroups"),
    ("SecurityContext", "runAsUser"), ("SecurityContext", "runAsGroup"),
    ("LinuxContainerUser", "uid"), ("LinuxContainerUser", "gid"),
    ("LinuxContainerUser", "supplementalGroups"), ("Toleration", "tolerationSeconds"),
    ("SleepAction", "seconds"), ("ServiceAccountTokenProjection", "expirationSeconds"),
    ("ContainerImage", "sizeBytes"), ("NodeSwapStatus", "capacity"),
    ("ConfigMapVolumeSource", "defaultUser"), ("SecretVolumeSource", "defaultUser"),
    ("DownwardAPIVolumeSource", "defaultUser"), ("ProjectedVolumeSource", "defaultUser"),
    ("KeyToPath", "user"), ("DownwardAPIVolumeFile", "user"),
    ("ServiceAccountTokenProjection", "user"), ("ClusterTrustBundleProjection", "user"),
    ("PodCertificateProjection", "user"),
}

# "datetime" fields that are metav1.MicroTime rather than metav1.Time.
MICRO_TIME = {("Event", "eventTime"), ("EventSeries", "lastObservedTime"),
              ("LeaseSpec", "acquireTime"), ("LeaseSpec", "renewTime")}

# "str" fields (or map values) that are resource.Quantity.
QUANTITY = {
    ("ResourceRequirements", "limits"), ("ResourceRequirements", "requests"),
    ("VolumeResourceRequirements", "limits"), ("VolumeResourceRequirements", "requests"),
    ("ContainerStatus", "allocatedResources"), ("PodStatus", "allocatedResources"),
    ("NodeStatus", "capacity"), ("NodeStatus", "allocatable"), ("PodSpec", "overhead"),
    ("EmptyDirVolumeSource", "sizeLimit"), ("ResourceFieldSelector", "divisor"),
    ("NodeAllocatableMappedResources", "quantity"),
}

# "object" fields: which apimachinery type they are.
OBJECT_FIELDS = {
    ("ServicePort", "targetPort"): INT_OR_STRING, ("HTTPGetAction", "port"): INT_OR_STRING,
    ("TCPSocketAction", "port"): INT_OR_STRING, ("RollingUpdateDeployment", "maxSurge"): INT_OR_STRING,
    ("RollingUpdateDeployment", "maxUnavailable"): INT_OR_STRING,
    ("ManagedFieldsEntry", "fieldsV1"): FIELDS_V1, ("WatchEvent", "object"): RAW_EXTENSION,
}

# The Python models drop the descriptions of fields that reference another definition;
# kubectl explain prints them, so the visible ones are restored here (object kinds' metadata,
# spec and status get the API conventions' wording in missing_description()).
REF_DESCRIPTIONS = {
    ("ServiceSpec", "sessionAffinityConfig"): "sessionAffinityConfig contains the "
        "configurations of session affinity.",
    ("SessionAffinityConfig", "clientIP"): "clientIP contains the configurations of Client IP "
        "based session affinity.",
    ("ServiceStatus", "loadBalancer"): "LoadBalancer contains the current status of the "
        "load-balancer, if one is present.",
    ("LoadBalancerIngress", "ports"): "Ports is a list of records of service ports.",
    ("EndpointAddress", "targetRef"): "Reference to object providing the endpoint.",
    ("Endpoint", "conditions"): "conditions contains information about the current status of "
        "the endpoint.",
    ("Endpoint", "hints"): "hints contains information associated with how an endpoint should "
        "be consumed.",
    ("Endpoint", "targetRef"): "targetRef is a reference to a Kubernetes object that represents "
        "this endpoint.",
    ("DeploymentSpec", "selector"): "Label selector for pods. Existing ReplicaSets whose pods "
        "are selected by this will be the ones affected by this deployment. It must match the "
        "pod template's labels.",
    ("DeploymentSpec", "template"): "Template describes the pods that will be created. The "
        "only allowed template.spec.restartPolicy value is \"Always\".",
    ("DeploymentSpec", "strategy"): "The deployment strategy to use to replace existing pods "
        "with new ones.",
    ("DeploymentStrategy", "rollingUpdate"): "Rolling update config params. Present only if "
        "DeploymentStrategyType = RollingUpdate.",
    ("ReplicaSetSpec", "selector"): "Selector is a label query over pods that should match the "
        "replica count. Label keys and values that must match in order to be controlled by "
        "this replica set. It must match the pod template's labels.",
    ("ReplicaSetSpec", "template"): "Template is the object that describes the pod that will "
        "be created if insufficient replicas are detected.",
    ("PodTemplateSpec", "spec"): "Specification of the desired behavior of the pod.",
    ("Container", "resources"): "Compute Resources required by this container. Cannot be "
        "updated.",
    ("Container", "livenessProbe"): "Periodic probe of container liveness. Container will be "
        "restarted if the probe fails. Cannot be updated.",
    ("Container", "readinessProbe"): "Periodic probe of container service readiness. Container "
        "will be removed from service endpoints if the probe fails. Cannot be updated.",
    ("Container", "startupProbe"): "StartupProbe indicates that the Pod has successfully "
        "initialized. If specified, no other probes are executed until this completes "
        "successfully. Cannot be updated.",
    ("Container", "securityContext"): "SecurityContext defines the security options the "
        "container should be run with.",
    ("Container", "lifecycle"): "Actions that the management system should take in response "
        "to container lifecycle events. Cannot be updated.",
    ("EnvVar", "valueFrom"): "Source for the environment variable's value. Cannot be used if "
        "value is not empty.",
    ("PodSpec", "affinity"): "If specified, the pod's scheduling constraints",
    ("PodSpec", "securityContext"): "SecurityContext holds pod-level security attributes and "
        "common container settings.",
    ("PodSpec", "dnsConfig"): "Specifies the DNS parameters of a pod. Parameters specified here "
        "will be merged to the generated DNS configuration based on DNSPolicy.",
    ("Probe", "httpGet"): "HTTPGet specifies an HTTP GET request to perform.",
    ("Probe", "tcpSocket"): "TCPSocket specifies a connection to a TCP port.",
    ("Probe", "exec"): "Exec specifies a command to execute in the container.",
    ("Probe", "grpc"): "GRPC specifies a GRPC HealthCheckRequest.",
    ("LeaseSpec", "acquireTime"): "acquireTime is a time when the current lease was acquired.",
    ("LeaseSpec", "renewTime"): "renewTime is a time when the current holder of a lease has "
        "last updated the lease.",
    ("ObjectMeta", "creationTimestamp"): "CreationTimestamp is a timestamp representing the "
        "server time when this object was created. Populated by the system. Read-only. Null "
        "for lists.",
    ("ObjectMeta", "deletionTimestamp"): "DeletionTimestamp is RFC 3339 date and time at which "
        "this resource will be deleted. Set by the server when a graceful deletion is "
        "requested. Read-only.",
    ("Status", "details"): "Extended data associated with the reason.  Each reason may define "
        "its own extended details.",
    ("WatchEvent", "object"): "Object is: * If Type is Added or Modified: the new state of the "
        "object. * If Type is Deleted: the state of the object immediately before deletion. * "
        "If Type is Error: *Status is recommended.",
}

# +default markers of the served types.
DEFAULTS = {("ServicePort", "protocol"): "TCP", ("ContainerPort", "protocol"): "TCP"}

# Definitions that the Python client has no model for.
SCALARS = {
    TIME: {"description": "Time is a wrapper around time.Time which supports correct marshaling "
                          "to YAML and JSON.  Wrappers are provided for many of the factory "
                          "methods that the time package offers.",
           "format": "date-time", "type": "string"},
    MICRO: {"description": "MicroTime is version of Time with microsecond level precision.",
            "format": "date-time", "type": "string"},
    INT_OR_STRING: {"description": "IntOrString is a type that can hold an int32 or a string.  "
                                   "When used in JSON or YAML marshalling and unmarshalling, it "
                                   "produces or consumes the inner type.  This allows you to "
                                   "have, for example, a JSON field that can accept a name or "
                                   "number.",
                    "format": "int-or-string",
                    "oneOf": [{"type": "integer"}, {"type": "string"}]},
    QUANTITY_REF: {"description": "Quantity is a fixed-point representation of a number: a "
                                  "decimal or integer with an optional SI (m, k, M, G, T, P, E), "
                                  "binary (Ki, Mi, Gi, Ti, Pi, Ei) or exponent (e3) suffix, "
                                  "serialized as a string such as \"100m\" or \"1Gi\".",
                   "oneOf": [{"type": "string"}, {"type": "number"}]},
    FIELDS_V1: {"description": "FieldsV1 stores a set of fields in a data structure like a "
                               "Trie, in JSON format. The exact format is defined in "
                               "sigs.k8s.io/structured-merge-diff",
                "type": "object"},
    RAW_EXTENSION: {"description": "RawExtension is used to hold extensions in external "
                                   "versions: an embedded object, kept as the JSON it was "
                                   "sent as.",
                    "type": "object"},
    META + "Patch": {"description": "Patch is provided to give a concrete name and type to the "
                                    "Kubernetes PATCH request body.",
                     "type": "object"},
}

PRIMITIVES = {"str": {"type": "string"}, "bool": {"type": "boolean"},
              "float": {"type": "number", "format": "double"},
              "bytes": {"type": "string", "format": "byte"}}


def model_name(kind: str) -> str:
    """The Python model of a served kind (the core Event is prefixed to tell it from events/v1)."""
    for name in ("V1" + kind, "CoreV1" + kind):
        if hasattr(models, name):
            return name
    raise LookupError(kind)


def short(name: str) -> str:
    """`CoreV1EndpointPort` -> `EndpointPort`."""
    return re.sub(r"^[A-Z][a-z]*V1(?=[A-Z])|^V1(?=[A-Z])", "", name)


def referenced(type_str: str) -> list[str]:
    return [t for t in re.findall(r"[A-Z]\w+", type_str) if t not in ("List", "Dict")]


def closure(roots: list[str]) -> list[str]:
    seen: list[str] = []
    stack = list(roots)
    while stack:
        name = stack.pop()
        if name in seen:
            continue
        seen.append(name)
        stack.extend(referenced(" ".join(getattr(models, name).openapi_types.values())))
    return seen


def packages() -> dict[str, str]:
    """Model name -> definition package: a model reachable from a core kind is core/v1, from
    only one group's kinds that group's, and the meta/v1 models are apimachinery's."""
    by_group: dict[str, set[str]] = {}
    for r in RESOURCES:
        pkg = r.group.split(".")[0] if r.group else "core"
        by_group.setdefault(pkg, set()).update(closure([model_name(r.kind), model_name(r.list_kind)]))
    by_group.setdefault("autoscaling", set()).update(closure(["V1Scale"]))
    out: dict[str, str] = {}
    for name in closure(ROOTS):
        if short(name) in META_TYPES:
            out[name] = META + short(name)
            continue
        groups = sorted(g for g, names in by_group.items() if name in names)
        pkg = "core" if "core" in groups or short(name) in CORE_TYPES else groups[0]
        out[name] = f"io.k8s.api.{pkg}.v1.{short(name)}"
    return out


def ref(definition: str) -> dict:
    return {"$ref": "#/components/schemas/" + definition}


def type_schema(owner: str, field: str, type_str: str, names: dict[str, str]) -> dict:
    """The schema of a value of Python type `type_str` held by field `owner.field`."""
    key = (owner, field)
    if type_str.startswith("List["):
        item = type_schema(owner, field, type_str[5:-1], names)
        if "$ref" in item:
            item = {"allOf": [item], "default": {}}
        elif item.get("type") == "string" and "format" not in item:
            item = {**item, "default": ""}
        return {"type": "array", "items": item}
    if type_str.startswith("Dict[str, "):
        value = type_schema(owner, field, type_str[10:-1], names)
        if value.get("type") == "string" and "format" not in value:
            value = {**value, "default": ""}
        return {"type": "object", "additionalProperties": value}
    if type_str == "int":
        return {"type": "integer", "format": "int64" if key in INT64 else "int32"}
    if type_str == "datetime":
        return ref(MICRO if key in MICRO_TIME else TIME)
    if type_str == "object":
        return ref(OBJECT_FIELDS[key])
    if type_str == "str" and key in QUANTITY:
        return ref(QUANTITY_REF)
    if type_str in PRIMITIVES:
        return dict(PRIMITIVES[type_str])
    return ref(names[type_str])


def class_description(cls) -> str:
    doc = (cls.__doc__ or "").split("Attributes:")[0]
    return " ".join(doc.split())


def missing_description(cls, owner: str, field: str) -> str:
    if (owner, field) in REF_DESCRIPTIONS:
        return REF_DESCRIPTIONS[(owner, field)]
    conventions = "https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md"
    if field == "metadata":
        if "items" in cls.attribute_map.values() or owner == "Status":
            return f"Standard list metadata. More info: {conventions}#types-kinds"
        return f"Standard object's metadata. More info: {conventions}#metadata"
    if field == "spec":
        return (f"Spec defines the desired behavior of the {owner}. More info: "
                f"{conventions}#spec-and-status")
    if field == "status":
        return (f"Status is the most recently observed status of the {owner}. Populated by the "
                f"system. Read-only. More info: {conventions}#spec-and-status")
    return ""


def zero(schema: dict):
    return {"string": "", "integer": 0, "boolean": False}.get(schema.get("type"))


def definition(name: str, names: dict[str, str]) -> dict:
    cls = getattr(models, name)
    owner = short(name)
    fields = {f.serialization_alias or n: f for n, f in cls.model_fields.items()}
    props: dict[str, dict] = {}
    required: list[str] = []
    for attr, type_str in cls.openapi_types.items():
        json_name = cls.attribute_map[attr]
        field = fields[json_name]
        schema = type_schema(owner, json_name, type_str, names)
        if "$ref" in schema:
            schema = {"allOf": [schema]}
            if json_name in ("metadata", "spec", "status"):
                schema["default"] = {}
        description = field.description or missing_description(cls, owner, json_name)
        if description:
            schema["description"] = description
        if field.is_required():
            required.append(json_name)
            if zero(schema) is not None:
                schema["default"] = zero(schema)
        if (owner, json_name) in DEFAULTS:
            schema["default"] = DEFAULTS[(owner, json_name)]
        props[json_name] = schema
    out: dict = {"type": "object", "properties": props}
    if description := class_description(cls):
        out["description"] = description
    if required:
        out["required"] = required
    return out


def prop_at(schemas: dict, definition_name: str, path: tuple[str, ...]) -> tuple[str, str]:
    """Walk `path` (JSON names, "*" for a list item) from a definition; return the definition
    and the property name that hold its last step."""
    steps = list(path)
    while True:
        prop = steps.pop(0)
        if not steps:
            return definition_name, prop
        schema = schemas[definition_name]["properties"][prop]
        if steps[0] == "*":
            steps.pop(0)
            schema = schema["items"]
        definition_name = target_of(schema)


def target_of(schema: dict) -> str:
    return schema["allOf"][0]["$ref"].rsplit("/", 1)[1]


def list_extensions(meta: patchmeta.ListMeta) -> dict:
    ext = {"x-kubernetes-list-type": meta.list_type}
    if meta.list_type == "map":
        ext["x-kubernetes-list-map-keys"] = list(meta.map_keys)
    if meta.smp_merge:
        ext["x-kubernetes-patch-strategy"] = "merge,retainKeys" if meta.retain_keys else "merge"
        if meta.smp_key:
            ext["x-kubernetes-patch-merge-key"] = meta.smp_key
    return ext


def add_patch_metadata(schemas: dict, names: dict[str, str]) -> None:
    for kind, lists in patchmeta.LISTS.items():
        for path, meta in lists.items():
            owner, prop = prop_at(schemas, names[model_name(kind)], path)
            schemas[owner]["properties"][prop].update(list_extensions(meta))
    for kind, maps in patchmeta.ATOMIC_MAPS.items():
        for path in maps:
            owner, prop = prop_at(schemas, names[model_name(kind)], path)
            schema = schemas[owner]["properties"][prop]
            if "allOf" in schema:  # a struct: atomic as a whole (+structType=atomic)
                schemas[target_of(schema)]["x-kubernetes-map-type"] = "atomic"
            else:
                schema["x-kubernetes-map-type"] = "atomic"
    for kind, paths in patchmeta.RETAIN_KEYS.items():
        for path in paths:
            owner, prop = prop_at(schemas, names[model_name(kind)], path)
            schemas[owner]["properties"][prop]["x-kubernetes-patch-strategy"] = "retainKeys"


def gvk(group: str, kind: str) -> dict:
    return {"group": group, "kind": kind, "version": "v1"}


def add_gvks(schemas: dict, names: dict[str, str]) -> None:
    groups = sorted({r.group for r in RESOURCES} | {"autoscaling"})
    for r in RESOURCES:
        for kind in (r.kind, r.list_kind):
            schemas[names[model_name(kind)]]["x-kubernetes-group-version-kind"] = [gvk(r.group, kind)]
    schemas[names["V1Scale"]]["x-kubernetes-group-version-kind"] = [gvk("autoscaling", "Scale")]
    schemas[names["V1Status"]]["x-kubernetes-group-version-kind"] = [gvk("", "Status")]
    for kind in ("DeleteOptions", "WatchEvent"):
        schemas[names["V1" + kind]]["x-kubernetes-group-version-kind"] = [gvk(g, kind) for g in groups]


ROOTS = [model_name(k) for r in RESOURCES for k in (r.kind, r.list_kind)] + [
    "V1Scale", "V1Status", "V1DeleteOptions", "V1WatchEvent"]


def generate() -> dict:
    names = packages()
    schemas = {names[n]: definition(n, names) for n in closure(ROOTS)}
    schemas.update(SCALARS)
    add_patch_metadata(schemas, names)
    add_gvks(schemas, names)
    return schemas


def render(schemas: dict) -> str:
    lines = [json.dumps(k) + ":" + json.dumps(schemas[k], sort_keys=True, separators=(",", ":"),
                                              ensure_ascii=False)
             for k in sorted(schemas)]
    return "{\n" + ",\n".join(lines) + "\n}\n"


if __name__ == "__main__":
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(render(generate()), encoding="utf-8")
    print(f"wrote {OUT.relative_to(ROOT)} ({OUT.stat().st_size} bytes)")
