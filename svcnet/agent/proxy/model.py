"""An in-memory nftables that reads `nft -f` text, and a tracer that walks a packet through it.

After knftables' Fake and kube-proxy's nftables test tracer. `Model.apply` parses the statement
forms that svcnet writes (add/delete table; add chain, optionally a base chain; flush/delete
chain; add rule; add/delete set/map by `type` or `typeof`, with `flags` and `timeout`;
add/delete element) and applies them to a copy of its tables, swapping the copy in only if
every statement succeeds, like the kernel's transactions. It refuses what nft refuses, with
nft's reasons:

- delete of a missing table, chain or element: "No such file or directory";
- add of an existing element with a different value, or of an existing set/map with a different
  type: "File exists"; add of an existing chain with different hook parameters: "Operation not
  supported";
- a rule, element or `goto` naming a missing chain, set or map: "No such file or directory";
  delete of a chain that a rule or map element still jumps to, or of a set a rule still uses:
  "Device or resource busy";
- an element whose atoms do not fit the declared types;
- nft 1.0.6's "conflicting protocols specified: ip vs. th": a map whose typeof value mentions
  `th` can be declared and used only in the transaction that creates it.

Rules are compiled to steps the tracer can run; a rule the model cannot parse is an error, so the
model accepts a subset of what nft accepts, never more. As in nft, `tcp dport` and `udp dport`
imply a `meta l4proto` match.

The tracer follows the first packet of a connection (conntrack state new) through the hooks the
kernel would run: prerouting, then input (local destination) or forward + postrouting; or, for a
locally generated packet, output, postrouting, and input if the destination is local. Base
chains of a hook run in priority order. `numgen random mod N` is explored for every value, so a
Result lists every possible outcome. An accepted outcome says whether it ends at a socket of the
node (`local`: its destination, after any DNAT, is one of the node's addresses); one that keeps
its destination reads "accept local" or, leaving the node, "accept unchanged". Sets with
`flags interval` match prefixes. What the packet would write into dynamic sets
(`update @set { ip saddr }`, session affinity) is part of its outcome; `Model.remember(outcome)`
writes it, as the kernel would have for that connection, so the next trace sees it (timeouts do
not expire in the model).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import NamedTuple

from svcnet.agent.proxy.nft import NftError, Transaction

ENOENT = "No such file or directory"
EEXIST = "File exists"
EBUSY = "Device or resource busy"
EOPNOTSUPP = "Operation not supported"

# typeof expression -> datatype; `numgen random mod N` is an integer whatever N.
TYPEOF_TYPES = {
    "ip saddr": "ipv4_addr", "ip daddr": "ipv4_addr", "meta l4proto": "inet_proto",
    "th dport": "inet_service", "tcp dport": "inet_service", "udp dport": "inet_service",
    "numgen": "integer",
}
PROTO_NAMES = {"6": "tcp", "17": "udp", "132": "sctp"}
VERDICTS = ("accept", "drop", "return")


def _ipv4(atom: str) -> str:
    return str(ipaddress.IPv4Address(atom))


def _proto(atom: str) -> str:
    atom = PROTO_NAMES.get(atom, atom)
    if atom not in PROTO_NAMES.values():
        raise ValueError(atom)
    return atom


def _number(limit: int):
    def check(atom: str) -> str:
        n = int(atom, 0)
        if not 0 <= n < limit:
            raise ValueError(atom)
        return str(n)
    return check


def _verdict(atom: str) -> str:
    words = atom.split()
    if words[0] in VERDICTS and len(words) == 1 or words[0] in ("jump", "goto") and len(words) == 2:
        return " ".join(words)
    raise ValueError(atom)


# datatype -> atom normalizer (raises ValueError for an atom nft would not parse)
DATATYPES = {"ipv4_addr": _ipv4, "inet_proto": _proto, "inet_service": _number(1 << 16),
             "integer": _number(1 << 32), "verdict": _verdict}


@dataclass
class _Container:
    kind: str  # "set" | "map"
    decl: str  # "type ..." or "typeof ...", then "; flags ..." and "; timeout ..." if given
    key_types: tuple[str, ...]
    value_types: tuple[str, ...]
    elements: dict[str, str | None] = field(default_factory=dict)
    interval: bool = False

    def copy(self) -> _Container:
        return _Container(self.kind, self.decl, self.key_types, self.value_types,
                          dict(self.elements), self.interval)

    def contains(self, key: str) -> bool:
        if key in self.elements:
            return True
        if not self.interval:
            return False
        atoms = key.split(" . ")
        return any(all(_atom_matches(a, e) for a, e in zip(atoms, element.split(" . ")))
                   for element in self.elements)


def _atom_matches(value: str, element_atom: str) -> bool:
    if "/" in element_atom:
        return ipaddress.IPv4Address(value) in ipaddress.IPv4Network(element_atom)
    return value == element_atom


class _Rule(NamedTuple):
    text: str
    steps: tuple


@dataclass
class _Chain:
    base: tuple[str, str, int] | None  # (type, hook, priority) of a base chain
    rules: list[_Rule] = field(default_factory=list)


@dataclass
class _Table:
    chains: dict[str, _Chain] = field(default_factory=dict)
    containers: dict[str, _Container] = field(default_factory=dict)

    def copy(self) -> _Table:
        return _Table({n: _Chain(c.base, list(c.rules)) for n, c in self.chains.items()},
                      {n: c.copy() for n, c in self.containers.items()})


class Model:
    """Tables keyed by (family, name)."""

    def __init__(self):
        self.tables: dict[tuple[str, str], _Table] = {}

    def apply(self, tx: Transaction | str) -> None:
        """Apply all of `tx` or, raising NftError, none of it."""
        text = tx.text() if isinstance(tx, Transaction) else tx
        tables = {k: t.copy() for k, t in self.tables.items()}
        fresh: set[tuple[str, str, str]] = set()  # containers created by this transaction
        for lineno, stmt in _statements(text):
            try:
                _apply(tables, fresh, stmt)
            except NftError as e:
                raise NftError(f"line {lineno}: Error: {e}\n{stmt.splitlines()[0]}") from None
        self.tables = tables

    def dump(self, skip_chains=(), skip_empty: bool = False) -> str:
        """Canonical text: tables, then per table its sets/maps and chains by name, elements in
        natural order. `skip_chains` leaves chains out by name, `skip_empty` empty sets/maps
        (for golden texts of what a Service adds)."""
        out = []
        for (family, name), table in sorted(self.tables.items()):
            out.append(f"table {family} {name} {{\n")
            for cname, c in sorted(table.containers.items()):
                if skip_empty and not c.elements and "dynamic" not in c.decl:
                    continue
                decl = c.decl.replace("; ", "\n\t\t")
                out.append(f"\t{c.kind} {cname} {{\n\t\t{decl}\n")
                if c.elements:
                    out.append("\t\telements = {\n")
                    for k in sorted(c.elements, key=_natural):
                        v = c.elements[k]
                        out.append(f"\t\t\t{k},\n" if v is None else f"\t\t\t{k} : {v},\n")
                    out.append("\t\t}\n")
                out.append("\t}\n")
            for cname, ch in sorted(table.chains.items()):
                if cname in skip_chains:
                    continue
                out.append(f"\tchain {cname} {{\n")
                if ch.base:
                    out.append(f"\t\ttype {ch.base[0]} hook {ch.base[1]} priority {ch.base[2]}; policy accept;\n")
                out.extend(f"\t\t{r.text}\n" for r in ch.rules)
                out.append("\t}\n")
            out.append("}\n")
        return "".join(out)

    def elements(self, container: str, family: str = "ip", table: str = "svcnet") -> dict[str, str | None]:
        return dict(self.tables[(family, table)].containers[container].elements)

    def remember(self, outcome: Outcome) -> None:
        """Write what the connection of `outcome` wrote into dynamic sets (session affinity)."""
        for name, element in outcome.updates:
            for table in self.tables.values():
                if name in table.containers:
                    table.containers[name].elements[element] = None


def _natural(key: str):
    parts = re.split(r"(\d+)", key)
    return tuple(int(p) if i % 2 else p for i, p in enumerate(parts))


def _statements(text: str):
    """(line number, statement) with `#` comments removed; a statement continues over lines
    while a brace is open."""
    buf: list[str] = []
    depth = start = 0
    for lineno, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line and not buf:
            continue
        if not buf:
            start = lineno
        buf.append(line)
        depth += line.count("{") - line.count("}")
        if depth == 0:
            yield start, "\n".join(buf)
            buf = []
    if buf:
        raise NftError(f"line {start}: Error: syntax error, unbalanced braces")


def _braces(stmt: str) -> str:
    if "{" not in stmt or not stmt.rstrip().endswith("}"):
        raise NftError("syntax error, expected { ... }")
    return stmt[stmt.index("{") + 1:stmt.rindex("}")]


def _apply(tables: dict[tuple[str, str], _Table], fresh: set, stmt: str) -> None:
    words = stmt.split()
    if len(words) < 4:
        raise NftError("syntax error")
    verb, kind, family, tname = words[:4]
    key = (family, tname)
    if kind == "table":
        if verb == "add":
            tables.setdefault(key, _Table())
        elif verb == "delete":
            if tables.pop(key, None) is None:
                raise NftError(ENOENT)
            fresh -= {f for f in fresh if f[:2] == key}
        else:
            raise NftError(f"syntax error, unexpected {verb}")
        return
    table = tables.get(key)
    if table is None or len(words) < 5:
        raise NftError(ENOENT if table is None else "syntax error")
    name = words[4]
    handler = _HANDLERS.get((verb, kind))
    if handler is None:
        raise NftError(f"syntax error, unexpected {verb} {kind}")
    handler(table, key, fresh, name, stmt)


def _add_chain(table: _Table, key, fresh, name: str, stmt: str) -> None:
    base = None
    if "{" in stmt:
        m = re.fullmatch(r"\s*type (\w+) hook (\w+) priority (-?\d+)\s*;(?:\s*policy accept\s*;)?\s*",
                         _braces(stmt))
        if m is None:
            raise NftError("syntax error in chain specification")
        base = (m[1], m[2], int(m[3]))
    existing = table.chains.get(name)
    if existing is None:
        table.chains[name] = _Chain(base)
    elif existing.base != base and base is not None:
        raise NftError(f"Could not process rule: {EOPNOTSUPP}")


def _delete_chain(table: _Table, key, fresh, name: str, stmt: str) -> None:
    if name not in table.chains:
        raise NftError(ENOENT)
    target = ("jump", name), ("goto", name)
    for cname, chain in table.chains.items():
        if cname != name and any(s[0] == "verdict" and s[1:] in target or
                                 s[0] == "anonvmap" and {f"jump {name}", f"goto {name}"} & set(s[2].values())
                                 for r in chain.rules for s in r.steps):
            raise NftError(f"Could not process rule: {EBUSY}")
    for c in table.containers.values():
        if c.value_types == ("verdict",) and any(v in (f"jump {name}", f"goto {name}") for v in c.elements.values()):
            raise NftError(f"Could not process rule: {EBUSY}")
    del table.chains[name]


def _flush_chain(table: _Table, key, fresh, name: str, stmt: str) -> None:
    if name not in table.chains:
        raise NftError(ENOENT)
    table.chains[name].rules.clear()


def _delete_container(table: _Table, key, fresh, name: str, stmt: str) -> None:
    if name not in table.containers:
        raise NftError(ENOENT)
    if any(s[0] in _USES_CONTAINER and s[2] == name
           for chain in table.chains.values() for r in chain.rules for s in r.steps):
        raise NftError(f"Could not process rule: {EBUSY}")
    del table.containers[name]
    fresh.discard(key + (name,))


def _add_rule(table: _Table, key, fresh, name: str, stmt: str) -> None:
    chain = table.chains.get(name)
    if chain is None:
        raise NftError(f"Could not process rule: {ENOENT}")
    tokens = stmt.split()[5:]
    steps = _compile(tokens)
    for step in steps:
        targets = [step[2]] if step[0] == "verdict" and step[2] is not None else \
            [v.split()[1] for v in step[2].values() if " " in v] if step[0] == "anonvmap" else []
        if any(t not in table.chains for t in targets):
            raise NftError(f"Could not process rule: {ENOENT}")
        if step[0] in _USES_CONTAINER:
            container = table.containers.get(step[2])
            if container is None:
                raise NftError(f"Could not process rule: {ENOENT}")
            _check_th_quirk(container, key, fresh, step[2])
            if len(step[1]) != len(container.key_types):
                raise NftError("datatype mismatch, set key and expression differ in length")
    chain.rules.append(_Rule(" ".join(tokens), tuple(steps)))


def _check_th_quirk(container: _Container, key, fresh, name: str) -> None:
    value_decl = container.decl.partition(" : ")[2]
    if container.decl.startswith("typeof") and re.search(r"\bth ", value_decl) and key + (name,) not in fresh:
        raise NftError("conflicting protocols specified: ip vs. th")


def _add_container(kind: str):
    def add(table: _Table, key, fresh, name: str, stmt: str) -> None:
        clauses = [" ".join(c.split()) for c in _braces(stmt).split(";") if c.strip()]
        if not clauses:
            raise NftError(f"syntax error in {kind} declaration")
        how, _, spec = clauses[0].partition(" ")
        keypart, _, valuepart = spec.partition(" : ")
        options = dict(c.partition(" ")[::2] for c in clauses[1:])
        if how not in ("type", "typeof") or (kind == "map") != bool(valuepart) \
                or set(options) - {"flags", "timeout"}:
            raise NftError(f"syntax error in {kind} declaration")
        decl = "; ".join(clauses)
        existing = table.containers.get(name)
        if existing is not None:
            if existing.kind != kind or existing.decl != decl:
                raise NftError(f"Could not process rule: {EEXIST}")
            _check_th_quirk(existing, key, fresh, name)
            return
        key_types, value_types = _datatypes(how, keypart), _datatypes(how, valuepart)
        if any(t not in DATATYPES for t in key_types + value_types):
            raise NftError(f"unknown datatype in {decl!r}")
        table.containers[name] = _Container(kind, decl, key_types, value_types,
                                            interval="interval" in options.get("flags", "").split(","))
        fresh.add(key + (name,))
    return add


def _datatypes(how: str, part: str) -> tuple[str, ...]:
    """The datatypes of a declaration's key or value part ("" -> ())."""
    if not part:
        return ()
    exprs = part.split(" . ")
    if how == "type":
        return tuple(exprs)
    return tuple(TYPEOF_TYPES.get("numgen" if e.startswith("numgen ") else e, e) for e in exprs)


def _elements(table: _Table, name: str, stmt: str):
    container = table.containers.get(name)
    if container is None:
        raise NftError(f"Could not process rule: {ENOENT}")
    items = [" ".join(e.split()) for e in _braces(stmt).split(",")]
    return container, [e for e in items if e]


def _atoms(text: str, types: tuple[str, ...], interval: bool = False) -> str:
    atoms = text.split(" . ") if types != ("verdict",) else [text]
    if len(atoms) != len(types):
        raise NftError(f"syntax error, {text!r} does not match {' . '.join(types)}")
    try:
        return " . ".join(_prefix(a) if interval and t == "ipv4_addr" and "/" in a else DATATYPES[t](a)
                          for t, a in zip(types, atoms))
    except ValueError:
        raise NftError(f"Could not parse {' . '.join(types)}: {text!r}") from None


def _prefix(atom: str) -> str:
    """A prefix in an interval set; nft refuses one with host bits set."""
    net = ipaddress.IPv4Network(atom)
    return str(net.network_address) if net.prefixlen == 32 else str(net)


def _overlap(a: str, b: str, types: tuple[str, ...]) -> bool:
    """Whether two interval-set keys overlap (address atoms as prefixes, the rest equal)."""
    def net(atom: str, t: str):
        return ipaddress.IPv4Network(atom) if t == "ipv4_addr" else atom
    pairs = [(net(x, t), net(y, t)) for x, y, t in zip(a.split(" . "), b.split(" . "), types)]
    return all(x.overlaps(y) if isinstance(x, ipaddress.IPv4Network) else x == y for x, y in pairs)


def _add_element(table: _Table, key, fresh, name: str, stmt: str) -> None:
    container, items = _elements(table, name, stmt)
    for item in items:
        k, sep, v = item.partition(" : ")
        options = re.search(r"( (timeout|expires) \d+s)+$", k)
        if options:
            if "timeout" not in container.decl:
                raise NftError("Could not process rule: Invalid argument")  # a set without timeouts
            k = k[:options.start()]
        if bool(sep) != (container.kind == "map"):
            raise NftError(f"syntax error in element {item!r}")
        k = _atoms(k, container.key_types, container.interval)
        value = _atoms(v, container.value_types) if sep else None
        if value is not None and container.value_types == ("verdict",) and " " in value \
                and value.split()[1] not in table.chains:
            raise NftError(f"Could not process rule: {ENOENT}")
        if k in container.elements and container.elements[k] != value:
            raise NftError(f"Could not process rule: {EEXIST}")
        if container.interval and k not in container.elements and any(
                _overlap(k, other, container.key_types) for other in container.elements):
            raise NftError(f"Could not process rule: {EEXIST}")  # intervals may not overlap
        container.elements[k] = value


def _delete_element(table: _Table, key, fresh, name: str, stmt: str) -> None:
    container, items = _elements(table, name, stmt)
    for item in items:
        k = _atoms(item.partition(" : ")[0], container.key_types, container.interval)
        if container.elements.pop(k, _MISSING) is _MISSING:
            raise NftError(f"Could not process rule: {ENOENT}")


_MISSING = object()

_HANDLERS = {
    ("add", "chain"): _add_chain,
    ("delete", "chain"): _delete_chain,
    ("flush", "chain"): _flush_chain,
    ("delete", "set"): _delete_container,
    ("delete", "map"): _delete_container,
    ("add", "rule"): _add_rule,
    ("add", "set"): _add_container("set"),
    ("add", "map"): _add_container("map"),
    ("add", "element"): _add_element,
    ("delete", "element"): _delete_element,
}


# --- rules ---------------------------------------------------------------------------------
# A rule compiles to steps:
#   ("cmp", expr, "=="|"!=", literal)    ("in", expr, set, negated)  ("mask", expr, mask, op, value)
#   ("vmap", expr, map)    ("anonvmap", expr, {value: verdict})    ("dnat", expr, map)
#   ("dnatto", "ip:port")  ("update", expr, set)    ("mark", "or"|"xor", value)    ("masquerade",)
#   ("verdict", "accept"|"drop"|"reject"|"return"|"jump"|"goto", chain or None)
# where expr is a tuple of field names (a concatenation).

FIELDS = {("ip", "saddr"), ("ip", "daddr"), ("meta", "l4proto"), ("meta", "mark"), ("th", "dport"),
          ("tcp", "dport"), ("udp", "dport"), ("ct", "state"), ("ct", "status"), ("fib", "daddr", "type"),
          ("fib", "saddr", "type")}
_USES_CONTAINER = ("in", "vmap", "dnat", "update")
MARK_OPS = {"or": "or", "|": "or", "xor": "xor", "^": "xor"}


def _compile(tokens: list[str]) -> list[tuple]:
    steps: list[tuple] = []
    i = 0
    try:
        while i < len(tokens):
            t = tokens[i]
            if t in VERDICTS or t == "reject":
                steps.append(("verdict", t, None))
                i += 1
            elif t in ("jump", "goto"):
                steps.append(("verdict", t, tokens[i + 1]))
                i += 2
            elif t == "masquerade":
                i += 2 if tokens[i + 1:i + 2] == ["fully-random"] else 1
                steps.append(("masquerade",))
            elif t == "dnat":
                if tokens[i + 1:i + 3] != ["ip", "to"]:
                    raise NftError("syntax error, expected dnat ip to")
                if re.fullmatch(r"[\d.]+:\d+", tokens[i + 3]):
                    if not any(s[0] == "cmp" and s[1] == ("meta l4proto",) for s in steps):
                        raise NftError("transport protocol mapping is only valid after transport protocol match")
                    ip, port = tokens[i + 3].split(":")
                    steps.append(("dnatto", f"{_ipv4(ip)}:{_number(1 << 16)(port)}"))
                    i += 4
                    continue
                expr, i = _expr(tokens, i + 3, steps)
                steps.append(("dnat", expr, _set_name(tokens, i, "map")))
                i += 2
            elif t == "update":
                name = tokens[i + 1]
                if not name.startswith("@") or tokens[i + 2] != "{":
                    raise NftError("syntax error, expected update @set { expr }")
                expr, i = _expr(tokens, i + 3, steps)
                if tokens[i] != "}":
                    raise NftError("syntax error, expected }")
                steps.append(("update", expr, name[1:]))
                i += 1
            else:
                expr, i = _expr(tokens, i, steps)
                nxt = tokens[i]
                if nxt == "vmap" and tokens[i + 1] == "{":
                    end = tokens.index("}", i)
                    pairs = [e.split(" : ") for e in " ".join(tokens[i + 2:end]).split(",")]
                    steps.append(("anonvmap", expr, {k.strip(): _verdict(v.strip()) for k, v in pairs}))
                    i = end + 1
                elif nxt == "vmap":
                    steps.append(("vmap", expr, _set_name(tokens, i, "vmap")))
                    i += 2
                elif nxt == "set" and expr == ("meta mark",) and tokens[i + 1:i + 3] == ["meta", "mark"]:
                    steps.append(("mark", MARK_OPS[tokens[i + 3]], int(tokens[i + 4], 0)))
                    i += 5
                elif nxt.startswith("@"):
                    steps.append(("in", expr, nxt[1:], False))
                    i += 1
                elif nxt in ("==", "!=") and tokens[i + 1].startswith("@"):
                    steps.append(("in", expr, tokens[i + 1][1:], nxt == "!="))
                    i += 2
                elif nxt == "&":
                    steps.append(("mask", expr, int(tokens[i + 1], 0), tokens[i + 2], int(tokens[i + 3], 0)))
                    i += 4
                elif nxt in ("==", "!="):
                    steps.append(("cmp", expr, nxt, tokens[i + 1]))
                    i += 2
                else:
                    steps.append(("cmp", expr, "==", nxt))
                    i += 1
    except (IndexError, KeyError, ValueError):
        raise NftError(f"syntax error in rule {' '.join(tokens)!r}") from None
    if any(s[0] == "mask" and s[3] not in ("==", "!=") for s in steps):
        raise NftError(f"syntax error in rule {' '.join(tokens)!r}")
    return steps


def _set_name(tokens: list[str], i: int, keyword: str) -> str:
    if tokens[i] != keyword or not tokens[i + 1].startswith("@"):
        raise NftError(f"syntax error, expected {keyword} @name")
    return tokens[i + 1][1:]


def _expr(tokens: list[str], i: int, steps: list[tuple]) -> tuple[tuple[str, ...], int]:
    """A concatenation of fields starting at tokens[i]; `tcp dport` and `udp dport` add their
    `meta l4proto` dependency to `steps`, as nft does."""
    parts = []
    while True:
        if tokens[i] == "numgen" and tokens[i + 1:i + 3] == ["random", "mod"]:
            parts.append(f"numgen {int(tokens[i + 3])}")
            i += 4
        else:
            for width in (3, 2):
                if tuple(tokens[i:i + width]) in FIELDS:
                    parts.append(" ".join(tokens[i:i + width]))
                    i += width
                    break
            else:
                raise NftError(f"syntax error, unexpected {tokens[i]}")
            if parts[-1] in ("tcp dport", "udp dport"):
                steps.append(("cmp", ("meta l4proto",), "==", parts[-1].split()[0]))
        if tokens[i:i + 1] != ["."]:
            return tuple(parts), i
        i += 1


# --- tracer --------------------------------------------------------------------------------

class Outcome(NamedTuple):
    verdict: str  # accept | drop | reject
    dnat: str | None  # "ip:port" the first packet was DNATed to
    masquerade: bool
    updates: tuple = ()  # (set name, element) written by `update @set`
    local: bool = False  # accepted for a local address: a socket of the node gets it

    def __str__(self) -> str:
        if self.verdict != "accept":
            return self.verdict
        if self.dnat or self.masquerade:
            return f"{f'dnat {self.dnat}' if self.dnat else 'accept'} masquerade={self.masquerade}"
        return "accept local" if self.local else "accept unchanged"


@dataclass(frozen=True)
class Result:
    """Every possible outcome of one traced packet (several when numgen picks an endpoint)."""

    outcomes: tuple[Outcome, ...]

    @property
    def verdict(self) -> str:
        """'dnat', 'accept', 'drop' or 'reject' when all outcomes agree, else 'mixed'."""
        kinds = {"dnat" if o.verdict == "accept" and o.dnat else o.verdict for o in self.outcomes}
        return kinds.pop() if len(kinds) == 1 else "mixed"

    @property
    def endpoints(self) -> frozenset[str]:
        return frozenset(o.dnat for o in self.outcomes if o.dnat)

    @property
    def masquerade(self) -> bool | None:
        """True/False when all outcomes agree, else None."""
        masq = {o.masquerade for o in self.outcomes}
        return masq.pop() if len(masq) == 1 else None

    @property
    def local(self) -> bool | None:
        """Whether the packet reaches a socket of the node (True/False when all outcomes
        agree, else None)."""
        local = {o.local for o in self.outcomes}
        return local.pop() if len(local) == 1 else None

    def __str__(self) -> str:
        groups: dict[tuple[str, bool, bool], list[str]] = {}
        for o in self.outcomes:
            groups.setdefault((o.verdict, o.masquerade, o.local), []).append(o.dnat or "")
        out = []
        for (verdict, masq, local), targets in groups.items():
            targets = [t for t in targets if t]
            if verdict != "accept" or not targets:
                out.append(str(Outcome(verdict, None, masq, local=local)))
            elif len(targets) == 1:
                out.append(f"dnat {targets[0]} masquerade={masq}")
            else:
                out.append(f"dnat one of {', '.join(targets)} masquerade={masq}")
        return " | ".join(out)


@dataclass
class _Packet:
    saddr: str
    daddr: str
    proto: str
    dport: int
    local: frozenset[str]
    mark: int = 0
    dnat: str | None = None
    masquerade: bool = False
    updates: list = field(default_factory=list)

    def is_local(self, addr: str) -> bool:
        return addr in self.local or addr.startswith("127.")


class _Choices:
    """Replays a prefix of numgen choices, then picks 0 and records what was open."""

    def __init__(self, prefix: tuple[int, ...]):
        self.prefix, self.made, self.sizes = prefix, [], []

    def pick(self, n: int) -> int:
        v = self.prefix[len(self.made)] if len(self.made) < len(self.prefix) else 0
        self.made.append(v)
        self.sizes.append(n)
        return v


HOOKS = ("prerouting", "output")


def trace(model: Model, src_ip: str, dst_ip: str, proto: str, dport: int,
          hook: str = "prerouting", local_ips=()) -> Result:
    """Where the first packet of a `proto` connection from src_ip to dst_ip:dport ends up.

    hook="prerouting": it arrives on an interface (from a pod or off the node);
    hook="output": a process on the node sends it. `local_ips` are the node's addresses
    (127.0.0.0/8 is always local)."""
    if hook not in HOOKS:
        raise ValueError(f"hook must be one of {HOOKS}")
    outcomes = set()
    pending = [()]
    while pending:
        choices = _Choices(pending.pop())
        pkt = _Packet(src_ip, dst_ip, proto, dport, frozenset(local_ips))
        verdict = _walk(model, hook, pkt, choices) or "accept"
        outcomes.add(Outcome(verdict, pkt.dnat, pkt.masquerade, tuple(pkt.updates),
                             verdict == "accept" and pkt.is_local(pkt.daddr)))
        for depth in range(len(choices.prefix), len(choices.made)):
            pending.extend(tuple(choices.made[:depth]) + (alt,) for alt in range(1, choices.sizes[depth]))
    return Result(tuple(sorted(outcomes, key=lambda o: (o.verdict, not o.masquerade, _natural(o.dnat or "")))))


def _walk(model: Model, hook: str, pkt: _Packet, choices: _Choices) -> str | None:
    path = ["prerouting"] if hook == "prerouting" else ["output"]
    for h in path:
        if (v := _hook(model, h, pkt, choices)) is not None:
            return v
    if hook == "prerouting":
        rest = ["input"] if pkt.is_local(pkt.daddr) else ["forward", "postrouting"]
    else:
        rest = ["postrouting", "input"] if pkt.is_local(pkt.daddr) else ["postrouting"]
    for h in rest:
        if (v := _hook(model, h, pkt, choices)) is not None:
            return v
    return None


def _hook(model: Model, hook: str, pkt: _Packet, choices: _Choices) -> str | None:
    """Run the base chains of `hook` in priority order; 'drop'/'reject' ends the packet."""
    chains = sorted(((table, c) for table in model.tables.values()
                     for c in table.chains.values() if c.base and c.base[1] == hook),
                    key=lambda tc: tc[1].base[2])
    for table, chain in chains:
        if (v := _run(table, chain, pkt, choices)) in ("drop", "reject"):
            return v
    return None


def _run(table: _Table, chain: _Chain, pkt: _Packet, choices: _Choices, depth: int = 0) -> str | None:
    """A chain's verdict: 'accept', 'drop' or 'reject', or None when it ends or returns."""
    if depth > 16:
        raise NftError("too many nested jumps")
    for rule in chain.rules:
        v = _rule(table, rule.steps, pkt, choices)
        if v is None:
            continue
        if v == "return":
            return None
        kind, _, target = v.partition(" ")
        if kind == "jump":
            if (res := _run(table, table.chains[target], pkt, choices, depth + 1)) is not None:
                return res
            continue
        if kind == "goto":
            return _run(table, table.chains[target], pkt, choices, depth + 1)
        return v
    return None


def _field(name: str, pkt: _Packet, choices: _Choices):
    if name.startswith("numgen "):
        return str(choices.pick(int(name.split()[1])))
    return {
        "ip saddr": lambda: pkt.saddr,
        "ip daddr": lambda: pkt.daddr,
        "meta l4proto": lambda: pkt.proto,
        "meta mark": lambda: pkt.mark,
        "th dport": lambda: str(pkt.dport),
        "tcp dport": lambda: str(pkt.dport),
        "udp dport": lambda: str(pkt.dport),
        "ct state": lambda: frozenset({"new"}),
        "ct status": lambda: frozenset({"dnat"} if pkt.dnat else ()),
        "fib daddr type": lambda: "local" if pkt.is_local(pkt.daddr) else "unicast",
        "fib saddr type": lambda: "local" if pkt.is_local(pkt.saddr) else "unicast",
    }[name]()


def _key(expr: tuple[str, ...], pkt: _Packet, choices: _Choices) -> str:
    return " . ".join(_field(f, pkt, choices) for f in expr)


def _matches(value, literal: str) -> bool:
    if isinstance(value, frozenset):
        return literal in value
    if "/" in literal:
        return ipaddress.IPv4Address(value) in ipaddress.IPv4Network(literal)
    return value == literal


def _rule(table: _Table, steps: tuple, pkt: _Packet, choices: _Choices) -> str | None:
    """Run one rule: None if it does not match (or falls through), else its verdict
    ('accept', 'drop', 'reject', 'return', 'jump X', 'goto X')."""
    for step in steps:
        op = step[0]
        if op == "cmp":
            if _matches(_field(step[1][0], pkt, choices), step[3]) != (step[2] == "=="):
                return None
        elif op == "mask":
            _, expr, mask, cmp, value = step
            if ((_field(expr[0], pkt, choices) & mask) == value) != (cmp == "=="):
                return None
        elif op == "in":
            if table.containers[step[2]].contains(_key(step[1], pkt, choices)) == step[3]:
                return None
        elif op == "vmap":
            return table.containers[step[2]].elements.get(_key(step[1], pkt, choices))
        elif op == "anonvmap":
            return step[2].get(_key(step[1], pkt, choices))
        elif op == "update":
            pkt.updates.append((step[2], _key(step[1], pkt, choices)))
        elif op == "dnatto":
            ip, port = step[1].split(":")
            pkt.daddr, pkt.dport, pkt.dnat = ip, int(port), step[1]
            return "accept"
        elif op == "dnat":
            v = table.containers[step[2]].elements.get(_key(step[1], pkt, choices))
            if v is None:
                return None
            ip, port = v.split(" . ")
            pkt.daddr, pkt.dport, pkt.dnat = ip, int(port), f"{ip}:{port}"
            return "accept"
        elif op == "mark":
            pkt.mark = pkt.mark | step[2] if step[1] == "or" else pkt.mark ^ step[2]
        elif op == "masquerade":
            pkt.masquerade = True
            return "accept"
        else:  # verdict
            return step[1] if step[2] is None else f"{step[1]} {step[2]}"
    return None
