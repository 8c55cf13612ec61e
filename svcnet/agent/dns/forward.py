"""Forwarding names outside the cluster domain to the node's own resolvers.

Theory of operation
- The upstreams are the `nameserver` lines of the node's resolv.conf (kubelet's --resolv-conf,
  default /etc/resolv.conf), read once at start, minus the addresses the cluster DNS itself
  answers on (a resolv.conf pointing back at us would loop). None left: the server answers
  REFUSED for outside names, as it must never invent an upstream.
- UDP: one socket for all upstream traffic. A forwarded query gets a fresh random ID; the
  pending table maps it back to the client's ID and waiter. The table is bounded (`max_pending`):
  when full, a query is answered SERVFAIL at once instead of queueing, so a flood of outside
  names cannot grow memory. A query unanswered after `timeout` goes to the next upstream; when
  all have failed the client gets SERVFAIL. Answers are accepted only from the upstream asked,
  with the ID it was given.
- TCP clients are forwarded over TCP (as CoreDNS's forward does: the client's protocol), one
  connection per query, under the same timeout.
- Metrics, as CoreDNS's forward plugin counts them, per upstream `to` ("ADDR:53"): each query
  answered (`requests`: CoreDNS counts a request with its response, so one that timed out or
  was never sent is none), each response by rcode (`responses`) and its round trip
  (`durations`, a histogram); plain dicts, written on the event loop only.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import random
import struct
import time
from pathlib import Path

from svcnet.agent.dns.metrics import observe

log = logging.getLogger("svcnet.dns.forward")


def read_resolv_conf(path: str | Path, exclude: set[str] = frozenset()) -> list[tuple[str, int]]:
    """(address, 53) of each `nameserver` line, in order, without `exclude`d addresses and
    without duplicates. A missing or unreadable file has none."""
    out: list[tuple[str, int]] = []
    try:
        text = Path(path).read_text()
    except OSError:
        return out
    for line in text.splitlines():
        words = line.split()
        if len(words) < 2 or words[0] != "nameserver":
            continue
        addr = words[1].split("%", 1)[0]
        try:
            ip = str(ipaddress.ip_address(addr))
        except ValueError:
            continue
        if ip not in exclude and (ip, 53) not in out:
            out.append((ip, 53))
    return out


class _UpstreamProtocol(asyncio.DatagramProtocol):
    def __init__(self, forwarder: "Forwarder"):
        self.forwarder = forwarder

    def datagram_received(self, data: bytes, addr) -> None:
        self.forwarder._received(data, addr)


class Forwarder:
    def __init__(self, upstreams: list[tuple[str, int]], timeout: float = 2.0,
                 max_pending: int = 4096):
        self.upstreams = list(upstreams)
        self.timeout = timeout
        self.max_pending = max_pending
        self.pending: dict[int, tuple[asyncio.Future, tuple[str, int]]] = {}
        self.transports: dict[int, asyncio.DatagramTransport] = {}  # address family -> socket
        self.stats = {"forwarded": 0, "timeouts": 0, "overflow": 0}
        self.requests: dict[str, int] = {}  # to -> queries sent
        self.responses: dict[tuple[str, int], int] = {}  # (to, rcode) -> responses
        self.durations: dict[tuple[str, int], list] = {}  # (to, rcode) -> histogram

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        for family, host in ((4, "0.0.0.0"), (6, "::")):
            mine = [u for u in self.upstreams if ipaddress.ip_address(u[0]).version == family]
            if not mine:
                continue
            try:
                t, _ = await loop.create_datagram_endpoint(lambda: _UpstreamProtocol(self),
                                                           local_addr=(host, 0))
            except OSError as e:  # e.g. no IPv6 in this network namespace
                log.warning("upstreams %s dropped: %s", ", ".join(u[0] for u in mine), e)
                self.upstreams = [u for u in self.upstreams if u not in mine]
                continue
            self.transports[family] = t

    def exclude(self, addresses) -> None:
        """Never forward to these (the cluster DNS's own Service addresses: a loop)."""
        self.upstreams = [u for u in self.upstreams if u[0] not in set(addresses)]

    def close(self) -> None:
        for t in self.transports.values():
            t.close()
        for fut, _ in self.pending.values():
            if not fut.done():
                fut.cancel()
        self.pending.clear()

    def _received(self, data: bytes, addr) -> None:
        if len(data) < 12:
            return
        qid = struct.unpack_from("!H", data)[0]
        entry = self.pending.get(qid)
        if entry is None or (addr[0], addr[1]) != entry[1]:
            return  # late, spoofed or from someone else
        del self.pending[qid]
        if not entry[0].done():
            entry[0].set_result(data)

    async def query(self, message: bytes, tcp: bool = False) -> bytes | None:
        """The upstream's answer to `message` (its ID restored), or None when no upstream
        answered in time, there is none, or the pending table is full."""
        if not self.upstreams or len(message) < 12:
            return None
        orig_id = message[:2]
        for upstream in self.upstreams:
            to = f"[{upstream[0]}]:{upstream[1]}" if ":" in upstream[0] else f"{upstream[0]}:{upstream[1]}"
            t0 = time.perf_counter()
            try:
                if tcp:
                    reply = await asyncio.wait_for(self._tcp(message, upstream), self.timeout)
                else:
                    reply = await self._udp(message, upstream)
            except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError):
                reply = None
                self.stats["timeouts"] += 1
            if reply is not None and len(reply) >= 12:
                self.stats["forwarded"] += 1
                self.requests[to] = self.requests.get(to, 0) + 1
                key = (to, reply[3] & 0xF)
                self.responses[key] = self.responses.get(key, 0) + 1
                observe(self.durations, key, time.perf_counter() - t0)
                return orig_id + reply[2:]
            if len(self.pending) >= self.max_pending:
                break
        return None

    async def _udp(self, message: bytes, upstream: tuple[str, int]) -> bytes | None:
        if len(self.pending) >= self.max_pending:
            self.stats["overflow"] += 1
            return None
        transport = self.transports.get(ipaddress.ip_address(upstream[0]).version)
        if transport is None:
            return None
        qid = random.getrandbits(16)
        while qid in self.pending:
            qid = random.getrandbits(16)
        fut = asyncio.get_running_loop().create_future()
        self.pending[qid] = (fut, upstream)
        try:
            transport.sendto(struct.pack("!H", qid) + message[2:], upstream)
            return await asyncio.wait_for(fut, self.timeout)
        finally:
            self.pending.pop(qid, None)

    async def _tcp(self, message: bytes, upstream: tuple[str, int]) -> bytes:
        reader, writer = await asyncio.open_connection(*upstream)
        try:
            writer.write(struct.pack("!H", len(message)) + message)
            await writer.drain()
            n = struct.unpack("!H", await reader.readexactly(2))[0]
            return await reader.readexactly(n)
        finally:
            writer.close()
