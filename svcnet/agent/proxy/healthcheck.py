"""kube-proxy's service health server: `healthCheckNodePort` answered on this node.

Theory of operation
-------------------
As pkg/proxy/healthcheck's ServiceHealthServer: every LoadBalancer Service with
`externalTrafficPolicy: Local` has a `healthCheckNodePort`; on each node the proxy listens on
that port (on the node's addresses) and answers any HTTP request, `/healthz` included, with

    200 when this node has ready endpoints of the Service, else 503
    {"service": {"namespace": ..., "name": ...}, "localEndpoints": N, "serviceProxyHealthy": B}
    (and N in the header X-Load-Balancing-Endpoint-Weight)

so that an external load balancer sends traffic only to nodes that can serve it locally. N is
the number of distinct ready endpoint addresses on this node (kube-proxy's
LocalReadyEndpoints: terminating endpoints do not count, an address serving several ports
counts once). `serviceProxyHealthy` is whether the proxier has programmed its rules; the answer
is 503 while it is false.

`desired_health_checks()` is pure: (Services, EndpointSlices by Service, node) -> {Service: (port,
local endpoint count)}. `ServiceHealthServer.sync()` opens and closes listeners to match (a port
that cannot be opened is logged, reported as a Warning Event `FailedToStartServiceHealthcheck`
and retried, as kube-proxy does, without stopping the others), and the counts are read by the
handler on every request.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Callable, Iterable, Mapping

from aiohttp import web

from svcnet.api.errors import APIError
from svcnet.api.resources import BY_KIND
from svcnet.events import event

log = logging.getLogger("svcnet.healthcheck")
EVENT = BY_KIND["Event"]

ServiceName = tuple[str, str]  # (namespace, name)


def local_ready_endpoints(slices: Iterable[dict], node_name: str) -> int:
    ips: set[str] = set()
    for s in slices:
        for ep in s.get("endpoints") or ():
            if ep.get("nodeName") != node_name:
                continue
            if (ep.get("conditions") or {}).get("ready") is False:  # unset means ready
                continue
            ips.update(ep.get("addresses") or ())
    return len(ips)


def health_check_port(svc: dict) -> int | None:
    spec = svc.get("spec") or {}
    if spec.get("type") != "LoadBalancer" or spec.get("externalTrafficPolicy") != "Local":
        return None
    return spec.get("healthCheckNodePort") or None


def desired_health_checks(services: Iterable[dict],
                          slices_by_service: Mapping[ServiceName, Mapping[str, dict]],
                          node_name: str) -> dict[ServiceName, tuple[int, int]]:
    out = {}
    for svc in services:
        port = health_check_port(svc)
        if port is None:
            continue
        m = svc["metadata"]
        key = (m.get("namespace", ""), m["name"])
        out[key] = (port, local_ready_endpoints((slices_by_service.get(key) or {}).values(),
                                               node_name))
    return out


def health_response(name: ServiceName, count: int, proxy_healthy: bool) -> tuple[int, str]:
    body = {"service": {"namespace": name[0], "name": name[1]}, "localEndpoints": count,
            "serviceProxyHealthy": proxy_healthy}
    return (200 if count and proxy_healthy else 503), json.dumps(body, indent=2)


class ServiceHealthServer:
    """Listeners on `node_ips` at each Service's healthCheckNodePort."""

    def __init__(self, node_ips: tuple[str, ...], proxy_healthy: Callable[[], bool] = lambda: True):
        self.node_ips = node_ips
        self.proxy_healthy = proxy_healthy
        self.services: dict[ServiceName, tuple[int, int]] = {}
        self.by_port: dict[int, ServiceName] = {}
        self.sites: dict[ServiceName, tuple[int, list[web.TCPSite]]] = {}
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self.runner = web.AppRunner(app, access_log=None)

    async def start(self) -> None:
        await self.runner.setup()

    async def stop(self) -> None:
        await self.runner.cleanup()
        self.sites.clear()

    async def _handle(self, request: web.Request) -> web.Response:
        port = (request.transport.get_extra_info("sockname") or ("", 0))[1]
        name = self.by_port.get(port)
        if name is None or name not in self.services:
            return web.Response(status=503)
        status, body = health_response(name, self.services[name][1], self.proxy_healthy())
        return web.Response(status=status, body=body.encode(),
                            headers={"Content-Type": "application/json",
                                     "X-Content-Type-Options": "nosniff",
                                     "X-Load-Balancing-Endpoint-Weight": str(self.services[name][1])})

    async def sync(self, desired: dict[ServiceName, tuple[int, int]]) -> dict[ServiceName, str]:
        """Open and close listeners to match `desired`; returns the ones that could not be
        opened, with why."""
        failed: dict[ServiceName, str] = {}
        self.services = dict(desired)
        for name, (port, sites) in list(self.sites.items()):
            if desired.get(name, (None,))[0] != port:
                log.info("closing health check of %s/%s on port %d", *name, port)
                for site in sites:
                    await site.stop()
                del self.sites[name]
                self.by_port.pop(port, None)
        for name, (port, _) in desired.items():
            if name in self.sites:
                continue
            opened: list[web.TCPSite] = []
            try:
                for ip in self.node_ips:
                    site = web.TCPSite(self.runner, ip, port, reuse_address=True)
                    await site.start()
                    opened.append(site)
            except OSError as e:
                log.error("failed to start health check of %s/%s on port %d: %s", *name, port, e)
                failed[name] = f"{e.strerror or e}"
                for site in opened:
                    await site.stop()
                continue
            log.info("health check of %s/%s on port %d", *name, port)
            self.sites[name] = (port, opened)
            self.by_port[port] = name
        return failed


class HealthChecks:
    """Feeds a ServiceHealthServer from the proxier's informers: a change to a Service that has
    (or had) a health check, or to its EndpointSlices, triggers a sync."""

    def __init__(self, proxier, node_name: str, node_ips: tuple[str, ...]):
        self.proxier = proxier
        self.node_name = node_name
        self.reported: dict[ServiceName, int] = {}  # failures already told as an Event
        self.server = ServiceHealthServer(node_ips, lambda: proxier.synced.is_set())
        self.wake = asyncio.Event()
        self._task: asyncio.Task | None = None

    def _on_service(self, kind: str, old: dict | None, new: dict | None) -> None:
        if any(o is not None and health_check_port(o) for o in (old, new)):
            self.wake.set()

    def _on_slice(self, kind: str, old: dict | None, new: dict | None) -> None:
        m = (new or old)["metadata"]
        svc = (m.get("labels") or {}).get("kubernetes.io/service-name")
        if svc and (m.get("namespace", ""), svc) in self.server.services:
            self.wake.set()

    async def start(self) -> None:
        await self.server.start()
        self.proxier.services.add_handler(self._on_service)
        self.proxier.slices.add_handler(self._on_slice)
        self.wake.set()
        self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        for inf, h in ((self.proxier.services, self._on_service), (self.proxier.slices, self._on_slice)):
            try:
                inf.handlers.remove(h)
            except ValueError:
                pass
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self.server.stop()

    async def _report(self, failed: dict[ServiceName, str]) -> None:
        """A Warning Event per listener that cannot be opened, once per port (kube-proxy's
        FailedToStartServiceHealthcheck)."""
        for name in list(self.reported):
            if name not in failed:
                del self.reported[name]
        for name, why in failed.items():
            port = self.server.services[name][0]
            if self.reported.get(name) == port:
                continue
            self.reported[name] = port
            svc = self.proxier.services.get(*name)
            if svc is None:
                continue
            message = (f"node {self.node_name} failed to start healthcheck \"{name[0]}/{name[1]}\" "
                       f"on port {port}: {why}")
            try:
                await self.proxier.client.create(EVENT, event(
                    dict(svc, kind="Service", apiVersion="v1"), "Warning",
                    "FailedToStartServiceHealthcheck", message, "kube-proxy", self.node_name),
                    manager="svcnet-agent")
            except APIError as e:
                log.warning("recording a health check event for %s/%s: %s", *name, e)

    async def _loop(self) -> None:
        while True:
            await self.wake.wait()
            self.wake.clear()
            try:
                failed = await self.server.sync(desired_health_checks(
                    self.proxier.services.items(), self.proxier.slices_by_service, self.node_name))
                await self._report(failed)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - the next change retries
                log.exception("health check sync failed")
            if any(name not in self.server.sites for name in self.server.services):
                await asyncio.sleep(2)  # a port could not be opened: try again
                self.wake.set()
