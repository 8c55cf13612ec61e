"""The pod runtime of one node: the narrow API the agent drives.

Theory of operation
- `start()` prepares the node (bridge, ip_forward, service route), adopts the pods recorded
  under `<data>/pods/*/state.json` whose processes are still the same ones (PID + start time),
  kills sandbox holders of this data dir that no record claims, and starts one worker per pod.
- `sync_pod(pod, service_env)` hands the latest pod to its worker (creating it the first time;
  then it waits, at most a second, for the worker's first pass so that the first status the
  agent writes already shows the pod started). `pod_status(uid)` is computed from the worker.
  Whenever a status changes, the pod's UID is put on `changes`.
- `kill_pod` stops a pod (new connections stop reaching it, preStop, SIGTERM, grace, SIGKILL),
  removes its sandbox, releases its address and deletes its directory; its final status stays
  readable through `pod_status`.
- `stop()` stops watching and leaves everything running for the next agent; `teardown()`
  (`svcnet down`) removes every pod and the node's bridge and route.
- Blocking work runs off the event loop: netlink (and sandbox holders) on one thread, container
  starts on a small pool, exec probes and hooks on another.
- Events the kubelet would record (FailedPostStartHook, FailedPreStopHook) go to `on_event`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from svcnet.agent.ipam import IPAM
from svcnet.agent.runtime import containers as ct
from svcnet.agent.runtime.pod import STATE_FILE, PodWorker, wait_event
from svcnet.agent.runtime.sandbox import Network, find_holders, holder_tag, kill_holder

log = logging.getLogger("svcnet.agent.runtime")

FINAL_STATUSES_KEPT = 1000


class PodRuntime:
    def __init__(self, data_dir: Path, node_name: str, node_ip: str, pod_cidr: str,
                 service_cidr: str = "10.96.0.0/12", cluster_dns: str = "10.96.0.10",
                 cluster_domain: str = "cluster.local", resolv_conf: str = "/etc/resolv.conf",
                 bridge: str = "svcnet0",
                 backoff_initial: float = 10.0, backoff_max: float = 300.0):
        self.data_dir = Path(data_dir)
        self.pods_dir = self.data_dir / "pods"
        self.node_name = node_name
        self.node_ip = node_ip
        self.pod_cidr = pod_cidr
        self.service_cidr = service_cidr
        self.cluster_dns = cluster_dns
        self.cluster_domain = cluster_domain
        self.resolv_conf = resolv_conf  # the node's resolvers, for dnsPolicy Default (kubelet's flag)
        self.bridge = bridge
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.tag = holder_tag(self.data_dir)
        self.ipam = IPAM(pod_cidr, self.pods_dir / "ipam.json")
        self.network = Network(bridge, pod_cidr, service_cidr)
        self.changes: asyncio.Queue[str] = asyncio.Queue()
        self.workers: dict[str, PodWorker] = {}
        self.final: OrderedDict[str, dict] = OrderedDict()
        self._netlink_pool = ThreadPoolExecutor(1, thread_name_prefix="svcnet-netlink")
        self._spawn_pool = ThreadPoolExecutor(4, thread_name_prefix="svcnet-spawn")
        self._probe_pool = ThreadPoolExecutor(8, thread_name_prefix="svcnet-exec")
        self._pollers: list[tuple] = []
        self._poll_task: asyncio.Task | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.started = False
        # (pod, container, reason, message) -> None: the agent records them as Warning Events
        self.on_event = None
        # (namespace, name) -> ConfigMap or None: what envFrom and configMapKeyRef read
        self.config_map = None
        # The node's service proxy, for the termination chain (see PodWorker.kill):
        # still_routed(ip, namespace) -> the rules may send new connections to ip (a pod of
        # namespace) as a ready endpoint;
        # proxy_syncs() -> how many syncs the proxy has completed; proxy_kick() asks for one.
        self.still_routed = None
        self.proxy_syncs = None
        self.proxy_kick = None

    def record_event(self, pod: dict, container: str, reason: str, message: str) -> None:
        if self.on_event is not None:
            self.on_event(pod, container, reason, message)

    # ---- executors -------------------------------------------------------------------------

    async def netlink(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self._netlink_pool, fn, *args)

    async def spawner(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self._spawn_pool, fn, *args)

    async def prober(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self._probe_pool, fn, *args)

    def poll_exit(self, gone, then) -> None:
        """Fallback exit detection without pidfds: poll `gone()` every 100 ms."""
        self._pollers.append((gone, then))
        if self._poll_task is None or self._poll_task.done():
            self._poll_task = asyncio.ensure_future(self._poll())

    async def _poll(self) -> None:
        while self._pollers:
            await asyncio.sleep(0.1)
            for item in list(self._pollers):
                if item[0]():
                    self._pollers.remove(item)
                    item[1]()

    # ---- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.pods_dir.mkdir(parents=True, exist_ok=True)
        await self.netlink(self.network.setup_node)
        adopted_holders: set[int] = set()
        workers = self._load_workers()
        for worker in workers:
            if worker.sandbox is not None:
                ok = await self.netlink(self.network.check, worker.sandbox)
                if ok:
                    adopted_holders.add(worker.sandbox.pid)
                else:
                    worker.sandbox_dead = True
        # Holders no record claims (an agent stopped between starting one and recording it)
        # go before any worker runs: a worker may start a new holder at once.
        for pid, uid in find_holders(self.tag).items():
            if pid not in adopted_holders:
                log.warning("killing an unclaimed sandbox holder %d (pod %s)", pid, uid)
                start = ct.proc_start_ticks(pid)
                if start is not None:
                    await self.netlink(kill_holder, pid, start)
        for worker in workers:
            worker.adopt()
            self.workers[worker.uid] = worker
            worker.start()
            log.info("adopted pod %s/%s (%s)", worker.namespace, worker.name, worker.pod_ip)
        self.started = True

    def _load_workers(self) -> list[PodWorker]:
        workers = []
        if not self.pods_dir.is_dir():
            return workers
        for d in sorted(self.pods_dir.iterdir()):
            state_file = d / STATE_FILE
            if not d.is_dir():
                continue
            try:
                state = json.loads(state_file.read_text())
                worker = PodWorker.from_state(self, state)
            except (OSError, ValueError, KeyError) as e:
                log.warning("pod directory %s has no usable state (%s): removed", d, e)
                shutil.rmtree(d, ignore_errors=True)
                continue
            if worker.dir != d:
                shutil.rmtree(d, ignore_errors=True)
                continue
            workers.append(worker)
        return workers

    async def stop(self) -> None:
        """Stop supervising; pods keep running for the next agent to adopt. A pod being
        stopped (a preStop hook, a grace period) is left where it is: it is still being
        deleted, and the next agent stops it again from the start, as a restarted kubelet
        does."""
        for w in list(self.workers.values()):
            if w.kill_task is not None and not w.kill_task.done():
                w.kill_task.cancel()
                await asyncio.gather(w.kill_task, return_exceptions=True)
            await w.close()  # after the pass in progress: never in the middle of a start
            async with w.lock:
                w.detach()
        self.workers.clear()
        self._pollers.clear()
        if self._poll_task is not None:
            self._poll_task.cancel()
        await self.netlink(self.network.close)
        for pool in (self._netlink_pool, self._spawn_pool, self._probe_pool):
            pool.shutdown(wait=False)
        self.started = False

    async def teardown(self, grace_seconds: float = 2.0) -> None:
        """`svcnet down`: kill every pod of this data dir, remove the bridge, route and files."""
        if self.loop is None:
            self.loop = asyncio.get_running_loop()
        if not self.workers:
            for worker in self._load_workers():
                worker.adopt()
                self.workers[worker.uid] = worker
        await asyncio.gather(*(self.kill_pod(uid, grace_seconds) for uid in list(self.workers)),
                             return_exceptions=True)
        for pid in find_holders(self.tag):
            start = ct.proc_start_ticks(pid)
            if start is not None:
                await self.netlink(kill_holder, pid, start)
        await self.netlink(self.network.teardown_node)
        await self.netlink(self.network.close)
        shutil.rmtree(self.pods_dir, ignore_errors=True)
        self.final.clear()

    # ---- pods ------------------------------------------------------------------------------

    async def sync_pod(self, pod: dict, service_env: dict[str, str]) -> None:
        uid = pod["metadata"]["uid"]
        worker = self.workers.get(uid)
        if worker is not None:
            worker.update(pod, service_env)
            return
        if uid in self.final:
            return  # killed already; the API object is on its way out
        if self.loop is None:
            self.loop = asyncio.get_running_loop()
        worker = PodWorker(self, pod, service_env)
        self.workers[uid] = worker
        worker.save()
        worker.start()
        await wait_event(worker.first_pass, 1.0)

    def pod_status(self, uid: str) -> dict | None:
        worker = self.workers.get(uid)
        if worker is not None:
            return worker.status()
        return self.final.get(uid)

    def pod_timings(self, uid: str) -> dict[str, float]:
        """Measured setup times (ms) of a pod: sandbox_ms, container_ms:<name>."""
        worker = self.workers.get(uid)
        return dict(worker.timings) if worker else {}

    def running_uids(self) -> set[str]:
        """The pods this runtime runs (sandbox or containers), terminal ones excluded."""
        return {uid for uid, w in self.workers.items() if not w.terminal}

    async def kill_pod(self, uid: str, grace_seconds: int) -> None:
        worker = self.workers.get(uid)
        if worker is None:
            return
        if worker.kill_task is None:  # one kill per pod; later callers wait for it
            worker.kill_task = asyncio.ensure_future(self._kill(worker, float(grace_seconds)))
        await asyncio.shield(worker.kill_task)

    async def _kill(self, worker: PodWorker, grace: float) -> None:
        await worker.kill(grace)
        self.final[worker.uid] = worker.status()
        while len(self.final) > FINAL_STATUSES_KEPT:
            self.final.popitem(last=False)
        worker.remove_files()
        self.workers.pop(worker.uid, None)
        self.changes.put_nowait(worker.uid)

    async def retain(self, uids: set[str], grace_seconds: int = 2) -> None:
        """Kill the pods not in `uids` (gone from the API) and release leaked addresses."""
        gone = [uid for uid in self.workers if uid not in uids]
        await asyncio.gather(*(self.kill_pod(uid, grace_seconds) for uid in gone),
                             return_exceptions=True)
        self.ipam.retain(set(uids) | set(self.workers))
        for uid in [u for u in self.final if u not in uids]:
            del self.final[uid]

    def log_file(self, uid: str, container: str, previous: bool = False) -> Path | None:
        worker = self.workers.get(uid)
        if worker is None:
            return None
        c = worker.find(container)
        if c is None or c.instances == 0:
            return None
        n = c.restart_count - 1 if previous else c.restart_count
        if n < 0:
            return None
        path = worker.dir / c.name / f"{n}.log"
        return path if path.exists() else None
