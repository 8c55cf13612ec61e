"""A transaction nft rejects is counted, and the next sync is full (kube-proxy's rule)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Callable

from svcnet.agent.proxy import proxier as proxier_mod
from svcnet.agent.proxy.proxier import Proxier
from svcnet.agent.proxy.ruleset import NodeInfo

NODE = NodeInfo("node-1", ("192.168.1.2",), "10.244.0.0/16", "10.96.0.0/12")

# A stand-in for `nft -f -`: records each transaction, fails while the flag file exists.
FAKE_NFT = r"""
import pathlib, sys
d = pathlib.Path(sys.argv[1])
text = sys.stdin.read()
n = len(list(d.glob("tx-*")))
(d / f"tx-{n}").write_text(text)
sys.exit(1 if (d / "fail").exists() else 0)
"""


def service(name: str, ip: str) -> dict:
    return {"metadata": {"namespace": "default", "name": name, "resourceVersion": "1"},
            "spec": {"type": "ClusterIP", "clusterIP": ip, "clusterIPs": [ip],
                     "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}}


async def _until(predicate, timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.01)


def fake_nft(tmp_path, program: str) -> tuple[Proxier, Callable[[], list[Path]]]:
    """A Proxier whose `nft` is `program` (recording each transaction in tmp_path), and a
    function listing the recorded transactions in order."""
    script = tmp_path / "nft.py"
    script.write_text(program)
    p = Proxier(client=None, node=NODE, nft=(sys.executable, str(script), str(tmp_path), "--"),
                affinity_memory=lambda nft: {})
    p.services.cache["default/a"] = service("a", "10.96.0.10")
    return p, lambda: sorted(tmp_path.glob("tx-*"), key=lambda f: int(f.name[3:]))


def test_a_rejected_transaction_is_counted_and_the_next_sync_is_full(tmp_path):
    p, txs = fake_nft(tmp_path, FAKE_NFT)

    async def go():
        loop_task = asyncio.create_task(p._loop())
        try:
            p.wake.set()  # the initial full sync
            await _until(lambda: len(txs()) == 1 and not p.need_full)
            failures = proxier_mod.SYNC_FAILURES.value
            (tmp_path / "fail").touch()
            p.services.cache["default/b"] = service("b", "10.96.0.11")
            p._mark(("default", "b"), None)
            await _until(lambda: proxier_mod.SYNC_FAILURES.value == failures + 1)
            assert p.need_full and ("default", "b") in p.dirty  # nothing lost
            (tmp_path / "fail").unlink()
            await _until(lambda: len(txs()) == 3 and not p.need_full)
        finally:
            loop_task.cancel()

    asyncio.run(go())
    first, failed, retry = (f.read_text() for f in txs())
    assert first.startswith("add table ip svcnet\ndelete table ip svcnet\n")
    assert not failed.startswith("add table") and "10.96.0.11" in failed  # the partial that failed
    assert retry.startswith("add table ip svcnet\ndelete table ip svcnet\n")  # then a full one
    assert "10.96.0.10" in retry and "10.96.0.11" in retry


SLOW_NFT = FAKE_NFT.replace("text = sys.stdin.read()", "text = sys.stdin.read()\nimport time; time.sleep(0.3)")


def test_a_change_made_while_a_full_sync_is_applied_is_not_lost(tmp_path):
    p, txs = fake_nft(tmp_path, SLOW_NFT)

    async def go():
        loop_task = asyncio.create_task(p._loop())
        try:
            p.wake.set()
            await _until(lambda: len(txs()) == 1)  # the full sync is being applied right now
            p.services.cache["default/b"] = service("b", "10.96.0.11")
            p._mark(("default", "b"), None)
            await _until(lambda: len(txs()) == 2 and not p.dirty and p.synced.is_set())
        finally:
            loop_task.cancel()

    asyncio.run(go())
    full, partial = (f.read_text() for f in txs())
    assert "10.96.0.11" not in full
    assert "10.96.0.11 . tcp . 80" in partial  # b was programmed by the next, partial, sync
