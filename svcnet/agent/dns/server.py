"""The cluster DNS server: answers from a cache of wire responses, UDP and TCP, kept current by
watches on Services, EndpointSlices and Namespaces.

Theory of operation
- `Resolver.respond(query_bytes)` is the whole server minus sockets. The hot path (`fast`) is a
  dict lookup: the key is the query's question (lowered) and the value is the prepared response
  minus its ID and question; the client's ID, RD bit and question bytes (its case) are spliced
  in. A miss parses the query (`wire.parse_query`), asks the pure answerer (`answer.answer`),
  encodes the response and stores it under the answer's owner. Queries with EDNS are cached
  under their own key (the response carries OPT), and used only when they fit the client's size.
- Invalidation: every Service/EndpointSlice event updates the `Catalog` and drops the cached
  answers of the owner it names (that Service's names) and the ANYTHING owner (PTR, cross-
  Service answers), then prepares that Service's A and AAAA answers again, so lookups after
  a change are hits too; a Namespace change drops everything. The cache holds at most
  `max_entries` answers and is emptied when full, so random names cannot grow it without bound.
- Bad input: shorter than a header or a response -> dropped; any other malformed query ->
  FORMERR; opcode other than QUERY -> NOTIMP; class other than IN, zone transfers, names
  outside the cluster with no upstream -> REFUSED. The server keeps serving whatever arrives.
- Outside names go to the `Forwarder` (bounded pending table); an ExternalName whose target is
  outside the cluster gets its CNAME followed by the target's records from upstream.
- UDP: plain cache hits are answered in batches on a thread (udp.py: recvmmsg/sendmmsg);
  the rest reaches the event loop. Responses the kernel cannot take are dropped, never queued.
- TCP: 2-byte length framing, pipelined queries answered in order, at most `max_tcp` open
  connections (more are closed at once), idle ones closed after `tcp_idle` seconds.
- Metrics (metrics.py): every cache entry carries its answer's class and zone, so `fast` counts
  a hit with two list increments into the caller's Tally (the UDP thread has its own); answers
  made here are counted with what `prepare`/`slow` know (plugin, cache hit or miss). The cache
  keeps its entry counts by zone and type (`entries`) as entries come and go.
- The watches: Informers (list + watch, re-list on 410) on the API; the server answers only
  after the first list of each (a DNS that starts empty would answer NXDOMAIN for everything).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
import time

from svcnet.agent.dns import udp as udp_batch
from svcnet.agent.dns import wire
from svcnet.agent.dns.metrics import (CACHE, FORWARD, KUBERNETES, MISS, SERVER, UNCACHED,
                                      Classes, Tally, hit_type, server_label, zone_index)
from svcnet.agent.dns.answer import ANYTHING, Catalog, answer, service_info, slice_info
from svcnet.agent.dns.forward import Forwarder
from svcnet.agent.dns.wire import (ANY, AXFR, CNAME, IN, IXFR, NOERROR, NOTIMP, REFUSED,
                                   SERVFAIL, FormatError)

log = logging.getLogger("svcnet.dns")

EDNS_TAG = b"\x00E"  # appended to the cache key of a query that carried EDNS
WARM_TYPES = (wire.A, wire.AAAA)  # a Service's answers prepared again on every change


class Resolver:
    def __init__(self, catalog: Catalog, forwarder: Forwarder | None = None,
                 max_entries: int = 100_000):
        self.catalog = catalog
        self.forwarder = forwarder
        self.max_entries = max_entries
        # key -> (header bytes 2..12 with RD clear, the same with RD set, records after the
        # question, the answer's metrics class, its zone index)
        self.cache: dict[bytes, tuple[bytes, bytes, bytes, int, int]] = {}
        self.classes = Classes(catalog.domain)
        self.entries: dict[tuple[int, str], int] = {}  # (zone index, hit type) -> cache entries
        self.owners: dict[tuple | None, list[bytes]] = {}
        self.failed: set[str] = set()  # names whose answer could not be encoded (logged once)
        self.stats = {"hits": 0, "misses": 0, "formerr": 0, "dropped": 0, "forwarded": 0}

    # ---- the cache -------------------------------------------------------------------------

    def fast(self, q: bytes, counts: list | None = None) -> bytes | None:
        """The cached response to a plain query (one question, no other records), or None.
        The question is everything after the header, so it is the key as it stands. `counts`:
        a Tally's counts, where the hit is counted (by its caller's thread only)."""
        if q[4:12] != b"\x00\x01\x00\x00\x00\x00\x00\x00" or q[2] & 0xF8:
            return None
        v = self.cache.get(q[12:].lower())
        if v is None:
            return None
        if counts is not None:
            counts[v[3]] += 1
            counts[v[4]] += 1
        return b"".join((q[:2], v[q[2] & 1], q[12:], v[2]))

    def invalidate(self, *owners) -> None:
        for owner in owners:
            for key in self.owners.pop(owner, ()):
                v = self.cache.pop(key, None)
                if v is not None:
                    self._uncount(v)

    def clear(self) -> None:
        self.cache.clear()
        self.owners.clear()
        self.entries.clear()

    def _uncount(self, v: tuple) -> None:
        label = self.classes.labels[v[3]]
        self.entries[label[0], label[4]] -= 1

    def _store(self, key: bytes, owner, response: bytes, q: wire.Query) -> None:
        if len(self.cache) >= self.max_entries:
            self.clear()
        qlen = len(q.question_wire)
        hdr = bytearray(response[2:12])
        hdr[0] &= 0xFE
        rd0 = bytes(hdr)
        hdr[0] |= 0x01
        old = self.cache.get(key)
        if old is None:
            self.owners.setdefault(owner, []).append(key)
        else:
            self._uncount(old)
        # the class of this entry's answers from `fast`: a plain query of 12 + qlen bytes
        zone = zone_index(q.qname.lower().rstrip("."), self.classes.domain)
        kind = hit_type(response)
        cls = self.classes.intern(zone, q.qtype, response[3] & 0xF, CACHE, kind, 12 + qlen,
                                  len(response))
        self.entries[zone, kind] = self.entries.get((zone, kind), 0) + 1
        self.cache[key] = (rd0, bytes(hdr), response[12 + qlen:], cls, zone)

    # ---- the full path ---------------------------------------------------------------------

    async def respond(self, data: bytes, tcp: bool = False, tally: Tally | None = None) -> bytes | None:
        """The response to one query message (None: send nothing), counted in `tally`."""
        t0 = time.perf_counter()
        r = self.fast(data, tally.counts if tally is not None else None)
        if r is not None:
            self.stats["hits"] += 1
            if tally is not None:
                tally.batch(time.perf_counter() - t0)
            return r
        return await self.slow(data, tcp, tally)

    def prepare(self, data: bytes, tcp: bool, tally: Tally | None = None) -> tuple[bytes | None, object]:
        """What `slow` can decide without waiting: (response, None) when done (counted in
        `tally`), or (None, pending) when the answer needs upstream help (`slow(pending=...)`
        finishes and counts it)."""
        t0 = time.perf_counter()
        try:
            q = wire.parse_query(data)
        except FormatError:
            r = wire.header_only(data, wire.FORMERR)
            self.stats["formerr" if r else "dropped"] += 1
            return self._done(tally, t0, data, None, r, SERVER, UNCACHED), None
        if q.opcode != 0:
            return self._done(tally, t0, data, q, wire.encode_response(q, NOTIMP, aa=False),
                              SERVER, UNCACHED), None
        if q.qclass != IN or q.qtype in (AXFR, IXFR):
            return self._done(tally, t0, data, q, wire.encode_response(q, REFUSED, aa=False),
                              SERVER, UNCACHED, dropped=q.qclass != IN), None
        key = q.question_wire.lower() + (EDNS_TAG if q.edns is not None else b"")
        limit = 65535 if tcp else (min(q.edns, wire.EDNS_SIZE) if q.edns is not None else wire.MIN_UDP)
        v = self.cache.get(key)
        if v is not None and 12 + len(q.question_wire) + len(v[2]) <= limit:
            self.stats["hits"] += 1
            r = b"".join((data[:2], v[q.rd], q.question_wire, v[2]))
            return self._done(tally, t0, data, q, r, CACHE, hit_type(r)), None
        self.stats["misses"] += 1
        try:
            a = answer(self.catalog, q.qname, q.qtype)
            if a.forward or a.chase:
                return None, (q, a, t0)
            r = wire.encode_response(q, a.rcode, a.answers, a.authority, a.additional, limit=limit)
        except Exception as e:  # a record that cannot be written (say, an over-long name)
            if len(self.failed) < 1000 and q.qname.lower() not in self.failed:  # log once per name
                self.failed.add(q.qname.lower())
                log.warning("answering %s type %d: %s", q.qname, q.qtype, e)
            return self._done(tally, t0, data, q, wire.encode_response(q, SERVFAIL, aa=False),
                              KUBERNETES, MISS), None
        if not r[2] & 0x02 and len(r) <= (wire.EDNS_SIZE if q.edns is not None else wire.MIN_UDP):
            self._store(key, a.owner, r, q)
        return self._done(tally, t0, data, q, r, KUBERNETES, MISS), None

    def _done(self, tally: Tally | None, t0: float, data: bytes, q, r: bytes | None,
              plugin: str, cache: str, dropped: bool = False) -> bytes | None:
        """Count the answer `r` (None: nothing is sent, nothing counted) and return it;
        `dropped`: refused before its name was looked at (a class other than IN), which
        CoreDNS counts in the zone "dropped"."""
        if tally is not None and r is not None:
            tally.answered(self.classes, data, r, plugin, cache, time.perf_counter() - t0,
                           q.qname if q is not None else None, q.qtype if q is not None else 0,
                           dropped)
        return r

    async def slow(self, data: bytes, tcp: bool = False, tally: Tally | None = None,
                   pending=None) -> bytes | None:
        if pending is None:
            r, pending = self.prepare(data, tcp, tally)
            if pending is None:
                return r
        q, a, t0 = pending
        limit = 65535 if tcp else (min(q.edns, wire.EDNS_SIZE) if q.edns is not None else wire.MIN_UDP)
        if a.forward:
            if self.forwarder is None or not self.forwarder.upstreams:
                return self._done(tally, t0, data, q, wire.encode_response(q, REFUSED, aa=False),
                                  SERVER, MISS)
            self.stats["forwarded"] += 1
            reply = await self.forwarder.query(data, tcp)
            return self._done(tally, t0, data, q, reply if reply is not None else
                              wire.encode_response(q, SERVFAIL, aa=False), FORWARD, MISS)
        # An ExternalName outside the cluster: its CNAME, then what upstream has for the target.
        records = list(a.answers)
        if q.qtype not in (CNAME, ANY) and self.forwarder is not None and self.forwarder.upstreams:
            upstream = await self.forwarder.query(wire.encode_query(a.chase, q.qtype, 0), tcp)
            if upstream is not None:
                try:
                    msg = wire.parse_message(upstream)
                    records += [r for r in msg.answers if r.klass == IN]
                except FormatError:
                    pass
        return self._done(tally, t0, data, q, wire.encode_response(q, NOERROR, records, limit=limit),
                          KUBERNETES, MISS)

    # ---- the watches -----------------------------------------------------------------------

    def on_service(self, kind: str, old: dict | None, new: dict | None) -> None:
        c = self.catalog
        if new is None:
            m = old["metadata"]
            owner = c.delete_service(m.get("namespace") or "default", m["name"])
        else:
            owner = c.set_service(service_info(new))
        self._changed(owner)

    def on_slice(self, kind: str, old: dict | None, new: dict | None) -> None:
        c = self.catalog
        owners = []
        info = slice_info(new) if new is not None else None
        if info is None:
            m = (old or new)["metadata"]
            owners.append(c.delete_slice(m.get("namespace") or "default", m["name"]))
        else:
            owners.append(c.set_slice(info))
        owners += c.stale_owners
        c.stale_owners.clear()
        self._changed(*[o for o in owners if o is not None])

    def on_namespace(self, names: set[str]) -> None:
        if names != self.catalog.namespaces:
            self.catalog.set_namespaces(names)
            self.clear()

    def _changed(self, *owners) -> None:
        self.invalidate(*owners, ANYTHING)
        if self.catalog.namespaces is None:
            self.invalidate(("namespaces",))
        for owner in owners:
            self._warm(owner)

    def _warm(self, owner) -> None:
        """Prepare the answers a resolver asks first (A and AAAA of the Service's name, plain
        queries as glibc sends them), so the first lookup after a change is a cache hit."""
        if not (isinstance(owner, tuple) and len(owner) == 3 and owner[0] == "svc"):
            return
        if (owner[1], owner[2]) not in self.catalog.services:
            return
        name = self.catalog.service_name(owner[1], owner[2])
        for qtype in WARM_TYPES:
            self.prepare(wire.encode_query(name, qtype, 0), False)


# ---- sockets -------------------------------------------------------------------------------

class UDPServer(asyncio.DatagramProtocol):
    """Answers datagrams. When the kernel will not take more (the transport's write buffer is
    over its high-water mark), responses are dropped, as a busy server drops queries, instead of
    queueing without bound."""

    def __init__(self, resolver: Resolver, tally: Tally | None = None):
        self.resolver = resolver
        self.tally = tally  # this listener's UDP answers made on the event loop
        self.transport: asyncio.DatagramTransport | None = None
        self.paused = False

    def connection_made(self, transport) -> None:
        self.transport = transport

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False

    def datagram_received(self, data: bytes, addr) -> None:
        if self.paused:
            self.resolver.stats["dropped"] += 1
            return
        t0 = time.perf_counter()
        r = self.resolver.fast(data, self.tally.counts if self.tally is not None else None)
        if r is None:
            self.answer_slowly(data, addr)
            return
        self.transport.sendto(r, addr)
        if self.tally is not None:
            self.tally.batch(time.perf_counter() - t0)

    def answer_slowly(self, data: bytes, addr) -> None:
        """Everything but a plain cache hit: parse, answer (or forward), maybe cache."""
        r, pending = self.resolver.prepare(data, False, self.tally)
        if pending is not None:
            asyncio.ensure_future(self._later(data, addr, pending))
        elif r is not None:
            self.send(r, addr)

    def send(self, r: bytes, addr) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.sendto(r, addr)

    async def _later(self, data: bytes, addr, pending) -> None:
        try:
            r = await self.resolver.slow(data, False, self.tally, pending)
        except Exception:
            log.exception("answering a forwarded query")
            return
        if r is not None:
            self.send(r, addr)

    def error_received(self, exc) -> None:
        log.debug("udp: %s", exc)


class TCPServer:
    def __init__(self, resolver: Resolver, max_tcp: int = 256, tcp_idle: float = 10.0,
                 tally: Tally | None = None):
        self.resolver = resolver
        self.tally = tally
        self.max_tcp = max_tcp
        self.tcp_idle = tcp_idle
        self.open = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.open >= self.max_tcp:
            writer.close()
            return
        self.open += 1
        try:
            while True:
                head = await asyncio.wait_for(reader.readexactly(2), self.tcp_idle)
                n = struct.unpack("!H", head)[0]
                data = await asyncio.wait_for(reader.readexactly(n), self.tcp_idle)
                r = await self.resolver.respond(data, tcp=True, tally=self.tally)
                if r is None:
                    break
                writer.write(struct.pack("!H", len(r)) + r)
                await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.TimeoutError, ConnectionError):
            pass
        finally:
            self.open -= 1
            writer.close()


class BatchSlowPath(UDPServer):
    """The event-loop half of `udp.BatchUDP`: the queries its thread could not answer from the
    cache, answered here and sent on the same socket (without blocking: a full socket drops)."""

    def __init__(self, resolver: Resolver, sock: socket.socket, tally: Tally | None = None):
        super().__init__(resolver, tally)
        self.sock = sock

    def send(self, r: bytes, addr) -> None:
        try:
            self.sock.sendto(r, socket.MSG_DONTWAIT, addr)
        except OSError:
            self.resolver.stats["dropped"] += 1


async def serve(resolver: Resolver, host: str, port: int, max_tcp: int = 256,
                reuse_port: bool = False, batch: bool = True):
    """Listen on host:port, UDP and TCP. UDP goes through recvmmsg/sendmmsg batches on a thread
    (`udp.BatchUDP`) where the platform has them and `batch`, else an asyncio endpoint.
    Returns (udp, tcp): both have close(). Answers are counted in Tallies of the resolver's
    metrics classes, under the server label dns://HOST:PORT."""
    loop = asyncio.get_running_loop()
    server, family = server_label(host, port), "2" if ":" in host else "1"
    if batch and udp_batch.available():
        udp = udp_batch.BatchUDP(resolver.fast, host, port, reuse_port,
                                 tally=resolver.classes.tally(server, "udp", family))
        udp.start(BatchSlowPath(resolver, udp.sock, resolver.classes.tally(server, "udp", family)).answer_slowly)
    else:
        tally = resolver.classes.tally(server, "udp", family)
        udp, _ = await loop.create_datagram_endpoint(lambda: UDPServer(resolver, tally),
                                                     local_addr=(host, port),
                                                     reuse_port=reuse_port or None)
    tcp = TCPServer(resolver, max_tcp, tally=resolver.classes.tally(server, "tcp", family))
    server = await asyncio.start_server(tcp.handle, host, port, reuse_address=True,
                                        reuse_port=reuse_port or None, backlog=256)
    return udp, server
