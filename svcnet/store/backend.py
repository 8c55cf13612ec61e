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
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import AsyncIterator, Protocol


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
