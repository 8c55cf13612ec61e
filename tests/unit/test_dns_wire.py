"""DNS wire format: queries parsed from hand-written bytes, responses checked byte by byte."""

import struct

import pytest

from svcnet.agent.dns import wire
from svcnet.agent.dns.wire import (A, AAAA, CNAME, FORMERR, NXDOMAIN, OPT, SRV, FormatError, Record,
                                   encode_query, encode_response, header_only, parse_message,
                                   parse_query)

# dig +noedns web.default.svc.cluster.local (ID 0x1234, RD)
WEB = (b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00"
       b"\x03web\x07default\x03svc\x07cluster\x05local\x00\x00\x01\x00\x01")
OPT_RR = b"\x00\x00\x29\x04\xd0\x00\x00\x00\x00\x00\x00"  # EDNS0, UDP size 1232


def test_parse_a_plain_query():
    q = parse_query(WEB)
    assert (q.id, q.qname, q.qtype, q.qclass, q.edns, q.rd, q.opcode) == (
        0x1234, "web.default.svc.cluster.local", A, 1, None, True, 0)
    assert q.question_wire == WEB[12:]


def test_parse_a_query_with_edns():
    data = WEB[:10] + b"\x00\x01" + WEB[12:] + OPT_RR
    q = parse_query(data)
    assert q.edns == 1232 and q.question_wire == WEB[12:]


@pytest.mark.parametrize("data, why", [
    (WEB[:11], "shorter than a header"),
    (WEB[:2] + b"\x81\x00" + WEB[4:], "a response"),
    (WEB[:4] + b"\x00\x02" + WEB[6:], "two questions"),
    (WEB[:4] + b"\x00\x00" + WEB[6:12], "no question"),
    (WEB[:-3], "truncated question"),
    (WEB[:12] + b"\x40" + b"a" * 64 + b"\x00\x00\x01\x00\x01", "label type 01"),
    (WEB[:12] + (b"\x3f" + b"a" * 63) * 4 + b"\x00\x00\x01\x00\x01", "name over 255 octets"),
    (WEB[:12] + b"\xc0\x0c\x00\x01\x00\x01", "compression pointer loop"),
    (WEB[:12] + b"\x03a.b\x00\x00\x01\x00\x01", "a dot inside a label"),
    (WEB[:10] + b"\x00\x01" + WEB[12:] + OPT_RR[:-2], "truncated OPT"),
    (WEB[:10] + b"\x00\x02" + WEB[12:] + OPT_RR + OPT_RR, "two OPT records"),
])
def test_malformed_queries(data, why):
    with pytest.raises(FormatError):
        parse_query(data)


def test_header_only_answers_formerr_or_nothing():
    assert header_only(WEB, FORMERR) == b"\x12\x34\x81\x01" + b"\x00" * 8
    assert header_only(WEB[:5], FORMERR) is None
    assert header_only(WEB[:2] + b"\x80\x00" + WEB[4:], FORMERR) is None  # never answer a response


def test_a_response_byte_by_byte():
    q = parse_query(WEB)
    r = encode_response(q, 0, [Record(q.qname, A, 5, "10.96.0.20")])
    assert r == (b"\x12\x34\x85\x80\x00\x01\x00\x01\x00\x00\x00\x00" + WEB[12:]
                 + b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x00\x05\x00\x04\x0a\x60\x00\x14")


def test_the_question_is_echoed_as_sent_and_answers_point_at_it():
    mixed = WEB[:12] + b"\x03WeB" + WEB[16:]
    q = parse_query(mixed)
    r = encode_response(q, 0, [Record("web.default.svc.cluster.local", A, 5, "10.96.0.20")])
    assert r[12:12 + len(q.question_wire)] == mixed[12:]
    assert parse_message(r).answers[0].name == "WeB.default.svc.cluster.local"


def test_records_round_trip_with_compression():
    q = parse_query(encode_query("_http._tcp.web.default.svc.cluster.local", SRV, 7))
    target = "web.default.svc.cluster.local"
    r = encode_response(q, 0, [Record(q.qname, SRV, 5, (0, 100, 80, target))],
                        additional=[Record(target, A, 5, "10.96.0.20"),
                                    Record(target, AAAA, 5, "fd00::1"),
                                    Record("x." + target, CNAME, 5, "www.example.com")])
    m = parse_message(r)
    assert m.answers == [Record(q.qname, SRV, 5, (0, 100, 80, target))]
    assert [(x.name, x.data) for x in m.additional] == [
        (target, "10.96.0.20"), (target, "fd00::1"), ("x." + target, "www.example.com")]
    assert r.count(b"\x07cluster") == 1  # every later name is a pointer


def test_edns_queries_get_opt_and_oversized_udp_answers_are_truncated():
    q = parse_query(WEB)
    many = [Record(q.qname, A, 5, f"10.244.{i // 250}.{i % 250}") for i in range(40)]  # 16 B each
    r = encode_response(q, 0, many)
    assert r[2] & 0x02 and struct.unpack("!H", r[6:8])[0] == 0  # TC, no answers
    assert len(encode_response(q, 0, many, limit=65535)) > 512  # TCP: all of them
    qe = parse_query(WEB[:10] + b"\x00\x01" + WEB[12:] + OPT_RR)
    r = encode_response(qe, NXDOMAIN)
    m = parse_message(r)
    assert m.rcode == NXDOMAIN and [x.type for x in m.additional] == [OPT]
    assert not encode_response(qe, 0, many)[2] & 0x02  # 1232 bytes are enough


def test_parse_message_rejects_forward_pointers():
    bad = b"\x00\x01\x81\x80\x00\x00\x00\x01\x00\x00\x00\x00\xc0\x20" + b"\x00" * 30
    with pytest.raises(FormatError):
        parse_message(bad)


def test_encode_query_is_what_parse_query_reads():
    q = parse_query(encode_query("example.com", AAAA, 99, edns=wire.EDNS_SIZE))
    assert (q.id, q.qname, q.qtype, q.edns) == (99, "example.com", AAAA, 1232)
