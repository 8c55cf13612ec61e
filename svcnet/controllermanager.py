"""svcnet's controller manager: the controllers that make Services work, as one API client.

Like kube-controller-manager it runs in its own process and talks to the API server only over
HTTPS, so its caches and CPU never weigh on the API server's event loop. `svcnet server` starts
it as a supervised child (restarted if it dies, stopped with the server); it can also run alone
(`svcnet controller-manager --kubeconfig F`).

Controllers: nodeipam (pod CIDRs for Nodes), endpointslice, endpoints, garbagecollector,
loadbalancer (addresses for LoadBalancer Services, from `--lb-pool` or the nodes'), replicaset,
deployment.
`--controllers` selects them as kube-controller-manager's flag does ("*", "name", "-name").
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

from svcnet.client import Client, Config

log = logging.getLogger("svcnet.controller-manager")

CONTROLLER_NAMES = ("nodeipam", "endpointslice", "endpoints", "garbagecollector", "loadbalancer",
                    "replicaset", "deployment")


def controller_enabled(spec: str, name: str) -> bool:
    """kube-controller-manager's --controllers: "*" enables all, "foo" one, "-foo" disables."""
    items = [i.strip() for i in spec.split(",") if i.strip()]
    if f"-{name}" in items:
        return False
    return name in items or "*" in items


def build(client: Client, spec: str, cluster_cidr: str, lb_pool: list[str] | None = None) -> list:
    from svcnet.controllers.deployment import DeploymentController
    from svcnet.controllers.endpoints import EndpointsController
    from svcnet.controllers.endpointslice import EndpointSliceController
    from svcnet.controllers.garbagecollector import GarbageCollector
    from svcnet.controllers.lbipam import Pool
    from svcnet.controllers.loadbalancer import LoadBalancerController
    from svcnet.controllers.nodeipam import NodeIPAMController
    from svcnet.controllers.replicaset import ReplicaSetController

    available = {
        "nodeipam": lambda: NodeIPAMController(client, cluster_cidr),
        "endpointslice": lambda: EndpointSliceController(client),
        "endpoints": lambda: EndpointsController(client),
        "garbagecollector": lambda: GarbageCollector(client),
        "loadbalancer": lambda: LoadBalancerController(client, Pool.parse(lb_pool or ())),
        "replicaset": lambda: ReplicaSetController(client),
        "deployment": lambda: DeploymentController(client),
    }
    return [make() for name, make in available.items() if controller_enabled(spec, name)]


async def exit_with_parent(parent: int, stop: asyncio.Event) -> None:
    """Set `stop` once process `parent` (svcnet server) is no longer our parent: it died, even
    by kill -9, and we were re-parented."""
    while os.getppid() == parent:
        await asyncio.sleep(0.5)
    log.info("parent process %d is gone; stopping", parent)
    stop.set()


async def run(kubeconfig: Path, spec: str, cluster_cidr: str, stop: asyncio.Event,
              parent_pid: int = 0, lb_pool: list[str] | None = None) -> None:
    if parent_pid:
        asyncio.get_running_loop().create_task(exit_with_parent(parent_pid, stop))
    client = Client(Config.from_kubeconfig(kubeconfig), user_agent="svcnet-controller-manager")
    controllers = build(client, spec, cluster_cidr, lb_pool)

    async def start_all() -> None:
        for c in controllers:
            await c.start()
        log.info("controllers running: %s", ", ".join(type(c).__name__ for c in controllers) or "none")

    starting = asyncio.create_task(start_all())
    stopping = asyncio.create_task(stop.wait())
    await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
    if not starting.done():  # stopped while the API was not answering yet
        starting.cancel()
    await stop.wait()

    async def shutdown() -> None:
        for c in controllers:
            await c.stop()
        await client.close()

    try:
        await asyncio.wait_for(shutdown(), 5)
    except TimeoutError:
        # Never outlive the server because a controller is slow to let go: nothing here holds
        # state that a restart would not rebuild from the API.
        log.warning("controllers did not stop within 5s; exiting anyway")
        logging.shutdown()
        os._exit(0)
