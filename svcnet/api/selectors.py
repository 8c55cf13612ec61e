"""Label and field selectors: parsing, matching and the exact Kubernetes error texts.

Theory of operation
-------------------
Label selectors (`?labelSelector=`, `kubectl -l`) are parsed by a port of the lexer and
recursive-descent parser of k8s.io/apimachinery/pkg/labels/selector.go (release-1.32):

* The lexer turns the string into tokens: identifiers, the keywords `in`/`notin`, and the
  operators `!`, `=`, `==`, `!=`, `>`, `<`, `(`, `)`, `,`. Whitespace (space, tab, CR, LF)
  separates tokens; a run of operator characters is cut at its longest known prefix.
* The parser reads `[!]KEY [op VALUE | in|notin (VALUES)]` requirements separated by commas.
  `in`/`notin` read as plain identifiers where a value is expected (`a in (in)`).
* Each requirement is validated like `labels.NewRequirement`: the key is a qualified name,
  every value a label value. Validation failures are `field.Error`s whose path is the Go
  parser's: a bad key reports the path `<nil>` (the parser passes a nil *field.Path), a bad
  value `values[i][key]`. Everything the parser rejects comes back as a 400 BadRequest whose
  message is the Go error text verbatim, e.g. `unable to parse requirement: found '' expected:
  '('` - kube-apiserver returns exactly `err.Error()` from `labels.Parse`.
* Requirements are sorted by key; `str()` gives `labels.Selector.String()` (values sorted),
  which the table printers show for Deployments and ReplicaSets.

`selector_from_label_selector_object` is `metav1.LabelSelectorAsSelector` (None matches
nothing, `{}` matches everything) and `selector_from_map` is `labels.SelectorFromSet` (used for
Service selectors; an empty map matches everything).

Field selectors (`?fieldSelector=`) follow k8s.io/apimachinery/pkg/fields/selector.go: terms
are split on unescaped commas, sorted, each split at its first `!=`, `==` or `=`, and the value
unescaped (`\\,` `\\=` `\\\\`). The kube-apiserver then passes every field through the kind's
field-label conversion function; those tables (`_FIELD_LABELS`) are copied from
pkg/apis/core/v1/conversion.go. Kinds without a conversion function (everything outside the core
group, plus ConfigMap and Endpoints) accept only metadata.name and metadata.namespace with the
`DefaultMetaV1FieldSelectorConversion` message. Matching compares strings against the values of
the kind's `GetAttrs` (registry strategies): a missing field is "", booleans are "true"/"false",
integers decimal.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Callable

from svcnet.api import errors

# ---------------------------------------------------------------------------------------------
# Validation of keys and values (k8s.io/apimachinery/pkg/util/validation, release-1.32)
# ---------------------------------------------------------------------------------------------

_QNAME_FMT = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_QNAME_MSG = ("must consist of alphanumeric characters, '-', '_' or '.', and must start and end "
              "with an alphanumeric character")
_LABEL_VALUE_FMT = f"({_QNAME_FMT})?"
_LABEL_VALUE_MSG = ("a valid label must be an empty string or consist of alphanumeric characters, "
                    "'-', '_' or '.', and must start and end with an alphanumeric character")
_DNS1123_LABEL_FMT = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_SUBDOMAIN_FMT = _DNS1123_LABEL_FMT + r"(\." + _DNS1123_LABEL_FMT + ")*"
_DNS1123_SUBDOMAIN_MSG = ("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric "
                          "characters, '-' or '.', and must start and end with an alphanumeric "
                          "character")


def _regex_error(msg: str, fmt: str, *examples: str) -> str:
    """validation.RegexError, including its doubled spaces between examples."""
    shown = " or ".join(f"'{e}', " for e in examples)
    return f"{msg} (e.g. {shown}regex used for validation is '{fmt}')"


def _max_len_error(n: int) -> str:
    return f"must be no more than {n} characters"


def _is_dns1123_subdomain(value: str) -> list[str]:
    errs = []
    if len(value.encode()) > 253:
        errs.append(_max_len_error(253))
    if not re.fullmatch(_DNS1123_SUBDOMAIN_FMT, value):
        errs.append(_regex_error(_DNS1123_SUBDOMAIN_MSG, _DNS1123_SUBDOMAIN_FMT, "example.com"))
    return errs


def is_qualified_name(value: str) -> list[str]:
    """validation.IsQualifiedName: `[prefix/]name`, the form of label keys."""
    parts = value.split("/")
    if len(parts) > 2:
        return ["a qualified name " + _regex_error(_QNAME_MSG, _QNAME_FMT, "MyName", "my.name", "123-abc")
                + " with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"]
    errs = []
    name = parts[-1]
    if len(parts) == 2:
        prefix = parts[0]
        if not prefix:
            errs.append("prefix part must be non-empty")
        else:
            errs += ["prefix part " + m for m in _is_dns1123_subdomain(prefix)]
    if not name:
        errs.append("name part must be non-empty")
    elif len(name.encode()) > 63:
        errs.append("name part " + _max_len_error(63))
    if not re.fullmatch(_QNAME_FMT, name):
        errs.append("name part " + _regex_error(_QNAME_MSG, _QNAME_FMT, "MyName", "my.name", "123-abc"))
    return errs


def is_valid_label_value(value: str) -> list[str]:
    errs = []
    if len(value.encode()) > 63:
        errs.append(_max_len_error(63))
    if not re.fullmatch(_LABEL_VALUE_FMT, value):
        errs.append(_regex_error(_LABEL_VALUE_MSG, _LABEL_VALUE_FMT, "MyValue", "my_value", "12345"))
    return errs


def _aggregate(msgs: list[str]) -> str:
    """utilerrors.Aggregate.Error(): one message bare, several deduplicated inside [...]."""
    unique = list(dict.fromkeys(msgs))
    return unique[0] if len(unique) == 1 else "[" + ", ".join(unique) + "]"


def _parse_int64(s: str) -> int | None:
    """strconv.ParseInt(s, 10, 64)."""
    if not re.fullmatch(r"[+-]?[0-9]+", s):
        return None
    n = int(s)
    return n if -(1 << 63) <= n < (1 << 63) else None


# ---------------------------------------------------------------------------------------------
# Label selectors
# ---------------------------------------------------------------------------------------------

IN, NOT_IN, EQUALS, DOUBLE_EQUALS, NOT_EQUALS = "in", "notin", "=", "==", "!="
EXISTS, DOES_NOT_EXIST, GREATER_THAN, LESS_THAN = "exists", "!", "gt", "lt"
_BINARY_OPERATORS = (IN, NOT_IN, EQUALS, DOUBLE_EQUALS, NOT_EQUALS, GREATER_THAN, LESS_THAN)


def _match_in(r: "Requirement", labels: dict) -> bool:
    return r.key in labels and labels[r.key] in r.values


def _match_not_in(r: "Requirement", labels: dict) -> bool:
    return r.key not in labels or labels[r.key] not in r.values


def _compare(op: Callable[[int, int], bool]) -> Callable[["Requirement", dict], bool]:
    def match(r: "Requirement", labels: dict) -> bool:
        have = _parse_int64(labels[r.key]) if r.key in labels else None
        want = _parse_int64(r.values[0]) if len(r.values) == 1 else None
        return have is not None and want is not None and op(have, want)
    return match


# operator -> (how it matches, how String() writes it between key and values)
_OPERATORS: dict[str, tuple[Callable[["Requirement", dict], bool], str]] = {
    IN: (_match_in, " in "),
    EQUALS: (_match_in, "="),
    DOUBLE_EQUALS: (_match_in, "=="),
    NOT_IN: (_match_not_in, " notin "),
    NOT_EQUALS: (_match_not_in, "!="),
    EXISTS: (lambda r, labels: r.key in labels, ""),
    DOES_NOT_EXIST: (lambda r, labels: r.key not in labels, ""),
    GREATER_THAN: (_compare(lambda a, b: a > b), ">"),
    LESS_THAN: (_compare(lambda a, b: a < b), "<"),
}


@dataclass(frozen=True)
class Requirement:
    key: str
    operator: str
    values: tuple[str, ...] = ()

    def matches(self, labels: dict) -> bool:
        return _OPERATORS[self.operator][0](self, labels)

    def __str__(self) -> str:
        prefix = "!" if self.operator == DOES_NOT_EXIST else ""
        if self.operator in (EXISTS, DOES_NOT_EXIST):
            return prefix + self.key
        values = ",".join(sorted(self.values))
        if self.operator in (IN, NOT_IN):
            values = f"({values})"
        return self.key + _OPERATORS[self.operator][1] + values


def _field_error(path: str, value, detail: str) -> str:
    return errors.invalid_value(path, value, detail).message()


def _values_error(values: list[str], detail: str) -> str:
    # Go prints the []string with %#v; LabelSelectorAsSelector passes nil for "no values".
    shown = errors.go_value(values) if values else "[]string(nil)"
    return f"values: Invalid value: {shown}: {detail}"


def _validate_key(key: str, path: str) -> str | None:
    errs = is_qualified_name(key)
    return _field_error(path, key, "; ".join(errs)) if errs else None


# NewRequirement's arity rules per operator: (allowed value counts, message).
_ARITY: dict[str, tuple[Callable[[int], bool], str]] = {
    IN: (lambda n: n > 0, "for 'in', 'notin' operators, values set can't be empty"),
    NOT_IN: (lambda n: n > 0, "for 'in', 'notin' operators, values set can't be empty"),
    EQUALS: (lambda n: n == 1, "exact-match compatibility requires one single value"),
    DOUBLE_EQUALS: (lambda n: n == 1, "exact-match compatibility requires one single value"),
    NOT_EQUALS: (lambda n: n == 1, "exact-match compatibility requires one single value"),
    EXISTS: (lambda n: n == 0, "values set must be empty for exists and does not exist"),
    DOES_NOT_EXIST: (lambda n: n == 0, "values set must be empty for exists and does not exist"),
    GREATER_THAN: (lambda n: n == 1, "for 'Gt', 'Lt' operators, exactly one value is required"),
    LESS_THAN: (lambda n: n == 1, "for 'Gt', 'Lt' operators, exactly one value is required"),
}


def new_requirement(key: str, operator: str, values: list[str]) -> Requirement:
    """labels.NewRequirement with a nil path option; raises ValueError(aggregate message)."""
    msgs = []
    if (err := _validate_key(key, "key")) is not None:
        msgs.append(err)
    ok, detail = _ARITY[operator]
    if not ok(len(values)):
        msgs.append(_values_error(values, detail))
    if operator in (GREATER_THAN, LESS_THAN):
        msgs += [_field_error(f"values[{i}]", v, "for 'Gt', 'Lt' operators, the value must be an integer")
                 for i, v in enumerate(values) if _parse_int64(v) is None]
    for i, v in enumerate(values):
        if errs := is_valid_label_value(v):
            msgs.append(_field_error(f"values[{i}][{key}]", v, "; ".join(errs)))
    if msgs:
        raise ValueError(_aggregate(msgs))
    return Requirement(key, operator, tuple(values))


@dataclass(frozen=True)
class LabelSelector:
    requirements: tuple[Requirement, ...] = ()
    nothing: bool = False  # labels.Nothing(): from a nil metav1.LabelSelector

    def matches(self, labels: dict | None) -> bool:
        labels = labels or {}
        return not self.nothing and all(r.matches(labels) for r in self.requirements)

    @property
    def empty(self) -> bool:
        """Selects everything (labels.Selector.Empty)."""
        return not self.nothing and not self.requirements

    def __str__(self) -> str:
        return ",".join(str(r) for r in self.requirements)


NOTHING = LabelSelector(nothing=True)


def _sorted_selector(reqs: list[Requirement]) -> LabelSelector:
    return LabelSelector(tuple(sorted(reqs, key=lambda r: r.key)))


# --- lexer -----------------------------------------------------------------------------------

_EOS, _CLOSE, _COMMA, _NOT, _DEQ, _EQ, _GT, _ID, _IN, _LT, _NEQ, _NOTIN, _OPEN = range(13)
_LITERAL_TOKENS = {")": _CLOSE, ",": _COMMA, "!": _NOT, "==": _DEQ, "=": _EQ, ">": _GT, "in": _IN,
                   "<": _LT, "!=": _NEQ, "notin": _NOTIN, "(": _OPEN}
_SPECIAL = set("=!(),><")
_WHITESPACE = set(" \t\r\n")
_TOKEN_OPERATORS = {_IN: IN, _EQ: EQUALS, _DEQ: DOUBLE_EQUALS, _GT: GREATER_THAN, _LT: LESS_THAN,
                    _NOTIN: NOT_IN, _NEQ: NOT_EQUALS}


def _lex(s: str) -> list[tuple[int, str]]:
    tokens, i = [], 0
    while True:
        while i < len(s) and s[i] in _WHITESPACE:
            i += 1
        if i == len(s):
            tokens.append((_EOS, ""))
            return tokens
        start = i
        if s[i] in _SPECIAL:
            # longest run of special characters that is still a known operator
            end = i + 1
            while end < len(s) and s[end] in _SPECIAL and s[start:end + 1] in _LITERAL_TOKENS:
                end += 1
            lit = s[start:end]
        else:
            while i < len(s) and s[i] not in _SPECIAL and s[i] not in _WHITESPACE:
                i += 1
            end = i
            lit = s[start:end]
        tokens.append((_LITERAL_TOKENS.get(lit, _ID), lit))
        i = end


# --- parser ----------------------------------------------------------------------------------

class _ParseError(Exception):
    pass


class _Parser:
    def __init__(self, s: str):
        self.items = _lex(s)
        self.pos = 0

    def lookahead(self, values: bool = True) -> tuple[int, str]:
        tok, lit = self.items[min(self.pos, len(self.items) - 1)]
        # In the "values" context the keywords in/notin are ordinary identifiers.
        return (_ID if values and tok in (_IN, _NOTIN) else tok), lit

    def consume(self, values: bool = True) -> tuple[int, str]:
        item = self.lookahead(values)
        self.pos += 1
        return item

    def parse(self) -> list[Requirement]:
        reqs = []
        while True:
            tok, lit = self.lookahead()
            if tok == _EOS:
                return reqs
            if tok not in (_ID, _NOT):
                raise _ParseError(f"found '{lit}', expected: !, identifier, or 'end of string'")
            try:
                reqs.append(self.requirement())
            except _ParseError as e:
                raise _ParseError(f"unable to parse requirement: {e}") from None
            tok, lit = self.consume()
            if tok == _EOS:
                return reqs
            if tok != _COMMA:
                raise _ParseError(f"found '{lit}', expected: ',' or 'end of string'")
            tok2, lit2 = self.lookahead()
            if tok2 not in (_ID, _NOT):
                raise _ParseError(f"found '{lit2}', expected: identifier after ','")

    def requirement(self) -> Requirement:
        key, operator = self.key_and_inferred_operator()
        if operator in (EXISTS, DOES_NOT_EXIST):
            values: set[str] = set()
        else:
            tok, lit = self.consume(values=False)
            if tok not in _TOKEN_OPERATORS:
                raise _ParseError(f"found '{lit}', expected: {', '.join(_BINARY_OPERATORS)}")
            operator = _TOKEN_OPERATORS[tok]
            values = self.value_set() if operator in (IN, NOT_IN) else self.exact_value()
        try:
            return new_requirement(key, operator, sorted(values))
        except ValueError as e:
            raise _ParseError(str(e)) from None

    def key_and_inferred_operator(self) -> tuple[str, str | None]:
        operator = None
        tok, lit = self.consume()
        if tok == _NOT:
            operator = DOES_NOT_EXIST
            tok, lit = self.consume()
        if tok != _ID:
            raise _ParseError(f"found '{lit}', expected: identifier")
        if (err := _validate_key(lit, "<nil>")) is not None:
            raise _ParseError(err)
        if self.lookahead()[0] in (_EOS, _COMMA) and operator is None:
            operator = EXISTS
        return lit, operator

    def value_set(self) -> set[str]:
        tok, lit = self.consume()
        if tok != _OPEN:
            raise _ParseError(f"found '{lit}' expected: '('")
        tok, lit = self.lookahead()
        if tok == _CLOSE:  # "()"
            self.consume()
            return {""}
        if tok not in (_ID, _COMMA):
            raise _ParseError(f"found '{lit}', expected: ',', ')' or identifier")
        values = self.identifiers()
        self.consume()  # identifiers() stops in front of ')'
        return values

    def identifiers(self) -> set[str]:
        s: set[str] = set()
        while True:
            tok, lit = self.consume()
            if tok == _ID:
                s.add(lit)
                tok2, lit2 = self.lookahead()
                if tok2 == _CLOSE:
                    return s
                if tok2 != _COMMA:
                    raise _ParseError(f"found '{lit2}', expected: ',' or ')'")
            elif tok == _COMMA:
                if not s:
                    s.add("")  # "(,"
                tok2, _ = self.lookahead()
                if tok2 == _CLOSE:  # ",)"
                    s.add("")
                    return s
                if tok2 == _COMMA:  # ",,"
                    self.consume()
                    s.add("")
            else:
                raise _ParseError(f"found '{lit}', expected: ',', or identifier")

    def exact_value(self) -> set[str]:
        if self.lookahead()[0] in (_EOS, _COMMA):
            return {""}
        tok, lit = self.consume()
        if tok != _ID:
            raise _ParseError(f"found '{lit}', expected: identifier")
        return {lit}


def parse_label_selector(s: str) -> LabelSelector:
    """labels.Parse; raises APIError 400 with the Go error text."""
    try:
        return _sorted_selector(_Parser(s).parse())
    except _ParseError as e:
        raise errors.bad_request(str(e)) from None


_SELECTOR_OPERATORS = {"In": IN, "NotIn": NOT_IN, "Exists": EXISTS, "DoesNotExist": DOES_NOT_EXIST}


def selector_from_label_selector_object(sel: dict | None) -> LabelSelector:
    """metav1.LabelSelectorAsSelector; raises APIError 400 for an invalid selector."""
    if sel is None:
        return NOTHING
    match_labels = sel.get("matchLabels") or {}
    expressions = sel.get("matchExpressions") or []
    try:
        reqs = [new_requirement(k, EQUALS, [v]) for k, v in match_labels.items()]
        for expr in expressions:
            op = expr.get("operator", "")
            if op not in _SELECTOR_OPERATORS:
                raise ValueError(f"{json.dumps(op)} is not a valid label selector operator")
            reqs.append(new_requirement(expr.get("key", ""), _SELECTOR_OPERATORS[op],
                                        list(expr.get("values") or [])))
    except ValueError as e:
        raise errors.bad_request(str(e)) from None
    return _sorted_selector(reqs)


def selector_from_map(d: dict | None) -> LabelSelector:
    """labels.SelectorFromSet: key=value for every entry, unvalidated; empty selects all."""
    return _sorted_selector([Requirement(k, EQUALS, (v,)) for k, v in (d or {}).items()])


# ---------------------------------------------------------------------------------------------
# Field selectors
# ---------------------------------------------------------------------------------------------

def _at(*path: str) -> Callable[[dict], str]:
    def get(obj: dict) -> str:
        for p in path:
            obj = obj.get(p) if isinstance(obj, dict) else None
        return "" if obj is None else str(obj)
    return get


def _flag(*path: str) -> Callable[[dict], str]:
    def get(obj: dict) -> str:
        value = obj
        for p in path:
            value = value.get(p) if isinstance(value, dict) else None
        return "true" if value else "false"
    return get


def _pod_ip(pod: dict) -> str:
    status = pod.get("status") or {}
    ips = [p.get("ip", "") for p in status.get("podIPs") or []]
    return status.get("podIP") or (ips[0] if ips else "")


def _event_source(ev: dict) -> str:
    return _at("source", "component")(ev) or ev.get("reportingComponent", "")


_NAME = {"metadata.name": _at("metadata", "name")}
_NAMESPACED = {**_NAME, "metadata.namespace": _at("metadata", "namespace")}


@dataclass(frozen=True)
class _FieldLabels:
    fields: dict[str, Callable[[dict], str]]  # selectable label -> value in an object
    aliases: dict[str, str]                   # legacy label -> label it converts to


# Kinds with a field-label conversion function in pkg/apis/core/v1/conversion.go; their
# unsupported labels fail with "field label not supported: <label>".
_FIELD_LABELS: dict[str, _FieldLabels] = {
    "Pod": _FieldLabels({
        **_NAMESPACED,
        "spec.nodeName": _at("spec", "nodeName"),
        "spec.restartPolicy": _at("spec", "restartPolicy"),
        "spec.schedulerName": _at("spec", "schedulerName"),
        "spec.serviceAccountName": _at("spec", "serviceAccountName"),
        "spec.hostNetwork": _flag("spec", "hostNetwork"),
        "status.phase": _at("status", "phase"),
        "status.podIP": _pod_ip,
        "status.nominatedNodeName": _at("status", "nominatedNodeName"),
    }, {"spec.host": "spec.nodeName"}),
    "Node": _FieldLabels({**_NAME, "spec.unschedulable": _flag("spec", "unschedulable")}, {}),
    "Namespace": _FieldLabels({**_NAME, "status.phase": _at("status", "phase")}, {}),
    "Service": _FieldLabels({**_NAMESPACED, "spec.clusterIP": _at("spec", "clusterIP"),
                             "spec.type": _at("spec", "type")}, {}),
    "Event": _FieldLabels({
        **_NAMESPACED,
        **{f"involvedObject.{f}": _at("involvedObject", f)
           for f in ("kind", "namespace", "name", "uid", "apiVersion", "resourceVersion", "fieldPath")},
        "reason": _at("reason"),
        "reportingComponent": _at("reportingComponent"),
        "source": _event_source,
        "type": _at("type"),
    }, {}),
}


def _convert_field_label(kind: str, label: str) -> str:
    """scheme.ConvertFieldLabel for `kind`; raises ValueError with the Kubernetes text."""
    table = _FIELD_LABELS.get(kind)
    if table is None:
        if label in _NAMESPACED:
            return label
        raise ValueError(f'"{label}" is not a known field selector: only "metadata.name", '
                         f'"metadata.namespace"')
    label = table.aliases.get(label, label)
    if label not in table.fields:
        raise ValueError(f"field label not supported: {label}")
    return label


@dataclass(frozen=True)
class FieldTerm:
    field: str
    value: str
    negated: bool = False

    def matches(self, fields: dict[str, str]) -> bool:
        return (fields.get(self.field, "") == self.value) != self.negated


@dataclass(frozen=True)
class FieldSelector:
    kind: str
    terms: tuple[FieldTerm, ...] = ()

    def matches(self, obj: dict) -> bool:
        fields = selectable_fields(self.kind, obj)
        return all(t.matches(fields) for t in self.terms)

    @property
    def empty(self) -> bool:
        return not self.terms

    def requires_exact_match(self, field: str) -> str | None:
        """The value `field` must equal, if a `field=value` term pins it (fields.RequiresExactMatch)."""
        for t in self.terms:
            if t.field == field and not t.negated:
                return t.value
        return None


def selectable_fields(kind: str, obj: dict) -> dict[str, str]:
    """The kind's GetAttrs field set for `obj`."""
    table = _FIELD_LABELS.get(kind)
    fields = table.fields if table else _NAMESPACED
    return {label: get(obj) for label, get in fields.items()}


def _split_terms(s: str) -> list[str]:
    terms, start, escaped = [], 0, False
    for i, c in enumerate(s):
        if escaped:
            escaped = False
        elif c == "\\":
            escaped = True
        elif c == ",":
            terms.append(s[start:i])
            start = i + 1
    terms.append(s[start:])
    return terms


_TERM_OPERATORS = ("!=", "==", "=")


def _split_term(term: str) -> tuple[str, str, str] | None:
    for i in range(len(term)):
        for op in _TERM_OPERATORS:
            if term.startswith(op, i):
                return term[:i], op, term[i + len(op):]
    return None


def _unescape(value: str) -> str:
    out, escaped = [], False
    for c in value:
        if escaped:
            if c not in "\\,=":
                raise ValueError(f"invalid field selector: invalid escape sequence: \\{c}")
            out.append(c)
            escaped = False
        elif c == "\\":
            escaped = True
        elif c in ",=":
            # Go formats the rune with %v: its code point, e.g. 61 for '='.
            raise ValueError(f"invalid field selector: unescaped character in value: {ord(c)}")
        else:
            out.append(c)
    if escaped:
        raise ValueError("invalid field selector: invalid escape sequence: \\")
    return "".join(out)


def parse_field_selector(s: str, kind: str) -> FieldSelector:
    """fields.ParseSelector, then the kind's field-label conversion; raises APIError 400."""
    try:
        parsed = []
        for part in sorted(_split_terms(s)) if s else []:
            if not part:
                continue
            split = _split_term(part)
            if split is None:
                raise ValueError(f"invalid selector: '{s}'; can't understand '{part}'")
            field, op, value = split
            parsed.append((field, _unescape(value), op == "!="))
        terms = tuple(FieldTerm(_convert_field_label(kind, f), v, neg) for f, v, neg in parsed)
    except ValueError as e:
        raise errors.bad_request(str(e)) from None
    return FieldSelector(kind, terms)
