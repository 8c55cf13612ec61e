"""`svcnet dns`: the cluster DNS server as its own process, with its own watches.

    svcnet dns --kubeconfig F --listen 10.244.0.1:53 [--listen ...] [--cluster-domain cluster.local]
               [--resolv-conf /etc/resolv.conf] [--workers N] [--reuse-port] [--pid-file F]
               [--metrics-listen 10.244.0.1:9153]

It lists and watches Services, EndpointSlices and Namespaces, and answers on UDP and TCP once
the first lists are in. The node agent runs it as a supervised child on the node's pod-network
gateway address; run by hand (e.g. on 127.0.0.1:5353) it serves any API server's names.

`--workers N` forks N-1 more identical processes before anything starts; all of them bind the
same addresses with SO_REUSEPORT, so the kernel spreads queries across them (one event loop
each, so DNS scales over cores; each keeps its own watches and cache). Workers exit when the
first process does.

`--metrics-listen ADDR:PORT` (none by default; the node agent gives its DNS address with 9153,
CoreDNS's port) serves, over HTTP, as CoreDNS's prometheus, health and ready plugins do:
`/metrics` (metrics.py: CoreDNS's names and labels), `/health` (200 "OK" while the process
runs) and `/ready` (200 "OK" once the first lists are in and the DNS listeners answer, 503
before). The listener binds with SO_REUSEPORT, as the DNS ports do, so a newer server can start
beside the one it replaces. With --workers, only the first process serves it (its own counts).
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import os
import signal
from pathlib import Path

from svcnet.agent.dns.answer import Catalog
from svcnet.agent.dns.forward import Forwarder, read_resolv_conf
from svcnet.agent.dns.metrics import DNSMetrics, server_label
from svcnet.agent.dns.node import superseded, take_over
from svcnet.agent.dns.server import Resolver, serve
from svcnet.api.resources import BY_KIND
from svcnet.client import Client, Informer

log = logging.getLogger("svcnet.dns")

SERVICE, SLICE, NAMESPACE = BY_KIND["Service"], BY_KIND["EndpointSlice"], BY_KIND["Namespace"]


def parse_listen(value: str, default_port: int = 53) -> tuple[str, int]:
    """ADDR[:PORT] -> (ADDR, PORT); an IPv6 address with a port is in brackets ([::1]:53; a
    bare ::1 is an address). ValueError for no address or a port that is no number in 1-65535."""
    if value.endswith("]") or (value.count(":") > 1 and not value.startswith("[")):
        host, port = value.strip("[]"), None
    else:
        host, colon, port = value.rpartition(":")
        host, port = (host.strip("[]"), port) if colon else (value, None)
    if not host:
        raise ValueError(f"no address in {value!r}")
    if port is None:
        return host, default_port
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"invalid port in {value!r}")
    return host, int(port)


class DNSProcess:
    def __init__(self, client: Client, listen: list[tuple[str, int]], domain: str = "cluster.local",
                 resolv_conf: str = "/etc/resolv.conf", exclude_upstreams: set[str] = frozenset(),
                 reuse_port: bool = False, pid_file: str | None = None,
                 metrics_listen: tuple[str, int] | None = None):
        self.client = client
        self.metrics_listen = metrics_listen
        self.metrics_runner = None
        self.ready = False
        self.pid_file = Path(pid_file) if pid_file else None
        self.listen = listen
        self.reuse_port = reuse_port
        own = {h for h, _ in listen} | set(exclude_upstreams)
        self.forwarder = Forwarder(read_resolv_conf(resolv_conf, own))
        self.resolver = Resolver(Catalog(domain=domain, serial=1), self.forwarder)
        self.metrics = DNSMetrics(self.resolver.classes, self.resolver.entries, self.forwarder,
                                  server_label(*listen[0]) if listen else "")
        self.namespaces: set[str] = set()
        self.informers: list[Informer] = []
        self.servers: list = []
        self.tasks: list[asyncio.Task] = []
        self.done = asyncio.Event()  # set when this server should stop by itself

    async def start(self) -> None:
        if self.metrics_listen is not None:
            await self._serve_metrics()
        await self.forwarder.start()
        services = Informer(self.client, SERVICE)
        services.add_handler(self.resolver.on_service)
        services.add_handler(_keep_metadata)
        slices = Informer(self.client, SLICE)
        slices.add_handler(self.resolver.on_slice)
        slices.add_handler(_keep_metadata)
        namespaces = Informer(self.client, NAMESPACE, metadata_only=True)
        namespaces.add_handler(self._on_namespace)
        self.informers = [namespaces, services, slices]
        for inf in self.informers:
            inf.start()
        for inf in self.informers:
            await inf.synced.wait()
        # What the first lists built lives as long as the process: keep it out of every
        # collection, so a full collection never pauses answering for long.
        gc.collect()
        gc.freeze()
        kube_dns = self.resolver.catalog.services.get(("kube-system", "kube-dns"))
        if kube_dns is not None:
            self.forwarder.exclude(kube_dns.cluster_ips)
        if not self.forwarder.upstreams:
            log.info("no upstream nameservers: names outside %s are REFUSED",
                     self.resolver.catalog.domain)
        for host, port in self.listen:
            self.servers.append(await serve(self.resolver, host, port, reuse_port=self.reuse_port))
            log.info("cluster DNS for %s answering on %s:%d (UDP, TCP); upstreams %s",
                     self.resolver.catalog.domain, host, port,
                     ", ".join(h for h, _ in self.forwarder.upstreams) or "none")
        self.ready = True
        if any(getattr(udp, "timing", None) is not None for udp, _ in self.servers):
            # `kill -USR2 PID` starts measuring the UDP thread's own latency (udp.Timing); the
            # next one logs what it measured and stops
            asyncio.get_running_loop().add_signal_handler(signal.SIGUSR2, self._report_timing)
        if self.pid_file is not None:
            if not take_over(self.pid_file):
                log.info("a newer cluster DNS server already serves; stepping down")
                self.done.set()
                return
            self.tasks.append(asyncio.create_task(self._watch_pid_file()))

    async def _serve_metrics(self) -> None:
        from aiohttp import web

        async def metrics(_request):
            return web.Response(text=self.metrics.render(), content_type="text/plain")

        async def health(_request):
            return web.Response(text="OK")

        async def ready(_request):
            if self.ready:
                return web.Response(text="OK")
            return web.Response(status=503, text="kubernetes")  # as CoreDNS: who is not ready

        app = web.Application()
        app.router.add_get("/metrics", metrics)
        app.router.add_get("/health", health)
        app.router.add_get("/ready", ready)
        self.metrics_runner = web.AppRunner(app, access_log=None)
        await self.metrics_runner.setup()
        host, port = self.metrics_listen
        try:
            await web.TCPSite(self.metrics_runner, host, port, reuse_port=True).start()
        except OSError as e:  # names matter more than their metrics: answer anyway
            log.warning("metrics endpoint %s:%d not served: %s", host, port, e)
            return
        log.info("metrics on http://%s:%d/metrics (/health, /ready)", host, port)

    async def _watch_pid_file(self) -> None:
        while not superseded(self.pid_file):
            await asyncio.sleep(1)
        log.info("cluster DNS server superseded (pid file %s); stepping down", self.pid_file)
        self.done.set()

    def _report_timing(self) -> None:
        for udp, _ in self.servers:
            timing = getattr(udp, "timing", None)
            if timing is not None and timing.active:
                log.info("udp timing %s %s", udp.get_extra_info("sockname")[1], json.dumps(timing.report()))
            elif timing is not None:
                timing.start()
                log.info("udp timing %s started", udp.get_extra_info("sockname")[1])

    def _on_namespace(self, kind: str, old: dict | None, new: dict | None) -> None:
        if new is None:
            self.namespaces.discard(old["metadata"]["name"])
        else:
            self.namespaces.add(new["metadata"]["name"])
        self.resolver.on_namespace(set(self.namespaces))

    async def stop(self) -> None:
        if self.metrics_runner is not None:
            # first: a server stepping down stops answering scrapes at once, so that they reach
            # only its successor (counters that jumped between two processes look like resets)
            await self.metrics_runner.cleanup()
            self.metrics_runner = None
        for t in self.tasks:
            t.cancel()
        if self.pid_file is not None:
            try:
                if int(self.pid_file.read_text().split()[0]) == os.getpid():
                    self.pid_file.unlink()
            except (OSError, ValueError, IndexError):
                pass
        for udp, tcp in self.servers:
            tcp.close()
            if hasattr(udp, "drain_and_close"):
                await udp.drain_and_close()
            else:
                udp.close()
        for inf in self.informers:
            await inf.stop()
        self.forwarder.close()


def _keep_metadata(kind: str, old: dict | None, new: dict | None) -> None:
    """Once the Catalog has what it needs of an object, the informer's cached copy only has to
    name it and carry its resourceVersion (all a re-list compares): drop the rest, so the DNS
    process holds each object once, in the Catalog's compact form."""
    if new is not None:
        meta = new["metadata"]
        new.clear()
        new["metadata"] = {k: meta[k] for k in ("name", "namespace", "resourceVersion", "uid")
                           if k in meta}


def fork_workers(n: int) -> list[int]:
    """Fork n-1 copies of this process (before any event loop exists); returns their PIDs in
    the first process and [] in the copies. A copy dies with the first (PR_SET_PDEATHSIG)."""
    pids = []
    for _ in range(max(0, n - 1)):
        pid = os.fork()
        if pid == 0:
            _die_with_parent()
            return []
        pids.append(pid)
    return pids


def _die_with_parent() -> None:
    import ctypes
    import ctypes.util

    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    PR_SET_PDEATHSIG = 1
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
