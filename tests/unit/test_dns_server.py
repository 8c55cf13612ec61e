"""The cluster DNS server: the response cache and its invalidation, bad input, forwarding with a
bounded pending table, and the UDP/TCP listeners on loopback (127.0.0.1, ephemeral ports)."""

import asyncio
import socket
import struct
import time

import pytest

from svcnet.agent.dns import wire
from svcnet.agent.dns.answer import Catalog
from svcnet.agent.dns.forward import Forwarder, read_resolv_conf
from svcnet.agent.dns.server import Resolver, serve
from svcnet.agent.dns.wire import (A, AXFR, FORMERR, NOERROR, NOTIMP, NXDOMAIN, REFUSED, SERVFAIL,
                                   Record, encode_query, parse_message)


def svc(name, ip, ns="default", **spec):
    return {"metadata": {"name": name, "namespace": ns},
            "spec": {"clusterIP": ip, "clusterIPs": [ip], "ports": [{"name": "http", "port": 80}],
                     **spec}}


def slice_(service, *ips, name=None):
    return {"metadata": {"name": name or f"{service}-1", "namespace": "default",
                         "labels": {"kubernetes.io/service-name": service}},
            "addressType": "IPv4", "endpoints": [{"addresses": [ip]} for ip in ips], "ports": []}


@pytest.fixture
def resolver():
    r = Resolver(Catalog())
    r.on_service("ADDED", None, svc("web", "10.96.0.20"))
    r.on_service("ADDED", None, svc("api", "10.96.0.21"))
    r.on_service("ADDED", None, svc("db", "None"))
    r.on_slice("ADDED", None, slice_("db", "10.244.0.5"))
    return r


def ask(resolver, name, qtype=A, qid=1, tcp=False, **kw):
    raw = asyncio.run(resolver.respond(encode_query(name, qtype, qid, **kw), tcp))
    return raw, parse_message(raw)


def ips(msg):
    return sorted(r.data for r in msg.answers if r.type == A)


def test_a_cached_answer_gets_the_new_id_rd_bit_and_spelling(resolver):
    raw1, m1 = ask(resolver, "web.default.svc.cluster.local", qid=1)
    assert ips(m1) == ["10.96.0.20"]
    raw2, m2 = ask(resolver, "WEB.default.svc.cluster.local", qid=0xBEEF, rd=False)
    assert resolver.stats["hits"] == 2  # both from the answer prepared when `web` was added
    assert m2.id == 0xBEEF and not m2.flags & wire.RD and m1.flags & wire.RD
    assert m2.questions == [("WEB.default.svc.cluster.local", A, 1)]
    assert m2.answers[0].name == "WEB.default.svc.cluster.local"
    assert raw2[12:].lower() == raw1[12:].lower()


def test_edns_queries_are_cached_apart_and_keep_their_opt(resolver):
    _, plain = ask(resolver, "web.default.svc.cluster.local")
    misses = resolver.stats["misses"]
    _, e1 = ask(resolver, "web.default.svc.cluster.local", edns=1232)
    _, e2 = ask(resolver, "web.default.svc.cluster.local", qid=9, edns=1232)
    assert not plain.additional and [r.type for r in e2.additional] == [wire.OPT]
    assert e1.answers == e2.answers and resolver.stats["misses"] == misses + 1


def test_a_change_invalidates_that_service_and_nothing_else(resolver):
    api = encode_query("api.default.svc.cluster.local", A, 0)[12:]
    prepared = resolver.cache[api]
    resolver.on_service("MODIFIED", None, svc("web", "10.96.0.99"))
    hits = resolver.stats["hits"]
    assert ips(ask(resolver, "web.default.svc.cluster.local")[1]) == ["10.96.0.99"]
    assert resolver.stats["hits"] == hits + 1  # the new answer was prepared with the change
    assert resolver.cache[api] is prepared  # api's answer was left alone
    resolver.on_service("DELETED", svc("web", "10.96.0.99"), None)
    assert ask(resolver, "web.default.svc.cluster.local")[1].rcode == NXDOMAIN


def test_the_first_lookup_after_a_change_is_a_prepared_answer(resolver):
    resolver.on_service("ADDED", None, svc("new", "10.96.0.40"))
    before = dict(resolver.stats)
    assert ips(ask(resolver, "new.default.svc.cluster.local")[1]) == ["10.96.0.40"]
    assert ask(resolver, "new.default.svc.cluster.local", wire.AAAA)[1].answers == []
    assert resolver.stats["hits"] == before["hits"] + 2 and resolver.stats["misses"] == before["misses"]


def test_endpoint_changes_reach_headless_answers_and_ptr(resolver):
    assert ips(ask(resolver, "db.default.svc.cluster.local")[1]) == ["10.244.0.5"]
    assert ask(resolver, "6.0.244.10.in-addr.arpa", wire.PTR)[1].rcode == REFUSED  # unknown, no upstream
    resolver.on_slice("MODIFIED", None, slice_("db", "10.244.0.5", "10.244.0.6"))
    assert ips(ask(resolver, "db.default.svc.cluster.local")[1]) == ["10.244.0.5", "10.244.0.6"]
    assert [r.data for r in ask(resolver, "6.0.244.10.in-addr.arpa", wire.PTR)[1].answers] == [
        "10-244-0-6.db.default.svc.cluster.local"]
    resolver.on_slice("DELETED", slice_("db"), None)
    assert ask(resolver, "db.default.svc.cluster.local")[1].rcode == NXDOMAIN


def test_a_negative_answer_is_dropped_when_the_name_appears(resolver):
    assert ask(resolver, "new.default.svc.cluster.local")[1].rcode == NXDOMAIN
    resolver.on_service("ADDED", None, svc("new", "10.96.0.30"))
    assert ips(ask(resolver, "new.default.svc.cluster.local")[1]) == ["10.96.0.30"]


def test_a_namespace_change_drops_everything(resolver):
    resolver.on_namespace({"default"})
    ask(resolver, "web.default.svc.cluster.local")
    assert resolver.cache
    resolver.on_namespace({"default", "other"})
    assert not resolver.cache
    assert ask(resolver, "other.svc.cluster.local")[1].rcode == NOERROR


def test_the_cache_is_bounded():
    r = Resolver(Catalog(), max_entries=100)
    for i in range(1000):
        asyncio.run(r.respond(encode_query(f"n{i}.default.svc.cluster.local", A, i)))
        assert len(r.cache) <= 100
    assert sum(len(v) for v in r.owners.values()) <= 100


def test_bad_input(resolver):
    q = encode_query("web.default.svc.cluster.local", A, 0x4242)
    assert asyncio.run(resolver.respond(q[:5])) is None  # not even a header: dropped
    assert asyncio.run(resolver.respond(q[:2] + b"\x81\x80" + q[4:])) is None  # a response
    formerr = parse_message(asyncio.run(resolver.respond(q[:-2])))
    assert (formerr.id, formerr.rcode, formerr.questions) == (0x4242, FORMERR, [])
    notify = q[:2] + bytes([q[2] | 0x20]) + q[3:]  # opcode 4, NOTIFY
    assert parse_message(asyncio.run(resolver.respond(notify))).rcode == NOTIMP
    chaos = q[:-2] + b"\x00\x03"
    assert parse_message(asyncio.run(resolver.respond(chaos))).rcode == REFUSED
    assert ask(resolver, "cluster.local", AXFR)[1].rcode == REFUSED
    assert ask(resolver, "web.default.svc.cluster.local")[1].rcode == NOERROR  # still serving


def test_outside_names_without_upstreams_are_refused(resolver):
    assert ask(resolver, "www.example.com")[1].rcode == REFUSED


def test_read_resolv_conf(tmp_path):
    f = tmp_path / "resolv.conf"
    f.write_text("# c\nsearch example.com\nnameserver 10.0.0.2\nnameserver 10.96.0.10\n"
                 "nameserver fe80::1%eth0\nnameserver 10.0.0.2\nnameserver bogus\noptions ndots:2\n")
    assert read_resolv_conf(f, {"10.96.0.10"}) == [("10.0.0.2", 53), ("fe80::1", 53)]
    assert read_resolv_conf(tmp_path / "missing") == []


# ---- with sockets on loopback ---------------------------------------------------------------

class FakeUpstream(asyncio.DatagramProtocol):
    """*.example.com -> 192.0.2.1 (after `delay`); `silent`: never answers."""

    def __init__(self, silent=False):
        self.silent = silent
        self.seen = []

    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        q = wire.parse_query(data)
        self.seen.append(q.qname)
        if self.silent:
            return
        if q.qname.endswith("example.com"):
            r = wire.encode_response(q, NOERROR, [Record(q.qname, A, 30, "192.0.2.1")], aa=False)
        else:
            r = wire.encode_response(q, NXDOMAIN, aa=False)
        self.transport.sendto(r, addr)


async def until(predicate, timeout: float = 10.0) -> None:
    """Let the event loop run until `predicate()` holds (or the deadline passes)."""
    deadline = time.monotonic() + timeout
    while not predicate() and time.monotonic() < deadline:
        await asyncio.sleep(0.005)


async def upstream(silent=False):
    loop = asyncio.get_running_loop()
    t, p = await loop.create_datagram_endpoint(lambda: FakeUpstream(silent), local_addr=("127.0.0.1", 0))
    return t, p, t.get_extra_info("sockname")


def test_forwarding_relays_the_upstream_answer_with_the_clients_id():
    async def main():
        t, p, addr = await upstream()
        fwd = Forwarder([addr], timeout=2)
        await fwd.start()
        r = Resolver(Catalog(), fwd)
        m = parse_message(await r.respond(encode_query("www.example.com", A, 0x7777)))
        assert (m.id, ips(m)) == (0x7777, ["192.0.2.1"])
        assert parse_message(await r.respond(encode_query("nope.test", A, 5))).rcode == NXDOMAIN
        assert p.seen == ["www.example.com", "nope.test"] and not fwd.pending
        fwd.close()
        t.close()
    asyncio.run(main())


def test_external_name_target_is_followed_upstream():
    async def main():
        t, _, addr = await upstream()
        fwd = Forwarder([addr])
        await fwd.start()
        r = Resolver(Catalog(), fwd)
        r.on_service("ADDED", None, {"metadata": {"name": "ext", "namespace": "default"},
                                     "spec": {"type": "ExternalName", "externalName": "www.example.com"}})
        m = parse_message(await r.respond(encode_query("ext.default.svc.cluster.local", A, 3)))
        assert [(x.type, x.data) for x in m.answers] == [(wire.CNAME, "www.example.com"), (A, "192.0.2.1")]
        fwd.close()
        t.close()
    asyncio.run(main())


def test_a_silent_upstream_gives_servfail_and_the_pending_table_stays_bounded():
    async def main():
        t, p, addr = await upstream(silent=True)
        fwd = Forwarder([addr], timeout=0.3, max_pending=5)
        await fwd.start()
        r = Resolver(Catalog(), fwd)
        flood = [asyncio.ensure_future(r.respond(encode_query(f"n{i}.example.com", A, i)))
                 for i in range(50)]
        await until(lambda: len(p.seen) >= 5, timeout=0.25)  # within the forwarder's timeout
        assert len(fwd.pending) == 5 and len(p.seen) == 5  # the rest were refused at once
        answers = await asyncio.gather(*flood)
        assert {parse_message(a).rcode for a in answers} == {SERVFAIL}
        assert not fwd.pending and fwd.stats["overflow"] == 45
        fwd.close()
        t.close()
    asyncio.run(main())


def free_port() -> int:
    """A loopback port free for both UDP and TCP right now."""
    while True:
        with socket.socket() as t, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            t.bind(("127.0.0.1", 0))
            try:
                u.bind(t.getsockname())
            except OSError:
                continue
            return t.getsockname()[1]


@pytest.mark.parametrize("batch", [True, False], ids=["recvmmsg", "asyncio"])
def test_udp_and_tcp_listeners(batch):
    async def main():
        r = Resolver(Catalog())
        r.on_service("ADDED", None, svc("web", "10.96.0.20"))
        port = free_port()
        udp, tcp = await serve(r, "127.0.0.1", port, max_tcp=2, batch=batch)
        loop = asyncio.get_running_loop()

        def udp_exchange(*messages):
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.settimeout(2)
                for m in messages:
                    s.sendto(m, ("127.0.0.1", port))
                return s.recv(4096)

        q = encode_query("web.default.svc.cluster.local", A, 11)
        # garbage first: dropped or FORMERR, and the next query is still answered
        raw = await loop.run_in_executor(None, udp_exchange, b"\x00", q)
        assert ips(parse_message(raw)) == ["10.96.0.20"]
        # a burst: every query answered, with its own ID (cache hits after the first)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(2)
            for qid in range(100, 300):
                s.sendto(encode_query("web.default.svc.cluster.local", A, qid), ("127.0.0.1", port))
            got = await loop.run_in_executor(None, lambda: sorted(parse_message(s.recv(512)).id
                                                                  for _ in range(200)))
        assert got == list(range(100, 300))
        # EDNS and misses take the event loop's path and are answered on the same socket
        raw = await loop.run_in_executor(None, udp_exchange, encode_query(
            "nope.default.svc.cluster.local", A, 12, edns=1232))
        assert (parse_message(raw).id, parse_message(raw).rcode) == (12, NXDOMAIN)

        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for qid in (1, 2):  # pipelined
            m = encode_query("web.default.svc.cluster.local", A, qid)
            writer.write(struct.pack("!H", len(m)) + m)
        got = []
        for _ in range(2):
            n = struct.unpack("!H", await reader.readexactly(2))[0]
            got.append(parse_message(await reader.readexactly(n)).id)
        assert got == [1, 2]
        second = await asyncio.open_connection("127.0.0.1", port)
        third = await asyncio.open_connection("127.0.0.1", port)  # over max_tcp: closed at once
        assert await asyncio.wait_for(third[0].read(), 2) == b""
        for w in (writer, second[1], third[1]):
            w.close()
        udp.close()
        tcp.close()
    asyncio.run(main())


def test_an_answer_too_big_for_a_small_edns_client_is_not_indexed_twice():
    r = Resolver(Catalog())
    r.on_service("ADDED", None, svc("db", "None"))
    r.on_slice("ADDED", None, slice_("db", *[f"10.244.0.{i}" for i in range(1, 41)]))
    asyncio.run(r.respond(encode_query("db.default.svc.cluster.local", A, 1, edns=1232)))  # cached
    for qid in range(5):  # 40 A records: ~700 bytes, more than the 512 this client takes
        m = parse_message(asyncio.run(r.respond(encode_query("db.default.svc.cluster.local", A, qid,
                                                             edns=512))))
        assert m.flags & wire.TC
    edns_key = encode_query("db.default.svc.cluster.local", A, 0, edns=1232)[12:-11] + b"\x00E"
    assert sum(keys.count(edns_key) for keys in r.owners.values()) == 1
    assert sum(len(keys) for keys in r.owners.values()) == len(r.cache)


def test_the_forwarder_never_asks_the_cluster_dns_itself():
    fwd = Forwarder([("10.96.0.10", 53), ("192.0.2.53", 53)])
    fwd.exclude(["10.96.0.10"])
    assert fwd.upstreams == [("192.0.2.53", 53)]


def test_udp_responses_are_dropped_while_the_socket_is_full(resolver):
    from svcnet.agent.dns.server import UDPServer

    class Transport:  # records what would be sent
        def __init__(self):
            self.sent = []

        def sendto(self, data, addr):
            self.sent.append((data, addr))

        def is_closing(self):
            return False

    proto, t = UDPServer(resolver), Transport()
    proto.connection_made(t)
    q = encode_query("web.default.svc.cluster.local", A, 5)
    proto.pause_writing()
    proto.datagram_received(q, ("127.0.0.1", 9))
    assert t.sent == [] and resolver.stats["dropped"] == 1
    proto.resume_writing()
    proto.datagram_received(q, ("127.0.0.1", 9))
    assert [(ips(parse_message(d)), a) for d, a in t.sent] == [(["10.96.0.20"], ("127.0.0.1", 9))]


def test_an_answer_that_cannot_be_written_is_servfail_and_the_server_goes_on(resolver):
    resolver.on_service("ADDED", None, {"metadata": {"name": "bad", "namespace": "default"},
                                        "spec": {"type": "ExternalName", "externalName": "a..b"}})
    assert ask(resolver, "bad.default.svc.cluster.local", wire.CNAME)[1].rcode == SERVFAIL
    assert ask(resolver, "web.default.svc.cluster.local")[1].rcode == NOERROR


def test_queries_for_the_event_loop_are_bounded_while_it_is_busy():
    from svcnet.agent.dns import udp as batch

    if not batch.available():
        pytest.skip("no recvmmsg")

    async def main():
        r = Resolver(Catalog())
        port = free_port()
        u, tcp = await serve(r, "127.0.0.1", port)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for i in range(3 * batch.MAX_BACKLOG):  # misses; the loop is blocked meanwhile
                s.sendto(encode_query(f"n{i}.default.svc.cluster.local", A, i), ("127.0.0.1", port))
            deadline = time.monotonic() + 10
            while u.handed + u.dropped < 3 * batch.MAX_BACKLOG and time.monotonic() < deadline:
                time.sleep(0.01)  # blocking: the loop takes nothing
            assert u.handed - u.taken == batch.MAX_BACKLOG and u.dropped > 0
            await until(lambda: u.taken == u.handed)  # the loop drains what it was handed
            assert u.taken == u.handed
        u.close()
        tcp.close()
    asyncio.run(main())


def test_the_udp_thread_measures_its_own_latency_when_asked(monkeypatch):
    from svcnet.agent.dns import udp as batch

    if not batch.available():
        pytest.skip("no recvmmsg")
    monkeypatch.setenv(batch.TIMING_ENV, "1")

    async def main():
        r = Resolver(Catalog())
        names = [f"{'s' * (i + 1)}.default.svc.cluster.local" for i in range(20)]  # lengths differ
        for i, name in enumerate(names):
            r.on_service("ADDED", None, svc(name.split(".")[0], f"10.96.0.{i + 1}"))
        port = free_port()
        u, tcp = await serve(r, "127.0.0.1", port)
        loop = asyncio.get_running_loop()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:  # not measured: not started
            s.settimeout(2)
            s.sendto(encode_query(names[0], A, 1), ("127.0.0.1", port))
            await loop.run_in_executor(None, s.recv, 512)
        u.timing.start()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(2)
            for qid in range(200):  # a burst: several queries in each recvmmsg batch
                s.sendto(encode_query(names[qid % 20], A, qid), ("127.0.0.1", port))
            got = await loop.run_in_executor(None, lambda: [parse_message(s.recv(512)) for _ in range(200)])
        # every answer matches its own question (each query was copied from its own slot)
        assert sorted(m.id for m in got) == list(range(200))
        assert all(ips(m) == [f"10.96.0.{m.id % 20 + 1}"] and m.questions[0][0] == names[m.id % 20]
                   for m in got)
        t = u.timing.report()
        assert t["queries"] == 200 and 1 <= t["batches"] <= 200
        assert 0 <= t["wait_p50_us"] <= t["total_p50_us"]
        assert t["total_p99_us"] <= t["total_max_us"] < 2_000_000
        assert u.timing.report()["queries"] == 0 and not u.timing.active  # a report stops it
        u.close()
        tcp.close()
    asyncio.run(main())


def test_the_udp_thread_asks_for_a_short_scheduler_slice():
    import threading

    from svcnet.agent.dns import udp as batch

    seen = {}

    def probe():
        sched = f"/proc/self/task/{threading.get_native_id()}/sched"
        before = open(sched).read()
        seen["ok"] = batch.short_slice()
        seen["before"], seen["after"] = before, open(sched).read()

    t = threading.Thread(target=probe)
    t.start()
    t.join()
    if "se.slice" not in seen["before"]:
        pytest.skip("the kernel does not show se.slice (before 6.12?)")

    def field(text, name):
        return next(line.split(":")[1].strip() for line in text.splitlines() if line.startswith(name))

    assert seen["ok"]
    assert field(seen["after"], "se.slice") == str(batch.SLICE_NS)
    assert field(seen["after"], "prio") == field(seen["before"], "prio")  # nice unchanged
    assert field(open("/proc/self/sched").read(), "se.slice") != str(batch.SLICE_NS)  # only that thread
