"""The service proxy: Services and EndpointSlices -> one nftables table (`ip svcnet`).

ruleset.py renders the desired State and its full/partial transactions (pure); nft.py holds the
nftables data types; model.py is an in-memory nftables with a packet tracer; apply.py runs
`nft -f -`; proxier.py is the control loop; conntrack.py decides which UDP conntrack entries a
sync made stale and deletes them.
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
