"""PATCH bodies, applied the way kube-apiserver applies them.

Theory of operation
-------------------
`apply_patch` picks the flavour from the Content-Type (parameters after ";" dropped, exactly as
handlers/patch.go does), parses the body and calls one of three pure functions. Each takes the
stored object as a dict and returns a new dict; the input is never modified (it is copied once,
then the copy is edited in place).

* `json_patch` - RFC 6902 with the semantics of gopkg.in/evanphx/json-patch.v4, the library
  kube-apiserver uses: negative array indices count from the end, "replace" of a missing object
  member adds it, a missing "value" means null. Two deliberate exceptions where v4 silently does
  something useless: a path must start with "/" (v4 ignores whatever precedes the first "/"),
  and "copy" from a missing member fails (v4 would copy a null).
* `merge_patch` - RFC 7386 as evanphx merges it: null deletes, objects merge, anything else
  replaces; nulls are pruned from values that land where there was no object before.
* `strategic_merge_patch` - k8s.io/apimachinery strategicpatch.StrategicMergeMapPatch, server
  side (parallel lists merged, unmatched nulls ignored). How a list merges comes from
  `patchmeta.list_meta` (the `patchStrategy`/`patchMergeKey` struct tags). Maps always merge key
  by key: the atomic map/struct markers and the retainKeys *strategy* in patchmeta are read by
  server-side apply and by clients building patches, never by the server applying an SMP; the
  server honours a `$retainKeys` directive wherever the patch carries one. List order follows
  Kubernetes: `$setElementOrder` first, then the order of the patch, then the live order.
  Values that have no counterpart in the live object are taken from the patch as typed decoding
  would leave them: nulls and directives dropped, list elements carrying `$patch` dropped.
  `$deleteFromPrimitiveList` only ever deletes (Kubernetes would add the items if the live list
  were missing).

Errors carry the status kube-apiserver answers with: an undecodable body is 400 with Go's
encoding/json text; a JSON patch that does not apply is 422 "the server rejected our request
due to an error in our request" (NewGenericServerResponse drops the detail; the reason is kept
as the exception's __cause__); the five SMP format errors that interpretStrategicMergePatchError
knows are 400, lists of lists are 422, and every other SMP error is a plain Go error, which the
apiserver answers with 500 and no reason, message as is - kubectl prints
"Error from server: map: map[...] does not contain declared merge key: name".
"""

from __future__ import annotations

import json
import math
import re
from decimal import Decimal
from functools import wraps
from typing import Any

from svcnet.api import errors
from svcnet.api.errors import APIError
from svcnet.api.patchmeta import list_meta

JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"
SUPPORTED_PATCH_TYPES = [JSON_PATCH, MERGE_PATCH, STRATEGIC_MERGE_PATCH, APPLY_PATCH]
MAX_JSON_PATCH_OPERATIONS = 10000

_PATCH = "$patch"
_RETAIN_KEYS = "$retainKeys"
_ORDER = "$setElementOrder"
_DELETE_FROM = "$deleteFromPrimitiveList"

_GO_TYPE = {dict: "map[string]interface {}", list: "[]interface {}", str: "string",
            bool: "bool", int: "int64", float: "float64"}
_JSON_KIND = {dict: "object", list: "array", str: "string", bool: "bool", int: "number",
              float: "number"}


# ---- errors ---------------------------------------------------------------------------------

class _NotApplicable(Exception):
    """A JSON patch operation that does not apply (evanphx's reason, kept as __cause__)."""


def _unprocessable() -> APIError:
    # NewGenericServerResponse(422, ...) without isUnexpectedResponse: fixed text, no causes.
    return APIError(422, "Invalid",
                    "the server rejected our request due to an error in our request")


def _go_error(message: str) -> APIError:
    """A plain Go error reaching the apiserver's error writer: 500, no reason."""
    return APIError(500, "", message)


def _bad_arg_type(expected: type, actual: Any) -> APIError:
    return _go_error(f"expected a {_GO_TYPE[expected]}, but received a {_go_type(actual)}")


def _no_merge_key(item: dict, key: str) -> APIError:
    return _go_error(f"map: {_go_v(item)} does not contain declared merge key: {key}")


def _not_an_object(value: list) -> APIError:
    # What decoding a patched array into the kind yields (jsonPatcher.applyPatchToCurrentObject).
    detail = ("couldn't get version/kind; json parse error: json: cannot unmarshal array into "
              'Go value of type struct { APIVersion string "json:\\"apiVersion,omitempty\\""; '
              'Kind string "json:\\"kind,omitempty\\"" }')
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return errors.invalid("", "", "", [errors.invalid_value("patch", text, detail)])


def _depth_guarded(fn):
    """Objects nested deeper than Python's stack are refused, as Go refuses >10000 levels."""
    @wraps(fn)
    def guarded(*args):
        try:
            return fn(*args)
        except RecursionError:
            raise errors.bad_request("exceeded max depth") from None
    return guarded


# ---- Go formatting (the messages quote values with fmt's %v and %s) ---------------------------

def _go_type(v: Any) -> str:
    return "%!s(<nil>)" if v is None else _GO_TYPE[type(v)]


def _go_float(f: float) -> str:
    """strconv.FormatFloat(f, 'g', -1, 64), which is what %v prints."""
    if f == 0:
        return "-0" if str(f).startswith("-") else "0"
    sign, digits, exponent = Decimal(repr(f)).normalize().as_tuple()
    ds = "".join(map(str, digits))
    point = len(ds) + exponent
    exp = point - 1
    out = ("-" if sign else "")
    if exp < -4 or exp >= 6:
        mantissa = ds[0] + ("." + ds[1:] if len(ds) > 1 else "")
        return out + f"{mantissa}e{'-' if exp < 0 else '+'}{abs(exp):02d}"
    if point <= 0:
        return out + "0." + "0" * -point + ds
    if point >= len(ds):
        return out + ds + "0" * (point - len(ds))
    return out + ds[:point] + "." + ds[point:]


def _go_v(v: Any) -> str:
    """fmt's %v of a decoded JSON value."""
    if v is None:
        return "<nil>"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return _go_float(v)
    if isinstance(v, list):
        return "[" + " ".join(_go_v(x) for x in v) + "]"
    if isinstance(v, dict):
        return "map[" + " ".join(f"{k}:{_go_v(v[k])}" for k in sorted(v)) + "]"
    return str(v)


def _go_s(v: Any) -> str:
    """fmt's %s of a decoded JSON value (non-strings print as %!s(type=value))."""
    if isinstance(v, str):
        return v
    if isinstance(v, list):
        return "[" + " ".join(_go_s(x) for x in v) + "]"
    if isinstance(v, dict):
        return "map[" + " ".join(f"{k}:{_go_s(v[k])}" for k in sorted(v)) + "]"
    return "%!s(<nil>)" if v is None else f"%!s({_GO_TYPE[type(v)]}={_go_v(v)})"


# ---- body decoding ----------------------------------------------------------------------------

def _quote_char(ch: str) -> str:
    """encoding/json's quoteChar of the first byte of `ch`."""
    c = chr(ch.encode("utf-8")[0])
    named = {"'": "\\'", "\\": "\\\\", "\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n",
             "\r": "\\r", "\t": "\\t", "\v": "\\v"}.get(c)
    if named:
        return f"'{named}'"
    if c.isprintable():
        return f"'{c}'"
    return f"'\\x{ord(c):02x}'" if ord(c) < 0x80 else f"'\\u{ord(c):04x}'"


def _innermost_container(text: str, pos: int) -> str:
    """'{' or '[' open at `pos` (outside strings), to name Go's scanner state."""
    stack: list[str] = []
    in_string = escaped = False
    for ch in text[:pos]:
        if in_string:
            in_string = escaped or ch != '"'
            escaped = not escaped and ch == "\\"
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            stack.append(ch)
        elif ch in "]}" and stack:
            stack.pop()
    return stack[-1] if stack else ""


def _go_syntax_error(text: str, exc: json.JSONDecodeError) -> str:
    """The text encoding/json gives for the error Python's decoder found."""
    msg, pos = exc.msg, exc.pos
    if pos >= len(text) or msg.startswith("Unterminated string"):
        return "unexpected end of JSON input"
    if msg.startswith("Invalid \\"):
        escape = text[pos + 1:pos + 2] or " "
        return f"invalid character {_quote_char(escape)} in string escape code"
    literal = {"t": "true", "f": "false", "n": "null"}.get(text[pos])
    if msg == "Expecting value" and literal:
        got = text[pos:pos + len(literal)]
        i = next((i for i, (a, b) in enumerate(zip(got, literal)) if a != b), len(got))
        if i == len(got):
            return "unexpected end of JSON input"
        return (f"invalid character {_quote_char(got[i])} in literal {literal} "
                f"(expecting {_quote_char(literal[i])})")
    if msg == "Expecting value" and text[pos] == "-":
        if pos + 1 >= len(text):
            return "unexpected end of JSON input"
        return f"invalid character {_quote_char(text[pos + 1])} in numeric literal"
    if msg == "Expecting ',' delimiter":
        context = ("after object key:value pair" if _innermost_container(text, pos) == "{"
                   else "after array element")
    else:
        context = {
            "Expecting property name enclosed in double quotes":
                "looking for beginning of object key string",
            "Expecting ':' delimiter": "after object key",
            "Extra data": "after top-level value",
            "Invalid control character at": "in string literal",
        }.get(msg, "looking for beginning of value")
    return f"invalid character {_quote_char(text[pos])} {context}"


def _reject_constant(name: str) -> Any:
    raise ValueError({"NaN": "invalid character 'N' looking for beginning of value",
                      "Infinity": "invalid character 'I' looking for beginning of value",
                      "-Infinity": "invalid character 'I' in numeric literal"}[name])


def _finite(s: str) -> float:
    f = float(s)
    if math.isinf(f):
        raise ValueError(f"json: cannot unmarshal number {s} into Go value of type float64")
    return f


def _integer(s: str) -> int | float:
    # Python refuses int() of more than 4300 digits; Go would read such a number as a float.
    return int(s) if len(s) < 4300 else _finite(s)


def _decode(body: bytes) -> Any:
    """Parse a JSON body; failures raise 400 with encoding/json's text."""
    text = body.decode("utf-8", errors="replace")
    try:
        return json.loads(text, parse_constant=_reject_constant, parse_float=_finite,
                          parse_int=_integer)
    except json.JSONDecodeError as exc:
        raise errors.bad_request(_go_syntax_error(text, exc)) from None
    except ValueError as exc:
        raise errors.bad_request(str(exc)) from None
    except RecursionError:
        raise errors.bad_request("exceeded max depth") from None


# ---- shared helpers ---------------------------------------------------------------------------

def _copy(v: Any) -> Any:
    """Deep copy of a JSON value (several times faster than copy.deepcopy)."""
    if isinstance(v, dict):
        return {k: _copy(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_copy(x) for x in v]
    return v


def _same(a: Any, b: Any) -> bool:
    """Go's interface ==: equal values of the same dynamic type (1 != 1.0, true != 1)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


# ---- RFC 6902 JSON patch ----------------------------------------------------------------------

_INDEX = re.compile(r"[+-]?[0-9]+")
_ESCAPE = re.compile(r"~[01]")


def _unescape(token: str) -> str:
    return _ESCAPE.sub(lambda m: "/" if m.group() == "~1" else "~", token)


def _index(token: str, size: int) -> int:
    """An existing element's index (strconv.Atoi; negative counts from the end)."""
    if not _INDEX.fullmatch(token):
        raise _NotApplicable(f"value was not a proper array index: '{token}'")
    idx = int(token)
    if idx < 0 and idx >= -size:
        idx += size
    if not 0 <= idx < size:
        raise _NotApplicable(f"Unable to access invalid index: {token}")
    return idx


def _parent(root: Any, path: str) -> tuple[Any, str]:
    """The container holding the last token of `path`, and that token unescaped."""
    tokens = path.split("/")
    if len(tokens) < 2 or tokens[0]:
        raise _NotApplicable(f'doc is missing path: "{path}"')
    node = root
    for token in tokens[1:-1]:
        key = _unescape(token)
        node = node.get(key) if isinstance(node, dict) else node[_index(key, len(node))]
        if not isinstance(node, (dict, list)):
            raise _NotApplicable(f'doc is missing path: "{path}"')
    return node, _unescape(tokens[-1])


def _get(node: Any, key: str) -> Any:
    """A member (None when missing or null) or an existing element."""
    return node.get(key) if isinstance(node, dict) else node[_index(key, len(node))]


def _insert(node: Any, key: str, value: Any) -> None:
    if isinstance(node, dict):
        node[key] = value
    elif key == "-":
        node.append(value)
    else:
        if not _INDEX.fullmatch(key):
            raise _NotApplicable(f"value was not a proper array index: '{key}'")
        idx = int(key)
        if idx < 0 and idx >= -(len(node) + 1):
            idx += len(node) + 1
        if not 0 <= idx <= len(node):
            raise _NotApplicable(f"Unable to access invalid index: {key}")
        node.insert(idx, value)


def _take(node: Any, key: str) -> Any:
    if isinstance(node, dict):
        if key not in node:
            raise _NotApplicable(f"Unable to remove nonexistent key: {key}")
        return node.pop(key)
    return node.pop(_index(key, len(node)))


def _text_field(op: dict, name: str) -> str:
    value = op.get(name)
    if not isinstance(value, str):
        raise _NotApplicable(f"operation missing {name} field")
    return value


def _op_add(root: Any, op: dict) -> Any:
    node, key = _parent(root, _text_field(op, "path"))
    _insert(node, key, _copy(op.get("value")))
    return root


def _op_remove(root: Any, op: dict) -> Any:
    _take(*_parent(root, _text_field(op, "path")))
    return root


def _op_replace(root: Any, op: dict) -> Any:
    path, value = _text_field(op, "path"), _copy(op.get("value"))
    if path == "":
        if not isinstance(value, (dict, list)):
            raise _NotApplicable("replace operation value must be object or array")
        return value
    node, key = _parent(root, path)
    if isinstance(node, dict):
        node[key] = value  # evanphx v4 does not require the member to exist
    else:
        node[_index(key, len(node))] = value
    return root


def _op_move(root: Any, op: dict) -> Any:
    value = _take(*_parent(root, _text_field(op, "from")))
    _insert(*_parent(root, _text_field(op, "path")), value)
    return root


def _op_copy(root: Any, op: dict) -> Any:
    node, key = _parent(root, _text_field(op, "from"))
    if isinstance(node, dict) and key not in node:
        raise _NotApplicable(f"copy operation does not apply: doc is missing from path: {key}")
    value = _copy(_get(node, key))
    _insert(*_parent(root, _text_field(op, "path")), value)
    return root


def _op_test(root: Any, op: dict) -> Any:
    path, expected = _text_field(op, "path"), op.get("value")
    actual = root if path == "" else _get(*_parent(root, path))
    if not (actual is None and expected is None) and not _same(actual, expected):
        raise _NotApplicable(f"testing value {path} failed: test failed")
    return root


_OPERATIONS = {"add": _op_add, "remove": _op_remove, "replace": _op_replace,
               "move": _op_move, "copy": _op_copy, "test": _op_test}


def _decoded_operations(ops: Any) -> list[dict]:
    """jsonpatch.DecodePatch: an array (or null) of objects (or nulls)."""
    if ops is None:
        return []
    if not isinstance(ops, list):
        raise errors.bad_request(
            f"json: cannot unmarshal {_JSON_KIND[type(ops)]} into Go value of type jsonpatch.Patch")
    for op in ops:
        if op is not None and not isinstance(op, dict):
            raise errors.bad_request(f"json: cannot unmarshal {_JSON_KIND[type(op)]} into Go "
                                     "value of type jsonpatch.Operation")
    if len(ops) > MAX_JSON_PATCH_OPERATIONS:
        raise errors.too_large("Request entity too large: The allowed maximum operations in a "
                               f"JSON patch is {MAX_JSON_PATCH_OPERATIONS}, got {len(ops)}")
    return [op or {} for op in ops]


@_depth_guarded
def json_patch(doc: dict, ops: Any) -> dict:
    """Apply an RFC 6902 patch (already parsed) to `doc`; returns a new document."""
    root: Any = _copy(doc)
    for op in _decoded_operations(ops):
        kind = op.get("op") if isinstance(op.get("op"), str) else "unknown"
        apply = _OPERATIONS.get(kind)
        try:
            if apply is None:
                raise _NotApplicable(f"Unexpected kind: {kind}")
            root = apply(root, op)
        except _NotApplicable as exc:
            raise _unprocessable() from exc
    if not isinstance(root, dict):
        raise _not_an_object(root)
    return root


# ---- RFC 7386 JSON merge patch ----------------------------------------------------------------

def _pruned(v: Any) -> Any:
    """A copy of `v` without nulls, in objects and in arrays (evanphx pruneNulls)."""
    if isinstance(v, dict):
        return {k: _pruned(x) for k, x in v.items() if x is not None}
    if isinstance(v, list):
        return [_pruned(x) for x in v if x is not None]
    return v


def _merge_docs(doc: dict, patch: dict) -> dict:
    for key, value in patch.items():
        if value is None:
            doc.pop(key, None)
            continue
        current = doc.get(key)
        if not isinstance(current, dict):
            doc[key] = _pruned(value)
        elif isinstance(value, dict):
            doc[key] = _merge_docs(current, value)
        else:
            doc[key] = _copy(value)
    return doc


@_depth_guarded
def merge_patch(doc: dict, patch: Any) -> dict:
    """Apply an RFC 7386 merge patch (already parsed) to `doc`; returns a new document."""
    if isinstance(patch, list):
        raise _not_an_object(_pruned(patch))
    if not isinstance(patch, dict):
        raise errors.bad_request("Invalid JSON Patch")
    return _merge_docs(_copy(doc), patch)


# ---- strategic merge patch --------------------------------------------------------------------

def _is_directive(key: str) -> bool:
    return key in (_PATCH, _RETAIN_KEYS) or key.startswith((_ORDER, _DELETE_FROM))


def _clean(v: Any) -> Any:
    """A patch value with no live counterpart, as Kubernetes' typed decoding would keep it."""
    if isinstance(v, dict):
        if v.get(_PATCH) == "delete":
            return {}
        return {k: _clean(x) for k, x in v.items() if x is not None and not _is_directive(k)}
    if isinstance(v, list):
        return [_clean(x) for x in v if not (isinstance(x, dict) and _PATCH in x)]
    return v


def _directive_target(key: str, prefix: str, error: str) -> str:
    """The list a `$prefix/<list>` key names (strategicpatch extractKey)."""
    head, slash, target = key.partition("/")
    if head != prefix or not slash:
        raise errors.bad_request(error)
    return target


def _element_kind(*lists: list) -> bool | None:
    """True for lists of maps, False for scalars, None if empty (sliceElementType)."""
    first: type | None = None
    for item in (x for lst in lists for x in lst):
        if first is None:
            first = type(item)
            if first is list:
                raise _unprocessable()  # mergepatch.ErrNoListOfLists
        elif type(item) is not first:
            raise _go_error(f"list element types are not identical: {_go_v(list(lists))}")
    return None if first is None else first is dict


def _key_of(item: Any, key: str | None) -> Any:
    if key is None:
        return item
    return item.get(key) if isinstance(item, dict) else None


def _position(order: list, item: Any, key: str | None) -> int:
    """Index of the first element of `order` matching `item` (by merge key), or -1."""
    wanted = _key_of(item, key)
    for i, candidate in enumerate(order):
        if _same(_key_of(candidate, key), wanted):
            return i
    return -1


def _find(items: list, key: str, value: Any) -> int:
    """findMapInSliceBasedOnKeyValue."""
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise _go_error(f"value for key {i} is not a map.")
        if key in item and _same(item[key], value):
            return i
    return -1


def _require_key(item: Any, key: str) -> dict:
    if not isinstance(item, dict):
        raise _bad_arg_type(dict, item)
    if key not in item:
        raise _no_merge_key(item, key)
    return item


def _partition(items: list, by: list, key: str | None) -> tuple[list, list]:
    """Split `items` into those present in `by` and the rest (server-only)."""
    present, rest = [], []
    for item in items:
        if key is None:
            found = any(_same(item, b) for b in by)
        else:
            found = _find(by, key, _require_key(item, key)[key]) >= 0
        (present if found else rest).append(item)
    return present, rest


def _sorted_by(items: list, order: list, key: str | None) -> list:
    """normalizeSliceOrder: stable sort by position in `order`, deletions last."""
    deletions = []
    if key is not None:
        for item in (*items, *order):
            _require_key(item, key)
        deletions = [x for x in items if x.get(_PATCH) == "delete"]
        items = [x for x in items if x.get(_PATCH) != "delete"]
    size = len(order)

    def rank(item: Any) -> int:
        pos = _position(order, item, key)
        return pos if pos >= 0 else size
    return sorted(items, key=rank) + deletions


def _interleave(server_only: list, patched: list, live_order: list, key: str | None) -> list:
    """mergeSortedSlice: a server-only item goes first only if it was live before the other."""
    out, i, j = [], 0, 0
    while i < len(server_only) and j < len(patched):
        li = _position(live_order, server_only[i], key)
        ri = _position(live_order, patched[j], key)
        if 0 <= li < ri:
            out.append(server_only[i])
            i += 1
        else:
            out.append(patched[j])
            j += 1
    return out + server_only[i:] + patched[j:]


def _ordered(merged: list, patch_order: list, live_order: list, key: str | None) -> list:
    """Patch items in patch order, server-only items in live order, interleaved."""
    patched, server_only = _partition(merged, patch_order, key)
    return _interleave(_sorted_by(server_only, live_order, key),
                       _sorted_by(patched, patch_order, key), live_order, key)


def _without_special_elements(live: list, patch: list, key: str) -> tuple[list, list]:
    """Apply `$patch` list elements: delete by key, or replace the whole list."""
    rest, replace = [], False
    for item in patch:
        if _PATCH not in item:
            rest.append(item)
            continue
        directive = item[_PATCH]
        if directive == "delete":
            value = _require_key(item, key)[key]
            live = [x for x in live if not (key in x and _same(x[key], value))]
        elif directive == "replace":
            replace = True
        elif directive == "merge":
            raise _go_error("merging lists cannot yet be specified in the patch")
        else:
            raise _go_error(f"unknown patch type: {_go_s(directive)} in map: {_go_v(item)}")
    return ([_clean(x) for x in rest], []) if replace else (live, rest)


def _merge_list(live: list, patch: list, key: str | None, kind: str, path: tuple) -> list:
    """mergeSlice for a list with patchStrategy merge."""
    if not live and not patch:
        return live
    if not _element_kind(live, patch):
        merged = []
        for item in live + patch:
            if not any(_same(item, m) for m in merged):
                merged.append(item)
        return _ordered(merged, patch, live, key)
    if key is None:
        raise _go_error("cannot merge lists without merge key for type string")
    live, patch = _without_special_elements(live, patch, key)
    merged = list(live)
    for item in patch:
        i = _find(merged, key, _require_key(item, key)[key])
        if i < 0:
            merged.append(_clean(item))
        else:
            merged[i] = _merge_map(merged[i], item, kind, path + ("*",))
    return _ordered(merged, patch, live, key)


def _check_order_list(patch: list, order: list, key: str | None) -> None:
    """validatePatchWithSetOrderList: patch items must appear in `order`, in that order."""
    if not patch or not order:
        return
    items = patch
    if key is not None:
        items = [x for x in patch if _require_dict(x).get(_PATCH) != "delete"]
    i = j = 0
    while i < len(items) and j < len(order):
        if isinstance(items[i], dict) and _PATCH in items[i]:
            i += 1
            continue
        if key is None:
            equal = _same(items[i], order[j])
        else:
            equal = _same(_require_key(items[i], key)[key], _require_key(order[j], key)[key])
        i += equal
        j += 1
    if i < len(items):
        raise _go_error(f"The order in patch list:\n{_go_v(patch)}\n doesn't match {_ORDER} "
                        f"list:\n{_go_v(order)}\n")


def _require_dict(item: Any) -> dict:
    if not isinstance(item, dict):
        raise _bad_arg_type(dict, item)
    return item


def _require_list(value: Any) -> list:
    if not isinstance(value, list):
        raise _bad_arg_type(list, value)
    return value


def _apply_element_orders(live: dict, patch: dict, kind: str, path: tuple) -> set[str]:
    """mergePatchIntoOriginal: merge and order every list named by a `$setElementOrder/`."""
    done = set()
    for directive, order in patch.items():
        if not directive.startswith(_ORDER):
            continue
        _require_list(order)
        name = _directive_target(directive, _ORDER, "invalid patch format of setElementOrder list")
        live_list = None if live.get(name) is None else _require_list(live[name])
        patch_list = _require_list(patch[name]) if name in patch else None
        meta = list_meta(kind, path + (name,))
        key = meta.smp_key
        _check_order_list(patch_list or [], order, key)
        if patch_list is None and live_list is None:
            continue
        if patch_list is None:
            merged = live_list
        elif live_list is None:
            merged = _clean(patch_list)
        elif meta.smp_merge:
            merged = _merge_list(live_list, patch_list, key, kind, path + (name,))
        else:
            merged = _clean(patch_list)
        _element_kind(live_list or [], patch_list or [])
        live[name] = _ordered(merged, order, live_list or [], key)
        done.add(name)
    return done


def _retain_keys(live: dict, patch: dict) -> None:
    """applyRetainKeysDirective: clear live fields missing from the `$retainKeys` list."""
    keep = patch[_RETAIN_KEYS]
    if not isinstance(keep, list):
        raise errors.bad_request("invalid patch format of retainKeys")
    allowed = {k for k in keep if isinstance(k, str)}
    for k, v in patch.items():
        if v is not None and k != _RETAIN_KEYS and not k.startswith((_ORDER, _DELETE_FROM)) \
                and k not in allowed:
            raise errors.bad_request("invalid patch format of retainKeys")
    for k in [k for k in live if k not in allowed]:
        del live[k]


def _delete_from_list(live: dict, name: str, values: Any) -> None:
    if not isinstance(values, list):
        raise errors.bad_request("invalid patch format of primitive list")
    current = live.get(name)
    if isinstance(current, list):
        live[name] = [x for x in current if not any(_same(x, v) for v in values)]


def _merge_map(live: dict, patch: dict, kind: str, path: tuple) -> dict:
    """mergeMap: merge `patch` into `live` (edited in place and returned)."""
    if _PATCH in patch:
        directive = patch[_PATCH]
        if directive == "replace":
            return _clean({k: v for k, v in patch.items() if k != _PATCH})
        if directive == "delete":
            return {}
        raise _go_error(f"unknown patch type: {_go_s(directive)} in map: {_go_v(patch)}")
    if _RETAIN_KEYS in patch:
        _retain_keys(live, patch)
    done = _apply_element_orders(live, patch, kind, path)
    for key, value in patch.items():
        if key in done or key == _RETAIN_KEYS or key.startswith(_ORDER):
            continue
        if key.startswith(_DELETE_FROM):
            name = _directive_target(key, _DELETE_FROM, "invalid patch format of primitive list")
            _delete_from_list(live, name, value)
        elif value is None:
            live.pop(key, None)
        elif key not in live or type(live[key]) is not type(value):
            live[key] = _clean(value)
        elif isinstance(value, dict):
            live[key] = _merge_map(live[key], value, kind, path + (key,))
        elif isinstance(value, list):
            meta = list_meta(kind, path + (key,))
            live[key] = (_merge_list(live[key], value, meta.smp_key, kind, path + (key,))
                         if meta.smp_merge else _clean(value))
        else:
            live[key] = value
    return live


@_depth_guarded
def strategic_merge_patch(doc: dict, patch: dict, kind: str) -> dict:
    """Apply a strategic merge patch (already parsed) to `doc`, an object of `kind`."""
    if patch is None:  # a JSON null body decodes to an empty patch
        return _copy(doc)
    if not isinstance(patch, dict):
        raise errors.bad_request(f"json: cannot unmarshal {_JSON_KIND[type(patch)]} into Go "
                                 "value of type map[string]interface {}")
    return _merge_map(_copy(doc), patch, kind, ())


# ---- dispatch ---------------------------------------------------------------------------------

def apply_patch(doc: dict, content_type: str, body: bytes, kind: str) -> dict:
    """Apply a PATCH request body of the given Content-Type to `doc`; returns the new object."""
    idx = content_type.find(";")
    media = content_type[:idx] if idx > 0 else content_type
    if media == APPLY_PATCH:
        raise ValueError("server-side apply is not a patch apply_patch handles")
    if media == JSON_PATCH:
        return json_patch(doc, _decode(body))
    if media == STRATEGIC_MERGE_PATCH:
        return strategic_merge_patch(doc, _decode(body), kind)
    if media == MERGE_PATCH:
        try:
            patch = _decode(body)
        except APIError:
            raise errors.bad_request("Invalid JSON Patch") from None
        return merge_patch(doc, patch)
    raise errors.unsupported_media_type(content_type, SUPPORTED_PATCH_TYPES)
