"""The one I/O of the proxy: feed a transaction to `nft -f -`.

nft applies the whole text as one kernel transaction, so a failure leaves the table as it was.
The agent runs inside its node's network namespace, so nft runs in the current one; `nft` is the
command to run (tests point it at `ip netns exec NAME nft`). A timeout kills nft, after which the
table's state is unknown: the caller must treat it like any failure and sync fully next time.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence

from svcnet.agent.proxy.nft import NftError, Transaction


def apply(tx: Transaction | str, nft: Sequence[str] = ("nft",), timeout: float = 60.0) -> None:
    """Run `nft -f -` with the transaction's text; raise NftError with nft's stderr on failure."""
    text = tx.text() if isinstance(tx, Transaction) else tx
    try:
        proc = subprocess.run([*nft, "-f", "-"], input=text.encode(), capture_output=True,
                              timeout=timeout)
    except FileNotFoundError as e:
        raise NftError(f"cannot run {' '.join(nft)}: {e.strerror}") from None
    except subprocess.TimeoutExpired:
        raise NftError(f"{' '.join(nft)} -f - timed out after {timeout:g}s") from None
    if proc.returncode != 0:
        stderr = proc.stderr.decode(errors="replace").strip()
        raise NftError(stderr or f"{' '.join(nft)} -f - exited with status {proc.returncode}")
