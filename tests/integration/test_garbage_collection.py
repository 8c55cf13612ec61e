"""Garbage collection through ownerReferences against a real `svcnet server`, with kubectl's
--cascade=background|orphan|foreground and the official Python client.

The tests set ownerReferences themselves; their pods match no ReplicaSet's selector, since the
ReplicaSet controller would adopt (and then delete) a matching pod as Kubernetes' does.

The collector runs inside the server, as part of its controllers.
"""

from __future__ import annotations

import json

import pytest

from .conftest import Kubectl, start_server, wait_for

@pytest.fixture(scope="module")
def gc(server):
    """The server runs the garbage collector itself (svcnet/controlplane.py)."""
    yield None


# ---- object helpers (kubectl) -------------------------------------------------------------------

def owner_ref(kind: str, api_version: str, name: str, uid: str, block: bool | None = None) -> dict:
    r = {"apiVersion": api_version, "kind": kind, "name": name, "uid": uid}
    if block is not None:
        r["blockOwnerDeletion"] = block
    return r


def replicaset(ns: str, name: str, owners: list[dict] | None = None) -> dict:
    return {"apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": name, "namespace": ns, "ownerReferences": owners or []},
            "spec": {"replicas": 0, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}}


def create_rs(kubectl: Kubectl, ns: str, name: str) -> dict:
    """Create a ReplicaSet; returns an ownerReference to it."""
    rs = create(kubectl, replicaset(ns, name))
    return owner_ref("ReplicaSet", "apps/v1", name, rs["metadata"]["uid"])


def create(kubectl: Kubectl, obj: dict) -> dict:
    out = kubectl("create", "-o", "json", "-f", "-", input=json.dumps(obj)).stdout
    return json.loads(out)


def configmap(ns: str, name: str, owners: list[dict], finalizers: list[str] | None = None) -> dict:
    meta = {"name": name, "namespace": ns, "ownerReferences": owners}
    if finalizers:
        meta["finalizers"] = finalizers
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": {"k": "v"}}


def pod(ns: str, name: str, owners: list[dict]) -> dict:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": ns, "labels": {"gc-test": "dependent"},
                         "ownerReferences": owners},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]}}


def get(kubectl: Kubectl, ns: str, kind: str, name: str) -> dict | None:
    p = kubectl("-n", ns, "get", kind, name, "-o", "json", "--ignore-not-found")
    return json.loads(p.stdout) if p.stdout.strip() else None


def gone(kubectl: Kubectl, ns: str, kind: str, *names: str) -> bool:
    return all(get(kubectl, ns, kind, n) is None for n in names)


def refs(obj: dict) -> list[str]:
    return [r["name"] for r in obj["metadata"].get("ownerReferences") or []]


# ---- startup: a collector starting over existing garbage -----------------------------------------

def test_startup_collects_existing_garbage_and_stuck_owners(tmp_path):
    """Garbage made while no collector runs (a private server, so the module's collector does
    not see it) is found when one starts: dependents of deleted owners are deleted, an owner
    stuck with "orphan" gets its dependents orphaned, one stuck with "foregroundDeletion" gets
    its dependents deleted, and both owners then go."""
    srv = start_server(tmp_path / "data", extra=["--controllers", "*,-garbagecollector"])
    try:
        k = Kubectl(srv, tmp_path / "kubectl-cache")
        ns = "gc-startup"
        k("apply", "-f", "-", input=f"apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {ns}\n")
        gone_ref = create_rs(k, ns, "gone")
        create(k, configmap(ns, "gone-1", [gone_ref]))
        create(k, pod(ns, "gone-pod", [gone_ref]))
        k("-n", ns, "delete", "rs", "gone")  # Background: nobody collects the dependents yet
        orph = create_rs(k, ns, "orph")
        create(k, configmap(ns, "orph-1", [orph]))
        k("-n", ns, "delete", "rs", "orph", "--cascade=orphan", "--wait=false")
        fg = create_rs(k, ns, "fg")
        create(k, configmap(ns, "fg-1", [{**fg, "blockOwnerDeletion": True}]))
        k("-n", ns, "delete", "rs", "fg", "--cascade=foreground", "--wait=false")
        create(k, configmap(ns, "never", [owner_ref("ReplicaSet", "apps/v1", "nope",
                                                    "00000000-0000-0000-0000-000000000000")]))
        # nothing happened yet: this is the state the collector starts from
        assert get(k, ns, "cm", "gone-1") and get(k, ns, "pod", "gone-pod")
        assert get(k, ns, "rs", "orph")["metadata"]["finalizers"] == ["orphan"]
        assert get(k, ns, "rs", "fg")["metadata"]["finalizers"] == ["foregroundDeletion"]
        assert get(k, ns, "cm", "never")
        srv.stop()
        srv = start_server(srv.data_dir, srv.port)  # now with the garbage collector
        wait_for(lambda: gone(k, ns, "cm", "gone-1", "never", "fg-1")
                 and gone(k, ns, "pod", "gone-pod"), 30, what="dangling dependents collected")
        wait_for(lambda: gone(k, ns, "rs", "orph", "fg"), 30, what="stuck owners finalized")
        orphan = get(k, ns, "cm", "orph-1")
        assert orphan is not None and refs(orphan) == []
    finally:
        srv.stop()


# ---- kubectl --cascade ------------------------------------------------------------------------------

def test_background_cascade_deletes_dependents(gc, kubectl, namespace):
    ns = namespace
    owner = create_rs(kubectl, ns, "x")
    create(kubectl, configmap(ns, "x-cm1", [owner]))
    create(kubectl, configmap(ns, "x-cm2", [owner]))
    create(kubectl, pod(ns, "x-pod", [owner]))
    create(kubectl, configmap(ns, "bystander", []))
    out = kubectl("-n", ns, "delete", "rs", "x").stdout  # --cascade=background, the default
    assert out.strip() == 'replicaset.apps "x" deleted'
    wait_for(lambda: gone(kubectl, ns, "cm", "x-cm1", "x-cm2") and gone(kubectl, ns, "pod", "x-pod"),
             30, what="dependents of x collected")
    assert get(kubectl, ns, "cm", "bystander") is not None


def test_orphan_cascade_keeps_dependents_and_strips_reference(gc, kubectl, namespace):
    ns = namespace
    owner = create_rs(kubectl, ns, "x")
    other = create_rs(kubectl, ns, "y")
    create(kubectl, configmap(ns, "only-x", [{**owner, "blockOwnerDeletion": True}]))
    create(kubectl, configmap(ns, "x-and-y", [owner, other]))
    create(kubectl, pod(ns, "x-pod", [owner]))
    # kubectl waits until the owner is gone, which takes the collector
    kubectl("-n", ns, "delete", "rs", "x", "--cascade=orphan", timeout=60)
    assert get(kubectl, ns, "rs", "x") is None
    only_x = get(kubectl, ns, "cm", "only-x")
    assert only_x is not None and refs(only_x) == []
    assert refs(get(kubectl, ns, "cm", "x-and-y")) == ["y"]
    assert refs(get(kubectl, ns, "pod", "x-pod")) == []
    assert get(kubectl, ns, "rs", "y") is not None


def test_foreground_cascade_deletes_dependents_first(gc, kubectl, namespace):
    ns = namespace
    owner = create_rs(kubectl, ns, "x")
    other = create_rs(kubectl, ns, "other")
    blocking = {**owner, "blockOwnerDeletion": True}
    create(kubectl, configmap(ns, "plain", [blocking]))
    # a dependent with another live owner is kept; it only drops its reference to x
    create(kubectl, configmap(ns, "shared", [blocking, other]))
    create(kubectl, pod(ns, "x-pod", [blocking]))
    # a blocking dependent the test holds with its own finalizer: the owner must wait for it
    create(kubectl, configmap(ns, "held", [blocking], finalizers=["example.com/hold"]))
    # a non-blocking held dependent: deleted too, but the owner does not wait for it
    create(kubectl, configmap(ns, "held-free", [owner], finalizers=["example.com/hold"]))
    kubectl("-n", ns, "delete", "rs", "x", "--cascade=foreground", "--wait=false")

    wait_for(lambda: gone(kubectl, ns, "cm", "plain") and gone(kubectl, ns, "pod", "x-pod"), 30,
             what="unheld dependents deleted")
    wait_for(lambda: refs(get(kubectl, ns, "cm", "shared")) == ["other"], 30,
             what="shared dependent drops its reference to x")
    held = wait_for(lambda: (o := get(kubectl, ns, "cm", "held")) and
                    o["metadata"].get("deletionTimestamp") and o, 30, what="held dependent deleting")
    assert held["metadata"]["finalizers"] == ["example.com/hold"]
    rs = get(kubectl, ns, "rs", "x")
    assert rs is not None, "the owner must wait for its blocking dependent"
    assert rs["metadata"].get("deletionTimestamp")
    assert rs["metadata"]["finalizers"] == ["foregroundDeletion"]
    # kubectl shows the foreground deletion in progress
    assert kubectl("-n", ns, "get", "rs", "x", "-o",
                   "jsonpath={.metadata.finalizers[0]}").stdout == "foregroundDeletion"

    kubectl("-n", ns, "patch", "cm", "held", "--type=json",
            "-p", '[{"op": "remove", "path": "/metadata/finalizers"}]')
    wait_for(lambda: gone(kubectl, ns, "rs", "x"), 30, what="owner deleted after its dependents")
    assert gone(kubectl, ns, "cm", "held")
    free = get(kubectl, ns, "cm", "held-free")
    assert free is not None and free["metadata"].get("deletionTimestamp")
    kubectl("-n", ns, "patch", "cm", "held-free", "--type=json",
            "-p", '[{"op": "remove", "path": "/metadata/finalizers"}]')
    wait_for(lambda: gone(kubectl, ns, "cm", "held-free"), 30, what="held-free released")


def test_foreground_cascade_through_deployment_replicaset_pods(gc, kubectl, namespace):
    ns = namespace
    dep = create(kubectl, {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": ns},
        "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}})
    dref = owner_ref("Deployment", "apps/v1", "web", dep["metadata"]["uid"], block=True)
    rs = create(kubectl, replicaset(ns, "web-1", [dref]))
    rref = owner_ref("ReplicaSet", "apps/v1", "web-1", rs["metadata"]["uid"], block=True)
    create(kubectl, pod(ns, "web-1-a", [rref]))
    create(kubectl, pod(ns, "web-1-b", [rref]))
    kubectl("-n", ns, "delete", "deploy", "web", "--cascade=foreground", timeout=60)
    assert gone(kubectl, ns, "deploy", "web")
    # the deployment went last: everything under it was gone before
    assert gone(kubectl, ns, "rs", "web-1") and gone(kubectl, ns, "pod", "web-1-a", "web-1-b")


# ---- Python client -----------------------------------------------------------------------------------

def _py_rs(client, name: str):
    return client.V1ReplicaSet(
        metadata=client.V1ObjectMeta(name=name),
        spec=client.V1ReplicaSetSpec(
            replicas=0, selector=client.V1LabelSelector(match_labels={"app": name}),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels={"app": name}),
                spec=client.V1PodSpec(containers=[client.V1Container(name="c", image="busybox")]))))


def _py_ref(client, kind: str, api_version: str, o, block: bool | None = None):
    return client.V1OwnerReference(api_version=api_version, kind=kind, name=o.metadata.name,
                                   uid=o.metadata.uid, block_owner_deletion=block)


def _absent(fn, *args) -> bool:
    from kubernetes.client.exceptions import ApiException

    try:
        fn(*args)
    except ApiException as e:
        if e.status == 404:
            return True
        raise
    return False


def test_dependent_with_two_owners_survives_one(gc, k8s, namespace):
    client, api = k8s
    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    a = apps.create_namespaced_replica_set(namespace, _py_rs(client, "a"))
    b = apps.create_namespaced_replica_set(namespace, _py_rs(client, "b"))
    cm = core.create_namespaced_config_map(namespace, client.V1ConfigMap(
        metadata=client.V1ObjectMeta(name="shared", owner_references=[
            _py_ref(client, "ReplicaSet", "apps/v1", a), _py_ref(client, "ReplicaSet", "apps/v1", b)]),
        data={"k": "v"}))
    solo = core.create_namespaced_config_map(namespace, client.V1ConfigMap(
        metadata=client.V1ObjectMeta(name="a-only", owner_references=[
            _py_ref(client, "ReplicaSet", "apps/v1", a)])))

    apps.delete_namespaced_replica_set("a", namespace, propagation_policy="Background")
    wait_for(lambda: _absent(core.read_namespaced_config_map, "a-only", namespace), 30,
             what="a's only dependent collected")
    # the shared dependent stays and loses the dangling reference (upstream: solid owner left,
    # dangling references patched out)
    wait_for(lambda: [r.uid for r in core.read_namespaced_config_map("shared", namespace)
                      .metadata.owner_references or []] == [b.metadata.uid], 30,
             what="dangling reference to a removed")
    survivor = core.read_namespaced_config_map("shared", namespace)
    assert survivor.metadata.uid == cm.metadata.uid and survivor.data == {"k": "v"}
    assert solo.metadata.uid

    apps.delete_namespaced_replica_set("b", namespace)
    wait_for(lambda: _absent(core.read_namespaced_config_map, "shared", namespace), 30,
             what="shared collected after its last owner")


def test_cluster_scoped_owner_of_namespaced_dependents(gc, k8s, namespace):
    client, api = k8s
    core = client.CoreV1Api(api)
    node_name = f"gc-node-{namespace}"
    node = core.create_node(client.V1Node(metadata=client.V1ObjectMeta(name=node_name)))
    core.create_namespaced_config_map(namespace, client.V1ConfigMap(
        metadata=client.V1ObjectMeta(name="node-owned", owner_references=[
            _py_ref(client, "Node", "v1", node)])))
    core.delete_node(node_name)
    wait_for(lambda: _absent(core.read_namespaced_config_map, "node-owned", namespace), 30,
             what="dependent of the deleted node collected")


def test_reference_to_recreated_owner_name_is_dangling(gc, k8s, namespace):
    """An ownerReference names an owner by uid: a new object under the owner's name does not
    keep the dependent alive."""
    client, api = k8s
    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    old = apps.create_namespaced_replica_set(namespace, _py_rs(client, "r"))
    old_ref = _py_ref(client, "ReplicaSet", "apps/v1", old)
    apps.delete_namespaced_replica_set("r", namespace)
    new = apps.create_namespaced_replica_set(namespace, _py_rs(client, "r"))
    assert new.metadata.uid != old.metadata.uid
    core.create_namespaced_config_map(namespace, client.V1ConfigMap(
        metadata=client.V1ObjectMeta(name="stale", owner_references=[old_ref])))
    core.create_namespaced_config_map(namespace, client.V1ConfigMap(
        metadata=client.V1ObjectMeta(name="fresh", owner_references=[
            _py_ref(client, "ReplicaSet", "apps/v1", new)])))
    wait_for(lambda: _absent(core.read_namespaced_config_map, "stale", namespace), 30,
             what="dependent of the old uid collected")
    assert core.read_namespaced_config_map("fresh", namespace).metadata.name == "fresh"
    assert apps.read_namespaced_replica_set("r", namespace).metadata.uid == new.metadata.uid


def test_orphan_via_python_client_delete_options(gc, k8s, namespace):
    client, api = k8s
    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    owner = apps.create_namespaced_replica_set(namespace, _py_rs(client, "o"))
    core.create_namespaced_config_map(namespace, client.V1ConfigMap(
        metadata=client.V1ObjectMeta(name="kid", owner_references=[
            _py_ref(client, "ReplicaSet", "apps/v1", owner, block=True)])))
    apps.delete_namespaced_replica_set("o", namespace, body=client.V1DeleteOptions(
        propagation_policy="Orphan"))
    wait_for(lambda: _absent(apps.read_namespaced_replica_set, "o", namespace), 30,
             what="orphaning owner gone")
    kid = core.read_namespaced_config_map("kid", namespace)
    assert not kid.metadata.owner_references
