"""Kubernetes protobuf request bodies (`application/vnd.kubernetes.protobuf`) to JSON objects.

Theory of operation
-------------------
kubectl's typed clients (`kubectl create namespace|service|deployment|configmap ...`) send their
bodies as Kubernetes protobuf. The server speaks JSON, so `decode()` turns such a body into the
dict that kube-apiserver's JSON encoding of the decoded Go object would give, and the rest of
the request path never sees protobuf.

Wire format (k8s.io/apimachinery runtime/serializer/protobuf): the 4-byte magic `k8s\\x00`,
then a `runtime.Unknown` message {typeMeta=1 {apiVersion=1, kind=2}, raw=2, contentEncoding=3,
contentType=4} whose `raw` is the object's own message. Objects are gogo-protobuf proto2
messages, described field by field in data/proto-fields.json (scripts/gen_proto_fields.py
documents how that table was built from the Go types): number -> [jsonName, type, shape], where
type is string, bytes, bool, int32, int64, one of the wrapper types below, or another message,
and shape is singular, "ptr" (a Go pointer), "list", "map" (repeated {key=1, value=2} entries)
or "inline" (a Go struct embedded with `json:",inline"`: a nested message on the wire whose
fields land in the parent's JSON object).

Wrapper types and their JSON forms: metav1.Time {seconds=1, nanos=2} -> "2006-01-02T15:04:05Z"
(nanos ignored, as metav1.Time does); MicroTime -> the same with six fractional digits;
resource.Quantity {string=1} -> the string; intstr.IntOrString {type=1, intVal=2, strVal=3} ->
int (type 0) or string (type 1); metav1.FieldsV1 {Raw=1} -> the JSON value in Raw.

Zero values: gogo writes every non-pointer scalar and struct, zero or not, and pointers only
when set; Go's JSON then omits zero non-pointer fields (`omitempty`) but keeps a set pointer's
zero. So a decoded zero is dropped unless its field is a pointer, and an empty non-pointer
message is dropped too, while `replicas: 0`, `allocateLoadBalancerNodePorts: false` and
`emptyDir: {}` survive. Empty lists and maps never reach the wire. As in gogo, a singular field
seen twice keeps the last scalar or merges the messages, and unknown field numbers are skipped.

Any malformed input (bad magic, truncation, wrong wire types, an unregistered kind) raises a 400
BadRequest APIError with the error text Go's decoder would give; nothing else escapes.

`encode()` is the inverse, writing exactly what gogo writes (non-pointer zero fields included,
fields in number order, map keys sorted), so tests can compare it with bytes Go produced.
"""

from __future__ import annotations

import base64
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson

from svcnet.api import errors

MAGIC = b"k8s\x00"

# Field types (the second element of a table entry) and shapes (the third).
STRING, BYTES, BOOL, INT32, INT64, TIME, MICROTIME, QUANTITY, INTORSTRING, FIELDSV1, MESSAGE, \
    RAW = range(12)
SINGLE, PTR, LIST, MAP, INLINE = range(5)
_TYPES = {"string": STRING, "bytes": BYTES, "bool": BOOL, "int32": INT32, "int64": INT64,
          "Time": TIME, "MicroTime": MICROTIME, "Quantity": QUANTITY,
          "IntOrString": INTORSTRING, "FieldsV1": FIELDSV1}
_SHAPES = {"ptr": PTR, "list": LIST, "map": MAP, "inline": INLINE}
_VARINT_TYPES = (BOOL, INT32, INT64)
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_ZERO_TIME_SECONDS = -62135596800  # Go's zero time.Time, 0001-01-01T00:00:00Z

# A compiled field: (json name, type, shape, message fields for MESSAGE/INLINE else None).
Field = tuple[str, int, int, "dict[int, Field] | None"]


def _compile(table: dict) -> dict[str, dict[str, dict[int, Field]]]:
    """The table's kinds (apiVersion -> kind -> fields), field tables linked to each other."""
    messages: dict[str, dict[int, Field]] = {name: {} for name in table["messages"]}
    for name, fields in table["messages"].items():
        for number, (json_name, type_name, *shape) in fields.items():
            code = _TYPES.get(type_name, MESSAGE)
            messages[name][int(number)] = (json_name, code, _SHAPES[shape[0]] if shape else SINGLE,
                                           messages[type_name] if code == MESSAGE else None)
    return {version: {kind: messages[name] for kind, name in by_kind.items()}
            for version, by_kind in table["kinds"].items()}


def _fields_of(api_version: str, kind: str) -> dict[int, Field] | None:
    fields = _KINDS.get(api_version, {}).get(kind)
    return _KINDS["*"].get(kind) if fields is None else fields


_KINDS = _compile(json.loads(
    (Path(__file__).parent / "data" / "proto-fields.json").read_text(encoding="utf-8")))

_TYPEMETA: dict[int, Field] = {1: ("apiVersion", STRING, SINGLE, None),
                               2: ("kind", STRING, SINGLE, None)}
_UNKNOWN: dict[int, Field] = {1: ("typeMeta", MESSAGE, SINGLE, _TYPEMETA),
                              2: ("raw", RAW, SINGLE, None),
                              3: ("contentEncoding", STRING, SINGLE, None),
                              4: ("contentType", STRING, SINGLE, None)}
_TIMESTAMP: dict[int, Field] = {1: ("seconds", INT64, SINGLE, None),
                                2: ("nanos", INT32, SINGLE, None)}
_QUANTITY: dict[int, Field] = {1: ("string", STRING, SINGLE, None)}
_INTORSTRING: dict[int, Field] = {1: ("type", INT64, SINGLE, None),
                                  2: ("intVal", INT32, SINGLE, None),
                                  3: ("strVal", STRING, SINGLE, None)}
_FIELDSV1: dict[int, Field] = {1: ("Raw", RAW, SINGLE, None)}


class _Malformed(Exception):
    """A decoding failure; its text is what Go's decoder says."""


def is_protobuf(content_type: str) -> bool:
    """Whether a Content-Type names the Kubernetes protobuf encoding."""
    return (content_type or "").split(";", 1)[0].strip().lower() == \
        "application/vnd.kubernetes.protobuf"


def decode(raw: bytes) -> dict:
    """A protobuf request body as its JSON object, apiVersion and kind first."""
    if not raw:
        raise errors.bad_request("empty data")
    if raw[:4] != MAGIC:
        raise errors.bad_request("provided data does not appear to be a protobuf message, "
                                 "expected prefix [107 56 115 0]")
    if len(raw) == 4:
        raise errors.bad_request("empty body")
    try:
        unknown = _message(raw, 4, len(raw), _UNKNOWN, {})
    except _Malformed as e:
        raise errors.bad_request(str(e)) from None
    type_meta = unknown.get("typeMeta", {})
    api_version, kind = type_meta.get("apiVersion", ""), type_meta.get("kind", "")
    go_meta = f'runtime.TypeMeta{{APIVersion:"{api_version}", Kind:"{kind}"}}'
    if not kind:
        raise errors.bad_request(f"Object 'Kind' is missing in '{go_meta}'")
    if not api_version:
        raise errors.bad_request(f"Object 'apiVersion' is missing in '{go_meta}'")
    fields = _fields_of(api_version, kind)
    if fields is None:
        raise errors.bad_request(f'no kind "{kind}" is registered for version "{api_version}"')
    body = unknown.get("raw", b"")
    obj = {"apiVersion": api_version, "kind": kind}
    try:
        return _message(body, 0, len(body), fields, obj)
    except (_Malformed, ValueError, OverflowError) as e:
        version = api_version.rsplit("/", 1)[-1]
        raise errors.bad_request(
            f'{kind} in version "{version}" cannot be handled as a {kind}: {e}') from None


# --- decoding ---------------------------------------------------------------------------------

def _varint(buf: bytes, pos: int, end: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if shift >= 64:
            raise _Malformed("proto: integer overflow")
        if pos >= end:
            raise _Malformed("unexpected EOF")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result & 0xFFFFFFFFFFFFFFFF, pos
        shift += 7


def _skip(buf: bytes, pos: int, end: int, wire: int) -> int:
    """The position after a field of an unknown number (groups included)."""
    depth = 0
    while True:
        if wire == 0:
            _, pos = _varint(buf, pos, end)
        elif wire == 1:
            pos += 8
        elif wire == 2:
            length, pos = _varint(buf, pos, end)
            pos += length
        elif wire == 3:
            depth += 1
        elif wire == 4:
            depth -= 1
            if depth < 0:
                raise _Malformed("proto: unexpected end of group")
        elif wire == 5:
            pos += 4
        else:
            raise _Malformed(f"proto: illegal wireType {wire}")
        if pos > end:
            raise _Malformed("unexpected EOF")
        if depth == 0:
            return pos
        tag, pos = _varint(buf, pos, end)
        wire = tag & 7


def _message(buf: bytes, pos: int, end: int, fields: dict[int, Field], out: dict) -> dict:
    """Decode buf[pos:end] into `out` (which it returns), per the compiled field table."""
    while pos < end:
        tag, pos = _varint(buf, pos, end)
        number, wire = tag >> 3, tag & 7
        if number == 0:
            raise _Malformed(f"proto: illegal tag 0 (wire type {wire})")
        if wire == 4:
            raise _Malformed("proto: wiretype end group for non-group")
        field = fields.get(number)
        if field is None:
            pos = _skip(buf, pos, end, wire)
            continue
        name, kind, shape, sub = field
        if wire == 0 and kind in _VARINT_TYPES and shape in (SINGLE, PTR, LIST):
            raw, pos = _varint(buf, pos, end)
            value: Any = _scalar(kind, raw)
        elif wire == 2:
            length, pos = _varint(buf, pos, end)
            start, pos = pos, pos + length
            if pos > end:
                raise _Malformed("unexpected EOF")
            if shape == INLINE:
                _message(buf, start, pos, sub, out)
                continue
            if shape == MAP:
                key, value = _map_entry(buf, start, pos, kind, sub)
                out.setdefault(name, {})[key] = value
                continue
            if kind in _VARINT_TYPES and shape == LIST:  # packed repeated scalars
                items = out.setdefault(name, [])
                while start < pos:
                    raw, start = _varint(buf, start, pos)
                    items.append(_scalar(kind, raw))
                continue
            if kind in _VARINT_TYPES:
                raise _Malformed(f"proto: wrong wireType = {wire} for field {name}")
            if kind == MESSAGE and shape != LIST:
                merged = _message(buf, start, pos, sub, out.get(name) or {})
                if merged or shape == PTR:
                    out[name] = merged
                continue
            value = _bytes_value(buf, start, pos, kind, sub)
        else:
            raise _Malformed(f"proto: wrong wireType = {wire} for field {name}")
        if shape == LIST:
            out.setdefault(name, []).append(value)
        elif shape == PTR or not _is_zero(value):
            out[name] = value
        else:
            out.pop(name, None)
    return out


def _scalar(kind: int, value: int) -> bool | int:
    if kind == BOOL:
        return value != 0
    if kind == INT32:
        value &= 0xFFFFFFFF
        return value - (1 << 32) if value >= 1 << 31 else value
    return value - (1 << 64) if value >= 1 << 63 else value


def _is_zero(value: Any) -> bool:
    return value is None or value == "" or value == 0


def _bytes_value(buf: bytes, pos: int, stop: int, kind: int, sub: dict | None) -> Any:
    """The JSON value of a length-delimited field (None for a zero time or quantity)."""
    if kind == STRING:
        return buf[pos:stop].decode("utf-8", "replace")
    if kind == BYTES:
        return base64.b64encode(buf[pos:stop]).decode("ascii")
    if kind == RAW:
        return bytes(buf[pos:stop])
    if kind == MESSAGE:
        return _message(buf, pos, stop, sub, {})
    if kind == QUANTITY:
        return _message(buf, pos, stop, _QUANTITY, {}).get("string")
    if kind == INTORSTRING:
        v = _message(buf, pos, stop, _INTORSTRING, {})
        if v.get("type", 0) == 0:
            return v.get("intVal", 0)
        if v["type"] == 1:
            return v.get("strVal", "")
        raise _Malformed("impossible IntOrString.Type")
    if kind == FIELDSV1:
        data = _message(buf, pos, stop, _FIELDSV1, {}).get("Raw")
        return None if data is None else orjson.loads(data)
    if pos == stop:  # gogo writes Go's zero time as an empty message
        return None
    return _time(_message(buf, pos, stop, _TIMESTAMP, {}), kind == MICROTIME)


def _time(ts: dict, micro: bool) -> str | None:
    """metav1.Time / MicroTime JSON text (Time drops the nanoseconds); None for the zero time."""
    seconds, nanos = ts.get("seconds", 0), ts.get("nanos", 0) if micro else 0
    seconds, nanos = seconds + nanos // 1_000_000_000, nanos % 1_000_000_000
    if (seconds, nanos) == (_ZERO_TIME_SECONDS, 0):
        return None
    t = _EPOCH + timedelta(seconds=seconds)
    text = (f"{t.year:04d}-{t.month:02d}-{t.day:02d}T{t.hour:02d}:{t.minute:02d}:"
            f"{t.second:02d}")
    return f"{text}.{nanos // 1000:06d}Z" if micro else text + "Z"


def _map_entry(buf: bytes, pos: int, stop: int, kind: int, sub: dict | None) -> tuple[str, Any]:
    entry = _message(buf, pos, stop, {1: ("key", STRING, PTR, None), 2: ("value", kind, PTR, sub)},
                     {})
    if "value" in entry:
        return entry.get("key", ""), entry["value"]
    return entry.get("key", ""), _ZERO_VALUES.get(kind, {})


# A map entry without a value holds the value type's zero (JSON form).
_ZERO_VALUES: dict[int, Any] = {STRING: "", BYTES: "", BOOL: False, INT32: 0, INT64: 0,
                                QUANTITY: "0", INTORSTRING: 0, TIME: None, MICROTIME: None}


# --- encoding ---------------------------------------------------------------------------------

def encode(obj: dict) -> bytes:
    """A JSON object (with apiVersion and kind) as the protobuf body kubectl would send."""
    api_version, kind = obj["apiVersion"], obj["kind"]
    fields = _fields_of(api_version, kind)
    type_meta = _len_field(1, api_version.encode()) + _len_field(2, kind.encode())
    return (MAGIC + _len_field(1, type_meta) + _len_field(2, _encode_message(obj, fields))
            + _len_field(3, b"") + _len_field(4, b""))


def _tag(number: int, wire: int) -> bytes:
    return _encode_varint(number << 3 | wire)


def _encode_varint(value: int) -> bytes:
    value &= 0xFFFFFFFFFFFFFFFF
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _len_field(number: int, data: bytes) -> bytes:
    return _tag(number, 2) + _encode_varint(len(data)) + data


def _encode_message(obj: dict, fields: dict[int, Field]) -> bytes:
    out = bytearray()
    for number in sorted(fields):
        name, kind, shape, sub = fields[number]
        if shape == INLINE:
            out += _len_field(number, _encode_message(obj, sub))
        elif shape == LIST:
            for item in obj.get(name, ()):
                out += _encode_value(number, kind, sub, item)
        elif shape == MAP:
            for key in sorted(obj.get(name, {})):
                entry = _len_field(1, key.encode()) + _encode_value(2, kind, sub,
                                                                    obj[name][key])
                out += _len_field(number, entry)
        elif name in obj and obj[name] is not None:
            out += _encode_value(number, kind, sub, obj[name])
        elif shape == SINGLE:  # gogo writes non-pointer fields even when zero
            out += _encode_value(number, kind, sub, _ZERO_VALUES.get(kind, {}))
    return bytes(out)


def _encode_value(number: int, kind: int, sub: dict | None, value: Any) -> bytes:
    if kind in _VARINT_TYPES:
        return _tag(number, 0) + _encode_varint(int(value))
    if kind == STRING:
        return _len_field(number, value.encode())
    if kind == BYTES:
        return _len_field(number, base64.b64decode(value))
    if kind == MESSAGE:
        return _len_field(number, _encode_message(value, sub))
    if kind == QUANTITY:
        return _len_field(number, _len_field(1, value.encode()))
    if kind == INTORSTRING:
        is_str = isinstance(value, str)
        return _len_field(number, _tag(1, 0) + _encode_varint(int(is_str))
                          + _tag(2, 0) + _encode_varint(0 if is_str else value)
                          + _len_field(3, value.encode() if is_str else b""))
    if kind == FIELDSV1:
        return _len_field(number, _len_field(1, orjson.dumps(value)))
    return _len_field(number, _encode_time(value, kind == MICROTIME))


def _encode_time(text: str | None, micro: bool) -> bytes:
    if text is None:
        return b""
    t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    delta = t - _EPOCH
    return (_tag(1, 0) + _encode_varint(delta.days * 86400 + delta.seconds)
            + _tag(2, 0) + _encode_varint(t.microsecond * 1000 if micro else 0))
