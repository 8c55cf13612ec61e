"""One pod's lifecycle: the kubelet's pod worker for a process runtime.

Theory of operation
- A `PodWorker` owns one pod: its sandbox (network namespace holder + veth, see sandbox.py) and
  one `Container` record per init and app container. A single asyncio task runs `reconcile()`
  whenever something happens (sync from the API, a process exit, a probe result, a back-off
  timer) and takes the next actions in kubelet order: sandbox, then init containers one at a
  time (each must exit 0), then every app container, (re)started as restartPolicy says, with
  the kubelet's crash back-off. All actions run under `lock`; `kill()` takes the same lock, so
  a pod is never started and killed at once, and nothing is spawned without being recorded.
- Exits are seen through a pidfd per process (readable when it ends), which works the same for
  our children and for processes adopted from a previous agent. Probes run as one task per
  probe and container instance (probes.py); a liveness or startup failure terminates the
  container, which then restarts per policy.
- Everything needed to adopt the pod after an agent restart is in `<pod dir>/state.json`,
  rewritten (atomically) on every change: the pod, the holder's PID and start time, each
  container's PID, start time, restart count, last termination, back-off and probe results.
- Stopping a pod (`kill`) first waits, bounded, until this node's service proxy sends it no new
  connections (its deletion made it a terminating endpoint), then stops every container as the
  kubelet does: preStop hook, SIGTERM, SIGKILL at the end of the grace period. Lifecycle hooks
  (postStart, preStop: exec, httpGet, sleep) run as the kubelet runs them.
- When every app container has terminated for good, the pod is terminal (Succeeded/Failed): its
  sandbox is removed and its address released; the record stays (for its status) until the pod
  is killed.
- `changes` (the runtime's queue) gets the pod's UID after every change visible in its status.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import signal
import time
from pathlib import Path
from typing import TYPE_CHECKING

from svcnet.agent.runtime import containers as ct
from svcnet.agent.runtime import faults
from svcnet.agent.runtime import status as st
from svcnet.agent.runtime.probes import (LIVENESS, READINESS, STARTUP, ProbeSpec, ProbeState,
                                         http_get, resolve_port, tcp_socket)
from svcnet.agent.runtime.sandbox import Sandbox

if TYPE_CHECKING:
    from svcnet.agent.runtime.manager import PodRuntime

log = logging.getLogger("svcnet.agent.runtime")

STATE_FILE = ct.STATE_FILE
MIN_GRACE = 2.0  # the kubelet never gives a container less than 2 seconds to stop
CONFIG_RETRY = 1.0  # seconds between attempts to start a container whose ConfigMap is missing
HOOK_TIMEOUT = 300.0  # an exec or HTTP postStart hook that never ends is stopped after this
UNROUTE_WAIT = 5.0  # at most this long (within the grace period) for new connections to stop


def rfc3339(t: float | None = None) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() if t is None else t))


async def wait_event(event: asyncio.Event, timeout: float | None) -> bool:
    """`event.wait()` with a timeout; True if set. (Not asyncio.wait_for: on Python 3.11 it can
    swallow a cancellation that arrives as the event is set.)"""
    if event.is_set():
        return True
    waiter = asyncio.ensure_future(event.wait())
    try:
        done, _ = await asyncio.wait({waiter}, timeout=timeout)
    finally:
        if not waiter.done():
            waiter.cancel()
    return bool(done)


def should_restart(policy: str, exit_code: int) -> bool:
    return policy == "Always" or (policy == "OnFailure" and exit_code != 0)


class Container:
    """One container of the pod across its instances (restarts)."""

    def __init__(self, spec: dict, init: bool):
        self.spec = spec
        self.name: str = spec["name"]
        self.init = init
        self.hash = ct.container_hash(spec)
        self.restart_count = 0
        self.instances = 0                 # instances created so far (started or failed to)
        # The current instance (while running)
        self.pid: int | None = None
        self.start_ticks: int | None = None
        self.child = False
        self.pidfd: int | None = None
        self.started_at: str | None = None
        self.running = False
        self.gen = 0                       # bumps with every instance; stale tasks check it
        self.image_id = ""
        # What happened
        self.terminated: dict | None = None  # the latest termination (current instance ended)
        self.last_state: dict | None = None  # the termination before the current instance
        self.final = False                  # terminated and will not be restarted
        self.waiting: tuple[str, str] | None = None  # (reason, message) when not running
        self.launch_error = False           # waiting on a LaunchError until the spec changes
        self.finished_wall = 0.0
        # Crash back-off (k8s.io/client-go/util/flowcontrol.Backoff, one entry per container)
        self.backoff = 0.0
        self.backoff_updated = 0.0
        # Probes
        self.probes: dict[str, ProbeState] = {}
        self.probe_tasks: list[asyncio.Task] = []
        self.started_event = asyncio.Event()
        self.started = False
        self.ready = False
        self.kill_reason: str | None = None
        self.post_start = False            # the postStart hook is running: not running yet
        self.retry_at = 0.0                # a config error: try to start again then (monotonic)
        self.spawning = False              # an instance is being started (persisted first)
        self.exited = asyncio.Event()
        self.uid = ct.DEFAULT_UID
        self.gid = ct.DEFAULT_GID
        self.env: dict[str, str] = {}
        self.saved_probe_results: dict[str, bool | None] = {}  # from state.json, for adoption

    @property
    def container_id(self) -> str | None:
        return f"svcnet://{self.pid}" if self.pid else None

    def succeeded(self) -> bool:
        return self.final and (self.terminated or {}).get("exitCode") == 0

    def view(self, pending_reason: str) -> st.ContainerView:
        v = st.ContainerView(name=self.name, image=self.spec.get("image", ""),
                             restart_count=self.restart_count, image_id=self.image_id,
                             ready=self.ready and self.running, started=self.started and self.running)
        if self.running and not self.post_start:
            v.state = {"running": {"startedAt": self.started_at}}
            v.container_id = self.container_id
            if self.last_state:
                v.last_state = {"terminated": self.last_state}
        elif self.terminated is not None and (self.final or self.waiting is None):
            v.state = {"terminated": self.terminated}
            v.container_id = self.terminated.get("containerID")
            if self.last_state:
                v.last_state = {"terminated": self.last_state}
        else:
            reason, message = self.waiting or (pending_reason, "")
            v.state = st.waiting(reason, message or None)
            last = self.terminated or self.last_state  # (a restart being set up: the previous)
            if last is not None:
                v.last_state = {"terminated": last}
        return v

    # ---- persistence ----------------------------------------------------------------------------

    def to_json(self) -> dict:
        return {
            "name": self.name, "init": self.init, "hash": self.hash,
            "restartCount": self.restart_count, "instances": self.instances,
            "pid": self.pid if self.running else None, "start": self.start_ticks,
            "startedAt": self.started_at, "running": self.running, "imageID": self.image_id,
            "terminated": self.terminated, "lastState": self.last_state, "final": self.final,
            "waiting": list(self.waiting) if self.waiting else None,
            "launchError": self.launch_error, "finishedWall": self.finished_wall,
            "backoff": self.backoff, "backoffUpdated": self.backoff_updated,
            "started": self.started, "ready": self.ready,
            "probeResults": {k: p.result for k, p in self.probes.items()},
            "uid": self.uid, "gid": self.gid, "env": self.env, "spawning": self.spawning,
        }

    def load(self, d: dict) -> None:
        self.hash = d.get("hash", self.hash)
        self.restart_count = d.get("restartCount", 0)
        self.instances = d.get("instances", 0)
        self.pid = d.get("pid")
        self.start_ticks = d.get("start")
        self.started_at = d.get("startedAt")
        self.running = bool(d.get("running") and self.pid)
        self.image_id = d.get("imageID", "")
        self.terminated = d.get("terminated")
        self.last_state = d.get("lastState")
        self.final = bool(d.get("final"))
        self.waiting = tuple(d["waiting"]) if d.get("waiting") else None
        self.launch_error = bool(d.get("launchError"))
        self.finished_wall = d.get("finishedWall", 0.0)
        self.backoff = d.get("backoff", 0.0)
        self.backoff_updated = d.get("backoffUpdated", 0.0)
        self.started = bool(d.get("started"))
        self.ready = bool(d.get("ready"))
        self.saved_probe_results = d.get("probeResults") or {}
        self.uid = d.get("uid", ct.DEFAULT_UID)
        self.gid = d.get("gid", ct.DEFAULT_GID)
        self.env = d.get("env") or {}
        self.spawning = bool(d.get("spawning"))


class PodWorker:
    def __init__(self, rt: "PodRuntime", pod: dict, service_env: dict[str, str]):
        self.rt = rt
        meta = pod["metadata"]
        self.uid: str = meta["uid"]
        self.namespace: str = meta.get("namespace") or "default"
        self.name: str = meta["name"]
        self.dir: Path = ct.pod_dir(rt.pods_dir, self.namespace, self.name, self.uid)
        self.pod = pod
        self.service_env = dict(service_env or {})
        spec = pod.get("spec") or {}
        self.init = [Container(c, True) for c in spec.get("initContainers") or []]
        self.app = [Container(c, False) for c in spec.get("containers") or []]
        self.sandbox: Sandbox | None = None
        self.sandbox_dead = False
        self.sandbox_error: str | None = None
        self.sandbox_retry_at = 0.0
        self.sandbox_backoff = 0.0
        self.holder_fd: int | None = None
        self.pod_ip: str | None = None
        self.start_time = rfc3339()
        self.terminal = False
        self.terminating = False
        self.closing = False               # the worker loop must end (kill or stop)
        self.stopping = asyncio.Event()    # set with `closing`: long waits (hooks) give up
        self.lock = asyncio.Lock()
        self.wake = asyncio.Event()
        self.first_pass = asyncio.Event()
        self.task: asyncio.Task | None = None
        self.kill_task: asyncio.Task | None = None
        self.conditions: list[dict] | None = (pod.get("status") or {}).get("conditions")
        self.timings: dict[str, float] = {}

    # ---- basics -----------------------------------------------------------------------------

    @property
    def spec(self) -> dict:
        return self.pod.get("spec") or {}

    @property
    def policy(self) -> str:
        return self.spec.get("restartPolicy") or "Always"

    @property
    def host_network(self) -> bool:
        return bool(self.spec.get("hostNetwork"))

    @property
    def deleting(self) -> bool:
        return bool(self.pod["metadata"].get("deletionTimestamp"))

    def containers(self) -> list[Container]:
        return self.init + self.app

    def find(self, name: str) -> Container | None:
        return next((c for c in self.containers() if c.name == name), None)

    def notify(self) -> None:
        self.rt.changes.put_nowait(self.uid)

    def files(self) -> dict[str, str]:
        """Bind mounts for enter_pod: node path -> pod file."""
        return ct.pod_mounts(self.dir)

    def write_files(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        made = ct.pod_files(self.pod, self.pod_ip, self.rt.cluster_dns, self.rt.cluster_domain,
                            self.rt.resolv_conf)
        for name, target in (("resolv.conf", "resolv.conf"), ("hosts", "etc.hosts"),
                             ("hostname", "etc.hostname")):
            path = self.dir / target
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_text(made[name])
            os.chmod(tmp, 0o644)
            tmp.replace(path)

    def save(self) -> None:
        state = {
            "version": 1,
            "pod": {"metadata": self.pod.get("metadata"), "spec": self.spec},
            "serviceEnv": self.service_env,
            "startTime": self.start_time,
            "sandbox": self.sandbox.to_json() if self.sandbox else None,
            "podIP": self.pod_ip,
            "terminal": self.terminal,
            "conditions": self.conditions,
            "containers": [c.to_json() for c in self.containers()],
        }
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.dir / (STATE_FILE + ".tmp")
        tmp.write_text(json.dumps(state))
        tmp.replace(self.dir / STATE_FILE)

    @classmethod
    def from_state(cls, rt: "PodRuntime", state: dict) -> "PodWorker":
        w = cls(rt, state["pod"], state.get("serviceEnv") or {})
        w.start_time = state.get("startTime") or w.start_time
        w.sandbox = Sandbox.from_json(state.get("sandbox"))
        w.pod_ip = state.get("podIP")
        w.terminal = bool(state.get("terminal"))
        w.conditions = state.get("conditions")
        by_name = {(d["name"], d.get("init", False)): d for d in state.get("containers") or []}
        for c in w.containers():
            d = by_name.get((c.name, c.init))
            if d:
                c.load(d)
        return w

    # ---- status -----------------------------------------------------------------------------

    def status(self) -> dict:
        init_done = all(c.succeeded() for c in self.init)
        pending = "ContainerCreating"
        init_views = [c.view(pending) for c in self.init]
        app_views = [c.view(pending if init_done else "PodInitializing") for c in self.app]
        previous = list(self.conditions or [])
        api_conditions = (self.pod.get("status") or {}).get("conditions") or []
        owned = {c.get("type") for c in previous}
        previous += [c for c in api_conditions if c.get("type") not in owned]
        result = st.pod_status(self.spec, init_views, app_views, pod_ip=self.pod_ip,
                               host_ip=self.rt.node_ip, start_time=self.start_time,
                               sandbox_ready=self.sandbox is not None and not self.sandbox_dead,
                               previous_conditions=previous, now=rfc3339(),
                               terminal=self.terminating and not any(
                                   c.running for c in self.containers()))
        self.conditions = [c for c in result["conditions"]
                           if c["type"] in (st.POD_SCHEDULED, st.READY_TO_START, st.INITIALIZED,
                                            st.CONTAINERS_READY, st.READY)]
        return result

    # ---- the worker loop ----------------------------------------------------------------------

    def start(self) -> None:
        self.task = asyncio.create_task(self._run(), name=f"pod {self.namespace}/{self.name}")

    async def _run(self) -> None:
        """The worker loop; it ends by itself once `closing` is set (never cancelled midway,
        so a start in progress is always recorded)."""
        while not self.closing:
            self.wake.clear()
            delay: float | None = None
            try:
                async with self.lock:
                    if self.closing:
                        return
                    delay = await self.reconcile()
            except Exception:
                log.exception("pod %s/%s: sync failed", self.namespace, self.name)
                delay = 1.0
            finally:
                self.first_pass.set()
            if not self.closing:
                await wait_event(self.wake, None if delay is None else max(delay, 0.001))

    async def close(self) -> None:
        """End the worker loop (after the pass in progress, if any)."""
        self.closing = True
        self.stopping.set()
        self.wake.set()
        if self.task is not None and self.task is not asyncio.current_task():
            await asyncio.gather(self.task, return_exceptions=True)

    def update(self, pod: dict, service_env: dict[str, str]) -> None:
        """A newer version of the pod from the API."""
        self.pod = pod
        self.service_env = dict(service_env or {})
        specs = {c["name"]: c for c in (pod.get("spec") or {}).get("containers") or []}
        specs.update({c["name"]: c for c in (pod.get("spec") or {}).get("initContainers") or []})
        for c in self.containers():
            new = specs.get(c.name)
            if new is None:
                continue
            c.spec = new
            h = ct.container_hash(new)
            if h != c.hash:
                c.hash = h
                if c.launch_error:
                    c.launch_error, c.waiting = False, None
                if c.running:
                    c.kill_reason = "the container definition changed"
                    asyncio.ensure_future(self.terminate(c, self.grace()))
        self.wake.set()

    async def reconcile(self) -> float | None:
        """Take the next actions; returns when to look again (None: when something happens)."""
        if self.terminal:
            return None
        if self.sandbox is not None and self.sandbox_dead:
            await self._sandbox_lost()
        if self.app and all(c.final for c in self.app):
            await self._finish()
            return None
        wants_start = any(not c.running and not c.final and not c.launch_error
                          for c in self.containers())
        if self.sandbox is None:
            if self.deleting or not wants_start:
                return None
            delay = await self._ensure_sandbox()
            if delay is not None:
                return delay

        # Init containers, in order, one at a time.
        for c in self.init:
            if c.succeeded():
                continue
            if c.running or c.launch_error:
                return None
            if c.terminated is not None and c.terminated.get("exitCode") != 0:
                if self.policy == "Never":
                    c.final = True
                    await self._finish()
                    return None
                if self.deleting:
                    return None
                wait = self._backoff(c)
                if wait > 0:
                    return wait
            elif self.deleting:
                return None
            if c.retry_at > time.monotonic():
                return c.retry_at - time.monotonic()
            await self._start(c)
            if c.retry_at:
                return CONFIG_RETRY
            if c.running or c.terminated is None:
                return None
            return 0  # failed to start: look again (back-off decides)

        delays: list[float] = []
        for c in self.app:
            if c.running or c.final or c.launch_error:
                continue
            if c.terminated is not None:
                if self.deleting or not should_restart(self.policy, c.terminated["exitCode"]):
                    c.final = True
                    c.waiting = None
                    self.save()
                    self.notify()
                    continue
                wait = self._backoff(c)
                if wait > 0:
                    delays.append(wait)
                    continue
            elif self.deleting:
                continue
            if c.retry_at > time.monotonic():
                delays.append(c.retry_at - time.monotonic())
                continue
            await self._start(c)
            if c.retry_at:
                delays.append(CONFIG_RETRY)
            elif not c.running and c.terminated is not None and not c.final:
                delays.append(0)
        if self.app and all(c.final for c in self.app):
            await self._finish()
            return None
        return min(delays) if delays else None

    # ---- sandbox ------------------------------------------------------------------------------

    async def _ensure_sandbox(self) -> float | None:
        now = time.monotonic()
        if now < self.sandbox_retry_at:
            return self.sandbox_retry_at - now
        t0 = time.perf_counter()
        try:
            ip = self.rt.node_ip if self.host_network else self.rt.ipam.allocate(self.uid)
            faults.point("ip-allocated")
            self.pod_ip = ip
            self.write_files()

            def record(sb: Sandbox) -> None:  # called on the netlink thread
                self.sandbox = sb
                self.rt.loop.call_soon_threadsafe(self.save)

            sb = await self.rt.netlink(self.rt.network.create, self.uid, ip, self.rt.tag,
                                       self.host_network, rfc3339(), record)
        except Exception as e:  # noqa: BLE001 - shown in the pod's status, retried
            self.sandbox = None
            self.sandbox_error = str(e)
            self.sandbox_backoff = min(max(self.sandbox_backoff * 2, 1.0), 30.0)
            self.sandbox_retry_at = time.monotonic() + self.sandbox_backoff
            log.warning("pod %s/%s: cannot create the sandbox: %s", self.namespace, self.name, e)
            for c in self.containers():
                if not c.running and c.terminated is None:
                    c.waiting = ("ContainerCreating", f"failed to create pod sandbox: {e}")
            self.save()
            self.notify()
            return self.sandbox_backoff
        self.sandbox = sb
        self.sandbox_dead = False
        self.sandbox_error = None
        self.sandbox_backoff = 0.0
        for c in self.containers():
            if c.waiting and c.waiting[0] == "ContainerCreating":
                c.waiting = None
        self.timings["sandbox_ms"] = (time.perf_counter() - t0) * 1000
        self.watch_holder()
        self.save()
        faults.point("sandbox-ready")
        self.notify()
        return None

    def watch_holder(self) -> None:
        sb = self.sandbox
        if sb is None:
            return
        fd = ct.pidfd_open(sb.pid)
        if fd is None:
            return
        self.holder_fd = fd

        def gone() -> None:
            self.rt.loop.remove_reader(fd)
            os.close(fd)
            if self.holder_fd == fd:
                self.holder_fd = None
            ct.reap(sb.pid)
            if self.sandbox is sb and not self.terminating:
                log.warning("pod %s/%s: sandbox holder %d died", self.namespace, self.name,
                            sb.pid)
                self.sandbox_dead = True
                self.wake.set()
                self.notify()

        self.rt.loop.add_reader(fd, gone)

    def unwatch_holder(self) -> None:
        if self.holder_fd is not None:
            self.rt.loop.remove_reader(self.holder_fd)
            os.close(self.holder_fd)
            self.holder_fd = None

    async def _sandbox_lost(self) -> None:
        """The holder is gone (or its veth): kill the containers, drop what is left."""
        for c in self.containers():
            if c.running:
                c.kill_reason = "the pod sandbox changed"
                ct.signal_group(c.pid, signal.SIGKILL, c.start_ticks)
        await self._wait_exits([c for c in self.containers() if c.running], 5.0)
        sb, self.sandbox = self.sandbox, None
        self.unwatch_holder()
        if sb is not None:
            await self.rt.netlink(self.rt.network.destroy, sb)
        self.sandbox_dead = False
        # Init containers run again in a new sandbox.
        for c in self.init:
            if c.succeeded():
                c.final = False
        self.save()
        self.notify()

    async def _release_sandbox(self) -> None:
        sb, self.sandbox = self.sandbox, None
        self.unwatch_holder()
        if sb is not None:
            try:
                await self.rt.netlink(self.rt.network.destroy, sb)
            except Exception:
                log.exception("pod %s/%s: removing the sandbox", self.namespace, self.name)
        if not self.host_network:
            self.rt.ipam.release(self.uid)

    async def _finish(self) -> None:
        """Every app container is done for good: the pod is terminal; free its network."""
        self.terminal = True
        for c in self.containers():
            self._stop_probes(c)
        await self._release_sandbox()
        self.save()
        self.notify()

    # ---- containers ---------------------------------------------------------------------------

    def ctx(self) -> dict[str, str]:
        return {"podIP": self.pod_ip or "", "hostIP": self.rt.node_ip,
                "nodeName": self.rt.node_name}

    def grace(self) -> float:
        g = self.spec.get("terminationGracePeriodSeconds")
        return float(30 if g is None else g)

    def _backoff(self, c: Container, now: float | None = None) -> float:
        """kubelet doBackOff: seconds to wait before restarting `c` (0 = now, entry updated)."""
        now = time.time() if now is None else now
        event = c.finished_wall or now
        maximum = self.rt.backoff_max
        expired = c.backoff == 0 or event - c.backoff_updated > 2 * maximum
        if not expired and now - event < c.backoff:
            msg = (f"back-off {ct.format_duration(c.backoff)} restarting failed "
                   f"container={c.name} pod={self.name}_{self.namespace}({self.uid})")
            if c.waiting != ("CrashLoopBackOff", msg):
                c.waiting = ("CrashLoopBackOff", msg)
                self.save()
                self.notify()
            return event + c.backoff - now
        if expired:
            c.backoff = self.rt.backoff_initial
        else:
            c.backoff = min(c.backoff * 2, maximum)
        c.backoff_updated = now
        return 0.0

    async def _start(self, c: Container) -> None:
        t0 = time.perf_counter()
        warnings: list[str] = []
        try:
            launch = ct.launch_for(self.pod, c.spec, self.service_env, self.ctx(),
                                   self.rt.config_map, warnings)
        except ct.LaunchError as e:
            if c.waiting != (e.reason, e.message):
                log.warning("pod %s/%s container %s: %s: %s", self.namespace, self.name,
                            c.name, e.reason, e.message)
            c.waiting = (e.reason, e.message)
            if e.reason == "CreateContainerConfigError":  # a ConfigMap may yet appear: retry
                c.retry_at = time.monotonic() + CONFIG_RETRY
            else:
                c.launch_error = True
            self.save()
            self.notify()
            return
        c.retry_at = 0.0
        for message in warnings:
            self.rt.record_event(self.pod, c.name, "InvalidEnvironmentVariableNames", message)
        unmounted = ct.unmounted_volumes(c.spec) if c.instances == 0 else None
        if unmounted:
            self.rt.record_event(self.pod, c.name, "FailedMount", unmounted)
        if c.instances > 0:
            c.restart_count += 1
            c.last_state = c.terminated
        c.terminated = None
        c.waiting = None
        c.instances += 1
        c.image_id = launch.image_id
        c.uid, c.gid, c.env = launch.uid, launch.gid, launch.env
        self._prune_logs(c)
        log_path = self.dir / c.name / f"{c.restart_count}.log"
        started_wall = time.time()
        c.spawning = True  # recorded first: a crash during the start leaves no unknown process
        self.save()
        try:
            spawned = await self.rt.spawner(ct.spawn, launch, self.sandbox.netns,
                                            ct.pod_hostname(self.pod), self.files(), log_path,
                                            self.host_network)
            faults.point("container-spawned")
        except ct.LaunchError as e:
            c.spawning = False
            now = time.time()
            c.terminated = {"exitCode": 128, "reason": e.reason, "message": e.message,
                            "startedAt": rfc3339(started_wall), "finishedAt": rfc3339(now)}
            c.finished_wall = now
            log.warning("pod %s/%s container %s: %s", self.namespace, self.name, c.name,
                        e.message)
            self.save()
            self.notify()
            return
        c.gen += 1
        c.pid, c.start_ticks, c.child = spawned.pid, spawned.start_ticks, spawned.child
        c.running = True
        c.spawning = False
        c.started_at = rfc3339(started_wall)
        c.kill_reason = None
        c.exited = asyncio.Event()
        self.timings[f"container_ms:{c.name}"] = (time.perf_counter() - t0) * 1000
        self.watch(c, spawned.pidfd)
        handler = (c.spec.get("lifecycle") or {}).get("postStart")
        if handler and await self._post_start(c, handler):
            return
        self._init_probes(c, time.monotonic(), None)
        self.save()
        self.notify()

    async def _post_start(self, c: Container, handler: dict) -> bool:
        """Run the postStart hook as the kubelet does: the container counts as created, not
        running, until it completes; if it fails, a FailedPostStartHook event and the container
        is killed (preStop included), to be restarted as its policy says. True if it failed."""
        c.post_start = True
        self.save()
        self.notify()
        gen = c.gen
        error = await self._hook_until(c, handler, "postStart", None)
        c.post_start = False
        if error is None or c.gen != gen or not c.running:
            return False
        log.warning("pod %s/%s: %s", self.namespace, self.name, error)
        self.rt.record_event(self.pod, c.name, "FailedPostStartHook", error)
        c.kill_reason = error
        await self.terminate(c, self.grace())
        return True

    def _prune_logs(self, c: Container) -> None:
        """Keep the current and the previous instance's log (as the kubelet does), rotated
        pieces included."""
        d = self.dir / c.name
        if not d.is_dir():
            return
        for f in d.iterdir():
            instance = f.name.split(".log", 1)[0]
            if ".log" in f.name and instance.isdigit() and int(instance) < c.restart_count - 1:
                f.unlink(missing_ok=True)

    def watch(self, c: Container, pidfd: int | None) -> None:
        """Call `_exited` when the process ends (pidfd; polling if there is none)."""
        gen, pid, ticks = c.gen, c.pid, c.start_ticks
        if pidfd is None:
            self.rt.poll_exit(lambda: not ct.alive(pid, ticks),
                              lambda: self._exited(c, gen, None))
            return
        c.pidfd = pidfd

        def readable() -> None:
            self.rt.loop.remove_reader(pidfd)
            os.close(pidfd)
            if c.pidfd == pidfd:
                c.pidfd = None
            if c.child:
                status = ct.reap(pid)
            else:
                # Not our child: its status can be read while it is still a zombie; and an
                # adopting runtime in the same process may be its parent after all.
                zombie = ct.zombie_exit_status(pid, ticks) if ticks else None
                reaped = ct.reap(pid)
                status = zombie if zombie is not None else reaped
            self._exited(c, gen, status)

        self.rt.loop.add_reader(pidfd, readable)

    def unwatch(self, c: Container) -> None:
        if c.pidfd is not None:
            self.rt.loop.remove_reader(c.pidfd)
            os.close(c.pidfd)
            c.pidfd = None

    def _exited(self, c: Container, gen: int, wait_status: int | None) -> None:
        if c.gen != gen or not c.running:
            return
        now = time.time()
        term: dict = {"startedAt": c.started_at, "finishedAt": rfc3339(now),
                      "containerID": c.container_id}
        if wait_status is None:
            term.update(exitCode=137, reason="ContainerStatusUnknown",
                        message="The container exited while the agent was not its parent: "
                                "its exit status is unknown")
        else:
            code, sig = ct.decode_wait_status(wait_status)
            term.update(exitCode=code, reason="Completed" if code == 0 else "Error")
            if sig:
                term["signal"] = sig
        if c.kill_reason and wait_status is not None and term["exitCode"] != 0:
            term["message"] = c.kill_reason
        ct.signal_group(c.pid, signal.SIGKILL)  # what is left of the container dies with it
        # (the group: the leader is gone, so its PID is no longer checked)
        c.running = False
        c.terminated = term
        c.finished_wall = now
        c.ready = c.started = False
        c.exited.set()
        self._stop_probes(c)
        log.info("pod %s/%s container %s exited: %s", self.namespace, self.name, c.name,
                 term["exitCode"])
        if c.init and term["exitCode"] == 0:
            c.final = True
        self.save()
        self.notify()
        self.wake.set()

    async def terminate(self, c: Container, grace: float) -> None:
        """The kubelet's killContainer: the preStop hook (if any; its time counts against the
        grace period), SIGTERM to the container's process group, SIGKILL when the rest of the
        grace period (at least MIN_GRACE) is over."""
        if not c.running:
            return
        gen = c.gen
        began = time.monotonic()
        handler = (c.spec.get("lifecycle") or {}).get("preStop")
        if handler and grace > 0:
            error = await self._hook_until(c, handler, "preStop", grace)
            if error is not None:
                log.warning("pod %s/%s: %s", self.namespace, self.name, error)
                self.rt.record_event(self.pod, c.name, "FailedPreStopHook", error)
        if c.gen != gen or not c.running:
            return
        ct.signal_group(c.pid, signal.SIGTERM, c.start_ticks)
        left = grace - (time.monotonic() - began)
        if not await wait_event(c.exited, max(left, MIN_GRACE)):
            if c.gen == gen and c.running:
                ct.signal_group(c.pid, signal.SIGKILL, c.start_ticks)

    async def _wait_exits(self, cs: list[Container], timeout: float) -> None:
        waits = [asyncio.ensure_future(c.exited.wait()) for c in cs if c.running]
        if waits:
            _, pending = await asyncio.wait(waits, timeout=timeout)
            for p in pending:
                p.cancel()

    # ---- probes -------------------------------------------------------------------------------

    def _init_probes(self, c: Container, started_mono: float,
                     saved: dict[str, bool] | None) -> None:
        c.probes = {}
        saved = saved or {}
        for kind, key in ((STARTUP, "startupProbe"), (READINESS, "readinessProbe"),
                          (LIVENESS, "livenessProbe")):
            spec = ProbeSpec.from_api(c.spec.get(key))
            if spec is not None:
                c.probes[kind] = ProbeState(kind, spec, started_mono, saved.get(kind))
        c.started_event = asyncio.Event()
        startup = c.probes.get(STARTUP)
        c.started = startup is None or startup.done
        if c.started:
            c.started_event.set()
        self._update_ready(c)
        c.probe_tasks = [asyncio.create_task(self._probe_loop(c, p, c.gen))
                         for p in c.probes.values()]

    def _stop_probes(self, c: Container) -> None:
        for t in c.probe_tasks:
            t.cancel()
        c.probe_tasks = []

    def _update_ready(self, c: Container) -> bool:
        readiness = c.probes.get(READINESS)
        ready = c.running and c.started and (readiness is None or readiness.result)
        changed = ready != c.ready
        c.ready = ready
        return changed

    async def _probe_loop(self, c: Container, p: ProbeState, gen: int) -> None:
        if p.kind != STARTUP:
            await c.started_event.wait()
        while c.gen == gen and c.running and p.active:
            now = time.monotonic()
            when, early = p.due(now)
            if when > now:
                await asyncio.sleep(when - now)
            if c.gen != gen or not c.running:
                return
            began = time.monotonic()
            try:
                ok, message = await self._run_probe(c, p.spec)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 - a probe error is a failed probe
                ok, message = False, f"probe error: {e}"
            if c.gen != gen or not c.running:
                return
            if p.observe(ok, began, early, message):
                self._probe_changed(c, p)

    def _probe_changed(self, c: Container, p: ProbeState) -> None:
        if p.kind == STARTUP and p.result:
            c.started = True
            c.started_event.set()
        elif p.kind in (STARTUP, LIVENESS) and not p.result:
            what = "startup" if p.kind == STARTUP else "liveness"
            log.info("pod %s/%s: container %s failed %s probe, will be restarted: %s",
                     self.namespace, self.name, c.name, what, p.message)
            c.kill_reason = f"Container {c.name} failed {what} probe, will be restarted"
            handler = c.spec.get(f"{what}Probe") or {}
            grace = handler.get("terminationGracePeriodSeconds")
            asyncio.ensure_future(self.terminate(c, self.grace() if grace is None else grace))
        self._update_ready(c)
        self.save()
        self.notify()

    async def _run_probe(self, c: Container, spec: ProbeSpec) -> tuple[bool, str]:
        a = spec.action
        if spec.handler in ("httpGet", "tcpSocket"):
            port = ct_port = resolve_port(a.get("port"), c.spec)
            if ct_port is None:
                return False, f"invalid probe port {a.get('port')!r}"
            host = a.get("host") or self.pod_ip or "127.0.0.1"
            if spec.handler == "tcpSocket":
                return await tcp_socket(host, port, spec.timeout)
            return await http_get(host, port, a.get("path") or "/", a.get("scheme") or "HTTP",
                                  a.get("httpHeaders"), spec.timeout)
        if spec.handler == "exec":
            command = [str(x) for x in a.get("command") or []]
            if not command:
                return False, "exec probe without a command"
            return await self.exec_in(c, command, spec.timeout)
        return False, f"{spec.handler} probes are not supported by svcnet"

    async def exec_in(self, c: Container, command: list[str], timeout: float) -> tuple[bool, str]:
        if self.sandbox is None:
            return False, "the pod has no sandbox"
        code, out = await self.rt.prober(ct.run_in_pod, command, c.env or {"PATH": ct.DEFAULT_PATH},
                                         self.sandbox.netns, ct.pod_hostname(self.pod),
                                         self.files(), c.uid, c.gid, timeout)
        if code is None:
            return False, out
        return code == 0, out if code else ""

    # ---- adoption and termination -------------------------------------------------------------

    def adopt(self) -> None:
        """Resume watching processes recorded in state.json (after an agent restart)."""
        now_wall, now_mono = time.time(), time.monotonic()
        if self.sandbox is not None:
            self.watch_holder()
        self._kill_unrecorded()
        for c in self.containers():
            if not c.running:
                continue
            c.gen += 1
            c.exited = asyncio.Event()
            c.child = False
            if not ct.alive(c.pid, c.start_ticks):
                self._exited(c, c.gen, None)
                continue
            started_wall = _parse_time(c.started_at) or now_wall
            started_mono = now_mono - max(0.0, now_wall - started_wall)
            # Probe results resume as they were published: no readiness blip on a restart.
            self._init_probes(c, started_mono, c.saved_probe_results)
            self.watch(c, ct.pidfd_open(c.pid))

    def _kill_unrecorded(self) -> None:
        """A previous agent died while starting a container (`spawning` was recorded, the
        process was not): such a process may be running unknown to anyone. Every process group
        in the pod's network namespace that is not a recorded container's is killed, so the
        container starts again exactly once."""
        pending = [c for c in self.containers() if c.spawning and not c.running]
        for c in pending:
            c.spawning = False
        if not pending or self.sandbox is None or self.host_network:
            return
        known = {c.pid for c in self.containers() if c.running and c.pid}
        for pid in ct.processes_in_netns(self.sandbox.pid):
            try:
                leader = os.getsid(pid)
            except OSError:
                continue
            if pid != self.sandbox.pid and leader not in known | {0, 1, self.sandbox.pid}:
                log.warning("pod %s/%s: killing process %d, started by an agent that stopped "
                            "before it recorded it", self.namespace, self.name, pid)
                ct.signal_group(leader, signal.SIGKILL)
                ct.signal_group(pid, signal.SIGKILL, ct.proc_start_ticks(pid))

    def detach(self) -> None:
        """Stop watching (the agent is stopping); processes keep running."""
        self.unwatch_holder()
        for c in self.containers():
            self._stop_probes(c)
            self.unwatch(c)
        self.save()

    async def kill(self, grace: float) -> None:
        """Stop the pod and remove its sandbox, in the order that loses no request: wait
        (bounded) until this node's proxy no longer sends new connections to the pod, then stop
        every container (preStop, SIGTERM, SIGKILL at the end of the grace period)."""
        self.terminating = True
        await self.close()
        async with self.lock:
            running = [c for c in self.containers() if c.running]
            if running:
                began = time.monotonic()
                await self._wait_unrouted(min(grace, UNROUTE_WAIT))
                grace = max(0.0, grace - (time.monotonic() - began))
                await asyncio.gather(*(self.terminate(c, grace) for c in running))
                await self._wait_exits(running, 5.0)
            for c in self.containers():
                self._stop_probes(c)
                if c.running:  # cannot be killed (or not seen to die): stop watching anyway
                    self.unwatch(c)
            await self._release_sandbox()

    # ---- lifecycle hooks ------------------------------------------------------------------------

    async def _hook_until(self, c: Container, handler: dict, hook: str,
                          timeout: float | None) -> str | None:
        """Run a hook until it ends, `timeout` passes, the container exits or the worker stops;
        the kubelet's failure message if it failed, else None."""
        gen = c.gen
        task = asyncio.ensure_future(self.run_hook(c, handler, timeout or HOOK_TIMEOUT))
        waits = {task, asyncio.ensure_future(c.exited.wait())}
        if hook == "postStart":
            waits.add(asyncio.ensure_future(self.stopping.wait()))
        done, pending = await asyncio.wait(waits, timeout=timeout,
                                           return_when=asyncio.FIRST_COMPLETED)
        for p in pending:
            p.cancel()
        if task not in done:
            if c.gen == gen and c.running and not self.stopping.is_set():
                log.info("pod %s/%s: %s hook of %s did not finish within %gs", self.namespace,
                         self.name, hook, c.name, timeout)
            return None
        return task.result()

    async def run_hook(self, c: Container, handler: dict, timeout: float) -> str | None:
        """One LifecycleHandler (exec, httpGet, sleep); None or the kubelet's failure message."""
        where = f'for Container "{c.name}" in Pod "{self.name}_{self.namespace}({self.uid})"'
        if handler.get("exec") is not None:
            command = [str(x) for x in (handler["exec"] or {}).get("command") or []]
            if self.sandbox is None or not command:
                code, out = 126, "no command" if not command else "the pod has no sandbox"
            else:
                code, out = await self.rt.prober(
                    ct.run_in_pod, command, c.env or {"PATH": ct.DEFAULT_PATH},
                    self.sandbox.netns, ct.pod_hostname(self.pod), self.files(), c.uid, c.gid,
                    timeout)
            if code == 0:
                return None
            error = (f"command '{' '.join(command)}' exited with {code}: " if code is not None
                     else out)
            return (f"Exec lifecycle hook ([{' '.join(command)}]) {where} failed - error: "
                    f"{error}, message: {json.dumps(out if code is not None else '')}")
        if handler.get("httpGet") is not None:
            a = handler["httpGet"] or {}
            port = 80 if a.get("port") in (None, "") else resolve_port(a.get("port"), c.spec)
            if port is None:
                error = f"couldn't find port: {a.get('port')} in {c.name}"
            else:
                ok, error = await http_get(a.get("host") or self.pod_ip or "127.0.0.1", port,
                                           a.get("path") or "/", a.get("scheme") or "HTTP",
                                           a.get("httpHeaders"), timeout)
                if ok or error.startswith("HTTP probe failed with statuscode"):
                    return None  # any HTTP answer is a hook that ran
            return f"HTTP lifecycle hook ({a.get('path', '')}) {where} failed - error: {error}"
        if handler.get("sleep") is not None:
            await asyncio.sleep(max(0.0, float((handler["sleep"] or {}).get("seconds", 0))))
            return None
        return f"Cannot run handler: invalid handler: {json.dumps(handler)}"

    async def _wait_unrouted(self, budget: float) -> None:
        """The termination chain's first link. The pod got a deletionTimestamp: the EndpointSlice
        controller marks it not ready and terminating, the proxy drops it from the ready set.
        Wait (at most `budget` seconds in all) until the proxy reports that its rules send no
        new connection to the pod's address; then ask it for a sync and wait until one has
        completed: syncs run one at a time, so every sync that started before, the one that
        took the pod out included, has then been applied to the kernel."""
        routed, syncs, kick = self.rt.still_routed, self.rt.proxy_syncs, self.rt.proxy_kick
        if routed is None or not self.pod_ip or self.host_network or budget <= 0:
            return
        began = time.monotonic()
        deadline = began + budget
        delay = 0.005
        while routed(self.pod_ip, self.namespace):
            if time.monotonic() >= deadline:
                log.warning("pod %s/%s: still a ready endpoint after %gs; stopping it anyway",
                            self.namespace, self.name, budget)
                return
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.05)
        if syncs is not None and kick is not None:
            seen = syncs()
            kick()
            while syncs() == seen and time.monotonic() < deadline:
                await asyncio.sleep(0.002)
        self.timings["unroute_ms"] = (time.monotonic() - began) * 1000
        log.info("pod %s/%s: no new connections after %.0f ms; stopping its containers",
                 self.namespace, self.name, self.timings["unroute_ms"])

    def remove_files(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


def _parse_time(s: str | None) -> float | None:
    if not s:
        return None
    try:
        import calendar
        return float(calendar.timegm(time.strptime(s, "%Y-%m-%dT%H:%M:%SZ")))
    except ValueError:
        return None
