"""The service proxy: Services and EndpointSlices -> one nftables table (`ip svcnet`).

ruleset.py renders the desired State and its full/partial transactions (pure); nft.py holds the
nftables data types; model.py is an in-memory nftables with a packet tracer; apply.py runs
`nft -f -`.
"""

from svcnet.agent.proxy.nft import NftError, Transaction
from svcnet.agent.proxy.ruleset import (
    NodeInfo,
    ServicePortKey,
    State,
    desired,
    full_transaction,
    partial_transaction,
)

__all__ = [
    "NftError", "NodeInfo", "ServicePortKey", "State", "Transaction",
    "desired", "full_transaction", "partial_transaction",
]
