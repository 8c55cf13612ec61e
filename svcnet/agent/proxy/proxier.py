"""The service proxy's control loop: Services and EndpointSlices in, nftables transactions out.

Theory of operation (kube-proxy's, with incremental state)
- Informers keep Services and EndpointSlices; their handlers only mark the affected Service as
  changed (and remember the change's trigger time for the programming-latency metric).
- The sync loop wakes on changes, at most every `min_sync_period`, recomputes the ruleset piece
  of each changed Service only (`ruleset.desired` over that one Service), and folds the pieces
  into a reference-counted table state, so the cost of a change does not grow with the number
  of Services. The difference becomes one partial transaction (element adds/deletes, endpoint
  chains appearing or disappearing).
- A full sync (the whole table replaced atomically) runs at start, after any failed transaction,
  and every `full_sync_period`; the clients the kernel remembers for session affinity are read
  first and written back. A failure is logged and counted; the state is then unknown, so the
  next sync is full.
- After a sync's rules are live, the UDP frontends (addresses, ports, serving endpoints) of the
  Services it touched are compared with the last ones seen; if they changed, stale UDP
  conntrack entries are deleted (conntrack.py), so clients that keep a socket open follow.
"""

from __future__ import annotations

import asyncio
import collections
import datetime
import logging
import shutil
import time
from dataclasses import dataclass, field

from svcnet.agent import metrics
from svcnet.agent.proxy import conntrack, ruleset
from svcnet.agent.proxy.conntrack import ConntrackCLI
from svcnet.agent.proxy import apply as apply_mod
from svcnet.agent.proxy.apply import apply
from svcnet.agent.proxy.nft import NftError, Set, Transaction
from svcnet.api.resources import BY_KIND
from svcnet.client import Client, Informer

log = logging.getLogger("svcnet.proxy")
SERVICE, SLICE = BY_KIND["Service"], BY_KIND["EndpointSlice"]
TRIGGER = "endpoints.kubernetes.io/last-change-trigger-time"

SYNC_DURATION = metrics.Histogram(
    "kubeproxy_sync_proxy_rules_duration_seconds", "SyncProxyRules latency in seconds",
    metrics.LATENCY_BUCKETS)
PROGRAMMING_LATENCY = metrics.Histogram(
    "kubeproxy_network_programming_duration_seconds",
    "In Cluster Network Programming Latency in seconds",
    metrics.LATENCY_BUCKETS)
SYNC_FAILURES = metrics.Counter("svcnet_proxy_sync_failures_total", "nft transactions that failed")
STALE_CONNTRACK = metrics.Counter("svcnet_proxy_stale_udp_conntrack_entries_total",
                                  "UDP conntrack entries deleted because a sync made them stale")
_DEFAULT = object()
FULL_SYNCS = metrics.Counter("svcnet_proxy_full_syncs_total", "full syncs of the nftables table")


def _parse_time(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return datetime.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


@dataclass
class MergedState:
    """The union of per-Service pieces, with reference counts so pieces can come and go."""

    node: ruleset.NodeInfo
    pieces: dict[tuple[str, str], ruleset.State] = field(default_factory=dict)
    values: dict[str, dict[str, str | None]] = field(default_factory=dict)
    refs: dict[str, collections.Counter] = field(default_factory=dict)
    chains: dict[str, tuple[str, ...]] = field(default_factory=dict)
    chain_refs: collections.Counter = field(default_factory=collections.Counter)
    sets: dict[str, Set] = field(default_factory=dict)
    set_refs: collections.Counter = field(default_factory=collections.Counter)

    def __post_init__(self) -> None:
        for c in ruleset.CONTAINER_NAMES:
            self.values.setdefault(c, {})
            self.refs.setdefault(c, collections.Counter())

    def state(self) -> ruleset.State:
        return ruleset.State(self.node.cluster_cidr, self.node.service_cidr, dict(self.chains),
                             {c: dict(v) for c, v in self.values.items()}, dict(self.sets))

    def add_all(self, pieces: dict[tuple[str, str], ruleset.State]) -> None:
        """Fill an empty state with many pieces at once (a full sync: no diff is needed)."""
        for key, piece in pieces.items():
            self.pieces[key] = piece
            for name, rules in piece.chains.items():
                self.chain_refs[name] += 1
                self.chains[name] = rules
            for name, s in piece.sets.items():
                self.set_refs[name] += 1
                self.sets[name] = s
            for container, elems in piece.elements.items():
                if elems:
                    self.refs[container].update(elems.keys())
                    self.values[container].update(elems)

    @staticmethod
    def _swap(current: dict, refs: collections.Counter, before: dict, after: dict) -> tuple[dict, dict]:
        """Reference-count one piece's named objects (chains or sets) out and in; returns the
        (old, new) views of the names concerned, for ruleset.Changes."""
        for name in after:
            refs[name] += 1
        for name in before:
            refs[name] -= 1
        was, now = {}, {}
        for name in {**before, **after}:
            if name in current:
                was[name] = current[name]
            if refs[name] > 0:
                now[name] = after.get(name, current.get(name))
                current[name] = now[name]
            else:
                del refs[name]
                current.pop(name, None)
        return was, now

    def replace(self, key: tuple[str, str], piece: ruleset.State | None, tx: Transaction) -> None:
        """Swap a Service's piece, appending the set/chain/element changes to `tx`."""
        old = self.pieces.pop(key, None)
        if piece is not None:
            self.pieces[key] = piece
        changes = ruleset.Changes()
        changes.sets(*self._swap(self.sets, self.set_refs, old.sets if old else {},
                                 piece.sets if piece else {}))
        changes.chains(*self._swap(self.chains, self.chain_refs, old.chains if old else {},
                                   piece.chains if piece else {}))
        removed: dict[str, dict] = {}
        added: dict[str, dict] = {}
        for container in ruleset.CONTAINER_NAMES:
            before = old.elements[container] if old else {}
            after = piece.elements[container] if piece else {}
            if before == after:
                continue
            values, refs = self.values[container], self.refs[container]
            for k, v in after.items():
                refs[k] += 1
                if values.get(k, v) != v or k not in values:
                    if k in values:
                        removed.setdefault(container, {})[k] = values[k]
                    values[k] = v
                    added.setdefault(container, {})[k] = v
            for k in before:
                refs[k] -= 1
                if refs[k] <= 0:
                    del refs[k]
                    removed.setdefault(container, {})[k] = values.pop(k)
                    added.get(container, {}).pop(k, None)
        for container, elems in removed.items():
            # an element re-added with the same value is no change at all
            same = {k for k, v in elems.items() if added.get(container, {}).get(k, object()) == v}
            for k in same:
                added[container].pop(k)
            elems = {k: v for k, v in elems.items() if k not in same}
            if elems:
                changes.removed[container] = dict(sorted(elems.items()))
        for container, elems in added.items():
            if elems:
                changes.added[container] = dict(sorted(elems.items()))
        changes.write(tx)


class Proxier:
    def __init__(self, client: Client, node: ruleset.NodeInfo, nft: tuple[str, ...] = ("nft",),
                 min_sync_period: float = 0.0, full_sync_period: float = 3600.0, conntrack=_DEFAULT,
                 affinity_memory=apply_mod.affinity_memory):
        self.client = client
        self.node = node
        self.nft = nft
        self.min_sync_period = min_sync_period
        self.full_sync_period = full_sync_period
        self.services = Informer(client, SERVICE)
        self.slices = Informer(client, SLICE)
        self.slices_by_service: dict[tuple[str, str], dict[str, dict]] = {}
        self.dirty: dict[tuple[str, str], float | None] = {}
        self.wake = asyncio.Event()
        self.need_full = True
        self.merged = MergedState(node)
        # UDP conntrack cleanup (conntrack.py): a ConntrackCLI-like object, or None for none
        if conntrack is _DEFAULT:
            conntrack = ConntrackCLI() if shutil.which("conntrack") else None
            if conntrack is None:
                log.warning("`conntrack` is not installed: stale UDP conntrack entries are not cleared")
        self.conntrack = conntrack
        self.affinity_memory = affinity_memory  # (nft) -> what the kernel remembers, see apply.py
        self.udp_frontends: dict[tuple[str, str], dict] = {}
        self._task: asyncio.Task | None = None
        self.synced = asyncio.Event()

    # ---- change tracking -------------------------------------------------------------------

    def _mark(self, key: tuple[str, str], trigger: float | None) -> None:
        prev = self.dirty.get(key)
        self.dirty[key] = min(t for t in (prev, trigger) if t is not None) \
            if (prev is not None or trigger is not None) else None
        self.wake.set()

    def _on_service(self, kind: str, old: dict | None, new: dict | None) -> None:
        obj = new or old
        m = obj["metadata"]
        self._mark((m.get("namespace", ""), m["name"]), time.time())

    def _on_slice(self, kind: str, old: dict | None, new: dict | None) -> None:
        obj = new or old
        m = obj["metadata"]
        svc = (m.get("labels") or {}).get("kubernetes.io/service-name")
        if not svc:
            return
        key = (m.get("namespace", ""), svc)
        bucket = self.slices_by_service.setdefault(key, {})
        if new is None:
            bucket.pop(m["name"], None)
        else:
            bucket[m["name"]] = new
        trigger = _parse_time(((new or {}).get("metadata", {}).get("annotations") or {}).get(TRIGGER))
        self._mark(key, trigger)

    # ---- sync ------------------------------------------------------------------------------

    def _piece(self, key: tuple[str, str]) -> ruleset.State | None:
        svc = self.services.get(*key)
        if svc is None:
            return None
        slices = list(self.slices_by_service.get(key, {}).values())
        piece = ruleset.desired([svc], slices, self.node)
        return piece

    async def start(self) -> None:
        self.services.add_handler(self._on_service)
        self.slices.add_handler(self._on_slice)
        self.services.start()
        self.slices.start()
        await self.services.synced.wait()
        await self.slices.synced.wait()
        self._task = asyncio.create_task(self._loop())

    def routes_new_connections_to(self, ip: str, namespace: str) -> bool:
        """Whether this node's rules may still send new connections to `ip` (a pod of
        `namespace`) as a ready endpoint: a change not programmed yet is pending for a Service
        whose programmed rules have `ip` as an endpoint, or an EndpointSlice of the namespace
        lists it as ready. Read-only; the pod runtime waits for False before it stops a pod,
        so that a terminating pod gets no new connections once it stops listening. (Changes
        elsewhere do not count, so churn in other Services does not hold a pod up.)"""
        prefix = ip + " "
        for key in self.dirty:
            piece = self.merged.pieces.get(key) if key[0] == namespace else None
            if piece is not None and any(
                    str(v).startswith(prefix) for name, elements in piece.elements.items()
                    if "endpoints-" in name for v in elements.values()):
                return True
        return any(ip in (ep.get("addresses") or ())
                   and (ep.get("conditions") or {}).get("ready") is not False
                   for (ns, _), bucket in self.slices_by_service.items() if ns == namespace
                   for s in bucket.values() for ep in s.get("endpoints") or ())

    async def stop(self) -> None:
        for inf in (self.services, self.slices):
            await inf.stop()
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _loop(self) -> None:
        last_full = 0.0
        while True:
            timeout = max(0.0, last_full + self.full_sync_period - time.monotonic())
            try:
                await asyncio.wait_for(self.wake.wait(), timeout)
            except TimeoutError:
                self.need_full = True
            self.wake.clear()
            await asyncio.sleep(self.min_sync_period)  # also lets a burst of events coalesce
            full = self.need_full
            try:
                await self.sync(full)
                if full:
                    last_full = time.monotonic()
            except asyncio.CancelledError:
                raise
            except Exception as e:
                SYNC_FAILURES.inc()
                log.error("proxy sync failed (%s); the next sync is full", e)
                self.need_full = True
                await asyncio.sleep(1.0)
                self.wake.set()

    async def sync(self, full: bool) -> None:
        start = time.monotonic()
        dirty, self.dirty = self.dirty, {}
        try:
            if full:
                # Program the kernel first, from one pass over a snapshot of everything; the
                # per-Service pieces that later partial syncs diff against are built from the
                # same snapshot once the rules are live (informers replace objects, never change
                # them, so lists of references are a consistent snapshot).
                snap_services = self.services.items()
                snap_slices = {k: list(b.values()) for k, b in self.slices_by_service.items()}
                # The kernel's affinity memory is read (another process) while the rules render
                # here, without yielding to the event loop in between.
                memory = asyncio.get_running_loop().run_in_executor(None, self.affinity_memory, self.nft)
                try:
                    state = ruleset.desired(snap_services, [s for b in snap_slices.values() for s in b],
                                            self.node)
                except BaseException:
                    memory.cancel()
                    raise
                try:
                    remembered = await memory
                except NftError as e:
                    log.warning("could not read session affinity memory (%s); clients may move", e)
                    remembered = {}
                tx: Transaction | None = ruleset.full_transaction(state, remembered)
                rendered = time.monotonic()
            else:
                tx = Transaction()
                for key in dirty:
                    self.merged.replace(key, self._piece(key), tx)
            if tx is not None and tx.ops:
                await asyncio.to_thread(apply, tx, self.nft)
        except BaseException:
            for k, v in dirty.items():  # not programmed: keep them for the next (full) sync
                self._mark(k, v)
            raise
        done, done_mono = time.time(), time.monotonic()
        took = done_mono - start
        SYNC_DURATION.observe(took)
        if full:
            log.info("full sync of %d Services in %.3f s (%.3f s rendering, %.3f s in nft)",
                     len(snap_services), took, rendered - start, done_mono - rendered)
        for trigger in dirty.values():
            if trigger is not None:
                PROGRAMMING_LATENCY.observe(max(0.0, done - trigger))
        if full:
            # The pieces later partial syncs diff against (~20 us per Service): the event loop
            # gets a turn every few hundred, so pods and probes are not held up for 0.2 s at
            # 10,000 Services. Changes meanwhile stay marked for the next sync.
            pieces = {}
            for n, svc in enumerate(snap_services, 1):
                key = (svc["metadata"].get("namespace", ""), svc["metadata"]["name"])
                pieces[key] = ruleset.desired([svc], snap_slices.get(key, []), self.node)
                if n % 250 == 0:
                    await asyncio.sleep(0)
            merged = MergedState(self.node)
            merged.add_all(pieces)
            self.merged = merged
            FULL_SYNCS.inc()
            self.need_full = False
        if self.conntrack is not None:
            keys = {self._key(svc) for svc in snap_services} | set(self.udp_frontends) if full else dirty
            await self._clear_conntrack(keys)
        self.synced.set()

    @staticmethod
    def _key(svc: dict) -> tuple[str, str]:
        return svc["metadata"].get("namespace", ""), svc["metadata"]["name"]

    async def _clear_conntrack(self, keys) -> None:
        """After the rules are live: delete UDP conntrack entries that no longer fit them, for
        the Services `keys` (conntrack.py says which)."""
        current: dict = {}
        gone: set = set()
        for key in keys:
            svc = self.services.get(*key)
            now = {} if svc is None else conntrack.udp_frontends(
                svc, self.slices_by_service.get(key, {}).values())
            was = self.udp_frontends.pop(key, {})
            if now:
                self.udp_frontends[key] = now
            if now != was:
                current.update(now)
                gone.update(set(was) - set(now))
        if not current and not gone:
            return
        try:
            STALE_CONNTRACK.inc(await asyncio.to_thread(conntrack.clear, self.conntrack, current, gone))
        except Exception as e:  # the rules are right; a failed cleanup only delays recovery
            log.error("clearing stale UDP conntrack entries failed: %s", e)
