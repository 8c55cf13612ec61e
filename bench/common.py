"""Helpers shared by the benchmarks (one copy of each): quantiles, per-process CPU and memory from
/proc, waiting for processes to go idle, the machine description every result carries, wrk.

Every benchmark reads time from time.perf_counter and CPU from /proc/PID/stat, so figures taken by
different scripts in one `bench/run` are comparable.
"""

from __future__ import annotations

import math
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = ROOT / "bench" / "results"

IDLE_PCT, IDLE_WINDOW = 5.0, 0.5  # a process is idle below 5% of a core over 0.5 s


def percentile(values: list[float], q: float) -> float | None:
    """The nearest-rank q-quantile (0 <= q <= 1) of `values`; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def median(values: list[float]) -> float | None:
    """The middle value (mean of the two middle ones for an even count); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time of process `pid` so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_cpu_seconds() -> float:
    """Busy CPU time of the whole machine so far (every process, every core, steal included)."""
    with open("/proc/stat") as f:
        user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, f.readline().split()[1:9])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def children(pid: int) -> list[int]:
    """The direct children of process `pid` (of all its threads)."""
    out = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            out += [int(p) for p in (task / "children").read_text().split()]
        except OSError:
            pass
    return out


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def settle(pids: list[int], timeout: float = 600.0) -> float:
    """Wait until every process in `pids` stays below IDLE_PCT of a core over IDLE_WINDOW seconds,
    in the same window (so that work left by one phase is not billed to the next); the seconds
    waited. Processes that are gone count as idle."""
    start = time.perf_counter()

    def cpu(p: int) -> float:
        try:
            return process_cpu_seconds(p)
        except OSError:
            return 0.0

    while time.perf_counter() - start < timeout:
        before = [cpu(p) for p in pids]
        time.sleep(IDLE_WINDOW)
        if all(cpu(p) - b < IDLE_PCT / 100 * IDLE_WINDOW for p, b in zip(pids, before)):
            break
    return time.perf_counter() - start


def memory_mb(pid: int) -> dict:
    """VmRSS and VmHWM of process `pid` in MB (10^6 bytes)."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0]) * 1024 / 1e6
    return out


def machine() -> dict:
    """What the figures were measured on: CPU, cores, memory, kernel, nft, Python, commit."""
    model = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                  if line.startswith("model name")), "")

    def out(*argv: str) -> str:
        try:
            return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True).stdout.strip()
        except OSError:
            return ""

    mem = next((line.split()[1] for line in open("/proc/meminfo") if line.startswith("MemTotal")), "0")
    commit = out("git", "rev-parse", "--short", "HEAD") + (
        "+dirty" if out("git", "status", "--porcelain", "-uno") else "")
    return {"nproc": os.cpu_count(), "cpu_model": model, "mem_gb": round(int(mem) / 1e6, 1),
            "kernel": platform.release(), "python": platform.python_version(),
            "nft": out("nft", "--version"), "commit": commit}


def wrk(prefix: list[str], url: str, seconds: float, threads: int = 2, connections: int = 32) -> dict:
    """One wrk run (`prefix` is e.g. `ip netns exec NS`): requests/s, errors, latency p50/p99."""
    p = subprocess.run([*prefix, "wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds:g}s",
                        "--latency", url], capture_output=True, text=True, timeout=seconds + 60)
    m = re.search(r"Requests/sec:\s+([\d.]+)", p.stdout)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)|Socket errors: (.*)", p.stdout)

    def latency_ms(q: str) -> float | None:
        lm = re.search(rf"^\s+{q}%\s+([\d.]+)(us|ms|s)\s*$", p.stdout, re.M)
        if not lm:
            return None
        return float(lm.group(1)) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[lm.group(2)]

    return {"rps": float(m.group(1)) if m else None, "errors": errors.group(0) if errors else None,
            "p50_ms": latency_ms("50"), "p99_ms": latency_ms("99"),
            "raw": None if m else p.stdout[-600:] + p.stderr[-300:]}
