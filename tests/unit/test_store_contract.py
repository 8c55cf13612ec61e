"""The contract every store backend (svcnet/store/backend.py) must meet, run against each one.

"sqlite-log-query" is SQLiteBackend with past-revision lists forced through the kine query
instead of the cache overlay, so both of its read paths are held to the contract.
"""

from __future__ import annotations

import asyncio
import random

import pytest

from svcnet.store import sqlite as sqlite_module
from svcnet.store.backend import (Compacted, Create, Delete, FutureRevision, KeyExists,
                                  KeyNotFound, KeyValue, RevisionMismatch, Update, WatchOverflow)
from svcnet.store.memory import MemoryBackend
from svcnet.store.sqlite import SQLiteBackend

TIMEOUT = 5.0  # seconds an expected event may take: only reached when a test fails
SVC = "/registry/services/"


@pytest.fixture
def run():
    """run(coro): run a coroutine to completion on the test's event loop."""
    with asyncio.Runner() as runner:
        yield runner.run


@pytest.fixture(params=["memory", "sqlite", "sqlite-log-query"])
def new_backend(request, tmp_path, run, monkeypatch):
    """new_backend(**kwargs): a started backend of the parametrized kind, closed at teardown."""
    if request.param == "sqlite-log-query":
        monkeypatch.setattr(sqlite_module, "_OVERLAY_MAX_CHANGES", -1)
    made = []

    def make(**kwargs):
        if request.param == "memory":
            backend = MemoryBackend(**kwargs)
        else:
            backend = SQLiteBackend(str(tmp_path / f"store{len(made)}.db"), **kwargs)
        run(backend.start())
        made.append(backend)
        return backend

    yield make
    for backend in made:
        run(backend.close())


@pytest.fixture
def backend(new_backend):
    return new_backend()


async def create(backend, key: str, value: bytes = b"v") -> KeyValue:
    return (await backend.txn([Create(key, value)]))[0]


async def take(stream, n: int) -> list:
    """The next n events of a watch stream (fails the test if they do not come)."""
    return [await asyncio.wait_for(anext(stream), TIMEOUT) for _ in range(n)]


async def collect(stream, n: int) -> list:
    """The next n events of a watch stream, consumed as fast as they come."""
    events = []
    async for event in stream:
        events.append(event)
        if len(events) == n:
            return events


def keys_of(items) -> list[str]:
    return [kv.key for kv in items]


# ---- writes and reads -----------------------------------------------------------------------

def test_create_and_get(backend, run):
    async def body():
        assert backend.current_revision() == 0
        kv = await create(backend, SVC + "a", b"one")
        assert kv == KeyValue(SVC + "a", b"one", 1, 1)
        assert await backend.get(SVC + "a") == kv
        assert await backend.get(SVC + "b") is None
        assert backend.current_revision() == 1
    run(body())


def test_create_existing_key_raises_key_exists(backend, run):
    async def body():
        await create(backend, SVC + "a")
        with pytest.raises(KeyExists) as err:
            await create(backend, SVC + "a")
        assert err.value.key == SVC + "a"
        assert backend.current_revision() == 1
    run(body())


def test_update_checks_expected_revision(backend, run):
    async def body():
        first = await create(backend, SVC + "a", b"1")
        [second] = await backend.txn([Update(SVC + "a", b"2", first.mod_revision)])
        assert second == KeyValue(SVC + "a", b"2", first.create_revision, 2)
        with pytest.raises(RevisionMismatch) as err:
            await backend.txn([Update(SVC + "a", b"3", first.mod_revision)])
        assert (err.value.key, err.value.current) == (SVC + "a", 2)
        [third] = await backend.txn([Update(SVC + "a", b"3")])  # 0: any revision
        assert (third.value, third.mod_revision, third.create_revision) == (b"3", 3, 1)
        assert await backend.get(SVC + "a") == third
    run(body())


def test_update_or_delete_of_missing_key_raises_key_not_found(backend, run):
    async def body():
        for op in (Update(SVC + "x", b"v"), Update(SVC + "x", b"v", 5), Delete(SVC + "x"),
                   Delete(SVC + "x", 5)):
            with pytest.raises(KeyNotFound) as err:
                await backend.txn([op])
            assert err.value.key == SVC + "x"
        assert backend.current_revision() == 0
    run(body())


def test_delete_returns_deleted_value_at_delete_revision(backend, run):
    async def body():
        kv = await create(backend, SVC + "a", b"gone")
        with pytest.raises(RevisionMismatch) as err:
            await backend.txn([Delete(SVC + "a", kv.mod_revision + 7)])
        assert err.value.current == kv.mod_revision
        [deleted] = await backend.txn([Delete(SVC + "a", kv.mod_revision)])
        assert deleted == KeyValue(SVC + "a", b"gone", kv.create_revision, 2)
        assert await backend.get(SVC + "a") is None
        again = await create(backend, SVC + "a", b"back")  # a new life: a new create_revision
        assert again == KeyValue(SVC + "a", b"back", 3, 3)
    run(body())


def test_txn_is_all_or_nothing(backend, run):
    async def body():
        await create(backend, SVC + "b")
        stream = backend.watch(SVC, 1)
        for bad in (Update(SVC + "b", b"x", 99), Create(SVC + "b", b"x"), Delete(SVC + "zz")):
            with pytest.raises((RevisionMismatch, KeyExists, KeyNotFound)):
                await backend.txn([Create(SVC + "a", b"x"), bad, Create(SVC + "c", b"x")])
            assert backend.current_revision() == 1
            assert await backend.get(SVC + "a") is None
            assert await backend.get(SVC + "c") is None
            assert keys_of((await backend.list(SVC)).items) == [SVC + "b"]
        # The next write gets the next revision, and no event leaked from the failed txns.
        kv = await create(backend, SVC + "d")
        assert kv.mod_revision == 2
        [event] = await take(stream, 1)
        assert event.kv == kv
    run(body())


def test_txn_ops_get_consecutive_revisions(backend, run):
    async def body():
        await create(backend, SVC + "x")
        kvs = await backend.txn([Create(SVC + "a", b"1"), Update(SVC + "x", b"2", 1),
                                 Create(SVC + "b", b"3"), Delete(SVC + "x")])
        assert [kv.mod_revision for kv in kvs] == [2, 3, 4, 5]
        assert backend.current_revision() == 5
        assert kvs[3] == KeyValue(SVC + "x", b"2", 1, 5)
        assert await backend.txn([]) == []
        assert backend.current_revision() == 5
    run(body())


# ---- lists ----------------------------------------------------------------------------------

def test_list_is_sorted_and_prefix_bounded(backend, run):
    async def body():
        for key in (SVC + "ns/c", "/registry/servicesx/ns/a", SVC + "ns/a", "/registry/service",
                    "/registry/pods/ns/a", SVC + "mm/z", SVC + "ns/b"):
            await create(backend, key)
        result = await backend.list(SVC)
        assert keys_of(result.items) == [SVC + "mm/z", SVC + "ns/a", SVC + "ns/b", SVC + "ns/c"]
        assert (result.revision, result.more) == (7, False)
        assert keys_of((await backend.list(SVC + "ns/")).items) == [
            SVC + "ns/a", SVC + "ns/b", SVC + "ns/c"]
        assert len((await backend.list("")).items) == 7
        assert (await backend.list("/registry/nothing/")).items == []
    run(body())


def test_list_pages_with_start_after_and_limit(backend, run):
    async def body():
        for i in range(5):
            await create(backend, f"{SVC}k{i}")
        await create(backend, "/registry/servicesx/k9")
        first = await backend.list(SVC, limit=2)
        assert keys_of(first.items) == [SVC + "k0", SVC + "k1"] and first.more
        second = await backend.list(SVC, first.revision, first.items[-1].key, 2)
        assert keys_of(second.items) == [SVC + "k2", SVC + "k3"] and second.more
        last = await backend.list(SVC, first.revision, second.items[-1].key, 2)
        assert keys_of(last.items) == [SVC + "k4"] and not last.more
        exact = await backend.list(SVC, start_after=SVC + "k2", limit=2)
        assert keys_of(exact.items) == [SVC + "k3", SVC + "k4"] and not exact.more
        # start_after before the prefix, or past it
        assert len((await backend.list(SVC, start_after="/registry/a")).items) == 5
        assert (await backend.list(SVC, start_after=SVC + "z")).items == []
    run(body())


def test_list_at_past_revision_sees_old_state(backend, run):
    async def body():
        a = await create(backend, SVC + "a", b"a1")
        b = await create(backend, SVC + "b", b"b1")
        await create(backend, "/registry/pods/p")
        past = backend.current_revision()
        await backend.txn([Update(SVC + "a", b"a2"), Delete(SVC + "b"), Create(SVC + "c", b"c1")])
        await backend.txn([Delete(SVC + "c")])
        await create(backend, SVC + "b", b"b2")

        old = await backend.list(SVC, past)
        assert old.items == [a, b] and old.revision == past and not old.more
        assert keys_of((await backend.list(SVC, past, limit=1)).items) == [SVC + "a"]
        assert (await backend.list(SVC, past, limit=1)).more
        assert (await backend.list(SVC, past, SVC + "a")).items == [b]
        middle = await backend.list(SVC, past + 3)
        assert [(kv.key, kv.value) for kv in middle.items] == [(SVC + "a", b"a2"),
                                                               (SVC + "c", b"c1")]
        latest = await backend.list(SVC)
        assert [(kv.key, kv.value) for kv in latest.items] == [(SVC + "a", b"a2"),
                                                               (SVC + "b", b"b2")]
        assert latest.revision == backend.current_revision()
        assert (await backend.list(SVC, backend.current_revision())).items == latest.items
    run(body())


def test_list_out_of_reach_revisions(backend, run):
    async def body():
        for i in range(4):
            await create(backend, f"{SVC}k{i}")
        with pytest.raises(FutureRevision):
            await backend.list(SVC, 5)
        await backend.compact(3)
        assert backend.compacted_revision() == 3
        with pytest.raises(Compacted) as err:
            await backend.list(SVC, 2)
        assert (err.value.requested, err.value.compacted) == (2, 3)
        assert keys_of((await backend.list(SVC, 3)).items) == [SVC + "k0", SVC + "k1",
                                                               SVC + "k2"]
    run(body())


# ---- watches --------------------------------------------------------------------------------

def test_watch_replays_from_revision(backend, run):
    async def body():
        for i in range(5):
            await create(backend, f"{SVC}k{i}")
        events = await take(backend.watch(SVC, 2), 3)
        assert [(e.type, e.kv.key, e.kv.mod_revision) for e in events] == [
            ("PUT", SVC + "k2", 3), ("PUT", SVC + "k3", 4), ("PUT", SVC + "k4", 5)]
        assert all(e.created for e in events)
    run(body())


def test_watch_delivers_live_events(backend, run):
    async def body():
        stream = backend.watch(SVC, backend.current_revision())
        consumer = asyncio.ensure_future(take(stream, 2))
        await asyncio.sleep(0)
        kv1 = await create(backend, SVC + "a")
        kv2 = (await backend.txn([Update(SVC + "a", b"2")]))[0]
        assert [e.kv for e in await consumer] == [kv1, kv2]
    run(body())


def test_watch_filters_by_prefix(backend, run):
    async def body():
        await create(backend, "/registry/servicesx/early")
        await create(backend, SVC + "early")
        stream = backend.watch(SVC, 0)
        [replayed] = await take(stream, 1)
        assert replayed.kv.key == SVC + "early"
        await create(backend, "/registry/servicesx/late")
        await create(backend, "/registry/pods/late")
        await create(backend, SVC + "late")
        [live] = await take(stream, 1)
        assert (live.kv.key, live.kv.mod_revision) == (SVC + "late", 5)
    run(body())


def test_watch_from_compacted_revision_raises_compacted(backend, run):
    async def body():
        for i in range(4):
            await create(backend, f"{SVC}k{i}")
        await backend.compact(3)
        with pytest.raises(Compacted):
            await anext(backend.watch(SVC, 2))
        [event] = await take(backend.watch(SVC, 3), 1)  # the compact point itself is fine
        assert event.kv.mod_revision == 4
    run(body())


def test_watch_events_carry_previous_values(backend, run):
    async def body():
        await create(backend, "/registry/pods/x")
        stream = backend.watch(SVC, 1)
        v1 = await create(backend, SVC + "a", b"v1")
        v2 = (await backend.txn([Update(SVC + "a", b"v2")]))[0]
        gone = (await backend.txn([Delete(SVC + "a")]))[0]
        expected = [("PUT", v1, None), ("PUT", v2, v1),
                    ("DELETE", KeyValue(SVC + "a", b"v2", 2, 4), v2)]
        assert gone == expected[2][1]
        live = [(e.type, e.kv, e.prev) for e in await take(stream, 3)]
        replayed = [(e.type, e.kv, e.prev) for e in await take(backend.watch(SVC, 1), 3)]
        assert live == replayed == expected
    run(body())


def test_watch_orders_events_of_concurrent_writers(backend, run):
    async def body():
        stream = backend.watch(SVC, 0)
        results = await asyncio.gather(*(create(backend, f"{SVC}k{i:03d}", str(i).encode())
                                         for i in range(200)))
        assert sorted(kv.mod_revision for kv in results) == list(range(1, 201))
        events = await take(stream, 200)
        assert [e.kv.mod_revision for e in events] == list(range(1, 201))
        assert sorted((e.kv for e in events), key=lambda kv: kv.key) == results
    run(body())


def test_watch_joins_replay_and_live_without_gap_or_duplicate(backend, run):
    async def body():
        for i in range(2500):  # more than one replay batch
            await create(backend, f"{SVC}k{i}")
        stream = backend.watch(SVC, 0)
        events = await take(stream, 1)
        for i in range(2500, 2600):  # written while the replay is in progress
            await create(backend, f"{SVC}k{i}")
        events += await take(stream, 2599)
        assert [e.kv.mod_revision for e in events] == list(range(1, 2601))
        later = asyncio.ensure_future(take(stream, 1))
        await asyncio.sleep(0.01)
        assert not later.done()  # nothing more, in particular no duplicate
        await create(backend, SVC + "last")
        assert (await later)[0].kv.mod_revision == 2601
    run(body())


def test_watch_raises_compacted_if_its_replay_is_compacted_away(backend, run):
    async def body():
        for i in range(2500):
            await create(backend, f"{SVC}k{i}")
        stream = backend.watch(SVC, 0)
        await take(stream, 1)
        await backend.compact(2000)
        with pytest.raises(Compacted):
            await take(stream, 2499)
    run(body())


def test_watcher_that_falls_behind_is_dropped(new_backend, run):
    backend = new_backend(watch_queue_limit=10)

    async def body():
        slow = backend.watch(SVC, 0)
        fast = backend.watch(SVC, 0)
        fast_events = asyncio.ensure_future(asyncio.wait_for(collect(fast, 30), TIMEOUT))
        slow_first = asyncio.ensure_future(anext(slow))
        await asyncio.sleep(0)
        await create(backend, SVC + "first")
        await asyncio.wait_for(slow_first, TIMEOUT)  # the slow watcher is live, then stops reading
        for i in range(29):  # writers are never blocked by it
            await create(backend, f"{SVC}k{i}")
            await asyncio.sleep(0)
        assert len(await fast_events) == 30
        with pytest.raises(WatchOverflow):
            await take(slow, 30)
    run(body())


def test_close_ends_watches(new_backend, run):
    backend = new_backend()

    async def body():
        stream = backend.watch(SVC, 0)
        waiting = asyncio.ensure_future(anext(stream))
        await asyncio.sleep(0.01)
        await backend.close()
        with pytest.raises(StopAsyncIteration):
            await asyncio.wait_for(waiting, TIMEOUT)
    run(body())


# ---- compaction -----------------------------------------------------------------------------

def test_compaction_keeps_current_values(backend, run):
    async def body():
        for i in range(20):
            await create(backend, f"{SVC}k{i:02d}", b"0")
        for round_ in range(1, 4):
            for i in range(0, 20, round_):
                await backend.txn([Update(f"{SVC}k{i:02d}", str(round_).encode())])
        for i in range(0, 20, 5):
            await backend.txn([Delete(f"{SVC}k{i:02d}")])
        await create(backend, SVC + "k00", b"reborn")
        before = (await backend.list(SVC)).items
        revision = backend.current_revision()

        await backend.compact(revision)
        assert backend.compacted_revision() == revision
        assert backend.current_revision() == revision
        assert (await backend.list(SVC)).items == before
        assert (await backend.list(SVC, revision)).items == before
        for kv in before:
            assert await backend.get(kv.key) == kv
        # Writes go on where they were, also to keys whose history was compacted away.
        kv = await create(backend, SVC + "k05", b"new")
        assert kv.mod_revision == revision + 1
        [updated] = await backend.txn([Update(SVC + "k01", b"4", before[1].mod_revision)])
        assert updated.create_revision == before[1].create_revision
        [event, _] = await take(backend.watch(SVC, revision), 2)
        assert event.kv == kv and event.prev is None
    run(body())


def test_compact_keep_and_idempotence(backend, run):
    async def body():
        for i in range(10):
            await create(backend, f"{SVC}k{i}")
        await backend.compact_keep(4)
        assert backend.compacted_revision() == 6
        await backend.compact_keep(8)  # would go backwards: no-op
        await backend.compact(5)
        assert backend.compacted_revision() == 6
        with pytest.raises(FutureRevision):
            await backend.compact(11)
        assert len((await backend.list(SVC, 6)).items) == 6
        assert len((await backend.list(SVC)).items) == 10
    run(body())


def test_lists_and_watches_agree_with_a_model_over_random_history(backend, run):
    rng = random.Random(7)
    keys = [f"{prefix}{i:02d}" for prefix in (SVC + "a/", SVC + "b/", "/registry/pods/")
            for i in range(12)]

    async def body():
        model: dict[str, bytes] = {}
        snapshots = {0: {}}  # revision -> {key: value} as of it (each op has its revision)
        svc_writes = 0
        for step in range(300):
            ops = []
            revision = backend.current_revision()
            for key in rng.sample(keys, rng.choice((1, 1, 1, 2, 3))):
                value = f"{key}@{step}".encode()
                if key not in model:
                    ops.append(Create(key, value))
                    model[key] = value
                elif rng.random() < 0.3:
                    ops.append(Delete(key))
                    del model[key]
                else:
                    ops.append(Update(key, value))
                    model[key] = value
                revision += 1
                snapshots[revision] = dict(model)
            await backend.txn(ops)
            assert backend.current_revision() == revision
            svc_writes += sum(op.key.startswith(SVC) for op in ops)
        last = backend.current_revision()

        async def check_lists(revision):
            state = snapshots[revision]
            for prefix in (SVC, SVC + "a/", ""):
                expected = sorted((k, v) for k, v in state.items() if k.startswith(prefix))
                whole = await backend.list(prefix, revision)
                assert [(kv.key, kv.value) for kv in whole.items] == expected
                paged, after = [], ""
                while True:
                    page = await backend.list(prefix, revision, after, 5)
                    paged += page.items
                    if not page.more:
                        break
                    after = page.items[-1].key
                assert paged == whole.items

        for revision in rng.sample(range(1, last + 1), 25) + [last]:
            await check_lists(revision)
        # Replaying the watch from the start rebuilds the state, event by event.
        replayed: dict[str, bytes] = {}
        for event in await take(backend.watch(SVC, 0), svc_writes):
            if event.type == "DELETE":
                assert replayed.pop(event.kv.key) == event.prev.value
            else:
                assert replayed.get(event.kv.key) == (event.prev and event.prev.value)
                replayed[event.kv.key] = event.kv.value
        assert replayed == {k: v for k, v in model.items() if k.startswith(SVC)}
        compact_at = last // 2
        await backend.compact(compact_at)
        for revision in rng.sample(range(compact_at, last + 1), 10):
            await check_lists(revision)
    run(body())
