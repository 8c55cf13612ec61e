"""Stale UDP conntrack entries: which to clear after a sync (pure), and clearing them (conntrack CLI).

Theory of operation
===================

A UDP "connection" is a conntrack entry that lives as long as packets keep coming: a client that
keeps one socket open and sends every second keeps its entry, and with it the DNAT decided by
its first packet, forever. When the endpoint behind that decision goes away, the client's
packets keep going to a dead address. kube-proxy therefore deletes such entries after each sync
(pkg/proxy/conntrack/cleanup.go); svcnet does the same, and also covers the cases kube-proxy
1.32 missed (kubernetes/kubernetes#139628):

- Frontends are the UDP dispatch keys of the current Services: (ClusterIP | externalIP |
  LoadBalancer IP, port) and (*, nodePort), each with the IPs of the Service's serving endpoints
  (ready, or serving and terminating; on any node: policies do not matter, as in kube-proxy).
- An entry whose original destination is a frontend and whose reply source (the address that
  answers, the DNAT target) is not one of that frontend's serving endpoints is stale: its
  endpoint went away, or it was never DNATed (the first packet came while nothing served: a
  NodePort without a Service behind it answers ICMP port unreachable, but its entry lives on).
  This includes frontends with no serving endpoint at all (kube-proxy 1.32 skipped those, so a
  Service going to zero endpoints kept its clients pinned to the dead pod). A NodePort frontend
  is every destination address with that port, as in kube-proxy.
- An entry whose original destination is a frontend that is gone (the Service, port or address
  was deleted) is stale whatever its reply source: the client's next packet must meet the rules
  as they are now (dropped, rejected, or a new Service on the same address).

Clearing runs after the sync's transaction is live, so a client's next packet creates its new
entry from the new rules. Only syncs that touch a Service with UDP ports clear anything.
The agent runs in its node's network namespace and so does `conntrack`: nothing outside that
namespace is read or changed.
"""

from __future__ import annotations

import logging
import re
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from svcnet.agent.proxy.ruleset import NODEPORT_TYPES

log = logging.getLogger("svcnet.proxy.conntrack")

# A frontend: (address, port) for ClusterIP/externalIP/LB addresses, (None, port) for a NodePort.
Frontend = tuple[str | None, int]


@dataclass(frozen=True)
class Entry:
    """One UDP conntrack entry: the original tuple and the reply's source."""

    src: str
    dst: str
    sport: int
    dport: int
    reply_src: str


def udp_frontends(service: dict, slices: Iterable[dict]) -> dict[Frontend, frozenset[str]]:
    """A Service's UDP frontends -> the IPs of its serving endpoints for that port."""
    spec = service.get("spec") or {}
    if spec.get("type") == "ExternalName":
        return {}
    addresses = [ip for ip in (spec.get("clusterIPs") or [spec.get("clusterIP")])
                 if ip and ip != "None" and ":" not in ip]
    if not addresses:
        return {}
    addresses += [ip for ip in spec.get("externalIPs") or () if ":" not in ip]
    if spec.get("type") == "LoadBalancer":
        ingress = ((service.get("status") or {}).get("loadBalancer") or {}).get("ingress") or ()
        addresses += [i["ip"] for i in ingress if i.get("ip") and ":" not in i["ip"]]
    out: dict[Frontend, frozenset[str]] = {}
    for port in spec.get("ports") or ():
        if port.get("protocol") != "UDP":
            continue
        serving = frozenset(_serving(slices, port.get("name") or ""))
        for ip in addresses:
            out[(ip, port["port"])] = serving
        if spec.get("type") in NODEPORT_TYPES and port.get("nodePort"):
            out[(None, port["nodePort"])] = serving
    return out


def _serving(slices: Iterable[dict], port_name: str):
    for s in slices:
        if s.get("addressType") != "IPv4" or not any(
                (p.get("name") or "") == port_name and p.get("protocol") == "UDP" for p in s.get("ports") or ()):
            continue
        for ep in s.get("endpoints") or ():
            c = ep.get("conditions") or {}
            if ep.get("addresses") and (c.get("serving") is True or
                                        (c.get("serving") is None and c.get("ready") is not False)):
                yield ep["addresses"][0]


def stale(entries: Iterable[Entry], frontends: dict[Frontend, frozenset[str]],
          gone: Iterable[Frontend] = ()) -> list[Entry]:
    """The entries to delete, given the current frontends (of the Services that changed) and
    the frontends that went away."""
    gone = set(gone)
    out = []
    for e in entries:
        for frontend in ((e.dst, e.dport), (None, e.dport)):
            serving = frontends.get(frontend)
            if frontend in gone or (serving is not None and e.reply_src not in serving):
                out.append(e)
                break
    return out


_LINE = re.compile(r"src=(\S+) dst=(\S+) sport=(\d+) dport=(\d+) .*?src=(\S+) dst=\S+ sport=\d+ dport=\d+")


def parse(listing: str) -> list[Entry]:
    """Entries from `conntrack -L -p udp` output (lines the pattern does not fit are skipped)."""
    out = []
    for line in listing.splitlines():
        m = _LINE.search(line)
        if m and line.startswith("udp"):
            out.append(Entry(m[1], m[2], int(m[3]), int(m[4]), m[5]))
    return out


class ConntrackCLI:
    """The I/O shell: the `conntrack` tool in the current network namespace."""

    def __init__(self, command: Sequence[str] = ("conntrack",), timeout: float = 10.0):
        self.command = tuple(command)
        self.timeout = timeout

    def list_udp(self) -> list[Entry]:
        proc = subprocess.run([*self.command, "-L", "-p", "udp"], capture_output=True, text=True,
                              timeout=self.timeout)
        if proc.returncode != 0:
            raise OSError(f"conntrack -L failed: {proc.stderr.strip()}")
        return parse(proc.stdout)

    def delete(self, dst: str, dport: int, reply_src: str) -> None:
        """Delete the entries to dst:dport answered by reply_src (one call for all the clients
        of a stale endpoint; entries that expired meanwhile are no error)."""
        subprocess.run([*self.command, "-D", "-p", "udp", "--orig-dst", dst, "--orig-port-dst", str(dport),
                        "--reply-src", reply_src], capture_output=True, timeout=self.timeout)


def clear(ct, frontends: dict[Frontend, frozenset[str]], gone: Iterable[Frontend]) -> int:
    """List the UDP entries, delete the stale ones, grouped by (destination, port, reply
    source); returns how many entries were stale."""
    doomed = stale(ct.list_udp(), frontends, gone)
    for dst, dport, reply_src in dict.fromkeys((e.dst, e.dport, e.reply_src) for e in doomed):
        ct.delete(dst, dport, reply_src)
    if doomed:
        log.info("cleared %d stale UDP conntrack entries", len(doomed))
    return len(doomed)
