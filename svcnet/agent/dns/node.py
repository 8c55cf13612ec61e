"""The node agent's side of cluster DNS: run the DNS server and make kube-dns point at it.

Theory of operation
- The agent runs `svcnet dns` as a child process listening on the node's pod-network gateway
  address (the first address of its pod CIDR, on the bridge), port 53, UDP and TCP: an address
  svcnet owns, so nothing else on the machine (a local resolver on 127.0.0.53, say) is in the
  way, and every pod reaches it. The agent restarts it if it dies. It starts once the service
  proxy's first sync is live: names are reached through those rules, and loading every Service
  would compete with the full sync for the CPU; a previous agent's server answers until then.
- Like the pods, the DNS server outlives the agent: an agent restart or upgrade must not take
  names away from running pods. Servers bind with SO_REUSEPORT; the newest one that answers
  names itself in `<data-dir>/dns.pid` (PID and start time), and every server checks that
  file each second and steps down (stops receiving, answers what it took in, exits) when it
  names another one or is gone. So a new agent's server takes over from the old one without a
  gap, and servers orphaned by an agent killed halfway through a start end by themselves.
  `svcnet down` removes the pid file and stops every server of its data dir (by command line,
  checking start times so a reused PID is never hit).
- Once a server answers, the agent publishes a selector-less EndpointSlice
  `kube-system/kube-dns-<node>` (managed-by `svcnet-agent`, ready) for the `kube-dns` Service
  (10.96.0.10, ports `dns` 53/UDP, `dns-tcp` 53/TCP and `metrics` 9153/TCP, the server's
  CoreDNS-style /metrics; created by the control plane without a selector, so the
  EndpointSlice controller leaves it alone). The service proxy then DNATs
  10.96.0.10:53 to the server, from pods and from the node itself, like any ClusterIP.
- Pods get `nameserver 10.96.0.10` and the search path from the runtime's resolv.conf.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import aiohttp

from svcnet.agent.dns import wire
from svcnet.agent.runtime.containers import proc_start_ticks
from svcnet.api.errors import APIError
from svcnet.api.resources import BY_KIND
from svcnet.client import Client, Informer

log = logging.getLogger("svcnet.agent.dns")
SLICE, NODE = BY_KIND["EndpointSlice"], BY_KIND["Node"]
MANAGED_BY = "svcnet-agent"
METRICS_PORT = 9153  # CoreDNS's prometheus port, the kube-dns Service's `metrics` port


def slice_name(node_name: str) -> str:
    return f"kube-dns-{node_name}"[:253]


def kube_dns_slice(node_name: str, address: str, port: int = 53, node_uid: str = "") -> dict:
    """This node's kube-dns EndpointSlice; owned by its Node (when the uid is known), so the
    garbage collector removes it with the Node and no pod is sent to a removed node's server."""
    owners = [{"apiVersion": "v1", "kind": "Node", "name": node_name, "uid": node_uid}] if node_uid else []
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": slice_name(node_name), "namespace": "kube-system",
                         "labels": {"kubernetes.io/service-name": "kube-dns",
                                    "endpointslice.kubernetes.io/managed-by": MANAGED_BY},
                         "ownerReferences": owners},
            "addressType": "IPv4",
            "endpoints": [{"addresses": [address], "nodeName": node_name,
                           "conditions": {"ready": True, "serving": True, "terminating": False}}],
            "ports": [{"name": "dns", "protocol": "UDP", "port": port},
                      {"name": "dns-tcp", "protocol": "TCP", "port": port},
                      {"name": "metrics", "protocol": "TCP", "port": METRICS_PORT}]}


def probe(address: str, port: int, domain: str, timeout: float = 0.5) -> bool:
    """Does a DNS server answer dns-version.<domain> on address:port (UDP)?"""
    qid = random.getrandbits(16)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        try:
            s.sendto(wire.encode_query(f"dns-version.{domain}", wire.TXT, qid), (address, port))
            data = s.recv(4096)
        except OSError:
            return False
    return len(data) >= 12 and int.from_bytes(data[:2], "big") == qid and data[3] & 0xF == 0


PID_FILE = "dns.pid"


def read_pid_file(data_dir: Path) -> tuple[int, int] | None:
    """(pid, start ticks) of the DNS server the pid file names, if that process still runs."""
    return _read(data_dir / PID_FILE)


def _read(path: Path) -> tuple[int, int] | None:
    try:
        pid, ticks = (int(x) for x in path.read_text().split())
    except (OSError, ValueError):
        return None
    return (pid, ticks) if proc_start_ticks(pid) == ticks else None


def take_over(path: Path) -> bool:
    """Called by a DNS server once it answers: name itself in the pid file unless a server
    started after it already does (the newest server is the node's DNS). False: step down."""
    me = (os.getpid(), proc_start_ticks(os.getpid()))
    current = _read(path)
    if current is not None and current != me and current[1] >= me[1] and current[0] != me[0]:
        return False
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(f"{me[0]} {me[1]}\n")
    tmp.replace(path)
    return True


def superseded(path: Path) -> bool:
    """Checked by a running DNS server every second: the pid file is gone (`svcnet down`) or
    names another live server (a newer agent's): time to stop."""
    current = _read(path)
    return current is None or current[0] != os.getpid()


def stop_server(data_dir: Path, timeout: float = 10.0) -> bool:
    """Stop every DNS server of this data dir: the pid file's, and any other still running
    (found by its command line, which names this data dir's pid file); SIGTERM, then SIGKILL.
    True if one was running."""
    pid_file = str(data_dir / PID_FILE)
    found = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            argv = (d / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"svcnet.cli.main" in argv and b"dns" in argv and pid_file.encode() in argv:
            ticks = proc_start_ticks(int(d.name))
            if ticks is not None:
                found.append((int(d.name), ticks))
    (data_dir / PID_FILE).unlink(missing_ok=True)
    for pid, _ in found:
        _kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for pid, ticks in found:
        while proc_start_ticks(pid) == ticks:
            if time.monotonic() > deadline:
                _kill(pid, signal.SIGKILL)
                break
            time.sleep(0.05)
    return bool(found)


def _kill(pid: int, sig: int) -> None:
    """A server found above may have exited (stepped down) since: that is not an error."""
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


class NodeDNS:
    def __init__(self, client: Client, credentials: list[str], node_name: str, address: str,
                 data_dir: Path, domain: str = "cluster.local",
                 resolv_conf: str = "/etc/resolv.conf", port: int = 53, after=None,
                 node_uid: str = ""):
        """`after`: an awaitable factory; the first server starts once it has returned.
        `node_uid`: the Node's uid, the published EndpointSlice's owner."""
        self.client = client
        self.after = after
        self.node_uid = node_uid
        self.recheck = asyncio.Event()  # the published EndpointSlice changed or went
        self.credentials = credentials  # e.g. ["--kubeconfig", path] for the child
        self.node_name = node_name
        self.address = address
        self.data_dir = Path(data_dir)
        self.domain = domain
        self.resolv_conf = resolv_conf
        self.port = port
        self.proc: subprocess.Popen | None = None
        self.tasks: list[asyncio.Task] = []

    def command(self) -> list[str]:
        return [sys.executable, "-m", "svcnet.cli.main", "dns", *self.credentials,
                "--listen", f"{self.address}:{self.port}", "--cluster-domain", self.domain,
                "--resolv-conf", self.resolv_conf, "--pid-file", str(self.data_dir / PID_FILE),
                "--reuse-port", "--metrics-listen", f"{self.address}:{METRICS_PORT}"]

    async def start(self) -> None:
        self.tasks.append(asyncio.create_task(self._supervise()))

    async def stop(self) -> None:
        """Stop supervising; the server keeps answering for the next agent."""
        for t in self.tasks:
            t.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    async def _supervise(self) -> None:
        if self.after is not None:
            await self.after()
        # Someone deleting or changing the published EndpointSlice makes it published again.
        watch = Informer(self.client, SLICE, "kube-system",
                         fieldSelector=f"metadata.name={slice_name(self.node_name)}")
        watch.add_handler(lambda *_: self.recheck.set())
        watch.start()
        try:
            while True:
                self.proc = subprocess.Popen(self.command(), start_new_session=True, close_fds=True)
                while self.proc.poll() is None and (read_pid_file(self.data_dir) or (0,))[0] != self.proc.pid:
                    await asyncio.sleep(0.1)
                self.recheck.set()
                while self.proc.poll() is None:
                    if self.recheck.is_set():
                        self.recheck.clear()
                        try:
                            await self._publish()
                        except (aiohttp.ClientError, OSError) as e:
                            # the API may be restarting (a request cut off, or refused): again in a second
                            log.warning("checking the kube-dns EndpointSlice: %s", e)
                            self.recheck.set()
                            await asyncio.sleep(1)
                    try:
                        await asyncio.wait_for(self.recheck.wait(), 0.5)
                    except TimeoutError:
                        pass
                log.warning("cluster DNS server exited with %s; restarting in 1s", self.proc.returncode)
                await asyncio.sleep(1)
        finally:
            await watch.stop()

    async def _node_exists(self) -> bool:
        """Is this node's Node (the uid the slice names as owner) still there?"""
        try:
            node = await self.client.get(NODE, "", self.node_name)
        except APIError as e:
            if e.code != 404:
                raise
            return False
        return node["metadata"].get("uid") == self.node_uid

    async def _publish(self) -> None:
        """Create or fix the kube-dns EndpointSlice of this node (once its server answers)."""
        loop = asyncio.get_running_loop()
        while not await loop.run_in_executor(None, probe, self.address, self.port, self.domain):
            if self.proc.poll() is not None:
                return
            await asyncio.sleep(0.2)
        want = kube_dns_slice(self.node_name, self.address, self.port, self.node_uid)
        name = want["metadata"]["name"]
        owners = want["metadata"]["ownerReferences"]
        while True:
            try:
                try:
                    cur = await self.client.get(SLICE, "kube-system", name)
                except APIError as e:
                    if e.code != 404:
                        raise
                    if owners and not await self._node_exists():
                        return  # the garbage collector would delete it again
                    await self.client.create(SLICE, want, manager=MANAGED_BY)
                else:
                    if any(cur.get(k) != want[k] for k in ("endpoints", "ports", "addressType")) or \
                            any((cur["metadata"].get("labels") or {}).get(k) != v
                                for k, v in want["metadata"]["labels"].items()) or \
                            (owners and cur["metadata"].get("ownerReferences") != owners):
                        cur.update({k: want[k] for k in ("endpoints", "ports", "addressType")})
                        cur["metadata"].setdefault("labels", {}).update(want["metadata"]["labels"])
                        if owners:
                            cur["metadata"]["ownerReferences"] = owners
                        await self.client.update(SLICE, cur, manager=MANAGED_BY)
                    else:
                        return  # as published
                log.info("kube-dns endpoint %s:%d published", self.address, self.port)
                return
            except APIError as e:
                log.warning("publishing the kube-dns EndpointSlice: %s; retrying", e)
                await asyncio.sleep(1)
