"""The garbage collector's decisions, graph and queue, without a server.

The pure helpers are checked directly; the graph and workers run against an in-memory fake of
the client (get/patch/update/request DELETE with the registry's finalizer semantics), so the
event -> queue -> API call paths are exercised without I/O.
"""

from __future__ import annotations

import asyncio
import copy
import json

import pytest

from svcnet.api.errors import APIError
from svcnet.api.resources import BY_KIND
from svcnet.controllers import garbagecollector as gcm
from svcnet.controllers.garbagecollector import (Decision, GarbageCollector, WorkQueue, classify,
                                                 dangling, decide, delete_options,
                                                 delete_refs_patch, deletable_resources,
                                                 orphan_patch, owner_resource, references_diff,
                                                 starts_deleting_dependents, starts_orphaning,
                                                 unblock_patch, unblocked_owners,
                                                 without_finalizer)

RS, CM, POD, NODE = BY_KIND["ReplicaSet"], BY_KIND["ConfigMap"], BY_KIND["Pod"], BY_KIND["Node"]


def ref(uid: str, name: str = "", kind: str = "ReplicaSet", api_version: str = "apps/v1",
        block: bool | None = None) -> dict:
    r = {"apiVersion": api_version, "kind": kind, "name": name or f"o-{uid}", "uid": uid}
    if block is not None:
        r["blockOwnerDeletion"] = block
    return r


def obj(uid: str, refs: list[dict] | None = None, name: str = "", kind: str = "ConfigMap",
        finalizers: list[str] | None = None, deleting: bool = False, ns: str = "ns") -> dict:
    m: dict = {"name": name or f"n-{uid}", "uid": uid}
    if ns:
        m["namespace"] = ns
    if refs:
        m["ownerReferences"] = refs
    if finalizers:
        m["finalizers"] = finalizers
    if deleting:
        m["deletionTimestamp"] = "2024-01-01T00:00:00Z"
        m["deletionGracePeriodSeconds"] = 0
    return {"kind": kind, "metadata": m}


# ---- pure decisions ---------------------------------------------------------------------------

def test_dangling_lists_references_to_absent_owners():
    d = obj("d", [ref("a"), ref("b")])
    assert [r["uid"] for r in dangling(d, {"a"})] == ["b"]
    assert dangling(d, {"a", "b"}) == []
    assert [r["uid"] for r in dangling(d, [])] == ["a", "b"]
    assert dangling(obj("x"), []) == []


def test_classify_solid_dangling_waiting():
    refs = [ref("live"), ref("gone"), ref("fg"), ref("reused"), ref("orph")]
    owners = {
        "live": obj("live", kind="ReplicaSet"),
        "gone": None,
        "fg": obj("fg", kind="ReplicaSet", finalizers=["foregroundDeletion"], deleting=True),
        "reused": obj("other-uid", kind="ReplicaSet"),  # the name now holds another object
        "orph": obj("orph", kind="ReplicaSet", finalizers=["orphan"], deleting=True),
    }
    solid, dang, waiting = classify(refs, owners)
    assert [r["uid"] for r in solid] == ["live", "orph"]  # an orphaning owner still exists
    assert [r["uid"] for r in dang] == ["gone", "reused"]
    assert [r["uid"] for r in waiting] == ["fg"]
    # foregroundDeletion without deletionTimestamp is not waiting (upstream: both are needed)
    _, _, waiting = classify([ref("x")], {"x": obj("x", finalizers=["foregroundDeletion"])})
    assert waiting == []


def test_decide_all_owners_gone_deletes_in_background():
    d = obj("d", [ref("a"), ref("b")])
    solid, dang, waiting = classify(owner_refs_of(d), {"a": None, "b": None})
    assert decide(d, solid, dang, waiting) == Decision("delete", policy="Background")


def owner_refs_of(o: dict) -> list[dict]:
    return o["metadata"].get("ownerReferences", [])


def test_decide_other_live_owner_patches_out_dangling_reference():
    d = obj("d", [ref("a"), ref("b")])
    solid, dang, waiting = classify(owner_refs_of(d), {"a": obj("a"), "b": None})
    dec = decide(d, solid, dang, waiting)
    assert dec.action == "patch"
    assert dec.patch == {"metadata": {"ownerReferences": [{"$patch": "delete", "uid": "b"}],
                                      "uid": "d"}}
    # nothing to drop: keep as is
    solid, dang, waiting = classify(owner_refs_of(d), {"a": obj("a"), "b": obj("b")})
    assert decide(d, solid, dang, waiting).action == "keep"


def test_decide_waiting_owner_with_other_solid_owner_drops_the_waiting_reference():
    d = obj("d", [ref("a"), ref("fg", block=True)])
    owners = {"a": obj("a"), "fg": obj("fg", finalizers=["foregroundDeletion"], deleting=True)}
    dec = decide(d, *classify(owner_refs_of(d), owners))
    assert dec.action == "patch"
    assert dec.patch["metadata"]["ownerReferences"] == [{"$patch": "delete", "uid": "fg"}]


def test_decide_foreground_owner():
    d = obj("d", [ref("fg", block=True)])
    owners = {"fg": obj("fg", finalizers=["foregroundDeletion"], deleting=True)}
    parts = classify(owner_refs_of(d), owners)
    # no dependents of its own: plain deletion is enough
    assert decide(d, *parts) == Decision("delete", policy="Background")
    # dependents of its own: Foreground, so the owner waits for the whole subtree
    assert decide(d, *parts, has_dependents=True) == Decision("delete", policy="Foreground")
    # a dependent of its own already deleting its dependents: unblock first (cycle breaker)
    dec = decide(d, *parts, has_dependents=True, dependent_deleting_dependents=True)
    assert dec.policy == "Foreground"
    assert dec.unblock == {"metadata": {"ownerReferences": [{"uid": "fg", "blockOwnerDeletion": False}],
                                        "uid": "d"}}


def test_decide_honours_the_items_own_gc_finalizer():
    for fin, policy in (("orphan", "Orphan"), ("foregroundDeletion", "Foreground")):
        d = obj("d", [ref("a")], finalizers=[fin])
        assert decide(d, *classify(owner_refs_of(d), {"a": None})).policy == policy


def test_decide_without_owner_references_keeps():
    assert decide(obj("d"), [], [], []) == Decision("keep")


def test_orphan_patch_and_delete_refs_patch():
    d = obj("dep", [ref("a"), ref("b")])
    assert orphan_patch(d, "a") == {"metadata": {"ownerReferences": [{"$patch": "delete", "uid": "a"}],
                                                 "uid": "dep"}}
    assert delete_refs_patch(d, ["a", "b"])["metadata"]["ownerReferences"] == [
        {"$patch": "delete", "uid": "a"}, {"$patch": "delete", "uid": "b"}]


def test_orphan_patch_applies_as_strategic_merge_patch():
    from svcnet.api import patch

    d = obj("dep", [ref("a", block=True), ref("b")])
    d["apiVersion"] = "v1"
    out = patch.apply_patch(d, "application/strategic-merge-patch+json",
                            json.dumps(orphan_patch(d, "a")).encode(), "ConfigMap")
    assert [r["uid"] for r in out["metadata"]["ownerReferences"]] == ["b"]
    out = patch.apply_patch(d, "application/strategic-merge-patch+json",
                            json.dumps(unblock_patch(d)).encode(), "ConfigMap")
    assert out["metadata"]["ownerReferences"][0] == {**ref("a"), "blockOwnerDeletion": False}
    assert unblock_patch(obj("x", [ref("a")])) is None


def test_without_finalizer():
    o = obj("o", finalizers=["orphan", "example.com/x"], deleting=True)
    out = without_finalizer(o, "orphan")
    assert out["metadata"]["finalizers"] == ["example.com/x"]
    assert o["metadata"]["finalizers"] == ["orphan", "example.com/x"]  # not mutated
    assert without_finalizer(o, "foregroundDeletion") is None


def test_references_diff_and_unblocked_owners():
    old = [ref("a", block=True), ref("b", block=True), ref("c")]
    new = [ref("b", block=False), ref("c"), ref("d")]
    added, removed, changed = references_diff(old, new)
    assert [r["uid"] for r in added] == ["d"]
    assert [r["uid"] for r in removed] == ["a"]
    assert [(o["uid"], n["uid"]) for o, n in changed] == [("b", "b")]
    assert unblocked_owners(old, new) == ["a", "b"]
    assert unblocked_owners([ref("c")], []) == []  # a non-blocking reference blocks nothing


def test_transitions():
    plain = obj("o", kind="ReplicaSet")
    orph = obj("o", kind="ReplicaSet", finalizers=["orphan"], deleting=True)
    fg = obj("o", kind="ReplicaSet", finalizers=["foregroundDeletion"], deleting=True)
    assert starts_orphaning(plain, orph) and starts_orphaning(None, orph)
    assert not starts_orphaning(orph, orph)
    assert not starts_orphaning(None, obj("o", finalizers=["orphan"]))  # no deletionTimestamp
    assert starts_deleting_dependents(None, fg) and not starts_deleting_dependents(fg, fg)


def test_owner_resource_and_watched_kinds():
    assert owner_resource(ref("a")) is RS
    assert owner_resource(ref("a", kind="Node", api_version="v1")) is NODE
    assert owner_resource(ref("a", kind="ReplicaSet", api_version="apps/v1beta2")) is RS
    assert owner_resource(ref("a", kind="ReplicaSet", api_version="v1")) is None
    assert owner_resource(ref("a", kind="Widget", api_version="example.com/v1")) is None
    kinds = {r.kind for r in deletable_resources()}
    assert {"Pod", "ReplicaSet", "Deployment", "EndpointSlice", "Endpoints", "ConfigMap",
            "Service", "Node", "Namespace"} <= kinds
    assert "Event" not in kinds


def test_delete_options_carry_uid_precondition():
    assert delete_options("u1", "Background") == {
        "kind": "DeleteOptions", "apiVersion": "v1", "preconditions": {"uid": "u1"},
        "propagationPolicy": "Background"}


def test_backoff_grows_and_is_capped():
    delays = [gcm.backoff(n, 0.05, 1.0) for n in range(1, 10)]
    assert delays[0] < 0.06 and delays[1] > delays[0]
    assert max(delays) <= 1.1


# ---- work queue ---------------------------------------------------------------------------------

def test_workqueue_dedupes_and_requeues_keys_added_while_processing():
    async def run():
        q = WorkQueue()
        q.add("a"); q.add("a"); q.add("b")
        assert len(q) == 2
        k = await q.get()
        assert k == "a"
        q.add("a")  # while processing: not handed to another worker
        assert await q.get() == "b"
        q.done("b")
        assert q._queue.empty()
        q.done("a")  # now it is queued again
        assert await q.get() == "a"
        q.done("a")
        # rate limiting: failures grow the delay until forgotten
        d1 = q.add_rate_limited("c")
        await asyncio.sleep(d1 + 0.05)
        assert await asyncio.wait_for(q.get(), 1) == "c"
        q.done("c")
        assert q.failures("c") == 1
        q.forget("c")
        assert q.failures("c") == 0
        q.shutdown()

    asyncio.run(run())


# ---- graph + workers against an in-memory API -------------------------------------------------

class FakeAPI:
    """Objects by (plural, namespace, name) with the registry's delete/finalizer semantics."""

    def __init__(self):
        self.objs: dict[tuple[str, str, str], dict] = {}
        self.calls: list[tuple] = []
        self.rv = 0
        self.gc: GarbageCollector | None = None
        self.fail_next: list[APIError] = []

    def _key(self, res, ns, name):
        return (res.plural, ns if res.namespaced else "", name)

    def put(self, res, o: dict, event: bool = True):
        o = copy.deepcopy(o)
        o["kind"] = res.kind
        self.rv += 1
        o["metadata"]["resourceVersion"] = str(self.rv)
        key = self._key(res, o["metadata"].get("namespace", ""), o["metadata"]["name"])
        old = self.objs.get(key)
        self.objs[key] = o
        if event and self.gc is not None:
            self.gc._handler(res)("MODIFIED" if old else "ADDED", old, o)
        return o

    def remove(self, res, key):
        old = self.objs.pop(key)
        if self.gc is not None:
            self.gc._handler(res)("DELETED", old, None)

    def find(self, name: str, plural: str = "configmaps", ns: str = "ns") -> dict | None:
        return self.objs.get((plural, ns, name))

    # -- the client surface the collector uses --
    async def get(self, res, ns, name, sub=""):
        self.calls.append(("get", res.kind, name))
        o = self.objs.get(self._key(res, ns, name))
        if o is None:
            raise APIError(404, "NotFound", f"{name} not found")
        return copy.deepcopy(o)

    async def patch(self, res, ns, name, p, sub="", patch_type="", manager=""):
        from svcnet.api import patch as patchlib

        self.calls.append(("patch", res.kind, name, p))
        if self.fail_next:
            raise self.fail_next.pop(0)
        key = self._key(res, ns, name)
        o = self.objs.get(key)
        if o is None:
            raise APIError(404, "NotFound", f"{name} not found")
        new = patchlib.apply_patch(o, patch_type, json.dumps(p).encode(), res.kind)
        if new["metadata"]["uid"] != o["metadata"]["uid"]:
            raise APIError(409, "Conflict", "Precondition failed: UID")
        return self.put(res, new)

    async def update(self, res, o, sub="", manager=""):
        self.calls.append(("update", res.kind, o["metadata"]["name"], o["metadata"].get("finalizers")))
        key = self._key(res, o["metadata"].get("namespace", ""), o["metadata"]["name"])
        cur = self.objs.get(key)
        if cur is None:
            raise APIError(404, "NotFound", "")
        if o["metadata"].get("resourceVersion") != cur["metadata"]["resourceVersion"]:
            raise APIError(409, "Conflict", "the object has been modified")
        if cur["metadata"].get("deletionTimestamp") and not o["metadata"].get("finalizers"):
            self.remove(res, key)
            return o
        return self.put(res, o)

    async def delete(self, res, ns, name, body=None):
        self.calls.append(("delete", res.kind, name, body.get("propagationPolicy")))
        key = self._key(res, ns, name)
        o = self.objs.get(key)
        if o is None:
            raise APIError(404, "NotFound", "")
        if body["preconditions"]["uid"] != o["metadata"]["uid"]:
            raise APIError(409, "Conflict", "Precondition failed: UID in precondition")
        fins = o["metadata"].get("finalizers") or []
        policy = body.get("propagationPolicy")
        from svcnet.registry.store import gc_finalizers

        fins = gc_finalizers(fins, policy)
        if fins:
            o = copy.deepcopy(o)
            o["metadata"]["finalizers"] = fins
            o["metadata"].setdefault("deletionTimestamp", "2024-01-01T00:00:00Z")
            self.put(res, o)
        else:
            self.remove(res, key)
        return {}


def run_gc(api: FakeAPI, setup, check, before_start=None):
    """Start a collector (workers only; the fake feeds its handlers), run `setup`, then let the
    queue drain and run `check`."""

    async def main():
        gc = GarbageCollector(api, workers=2, resync_period=3600)
        api.gc = gc
        gc.queue.base_delay = 0.001
        if before_start:
            before_start()
        gc._synced = True
        gc._startup_scan()
        workers = [asyncio.create_task(gc._worker(i)) for i in range(2)]
        try:
            setup()
            for _ in range(400):
                await asyncio.sleep(0.005)
                if not gc.queue._dirty and not gc.queue._processing and not gc.queue._timers:
                    break
            check()
        finally:
            for w in workers:
                w.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            gc.queue.shutdown()

    asyncio.run(main())


def rs(uid, name=None, **kw):
    return obj(uid, name=name or f"rs-{uid}", kind="ReplicaSet", **kw)


def rsref(uid, block=None):
    return ref(uid, name=f"rs-{uid}", block=block)


def test_background_owner_deletion_collects_dependents_once_each():
    api = FakeAPI()

    def setup():
        api.put(RS, rs("o"))
        api.put(CM, obj("c1", [rsref("o")], name="c1"))
        api.put(CM, obj("c2", [rsref("o")], name="c2"))
        api.put(CM, obj("keep", name="keep"))
        api.remove(RS, ("replicasets", "ns", "rs-o"))

    def check():
        assert api.find("c1") is None and api.find("c2") is None
        assert api.find("keep") is not None
        deletes = [c for c in api.calls if c[0] == "delete"]
        assert sorted(c[2] for c in deletes) == ["c1", "c2"]
        assert all(c[3] == "Background" for c in deletes)
        # the absent owner is looked up once, not per dependent
        assert [c for c in api.calls if c[:2] == ("get", "ReplicaSet")] == []

    run_gc(api, setup, check)


def test_second_live_owner_keeps_dependent_and_drops_dangling_reference():
    api = FakeAPI()

    def setup():
        api.put(RS, rs("a"))
        api.put(RS, rs("b"))
        api.put(CM, obj("c", [rsref("a"), rsref("b")], name="c"))
        api.remove(RS, ("replicasets", "ns", "rs-a"))

    def check():
        c = api.find("c")
        assert c is not None
        assert [r["uid"] for r in c["metadata"]["ownerReferences"]] == ["b"]

    run_gc(api, setup, check)


def test_orphan_strips_references_then_finalizer():
    api = FakeAPI()

    def setup():
        api.put(RS, rs("o"))
        api.put(RS, rs("other"))
        api.put(CM, obj("c1", [rsref("o", block=True)], name="c1"))
        api.put(CM, obj("c2", [rsref("o"), rsref("other")], name="c2"))
        api.put(RS, rs("o", finalizers=["orphan"], deleting=True))

    def check():
        assert api.find("rs-o", "replicasets") is None
        assert api.find("c1")["metadata"]["ownerReferences"] == []
        assert [r["uid"] for r in api.find("c2")["metadata"]["ownerReferences"]] == ["other"]
        assert api.find("rs-other", "replicasets") is not None

    run_gc(api, setup, check)


def test_foreground_waits_for_blocking_dependents_only():
    api = FakeAPI()

    def setup():
        api.put(RS, rs("o"))
        api.put(CM, obj("blocking", [rsref("o", block=True)], name="blocking", finalizers=["x/hold"]))
        api.put(CM, obj("free", [rsref("o")], name="free", finalizers=["x/hold"]))
        api.put(RS, rs("o", finalizers=["foregroundDeletion"], deleting=True))

    def check():
        owner = api.find("rs-o", "replicasets")
        assert owner is not None and owner["metadata"]["finalizers"] == ["foregroundDeletion"]
        assert api.find("blocking")["metadata"].get("deletionTimestamp")
        assert api.find("free")["metadata"].get("deletionTimestamp")

    run_gc(api, setup, check)

    # releasing (deleting) the blocking dependent lets the owner go
    def setup2():
        api.remove(CM, ("configmaps", "ns", "blocking"))

    def check2():
        assert api.find("rs-o", "replicasets") is None
        assert api.find("free") is not None  # non-blocking and held: not waited for

    # Re-run with a fresh collector over the same objects (startup path), then release.
    run_gc(api, setup2, check2, before_start=lambda: _replay(api))


def _replay(api: FakeAPI):
    """Feed the collector the current objects as an informer's initial list would."""
    for (plural, _, _), o in list(api.objs.items()):
        res = next(r for r in BY_KIND.values() if r.plural == plural)
        api.gc._handler(res)("ADDED", None, o)


def test_foreground_chain_uses_foreground_for_dependents_with_dependents():
    api = FakeAPI()
    DEP = BY_KIND["Deployment"]

    def setup():
        api.put(DEP, obj("d", name="d", kind="Deployment"))
        api.put(RS, rs("r", refs=[ref("d", name="d", kind="Deployment", block=True)]))
        api.put(POD, obj("p", [rsref("r", block=True)], name="p", kind="Pod"))
        dep = copy.deepcopy(api.find("d", "deployments"))
        dep["metadata"].update(finalizers=["foregroundDeletion"], deletionTimestamp="2024-01-01T00:00:00Z")
        api.put(DEP, dep)

    def check():
        assert api.objs == {}
        deletes = {c[2]: c[3] for c in api.calls if c[0] == "delete"}
        assert deletes == {"rs-r": "Foreground", "p": "Background"}

    run_gc(api, setup, check)


def test_startup_collects_orphans_and_stuck_owners():
    api = FakeAPI()
    api.put(CM, obj("dangling", [rsref("never")], name="dangling"))
    api.put(RS, rs("o", finalizers=["orphan"], deleting=True))
    api.put(CM, obj("kid", [rsref("o")], name="kid"))
    api.put(RS, rs("live"))
    api.put(CM, obj("owned", [rsref("live")], name="owned"))

    def check():
        assert api.find("dangling") is None
        assert api.find("rs-o", "replicasets") is None
        assert api.find("kid")["metadata"]["ownerReferences"] == []
        assert api.find("owned") is not None

    run_gc(api, lambda: None, check, before_start=lambda: _replay(api))


def test_recreated_dependent_is_not_deleted_by_uid_precondition():
    api = FakeAPI()

    def setup():
        api.put(RS, rs("o"))
        api.put(CM, obj("c-old", [rsref("o")], name="c"))
        # the collector will act on c-old; replace it under the same name without telling it
        api.objs[("configmaps", "ns", "c")] = obj("c-new", [rsref("o")], name="c")
        api.objs[("configmaps", "ns", "c")]["metadata"]["resourceVersion"] = "99"
        api.remove(RS, ("replicasets", "ns", "rs-o"))

    def check():
        assert api.find("c")["metadata"]["uid"] == "c-new"

    run_gc(api, setup, check)


def test_cluster_scoped_owner_of_namespaced_dependent():
    api = FakeAPI()

    def setup():
        api.put(NODE, obj("n1", name="node1", kind="Node", ns=""))
        api.put(CM, obj("c", [ref("n1", name="node1", kind="Node", api_version="v1")], name="c"))
        api.remove(NODE, ("nodes", "", "node1"))

    def check():
        assert api.find("c") is None

    run_gc(api, setup, check)


def test_errors_are_retried_with_backoff():
    api = FakeAPI()

    def setup():
        api.put(RS, rs("a"))
        api.put(RS, rs("b"))
        api.put(CM, obj("c", [rsref("a"), rsref("b")], name="c"))
        api.fail_next = [APIError(500, "InternalError", "boom"), APIError(409, "Conflict", "stale")]
        api.remove(RS, ("replicasets", "ns", "rs-a"))

    def check():
        patches = [c for c in api.calls if c[0] == "patch"]
        assert len(patches) == 3  # two failures, then success
        assert [r["uid"] for r in api.find("c")["metadata"]["ownerReferences"]] == ["b"]

    run_gc(api, setup, check)


def test_unknown_owner_kind_is_not_treated_as_absent():
    """A reference the server cannot map is an error to retry, never a reason to delete."""
    api = FakeAPI()
    widget = ref("w", name="w", kind="Widget", api_version="example.com/v1")

    async def main():
        gc = GarbageCollector(api, workers=1)
        api.gc = gc
        api.put(CM, obj("c", [widget, rsref("gone")], name="c"))
        with pytest.raises(gcm.UnknownOwnerKind):
            await gc._attempt_to_delete("c")
        gc.queue.shutdown()

    asyncio.run(main())
    assert api.find("c") is not None
    assert not [c for c in api.calls if c[0] == "delete"]


def test_cluster_scoped_dependent_of_namespaced_owner_is_given_up():
    api = FakeAPI()

    async def main():
        gc = GarbageCollector(api, workers=1)
        api.gc = gc
        api.put(NODE, obj("n", [rsref("x")], name="n", kind="Node", ns=""))
        with pytest.raises(gcm._Forget):
            await gc._attempt_to_delete("n")
        gc.queue.shutdown()

    asyncio.run(main())
    assert api.find("n", "nodes", "") is not None
