"""Server-side apply and managedFields tracking (svcnet.api.apply)."""

from __future__ import annotations

import copy
import json

import pytest

from svcnet.api import apply
from svcnet.api.errors import APIError

T0 = "2026-01-01T00:00:00Z"
T1 = "2026-01-01T00:05:00Z"
T2 = "2026-01-01T00:10:00Z"
PORT80 = 'k:{"port":80,"protocol":"TCP"}'


def service(**spec) -> dict:
    """The Service a user applies: a selector and one port without a protocol."""
    base = {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}
    base.update(spec)
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
            "spec": base}


def stored(obj: dict) -> dict:
    """What the registry persists: system metadata set, ports defaulted to TCP."""
    out = copy.deepcopy(obj)
    out["metadata"].setdefault("uid", "6f1c7a4e-0000-4000-8000-000000000001")
    out["metadata"].setdefault("resourceVersion", "1")
    out["metadata"].setdefault("creationTimestamp", T0)
    for port in out.get("spec", {}).get("ports", []):
        port.setdefault("protocol", "TCP")
    return out


def entries(obj: dict) -> dict[str, dict]:
    return {e["manager"]: e for e in obj["metadata"].get("managedFields", [])}


def compact(d: dict) -> str:
    return json.dumps(d, separators=(",", ":"))


def conflict_of(call) -> APIError:
    with pytest.raises(APIError) as info:
        call()
    assert info.value.code == 409 and info.value.reason == "Conflict"
    return info.value


# ---- creation ------------------------------------------------------------------------------

def test_apply_creates_the_object_and_owns_exactly_the_applied_fields():
    obj = apply.server_side_apply(None, service(), "kubectl", False, "Service", T0)

    assert obj["spec"] == service()["spec"]
    [entry] = obj["metadata"]["managedFields"]
    assert list(entry) == ["manager", "operation", "apiVersion", "time", "fieldsType", "fieldsV1"]
    assert (entry["manager"], entry["operation"], entry["apiVersion"], entry["time"],
            entry["fieldsType"]) == ("kubectl", "Apply", "v1", T0, "FieldsV1")
    # What kube-apiserver stores for `kubectl apply --server-side` of this Service, byte for byte:
    # name/namespace/apiVersion/kind stripped, the port keyed with its defaulted protocol, the
    # item's own "." written after its fields, the atomic selector a single leaf.
    assert compact(entry["fieldsV1"]) == (
        '{"f:metadata":{"f:labels":{"f:app":{}}},"f:spec":{"f:ports":{"k:{\\"port\\":80,'
        '\\"protocol\\":\\"TCP\\"}":{"f:port":{},"f:targetPort":{},".":{}}},"f:selector":{}}}')


def test_a_create_gives_every_field_to_the_creator_as_kube_apiserver_records_it():
    created = stored(service())
    created["spec"].update(type="ClusterIP", sessionAffinity="None",
                           internalTrafficPolicy="Cluster")
    created["status"] = {"loadBalancer": {}}

    obj = apply.update_managed_fields(None, created, "kubectl-create", "Service", T0)

    [entry] = obj["metadata"]["managedFields"]
    assert (entry["manager"], entry["operation"], entry["apiVersion"], entry["time"]) == (
        "kubectl-create", "Update", "v1", T0)
    # spec exists in an empty Service, so only the maps and lists that appear get ".";
    # status is reset by the strategy and owned by nobody.
    assert compact(entry["fieldsV1"]) == (
        '{"f:metadata":{"f:labels":{"f:app":{},".":{}}},"f:spec":{"f:internalTrafficPolicy":{},'
        '"f:ports":{"k:{\\"port\\":80,\\"protocol\\":\\"TCP\\"}":{"f:port":{},"f:protocol":{},'
        '"f:targetPort":{},".":{}},".":{}},"f:selector":{},"f:sessionAffinity":{},"f:type":{}}}')


def test_a_deployment_create_marks_only_what_its_go_type_lacks():
    deployment = {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "nginx", "namespace": "default", "uid": "u"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "nginx"}},
                 "strategy": {"type": "RollingUpdate",
                              "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
                 "template": {"metadata": {"creationTimestamp": None,
                                           "labels": {"app": "nginx"}},
                              "spec": {"containers": [{"name": "nginx", "image": "nginx"}]}}}}

    fields = entries(apply.update_managed_fields(None, deployment, "kubectl-create",
                                                 "Deployment", T0))["kubectl-create"]
    assert fields["apiVersion"] == "apps/v1"
    spec = fields["fieldsV1"]["f:spec"]
    assert spec["f:strategy"] == {"f:rollingUpdate": {"f:maxSurge": {}, "f:maxUnavailable": {},
                                                      ".": {}}, "f:type": {}}
    assert spec["f:template"] == {
        "f:metadata": {"f:labels": {"f:app": {}, ".": {}}},
        "f:spec": {"f:containers": {'k:{"name":"nginx"}': {
            "f:image": {}, "f:name": {}, "f:resources": {}, ".": {}}}}}
    assert spec["f:selector"] == {}


# ---- re-applying ---------------------------------------------------------------------------

def test_reapplying_without_a_field_removes_it_from_the_object_and_the_entry():
    config = service(ports=[{"port": 80, "targetPort": 8080}, {"port": 443, "targetPort": 8443}])
    config["metadata"]["labels"]["tier"] = "front"
    live = stored(apply.server_side_apply(None, config, "kubectl", False, "Service", T0))

    obj = apply.server_side_apply(live, service(), "kubectl", False, "Service", T1)

    assert obj["metadata"]["labels"] == {"app": "web"}
    assert [p["port"] for p in obj["spec"]["ports"]] == [80]
    assert obj["metadata"]["uid"] == live["metadata"]["uid"]
    entry = entries(obj)["kubectl"]
    assert entry["time"] == T1
    assert entry["fieldsV1"]["f:metadata"] == {"f:labels": {"f:app": {}}}
    assert list(entry["fieldsV1"]["f:spec"]["f:ports"]) == [PORT80]


def test_a_dropped_field_another_manager_also_owns_stays():
    live = stored(apply.server_side_apply(None, service(), "kubectl", False, "Service", T0))
    live = stored(apply.server_side_apply(live, service(), "helm", False, "Service", T1))

    config = service()
    del config["spec"]["selector"]
    obj = apply.server_side_apply(live, config, "kubectl", False, "Service", T2)

    assert obj["spec"]["selector"] == {"app": "web"}
    owned = entries(obj)
    assert "f:selector" not in owned["kubectl"]["fieldsV1"]["f:spec"]
    assert "f:selector" in owned["helm"]["fieldsV1"]["f:spec"]


def test_a_noop_apply_keeps_the_time_and_a_new_sharer_gets_none():
    live = stored(apply.server_side_apply(None, service(), "kubectl", False, "Service", T0))

    again = apply.server_side_apply(live, service(), "kubectl", False, "Service", T1)
    assert entries(again)["kubectl"]["time"] == T0

    shared = apply.server_side_apply(live, service(), "helm", False, "Service", T1)
    assert "time" not in entries(shared)["helm"]
    assert entries(shared)["helm"]["fieldsV1"] == entries(shared)["kubectl"]["fieldsV1"]


# ---- conflicts -----------------------------------------------------------------------------

def test_a_changed_value_owned_by_another_manager_conflicts():
    live = stored(apply.server_side_apply(None, service(), "kubectl", False, "Service", T0))

    err = conflict_of(lambda: apply.server_side_apply(
        live, service(ports=[{"port": 80, "targetPort": 9090}]), "helm", False, "Service", T1))

    assert err.message == ('Apply failed with 1 conflict: conflict with "kubectl": '
                           '.spec.ports[port=80,protocol="TCP"].targetPort')
    assert err.details == {"causes": [{
        "reason": "FieldManagerConflict", "message": 'conflict with "kubectl"',
        "field": '.spec.ports[port=80,protocol="TCP"].targetPort'}]}
    assert err.status()["details"] == err.details


def test_several_conflicts_are_grouped_by_sorted_manager():
    created = apply.update_managed_fields(None, stored(service()), "kubectl-client-side-apply",
                                          "Service", T0)
    labels = {"apiVersion": "v1", "kind": "Service",
              "metadata": {"name": "web", "labels": {"app": "web"}}}
    live = stored(apply.server_side_apply(created, labels, "argocd", False, "Service", T1))
    config = service(selector={"app": "api"}, ports=[{"port": 80, "targetPort": 9090}])
    config["metadata"]["labels"] = {"app": "api"}

    err = conflict_of(lambda: apply.server_side_apply(live, config, "helm", False, "Service", T2))

    assert err.message == (
        'Apply failed with 4 conflicts: conflicts with "argocd":\n'
        '- .metadata.labels.app\n'
        'conflicts with "kubectl-client-side-apply" using v1:\n'
        '- .metadata.labels.app\n'
        '- .spec.selector\n'
        '- .spec.ports[port=80,protocol="TCP"].targetPort')
    assert [(c["message"], c["field"]) for c in err.details["causes"]] == [
        ('conflict with "argocd"', ".metadata.labels.app"),
        ('conflict with "kubectl-client-side-apply" using v1', ".metadata.labels.app"),
        ('conflict with "kubectl-client-side-apply" using v1', ".spec.selector"),
        ('conflict with "kubectl-client-side-apply" using v1',
         '.spec.ports[port=80,protocol="TCP"].targetPort')]


def test_an_equal_value_is_shared_not_a_conflict():
    live = stored(apply.server_side_apply(None, service(), "kubectl", False, "Service", T0))
    config = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
              "spec": {"selector": {"app": "web"}}}

    obj = apply.server_side_apply(live, config, "helm", False, "Service", T1)

    owned = entries(obj)
    assert owned["helm"]["fieldsV1"] == {"f:spec": {"f:selector": {}}}
    assert "f:selector" in owned["kubectl"]["fieldsV1"]["f:spec"]


def test_force_moves_ownership_to_the_applier():
    live = stored(apply.server_side_apply(None, service(), "kubectl", False, "Service", T0))

    obj = apply.server_side_apply(live, service(ports=[{"port": 80, "targetPort": 9090}]),
                                  "helm", True, "Service", T1)

    assert obj["spec"]["ports"] == [{"port": 80, "targetPort": 9090, "protocol": "TCP"}]
    owned = entries(obj)
    assert owned["kubectl"]["fieldsV1"]["f:spec"]["f:ports"][PORT80] == {"f:port": {}, ".": {}}
    assert owned["helm"]["fieldsV1"]["f:spec"]["f:ports"][PORT80] == {
        "f:port": {}, "f:targetPort": {}, ".": {}}


def test_a_client_side_update_takes_ownership_so_the_applier_then_conflicts():
    live = stored(apply.server_side_apply(None, service(), "kubectl", False, "Service", T0))
    edited = copy.deepcopy(live)
    edited["spec"]["ports"][0]["targetPort"] = 9090

    live = stored(apply.update_managed_fields(live, edited, "kubectl-edit", "Service", T1))

    owned = entries(live)
    assert owned["kubectl-edit"]["operation"] == "Update"
    assert owned["kubectl-edit"]["fieldsV1"] == {
        "f:spec": {"f:ports": {PORT80: {"f:targetPort": {}}}}}
    assert "f:targetPort" not in owned["kubectl"]["fieldsV1"]["f:spec"]["f:ports"][PORT80]
    err = conflict_of(lambda: apply.server_side_apply(live, service(), "kubectl", False,
                                                      "Service", T2))
    assert err.message == ('Apply failed with 1 conflict: conflict with "kubectl-edit" using v1: '
                           '.spec.ports[port=80,protocol="TCP"].targetPort')


def test_an_untracked_object_is_first_owned_by_before_first_apply():
    live = stored(apply.server_side_apply(None, service(), "kubectl", False, "Service", T0))
    reset = copy.deepcopy(live)
    reset["metadata"]["managedFields"] = []
    untracked = stored(apply.update_managed_fields(live, reset, "kubectl-edit", "Service", T1))
    assert "managedFields" not in untracked["metadata"]

    err = conflict_of(lambda: apply.server_side_apply(
        untracked, service(selector={"app": "api"}), "helm", False, "Service", T2))
    assert err.message == ('Apply failed with 1 conflict: conflict with "before-first-apply" '
                           'using v1: .spec.selector')


def test_kubectl_takes_over_fields_it_applied_client_side():
    config = service()
    del config["metadata"]["labels"]
    created = stored(config)
    created["metadata"]["annotations"] = {apply.LAST_APPLIED: json.dumps(config) + "\n"}
    live = stored(apply.update_managed_fields(None, created, "kubectl-client-side-apply",
                                              "Service", T0))
    changed = service(ports=[{"port": 80, "targetPort": 9090}])
    del changed["metadata"]["labels"]

    conflict_of(lambda: apply.server_side_apply(live, changed, "other", False, "Service", T1))
    obj = apply.server_side_apply(live, changed, "kubectl", False, "Service", T1)

    assert obj["spec"]["ports"][0]["targetPort"] == 9090
    assert "f:targetPort" in entries(obj)["kubectl"]["fieldsV1"]["f:spec"]["f:ports"][PORT80]
    assert json.loads(obj["metadata"]["annotations"][apply.LAST_APPLIED]) == changed


# ---- list and map types --------------------------------------------------------------------

def test_service_ports_merge_by_port_and_protocol():
    dns = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "dns"},
           "spec": {"ports": [{"name": "dns-tcp", "port": 53}]}}
    live = stored(apply.server_side_apply(None, dns, "team-a", False, "Service", T0))
    udp = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "dns"},
           "spec": {"ports": [{"name": "dns-udp", "port": 53, "protocol": "UDP"}]}}

    obj = apply.server_side_apply(live, udp, "team-b", False, "Service", T1)

    assert obj["spec"]["ports"] == [{"name": "dns-tcp", "port": 53, "protocol": "TCP"},
                                    {"name": "dns-udp", "port": 53, "protocol": "UDP"}]
    owned = entries(obj)
    assert list(owned["team-a"]["fieldsV1"]["f:spec"]["f:ports"]) == [
        'k:{"port":53,"protocol":"TCP"}']
    assert owned["team-b"]["fieldsV1"]["f:spec"]["f:ports"] == {
        'k:{"port":53,"protocol":"UDP"}': {"f:name": {}, "f:port": {}, "f:protocol": {},
                                           ".": {}}}


def test_set_lists_union_and_each_applier_removes_only_its_own_items():
    def finalizers(*names: str) -> dict:
        return {"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "c", "finalizers": list(names)}}

    live = stored(apply.server_side_apply(None, finalizers("a.io/one"), "one", False,
                                          "ConfigMap", T0))
    live = stored(apply.server_side_apply(live, finalizers("b.io/two"), "two", False,
                                          "ConfigMap", T1))
    assert live["metadata"]["finalizers"] == ["a.io/one", "b.io/two"]
    assert entries(live)["two"]["fieldsV1"] == {"f:metadata": {"f:finalizers": {
        'v:"b.io/two"': {}}}}

    obj = apply.server_side_apply(live, finalizers(), "one", False, "ConfigMap", T2)
    assert obj["metadata"]["finalizers"] == ["b.io/two"]
    assert "one" not in entries(obj)


def test_an_atomic_selector_is_replaced_whole_and_owned_as_one_field():
    live = stored(apply.server_side_apply(
        None, service(selector={"app": "web", "tier": "front"}), "kubectl", False, "Service", T0))

    obj = apply.server_side_apply(live, service(selector={"app": "web"}), "kubectl", False,
                                  "Service", T1)

    assert obj["spec"]["selector"] == {"app": "web"}
    assert entries(obj)["kubectl"]["fieldsV1"]["f:spec"]["f:selector"] == {}


def test_labels_merge_key_by_key():
    live = stored(apply.server_side_apply(None, service(), "kubectl", False, "Service", T0))
    config = {"apiVersion": "v1", "kind": "Service",
              "metadata": {"name": "web", "labels": {"team": "x"}}}

    obj = apply.server_side_apply(live, config, "labeller", False, "Service", T1)

    assert obj["metadata"]["labels"] == {"app": "web", "team": "x"}
    assert entries(obj)["labeller"]["fieldsV1"] == {"f:metadata": {"f:labels": {"f:team": {}}}}


# ---- subresources and reset fields ---------------------------------------------------------

def test_status_belongs_to_no_one_on_the_main_resource_and_to_the_status_applier():
    config = service()
    config["status"] = {"loadBalancer": {"ingress": [{"ip": "192.0.2.1"}]}}
    live = stored(apply.server_side_apply(None, config, "kubectl", False, "Service", T0))
    assert "f:status" not in entries(live)["kubectl"]["fieldsV1"]

    status = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
              "status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.7"}]}}}
    obj = apply.server_side_apply(live, status, "lb-controller", False, "Service", T1,
                                  subresource="status")

    entry = entries(obj)["lb-controller"]
    assert entry["subresource"] == "status"
    assert list(entry)[-1] == "subresource"
    assert entry["fieldsV1"] == {"f:status": {"f:loadBalancer": {"f:ingress": {}}}}


def test_a_status_update_is_recorded_with_its_subresource():
    live = stored(apply.server_side_apply(None, service(), "kubectl", False, "Service", T0))
    new = copy.deepcopy(live)
    new["status"] = {"loadBalancer": {"ingress": [{"ip": "192.0.2.7"}]}}
    new["metadata"]["managedFields"] = []  # ignored on a subresource

    obj = apply.update_managed_fields(live, new, "lb-controller", "Service", T1,
                                      subresource="status")

    entry = entries(obj)["lb-controller"]
    assert (entry["operation"], entry["subresource"]) == ("Update", "status")
    assert "kubectl" in entries(obj)
    conflict = conflict_of(lambda: apply.server_side_apply(
        stored(obj), {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
                      "status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.9"}]}}},
        "other", False, "Service", T2,
        subresource="status"))
    assert conflict.details["causes"][0]["message"] == (
        'conflict with "lb-controller" with subresource "status" using v1')


# ---- managedFields sent by clients ---------------------------------------------------------

def test_managed_fields_sent_in_an_update_are_honoured_when_valid():
    live = stored(apply.server_side_apply(None, service(), "kubectl", False, "Service", T0))
    new = copy.deepcopy(live)
    new["metadata"]["managedFields"] = [{
        "manager": "importer", "operation": "Update", "apiVersion": "v1", "time": T0,
        "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:selector": {}}}}]

    honoured = apply.update_managed_fields(live, new, "kubectl-replace", "Service", T1)
    assert list(entries(honoured)) == ["importer"]

    new["metadata"]["managedFields"] = [{"manager": "bad", "operation": "Patch"}]
    kept = apply.update_managed_fields(live, new, "kubectl-replace", "Service", T1)
    assert kept["metadata"]["managedFields"] == live["metadata"]["managedFields"]


def test_update_entries_are_capped_at_ten():
    obj = apply.update_managed_fields(None, {"apiVersion": "v1", "kind": "ConfigMap",
                                             "metadata": {"name": "c"}, "data": {"a": "1"}},
                                      "creator", "ConfigMap", T0)
    obj = stored(obj)
    for i in range(11):
        new = copy.deepcopy(obj)
        new["data"][f"k{i}"] = "v"
        obj = apply.update_managed_fields(obj, new, f"m{i:02d}", "ConfigMap",
                                          f"2026-01-01T01:00:{i:02d}Z")

    owned = entries(obj)
    assert len(owned) == 10
    assert owned["ancient-changes"]["fieldsV1"]["f:data"] == {
        "f:a": {}, "f:k0": {}, "f:k1": {}, ".": {}}
    assert owned["ancient-changes"]["time"] == "2026-01-01T01:00:01Z"
    assert obj["metadata"]["managedFields"][0]["manager"] == "ancient-changes"


# ---- FieldsV1 ------------------------------------------------------------------------------

def test_fields_v1_round_trips_in_kube_apiserver_order():
    raw = ('{"f:metadata":{"f:finalizers":{"v:\\"a.io/x\\"":{}},"f:labels":{"f:app":{},".":{}}},'
           '"f:spec":{"f:ports":{"k:{\\"port\\":80,\\"protocol\\":\\"TCP\\"}":{"f:port":{},'
           '"f:targetPort":{},".":{}},".":{}},"f:selector":{}}}')

    fs = apply.from_fields_v1(json.loads(raw))

    assert compact(apply.to_fields_v1(fs)) == raw
    assert apply.from_fields_v1(apply.to_fields_v1(fs)) == fs
    assert apply.from_fields_v1({"f:spec": {"f:replicas": {}, "x:future": {}}}) == \
        apply.from_fields_v1({"f:spec": {"f:replicas": {}}})
    assert apply.fieldset(service(), "Service") == apply.from_fields_v1(json.loads(
        '{"f:apiVersion":{},"f:kind":{},"f:metadata":{"f:labels":{"f:app":{}},"f:name":{},'
        '"f:namespace":{}},"f:spec":{"f:ports":{"k:{\\"port\\":80,\\"protocol\\":\\"TCP\\"}":'
        '{"f:port":{},"f:targetPort":{},".":{}}},"f:selector":{}}}'))


def test_path_strings_follow_fieldpath():
    fs = apply.from_fields_v1({"f:metadata": {"f:finalizers": {'v:"a.io/x"': {}}}})
    assert [apply.path_string(p) for p in fs] == ['.metadata.finalizers[="a.io/x"]']


# ---- errors and request helpers ------------------------------------------------------------

def test_applied_objects_kube_apiserver_refuses():
    with pytest.raises(APIError) as info:
        apply.server_side_apply(None, {"apiVersion": "apps/v1", "kind": "Service"}, "m", False,
                                "Service", T0)
    assert (info.value.code, info.value.message) == (
        400, "invalid object type: apps/v1, Kind=Service")

    with_managed = service()
    with_managed["metadata"]["managedFields"] = []
    with pytest.raises(APIError) as info:
        apply.server_side_apply(None, with_managed, "m", False, "Service", T0)
    assert (info.value.code, info.value.message) == (400, "metadata.managedFields must be nil")

    with pytest.raises(APIError) as info:
        apply.server_side_apply(None, service(ports=[{"targetPort": 80}]), "m", False,
                                "Service", T0)
    assert info.value.code == 500
    assert info.value.message == (
        "failed to create typed patch object (default/web; /v1, Kind=Service): .spec.ports: "
        'element 0: associative list with keys has an element that omits key field "port" '
        "(and doesn't have default value)")

    with pytest.raises(APIError) as info:
        apply.fieldset(service(ports=[{"port": 80}, {"port": 80, "protocol": "TCP"}]), "Service")
    assert info.value.message.endswith(
        '.spec.ports: duplicate entries for key [port=80,protocol="TCP"]')


def test_apply_needs_a_field_manager():
    with pytest.raises(APIError) as info:
        apply.require_apply_manager(None)
    assert info.value.code == 422
    assert info.value.message == ('PatchOptions.meta.k8s.io "" is invalid: fieldManager: '
                                  'Required value: is required for apply patch')
    assert info.value.details["causes"] == [{"reason": "FieldValueRequired",
                                             "message": "Required value: is required for apply "
                                                        "patch", "field": "fieldManager"}]
    assert apply.require_apply_manager("kubectl") == "kubectl"
    with pytest.raises(APIError):
        apply.require_apply_manager("x" * 129)


def test_managers_default_to_the_user_agent_prefix():
    agent = "kubectl/v1.32.0 (linux/amd64) kubernetes/70d3cc9"
    assert apply.manager_or_user_agent(None, agent) == "kubectl"
    assert apply.manager_or_user_agent("helm", agent) == "helm"
    assert apply.manager_or_user_agent("", "OpenAPI-Generator/31.0.0/python") == \
        "OpenAPI-Generator"
    assert apply.manager_or_user_agent("", None) == ""
    assert entries(apply.update_managed_fields(None, stored(service()), "", "Service",
                                               T0)).keys() == {"unknown"}


def test_apply_bodies_are_yaml_or_json_mappings():
    assert apply.parse_apply_body(b'{"apiVersion":"v1"}') == {"apiVersion": "v1"}
    assert apply.parse_apply_body(b"kind: Service\nmetadata:\n  name: web\n  "
                                  b"annotations:\n    at: 2024-01-01\n") == {
        "kind": "Service", "metadata": {"name": "web", "annotations": {"at": "2024-01-01"}}}
    assert apply.parse_apply_body(b"") == {}
    with pytest.raises(APIError) as info:
        apply.parse_apply_body(b"- a\n- b\n")
    assert (info.value.code, info.value.reason) == (400, "BadRequest")
    assert info.value.message == (
        "error decoding YAML: error unmarshaling JSON: while decoding JSON: json: cannot "
        "unmarshal array into Go value of type map[string]interface {}")
    with pytest.raises(APIError) as info:
        apply.parse_apply_body(b"kind: [Service\n")
    assert info.value.code == 400
    assert info.value.message.startswith("error decoding YAML: error converting YAML to JSON: "
                                         "yaml: line ")
