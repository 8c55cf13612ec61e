"""The control plane of one `svcnet server`: store, registry, API server and controllers.

Startup order: credentials -> store -> registry with the Service allocators -> bootstrap objects
(namespaces, the `kubernetes` Service and its endpoints) -> HTTPS listener -> kubeconfig ->
controllers. Controllers get an API client pointed at this server over loopback HTTPS, so they
use the API exactly as external clients do. Shutdown reverses it.
"""

from __future__ import annotations

import asyncio
import datetime
import os
import sys

import logging
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

from svcnet import pki
from svcnet.api.errors import APIError
from svcnet.api.resources import BY_KIND
from svcnet.api.server import APIConfig, APIServer, server_ssl_context
from svcnet.registry.allocator import IPRange, PortRange
from svcnet.registry.service_alloc import ServiceAllocator
from svcnet.registry.store import Registry, now_rfc3339

log = logging.getLogger("svcnet")

SERVICE, ENDPOINTS, SLICE, EVENT = (BY_KIND["Service"], BY_KIND["Endpoints"],
                                    BY_KIND["EndpointSlice"], BY_KIND["Event"])


@dataclass
class Options:
    data_dir: Path
    bind: str = "0.0.0.0"
    port: int = 6443
    node_ip: str = "127.0.0.1"
    service_cidr: str = "10.96.0.0/12"
    cluster_cidr: str = "10.244.0.0/16"
    nodeport_range: str = "30000-32767"
    repair_interval: float = 180.0
    extra_sans: list[str] = field(default_factory=list)
    controllers: str = "*"  # kube-controller-manager style: "*,-garbagecollector"
    agent: bool = False
    node_name: str = "node"
    lb_pool: list[str] = field(default_factory=list)  # --lb-pool ranges, for the controller manager
    cluster_domain: str = "cluster.local"  # for the agent's cluster DNS
    resolv_conf: str = "/etc/resolv.conf"  # the cluster DNS's upstreams (kubelet's --resolv-conf)


class ControlPlane:
    def __init__(self, opts: Options):
        self.opts = opts
        self.ip_range = IPRange(opts.service_cidr)
        self.port_range = PortRange.parse(opts.nodeport_range)
        self.tasks: list[asyncio.Task] = []
        self.children: dict[str, asyncio.subprocess.Process] = {}

    @property
    def kubeconfig(self) -> Path:
        return self.opts.data_dir / "kubeconfig"

    async def start(self) -> None:
        from svcnet.store.sqlite import SQLiteBackend

        o = self.opts
        o.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        first_ip = self.ip_range.first()
        ips = ["127.0.0.1", o.node_ip, first_ip, *o.extra_sans]
        if o.bind not in ("0.0.0.0", "::"):
            ips.append(o.bind)
        dns = ["localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
               "kubernetes.default.svc.cluster.local"]
        self.creds = pki.ensure_credentials(o.data_dir, dns, ips)

        self.backend = SQLiteBackend(str(o.data_dir / "state.db"))
        await self.backend.start()
        self.registry = Registry(self.backend)
        self.allocator = ServiceAllocator(self.backend, self.ip_range, self.port_range)
        await self.allocator.start()
        self.allocator.install(self.registry)
        self.api = APIServer(self.registry, APIConfig(self.creds.token, o.node_ip, o.port,
                                                      logs_dir=o.data_dir if o.agent else None))
        await self.api.bootstrap()
        await self._reconcile_kubernetes_service()
        await self._ensure_kube_dns_service()

        self.runner = web.AppRunner(self.api.app(), access_log=None, handler_cancellation=True,
                                    shutdown_timeout=2.0)
        await self.runner.setup()
        site = web.TCPSite(self.runner, o.bind, o.port,
                           ssl_context=server_ssl_context(self.creds.server_cert, self.creds.server_key),
                           backlog=1024, reuse_address=True)
        await site.start()
        self.api.start_background()
        host = "127.0.0.1" if o.bind in ("0.0.0.0", "::") else o.bind
        self.url = f"https://{host}:{o.port}"
        pki.write_kubeconfig(self.kubeconfig, self.url, self.creds)
        self.tasks.append(asyncio.create_task(self._repair_loop()))
        if self.opts.controllers.strip() not in ("", "-*"):
            self.tasks.append(asyncio.create_task(self._supervise("controller manager", [
                "controller-manager", "--kubeconfig", str(self.kubeconfig),
                "--controllers", self.opts.controllers, "--cluster-cidr", self.opts.cluster_cidr,
                *(a for r in self.opts.lb_pool for a in ("--lb-pool", r))])))
        if self.opts.agent:
            self.tasks.append(asyncio.create_task(self._supervise("node agent", [
                "agent", "--kubeconfig", str(self.kubeconfig), "--data-dir", str(o.data_dir),
                "--cluster-domain", o.cluster_domain, "--resolv-conf", o.resolv_conf,
                "--node-name", self.opts.node_name, "--node-ip", o.node_ip,
                "--cluster-cidr", self.opts.cluster_cidr, "--service-cidr", self.opts.service_cidr])))

    async def stop(self) -> None:
        for t in self.tasks:
            t.cancel()
        await self._stop_children()
        for t in self.tasks:
            t.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.api.stop_background()
        await self.runner.cleanup()
        await self.allocator.stop()
        await self.backend.close()

    # ---- child processes: controller manager, node agent -----------------------------------

    async def _supervise(self, name: str, args: list[str]) -> None:
        """Run `svcnet <args>` as a child process; restart it if it dies. It stops by itself
        when this server is gone (--parent-pid), whatever killed it."""
        cmd = [sys.executable, "-m", "svcnet.cli.main", *args, "--parent-pid", str(os.getpid())]
        while True:
            proc = await asyncio.create_subprocess_exec(*cmd)
            self.children[name] = proc
            rc = await proc.wait()
            log.warning("%s exited with %s; restarting in 1s", name, rc)
            await asyncio.sleep(1)

    async def _stop_children(self) -> None:
        for proc in self.children.values():
            if proc.returncode is None:
                proc.terminate()
        for proc in self.children.values():
            try:
                await asyncio.wait_for(proc.wait(), 15)
            except TimeoutError:
                proc.kill()
                await proc.wait()

    # ---- the kubernetes Service ------------------------------------------------------------

    async def _reconcile_kubernetes_service(self) -> None:
        """default/kubernetes: ClusterIP = first service IP, port 443 -> the API server."""
        reg, o = self.registry, self.opts
        ip = self.ip_range.first()
        want_spec = {"type": "ClusterIP", "clusterIP": ip, "clusterIPs": [ip],
                     "ports": [{"name": "https", "protocol": "TCP", "port": 443, "targetPort": o.port}],
                     "sessionAffinity": "None"}
        svc = await reg.try_get(SERVICE, "default", "kubernetes")
        if svc is None:
            await reg.create(SERVICE, {"metadata": {"name": "kubernetes", "namespace": "default",
                                                    "labels": {"component": "apiserver",
                                                               "provider": "kubernetes"}},
                                       "spec": want_spec}, "kube-apiserver")
        elif svc["spec"].get("ports") != want_spec["ports"]:
            svc["spec"]["ports"] = want_spec["ports"]
            await reg.update(SERVICE, "default", "kubernetes", svc, manager="kube-apiserver")
        addr = o.node_ip
        port = {"name": "https", "port": o.port, "protocol": "TCP"}
        slice_body = {"metadata": {"name": "kubernetes", "namespace": "default",
                                   "labels": {"kubernetes.io/service-name": "kubernetes"}},
                      "addressType": "IPv4",
                      "endpoints": [{"addresses": [addr], "conditions": {"ready": True}}],
                      "ports": [port]}
        ep_body = {"metadata": {"name": "kubernetes", "namespace": "default",
                                "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
                   "subsets": [{"addresses": [{"ip": addr}], "ports": [port]}]}
        for res, body in ((SLICE, slice_body), (ENDPOINTS, ep_body)):
            cur = await reg.try_get(res, "default", "kubernetes")
            if cur is None:
                await reg.create(res, body, "kube-apiserver")
            else:
                fields = ("endpoints", "ports") if res is SLICE else ("subsets",)
                if any(cur.get(f) != body[f] for f in fields):
                    for f in fields:
                        cur[f] = body[f]
                    await reg.update(res, "default", "kubernetes", cur, manager="kube-apiserver")

    async def _ensure_kube_dns_service(self) -> None:
        """kube-system/kube-dns: the tenth service IP (10.96.0.10 by default), ports `dns` 53/UDP,
        `dns-tcp` 53/TCP and `metrics` 9153/TCP (as kubeadm has them), without a selector: each
        node agent publishes its DNS server in an EndpointSlice of its own. Created when
        missing; an existing one without the `metrics` port gets it (a cluster made before the
        DNS served metrics); otherwise never changed."""
        from svcnet.agent.dns import cluster_dns_ip

        reg = self.registry
        metrics = {"name": "metrics", "protocol": "TCP", "port": 9153, "targetPort": 9153}
        cur = await reg.try_get(SERVICE, "kube-system", "kube-dns")
        if cur is not None:
            ports = cur["spec"].get("ports") or []
            if not any(p.get("name") == "metrics" or p.get("port") == 9153 for p in ports):
                cur["spec"]["ports"] = ports + [metrics]
                try:
                    await reg.update(SERVICE, "kube-system", "kube-dns", cur, manager="svcnet")
                except APIError as e:
                    log.warning("could not add the metrics port to the kube-dns Service: %s", e)
            return
        ip = cluster_dns_ip(self.opts.service_cidr)
        body = {"metadata": {"name": "kube-dns", "namespace": "kube-system",
                             "labels": {"k8s-app": "kube-dns", "kubernetes.io/cluster-service": "true",
                                        "kubernetes.io/name": "KubeDNS"}},
                "spec": {"type": "ClusterIP", "clusterIP": ip, "clusterIPs": [ip],
                         "ports": [{"name": "dns", "protocol": "UDP", "port": 53, "targetPort": 53},
                                   {"name": "dns-tcp", "protocol": "TCP", "port": 53, "targetPort": 53},
                                   metrics]}}
        try:
            await reg.create(SERVICE, body, "svcnet")
        except APIError as e:
            log.warning("could not create the kube-dns Service at %s: %s", ip, e)

    # ---- allocator repair ------------------------------------------------------------------

    async def _repair_loop(self) -> None:
        while True:
            try:
                services = (await self.registry.list(SERVICE)).items
                await self.allocator.repair(services, self.record_event)
                del services  # not kept alive through the sleep
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("allocator repair pass failed")
            await asyncio.sleep(self.opts.repair_interval)

    async def record_event(self, obj: dict, reason: str, message: str,
                           type_: str = "Warning", component: str = "ipallocator-repair-controller") -> None:
        m = obj["metadata"]
        now = now_rfc3339()
        stamp = format(int(datetime.datetime.now().timestamp() * 1e9), "x")
        ev = {"metadata": {"name": f"{m['name']}.{stamp}", "namespace": m.get("namespace") or "default"},
              "involvedObject": {"kind": obj.get("kind", "Service"), "namespace": m.get("namespace", ""),
                                 "name": m["name"], "uid": m.get("uid", ""),
                                 "apiVersion": obj.get("apiVersion", "v1"),
                                 "resourceVersion": m.get("resourceVersion", "")},
              "reason": reason, "message": message, "type": type_,
              "source": {"component": component}, "reportingComponent": component,
              "reportingInstance": "", "firstTimestamp": now, "lastTimestamp": now, "count": 1}
        try:
            await self.registry.create(EVENT, ev, component)
        except APIError:
            log.warning("could not record event %s for %s/%s", reason, m.get("namespace"), m["name"])
        log.info("event %s %s/%s: %s", reason, m.get("namespace"), m["name"], message)


