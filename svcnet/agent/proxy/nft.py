"""nftables objects as plain data, and transactions whose text is `nft -f` input.

After kubernetes-sigs/knftables: a `Transaction` is a queue of (verb, object) for one table; its
`text()` is what `nft -f -` reads, so the kernel applies it all or nothing. Objects do not name
their table: the transaction does (`family`, `table`).

Verbs are `add` (create if missing; an existing identical object is left alone), `delete`
(fails if missing) and `flush` (empty a chain of its rules, keeping the chain). Elements
travel in batches, one `Elements` per set or map, written as one statement with one element
per line: nft parses that far faster than one statement per element, and an error still points
at the line of the offending element.

`NftError` is what both the real applier (apply.py) and the in-memory model (model.py) raise when
nft would refuse a transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, NamedTuple, Union


class NftError(Exception):
    """nft refused a transaction; the message is nft's stderr (or the model's imitation of it)."""


@dataclass(frozen=True, slots=True)
class Table:
    """The transaction's own table."""


@dataclass(frozen=True, slots=True)
class Chain:
    """A chain; a base chain when `hook` is set (then `type` and `priority` are required)."""

    name: str
    type: str | None = None
    hook: str | None = None
    priority: int | None = None

    def spec(self) -> str:
        if self.hook is None:
            return ""
        return f" {{ type {self.type} hook {self.hook} priority {self.priority} ; }}"


@dataclass(frozen=True, slots=True)
class Rule:
    chain: str
    rule: str


@dataclass(frozen=True, slots=True)
class Set:
    """A set declared by `type` (e.g. "ipv4_addr") or by `typeof` (e.g. "ip daddr"), with
    optional `flags` ("interval", "dynamic,timeout") and default element `timeout` (seconds)."""

    name: str
    type: str = ""
    typeof: str = ""
    flags: str = ""
    timeout: int | None = None

    def spec(self) -> str:
        out = f" {{ type {self.type} ;" if self.type else f" {{ typeof {self.typeof} ;"
        if self.flags:
            out += f" flags {self.flags} ;"
        if self.timeout is not None:
            out += f" timeout {self.timeout}s ;"
        return out + " }"


@dataclass(frozen=True, slots=True)
class Map(Set):
    """A map; `type`/`typeof` include the ` : ` and the value's type."""


class Elements(NamedTuple):
    """Elements of set or map `container`: key -> value, both nft text: a key such as
    "10.96.0.5 . tcp . 80", a value such as "10.244.0.2 . 8080" or "goto ep-tcp-3"; None for
    set elements (values are ignored by delete). A batch rather than one object per element: a
    full sync writes 10^5 of them, straight from the State's dicts."""

    container: str
    items: Mapping[str, str | None]


Object = Union[Table, Chain, Rule, Set, Map, Elements]

_KEYWORD = {Chain: "chain", Set: "set", Map: "map"}


class Transaction:
    """Operations on table `family` `table`, in order."""

    def __init__(self, family: str = "ip", table: str = "svcnet"):
        self.family = family
        self.table = table
        self.ops: list[tuple[str, Object]] = []

    def add(self, obj: Object) -> None:
        self.ops.append(("add", obj))

    def delete(self, obj: Object) -> None:
        if isinstance(obj, Rule):
            raise TypeError("delete of a Rule is not supported")
        self.ops.append(("delete", obj))

    def flush(self, chain: Chain) -> None:
        """Remove every rule of `chain` (then add its new rules)."""
        self.ops.append(("flush", chain))

    def __len__(self) -> int:
        return len(self.ops)

    def text(self) -> str:
        where = f"{self.family} {self.table}"
        out: list[str] = []
        for verb, obj in self.ops:
            if type(obj) is Elements:
                items = obj.items
                if not items:
                    continue
                out.append(f"{verb} element {where} {obj.container} {{\n")
                if verb == "add" and next(iter(items.values())) is not None:
                    out.append(_map_lines(items))
                else:
                    out.append("\t" + ",\n\t".join(items) + ",\n")
                out.append("}\n")
            elif type(obj) is Table:
                out.append(f"{verb} table {where}\n")
            elif type(obj) is Rule:
                out.append(f"{verb} rule {where} {obj.chain} {obj.rule}\n")
            elif verb in ("delete", "flush"):
                out.append(f"{verb} {_KEYWORD[type(obj)]} {where} {obj.name}\n")
            else:
                out.append(f"add {_KEYWORD[type(obj)]} {where} {obj.name}{obj.spec()}\n")
        return "".join(out)


def _map_lines(items: Mapping[str, str | None]) -> str:
    """"\tkey : value,\n" per map element. A full sync writes 10^5 of them: interleaving the
    keys and values into a list of pieces and joining it once is ~1.5x faster than one f-string
    per element."""
    pieces = ["\t", "", " : ", "", ",\n"] * len(items)
    pieces[1::5] = items
    pieces[3::5] = items.values()
    return "".join(pieces)
