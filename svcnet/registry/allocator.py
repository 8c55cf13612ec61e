"""Allocation ranges for ClusterIPs and NodePorts (pure).

A range maps values (IPs, ports) to offsets 0..size-1. Each range is split in two bands, as
KEP-3070 (service IPs) and KEP-3668 (NodePorts) do: the lower "static" band of `band_offset`
values is meant for users who pick values by hand, so dynamic picks start at a random offset in
the upper band and scan upwards with wrap-around, and fall back to the lower band only when the
upper band is full. Ranges smaller than 16 values are not split.

    IPv4 service range: offsets cover the usable addresses (network and broadcast excluded);
                        band offset = min(max(16, size/16), 256)
    NodePort range:     band offset = min(max(16, size/32), 128)   (30000-32767 -> 86)

The allocated set lives elsewhere (store keys, see service_alloc.py); these functions only map
and pick, so they are tested exhaustively without I/O.
"""

from __future__ import annotations

import ipaddress
import random
from dataclasses import dataclass
from typing import Callable, Collection


class RangeFull(Exception):
    pass


def _band_offset(size: int, divisor: int, cap: int) -> int:
    if size < 16:
        return 0
    return min(max(16, size // divisor), cap)


def pick_offset(size: int, band: int, taken: Callable[[int], bool],
                rng: random.Random | None = None) -> int:
    """A free offset: random start in [band, size) scanning with wrap-around, then the same in
    [0, band). Raises RangeFull."""
    rng = rng or random
    for lo, hi in ((band, size), (0, band)):
        n = hi - lo
        if n <= 0:
            continue
        start = rng.randrange(n)
        for i in range(n):
            off = lo + (start + i) % n
            if not taken(off):
                return off
    raise RangeFull()


@dataclass(frozen=True)
class IPRange:
    cidr: str

    def __post_init__(self) -> None:
        net = ipaddress.ip_network(self.cidr, strict=False)
        object.__setattr__(self, "_net", net)

    @property
    def network(self) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
        return self._net  # type: ignore[attr-defined]

    @property
    def base(self) -> int:
        """The integer of the first usable address (offset 0)."""
        return int(self.network.network_address) + 1

    @property
    def size(self) -> int:
        total = self.network.num_addresses
        if self.network.version == 4:
            return max(total - 2, 0)  # no network, no broadcast address
        return max(total - 1, 0)

    @property
    def band(self) -> int:
        return _band_offset(self.size, 16, 256)

    def contains(self, ip: str) -> bool:
        try:
            off = int(ipaddress.ip_address(ip)) - self.base
        except ValueError:
            return False
        return 0 <= off < self.size

    def offset(self, ip: str) -> int:
        return int(ipaddress.ip_address(ip)) - self.base

    def value(self, offset: int) -> str:
        return str(ipaddress.ip_address(self.base + offset))

    def first(self) -> str:
        return self.value(0)

    def nth(self, n: int) -> str:
        """The n-th address (1-based: nth(1) is the first usable one, nth(10) kube-dns')."""
        return self.value(n - 1)

    def pick(self, allocated: Collection[str], rng: random.Random | None = None) -> str:
        return self.value(pick_offset(self.size, self.band,
                                      lambda o: self.value(o) in allocated, rng))

    def describe(self) -> str:
        return str(self.network)


@dataclass(frozen=True)
class PortRange:
    base: int
    size: int

    @classmethod
    def parse(cls, text: str) -> "PortRange":
        """"30000-32767" or a single port; raises ValueError."""
        lo_s, _, hi_s = text.partition("-")
        lo = int(lo_s)
        hi = int(hi_s) if hi_s else lo
        if not (0 < lo <= hi <= 65535):
            raise ValueError(f"invalid port range {text!r}")
        return cls(lo, hi - lo + 1)

    @property
    def band(self) -> int:
        return _band_offset(self.size, 32, 128)

    def contains(self, port: int) -> bool:
        return self.base <= port < self.base + self.size

    def pick(self, allocated: Collection[int], rng: random.Random | None = None) -> int:
        return self.base + pick_offset(self.size, self.band,
                                       lambda o: self.base + o in allocated, rng)

    def describe(self) -> str:
        return f"{self.base}-{self.base + self.size - 1}"
