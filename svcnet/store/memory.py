"""An in-memory backend: a faithful model of the revisioned store, for unit tests.

Theory of operation
- Each key has a version history `[(revision, KeyValue | None)]` in revision order (None: a
  tombstone), and `_keys` holds every key that has a history, sorted, for prefix scans. The
  current value of a key is the last entry of its history; the value at revision R is the last
  entry with revision <= R.
- `_log` holds every event after the compaction point in revision order; watches replay it and
  then follow live events through `WatchHub`.
- `txn()` validates all ops against the current state plus the txn's own earlier ops (so a later
  op sees an earlier one's write), and only then applies them: all or nothing, consecutive
  revisions, no await in between, so concurrent callers are serialized by the event loop.
- `compact(R)` forgets what a real store forgets: versions superseded at or before R, tombstones
  at or before R, and events at or before R.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right, insort
from operator import itemgetter
from typing import AsyncIterator

from svcnet.store.backend import (WATCH_QUEUE_LIMIT, Compacted, Create, Delete, Event,
                                  FutureRevision, KeyExists, KeyNotFound, KeyValue, ListResult, Op,
                                  RevisionMismatch, Update, WatchHub)

Version = tuple[int, KeyValue | None]  # (revision, value as of it; None: deleted)

_revision_of = itemgetter(0)


def _event_revision(event: Event) -> int:
    return event.kv.mod_revision


class MemoryBackend:
    def __init__(self, watch_queue_limit: int = WATCH_QUEUE_LIMIT):
        self._revision = 0
        self._compacted = 0
        self._history: dict[str, list[Version]] = {}
        self._keys: list[str] = []
        self._log: list[Event] = []
        self._hub = WatchHub(watch_queue_limit)

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        self._hub.close()

    def current_revision(self) -> int:
        return self._revision

    def compacted_revision(self) -> int:
        return self._compacted

    async def get(self, key: str) -> KeyValue | None:
        return self._current(key)

    async def list(self, prefix: str, revision: int = 0, start_after: str = "",
                   limit: int = 0) -> ListResult:
        at = self._readable_revision(revision)
        latest = at == self._revision
        keys = self._keys
        items: list[KeyValue] = []
        more = False
        i = max(bisect_left(keys, prefix), bisect_right(keys, start_after))
        while i < len(keys) and keys[i].startswith(prefix):
            history = self._history[keys[i]]
            i += 1
            if latest:
                kv = history[-1][1]
            else:
                j = bisect_right(history, at, key=_revision_of)
                kv = history[j - 1][1] if j else None
            if kv is None:
                continue
            if limit and len(items) == limit:
                more = True
                break
            items.append(kv)
        return ListResult(items, at, more)

    async def txn(self, ops: list[Op]) -> list[KeyValue]:
        staged: dict[str, KeyValue | None] = {}
        events: list[Event] = []
        revision = self._revision
        for op in ops:
            current = staged[op.key] if op.key in staged else self._current(op.key)
            revision += 1
            if isinstance(op, Create):
                if current is not None:
                    raise KeyExists(op.key)
                kv = KeyValue(op.key, op.value, revision, revision)
                events.append(Event("PUT", kv, None))
            elif isinstance(op, (Update, Delete)):
                if current is None:
                    raise KeyNotFound(op.key)
                if op.expected_revision and op.expected_revision != current.mod_revision:
                    raise RevisionMismatch(op.key, current.mod_revision)
                if isinstance(op, Update):
                    kv = KeyValue(op.key, op.value, current.create_revision, revision)
                    events.append(Event("PUT", kv, current))
                else:
                    kv = KeyValue(op.key, current.value, current.create_revision, revision)
                    events.append(Event("DELETE", kv, current))
            else:
                raise TypeError(f"not a store op: {op!r}")
            staged[op.key] = None if isinstance(op, Delete) else kv
        for event in events:
            key = event.kv.key
            history = self._history.get(key)
            if history is None:
                history = self._history[key] = []
                insort(self._keys, key)
            history.append((event.kv.mod_revision, None if event.type == "DELETE" else event.kv))
        self._log.extend(events)
        self._revision = revision
        self._hub.publish(events)
        return [event.kv for event in events]

    def watch(self, prefix: str, after_revision: int) -> AsyncIterator[Event]:
        return self._hub.stream(prefix, after_revision, current_revision=self.current_revision,
                                compacted_revision=self.compacted_revision,
                                read_events=self._read_events)

    async def compact(self, revision: int) -> None:
        if revision > self._revision:
            raise FutureRevision(f"cannot compact to {revision}: current is {self._revision}")
        if revision <= self._compacted:
            return
        for key in list(self._keys):
            history = self._history[key]
            n = bisect_right(history, revision, key=_revision_of)  # versions at or before
            keep_from = n - 1 if n and history[n - 1][1] is not None else n
            del history[:keep_from]
            if not history:
                del self._history[key]
                del self._keys[bisect_left(self._keys, key)]
        del self._log[:bisect_right(self._log, revision, key=_event_revision)]
        self._compacted = revision

    async def compact_keep(self, keep: int) -> None:
        """Compact to current_revision() - keep; a no-op if that is not past the compact point."""
        target = self._revision - keep
        if target > self._compacted:
            await self.compact(target)

    def _current(self, key: str) -> KeyValue | None:
        history = self._history.get(key)
        return history[-1][1] if history else None

    def _readable_revision(self, revision: int) -> int:
        """`revision` (0: the current one), if list() can read the state as of it."""
        if revision == 0:
            return self._revision
        if revision > self._revision:
            raise FutureRevision(f"revision {revision} is newer than current {self._revision}")
        if revision < self._compacted:
            raise Compacted(revision, self._compacted)
        return revision

    def _read_events(self, prefix: str, after: int, upto: int, limit: int) -> list[Event]:
        log = self._log
        events: list[Event] = []
        for i in range(bisect_right(log, after, key=_event_revision), len(log)):
            event = log[i]
            if event.kv.mod_revision > upto or len(events) == limit:
                break
            if event.kv.key.startswith(prefix):
                events.append(event)
        return events
