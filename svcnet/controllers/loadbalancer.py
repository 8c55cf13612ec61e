"""The LoadBalancer controller: addresses for LoadBalancer Services, in their status.

Theory of operation
-------------------
The decisions are `lbipam.decide()` (pure; read its docstring for the rules). This shell feeds
it and writes its answers:

* Shared informers on Services and Nodes (`SharedCaches`, as the EndpointSlice controller's).
  The handlers only queue keys: a LoadBalancer Service that changed; every pending one when a
  LoadBalancer Service went away, left the type or changed what it holds (an address or a port
  may have come free); every node-mode one when a Node's readiness or addresses changed.
* One worker, so decisions are serial: each sees every earlier one. Its own status writes not
  yet seen by the informer are kept in an overlay, so the next decision never works from a
  stale table. A write is a PUT of services/NAME/status with the resourceVersion the decision
  was made on; a 409 is retried after a short backoff.
* The table is the Services' status, so a restart rebuilds it from the first LIST, and nothing
  that is in the store can be handed out twice. The API server clears status.loadBalancer when a
  Service stops being a LoadBalancer; a deleted Service simply stops holding anything.
* Events, as MetalLB records them: Normal `IPAllocated` when addresses are written, Warning
  `AllocationFailed` with the reason when a Service stays pending (once per distinct reason).
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any, Callable

from svcnet.api.errors import APIError
from svcnet.api.resources import BY_KIND
from svcnet.events import event
from svcnet.controllers import lbipam
from svcnet.controllers.endpointslice import CacheController, WorkQueue, obj_key, rv_int

log = logging.getLogger("svcnet.controllers.loadbalancer")

SERVICE, EVENT = BY_KIND["Service"], BY_KIND["Event"]
FIELD_MANAGER = "svcnet-lb-controller"
COMPONENT = "svcnet-lb-controller"


def _is_lb(svc: dict | None) -> bool:
    return svc is not None and (svc.get("spec") or {}).get("type") == "LoadBalancer"


def _node_view(node: dict | None) -> tuple:
    """What of a Node matters here: the addresses it would contribute."""
    return tuple(lbipam.node_addresses([node])) if node is not None else ()


def status_with_ingress(svc: dict, ips: tuple[str, ...]) -> dict:
    status = dict(svc.get("status") or {})
    status["loadBalancer"] = {"ingress": [{"ip": ip, "ipMode": "VIP"} for ip in ips]} if ips else {}
    return status


class LoadBalancerController(CacheController):
    """Keeps status.loadBalancer.ingress of the LoadBalancer Services svcnet owns."""

    WHAT = "load balancer addresses"
    KINDS = ("Service", "Node", "EndpointSlice")
    CONFLICT_BACKOFF = 0.05
    MAX_RETRIES = 15

    def __init__(self, client, pool: lbipam.Pool | None = None):
        self.client = client
        self.pool = pool or lbipam.Pool()
        self.workers = 1  # decisions must be serial: each one sees the ones before it
        self.queue = WorkQueue(base_delay=0.05, max_delay=30.0)
        self.caches = None
        self._tasks: list[asyncio.Task] = []
        self._handlers: list[tuple[Any, Callable]] = []
        self._conflicts: dict[str, int] = {}
        self.lb_keys: set[str] = set()  # every LoadBalancer Service, whatever its class
        self._overlay: dict[str, tuple[int, dict]] = {}  # our writes the cache has not seen yet
        self._last_warning: dict[str, str] = {}

    def _handler_table(self) -> list[tuple[str, Callable]]:
        return [("Service", self._on_service), ("Node", self._on_node)]

    def _initial_queue(self) -> None:
        # The shared informer may have synced before our handler was added: read its cache.
        for key, svc in list(self.caches.informer("Service").cache.items()):
            if _is_lb(svc):
                self.lb_keys.add(key)
        for key in sorted(self.lb_keys):
            self.queue.add(key)

    # ---- handlers ---------------------------------------------------------------------------

    def _on_service(self, kind: str, old: dict | None, new: dict | None) -> None:
        if not _is_lb(old) and not _is_lb(new):
            return
        key = obj_key(new or old)
        ov = self._overlay.get(key)
        if ov is not None and (new is None or rv_int(new) >= ov[0]
                               or new["metadata"].get("uid") != ov[1]["metadata"].get("uid")):
            del self._overlay[key]
        if _is_lb(new):
            self.lb_keys.add(key)
            self.queue.add(key)
        else:
            self.lb_keys.discard(key)
            self._last_warning.pop(key, None)
        if old is not None and _is_lb(old):
            before, after = lbipam.claim(old, self.pool), lbipam.claim(new, self.pool) if new else None
            if after is None or (before.ips, before.ports, before.sharing, before.backend) != \
                    (after.ips, after.ports, after.sharing, after.backend):
                self._queue_pending()

    def _on_node(self, kind: str, old: dict | None, new: dict | None) -> None:
        if _node_view(old) != _node_view(new):
            for key in self.lb_keys:
                svc = self.current(key)
                if svc is not None and lbipam.mode(svc, self.pool) == lbipam.NODE:
                    self.queue.add(key)

    def _queue_pending(self) -> None:
        for key in self.lb_keys:
            svc = self.current(key)
            if svc is not None and not lbipam.ingress_ips(svc) and \
                    lbipam.mode(svc, self.pool) in (lbipam.POOL, lbipam.NODE):
                self.queue.add(key)

    # ---- state ------------------------------------------------------------------------------

    def current(self, key: str) -> dict | None:
        """The Service as this controller last knew it: the cache, or our newer write."""
        cached = self.caches.informer("Service").cache.get(key)
        ov = self._overlay.get(key)
        if ov is None or cached is None or rv_int(cached) >= ov[0]:
            return cached
        return ov[1] if cached["metadata"].get("uid") == ov[1]["metadata"].get("uid") else cached

    def claims(self) -> list[lbipam.Claim]:
        out = []
        for key in self.lb_keys:
            svc = self.current(key)
            c = lbipam.claim(svc, self.pool) if svc is not None else None
            if c is not None:
                out.append(c)
        return out

    def node_ips(self) -> list[str]:
        return lbipam.node_addresses(self.caches.informer("Node").cache.values())

    # ---- sync -------------------------------------------------------------------------------

    async def sync(self, key: str) -> lbipam.Decision | None:
        svc = self.current(key)
        if svc is None or lbipam.mode(svc, self.pool) not in (lbipam.POOL, lbipam.NODE):
            self._last_warning.pop(key, None)
            return None
        node_ips = self.node_ips()
        api = self.caches.informer("EndpointSlice").cache.get("default/kubernetes")
        decision = lbipam.decide(svc, self.claims(), self.pool, node_ips,
                                 lbipam.api_server_ports(api, node_ips))
        for other in decision.conflicts:
            self.queue.add(other)
        held = lbipam.ingress_ips(svc)
        if decision.ips != held:
            body = dict(svc, status=status_with_ingress(svc, decision.ips))
            written = await self.client.update_status(SERVICE, body, manager=FIELD_MANAGER)
            self._overlay[key] = (rv_int(written), written)
            svc = written
            if decision.ips:
                log.info("service %s: ingress %s", key, ", ".join(decision.ips))
                await self._event(svc, "Normal", lbipam.ALLOCATED,
                                  f"Assigned IP {json.dumps(list(decision.ips))}")
            if held:
                self._queue_pending()  # what it let go may be what another one waits for
        if decision.ips:
            self._last_warning.pop(key, None)
        elif self._last_warning.get(key) != decision.message:
            self._last_warning[key] = decision.message
            log.info("service %s pending: %s", key, decision.message)
            await self._event(svc, "Warning", lbipam.FAILED,
                              f"Failed to allocate IP for {json.dumps(key)}: {decision.message}")
        return decision

    async def _event(self, svc: dict, type_: str, reason: str, message: str) -> None:
        try:
            await self.client.create(EVENT, event(dict(svc, kind="Service", apiVersion="v1"),
                                                  type_, reason, message, COMPONENT),
                                     manager=FIELD_MANAGER)
        except APIError as e:
            log.warning("recording event %s for %s: %s", reason, obj_key(svc), e)
