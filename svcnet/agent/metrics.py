"""Prometheus metrics of the agent, in the text exposition format (no client library needed).

Metrics register themselves in REGISTRY when created; `render()` is the body of GET /metrics.
"""

from __future__ import annotations

import bisect
import threading

REGISTRY: list = []


# Latency buckets (seconds) fine where svcnet's latencies live: a partial nftables sync or an
# endpoint change programmed takes 5-15 ms, a pod start 100-200 ms; coarse up to a minute.
LATENCY_BUCKETS = [0.0005, 0.001, 0.002, 0.003, 0.004, 0.005, 0.006, 0.007, 0.008, 0.009,
                   0.010, 0.011, 0.012, 0.014, 0.016, 0.018, 0.020, 0.025, 0.030, 0.040, 0.050,
                   0.075, 0.1, 0.125, 0.15, 0.175, 0.2, 0.25, 0.3, 0.4, 0.5, 0.75, 1, 1.5, 2,
                   3, 5, 10, 30, 60]


def _fmt(v: float) -> str:
    return "+Inf" if v == float("inf") else format(v, "g")


class Counter:
    def __init__(self, name: str, help_: str):
        self.name, self.help, self.value = name, help_, 0.0
        REGISTRY.append(self)

    def inc(self, by: float = 1.0) -> None:
        self.value += by

    def render(self) -> str:
        return (f"# HELP {self.name} {self.help}\n# TYPE {self.name} counter\n"
                f"{self.name} {_fmt(self.value)}\n")


class Histogram:
    def __init__(self, name: str, help_: str, buckets: list[float]):
        self.name, self.help = name, help_
        self.bounds = sorted(buckets)
        self.counts = [0] * (len(self.bounds) + 1)
        self.sum = 0.0
        self.count = 0
        self._lock = threading.Lock()
        REGISTRY.append(self)

    def observe(self, value: float) -> None:
        with self._lock:
            self.counts[bisect.bisect_left(self.bounds, value)] += 1
            self.sum += value
            self.count += 1

    def render(self) -> str:
        lines = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} histogram"]
        running = 0
        for bound, n in zip(self.bounds + [float("inf")], self.counts):
            running += n
            lines.append(f'{self.name}_bucket{{le="{_fmt(bound)}"}} {running}')
        lines.append(f"{self.name}_sum {self.sum}")
        lines.append(f"{self.name}_count {self.count}")
        return "\n".join(lines) + "\n"


def family(name: str, help_: str, kind: str, samples: list[str]) -> str:
    """One metric family in the text format: HELP, TYPE and its sample lines (none: nothing,
    as the client libraries leave out a labelled family with no series yet)."""
    if not samples:
        return ""
    return f"# HELP {name} {help_}\n# TYPE {name} {kind}\n" + "\n".join(samples) + "\n"


def render() -> str:
    return "".join(m.render() for m in REGISTRY)
