"""The node agent's side of cluster DNS: run the DNS server and make kube-dns point at it.

Theory of operation
- The agent runs `svcnet dns` as a child process listening on the node's pod-network gateway
  address (the first address of its pod CIDR, on the bridge), port 53, UDP and TCP: an address
  svcnet owns, so nothing else on the machine (a local resolver on 127.0.0.53, say) is in the
  way, and every pod reaches it. The agent restarts it if it dies.
- Like the pods, the DNS server outlives the agent: an agent restart or upgrade must not take
  names away from running pods. It binds with SO_REUSEPORT and writes `<data-dir>/dns.pid`
  (PID and start time) once it is serving; a new agent starts a fresh server beside the old
  one, waits until the pid file names the new one, then stops the old one: no gap. `svcnet
  down` stops it (by the pid file, checking the start time so a reused PID is never hit).
- Once a server answers, the agent publishes a selector-less EndpointSlice
  `kube-system/kube-dns-<node>` (managed-by `svcnet-agent`, ready) for the `kube-dns` Service
  (10.96.0.10, ports `dns` 53/UDP and `dns-tcp` 53/TCP, created by the control plane without a
  selector, so the EndpointSlice controller leaves it alone). The service proxy then DNATs
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

from svcnet.agent.dns import wire
from svcnet.agent.runtime.containers import proc_start_ticks
from svcnet.api.errors import APIError
from svcnet.api.resources import BY_KIND
from svcnet.client import Client

log = logging.getLogger("svcnet.agent.dns")
SLICE = BY_KIND["EndpointSlice"]
MANAGED_BY = "svcnet-agent"


def kube_dns_slice(node_name: str, address: str, port: int = 53) -> dict:
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": f"kube-dns-{node_name}"[:253], "namespace": "kube-system",
                         "labels": {"kubernetes.io/service-name": "kube-dns",
                                    "endpointslice.kubernetes.io/managed-by": MANAGED_BY}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": [address], "nodeName": node_name,
                           "conditions": {"ready": True, "serving": True, "terminating": False}}],
            "ports": [{"name": "dns", "protocol": "UDP", "port": port},
                      {"name": "dns-tcp", "protocol": "TCP", "port": port}]}


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
    try:
        pid, ticks = (int(x) for x in (data_dir / PID_FILE).read_text().split())
    except (OSError, ValueError):
        return None
    return (pid, ticks) if proc_start_ticks(pid) == ticks else None


def write_pid_file(path: Path) -> None:
    """Called by the DNS server itself once it answers."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(f"{os.getpid()} {proc_start_ticks(os.getpid())}\n")
    tmp.replace(path)


def stop_server(data_dir: Path, timeout: float = 10.0) -> bool:
    """Stop the DNS server of this data dir (SIGTERM, then SIGKILL); True if one was running."""
    found = read_pid_file(data_dir)
    if found is None:
        return False
    pid, ticks = found
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while proc_start_ticks(pid) == ticks:
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            break
        time.sleep(0.05)
    return True


class NodeDNS:
    def __init__(self, client: Client, credentials: list[str], node_name: str, address: str,
                 data_dir: Path, domain: str = "cluster.local",
                 resolv_conf: str = "/etc/resolv.conf", port: int = 53):
        self.client = client
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
                "--reuse-port"]

    async def start(self) -> None:
        self.tasks.append(asyncio.create_task(self._supervise()))

    async def stop(self) -> None:
        """Stop supervising; the server keeps answering for the next agent."""
        for t in self.tasks:
            t.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    async def _supervise(self) -> None:
        previous = read_pid_file(self.data_dir)
        published = False
        while True:
            self.proc = subprocess.Popen(self.command(), start_new_session=True, close_fds=True)
            while self.proc.poll() is None and (read_pid_file(self.data_dir) or (0,))[0] != self.proc.pid:
                await asyncio.sleep(0.1)
            if self.proc.poll() is None:
                if previous is not None and previous[0] != self.proc.pid:
                    log.info("cluster DNS server %d took over from %d", self.proc.pid, previous[0])
                    if proc_start_ticks(previous[0]) == previous[1]:
                        os.kill(previous[0], signal.SIGTERM)
                previous = None
                if not published:
                    await self._publish()
                    published = True
                while self.proc.poll() is None:
                    await asyncio.sleep(0.5)
            log.warning("cluster DNS server exited with %s; restarting in 1s", self.proc.returncode)
            await asyncio.sleep(1)

    async def _publish(self) -> None:
        """Create or fix the kube-dns EndpointSlice of this node (once a server answers)."""
        loop = asyncio.get_running_loop()
        while not await loop.run_in_executor(None, probe, self.address, self.port, self.domain):
            await asyncio.sleep(0.2)
        want = kube_dns_slice(self.node_name, self.address, self.port)
        name = want["metadata"]["name"]
        while True:
            try:
                try:
                    cur = await self.client.get(SLICE, "kube-system", name)
                except APIError as e:
                    if e.code != 404:
                        raise
                    await self.client.create(SLICE, want, manager=MANAGED_BY)
                else:
                    if any(cur.get(k) != want[k] for k in ("endpoints", "ports", "addressType")) or \
                            any((cur["metadata"].get("labels") or {}).get(k) != v
                                for k, v in want["metadata"]["labels"].items()):
                        cur.update({k: want[k] for k in ("endpoints", "ports", "addressType")})
                        cur["metadata"].setdefault("labels", {}).update(want["metadata"]["labels"])
                        await self.client.update(SLICE, cur, manager=MANAGED_BY)
                log.info("kube-dns endpoint %s:%d published", self.address, self.port)
                return
            except APIError as e:
                log.warning("publishing the kube-dns EndpointSlice: %s; retrying", e)
                await asyncio.sleep(1)
