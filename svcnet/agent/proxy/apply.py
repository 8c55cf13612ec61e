"""The proxy's I/O with nftables: feed a transaction to `nft -f -`; read the affinity memory.

nft applies the whole text as one kernel transaction, so a failure leaves the table as it was.
The agent runs inside its node's network namespace, so nft runs in the current one; `nft` is the
command to run (tests point it at `ip netns exec NAME nft`). A timeout kills nft, after which the
table's state is unknown: the caller must treat it like any failure and sync fully next time.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from svcnet.agent.proxy.nft import NftError, Transaction


def apply(tx: Transaction | str, nft: Sequence[str] = ("nft",), timeout: float = 60.0) -> None:
    """Run `nft -f -` with the transaction's text; raise NftError with nft's stderr on failure."""
    text = tx.text() if isinstance(tx, Transaction) else tx
    # nft reads the text from an in-memory file rather than a pipe: a pipe (2-5 MB for a full
    # sync) needs a thread of this process to refill it 64 KB at a time while nft parses, and
    # that thread must take the GIL from the agent's event loop each time.
    try:
        with open(os.memfd_create("svcnet-nft"), "w+b") as stdin:
            stdin.write(text.encode())
            stdin.seek(0)
            proc = subprocess.run([*nft, "-f", "-"], stdin=stdin, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE, timeout=timeout)
    except FileNotFoundError as e:
        raise NftError(f"cannot run {' '.join(nft)}: {e.strerror}") from None
    except subprocess.TimeoutExpired:
        raise NftError(f"{' '.join(nft)} -f - timed out after {timeout:g}s") from None
    if proc.returncode != 0:
        stderr = proc.stderr.decode(errors="replace").strip()
        raise NftError(stderr or f"{' '.join(nft)} -f - exited with status {proc.returncode}")


def affinity_memory(nft: Sequence[str] = ("nft",), table: str = "svcnet", timeout: float = 60.0
                    ) -> dict[str, dict[str, int]]:
    """What the kernel remembers for session affinity: affinity set name -> {client address:
    seconds until it expires}, so that a full sync (which replaces the table) can write it back.
    The set names come from a terse listing (no elements: a few ms whatever the table holds),
    then only the affinity sets are read, one `nft list set` each (~4 ms), a few at a time:
    listing all sets with their elements would cost ~1 s at 10,000 Services. Raises NftError
    when nft fails."""
    def run(*args: str) -> list[dict]:
        try:
            proc = subprocess.run([*nft, "-j", *args], capture_output=True, timeout=timeout)
        except (FileNotFoundError, subprocess.TimeoutExpired) as e:
            raise NftError(f"cannot list nftables objects: {e}") from None
        if proc.returncode != 0:
            raise NftError(proc.stderr.decode(errors="replace").strip())
        return json.loads(proc.stdout or b'{"nftables": []}')["nftables"]

    names = [o["set"]["name"] for o in run("-t", "list", "sets", "ip")
             if o.get("set", {}).get("table") == table and o["set"]["name"].startswith("aff-")]
    out: dict[str, dict[str, int]] = {}
    if not names:
        return out
    with ThreadPoolExecutor(max_workers=min(8, len(names))) as pool:
        listings = list(pool.map(lambda name: run("list", "set", "ip", table, name), names))
    for listing in listings:
        for o in listing:
            s = o.get("set") or {}
            for e in s.get("elem") or ():
                if isinstance(e, dict) and isinstance(e.get("elem"), dict) and e["elem"].get("expires"):
                    out.setdefault(s["name"], {})[e["elem"]["val"]] = int(e["elem"]["expires"])
    return out
