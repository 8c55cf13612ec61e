"""The embedded default backend: one SQLite file, designed like k3s-io/kine.

Theory of operation
- One append-only table, `log`, is both the event log and the state: every write inserts a row
  whose id is its global revision (`name`, `created`, `deleted`, `create_revision`,
  `prev_revision` = the id of the name's previous row or 0, `value`). A delete inserts a
  tombstone row (deleted=1) carrying the deleted value. The state at revision R is, per name, the
  latest row with id <= R, unless it is a tombstone. A unique index on (name, prev_revision) makes
  compare-and-swap safe even against a second writer; an index on (name, id) serves lookups.
  An event's previous value is the row at prev_revision: compaction to R removes a row only when
  its successor is at or before R, so the log after R always has the rows its events need.
- `meta` holds `compact_revision` and, written at each compaction, `max_revision`, so a reopened
  store continues the revision sequence even when compaction removed the latest rows.
- The current state is also cached in memory (key -> KeyValue, values as bytes, plus the sorted
  keys): get(), list() at the current revision and the txn() checks never touch SQLite. A list
  at a recent past revision overlays, on that cache, the old versions of the few names written
  since; an older one runs the kine query (latest row per name with id <= R).
- All SQLite calls run synchronously on the event loop thread, and the server is the only writer:
  `txn()` validates against the cache, then inserts its rows under consecutive revisions in one
  BEGIN IMMEDIATE transaction, updates the cache and publishes the events to watchers (`WatchHub`)
  with no await in between, so revision order is commit order is event order.
- Durability: WAL with synchronous=NORMAL; a committed transaction is in the WAL file when
  txn() returns, so it survives kill -9 of the process (not a power loss).
- `compact(R)` deletes, in short transactions that let the loop breathe, each row superseded by a
  row with id <= R and each tombstone with id <= R; the current values always survive.
"""

from __future__ import annotations

import asyncio
import heapq
import sqlite3
from bisect import bisect_left, bisect_right, insort
from contextlib import contextmanager
from itertools import islice
from operator import attrgetter
from typing import AsyncIterator, Iterator

from svcnet.store.backend import (WATCH_QUEUE_LIMIT, Compacted, Create, Delete, Event,
                                  FutureRevision, KeyExists, KeyNotFound, KeyValue, ListResult, Op,
                                  RevisionMismatch, Update, WatchHub)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS log (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    created INTEGER NOT NULL,
    deleted INTEGER NOT NULL,
    create_revision INTEGER NOT NULL,
    prev_revision INTEGER NOT NULL,
    value BLOB NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS log_name_prev_revision ON log (name, prev_revision);
CREATE INDEX IF NOT EXISTS log_name_id ON log (name, id);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""

_INSERT = ("INSERT INTO log (id, name, created, deleted, create_revision, prev_revision, value) "
           "VALUES (?, ?, ?, ?, ?, ?, ?)")

# Past lists within this many revisions of the current one overlay the cache (cost ~ changes);
# older ones run the kine query (cost ~ all rows under the prefix).
_OVERLAY_MAX_CHANGES = 2_000

_COMPACT_BATCH = 10_000  # revisions compacted per transaction

_key_of = attrgetter("key")


def _prefix_end(prefix: str) -> str | None:
    """The least string above every string that starts with `prefix` (None: no such bound)."""
    while prefix:
        code = ord(prefix[-1]) + 1
        if code == 0xD800:
            code = 0xE000  # surrogates never occur in stored (UTF-8) names
        if code <= 0x10FFFF:
            return prefix[:-1] + chr(code)
        prefix = prefix[:-1]
    return None


def _name_range(column: str, prefix: str, start_after: str = "") -> tuple[str, dict[str, str]]:
    """An SQL condition for `column` starting with `prefix` and sorting after `start_after`,
    with its named parameters."""
    conditions = [f"{column} >= :prefix"]
    params = {"prefix": prefix}
    end = _prefix_end(prefix)
    if end is not None:
        conditions.append(f"{column} < :prefix_end")
        params["prefix_end"] = end
    if start_after:
        conditions.append(f"{column} > :start_after")
        params["start_after"] = start_after
    return " AND ".join(conditions), params


class SQLiteBackend:
    def __init__(self, path: str, watch_queue_limit: int = WATCH_QUEUE_LIMIT):
        self.path = str(path)
        self._conn: sqlite3.Connection | None = None
        self._revision = 0
        self._compacted = 0
        self._current: dict[str, KeyValue] = {}
        self._names: list[str] = []  # sorted keys of _current
        self._hub = WatchHub(watch_queue_limit)

    async def start(self) -> None:
        conn = self._conn = sqlite3.connect(self.path, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL").fetchone()
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA busy_timeout=5000")
        conn.execute("PRAGMA cache_size=-16384")  # KiB
        conn.executescript(_SCHEMA)
        meta = dict(conn.execute("SELECT name, value FROM meta"))
        self._compacted = meta.get("compact_revision", 0)
        max_id = conn.execute("SELECT MAX(id) FROM log").fetchone()[0] or 0
        self._revision = max(max_id, meta.get("max_revision", 0), self._compacted)
        items = self._list_from_log("", self._revision, "", 0)
        self._current = {kv.key: kv for kv in items}
        self._names = [kv.key for kv in items]

    async def close(self) -> None:
        self._hub.close()
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def current_revision(self) -> int:
        return self._revision

    def compacted_revision(self) -> int:
        return self._compacted

    async def get(self, key: str) -> KeyValue | None:
        return self._current.get(key)

    async def list(self, prefix: str, revision: int = 0, start_after: str = "",
                   limit: int = 0) -> ListResult:
        at = self._readable_revision(revision)
        if at == self._revision:
            lo, hi = self._names_range(prefix, start_after)
            more = bool(limit) and hi - lo > limit
            if more:
                hi = lo + limit
            return ListResult([self._current[n] for n in self._names[lo:hi]], at, more)
        if self._revision - at <= _OVERLAY_MAX_CHANGES:
            items = self._list_overlay(prefix, at, start_after, limit)
        else:
            items = self._list_from_log(prefix, at, start_after, limit)
        more = bool(limit) and len(items) > limit
        return ListResult(items[:limit] if more else items, at, more)

    async def txn(self, ops: list[Op]) -> list[KeyValue]:
        staged: dict[str, KeyValue | None] = {}  # the txn's own writes so far
        last_row: dict[str, int] = {}  # the id of each written name's newest row so far
        rows: list[tuple] = []
        events: list[Event] = []
        revision = self._revision
        for op in ops:
            key = op.key
            current = staged[key] if key in staged else self._current.get(key)
            revision += 1
            if isinstance(op, Create):
                if current is not None:
                    raise KeyExists(key)
                prev_row = last_row[key] if key in last_row else self._newest_row_id(key)
                kv = KeyValue(key, op.value, revision, revision)
                rows.append((revision, key, 1, 0, revision, prev_row, op.value))
                events.append(Event("PUT", kv, None))
            elif isinstance(op, (Update, Delete)):
                if current is None:
                    raise KeyNotFound(key)
                if op.expected_revision and op.expected_revision != current.mod_revision:
                    raise RevisionMismatch(key, current.mod_revision)
                if isinstance(op, Update):
                    kv = KeyValue(key, op.value, current.create_revision, revision)
                    events.append(Event("PUT", kv, current))
                else:
                    kv = KeyValue(key, current.value, current.create_revision, revision)
                    events.append(Event("DELETE", kv, current))
                rows.append((revision, key, 0, int(isinstance(op, Delete)),
                             current.create_revision, current.mod_revision, kv.value))
            else:
                raise TypeError(f"not a store op: {op!r}")
            staged[key] = None if isinstance(op, Delete) else kv
            last_row[key] = revision
        if not rows:
            return []
        with self._transaction() as conn:
            conn.executemany(_INSERT, rows)
        for event in events:
            self._apply(event)
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
        while self._compacted < revision:
            start = self._compacted
            upto = min(revision, start + _COMPACT_BATCH)
            params = {"start": start, "upto": upto}
            with self._transaction() as conn:
                # Every superseded row is the prev_revision of its successor.
                conn.execute("DELETE FROM log WHERE id IN (SELECT prev_revision FROM log "
                             "WHERE id > :start AND id <= :upto AND prev_revision > 0)", params)
                conn.execute("DELETE FROM log WHERE id > :start AND id <= :upto AND deleted = 1",
                             params)
                conn.executemany("INSERT OR REPLACE INTO meta (name, value) VALUES (?, ?)",
                                 [("compact_revision", upto), ("max_revision", self._revision)])
            self._compacted = upto
            if upto < revision:
                await asyncio.sleep(0)

    async def compact_keep(self, keep: int) -> None:
        """Compact to current_revision() - keep; a no-op if that is not past the compact point."""
        target = self._revision - keep
        if target > self._compacted:
            await self.compact(target)

    # ---- internals ----------------------------------------------------------------------------

    def _readable_revision(self, revision: int) -> int:
        """`revision` (0: the current one), if list() can read the state as of it."""
        if revision == 0:
            return self._revision
        if revision > self._revision:
            raise FutureRevision(f"revision {revision} is newer than current {self._revision}")
        if revision < self._compacted:
            raise Compacted(revision, self._compacted)
        return revision

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction: committed when the block completes, else rolled back."""
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def _apply(self, event: Event) -> None:
        """Bring the current-state cache up to date with a committed event."""
        key = event.kv.key
        if event.type == "DELETE":
            del self._current[key]
            del self._names[bisect_left(self._names, key)]
        else:
            if key not in self._current:
                insort(self._names, key)
            self._current[key] = event.kv

    def _newest_row_id(self, name: str) -> int:
        row = self._conn.execute("SELECT MAX(id) FROM log WHERE name = ?", (name,)).fetchone()
        return row[0] or 0

    def _list_from_log(self, prefix: str, at: int, start_after: str, limit: int) -> list[KeyValue]:
        """The kine query: live keys as of `at`, sorted, at most limit+1 of them (0: all)."""
        where, params = _name_range("name", prefix, start_after)
        sql = ("SELECT l.name, l.value, l.create_revision, l.id FROM "
               f"(SELECT MAX(id) AS id FROM log WHERE {where} AND id <= :at GROUP BY name) AS m "
               "CROSS JOIN log AS l ON l.id = m.id WHERE l.deleted = 0")
        params["at"] = at
        if limit:
            params["limit"] = limit + 1
            sql += " ORDER BY l.name LIMIT :limit"
        items = [KeyValue(*row) for row in self._conn.execute(sql, params)]
        if not limit:
            items.sort(key=_key_of)  # cheap: the rows come in name order (a sort in SQL is not)
        return items

    def _list_overlay(self, prefix: str, at: int, start_after: str, limit: int) -> list[KeyValue]:
        """Live keys as of `at`, sorted, at most limit+1 of them (0: all): the cached current
        values of names not written since `at`, merged with the old versions of those that were."""
        # "+name": scan the rows after `at` by id rather than every row under the prefix by name.
        where, params = _name_range("+name", prefix, start_after)
        params["at"] = at
        changed = {row[0] for row in self._conn.execute(
            f"SELECT name FROM log WHERE id > :at AND {where}", params)}
        old = [KeyValue(*row) for row in self._conn.execute(
            "SELECT l.name, l.value, l.create_revision, l.id FROM log AS l "
            "JOIN (SELECT MAX(id) AS id FROM log WHERE name IN "
            f"(SELECT name FROM log WHERE id > :at AND {where}) AND id <= :at GROUP BY name) "
            "AS m ON m.id = l.id WHERE l.deleted = 0 ORDER BY l.name", params)]
        lo, hi = self._names_range(prefix, start_after)
        unchanged = (self._current[n] for n in self._names[lo:hi] if n not in changed)
        merged = heapq.merge(unchanged, old, key=_key_of)
        return list(islice(merged, limit + 1 if limit else None))

    def _names_range(self, prefix: str, start_after: str) -> tuple[int, int]:
        """The slice of the sorted current keys that start with `prefix` and sort after
        `start_after`."""
        names = self._names
        lo = max(bisect_left(names, prefix), bisect_right(names, start_after))
        end = _prefix_end(prefix)
        return lo, len(names) if end is None else bisect_left(names, end, lo)

    def _read_events(self, prefix: str, after: int, upto: int, limit: int) -> list[Event]:
        where, params = _name_range("+l.name", prefix)  # "+": scan by id, not by name
        params.update(after=after, upto=upto, limit=limit)
        events = []
        for (rev, name, created, deleted, create_rev, prev_rev, value,
             prev_value) in self._conn.execute(
                "SELECT l.id, l.name, l.created, l.deleted, l.create_revision, l.prev_revision, "
                "l.value, p.value FROM log AS l LEFT JOIN log AS p ON p.id = l.prev_revision "
                f"WHERE l.id > :after AND l.id <= :upto AND {where} ORDER BY l.id LIMIT :limit",
                params):
            kv = KeyValue(name, value, create_rev, rev)
            if deleted:
                events.append(Event("DELETE", kv, KeyValue(name, value, create_rev, prev_rev)))
            elif created:
                events.append(Event("PUT", kv, None))
            else:
                events.append(Event("PUT", kv, KeyValue(name, prev_value, create_rev, prev_rev)))
        return events
