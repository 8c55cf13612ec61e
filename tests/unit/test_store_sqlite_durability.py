"""SQLiteBackend across restarts and crashes: revisions continue, acknowledged writes survive."""

from __future__ import annotations

import asyncio
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from svcnet.store.backend import Create, Delete, Update
from svcnet.store.sqlite import SQLiteBackend

REPO = Path(__file__).resolve().parents[2]
PREFIX = "/registry/crash/"

# Writes keys forever, printing "key revision" once each write is acknowledged.
WRITER = f"""
import asyncio, sys
from svcnet.store.backend import Create
from svcnet.store.sqlite import SQLiteBackend

async def main():
    store = SQLiteBackend(sys.argv[1])
    await store.start()
    i = 0
    while True:
        [kv] = await store.txn([Create(f"{PREFIX}k{{i:07d}}", b"value-%d" % i)])
        print(kv.key, kv.mod_revision, flush=True)
        i += 1

asyncio.run(main())
"""


async def reopen(path: Path) -> SQLiteBackend:
    store = SQLiteBackend(str(path))
    await store.start()
    return store


def test_restart_continues_revisions_and_keeps_values(tmp_path):
    path = tmp_path / "store.db"

    async def first_life():
        store = await reopen(path)
        await store.txn([Create("/registry/a", b"a1"), Create("/registry/b", b"b1")])
        await store.txn([Update("/registry/a", b"a2", 1)])
        past = store.current_revision()
        await store.txn([Create("/registry/c", b"c1")])
        await store.txn([Delete("/registry/c")])
        state = (await store.list("/registry/")).items
        old_state = (await store.list("/registry/", past)).items
        await store.close()
        return state, old_state, past

    async def second_life(state, old_state, past):
        store = await reopen(path)
        assert store.current_revision() == 5
        assert (await store.list("/registry/")).items == state
        assert (await store.list("/registry/", past)).items == old_state
        # The latest rows (c's create and tombstone) are compacted away: revision 5 is still
        # spent, and stays so across the next restart too.
        await store.compact(5)
        assert (await store.list("/registry/")).items == state
        await store.close()
        store = await reopen(path)
        assert (store.current_revision(), store.compacted_revision()) == (5, 5)
        assert (await store.list("/registry/")).items == state
        [kv] = await store.txn([Create("/registry/c", b"c2")])
        assert (kv.create_revision, kv.mod_revision) == (6, 6)
        event = await asyncio.wait_for(anext(store.watch("/registry/", 5)), 5)
        assert event.kv == kv and event.prev is None
        await store.close()

    state, old_state, past = asyncio.run(first_life())
    assert [kv.mod_revision for kv in state] == [3, 2]
    asyncio.run(second_life(state, old_state, past))


def test_acknowledged_writes_survive_kill_9(tmp_path):
    path = tmp_path / "store.db"
    with open(tmp_path / "writer.stderr", "w") as stderr:
        writer = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], cwd=REPO,
                                  stdout=subprocess.PIPE, stderr=stderr, text=True)
    lines: queue.Queue[str | None] = queue.Queue()

    def read_stdout():
        for line in writer.stdout:
            lines.put(line)
        lines.put(None)

    reader = threading.Thread(target=read_stdout, daemon=True)
    reader.start()
    acknowledged: dict[str, int] = {}
    try:
        deadline = time.monotonic() + 60
        while len(acknowledged) < 200:
            line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
            assert line is not None, (tmp_path / "writer.stderr").read_text()
            key, revision = line.split()
            acknowledged[key] = int(revision)
        os.kill(writer.pid, signal.SIGKILL)
        assert writer.wait(timeout=30) == -signal.SIGKILL
    finally:
        if writer.poll() is None:
            writer.kill()
            writer.wait()
    reader.join(timeout=30)
    while (line := lines.get_nowait()) is not None:
        if line.endswith("\n"):  # a line cut by the kill was not acknowledged
            key, revision = line.split()
            acknowledged[key] = int(revision)

    async def check():
        store = await reopen(path)
        for key, revision in acknowledged.items():
            kv = await store.get(key)
            assert kv is not None, f"acknowledged write {key}@{revision} lost"
            assert (kv.mod_revision, kv.value) == (revision, f"value-{int(key[-7:])}".encode())
        current = store.current_revision()
        assert current >= max(acknowledged.values())
        stored = (await store.list(PREFIX)).items
        assert sorted(kv.mod_revision for kv in stored) == list(range(1, current + 1))
        [kv] = await store.txn([Create(PREFIX + "after-crash", b"x")])
        assert kv.mod_revision == current + 1
        await store.close()

    asyncio.run(check())
