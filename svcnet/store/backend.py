"""The storage backend interface: a revisioned key-value log (the shape of etcd and kine).

Theory of operation
- Every write gets the next global revision (a positive integer). An object's resourceVersion is
  the revision of its last write (`mod_revision`); clients treat it as opaque.
- Keys are strings like `/registry/services/default/web`; values are bytes (JSON, without
  `metadata.resourceVersion`: the API layer fills that in from `mod_revision` on read).
- `txn()` applies several writes atomically with compare-and-swap on each key: all commit under
  consecutive revisions, or none does. A create requires the key to be absent, an update or delete
  requires the key's current `mod_revision` to equal the expected one (0 = any).
- `list()` reads the state as of a revision (0 = latest), so paginated lists are consistent.
- `watch()` yields every event after a revision, strictly in revision order; a revision older
  than the compaction point raises `Compacted`.
- Durability: when `txn()` returns, the write survives a crash (kill -9) of the process.

Implementations: `memory.MemoryBackend` (a faithful in-memory model for unit tests),
`sqlite.SQLiteBackend` (the embedded default). All must pass tests/unit/test_store_contract.py.
Both build `watch()` on `WatchHub` (below): an in-process fan-out, fed synchronously by `txn()`
right after each commit, with one bounded queue per watcher; a watcher that falls more than
`WATCH_QUEUE_LIMIT` events behind is dropped with `WatchOverflow` so writers never block.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import AsyncIterator, Callable, Protocol, Sequence


@dataclass(frozen=True)
class KeyValue:
    key: str
    value: bytes
    create_revision: int
    mod_revision: int


@dataclass(frozen=True)
class Event:
    type: str  # "PUT" (create or update) or "DELETE"
    kv: KeyValue  # for DELETE: the last value, with mod_revision = the delete's revision
    prev: KeyValue | None  # the value before this event (None for a create)

    @property
    def created(self) -> bool:
        return self.type == "PUT" and self.prev is None


@dataclass(frozen=True)
class Create:
    key: str
    value: bytes


@dataclass(frozen=True)
class Update:
    key: str
    value: bytes
    expected_revision: int = 0  # 0: any current revision


@dataclass(frozen=True)
class Delete:
    key: str
    expected_revision: int = 0


Op = Create | Update | Delete


class StoreError(Exception):
    pass


class KeyExists(StoreError):
    def __init__(self, key: str):
        super().__init__(key)
        self.key = key


class KeyNotFound(StoreError):
    def __init__(self, key: str):
        super().__init__(key)
        self.key = key


class RevisionMismatch(StoreError):
    """Compare-and-swap failed: the key's mod_revision is not the expected one."""

    def __init__(self, key: str, current: int):
        super().__init__(key)
        self.key = key
        self.current = current


class Compacted(StoreError):
    """The requested revision is older than what the log still holds."""

    def __init__(self, requested: int, compacted: int):
        super().__init__(f"revision {requested} compacted (oldest kept: {compacted})")
        self.requested = requested
        self.compacted = compacted


class FutureRevision(StoreError):
    """The requested revision is newer than the store's current revision."""


class WatchOverflow(StoreError):
    """The watcher fell too far behind the writers and was dropped; end the stream (the client
    re-lists or re-watches from its last revision)."""


@dataclass(frozen=True)
class ListResult:
    items: list[KeyValue]
    revision: int  # the revision the list was read at
    more: bool  # True if `limit` cut the list short


class Backend(Protocol):
    async def start(self) -> None: ...

    async def close(self) -> None: ...

    def current_revision(self) -> int: ...

    def compacted_revision(self) -> int: ...

    async def get(self, key: str) -> KeyValue | None: ...

    async def list(self, prefix: str, revision: int = 0, start_after: str = "",
                   limit: int = 0) -> ListResult:
        """Keys with `prefix`, sorted, strictly after `start_after`, at `revision` (0: latest).
        Raises Compacted / FutureRevision for a revision out of reach."""
        ...

    async def txn(self, ops: list[Op]) -> list[KeyValue]:
        """Apply all ops or none; returns, per op, the key's new KeyValue (for Delete: the
        deleted value with mod_revision = the delete's revision). Raises KeyExists,
        KeyNotFound, RevisionMismatch."""
        ...

    def watch(self, prefix: str, after_revision: int) -> AsyncIterator[Event]:
        """Events for keys with `prefix` with revision > after_revision, in order, then live
        ones until the consumer stops iterating. Raises Compacted (at first iteration) when
        after_revision < compacted_revision()."""
        ...

    async def compact(self, revision: int) -> None:
        """Forget history at and before `revision` (current values are kept)."""
        ...


# ---- shared by the implementations ------------------------------------------------------------

WATCH_QUEUE_LIMIT = 10_000  # live events a watcher may have pending before it is dropped

# read_events(prefix, after, upto, limit): stored events for keys with `prefix` and
# after < revision <= upto, in revision order, at most `limit` of them.
EventReader = Callable[[str, int, int, int], Sequence[Event]]


class _Subscription:
    __slots__ = ("prefix", "queue", "overflowed", "closed")

    def __init__(self, prefix: str, limit: int):
        self.prefix = prefix
        self.queue: asyncio.Queue[Event | None] = asyncio.Queue(limit)
        self.overflowed = False
        self.closed = False


class WatchHub:
    """In-process fan-out of committed events to watchers.

    A backend calls `publish()` right after each commit, synchronously and in revision order, and
    implements `watch()` with `stream()`. `publish()` never blocks: a watcher whose queue is full
    is unsubscribed, and its stream raises WatchOverflow at its next step."""

    def __init__(self, queue_limit: int = WATCH_QUEUE_LIMIT):
        self._queue_limit = queue_limit
        self._subscriptions: set[_Subscription] = set()

    def publish(self, events: Sequence[Event]) -> None:
        """Queue `events` (committed, in revision order) for every watcher of their keys."""
        for sub in list(self._subscriptions):
            for event in events:
                if event.kv.key.startswith(sub.prefix):
                    try:
                        sub.queue.put_nowait(event)
                    except asyncio.QueueFull:
                        sub.overflowed = True
                        self._subscriptions.discard(sub)
                        break

    def close(self) -> None:
        """End every stream: each returns (without error) at its next step."""
        for sub in self._subscriptions:
            sub.closed = True
            if sub.queue.empty():
                sub.queue.put_nowait(None)  # wake a waiting consumer
        self._subscriptions.clear()

    async def stream(self, prefix: str, after_revision: int, *, current_revision: Callable[[], int],
                     compacted_revision: Callable[[], int], read_events: EventReader,
                     batch: int = 1000) -> AsyncIterator[Event]:
        """The body of `Backend.watch()`: replays stored events after `after_revision` through
        `read_events`, then yields live ones, with no gap and no duplicate. Raises Compacted if
        the history it needs is (or, during the replay, becomes) compacted, WatchOverflow if the
        consumer falls too far behind."""
        if after_revision < compacted_revision():
            raise Compacted(after_revision, compacted_revision())
        sub = _Subscription(prefix, self._queue_limit)
        # Subscribe and take the replay's end in one synchronous step: every event up to `end` is
        # in the log, every later one will be published to `sub`.
        self._subscriptions.add(sub)
        end = current_revision()
        try:
            last = after_revision
            while last < end and not sub.closed:
                if last < compacted_revision():
                    raise Compacted(last, compacted_revision())
                if sub.overflowed:
                    raise self._overflow(prefix)
                events = read_events(prefix, last, end, batch)
                for event in events:
                    yield event
                if len(events) < batch:
                    break
                last = events[-1].kv.mod_revision
            floor = max(after_revision, end)
            while not sub.closed:
                if sub.overflowed:
                    raise self._overflow(prefix)
                event = await sub.queue.get()
                if event is None:
                    break
                if event.kv.mod_revision > floor:
                    yield event
        finally:
            self._subscriptions.discard(sub)

    def _overflow(self, prefix: str) -> WatchOverflow:
        return WatchOverflow(f"watch on {prefix!r} fell more than {self._queue_limit} events "
                             "behind")
