"""The garbage collector: cascading deletion through metadata.ownerReferences.

Modelled on kube-controller-manager's garbage collector (pkg/controller/garbagecollector:
graph_builder.go builds the graph, garbagecollector.go acts on it). It talks to the API server
only through `svcnet.client`, like any other controller.

Theory of operation
- One `Informer` per served kind that can own or depend on something (every kind that can be
  listed, watched and deleted, except Events) feeds a single graph: uid -> `_Node` (what the
  object is and whom it names as owners) and owner uid -> dependent uids. The index works on
  uids only, so a dependent can be indexed before (or without) its owner, and an owner's
  deletion finds its dependents without a scan.
- Graph changes put work on one de-duplicating queue with two kinds of item, as the two
  upstream queues: ("delete", uid) -- "attempt to delete": is this object garbage, or is it an
  owner waiting for its dependents? -- and ("orphan", uid) -- orphan this owner's dependents.
  A key is never processed by two workers at once; failures are retried with per-key
  exponential backoff; a success forgets the key's failures.
- Decisions are made on the live state: the worker re-reads the item and each of its owners
  from the API server (the graph only says when to look), classifies the owner references as
  solid (owner exists), dangling (owner absent, or the name now holds another uid) or waiting
  (owner is being deleted in the foreground), and then:
  * some solid owner: keep the object, but patch out the dangling and waiting references
    (a strategic merge patch deleting them by uid, with the item's uid as precondition);
  * no solid owner, a waiting one, and dependents of its own: delete it with Foreground;
  * otherwise delete it (Background, or the policy its own gc finalizer asks for), with a uid
    precondition so a recreated object of the same name is never hit.
- Foreground: an owner with deletionTimestamp and "foregroundDeletion" enqueues all its
  dependents; once no dependent with blockOwnerDeletion=true is left in the graph, the
  finalizer is removed by an update carrying the owner's resourceVersion (the registry then
  deletes the object). A dependent's deletion or an unblocked/removed reference re-enqueues it.
- Orphan: an owner with deletionTimestamp and "orphan" has the references to it patched out of
  all its dependents, then loses the "orphan" finalizer.
- Absent owners are remembered by uid (uids are never reused), so N dependents of one deleted
  owner cost one lookup of it, not N.
- Workers start once every informer has listed (so startup sees the whole graph): dependents of
  owners already gone and owners stuck with gc finalizers are found then. A slow periodic resync
  re-offers owners still carrying gc finalizers and dependents of owners the graph lacks.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import random
from dataclasses import dataclass
from typing import Iterable

import aiohttp

from svcnet.api.errors import APIError
from svcnet.api.resources import RESOURCES, Resource
from svcnet.client import Client, Informer

log = logging.getLogger("svcnet.controllers.garbagecollector")

ORPHAN = "orphan"
FOREGROUND = "foregroundDeletion"
SMP = "application/strategic-merge-patch+json"

# Kinds the collector does not watch: Events are many, short-lived and never owners.
IGNORED_KINDS = frozenset({"Event"})


# ---- pure helpers (no I/O) ------------------------------------------------------------------

def meta(obj: dict) -> dict:
    return obj.get("metadata") or {}


def uid_of(obj: dict) -> str:
    return meta(obj).get("uid", "")


def owner_refs(obj: dict) -> list[dict]:
    return [r for r in (meta(obj).get("ownerReferences") or []) if r.get("uid")]


def finalizers(obj: dict) -> list[str]:
    return list(meta(obj).get("finalizers") or [])


def being_deleted(obj: dict) -> bool:
    return bool(meta(obj).get("deletionTimestamp"))


def deleting_dependents(obj: dict) -> bool:
    """Foreground deletion in progress: deletionTimestamp and the foregroundDeletion finalizer."""
    return being_deleted(obj) and FOREGROUND in finalizers(obj)


def orphaning_dependents(obj: dict) -> bool:
    """Orphaning in progress: deletionTimestamp and the orphan finalizer."""
    return being_deleted(obj) and ORPHAN in finalizers(obj)


def blocks_owner(ref: dict) -> bool:
    return ref.get("blockOwnerDeletion") is True


def deletable_resources(resources: Iterable[Resource] = RESOURCES) -> list[Resource]:
    """The kinds to watch (upstream GetDeletableResources: list, watch and delete)."""
    return [r for r in resources if r.kind not in IGNORED_KINDS
            and {"list", "watch", "delete"} <= set(r.verbs)]


def owner_resource(ref: dict, resources: Iterable[Resource] = RESOURCES) -> Resource | None:
    """The served resource an ownerReference names, by group and kind (any version of the
    group maps to the served one, as the REST mapper does)."""
    api_version = ref.get("apiVersion") or ""
    group = api_version.rsplit("/", 1)[0] if "/" in api_version else ""
    for r in resources:
        if r.kind == ref.get("kind") and r.group == group:
            return r
    return None


def dangling(dependent: dict, live_uids: Iterable[str]) -> list[dict]:
    """The ownerReferences of `dependent` whose owner uid is not among `live_uids`."""
    live = set(live_uids)
    return [r for r in owner_refs(dependent) if r["uid"] not in live]


def classify(refs: list[dict], owners: dict[str, dict | None]
             ) -> tuple[list[dict], list[dict], list[dict]]:
    """(solid, dangling, waiting) as upstream classifyReferences: `owners` maps each owner uid
    to its live object, or None when it does not exist (or its name holds another uid).
    Waiting: the owner exists, has deletionTimestamp and the foregroundDeletion finalizer."""
    solid, dang, waiting = [], [], []
    for ref in refs:
        owner = owners.get(ref["uid"])
        if owner is None or uid_of(owner) != ref["uid"]:
            dang.append(ref)
        elif deleting_dependents(owner):
            waiting.append(ref)
        else:
            solid.append(ref)
    return solid, dang, waiting


def delete_refs_patch(dependent: dict, owner_uids: Iterable[str]) -> dict:
    """A strategic merge patch removing the ownerReferences to `owner_uids` (merge key uid),
    with the dependent's uid as precondition (upstream GenerateDeleteOwnerRefStrategicMergeBytes)."""
    return {"metadata": {"ownerReferences": [{"$patch": "delete", "uid": u} for u in owner_uids],
                         "uid": uid_of(dependent)}}


def orphan_patch(dependent: dict, owner_uid: str) -> dict:
    """The patch that orphans `dependent` from the owner `owner_uid`."""
    return delete_refs_patch(dependent, [owner_uid])


def unblock_patch(dependent: dict) -> dict | None:
    """A strategic merge patch setting blockOwnerDeletion=false on every blocking reference
    (upstream unblockOwnerReferencesStrategicMergePatch); None when nothing blocks."""
    refs = [{"uid": r["uid"], "blockOwnerDeletion": False}
            for r in owner_refs(dependent) if blocks_owner(r)]
    if not refs:
        return None
    return {"metadata": {"ownerReferences": refs, "uid": uid_of(dependent)}}


def without_finalizer(obj: dict, name: str) -> dict | None:
    """A copy of `obj` with finalizer `name` removed; None when it does not carry it."""
    fins = finalizers(obj)
    if name not in fins:
        return None
    out = dict(obj)
    out["metadata"] = dict(meta(obj))
    out["metadata"]["finalizers"] = [f for f in fins if f != name]
    return out


def references_diff(old: list[dict], new: list[dict]
                    ) -> tuple[list[dict], list[dict], list[tuple[dict, dict]]]:
    """(added, removed, changed as (old, new)) between two ownerReference lists, by uid."""
    old_by = {r["uid"]: r for r in old}
    new_by = {r["uid"]: r for r in new}
    added = [r for u, r in new_by.items() if u not in old_by]
    removed = [r for u, r in old_by.items() if u not in new_by]
    changed = [(old_by[u], r) for u, r in new_by.items() if u in old_by and old_by[u] != r]
    return added, removed, changed


def unblocked_owners(old: list[dict], new: list[dict]) -> list[str]:
    """Owner uids a dependent stopped blocking: a blocking reference removed, or its
    blockOwnerDeletion turned off (upstream addUnblockedOwnersToDeleteQueue)."""
    _, removed, changed = references_diff(old, new)
    out = [r["uid"] for r in removed if blocks_owner(r)]
    out += [n["uid"] for o, n in changed if blocks_owner(o) and not blocks_owner(n)]
    return out


def starts_orphaning(old: dict | None, new: dict) -> bool:
    return orphaning_dependents(new) and (old is None or not orphaning_dependents(old))


def starts_deleting_dependents(old: dict | None, new: dict) -> bool:
    return deleting_dependents(new) and (old is None or not deleting_dependents(old))


@dataclass(frozen=True)
class Decision:
    """What attempt-to-delete does with an item: "keep" it, "patch" it, or "delete" it."""

    action: str
    patch: dict | None = None  # "patch": the references to drop
    policy: str | None = None  # "delete": the propagation policy
    unblock: dict | None = None  # "delete": a patch to apply first (breaks foreground cycles)


KEEP = Decision("keep")


def decide(dependent: dict, solid: list[dict], dang: list[dict], waiting: list[dict],
           has_dependents: bool = False, dependent_deleting_dependents: bool = False) -> Decision:
    """Upstream attemptToDeleteItem's switch, for an item that is not being deleted.

    `has_dependents`: the item owns something (so a foreground owner must wait for it to
    delete its own dependents first). `dependent_deleting_dependents`: one of those is itself
    deleting its dependents in the foreground (a possible cycle: make the item's references
    non-blocking before deleting it)."""
    if not owner_refs(dependent):
        return KEEP
    if solid:
        if not dang and not waiting:
            return KEEP
        return Decision("patch", patch=delete_refs_patch(dependent,
                                                         [r["uid"] for r in dang + waiting]))
    if waiting and has_dependents:
        return Decision("delete", policy="Foreground",
                        unblock=unblock_patch(dependent) if dependent_deleting_dependents else None)
    fins = finalizers(dependent)
    if ORPHAN in fins:
        policy = "Orphan"
    elif FOREGROUND in fins:
        policy = "Foreground"
    else:
        policy = "Background"
    return Decision("delete", policy=policy)


def delete_options(uid: str, policy: str | None) -> dict:
    body: dict = {"kind": "DeleteOptions", "apiVersion": "v1", "preconditions": {"uid": uid}}
    if policy:
        body["propagationPolicy"] = policy
    return body


def backoff(failures: int, base: float = 0.05, cap: float = 60.0) -> float:
    """Exponential per-item backoff: base * 2^(failures-1), capped, with a little jitter."""
    delay = min(cap, base * (2 ** max(0, failures - 1)))
    return delay * (1 + random.random() * 0.1)


# ---- work queue -------------------------------------------------------------------------------

class WorkQueue:
    """client-go's workqueue semantics on asyncio: a key waits at most once in the queue; a key
    added while it is being processed is queued again when processing is done (never two
    workers on one key); rate-limited re-adds back off exponentially per key until forgotten."""

    def __init__(self, base_delay: float = 0.05, max_delay: float = 60.0):
        self._queue: asyncio.Queue = asyncio.Queue()
        self._dirty: set = set()
        self._processing: set = set()
        self._failures: collections.Counter = collections.Counter()
        self._timers: dict = {}
        self.base_delay, self.max_delay = base_delay, max_delay

    def __len__(self) -> int:
        return len(self._dirty)

    def add(self, key) -> None:
        if key in self._dirty:
            return
        self._dirty.add(key)
        if key not in self._processing:
            self._queue.put_nowait(key)

    async def get(self):
        key = await self._queue.get()
        self._dirty.discard(key)
        self._processing.add(key)
        return key

    def done(self, key) -> None:
        self._processing.discard(key)
        if key in self._dirty:
            self._queue.put_nowait(key)

    def add_after(self, key, delay: float) -> None:
        if key in self._timers:
            return  # already scheduled; the earlier timer wins
        loop = asyncio.get_running_loop()

        def fire() -> None:
            self._timers.pop(key, None)
            self.add(key)

        self._timers[key] = loop.call_later(delay, fire)

    def add_rate_limited(self, key) -> float:
        self._failures[key] += 1
        delay = backoff(self._failures[key], self.base_delay, self.max_delay)
        self.add_after(key, delay)
        return delay

    def forget(self, key) -> None:
        self._failures.pop(key, None)

    def failures(self, key) -> int:
        return self._failures.get(key, 0)

    def shutdown(self) -> None:
        for t in self._timers.values():
            t.cancel()
        self._timers.clear()


class _AbsentCache:
    """Owner uids known not to exist (an LRU; uids are never reused, so entries stay true)."""

    def __init__(self, size: int = 10000):
        self._d: collections.OrderedDict[str, None] = collections.OrderedDict()
        self.size = size

    def add(self, uid: str) -> None:
        self._d[uid] = None
        self._d.move_to_end(uid)
        while len(self._d) > self.size:
            self._d.popitem(last=False)

    def __contains__(self, uid: str) -> bool:
        if uid in self._d:
            self._d.move_to_end(uid)
            return True
        return False


# ---- the controller --------------------------------------------------------------------------

@dataclass
class _Node:
    res: Resource
    namespace: str
    name: str
    uid: str
    owners: list[dict]
    obj: dict
    being_deleted: bool = False
    deleting_dependents: bool = False


class _Forget(Exception):
    """Stop working on an item without retrying it (it will not get better by retrying)."""


class UnknownOwnerKind(APIError):
    """An ownerReference names a kind this server does not serve. Upstream retries such items
    (the kind may be registered later); so does this collector, quietly and with backoff."""

    def __init__(self, ref: dict):
        super().__init__(0, "UnknownKind", f"cannot map owner {ref.get('apiVersion')}/"
                                           f"{ref.get('kind')} to a served resource")


class GarbageCollector:
    DELETE, ORPHAN = "delete", "orphan"

    def __init__(self, client: Client, workers: int = 4, resources: Iterable[Resource] | None = None,
                 resync_period: float = 60.0):
        self.client = client
        self.resources = deletable_resources(resources if resources is not None else RESOURCES)
        self.n_workers = workers
        self.resync_period = resync_period
        self.queue = WorkQueue()
        self.informers: list[Informer] = []
        self.nodes: dict[str, _Node] = {}
        self.dependents: dict[str, set[str]] = {}  # owner uid -> dependent uids
        self.absent = _AbsentCache()
        self.ready = asyncio.Event()
        self._synced = False
        self._tasks: list[asyncio.Task] = []

    # ---- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        """Start the informers and, once all have listed, the workers. Returns at once; await
        `self.ready.wait()` to know the workers run."""
        for res in self.resources:
            inf = Informer(self.client, res, metadata_only=True)  # the GC reads metadata only
            inf.add_handler(self._handler(res))
            self.informers.append(inf)
            inf.start()
        self._tasks.append(asyncio.create_task(self._run(), name="gc-run"))

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        for inf in self.informers:
            await inf.stop()
        self.informers.clear()
        self.queue.shutdown()

    async def _run(self) -> None:
        await asyncio.gather(*(inf.synced.wait() for inf in self.informers))
        self._synced = True
        self._startup_scan()
        workers = [asyncio.create_task(self._worker(i), name=f"gc-worker-{i}")
                   for i in range(self.n_workers)]
        self._tasks.extend(workers)
        self.ready.set()
        log.info("garbage collector synced %d objects; %d workers", len(self.nodes), len(workers))
        while True:
            await asyncio.sleep(self.resync_period)
            self._startup_scan()

    def _startup_scan(self) -> None:
        """Offer everything that may need work with the whole graph known: owners carrying gc
        finalizers, and dependents of owners the graph does not hold."""
        q = self.queue
        for uid, n in self.nodes.items():
            if n.deleting_dependents:
                q.add((self.DELETE, uid))
            elif orphaning_dependents(n.obj):
                q.add((self.ORPHAN, uid))
        for owner_uid, deps in self.dependents.items():
            if owner_uid not in self.nodes:
                for d in deps:
                    q.add((self.DELETE, d))

    # ---- graph building (informer handlers; no awaits, so each runs atomically) -------------

    def _handler(self, res: Resource):
        def handle(kind: str, old: dict | None, new: dict | None) -> None:
            if kind == "DELETED":
                if old is not None:
                    self._observe_delete(old)
                return
            if new is None:
                return
            if old is not None and uid_of(old) != uid_of(new):
                self._observe_delete(old)  # recreated under the same name while we looked away
                old = None
            self._observe_upsert(res, old, new)
        return handle

    def _index(self, dep_uid: str, refs: Iterable[dict]) -> None:
        for r in refs:
            self.dependents.setdefault(r["uid"], set()).add(dep_uid)

    def _unindex(self, dep_uid: str, refs: Iterable[dict]) -> None:
        for r in refs:
            deps = self.dependents.get(r["uid"])
            if deps is not None:
                deps.discard(dep_uid)
                if not deps:
                    del self.dependents[r["uid"]]

    def _observe_upsert(self, res: Resource, old: dict | None, new: dict) -> None:
        uid = uid_of(new)
        if not uid:
            return
        m = meta(new)
        refs = owner_refs(new)
        node = self.nodes.get(uid)
        q = self.queue
        if node is None:
            node = _Node(res, m.get("namespace", "") if res.namespaced else "", m["name"], uid,
                         refs, new)
            self.nodes[uid] = node
            self._index(uid, refs)
            added = refs
        else:
            added, removed, _ = references_diff(node.owners, refs)
            for owner_uid in unblocked_owners(node.owners, refs):
                q.add((self.DELETE, owner_uid))
            self._unindex(uid, removed)
            self._index(uid, added)
            node.owners, node.obj = refs, new
        # A reference to an owner the graph does not hold (upstream: a "virtual" node) may be
        # dangling: look. Before the first sync the startup scan does this for everything.
        if self._synced and any(r["uid"] not in self.nodes for r in added):
            q.add((self.DELETE, uid))
        node.being_deleted = being_deleted(new)
        node.deleting_dependents = deleting_dependents(new)
        if starts_orphaning(old, new):
            q.add((self.ORPHAN, uid))
        elif starts_deleting_dependents(old, new):
            for d in self.dependents.get(uid, ()):
                q.add((self.DELETE, d))
            q.add((self.DELETE, uid))

    def _observe_delete(self, obj: dict) -> None:
        uid = uid_of(obj)
        node = self.nodes.pop(uid, None)
        if node is None:
            return
        self._unindex(uid, node.owners)
        deps = self.dependents.get(uid, ())
        if deps:
            self.absent.add(uid)
        for d in deps:
            self.queue.add((self.DELETE, d))
        for r in node.owners:
            owner = self.nodes.get(r["uid"])
            if owner is not None and owner.deleting_dependents:
                self.queue.add((self.DELETE, owner.uid))

    # ---- workers ---------------------------------------------------------------------------

    async def _worker(self, i: int) -> None:
        q = self.queue
        while True:
            key = await q.get()
            try:
                action, uid = key
                if action == self.ORPHAN:
                    await self._attempt_to_orphan(uid)
                else:
                    await self._attempt_to_delete(uid)
                q.forget(key)
            except asyncio.CancelledError:
                raise
            except _Forget as e:
                log.info("gc: giving up on %s: %s", key, e)
                q.forget(key)
            except UnknownOwnerKind as e:
                delay = q.add_rate_limited(key)
                log.debug("gc: %s: %s; retrying in %.2fs", key, e, delay)
            except (APIError, aiohttp.ClientError, asyncio.TimeoutError, OSError) as e:
                delay = q.add_rate_limited(key)
                log.info("gc: %s failed (%s); retrying in %.2fs", key, e, delay)
            except Exception:
                delay = q.add_rate_limited(key)
                log.exception("gc: %s failed; retrying in %.2fs", key, delay)
            finally:
                q.done(key)

    async def _get_live(self, node: _Node) -> dict | None:
        """The item as the API server has it now; None when gone or replaced by another uid."""
        try:
            latest = await self.client.get(node.res, node.namespace, node.name)
        except APIError as e:
            if e.code == 404:
                return None
            raise
        return latest if uid_of(latest) == node.uid else None

    async def _owner(self, ref: dict, node: _Node) -> dict | None:
        """The live owner a reference names, or None when it does not exist (upstream isDangling)."""
        if ref["uid"] in self.absent:
            return None
        res = owner_resource(ref, RESOURCES)
        if res is None:
            raise UnknownOwnerKind(ref)
        if res.namespaced and not node.namespace:
            raise _Forget(f"cluster-scoped {node.res.kind} {node.name} refers to a namespaced owner "
                          f"{ref.get('kind')} {ref.get('name')}")
        try:
            owner = await self.client.get(res, node.namespace if res.namespaced else "",
                                          ref.get("name", ""))
        except APIError as e:
            if e.code == 404:
                self.absent.add(ref["uid"])
                return None
            raise
        if uid_of(owner) != ref["uid"]:
            self.absent.add(ref["uid"])
            return None
        return owner

    async def _attempt_to_delete(self, uid: str) -> None:
        node = self.nodes.get(uid)
        if node is None:
            return  # deleted meanwhile: its DELETE event did the rest
        # Being deleted is a one-way trip: wait for the final deletion (then its dependents
        # are processed), unless it waits for its own dependents in the foreground.
        if node.being_deleted and not node.deleting_dependents:
            return
        latest = await self._get_live(node)
        if latest is None:
            return  # gone or replaced: the informer will tell the graph
        if deleting_dependents(latest):
            await self._process_deleting_dependents(node)
            return
        if being_deleted(latest):
            return
        refs = owner_refs(latest)
        if not refs:
            return
        owners = {r["uid"]: await self._owner(r, node) for r in refs}
        solid, dang, waiting = classify(refs, owners)
        mine = [self.nodes[d] for d in self.dependents.get(uid, ()) if d in self.nodes]
        decision = decide(latest, solid, dang, waiting, has_dependents=bool(mine),
                          dependent_deleting_dependents=any(d.deleting_dependents for d in mine))
        if decision.action == "patch":
            log.info("gc: %s %s/%s keeps owner(s) %s; dropping references to %s", node.res.kind,
                     node.namespace, node.name, [r["uid"] for r in solid],
                     [r["uid"] for r in dang + waiting])
            await self._patch(node, decision.patch)
        elif decision.action == "delete":
            if decision.unblock:
                await self._patch(node, decision.unblock)
            log.info("gc: deleting %s %s/%s (%s)", node.res.kind, node.namespace, node.name,
                     decision.policy)
            await self._delete(node, decision.policy)

    async def _process_deleting_dependents(self, node: _Node) -> None:
        blocking = []
        for d in self.dependents.get(node.uid, ()):
            dn = self.nodes.get(d)
            if dn and any(r["uid"] == node.uid and blocks_owner(r) for r in dn.owners):
                blocking.append(dn)
        if not blocking:
            log.info("gc: %s %s/%s has no blocking dependents left; removing %s", node.res.kind,
                     node.namespace, node.name, FOREGROUND)
            await self._remove_finalizer(node, FOREGROUND)
            return
        for dn in blocking:
            if not dn.deleting_dependents:
                self.queue.add((self.DELETE, dn.uid))

    async def _attempt_to_orphan(self, uid: str) -> None:
        node = self.nodes.get(uid)
        if node is None:
            return
        deps = [self.nodes[d] for d in self.dependents.get(uid, ()) if d in self.nodes]
        results = await asyncio.gather(*(self._patch(d, orphan_patch(d.obj, uid)) for d in deps),
                                       return_exceptions=True)
        failed = [(d, r) for d, r in zip(deps, results) if isinstance(r, BaseException)]
        if failed:
            raise APIError(0, "OrphanFailed", "orphaning " + ", ".join(
                f"{d.res.kind} {d.namespace}/{d.name}: {r}" for d, r in failed))
        log.info("gc: orphaned %d dependent(s) of %s %s/%s", len(deps), node.res.kind,
                 node.namespace, node.name)
        await self._remove_finalizer(node, ORPHAN)

    # ---- writes ----------------------------------------------------------------------------

    async def _patch(self, node: _Node, patch: dict) -> None:
        try:
            await self.client.patch(node.res, node.namespace, node.name, patch, patch_type=SMP,
                                    manager="garbage-collector")
        except APIError as e:
            if e.code != 404:
                raise

    async def _delete(self, node: _Node, policy: str | None) -> None:
        try:
            await self.client.delete(node.res, node.namespace, node.name,
                                     delete_options(node.uid, policy))
        except APIError as e:
            if e.code == 404:
                return
            if e.code == 409 and "UID" in e.message:
                return  # the name now holds another object: ours is gone
            raise

    async def _remove_finalizer(self, node: _Node, name: str, attempts: int = 5) -> None:
        """Get + update with the read resourceVersion, re-read on conflict (upstream
        removeFinalizer under RetryOnConflict)."""
        for attempt in range(attempts):
            latest = await self._get_live(node)
            if latest is None:
                return
            updated = without_finalizer(latest, name)
            if updated is None:
                return
            try:
                await self.client.update(node.res, updated, manager="garbage-collector")
                return
            except APIError as e:
                if e.code == 404:
                    return
                if e.code != 409 or attempt == attempts - 1:
                    raise
                await asyncio.sleep(backoff(attempt + 1, 0.01, 0.5))
