"""DNS wire format (RFC 1035, EDNS0 of RFC 6891): just what svcnet's DNS server reads and writes.

Theory of operation
- `parse_query(data)` reads a query: header, exactly one question, an optional EDNS OPT record.
  It raises `FormatError` for anything malformed (the server answers FORMERR when it can still
  echo the header, and drops the datagram when it cannot), and keeps the question's bytes as
  sent (`question_wire`) so that a response echoes the client's spelling (0x20 case mixing).
- `Record` is one resource record with decoded data; `encode_response(...)` writes a response
  with name compression, and truncates (TC bit, no records) when it exceeds the client's size.
- `parse_message(data)` decodes any message (names decompressed), for upstream answers that
  the server merges into its own (an ExternalName's CNAME target).
- Names are `str`, absolute, without the trailing dot, compared case-insensitively by lowering.
  Only ASCII: a label with other bytes is kept as latin-1 text, so it round-trips unchanged.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass, field

# Types and classes by their RFC names.
A, NS, CNAME, SOA, PTR, MX, TXT, AAAA, SRV, OPT, AXFR, IXFR, ANY = (
    1, 2, 5, 6, 12, 15, 16, 28, 33, 41, 252, 251, 255)
IN = 1
# Response codes.
NOERROR, FORMERR, SERVFAIL, NXDOMAIN, NOTIMP, REFUSED = 0, 1, 2, 3, 4, 5
# Header flag bits (second and third bytes, as one 16-bit field).
QR, AA, TC, RD, RA = 0x8000, 0x0400, 0x0200, 0x0100, 0x0080
OPCODE_MASK = 0x7800

EDNS_SIZE = 1232  # the payload size svcnet advertises and honours at most (DNS flag day 2020)
MIN_UDP = 512
MAX_NAME = 255
MAX_LABEL = 63


class FormatError(ValueError):
    """The message is not a well-formed DNS message."""


@dataclass(frozen=True)
class Query:
    id: int
    flags: int
    qname: str            # as sent (case kept), no trailing dot; "" is the root
    qtype: int
    qclass: int
    question_wire: bytes  # the question section as sent
    edns: int | None      # the client's UDP payload size when it sent OPT, else None
    edns_version: int = 0

    @property
    def rd(self) -> bool:
        return bool(self.flags & RD)

    @property
    def opcode(self) -> int:
        return (self.flags & OPCODE_MASK) >> 11


@dataclass(frozen=True)
class Record:
    name: str
    type: int
    ttl: int
    data: object  # A/AAAA: address str; CNAME/PTR/NS: name; SRV: (prio, weight, port, target);
                  # SOA: (mname, rname, serial, refresh, retry, expire, minimum); TXT: (str, ...);
                  # anything else: raw rdata bytes
    klass: int = IN


@dataclass
class Message:
    id: int
    flags: int
    questions: list[tuple[str, int, int]] = field(default_factory=list)
    answers: list[Record] = field(default_factory=list)
    authority: list[Record] = field(default_factory=list)
    additional: list[Record] = field(default_factory=list)

    @property
    def rcode(self) -> int:
        return self.flags & 0xF


# ---- reading ---------------------------------------------------------------------------------

def read_name(data: bytes, pos: int) -> tuple[str, int]:
    """The name at `pos` (following compression pointers backwards only), and where it ends."""
    labels: list[str] = []
    end = -1
    jumps = 0
    total = 0
    while True:
        if pos >= len(data):
            raise FormatError("name runs past the end of the message")
        n = data[pos]
        if n == 0:
            pos += 1
            break
        if n & 0xC0 == 0xC0:
            if pos + 1 >= len(data):
                raise FormatError("truncated compression pointer")
            target = ((n & 0x3F) << 8) | data[pos + 1]
            if end < 0:
                end = pos + 2
            if target >= pos or jumps > 64:
                raise FormatError("bad compression pointer")
            jumps += 1
            pos = target
            continue
        if n & 0xC0:
            raise FormatError("unknown label type")
        label = data[pos + 1:pos + 1 + n]
        if len(label) != n:
            raise FormatError("label runs past the end of the message")
        total += n + 1
        if total > MAX_NAME:
            raise FormatError("name longer than 255 octets")
        if b"." in label:
            raise FormatError("a dot inside a label")
        labels.append(label.decode("latin-1"))
        pos += 1 + n
    return ".".join(labels), (end if end >= 0 else pos)


def parse_query(data: bytes) -> Query:
    """A query with one question. Raises FormatError (see the module doc)."""
    if len(data) < 12:
        raise FormatError("shorter than a DNS header")
    id_, flags, qd, an, ns, ar = struct.unpack_from("!6H", data)
    if flags & QR:
        raise FormatError("a response, not a query")
    if qd != 1:
        raise FormatError(f"{qd} questions")
    qname, qend = read_name(data, 12)
    if qend - 12 != (len(qname) + 2 if qname else 1):
        raise FormatError("a compressed question")  # its bytes are echoed and pointed at as sent
    if qend + 4 > len(data):
        raise FormatError("truncated question")
    qtype, qclass = struct.unpack_from("!HH", data, qend)
    pos = qend + 4
    edns = None
    version = 0
    try:
        for _ in range(an + ns):
            pos = _skip_record(data, pos)
        for _ in range(ar):
            name, npos = read_name(data, pos)
            if npos + 10 > len(data):
                raise FormatError("truncated record")
            rtype, rclass, ttl, rdlen = struct.unpack_from("!HHIH", data, npos)
            if rtype == OPT:
                if name or edns is not None:
                    raise FormatError("bad OPT record")
                edns = max(MIN_UDP, rclass)
                version = (ttl >> 16) & 0xFF
            pos = npos + 10 + rdlen
            if pos > len(data):
                raise FormatError("truncated record")
    except struct.error as e:
        raise FormatError(str(e)) from None
    return Query(id_, flags, qname, qtype, qclass, bytes(data[12:qend + 4]), edns, version)


def _skip_record(data: bytes, pos: int) -> int:
    _, pos = read_name(data, pos)
    if pos + 10 > len(data):
        raise FormatError("truncated record")
    rdlen = struct.unpack_from("!H", data, pos + 8)[0]
    if pos + 10 + rdlen > len(data):
        raise FormatError("truncated record")
    return pos + 10 + rdlen


def _decode_rdata(data: bytes, pos: int, rtype: int, rdlen: int) -> object:
    raw = data[pos:pos + rdlen]
    if rtype == A and rdlen == 4:
        return str(ipaddress.IPv4Address(raw))
    if rtype == AAAA and rdlen == 16:
        return str(ipaddress.IPv6Address(raw))
    if rtype in (CNAME, PTR, NS):
        return read_name(data, pos)[0]
    if rtype == SRV and rdlen >= 7:
        prio, weight, port = struct.unpack_from("!HHH", data, pos)
        return prio, weight, port, read_name(data, pos + 6)[0]
    if rtype == SOA:
        mname, p = read_name(data, pos)
        rname, p = read_name(data, p)
        return (mname, rname, *struct.unpack_from("!5I", data, p))
    return bytes(raw)


def parse_message(data: bytes) -> Message:
    """Any DNS message, every section decoded. Raises FormatError."""
    if len(data) < 12:
        raise FormatError("shorter than a DNS header")
    try:
        id_, flags, qd, an, ns, ar = struct.unpack_from("!6H", data)
        msg = Message(id_, flags)
        pos = 12
        for _ in range(qd):
            name, pos = read_name(data, pos)
            qtype, qclass = struct.unpack_from("!HH", data, pos)
            msg.questions.append((name, qtype, qclass))
            pos += 4
        for section, count in ((msg.answers, an), (msg.authority, ns), (msg.additional, ar)):
            for _ in range(count):
                name, pos = read_name(data, pos)
                rtype, rclass, ttl, rdlen = struct.unpack_from("!HHIH", data, pos)
                pos += 10
                if pos + rdlen > len(data):
                    raise FormatError("truncated record")
                section.append(Record(name, rtype, ttl, _decode_rdata(data, pos, rtype, rdlen), rclass))
                pos += rdlen
    except (struct.error, ValueError) as e:
        raise FormatError(str(e)) from None
    return msg


# ---- writing ---------------------------------------------------------------------------------

class _Writer:
    """Appends names and records, compressing names against those already written."""

    def __init__(self, start: bytes, names: dict[str, int]):
        self.buf = bytearray(start)
        self.names = names  # lowered name -> offset

    def name(self, name: str) -> None:
        labels = name.split(".") if name else []
        for i in range(len(labels)):
            suffix = ".".join(labels[i:]).lower()
            off = self.names.get(suffix)
            if off is not None:
                self.buf += struct.pack("!H", 0xC000 | off)
                return
            if len(self.buf) < 0x3FFF:
                self.names[suffix] = len(self.buf)
            raw = labels[i].encode("latin-1")
            if not 0 < len(raw) <= MAX_LABEL:
                raise ValueError(f"bad label in {name!r}")
            self.buf.append(len(raw))
            self.buf += raw
        self.buf.append(0)

    def record(self, r: Record) -> None:
        self.name(r.name)
        self.buf += struct.pack("!HHI", r.type, r.klass, r.ttl)
        at = len(self.buf)
        self.buf += b"\0\0"
        d = r.data
        if r.type == A:
            self.buf += ipaddress.IPv4Address(d).packed
        elif r.type == AAAA:
            self.buf += ipaddress.IPv6Address(d).packed
        elif r.type in (CNAME, PTR, NS):
            self.name(d)
        elif r.type == SRV:
            self.buf += struct.pack("!HHH", *d[:3])
            self.name(d[3])  # RFC 2782 forbids compressing it; receivers accept it, CoreDNS does
        elif r.type == SOA:
            self.name(d[0])
            self.name(d[1])
            self.buf += struct.pack("!5I", *d[2:])
        elif r.type == TXT:
            for s in d:
                raw = s.encode()[:255]
                self.buf.append(len(raw))
                self.buf += raw
        else:
            self.buf += d
        struct.pack_into("!H", self.buf, at, len(self.buf) - at - 2)


def _question_suffixes(qname: str) -> dict[str, int]:
    """Offsets of the question name and each of its suffixes, for compression against it."""
    out, off = {}, 12
    labels = qname.lower().split(".") if qname else []
    for i, label in enumerate(labels):
        out[".".join(labels[i:])] = off
        off += 1 + len(label.encode("latin-1"))
    return out


def opt_record(size: int = EDNS_SIZE, rcode_high: int = 0) -> Record:
    return Record("", OPT, rcode_high << 24, b"", klass=size)


def encode_response(query: Query, rcode: int, answers: list[Record] = (), authority: list[Record] = (),
                    additional: list[Record] = (), aa: bool = True, ra: bool = True,
                    limit: int | None = None) -> bytes:
    """A response to `query`, its question echoed as sent. With EDNS in the query the response
    carries OPT. Larger than `limit` (default: the client's UDP size): TC set, no records."""
    flags = QR | (query.flags & (OPCODE_MASK | RD)) | (AA if aa else 0) | (RA if ra else 0) | (rcode & 0xF)
    extra = list(additional)
    if query.edns is not None:
        extra.append(opt_record(EDNS_SIZE, rcode >> 4))
    if limit is None:
        limit = min(query.edns, EDNS_SIZE) if query.edns is not None else MIN_UDP
    head = struct.pack("!6H", query.id, flags, 1, len(answers), len(authority), len(extra))
    w = _Writer(head + query.question_wire, _question_suffixes(query.qname))
    for r in (*answers, *authority, *extra):
        w.record(r)
    if len(w.buf) <= limit:
        return bytes(w.buf)
    opt = [opt_record(EDNS_SIZE)] if query.edns is not None else []
    head = struct.pack("!6H", query.id, flags | TC, 1, 0, 0, len(opt))
    w = _Writer(head + query.question_wire, {})
    for r in opt:
        w.record(r)
    return bytes(w.buf)


def header_only(data: bytes, rcode: int) -> bytes | None:
    """An answer to a query that cannot be parsed: its header with QR and `rcode`, no sections;
    None when not even the header is there or it is a response (never answer a response)."""
    if len(data) < 12:
        return None
    id_, flags = struct.unpack_from("!HH", data)
    if flags & QR:
        return None
    return struct.pack("!6H", id_, QR | (flags & (OPCODE_MASK | RD)) | (rcode & 0xF), 0, 0, 0, 0)


def encode_query(qname: str, qtype: int, id_: int, rd: bool = True, edns: int | None = None) -> bytes:
    """A query message (for forwarding an ExternalName target, and for probes)."""
    head = struct.pack("!6H", id_, RD if rd else 0, 1, 0, 0, 1 if edns else 0)
    w = _Writer(head, {})
    w.name(qname)
    w.buf += struct.pack("!HH", qtype, IN)
    if edns:
        w.record(opt_record(edns))
    return bytes(w.buf)
