"""The cluster DNS's CoreDNS metrics: what is counted for a known sequence of queries through
real listeners on loopback (the recvmmsg thread, the event loop's UDP path, TCP), the exposition
lines, the per-batch timing, the class table's bounds, the cache's entries, forwarding, and the
/metrics, /health and /ready endpoints."""

import asyncio
import socket
import struct
import urllib.error
import urllib.request

import pytest

from svcnet.agent.dns import metrics as m
from svcnet.agent.dns.answer import Catalog
from svcnet.agent.dns.forward import Forwarder
from svcnet.agent.dns.metrics import CLUSTER, DNSMetrics, Tally, type_label
from svcnet.agent.dns.process import DNSProcess
from svcnet.agent.dns.server import Resolver, serve
from svcnet.agent.dns.wire import A, AAAA, TXT, encode_query
from tests.unit.test_dns_server import free_port, svc, upstream

WEB = "web.default.svc.cluster.local"
MX, SPF, HTTPS = 15, 99, 65


def lines(text: str, prefix: str) -> list[str]:
    return [x for x in text.splitlines() if x.startswith(prefix)]


def exchange(port: int, message: bytes, expect_answer: bool = True) -> bytes | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(2 if expect_answer else 0.3)
        s.sendto(message, ("127.0.0.1", port))
        try:
            return s.recv(4096)
        except socket.timeout:
            if expect_answer:
                raise
            return None


def chaos_txt(name: str) -> bytes:
    q = encode_query(name, TXT, 77)
    return q[:-2] + struct.pack("!H", 3)  # class CH


def test_type_labels_fold_uncommon_types_into_other():
    assert [type_label(t) for t in (A, AAAA, 33, HTTPS, 255, 252, MX, SPF, 0, 64)] == [
        "A", "AAAA", "SRV", "HTTPS", "ANY", "AXFR", "MX", "other", "other", "other"]


def test_a_known_sequence_of_queries_as_coredns_exposes_it():
    """Through a real listener: plain hits on the recvmmsg thread, misses and EDNS on the event
    loop, TCP; every count and the size histograms checked line by line."""
    async def main():
        r = Resolver(Catalog())
        r.on_service("ADDED", None, svc("web", "10.96.0.20"))  # A and AAAA prepared: cached
        port = free_port()
        udp, tcp = await serve(r, "127.0.0.1", port, batch=True)
        loop = asyncio.get_running_loop()

        def udp_sequence():
            for i in range(3):
                exchange(port, encode_query(WEB, A, i))                 # hits (thread)
            for i in range(2):
                exchange(port, encode_query("nope.default.svc.cluster.local", MX, i))  # miss, hit
            exchange(port, encode_query(WEB, AAAA, 5))                  # NODATA hit: a denial
            exchange(port, encode_query("x.default.svc.cluster.local", SPF, 6))  # type "other"
            exchange(port, encode_query(WEB, A, 7, edns=1232))          # EDNS: a miss
            exchange(port, encode_query(WEB, A, 8, edns=1232))          # ... then a hit (loop)
            exchange(port, encode_query("www.example.com", HTTPS, 9))   # no upstream: REFUSED
            exchange(port, b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x3fxx")  # FORMERR
            exchange(port, chaos_txt("version.bind"))                   # class CH: REFUSED
            assert exchange(port, b"\x01", expect_answer=False) is None  # no header: not counted

        await loop.run_in_executor(None, udp_sequence)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for qid in (1, 2):
            q = encode_query(WEB, A, qid)
            writer.write(struct.pack("!H", len(q)) + q)
            n = struct.unpack("!H", await reader.readexactly(2))[0]
            assert len(await reader.readexactly(n)) == 63
        writer.write_eof()
        assert await reader.read() == b""  # the server closed its side: its handler is done
        writer.close()
        text = DNSMetrics(r.classes, r.entries, None, f"dns://127.0.0.1:{port}").render()
        udp.close()
        tcp.close()
        return port, text

    port, text = asyncio.run(main())
    srv = f'server="dns://127.0.0.1:{port}"'

    assert lines(text, "coredns_dns_requests_total{") == [
        f'coredns_dns_requests_total{{family="1",proto="{p}",{srv},type="{t}",view="",zone="{z}"}} {n}'
        for p, t, z, n in (("udp", "HTTPS", ".", 1), ("tcp", "A", "cluster.local.", 2),
                           ("udp", "A", "cluster.local.", 5), ("udp", "AAAA", "cluster.local.", 1),
                           ("udp", "MX", "cluster.local.", 2), ("udp", "other", "cluster.local.", 1),
                           ("udp", "TXT", "dropped", 1), ("udp", "other", "dropped", 1))]
    assert lines(text, "coredns_dns_responses_total{") == [
        f'coredns_dns_responses_total{{plugin="{p}",rcode="{rc}",{srv},view="",zone="{z}"}} {n}'
        for rc, p, z, n in (("REFUSED", "", ".", 1), ("NOERROR", "cache", "cluster.local.", 7),
                            ("NOERROR", "kubernetes", "cluster.local.", 1),
                            ("NXDOMAIN", "cache", "cluster.local.", 1),
                            ("NXDOMAIN", "kubernetes", "cluster.local.", 2),
                            ("FORMERR", "", "dropped", 1), ("REFUSED", "", "dropped", 1))]
    # entries: web A (plain, EDNS) success; web AAAA, nope MX, x SPF denials
    cluster, root = 'view="",zones="cluster.local."', 'view="",zones="."'
    for family, rows in (
            ("coredns_cache_hits_total", ((f'type="denial",{cluster}', 2), (f'type="success",{cluster}', 6))),
            ("coredns_cache_misses_total", ((root, 1), (cluster, 3))),
            ("coredns_cache_requests_total", ((root, 1), (cluster, 11))),
            ("coredns_cache_entries", ((f'type="denial",{cluster}', 3), (f'type="success",{cluster}', 2)))):
        assert lines(text, family + "{") == [f"{family}{{{srv},{labels}}} {n}" for labels, n in rows]
    # the two TCP queries: 47 bytes each, answers of 63
    tcp = f'proto="tcp",{srv},view="",zone="cluster.local."'
    assert lines(text, f"coredns_dns_request_size_bytes_bucket{{{tcp}") == [
        f'coredns_dns_request_size_bytes_bucket{{{tcp},le="{le}"}} {0 if le == "0" else 2}'
        for le in ("0", "100", "200", "300", "400", "511", "1023", "2047", "4095", "8291",
                   "16000", "32000", "48000", "64000", "+Inf")]
    assert lines(text, f"coredns_dns_request_size_bytes_sum{{{tcp}") == [
        f"coredns_dns_request_size_bytes_sum{{{tcp}}} 94"]
    assert lines(text, f"coredns_dns_response_size_bytes_sum{{{tcp}") == [
        f"coredns_dns_response_size_bytes_sum{{{tcp}}} 126"]
    assert lines(text, "coredns_dns_request_duration_seconds_count{") == [
        f'coredns_dns_request_duration_seconds_count{{{srv},view="",zone="{z}"}} {n}'
        for z, n in ((".", 1), ("cluster.local.", 11), ("dropped", 2))]
    # the duration buckets are CoreDNS's (0.25 ms doubling to 8.192 s) and cumulative
    b = lines(text, f'coredns_dns_request_duration_seconds_bucket{{{srv},view="",zone="cluster.local."')
    assert [x.split('le="')[1].split('"')[0] for x in b] == [
        "0.00025", "0.0005", "0.001", "0.002", "0.004", "0.008", "0.016", "0.032", "0.064",
        "0.128", "0.256", "0.512", "1.024", "2.048", "4.096", "8.192", "+Inf"]
    counts = [int(x.rsplit(" ", 1)[1]) for x in b]
    assert counts == sorted(counts) and counts[-1] == 11
    assert "# TYPE coredns_dns_request_duration_seconds histogram" in text
    assert '# HELP coredns_dns_requests_total Counter of DNS requests made per zone, protocol and family.' in text
    assert lines(text, "coredns_build_info{")[0].endswith(" 1")
    assert lines(text, "process_resident_memory_bytes ")


def test_a_batch_gives_its_time_to_each_of_its_answers_by_zone():
    t = Tally("dns://x:53", "udp", "1", len(m.ZONES))
    t.counts[CLUSTER] += 3
    t.batch(0.0003)                   # three answers of one batch: le 0.0005
    t.counts[CLUSTER] += 1
    t.counts[m.IN_ADDR] += 2
    t.batch(0.003, 3)                 # le 0.004
    t.batch(0.5)                      # nothing new: nothing observed
    assert t.durations[CLUSTER][1] == 3 and t.durations[CLUSTER][4] == 1
    assert t.durations[m.IN_ADDR][4] == 2 and sum(t.durations[m.IN_ADDR]) == 2
    assert t.duration_sums[CLUSTER] == pytest.approx(3 * 0.0003 + 0.003)


def test_new_classes_reach_every_tally_and_the_table_stays_bounded(monkeypatch):
    classes = m.Classes()
    t = classes.tally("dns://x:53", "udp", "1")
    a = classes.intern(CLUSTER, A, 0, m.CACHE, m.SUCCESS, 47, 63)
    assert classes.intern(CLUSTER, A, 0, m.CACHE, m.SUCCESS, 47, 63) == a  # interned once
    late = classes.tally("dns://x:53", "tcp", "1")
    b = classes.intern(CLUSTER, A, 0, m.CACHE, m.SUCCESS, 48, 64)
    assert len(t.counts) == len(late.counts) == b + 1  # every tally can count every class
    monkeypatch.setattr(m, "MAX_CLASSES", len(classes.labels))
    c = classes.intern(CLUSTER, A, 0, m.KUBERNETES, m.MISS, 150, 250)
    assert classes.intern(CLUSTER, A, 0, m.KUBERNETES, m.MISS, 160, 290) == c  # same buckets
    assert classes.labels[c][5:] == (200, 300)  # sizes rounded up to their bucket's bound


def test_cache_entries_follow_the_cache():
    r = Resolver(Catalog())
    r.on_service("ADDED", None, svc("web", "10.96.0.20"))
    r.on_service("ADDED", None, svc("api", "10.96.0.21"))
    assert r.entries == {(CLUSTER, m.SUCCESS): 2, (CLUSTER, m.DENIAL): 2}  # A and AAAA each
    asyncio.run(r.respond(encode_query("nope.default.svc.cluster.local", A, 1)))
    assert r.entries[CLUSTER, m.DENIAL] == 3
    r.on_service("DELETED", svc("api", "10.96.0.21"), None)
    assert r.entries == {(CLUSTER, m.SUCCESS): 1, (CLUSTER, m.DENIAL): 2}
    assert sum(r.entries.values()) == len(r.cache)
    r.on_namespace({"default", "kube-system"})  # a namespace change empties the cache
    assert not any(r.entries.values()) and not r.cache


def test_forwarded_names_are_counted_per_upstream():
    async def main():
        t, _, addr = await upstream()
        fwd = Forwarder([addr], timeout=2)
        await fwd.start()
        r = Resolver(Catalog(), fwd)
        tally = r.classes.tally("dns://127.0.0.1:53", "udp", "1")
        await r.respond(encode_query("www.example.com", A, 1), tally=tally)
        await r.respond(encode_query("nope.test", A, 2), tally=tally)
        text = DNSMetrics(r.classes, r.entries, fwd, "dns://127.0.0.1:53").render()
        fwd.close()
        t.close()
        return addr, text

    (host, port), text = asyncio.run(main())
    to = f'to="{host}:{port}"'
    assert lines(text, "coredns_forward_requests_total{") == [f"coredns_forward_requests_total{{{to}}} 2"]
    for family in ("coredns_forward_responses_total", "coredns_forward_request_duration_seconds_count"):
        assert lines(text, family + "{") == [f'{family}{{rcode="{rcode}",{to}}} 1'
                                             for rcode in ("NOERROR", "NXDOMAIN")]
    assert lines(text, "coredns_dns_responses_total{") == [
        'coredns_dns_responses_total{plugin="forward",rcode="NOERROR",server="dns://127.0.0.1:53",view="",zone="."} 1',
        'coredns_dns_responses_total{plugin="forward",rcode="NXDOMAIN",server="dns://127.0.0.1:53",view="",zone="."} 1']


def get(url: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.headers.get("Content-Type", ""), resp.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, "", e.read().decode()


def test_metrics_health_and_ready_endpoints(tmp_path):
    async def main():
        empty = tmp_path / "resolv.conf"
        empty.write_text("")
        mport = free_port()
        p = DNSProcess(None, [("127.0.0.1", 5353)], resolv_conf=str(empty),
                       metrics_listen=("127.0.0.1", mport))
        await p._serve_metrics()
        loop = asyncio.get_running_loop()
        base = f"http://127.0.0.1:{mport}"
        try:
            before = await loop.run_in_executor(None, get, base + "/ready")
            health = await loop.run_in_executor(None, get, base + "/health")
            p.ready = True  # set by start() once the lists are in and the listeners answer
            after = await loop.run_in_executor(None, get, base + "/ready")
            scraped = await loop.run_in_executor(None, get, base + "/metrics")
        finally:
            await p.metrics_runner.cleanup()
        return before, health, after, scraped

    before, health, after, (status, ctype, body) = asyncio.run(main())
    assert before[0] == 503
    assert (health[0], health[2]) == (200, "OK")
    assert (after[0], after[2]) == (200, "OK")
    assert status == 200 and ctype.startswith("text/plain")
    assert "# TYPE coredns_build_info gauge" in body and "process_open_fds " in body


def test_query_types_outside_the_monitored_list_share_one_class():
    """Types are labelled by name or "other", so random query types (65,536 of them) must not
    each make a class: the table would grow a slot in every Tally per type."""
    classes = m.Classes()
    ids = {classes.intern(m.ROOT, qtype, 5, m.SERVER, m.UNCACHED, 30, 30)
           for qtype in (SPF, 0, 64, 300, 4000, 65535)}
    assert len(ids) == 1 and len(classes.labels) == len(m.ZONES) + 1
    assert classes.intern(m.ROOT, MX, 5, m.SERVER, m.UNCACHED, 30, 30) not in ids


def test_the_cluster_zone_is_named_after_the_cluster_domain():
    """With --cluster-domain example.org, the cluster's names are counted in zone
    "example.org." (it was "cluster.local." whatever the domain)."""
    async def main():
        r = Resolver(Catalog(domain="example.org"))
        r.on_service("ADDED", None, svc("web", "10.96.0.20"))
        tally = r.classes.tally("dns://127.0.0.1:53", "udp", "1")
        await r.respond(encode_query("web.default.svc.example.org", A, 1), tally=tally)
        return DNSMetrics(r.classes, r.entries, None, "dns://127.0.0.1:53").render()

    text = asyncio.run(main())
    assert lines(text, "coredns_dns_requests_total{") == [
        'coredns_dns_requests_total{family="1",proto="udp",server="dns://127.0.0.1:53",type="A",'
        'view="",zone="example.org."} 1']
    assert lines(text, "coredns_cache_entries{") == [
        f'coredns_cache_entries{{server="dns://127.0.0.1:53",type="{t}",view="",zones="example.org."}} 1'
        for t in ("denial", "success")]
    assert "cluster.local" not in text


def test_a_forwarded_query_without_a_response_is_no_request():
    """CoreDNS counts a forward request together with its response: one that timed out, or
    that the full pending table refused (never sent), was counted as a request."""
    async def main():
        t, p, addr = await upstream(silent=True)
        fwd = Forwarder([addr], timeout=0.2)
        await fwd.start()
        timed_out = await fwd.query(encode_query("www.example.com", A, 1))
        fwd.max_pending = 0
        refused = await fwd.query(encode_query("www.example.com", A, 2))
        fwd.close()
        t.close()
        return timed_out, refused, p.seen, fwd.requests, fwd.responses

    assert asyncio.run(main()) == (None, None, ["www.example.com"], {}, {})
