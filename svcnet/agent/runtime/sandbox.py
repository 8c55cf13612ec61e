"""Pod sandboxes: a network namespace per pod, held by a small process, wired to the node bridge.

Theory of operation
- A pod's network namespace belongs to a "holder": `sleep infinity` forked by the agent, which
  unshares a new network namespace before exec (and sets net.ipv4.ip_unprivileged_port_start=0
  in it), in a session of its own so that it outlives the agent. The namespace is
  `/proc/<holder>/ns/net`; named namespaces under /run/netns are not used because they do not
  work when the agent itself runs under `ip netns exec` (its bind mounts stay in a private
  mount namespace). A holder is identified by PID *and* start time (field 22 of /proc/PID/stat)
  so that a reused PID is never mistaken for it. Its argv[0] is `svcnet-sandbox:<tag>:<uid>`,
  where <tag> is derived from the data dir, so holders left behind by a crash can be found.
- Networking is done with netlink (pyroute2) from one worker thread: the bridge (`svcnet0`, the
  gateway address = first address of the pod CIDR, a fixed MAC so it does not change as ports
  come and go), ip_forward=1 and a route for the service CIDR on the bridge (service traffic
  is handled on the node, never sent to a default gateway). Per pod: a veth pair created in the
  node namespace with its peer born inside the pod namespace as eth0, the host end on the
  bridge with hairpin mode; inside the pod (through a netlink socket opened by a short-lived
  thread that joins the pod namespace): lo up, the pod address on eth0, eth0 up, default route
  via the gateway.
- Removing a sandbox kills any process still in the pod's namespace (one that left its
  container's process group with a session of its own), deletes the host veth (which deletes
  its peer), then kills the holder; the namespace goes with its last process.
- Everything here blocks: `Network` methods run on the runtime's netlink thread.
- hostNetwork pods get a holder too (it does not unshare), so every pod has the same shape.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import ipaddress
import logging
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from svcnet.agent.nsenter import CLONE_NEWNET, setns, unshare
from svcnet.agent.runtime import faults
from svcnet.agent.runtime.containers import alive, pidfd_open, proc_start_ticks, processes_in_netns, reap

log = logging.getLogger("svcnet.agent.runtime")
HOLDER_PREFIX = "svcnet-sandbox:"


@dataclass
class Sandbox:
    pid: int
    start: int            # holder start time, clock ticks since boot
    ip: str
    host_if: str | None   # None for hostNetwork pods
    created_at: str
    wired: bool = False   # fully set up (a holder recorded halfway through is not)

    @property
    def netns(self) -> str:
        return f"/proc/{self.pid}/ns/net"

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict | None) -> "Sandbox | None":
        if not d:
            return None
        return cls(pid=int(d["pid"]), start=int(d["start"]), ip=d["ip"], host_if=d.get("host_if"),
                   created_at=d.get("created_at", ""), wired=bool(d.get("wired", True)))


def host_if_name(uid: str) -> str:
    """A unique host-side veth name within IFNAMSIZ (15): vsn + 12 hex of the pod UID's hash."""
    return "vsn" + hashlib.sha256(uid.encode()).hexdigest()[:12]


def holder_tag(data_dir: Path) -> str:
    return hashlib.sha256(str(data_dir.resolve()).encode()).hexdigest()[:10]


def _sleep_binary() -> str:
    return shutil.which("sleep") or "/bin/sleep"


def _holder_preexec(new_netns: bool):
    def child() -> None:
        if new_netns:
            unshare(CLONE_NEWNET)
            fd = os.open("/proc/sys/net/ipv4/ip_unprivileged_port_start", os.O_WRONLY)
            try:
                os.write(fd, b"0")
            finally:
                os.close(fd)
    return child


def find_holders(tag: str) -> dict[int, str]:
    """PID -> pod UID of the live holders of this data dir (by their argv[0])."""
    prefix = f"{HOLDER_PREFIX}{tag}:".encode()
    found: dict[int, str] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv0 = f.read().split(b"\0", 1)[0]
        except OSError:
            continue
        if argv0.startswith(prefix):
            found[int(entry)] = argv0[len(prefix):].decode(errors="replace")
    return found


def _mac_for(name: str) -> str:
    h = hashlib.sha256(name.encode()).digest()
    return "02:" + ":".join(f"{b:02x}" for b in h[:5])


class Network:
    """Netlink work for one node. Not thread-safe: use from one thread only."""

    def __init__(self, bridge: str, pod_cidr: str, service_cidr: str):
        self.bridge = bridge
        self.net = ipaddress.ip_network(pod_cidr, strict=False)
        self.gateway = str(self.net.network_address + 1)
        self.service_cidr = service_cidr
        self._ipr = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.bridge_index: int | None = None

    # pyroute2's sync API runs its own event loop; it must be a selector loop (uvloop cannot
    # carry netlink sockets), whatever the process's event loop policy is.
    def _event_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            self._loop = asyncio.SelectorEventLoop()
        return self._loop

    @property
    def ipr(self):
        if self._ipr is None:
            from pyroute2 import IPRoute
            self._ipr = IPRoute(use_event_loop=self._event_loop())
        return self._ipr

    def close(self) -> None:
        if self._ipr is not None:
            try:
                self._ipr.close()
            except Exception:
                pass
            self._ipr = None
        if self._loop is not None:
            self._loop.close()
            self._loop = None

    # ---- node ----------------------------------------------------------------------------------

    def setup_node(self) -> None:
        """Bridge with the gateway address, up; ip_forward; the service CIDR route. Idempotent."""
        from pyroute2 import NetlinkError
        ipr = self.ipr
        found = ipr.link_lookup(ifname=self.bridge)
        if not found:
            try:
                ipr.link("add", ifname=self.bridge, kind="bridge",
                         address=_mac_for(self.bridge + str(self.net)))
            except NetlinkError as e:
                if e.code != errno.EEXIST:
                    raise
            found = ipr.link_lookup(ifname=self.bridge)
        index = found[0]
        self.bridge_index = index
        try:
            ipr.addr("add", index=index, address=self.gateway, prefixlen=self.net.prefixlen)
        except NetlinkError as e:
            if e.code != errno.EEXIST:
                raise
        ipr.link("set", index=index, state="up")
        _write_sysctl("net/ipv4/ip_forward", "1")
        ipr.route("replace", dst=self.service_cidr, oif=index)

    def teardown_node(self) -> None:
        from pyroute2 import NetlinkError
        ipr = self.ipr
        found = ipr.link_lookup(ifname=self.bridge)
        if not found:
            return
        try:
            ipr.route("del", dst=self.service_cidr, oif=found[0])
        except NetlinkError:
            pass
        try:
            ipr.link("del", index=found[0])
        except NetlinkError as e:
            if e.code != errno.ENODEV:
                raise

    def link_exists(self, ifname: str) -> bool:
        return bool(self.ipr.link_lookup(ifname=ifname))

    # ---- sandboxes -----------------------------------------------------------------------------

    def create(self, uid: str, ip: str, tag: str, host_network: bool, now: str,
               on_holder=None) -> Sandbox:
        """Start a holder and wire its namespace; on any failure nothing is left behind.

        `on_holder(sandbox)` is called as soon as the holder exists (to record it)."""
        holder = subprocess.Popen([f"{HOLDER_PREFIX}{tag}:{uid}", "infinity"],
                                  executable=_sleep_binary(), stdin=subprocess.DEVNULL,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                  preexec_fn=_holder_preexec(not host_network),
                                  start_new_session=True, close_fds=True)
        holder.returncode = 0  # reaped by us (destroy), never by subprocess
        sandbox = Sandbox(pid=holder.pid, start=proc_start_ticks(holder.pid) or 0, ip=ip,
                          host_if=None if host_network else host_if_name(uid), created_at=now)
        try:
            if on_holder is not None:
                on_holder(sandbox)
            faults.point("holder-started")
            if not host_network:
                self._wire(sandbox)
        except BaseException:
            self.destroy(sandbox)
            raise
        sandbox.wired = True
        return sandbox

    def _wire(self, sb: Sandbox) -> None:
        from pyroute2 import IPRoute, NetlinkError
        ipr = self.ipr
        if self.bridge_index is None or not ipr.link_lookup(ifname=self.bridge):
            self.setup_node()
        stale = ipr.link_lookup(ifname=sb.host_if)
        if stale:
            ipr.link("del", index=stale[0])
        ipr.link("add", ifname=sb.host_if, kind="veth", master=self.bridge_index, state="up",
                 peer={"ifname": "eth0", "net_ns_pid": sb.pid})
        faults.point("veth-added")
        host = ipr.link_lookup(ifname=sb.host_if)[0]
        ipr.brport("set", index=host, mode=1)  # hairpin: a pod reaches itself via a Service
        try:  # an old neighbour entry for a reused address would delay the first packets
            ipr.neigh("del", dst=sb.ip, ifindex=self.bridge_index)
        except NetlinkError:
            pass
        inside = IPRoute(fileno=netlink_socket_in(sb.netns), use_event_loop=self._event_loop())
        try:
            lo = inside.link_lookup(ifname="lo")[0]
            eth0 = inside.link_lookup(ifname="eth0")[0]
            inside.link("set", index=lo, state="up")
            inside.addr("add", index=eth0, address=sb.ip, prefixlen=self.net.prefixlen)
            inside.link("set", index=eth0, state="up")
            inside.route("add", dst="0.0.0.0/0", gateway=self.gateway)
        finally:
            inside.close()

    def check(self, sb: Sandbox) -> bool:
        """The sandbox was fully set up, its holder is alive (same process) and its veth is in
        place."""
        if not sb.wired or not alive(sb.pid, sb.start):
            return False
        return sb.host_if is None or self.link_exists(sb.host_if)

    def destroy(self, sb: Sandbox) -> None:
        """Delete the veth, kill what is left in the pod's network namespace and the holder (if
        it is still the same process). Idempotent."""
        from pyroute2 import NetlinkError
        if sb.host_if:  # a hostNetwork pod's "namespace" is the node's: never swept
            kill_netns_members(sb)
            try:
                found = self.ipr.link_lookup(ifname=sb.host_if)
                if found:
                    self.ipr.link("del", index=found[0])
            except NetlinkError as e:
                if e.code != errno.ENODEV:
                    raise
        kill_holder(sb.pid, sb.start)


def kill_netns_members(sb: Sandbox) -> int:
    """SIGKILL every process but the holder that is still in the pod's own network namespace:
    containers are stopped by process group, and a process that started a session of its own
    (a daemon, `setsid`) escapes that. Each one is pinned with a pidfd and checked again before
    the signal, so a reused PID is never hit. Returns how many were killed."""
    if not alive(sb.pid, sb.start):
        return 0
    try:
        netns = os.stat(sb.netns).st_ino
        if netns == os.stat("/proc/self/ns/net").st_ino:
            return 0  # never the node's own namespace (this process's)
    except OSError:
        return 0
    killed = 0
    for pid in processes_in_netns(sb.pid):
        fd = pidfd_open(pid) if pid != sb.pid else None
        if fd is None:
            continue
        try:
            if os.stat(f"/proc/{pid}/ns/net").st_ino == netns:
                signal.pidfd_send_signal(fd, signal.SIGKILL)
                killed += 1
        except OSError:
            pass
        finally:
            os.close(fd)
    if killed:
        log.info("killed %d process(es) left in the network namespace of holder %d", killed, sb.pid)
    return killed


def kill_holder(pid: int, start: int) -> None:
    if not alive(pid, start):
        reap(pid)
        return
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:
        if reap(pid) is not None or not alive(pid, start):
            return
        time.sleep(0.002)


def netlink_socket_in(netns: str) -> int:
    """A NETLINK_ROUTE socket in another network namespace (its fd).

    A short-lived thread joins the namespace (setns affects only the calling thread), opens the
    socket and ends; the socket stays bound to that namespace."""
    box: dict = {}

    def work() -> None:
        try:
            setns(netns, CLONE_NEWNET)
            box["fd"] = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC,
                                      0).detach()
        except BaseException as e:  # noqa: BLE001 - re-raised in the caller
            box["error"] = e

    t = threading.Thread(target=work, name="svcnet-netns")
    t.start()
    t.join()
    if "error" in box:
        raise box["error"]
    return box["fd"]


def _write_sysctl(name: str, value: str) -> None:
    path = Path("/proc/sys") / name
    if path.read_text().strip() != value:
        path.write_text(value)
