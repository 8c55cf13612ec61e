"""`svcnet down`: stop this node's pods and remove everything svcnet made on it.

Pods (their processes, sandbox holders, network namespaces, veths, per-pod files) go through
the pod runtime's teardown; then the nftables table `svcnet` and the bridge with its routes,
and the link holding the LoadBalancer addresses (`svcnet-lb0`).
Nothing else on the machine is touched. Safe to run twice, and with the agent stopped.
"""

from __future__ import annotations

import logging
import subprocess
from pathlib import Path

from svcnet.agent.agent import read_node_state
from svcnet.agent.announce import LINK, DummyLink

log = logging.getLogger("svcnet.down")


async def down(data_dir: Path) -> None:
    from svcnet.agent.runtime import PodRuntime

    from svcnet.agent.dns.node import stop_server

    if stop_server(data_dir):
        log.info("stopped the cluster DNS server")
    state = read_node_state(data_dir)
    if state is not None:
        runtime = PodRuntime(data_dir, state["nodeName"], state["nodeIP"], state["podCIDR"],
                             state.get("serviceCIDR", "10.96.0.0/12"))
        await runtime.teardown()
        log.info("removed the pods and network of node %s", state["nodeName"])
    for family in ("ip", "ip6"):
        r = subprocess.run(["nft", "delete", "table", family, "svcnet"], capture_output=True, text=True)
        if r.returncode == 0:
            log.info("deleted nftables table %s svcnet", family)
    if DummyLink().delete():
        log.info("deleted the LoadBalancer address link %s", LINK)
    (data_dir / "node.json").unlink(missing_ok=True)
