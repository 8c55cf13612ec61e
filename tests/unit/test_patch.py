"""The three PATCH flavours, checked against what kube-apiserver does.

Expected results come from Kubernetes' own behaviour: gopkg.in/evanphx/json-patch.v4 for JSON
and merge patches, k8s.io/apimachinery strategicpatch (server side) for strategic merge patches
- several list-order cases restate cases of strategicpatch/patch_test.go with Kubernetes
fields - and handlers/patch.go for the status of each failure.
"""

from __future__ import annotations

import copy
import json
import random

import pytest

from svcnet.api.errors import APIError
from svcnet.api.patch import apply_patch, json_patch, merge_patch, strategic_merge_patch

SMP = "application/strategic-merge-patch+json"
MERGE = "application/merge-patch+json"
JSONPATCH = "application/json-patch+json"
REJECTED = "the server rejected our request due to an error in our request"


def raises(fn, *args) -> APIError:
    with pytest.raises(APIError) as info:
        fn(*args)
    return info.value


def containers(*specs):
    """Pod containers from "name" or ("name", {fields})."""
    out = []
    for spec in specs:
        name, fields = (spec, {}) if isinstance(spec, str) else spec
        out.append({"name": name, **fields})
    return out


def pod(*specs) -> dict:
    return {"kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": containers(*specs)}}


def names(obj: dict) -> list:
    return [c["name"] for c in obj["spec"]["containers"]]


# ---- JSON patch -------------------------------------------------------------------------------

DOC = {"metadata": {"name": "web", "labels": {"app": "a"}}, "spec": {"ports": [1, 2, 3]}}

JSON_PATCH_CASES = [
    ("add member", [{"op": "add", "path": "/metadata/labels/tier", "value": "x"}],
     {"metadata": {"name": "web", "labels": {"app": "a", "tier": "x"}}}),
    ("add replaces an existing member", [{"op": "add", "path": "/metadata/name", "value": "b"}],
     {"metadata": {"name": "b", "labels": {"app": "a"}}}),
    ("add inserts before index", [{"op": "add", "path": "/spec/ports/1", "value": 9}],
     {"spec": {"ports": [1, 9, 2, 3]}}),
    ("add at length appends", [{"op": "add", "path": "/spec/ports/3", "value": 9}],
     {"spec": {"ports": [1, 2, 3, 9]}}),
    ("dash appends", [{"op": "add", "path": "/spec/ports/-", "value": 9}],
     {"spec": {"ports": [1, 2, 3, 9]}}),
    ("negative add index counts from the end of the grown array",
     [{"op": "add", "path": "/spec/ports/-1", "value": 9}], {"spec": {"ports": [1, 2, 3, 9]}}),
    ("add without value adds null", [{"op": "add", "path": "/spec/x"}],
     {"spec": {"ports": [1, 2, 3], "x": None}}),
    ("remove member", [{"op": "remove", "path": "/metadata/labels/app"}],
     {"metadata": {"name": "web", "labels": {}}}),
    ("remove element", [{"op": "remove", "path": "/spec/ports/0"}], {"spec": {"ports": [2, 3]}}),
    ("remove negative index", [{"op": "remove", "path": "/spec/ports/-1"}],
     {"spec": {"ports": [1, 2]}}),
    ("replace element", [{"op": "replace", "path": "/spec/ports/2", "value": 7}],
     {"spec": {"ports": [1, 2, 7]}}),
    ("replace of a missing member adds it (evanphx v4)",
     [{"op": "replace", "path": "/metadata/labels/new", "value": "v"}],
     {"metadata": {"name": "web", "labels": {"app": "a", "new": "v"}}}),
    ("move member", [{"op": "move", "from": "/metadata/labels", "path": "/spec/labels"}],
     {"metadata": {"name": "web"}, "spec": {"ports": [1, 2, 3], "labels": {"app": "a"}}}),
    ("move element", [{"op": "move", "from": "/spec/ports/0", "path": "/spec/ports/-"}],
     {"spec": {"ports": [2, 3, 1]}}),
    ("copy", [{"op": "copy", "from": "/spec/ports/1", "path": "/metadata/port"}],
     {"metadata": {"name": "web", "labels": {"app": "a"}, "port": 2}}),
    ("test then add", [{"op": "test", "path": "/metadata/name", "value": "web"},
                       {"op": "add", "path": "/metadata/ok", "value": True}],
     {"metadata": {"name": "web", "labels": {"app": "a"}, "ok": True}}),
    ("test null matches a missing member", [{"op": "test", "path": "/metadata/nope",
                                             "value": None}], {}),
    ("test deep equality", [{"op": "test", "path": "/spec", "value": {"ports": [1, 2, 3]}}], {}),
    ("null operations decode to an empty patch", None, {}),
]


@pytest.mark.parametrize("ops,changes", [c[1:] for c in JSON_PATCH_CASES],
                         ids=[c[0] for c in JSON_PATCH_CASES])
def test_json_patch(ops, changes):
    doc = copy.deepcopy(DOC)
    assert json_patch(doc, ops) == {**DOC, **changes}
    assert doc == DOC


def test_json_patch_pointer_escaping():
    doc = {"metadata": {"annotations": {"a/b": "1", "c~d": "2"}}}
    ops = [{"op": "replace", "path": "/metadata/annotations/a~1b", "value": "x"},
           {"op": "remove", "path": "/metadata/annotations/c~0d"},
           {"op": "add", "path": "/metadata/annotations/~01", "value": "y"}]
    assert json_patch(doc, ops) == {"metadata": {"annotations": {"a/b": "x", "~1": "y"}}}


def test_json_patch_replace_root_and_copy_is_deep():
    out = json_patch({"a": 1}, [{"op": "replace", "path": "", "value": {"b": {"c": [1]}}},
                                {"op": "copy", "from": "/b", "path": "/d"},
                                {"op": "add", "path": "/d/c/-", "value": 2}])
    assert out == {"b": {"c": [1]}, "d": {"c": [1, 2]}}


def test_json_patch_does_not_alias_operation_values():
    value = {"x": [1]}
    ops = [{"op": "add", "path": "/v", "value": value}]
    out = json_patch({}, ops)
    out["v"]["x"].append(2)
    assert value == {"x": [1]}


JSON_PATCH_FAILURES = [
    ("remove missing member", {"op": "remove", "path": "/metadata/nope"},
     "Unable to remove nonexistent key"),
    ("add under missing parent", {"op": "add", "path": "/nope/x", "value": 1}, "missing path"),
    ("index past the end", {"op": "replace", "path": "/spec/ports/3", "value": 1},
     "invalid index"),
    ("add index past length", {"op": "add", "path": "/spec/ports/5", "value": 1},
     "invalid index"),
    ("dash only appends", {"op": "remove", "path": "/spec/ports/-"}, "proper array index"),
    ("index into a scalar", {"op": "add", "path": "/metadata/name/x", "value": 1},
     "missing path"),
    ("path without leading slash", {"op": "add", "path": "spec/x", "value": 1}, "missing path"),
    ("empty path for add", {"op": "add", "path": "", "value": 1}, "missing path"),
    ("test failed", {"op": "test", "path": "/metadata/name", "value": "other"}, "test failed"),
    ("test is type-strict", {"op": "test", "path": "/spec/ports/0", "value": 1.0},
     "test failed"),
    ("test tells true from 1", {"op": "test", "path": "/spec/ports/0", "value": True},
     "test failed"),
    ("test non-null against missing value", {"op": "test", "path": "/metadata/name"},
     "test failed"),
    ("unknown op", {"op": "merge", "path": "/a"}, "Unexpected kind: merge"),
    ("op not a string", {"op": 1, "path": "/a"}, "Unexpected kind: unknown"),
    ("missing path", {"op": "add", "value": 1}, "missing path field"),
    ("move from missing", {"op": "move", "from": "/nope", "path": "/x"}, "nonexistent key"),
    ("copy from missing", {"op": "copy", "from": "/metadata/nope", "path": "/x"},
     "missing from path"),
    ("replace root with scalar", {"op": "replace", "path": "", "value": 1}, "object or array"),
]


@pytest.mark.parametrize("op,reason", [c[1:] for c in JSON_PATCH_FAILURES],
                         ids=[c[0] for c in JSON_PATCH_FAILURES])
def test_json_patch_failure_is_422_with_the_generic_text(op, reason):
    err = raises(json_patch, copy.deepcopy(DOC), [op])
    assert (err.code, err.reason, err.message) == (422, "Invalid", REJECTED)
    assert reason in str(err.__cause__)


def test_json_patch_stops_at_first_failure_without_touching_input():
    doc = copy.deepcopy(DOC)
    raises(json_patch, doc, [{"op": "remove", "path": "/metadata/name"},
                             {"op": "test", "path": "/x", "value": 1}])
    assert doc == DOC


@pytest.mark.parametrize("ops,message", [
    ({"op": "add"}, "json: cannot unmarshal object into Go value of type jsonpatch.Patch"),
    ("x", "json: cannot unmarshal string into Go value of type jsonpatch.Patch"),
    ([{"op": "add", "path": "/a"}, 3],
     "json: cannot unmarshal number into Go value of type jsonpatch.Operation"),
])
def test_json_patch_undecodable_is_400(ops, message):
    err = raises(json_patch, {}, ops)
    assert (err.code, err.reason, err.message) == (400, "BadRequest", message)


def test_json_patch_operation_limit_is_413():
    ops = [{"op": "test", "path": "/a", "value": 1}] * 10001
    err = raises(json_patch, {"a": 1}, ops)
    assert err.code == 413
    assert err.message.endswith("The allowed maximum operations in a JSON patch is 10000, "
                                "got 10001")
    assert json_patch({"a": 1}, ops[:10000]) == {"a": 1}


def test_json_patch_array_result_is_422_like_decoding():
    err = raises(json_patch, {}, [{"op": "replace", "path": "", "value": [1]}])
    assert err.code == 422
    assert err.message.startswith(' "" is invalid: patch: Invalid value: "[1]": couldn\'t get '
                                  "version/kind; json parse error: json: cannot unmarshal array")


# ---- JSON merge patch ---------------------------------------------------------------------------

MERGE_CASES = [  # RFC 7386 appendix A, plus evanphx's null pruning
    ({"a": "b"}, {"a": "c"}, {"a": "c"}),
    ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
    ({"a": "b"}, {"a": None}, {}),
    ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
    ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
    ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
    ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
    ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
    ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
    ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
    ({"a": 1}, {"b": [1, None, {"c": None}]}, {"a": 1, "b": [1, {}]}),
    ({"a": {"x": 1}}, {"a": [1, None]}, {"a": [1, None]}),  # replaces an object: not pruned
    ({"spec": {"replicas": 1, "paused": True}}, {"spec": {"replicas": 3}},
     {"spec": {"replicas": 3, "paused": True}}),  # kubectl scale
]


@pytest.mark.parametrize("doc,patch,want", MERGE_CASES)
def test_merge_patch(doc, patch, want):
    before = copy.deepcopy(doc)
    assert merge_patch(doc, patch) == want
    assert doc == before


def test_merge_patch_result_does_not_alias_input():
    doc = {"a": {"b": [1]}}
    out = merge_patch(doc, {"c": 1})
    out["a"]["b"].append(2)
    assert doc == {"a": {"b": [1]}}


@pytest.mark.parametrize("patch", [None, 1, "x", True])
def test_merge_patch_of_non_object_is_400(patch):
    err = raises(merge_patch, {"a": 1}, patch)
    assert (err.code, err.reason, err.message) == (400, "BadRequest", "Invalid JSON Patch")


def test_merge_patch_of_array_is_422_like_decoding():
    err = raises(merge_patch, {"a": 1}, [1, None])
    assert err.code == 422
    assert err.message.startswith(' "" is invalid: patch: Invalid value: "[1]"')


# ---- strategic merge patch: kubectl apply -----------------------------------------------------

def service() -> dict:
    return {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "web", "annotations": {
            "kubectl.kubernetes.io/last-applied-configuration": "old"}},
        "spec": {"ports": [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080},
                           {"name": "metrics", "port": 9090, "protocol": "TCP",
                            "targetPort": 9090}],
                 "selector": {"app": "api"}, "clusterIP": "10.0.0.7", "type": "ClusterIP"}}


def test_kubectl_apply_service():
    svc = service()
    patch = {"metadata": {"annotations": {
        "kubectl.kubernetes.io/last-applied-configuration": "new"}},
        "spec": {"$setElementOrder/ports": [{"port": 80}, {"port": 9091}],
                 "ports": [{"name": "metrics", "port": 9091}, {"$patch": "delete", "port": 9090}],
                 "selector": {"app": "api2"}}}
    patch_before = copy.deepcopy(patch)
    out = strategic_merge_patch(svc, patch, "Service")
    assert out["metadata"]["annotations"] == {
        "kubectl.kubernetes.io/last-applied-configuration": "new"}
    assert out["spec"] == {
        "ports": [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080},
                  {"name": "metrics", "port": 9091}],
        "selector": {"app": "api2"}, "clusterIP": "10.0.0.7", "type": "ClusterIP"}
    assert svc == service() and patch == patch_before


def test_kubectl_apply_deployment_image():
    dep = {"kind": "Deployment", "spec": {"replicas": 1, "template": {"spec": {"containers": [
        {"name": "c", "image": "nginx:1.25", "ports": [{"containerPort": 80}]},
        {"name": "sidecar", "image": "envoy"}]}}}}
    patch = {"spec": {"replicas": 3, "template": {"spec": {
        "$setElementOrder/containers": [{"name": "c"}],
        "containers": [{"image": "nginx:1.27", "name": "c"}]}}}}
    out = strategic_merge_patch(dep, patch, "Deployment")
    assert out["spec"]["replicas"] == 3
    assert out["spec"]["template"]["spec"]["containers"] == [
        {"name": "c", "image": "nginx:1.27", "ports": [{"containerPort": 80}]},
        {"name": "sidecar", "image": "envoy"}]


def test_kubectl_apply_deployment_env_nested_order():
    dep = {"kind": "Deployment", "spec": {"template": {"spec": {"containers": [
        {"name": "c", "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]}]}}}}
    patch = {"spec": {"template": {"spec": {
        "$setElementOrder/containers": [{"name": "c"}],
        "containers": [{"name": "c", "$setElementOrder/env": [{"name": "C"}, {"name": "B"}],
                        "env": [{"name": "C", "value": "3"},
                                {"$patch": "delete", "name": "A"}]}]}}}}
    out = strategic_merge_patch(dep, patch, "Deployment")
    assert out["spec"]["template"]["spec"]["containers"] == [
        {"name": "c", "env": [{"name": "C", "value": "3"}, {"name": "B", "value": "2"}]}]


def test_kubectl_apply_deployment_strategy_retain_keys():
    dep = {"kind": "Deployment", "spec": {"strategy": {
        "type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}}}}
    patch = {"spec": {"strategy": {"$retainKeys": ["type"], "rollingUpdate": None,
                                   "type": "Recreate"}}}
    assert strategic_merge_patch(dep, patch, "Deployment")["spec"]["strategy"] == {
        "type": "Recreate"}
    # $retainKeys also clears fields the patch does not mention.
    patch = {"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}}
    assert strategic_merge_patch(dep, patch, "Deployment")["spec"]["strategy"] == {
        "type": "Recreate"}
    # Without it the untouched field survives.
    patch = {"spec": {"strategy": {"type": "Recreate"}}}
    assert "rollingUpdate" in strategic_merge_patch(dep, patch, "Deployment")["spec"]["strategy"]


# ---- strategic merge patch: semantics -----------------------------------------------------------

SMP_CASES = [
    ("null deletes a field", "Pod",
     {"metadata": {"labels": {"a": "1", "b": "2"}}}, {"metadata": {"labels": {"a": None}}},
     {"metadata": {"labels": {"b": "2"}}}),
    ("null for a missing field is ignored", "Pod",
     {"metadata": {}}, {"metadata": {"labels": None}}, {"metadata": {}}),
    ("maps merge recursively", "Pod",
     {"metadata": {"labels": {"a": "1"}, "name": "x"}}, {"metadata": {"labels": {"b": "2"}}},
     {"metadata": {"labels": {"a": "1", "b": "2"}, "name": "x"}}),
    ("a selector merges key by key: SMP ignores the atomic map marker", "Service",
     {"spec": {"selector": {"app": "api", "tier": "web"}}}, {"spec": {"selector": {"app": "v2"}}},
     {"spec": {"selector": {"app": "v2", "tier": "web"}}}),
    ("$patch replace on a map", "Pod",
     {"metadata": {"labels": {"a": "1", "b": "2"}}},
     {"metadata": {"labels": {"$patch": "replace", "c": "3"}}},
     {"metadata": {"labels": {"c": "3"}}}),
    ("$patch delete on a map empties it", "Pod",
     {"metadata": {"labels": {"a": "1"}}}, {"metadata": {"labels": {"$patch": "delete"}}},
     {"metadata": {"labels": {}}}),
    ("scalars and type changes replace", "Pod",
     {"spec": {"type": "ClusterIP", "x": {"a": 1}}}, {"spec": {"type": "NodePort", "x": [1]}},
     {"spec": {"type": "NodePort", "x": [1]}}),
    ("lists without patch strategy are replaced", "Pod",
     {"spec": {"tolerations": [{"key": "a"}], "containers": [{"name": "c", "args": ["x", "y"]}]}},
     {"spec": {"tolerations": [{"key": "b"}], "containers": [{"name": "c", "args": ["z"]}]}},
     {"spec": {"tolerations": [{"key": "b"}], "containers": [{"name": "c", "args": ["z"]}]}}),
    ("primitive merge lists merge as sets", "Pod",
     {"metadata": {"finalizers": ["a", "b"]}}, {"metadata": {"finalizers": ["b", "c"]}},
     {"metadata": {"finalizers": ["a", "b", "c"]}}),
    ("$deleteFromPrimitiveList", "Pod",
     {"metadata": {"finalizers": ["a", "b", "c"]}},
     {"metadata": {"$deleteFromPrimitiveList/finalizers": ["b", "x"]}},
     {"metadata": {"finalizers": ["a", "c"]}}),
    ("$deleteFromPrimitiveList of a missing list deletes nothing", "Pod",
     {"metadata": {}}, {"metadata": {"$deleteFromPrimitiveList/finalizers": ["b"]}},
     {"metadata": {}}),
    ("merge by key reaches nested merge lists", "Pod",
     {"spec": {"containers": [{"name": "c", "env": [{"name": "A", "value": "1"},
                                                    {"name": "B", "value": "2"}]}]}},
     {"spec": {"containers": [{"name": "c", "env": [{"name": "B", "value": "3"},
                                                    {"name": "A", "$patch": "delete"}]}]}},
     {"spec": {"containers": [{"name": "c", "env": [{"name": "B", "value": "3"}]}]}}),
    ("$patch replace in a merge list", "Pod",
     {"spec": {"containers": [{"name": "a"}, {"name": "b"}]}},
     {"spec": {"containers": [{"$patch": "replace"}, {"name": "c", "image": "i"}]}},
     {"spec": {"containers": [{"name": "c", "image": "i"}]}}),
    ("new values lose nulls and directives", "Pod",
     {"spec": {}},
     {"spec": {"containers": [{"name": "c", "resources": None, "env": [
         {"name": "A", "$patch": "delete"}, {"name": "B", "value": "1"}]}],
         "$setElementOrder/containers": [{"name": "c"}]}},
     {"spec": {"containers": [{"name": "c", "env": [{"name": "B", "value": "1"}]}]}}),
    ("$setElementOrder of a list the object lacks", "Pod",
     {"spec": {}},
     {"spec": {"$setElementOrder/containers": [{"name": "b"}, {"name": "a"}],
               "containers": [{"name": "b"}, {"name": "a"}, {"name": "x", "$patch": "delete"}]}},
     {"spec": {"containers": [{"name": "b"}, {"name": "a"}]}}),
    ("a null patch body changes nothing", "Pod",
     {"spec": {"a": 1}}, None, {"spec": {"a": 1}}),
]


@pytest.mark.parametrize("kind,doc,patch,want", [c[1:] for c in SMP_CASES],
                         ids=[c[0] for c in SMP_CASES])
def test_strategic_merge_patch(kind, doc, patch, want):
    before = copy.deepcopy(doc)
    assert strategic_merge_patch(doc, patch, kind) == want
    assert doc == before


# List order: restated from strategicpatch/patch_test.go ("current" + three-way patch -> result),
# with mergingList as Pod containers and mergingIntList as finalizers.
ORDER_CASES = [
    ("add map keeps server-only item after the patch items",
     [("1", {"other": "a"}), "3"],
     {"$setElementOrder/containers": [{"name": "1"}, {"name": "2"}],
      "containers": [{"name": "2"}]}, ["1", "2", "3"]),
    ("patch items present on the server",
     ["3"],
     {"$setElementOrder/containers": [{"name": "1"}, {"name": "2"}],
      "containers": [{"name": "1"}, {"name": "2"}]}, ["1", "2", "3"]),
    ("order only, server-only items stay in place",
     ["1", "2", "7", "9", "8", "3", "4"],
     {"$setElementOrder/containers": [{"name": n} for n in "2143"]},
     ["2", "1", "7", "9", "8", "4", "3"]),
    ("delete and reorder",
     ["1", ("2", {"value": "2"}), "3"],
     {"$setElementOrder/containers": [{"name": "2"}, {"name": "1"}],
      "containers": [{"name": "3", "$patch": "delete"}]}, ["2", "1"]),
    ("add in the middle",
     ["1", ("2", {"value": "2"})],
     {"$setElementOrder/containers": [{"name": n} for n in "1423"],
      "containers": [{"name": "4"}, {"name": "3"}]}, ["1", "4", "2", "3"]),
    ("duplicates sort by their first position",
     ["1", ("2", {"value": "dup1"}), "3", ("2", {"value": "dup2"}), "4"],
     {"$setElementOrder/containers": [{"name": n} for n in "21432"]},
     ["2", "2", "1", "4", "3"]),
    ("without $setElementOrder new items lead unless the server had them first",
     ["a", "b", "c"], {"containers": [{"name": "d"}, {"name": "a", "image": "x"}]},
     ["d", "a", "b", "c"]),
]


@pytest.mark.parametrize("live,patch,want", [c[1:] for c in ORDER_CASES],
                         ids=[c[0] for c in ORDER_CASES])
def test_strategic_merge_patch_list_order(live, patch, want):
    assert names(strategic_merge_patch(pod(*live), {"spec": patch}, "Pod")) == want


def test_strategic_merge_patch_merged_items_keep_server_fields():
    out = strategic_merge_patch(
        pod(("1", {"other": "a"}), ("2", {"value": "2", "other": "b"})),
        {"spec": {"$setElementOrder/containers": [{"name": "2"}, {"name": "1"}],
                  "containers": [{"name": "1", "value": "x"}]}}, "Pod")
    assert out["spec"]["containers"] == [{"name": "2", "value": "2", "other": "b"},
                                         {"name": "1", "other": "a", "value": "x"}]


@pytest.mark.parametrize("live,patch,want", [
    (["1", "2", "4"], {"$setElementOrder/finalizers": ["1", "2", "3"], "finalizers": ["3"]},
     ["1", "2", "3", "4"]),
    (["1", "4", "2"], {"$setElementOrder/finalizers": ["3", "1", "2"], "finalizers": ["3"]},
     ["3", "1", "4", "2"]),
    (["1", "2", "3"], {"$setElementOrder/finalizers": ["2", "1"],
                       "$deleteFromPrimitiveList/finalizers": ["3"]}, ["2", "1"]),
    (["1", "2", "9", "3", "4"], {"$setElementOrder/finalizers": ["2", "1", "4", "3"]},
     ["2", "1", "9", "4", "3"]),
])
def test_strategic_merge_patch_primitive_list_order(live, patch, want):
    doc = {"metadata": {"finalizers": live}}
    assert strategic_merge_patch(doc, {"metadata": patch}, "Pod")["metadata"]["finalizers"] == want


# ---- strategic merge patch: errors --------------------------------------------------------------

SMP_ERRORS = [
    ("missing merge key", "Pod",
     pod("c"), {"spec": {"containers": [{"image": "nginx"}]}},
     500, "", "map: map[image:nginx] does not contain declared merge key: name"),
    ("unknown $patch in a map", "Pod",
     {"metadata": {"labels": {}}}, {"metadata": {"labels": {"$patch": "foo", "a": "b"}}},
     500, "", "unknown patch type: foo in map: map[$patch:foo a:b]"),
    ("non-string $patch", "Pod",
     {"metadata": {"labels": {}}}, {"metadata": {"labels": {"$patch": 1}}},
     500, "", "unknown patch type: %!s(int64=1) in map: map[$patch:1]"),
    ("$patch merge in a list", "Pod",
     pod("c"), {"spec": {"containers": [{"$patch": "merge"}]}},
     500, "", "merging lists cannot yet be specified in the patch"),
    ("$setElementOrder not a list", "Pod",
     pod("c"), {"spec": {"$setElementOrder/containers": "c"}},
     500, "", "expected a []interface {}, but received a string"),
    ("$setElementOrder disagrees with the patch list", "Pod",
     pod("a", "b"), {"spec": {"$setElementOrder/containers": [{"name": "a"}],
                              "containers": [{"name": "b"}]}},
     500, "", "The order in patch list:\n[map[name:b]]\n doesn't match $setElementOrder list:\n"
              "[map[name:a]]\n"),
    ("maps where a primitive list is expected", "Pod",
     {"metadata": {"finalizers": ["a"]}}, {"metadata": {"finalizers": [{"x": 1}]}},
     500, "", "list element types are not identical: [[a] [map[x:1]]]"),
    ("primitives where maps are expected", "Pod",
     pod("c"), {"spec": {"containers": ["c"]}},
     500, "", "list element types are not identical: [[map[name:c]] [c]]"),
    ("lists of lists", "Pod",
     {"metadata": {"finalizers": []}}, {"metadata": {"finalizers": [["a"]]}},
     422, "Invalid", REJECTED),
    ("$setElementOrder without a list name", "Pod",
     pod("c"), {"spec": {"$setElementOrder": [{"name": "c"}]}},
     400, "BadRequest", "invalid patch format of setElementOrder list"),
    ("$deleteFromPrimitiveList without a list name", "Pod",
     {"metadata": {}}, {"metadata": {"$deleteFromPrimitiveListfinalizers": ["a"]}},
     400, "BadRequest", "invalid patch format of primitive list"),
    ("$deleteFromPrimitiveList not a list", "Pod",
     {"metadata": {}}, {"metadata": {"$deleteFromPrimitiveList/finalizers": "a"}},
     400, "BadRequest", "invalid patch format of primitive list"),
    ("$retainKeys not a list", "Deployment",
     {"spec": {"strategy": {}}}, {"spec": {"strategy": {"$retainKeys": "type"}}},
     400, "BadRequest", "invalid patch format of retainKeys"),
    ("patch field missing from $retainKeys", "Deployment",
     {"spec": {"strategy": {}}},
     {"spec": {"strategy": {"$retainKeys": ["type"], "rollingUpdate": {}}}},
     400, "BadRequest", "invalid patch format of retainKeys"),
    ("patch that is not an object", "Pod",
     {}, [1], 400, "BadRequest",
     "json: cannot unmarshal array into Go value of type map[string]interface {}"),
]


@pytest.mark.parametrize("kind,doc,patch,code,reason,message", [c[1:] for c in SMP_ERRORS],
                         ids=[c[0] for c in SMP_ERRORS])
def test_strategic_merge_patch_errors(kind, doc, patch, code, reason, message):
    err = raises(strategic_merge_patch, doc, patch, kind)
    assert (err.code, err.reason, err.message) == (code, reason, message)


# ---- apply_patch --------------------------------------------------------------------------------

@pytest.mark.parametrize("content_type,body,want", [
    (JSONPATCH, b'[{"op":"add","path":"/spec/ports/-","value":{"port":81}}]',
     [{"port": 80, "protocol": "TCP"}, {"port": 81}]),
    (MERGE + "; charset=utf-8", b'{"spec":{"ports":[{"port":81}]}}', [{"port": 81}]),
    # A new merge-list item goes first (the Deployment example of the kubectl patch docs).
    (SMP + ";charset=utf-8", b'{"spec":{"ports":[{"port":81}]}}',
     [{"port": 81}, {"port": 80, "protocol": "TCP"}]),
])
def test_apply_patch_dispatches_on_content_type(content_type, body, want):
    doc = {"kind": "Service", "spec": {"ports": [{"port": 80, "protocol": "TCP"}]}}
    assert apply_patch(doc, content_type, body, "Service")["spec"]["ports"] == want


@pytest.mark.parametrize("content_type", ["application/json", "application/yaml", "",
                                          "application/merge-patch+json ; x=y"])
def test_apply_patch_unsupported_media_type(content_type):
    err = raises(apply_patch, {}, content_type, b"{}", "Service")
    assert (err.code, err.reason) == (415, "UnsupportedMediaType")
    assert err.message == (
        "the body of the request was in an unknown format - accepted media types include: "
        "application/json-patch+json, application/merge-patch+json, "
        "application/strategic-merge-patch+json, application/apply-patch+yaml")


def test_apply_patch_refuses_server_side_apply():
    with pytest.raises(ValueError):
        apply_patch({}, "application/apply-patch+yaml; charset=utf-8", b"{}", "Service")


@pytest.mark.parametrize("body,message", [
    (b"", "unexpected end of JSON input"),
    (b'{"spec":', "unexpected end of JSON input"),
    (b"{spec:1}", "invalid character 's' looking for beginning of object key string"),
    (b'{"a" 1}', "invalid character '1' after object key"),
    (b'{"a":1 "b":2}', "invalid character '\"' after object key:value pair"),
    (b'{"a":[1 2]}', "invalid character '2' after array element"),
    (b"{} {}", "invalid character '{' after top-level value"),
    (b"{'a':1}", "invalid character '\\'' looking for beginning of object key string"),
    (b"nul", "unexpected end of JSON input"),
    (b"nope", "invalid character 'o' in literal null (expecting 'u')"),
    (b'{"a":NaN}', "invalid character 'N' looking for beginning of value"),
    (b'"a\tb"', "invalid character '\\t' in string literal"),
    (b"[" * 100000, "exceeded max depth"),
])
def test_apply_patch_bad_json_is_400_with_go_text(body, message):
    for content_type in (SMP, JSONPATCH):
        err = raises(apply_patch, {}, content_type, body, "Service")
        assert (err.code, err.reason, err.message) == (400, "BadRequest", message)
    err = raises(apply_patch, {}, MERGE, body, "Service")
    assert (err.code, err.message) == (400, "Invalid JSON Patch")


def test_apply_patch_smp_array_body():
    err = raises(apply_patch, {}, SMP, b"[]", "Service")
    assert err.message == ("json: cannot unmarshal array into Go value of type "
                           "map[string]interface {}")


# ---- robustness -------------------------------------------------------------------------------

KEYS = ["metadata", "spec", "labels", "finalizers", "containers", "ports", "name", "port",
        "image", "env", "value", "template", "strategy", "selector", "tolerations", "$patch",
        "$retainKeys", "$setElementOrder/containers", "$setElementOrder/ports",
        "$setElementOrder/finalizers", "$deleteFromPrimitiveList/finalizers", "$setElementOrder",
        "op", "path", "from", "delete", "replace", "merge", "/spec", "-", "0"]
SCALARS = [None, True, False, 0, 1, -1, 1.5, "", "a", "delete", "replace", "merge", "add",
           "remove", "move", "copy", "test", "/spec", "/spec/ports/0", "/-", "~1", 80, 9090]


def random_json(rng: random.Random, depth: int = 0):
    roll = rng.random()
    if depth > 5 or roll < 0.35:
        return rng.choice(SCALARS + KEYS)
    if roll < 0.7:
        return {rng.choice(KEYS): random_json(rng, depth + 1) for _ in range(rng.randint(0, 4))}
    return [random_json(rng, depth + 1) for _ in range(rng.randint(0, 4))]


def random_doc(rng: random.Random) -> dict:
    doc = random_json(rng)
    return doc if isinstance(doc, dict) else {"spec": doc}


def test_random_input_raises_only_api_errors():
    rng = random.Random(1234)
    for _ in range(4000):
        doc, patch = random_doc(rng), random_json(rng)
        before = copy.deepcopy(doc)
        for fn, args in ((json_patch, (doc, patch)), (merge_patch, (doc, patch)),
                         (strategic_merge_patch, (doc, patch, rng.choice(
                             ["Pod", "Service", "Deployment", "Scale"])))):
            try:
                assert isinstance(fn(*args), dict)
            except APIError:
                pass
            assert doc == before
        body = json.dumps(patch).encode()[:rng.randint(0, 200)]
        try:
            apply_patch(doc, rng.choice([SMP, MERGE, JSONPATCH]), body, "Pod")
        except APIError:
            pass


def test_kubectl_apply_service_is_fast():
    import time
    svc = service()
    body = json.dumps({"metadata": {"annotations": {
        "kubectl.kubernetes.io/last-applied-configuration": "x" * 800}},
        "spec": {"$setElementOrder/ports": [{"port": 80}, {"port": 9091}],
                 "ports": [{"name": "metrics", "port": 9091}, {"$patch": "delete", "port": 9090}],
                 "selector": {"app": "api2"}}}).encode()
    start = time.perf_counter()
    for _ in range(200):
        apply_patch(svc, SMP, body, "Service")
    assert (time.perf_counter() - start) / 200 < 0.001
