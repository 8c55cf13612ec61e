"""The node agent: the kubelet and kube-proxy of one svcnet node, as an API client.

Theory of operation
- Start: register the Node and wait for its pod CIDR (node IPAM), start the pod runtime (which
  adopts pods still running from a previous agent), the service proxy (a full nftables sync)
  and the pod informer.
- Pods: every pod bound to this node is reconciled by `_sync(key)` (one at a time per pod, on a
  work queue): a pod being deleted is stopped in a task of its own (once this node's proxy no
  longer sends it new connections: preStop, SIGTERM, its grace period, SIGKILL) and then
  removed from the API with grace 0; any other pod is handed to the runtime, which keeps its
  sandbox and containers as the spec says. Pods with no node are bound to this node when the
  agent schedules (`schedule=True`, the single-node default). After the first list, pods the
  runtime has but the API no longer does are killed (they went while the agent was down).
- Status: whenever the runtime reports a change (exit, probe result, restart), the pod's status
  is recomputed and written through pods/NAME/status if it differs.
- Everything keeps running if the agent stops: the next agent adopts the pods and resyncs.
"""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

from aiohttp import web

from svcnet.agent import metrics
from svcnet.agent.envvars import pod_service_env
from svcnet.agent.node import NodeAgent
from svcnet.agent.announce import Announcer
from svcnet.agent.dns import cluster_dns_ip
from svcnet.agent.proxy.healthcheck import HealthChecks
from svcnet.agent.proxy.proxier import SYNC_DURATION, Proxier
from svcnet.agent.proxy.ruleset import NodeInfo
from svcnet.api.errors import APIError
from svcnet.api.resources import BY_KIND
from svcnet.client import Client, Informer

log = logging.getLogger("svcnet.agent")
POD = BY_KIND["Pod"]

POD_START = metrics.Histogram("svcnet_pod_start_duration_seconds",
                              "From pod creation to all containers ready, as seen by the agent",
                              metrics.LATENCY_BUCKETS)


def pod_key(pod: dict) -> tuple[str, str]:
    m = pod["metadata"]
    return m.get("namespace", ""), m["name"]


QUIET_WAITING = {"ContainerCreating", "PodInitializing"}


def waiting_events(old: dict, new: dict) -> list[tuple[str, str, str]]:
    """(container, event reason, message) for containers that newly entered a waiting state
    worth telling the user about, as the kubelet records them: CrashLoopBackOff -> "BackOff",
    a sandbox that cannot be made (e.g. the pod CIDR is exhausted) -> "FailedCreatePodSandBox",
    anything else that keeps a container from starting (an image svcnet cannot run, a bad
    config) -> "Failed". A plain ContainerCreating (no message) is no news."""
    def waiting(status: dict) -> dict[str, tuple[str, str]]:
        out = {}
        for c in (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or []):
            w = (c.get("state") or {}).get("waiting")
            if w and (w.get("reason") not in QUIET_WAITING or w.get("message")):
                out[c["name"]] = (w.get("reason", ""), w.get("message", ""))
        return out

    before, after = waiting(old), waiting(new)
    events = []
    for name, (reason, message) in after.items():
        if reason in QUIET_WAITING:
            if before.get(name) != (reason, message):
                events.append((name, "FailedCreatePodSandBox", message))
        elif before.get(name, ("", ""))[0] != reason:
            events.append((name, "BackOff" if reason == "CrashLoopBackOff" else "Failed",
                           message or reason))
    return events


def _status_differs(current: dict, desired: dict) -> bool:
    return any(current.get(k) != v for k, v in desired.items())


class Agent:
    def __init__(self, client: Client, data_dir: Path, node_name: str, node_ip: str,
                 cluster_cidr: str = "10.244.0.0/16", service_cidr: str = "10.96.0.0/12",
                 schedule: bool = True, metrics_addr: tuple[str, int] = ("127.0.0.1", 10249),
                 nft: tuple[str, ...] = ("nft",), dns: dict | None = None,
                 resolv_conf: str = "/etc/resolv.conf"):
        """`dns`: run the cluster DNS server (svcnet.agent.dns.node.NodeDNS keyword arguments:
        credentials, domain, resolv_conf); None: no DNS on this node. `resolv_conf`: the node's
        resolvers, as the kubelet's --resolv-conf (pods with dnsPolicy Default use them)."""
        self.client = client
        self.dns = dns
        self.resolv_conf = resolv_conf
        self.node_dns = None
        self.data_dir = data_dir
        self.node_name = node_name
        self.node_ip = node_ip
        self.cluster_cidr = cluster_cidr
        self.service_cidr = service_cidr
        self.schedule = schedule
        self.metrics_addr = metrics_addr
        self.nft = nft
        self.queue: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
        self.queued: set[tuple[str, str]] = set()
        self.uid_keys: dict[str, tuple[str, str]] = {}
        self.tasks: list[asyncio.Task] = []
        self.terminating: dict[str, asyncio.Task] = {}  # pod UID -> its termination

    async def start(self) -> None:
        from svcnet.agent.runtime import PodRuntime

        self.node = NodeAgent(self.client, self.node_name, self.node_ip)
        await self.node.register()
        pod_cidr = await self.node.wait_for_pod_cidr()
        self.node.start()
        domain = (self.dns or {}).get("domain", "cluster.local")
        cluster_dns = cluster_dns_ip(self.service_cidr)
        self.runtime = PodRuntime(self.data_dir, self.node_name, self.node_ip, pod_cidr,
                                  self.service_cidr, cluster_dns=cluster_dns, cluster_domain=domain,
                                  resolv_conf=self.resolv_conf)
        write_node_state(self.data_dir, {"nodeName": self.node_name, "nodeIP": self.node_ip,
                                         "podCIDR": pod_cidr, "serviceCIDR": self.service_cidr})
        self.runtime.on_event = lambda pod, container, reason, message: self.tasks.append(
            asyncio.ensure_future(self._event(pod, container, reason, message)))
        # envFrom and configMapKeyRef read ConfigMaps from a cache, as the kubelet's manager does
        self.config_maps = Informer(self.client, BY_KIND["ConfigMap"])
        self.config_maps.start()
        await self.config_maps.synced.wait()
        self.runtime.config_map = self.config_maps.get
        await self.runtime.start()
        self.proxier = Proxier(self.client, NodeInfo(self.node_name, (self.node_ip,),
                                                     self.cluster_cidr, self.service_cidr),
                               nft=self.nft)
        await self.proxier.start()
        if self.dns is not None:
            from svcnet.agent.dns.node import NodeDNS

            # The DNS server starts once the proxy's first sync is live: its names are reached
            # through those rules, a previous agent's server answers until then, and its own
            # start (it lists every Service) would compete with the full sync for the CPU.
            self.node_dns = NodeDNS(self.client, node_name=self.node_name,
                                    address=self.runtime.network.gateway,
                                    data_dir=self.data_dir, after=self.proxier.synced.wait,
                                    node_uid=(self.node.node or {}).get("metadata", {}).get("uid", ""),
                                    **self.dns)
            await self.node_dns.start()
        # The termination chain: a deleted pod stops getting new connections before it stops.
        self.runtime.still_routed = self.proxier.routes_new_connections_to
        self.runtime.proxy_syncs = lambda: SYNC_DURATION.count
        self.runtime.proxy_kick = self.proxier.wake.set
        # LoadBalancer addresses answer ARP on this node; healthCheckNodePorts are served here.
        self.announcer = Announcer(self.proxier, self.node_name, (self.node_ip,))
        await self.announcer.start()
        self.health_checks = HealthChecks(self.proxier, self.node_name, (self.node_ip,))
        await self.health_checks.start()
        self.pods = Informer(self.client, POD)
        self.pods.add_handler(self._on_pod)
        self.pods.start()
        await self.pods.synced.wait()
        mine = {p["metadata"]["uid"] for p in self.pods.items()
                if (p.get("spec") or {}).get("nodeName") == self.node_name}
        await self.runtime.retain(mine)
        self.tasks += [asyncio.create_task(self._work()) for _ in range(4)]
        self.tasks.append(asyncio.create_task(self._runtime_changes()))
        await self._serve_metrics()
        log.info("agent for node %s (%s) running; pod CIDR %s", self.node_name, self.node_ip, pod_cidr)

    async def stop(self) -> None:
        """Stop managing; pods and rules stay in place for the next agent."""
        for t in self.tasks + list(self.terminating.values()):
            t.cancel()
        await asyncio.gather(*self.tasks, *self.terminating.values(), return_exceptions=True)
        await self.pods.stop()
        await self.config_maps.stop()
        if self.node_dns is not None:
            await self.node_dns.stop()
        await self.health_checks.stop()
        await self.announcer.stop()
        await self.proxier.stop()
        await self.runtime.stop()
        await self.node.stop()
        if getattr(self, "metrics_runner", None):
            await self.metrics_runner.cleanup()

    # ---- metrics -----------------------------------------------------------------------------

    async def _serve_metrics(self) -> None:
        app = web.Application()
        app.router.add_get("/metrics", lambda r: web.Response(text=metrics.render(),
                                                              content_type="text/plain"))
        app.router.add_get("/healthz", lambda r: web.Response(text="ok"))
        self.metrics_runner = web.AppRunner(app, access_log=None)
        await self.metrics_runner.setup()
        try:
            await web.TCPSite(self.metrics_runner, *self.metrics_addr).start()
        except OSError as e:
            log.warning("metrics endpoint %s:%d not served: %s", *self.metrics_addr, e)

    # ---- pods ----------------------------------------------------------------------------------

    def _on_pod(self, kind: str, old: dict | None, new: dict | None) -> None:
        pod = new or old
        node = (pod.get("spec") or {}).get("nodeName")
        if node not in (self.node_name, None, ""):
            return
        if kind == "DELETED" and node != self.node_name:
            return
        self._enqueue(pod_key(pod))

    def _enqueue(self, key: tuple[str, str]) -> None:
        if key not in self.queued:
            self.queued.add(key)
            self.queue.put_nowait(key)

    async def _runtime_changes(self) -> None:
        while True:
            uid = await self.runtime.changes.get()
            key = self.uid_keys.get(uid)
            if key:
                self._enqueue(key)

    async def _work(self) -> None:
        while True:
            key = await self.queue.get()
            self.queued.discard(key)
            try:
                await self._sync(key)
            except asyncio.CancelledError:
                raise
            except APIError as e:
                if e.code not in (404, 409):
                    log.warning("pod %s/%s: %s", *key, e)
                await asyncio.sleep(0.2)
                self._enqueue(key)
            except Exception:
                log.exception("pod %s/%s sync failed", *key)
                await asyncio.sleep(1)
                self._enqueue(key)

    async def _sync(self, key: tuple[str, str]) -> None:
        pod = self.pods.get(*key)
        if pod is None:
            return  # gone: retain() or the DELETED path already stopped it
        uid = pod["metadata"]["uid"]
        spec = pod.get("spec") or {}
        if not spec.get("nodeName"):
            if self.schedule and not pod["metadata"].get("deletionTimestamp"):
                await self.client.request("POST", f"/api/v1/namespaces/{key[0]}/pods/{key[1]}/binding",
                                          {"apiVersion": "v1", "kind": "Binding",
                                           "metadata": {"name": key[1]},
                                           "target": {"apiVersion": "v1", "kind": "Node",
                                                      "name": self.node_name}})
            return
        if spec["nodeName"] != self.node_name:
            return
        self.uid_keys[uid] = key
        if pod["metadata"].get("deletionTimestamp"):
            # Its own task (a grace period can be long): terminating pods never hold up the
            # work queue that starts and updates the others.
            if uid not in self.terminating:
                self.terminating[uid] = asyncio.create_task(self._terminate(pod, key))
            return
        phase = (pod.get("status") or {}).get("phase")
        if phase in ("Succeeded", "Failed") and uid not in self.runtime.running_uids():
            return
        await self.runtime.sync_pod(pod, pod_service_env(pod, self.proxier.services.items()))
        await self._write_status(pod)

    async def _terminate(self, pod: dict, key: tuple[str, str]) -> None:
        """Stop a pod being deleted (the runtime: no new connections, preStop, SIGTERM, grace,
        SIGKILL), write its final status, then remove it from the API with grace 0."""
        uid = pod["metadata"]["uid"]
        grace = pod["metadata"].get("deletionGracePeriodSeconds")
        if grace is None:
            grace = (pod.get("spec") or {}).get("terminationGracePeriodSeconds", 30)
        try:
            await self.runtime.kill_pod(uid, int(grace))
            await self._write_status(self.pods.get(*key) or pod)
            try:
                await self.client.delete(POD, key[0], key[1], {"gracePeriodSeconds": 0,
                                                               "preconditions": {"uid": uid}})
            except APIError as e:
                if e.code not in (404, 409):
                    raise
            self.uid_keys.pop(uid, None)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("pod %s/%s: termination failed; retrying", *key)
            await asyncio.sleep(1)
            self._enqueue(key)
        finally:
            self.terminating.pop(uid, None)

    async def _event(self, pod: dict, container: str, reason: str, message: str) -> None:
        try:
            await self.client.create(EVENT, _event_body(pod, self.node_name, container, reason,
                                                        message), manager="svcnet-agent")
        except APIError as e:
            log.warning("recording event %s for pod %s: %s", reason, pod["metadata"]["name"], e)

    async def _write_status(self, pod: dict) -> None:
        uid = pod["metadata"]["uid"]
        desired = self.runtime.pod_status(uid)
        if desired is None:
            return
        current = pod.get("status") or {}
        if not _status_differs(current, desired):
            return
        # No resourceVersion: the agent owns pod status, so its write is unconditional.
        meta = {k: v for k, v in pod["metadata"].items() if k != "resourceVersion"}
        body = dict(pod, metadata=meta, status={**current, **desired})
        updated = await self.client.update_status(POD, body, manager="svcnet-agent")
        for container, reason, message in waiting_events(current, desired):
            await self._event(pod, container, reason, message)
        if _ready(updated) and not _ready(pod):
            created = pod["metadata"].get("creationTimestamp")
            if created:
                import datetime

                t0 = datetime.datetime.fromisoformat(created.replace("Z", "+00:00")).timestamp()
                POD_START.observe(max(0.0, datetime.datetime.now().timestamp() - t0))


NODE_STATE = "node.json"


def write_node_state(data_dir: Path, state: dict) -> None:
    """What `svcnet down` needs to find this node's pods and network again."""
    data_dir.mkdir(parents=True, exist_ok=True)
    tmp = data_dir / (NODE_STATE + ".tmp")
    tmp.write_text(json.dumps(state))
    tmp.replace(data_dir / NODE_STATE)


def read_node_state(data_dir: Path) -> dict | None:
    try:
        return json.loads((data_dir / NODE_STATE).read_text())
    except (OSError, ValueError):
        return None


EVENT = BY_KIND["Event"]


def _event_body(pod: dict, node: str, container: str, reason: str, message: str) -> dict:
    import datetime
    import time

    m = pod["metadata"]
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"apiVersion": "v1", "kind": "Event",
            "metadata": {"name": f"{m['name']}.{time.time_ns():x}", "namespace": m["namespace"]},
            "involvedObject": {"kind": "Pod", "apiVersion": "v1", "namespace": m["namespace"],
                               "name": m["name"], "uid": m.get("uid", ""),
                               "fieldPath": f"spec.containers{{{container}}}"},
            "reason": reason, "message": message, "type": "Warning",
            "source": {"component": "kubelet", "host": node},
            "reportingComponent": "kubelet", "reportingInstance": node,
            "firstTimestamp": now, "lastTimestamp": now, "count": 1}


def _ready(pod: dict) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])
