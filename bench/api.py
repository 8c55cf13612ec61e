#!/usr/bin/env python3
"""API server benchmark: the performance targets of issue 2, each beside a reference measured in
the same run on the same machine, so the numbers read as ratios rather than absolutes.

What is measured (a real `svcnet server` over HTTPS on 127.0.0.1, fresh data dir, --no-agent):

1. Create throughput. 32 concurrent clients on 32 keep-alive TLS connections POST N Services
   (`b-0` .. `b-N-1`, namespace default, fieldManager=bench): creates/s and per-request p50/p99
   latency. Reference, same client setup, as many requests: GET /healthz (with the bearer token,
   as every request carries it), the HTTP+TLS floor of the server stack; the ratio creates/floor
   says how much of the floor the create path keeps. Connections are opened (TLS handshakes
   done) before timing.
   Also the server's CPU time per request, which depends much less on other load than a rate.
2. LIST of the N Services loaded in 1: `GET /api/v1/services` as plain JSON, as a Table
   (`Accept: application/json;as=Table;v=v1;g=meta.k8s.io`) and paginated with limit=500 (all
   pages, following `continue`); the time from sending the request to the last byte of the body
   (for pages: of the last page, including decoding each page for its continue token), p50 over 5
   runs each. Reference: reading the same rows straight from DIR/state.db with sqlite3 (the
   latest non-deleted row of each Service key, the kine query) and orjson-decoding every value.
3. Watch latency. A watch on default's Services from the current resourceVersion, then W
   sequential merge patches of a label on `b-i`; for each, the time from the PATCH response being
   fully received to the watch event with the same name and resourceVersion arriving (0 if it
   arrived first). p50/p99/max.
4. Server memory: VmRSS from /proc/PID/status when empty (after startup), after loading the N
   Services, and after the LISTs (the worst case; VmHWM, the peak, is shown too).

The load generator runs in a separate process (an aiohttp client on uvloop) so it does not share
the server's event loop; on a 2-core machine server and client get one core each. Each phase
reports the CPU used meanwhile by the server, the client and everything else on the machine (in %
of one core): a large `other` means a busy machine and pessimistic numbers, and is flagged.
Before each phase the script waits for the server to go idle, so that background work left by the
previous one (controllers catching up on the Services just created) is not billed to it; how long
the server stayed busy after the creates is reported.

Full run: N=10,000, W=500 (a few minutes). `--quick`: N=2,000, W=200 (under a minute).
`--server-args` appends arguments to the server's command line (e.g. "--controllers=" for the API
server alone). `--profile FILE` runs the server under cProfile and writes its stats to FILE (the
timings of such a run are inflated by the profiler and are not saved). Results go to stdout as a
table and, with a machine description, to bench/results/api-latest.json; the exit status is 0 when
every target passes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shlex
import shutil
import signal
import socket
import sqlite3
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import (  # noqa: E402
    RESULTS_DIR, machine, machine_cpu_seconds, memory_mb, percentile, process_cpu_seconds, settle)

RESULTS = RESULTS_DIR / "api-latest.json"

CONCURRENCY = 32
LIST_RUNS = 5
PAGE_LIMIT = 500
SERVICES_PREFIX = "/registry/core/services/"
TABLE_ACCEPT = "application/json;as=Table;v=v1;g=meta.k8s.io"
SERVICE_BODY = ('{"apiVersion":"v1","kind":"Service","metadata":{"name":"b-%d","namespace":"default"},'
                '"spec":{"selector":{"app":"x"},"ports":[{"port":80}]}}')
CREATE_PATH = "/api/v1/namespaces/default/services?fieldManager=bench"

TARGET_CREATES = 1000.0  # creates/s, at least
TARGET_LIST_MS = 300.0  # plain LIST of 10,000 Services, below
TARGET_WATCH_P99_MS = 10.0  # below
TARGET_RSS_MB = 150.0  # with 10,000 Services, after a LIST, below
BUSY_OTHER_PCT = 25.0  # CPU use (% of a core) by other processes above which the run is flagged


class CpuWindow:
    """CPU use of the server, of this (client) process and of everything else on the machine
    over a time window, each in % of one core. A large `other` means the numbers were measured
    on a busy machine."""

    def __init__(self, server_pid: int):
        self.pid = server_pid
        self.start = (time.perf_counter(), process_cpu_seconds(server_pid), time.process_time(),
                      machine_cpu_seconds())

    def stop(self) -> dict:
        wall, server, client, total = (now - then for now, then in zip(
            (time.perf_counter(), process_cpu_seconds(self.pid), time.process_time(),
             machine_cpu_seconds()), self.start))
        return {"server_s": server, "server_pct": 100 * server / wall, "client_pct": 100 * client / wall,
                "other_pct": max(0.0, 100 * (total - server - client) / wall)}


# ---- the client process ------------------------------------------------------------------------
# Each phase runs in the client process on a fresh uvloop loop and returns plain data.

def run_phase(name: str, conn: dict, *args) -> dict:
    import uvloop

    return uvloop.run(PHASES[name](conn, *args))


def _session(conn: dict, connections: int):
    import aiohttp

    ctx = ssl.create_default_context(cafile=conn["cafile"])
    connector = aiohttp.TCPConnector(ssl=ctx, limit=connections, keepalive_timeout=300)
    return aiohttp.ClientSession(conn["url"], connector=connector,
                                 headers={"Authorization": f"Bearer {conn['token']}"},
                                 timeout=aiohttp.ClientTimeout(total=300))


async def _throughput(conn: dict, n: int, method: str, path: str, bodies: list[bytes] | None,
                      expected_status: int) -> dict:
    """n requests from CONCURRENCY workers sharing CONCURRENCY keep-alive connections."""
    headers = {"Content-Type": "application/json"}
    async with _session(conn, CONCURRENCY) as s:
        for _ in range(2):  # open every connection before the clock starts
            await asyncio.gather(*(_get_ok(s, "/healthz") for _ in range(CONCURRENCY)))
        latencies: list[float] = []
        failures: list[str] = []
        todo = iter(range(n))

        async def worker() -> None:
            for i in todo:
                start = time.perf_counter()
                async with s.request(method, path, data=bodies[i] if bodies else None,
                                     headers=headers) as r:
                    payload = await r.read()
                latencies.append(time.perf_counter() - start)
                if r.status != expected_status:
                    failures.append(f"{r.status} {payload[:200]!r}")

        cpu = CpuWindow(conn["pid"])
        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
        wall = time.perf_counter() - start
        cpu = cpu.stop()
    return {"requests": n, "seconds": wall, "rate": n / wall,
            "p50_ms": percentile(latencies, 0.50) * 1e3, "p99_ms": percentile(latencies, 0.99) * 1e3,
            "cpu": cpu, "server_cpu_us_per_request": cpu["server_s"] / n * 1e6,
            "failures": len(failures), "first_failure": failures[0] if failures else None}


async def _get_ok(s, path: str, **kw) -> bytes:
    async with s.get(path, **kw) as r:
        payload = await r.read()
    if r.status != 200:
        raise RuntimeError(f"GET {path}: {r.status} {payload[:300]!r}")
    return payload


async def phase_floor(conn: dict, n: int) -> dict:
    return await _throughput(conn, n, "GET", "/healthz", None, 200)


async def phase_create(conn: dict, n: int) -> dict:
    bodies = [(SERVICE_BODY % i).encode() for i in range(n)]
    return await _throughput(conn, n, "POST", CREATE_PATH, bodies, 201)


async def phase_list(conn: dict) -> dict:
    """p50 over LIST_RUNS of each LIST form, on one keep-alive connection."""
    async with _session(conn, 1) as s:
        await _get_ok(s, "/api/v1/services?limit=1")

        async def plain() -> bytes:
            return await _get_ok(s, "/api/v1/services", headers={"Accept": "application/json"})

        async def table() -> bytes:
            return await _get_ok(s, "/api/v1/services", headers={"Accept": TABLE_ACCEPT})

        async def paged() -> list[dict]:
            pages, token = [], ""
            while True:
                path = f"/api/v1/services?limit={PAGE_LIMIT}" + (f"&continue={token}" if token else "")
                pages.append(orjson.loads(await _get_ok(s, path)))
                token = pages[-1]["metadata"].get("continue", "")
                if not token:
                    return pages

        def describe(name: str, result) -> dict:
            if name == "paged":
                return {"pages": len(result), "items": sum(len(p["items"]) for p in result)}
            return {"bytes": len(result),
                    "items": len(orjson.loads(result)["rows" if name == "table" else "items"])}

        out = {}
        cpu = CpuWindow(conn["pid"])
        for name, fn in (("plain", plain), ("table", table), ("paged", paged)):
            runs = []
            for _ in range(LIST_RUNS):
                start = time.perf_counter()
                result = await fn()
                runs.append((time.perf_counter() - start) * 1e3)
            out[name] = {"p50_ms": percentile(runs, 0.5), "runs_ms": runs, **describe(name, result)}
        out["cpu"] = cpu.stop()
    return out


async def phase_watch(conn: dict, writes: int) -> dict:
    """Latency from each PATCH response to its watch event, over `writes` sequential patches."""
    import aiohttp

    loop = asyncio.get_running_loop()
    async with _session(conn, 2) as s:  # one connection for the watch, one for the writes
        listing = orjson.loads(await _get_ok(s, "/api/v1/namespaces/default/services?limit=1"))
        rv = listing["metadata"]["resourceVersion"]
        arrivals: dict[tuple[str, str], float] = {}
        waiters: dict[tuple[str, str], asyncio.Future] = {}
        watch = await s.get(f"/api/v1/namespaces/default/services?watch=true&resourceVersion={rv}",
                            timeout=aiohttp.ClientTimeout(total=None, sock_read=None))

        async def read_events() -> None:
            async for line in watch.content:
                now = time.perf_counter()
                meta = orjson.loads(line)["object"]["metadata"]
                key = (meta.get("name", ""), meta.get("resourceVersion", ""))
                arrivals[key] = now
                waiter = waiters.pop(key, None)
                if waiter is not None:
                    waiter.set_result(now)

        reader = asyncio.create_task(read_events())
        latencies = []
        cpu = CpuWindow(conn["pid"])
        try:
            for i in range(writes):
                name = f"b-{i}"
                body = orjson.dumps({"metadata": {"labels": {"bench-watch": str(i)}}})
                async with s.patch(f"/api/v1/namespaces/default/services/{name}", data=body,
                                   headers={"Content-Type": "application/merge-patch+json"}) as r:
                    payload = await r.read()
                received = time.perf_counter()
                if r.status != 200:
                    raise RuntimeError(f"PATCH {name}: {r.status} {payload[:300]!r}")
                key = (name, orjson.loads(payload)["metadata"]["resourceVersion"])
                arrived = arrivals.get(key)
                if arrived is None:
                    waiters[key] = loop.create_future()
                    arrived = await asyncio.wait_for(waiters[key], 10)
                latencies.append(max(0.0, arrived - received) * 1e3)
        finally:
            reader.cancel()
            watch.close()
        cpu = cpu.stop()
    return {"writes": writes, "cpu": cpu, "p50_ms": percentile(latencies, 0.5),
            "p99_ms": percentile(latencies, 0.99), "max_ms": max(latencies),
            "zero": sum(1 for x in latencies if x == 0.0)}


PHASES = {"floor": phase_floor, "create": phase_create, "list": phase_list, "watch": phase_watch}


# ---- the server --------------------------------------------------------------------------------


class Server:
    """One `svcnet server` process on a free loopback port, with its own data dir."""

    def __init__(self, work: Path, profile: Path | None, extra_args: list[str]):
        self.data_dir = work / "data"
        self.log_path = work / "server.log"
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.url = f"https://127.0.0.1:{self.port}"
        python = [sys.executable] + (["-m", "cProfile", "-o", str(profile)] if profile else [])
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                python + ["-m", "svcnet.cli.main", "server", "--data-dir", str(self.data_dir),
                          "--bind", "127.0.0.1", "--port", str(self.port), "--node-ip", "127.0.0.1",
                          "--no-agent", *extra_args],
                stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log()}")
            if (self.data_dir / "kubeconfig").exists():
                try:
                    ctx = ssl.create_default_context(cafile=str(self.data_dir / "pki" / "ca.crt"))
                    with urllib.request.urlopen(self.url + "/readyz", context=ctx, timeout=5) as r:
                        if r.status == 200 and r.read() == b"ok":
                            return
                except OSError:
                    pass
            time.sleep(0.1)
        raise RuntimeError(f"server did not answer within {timeout}s:\n{self.log()}")

    def conn(self) -> dict:
        return {"url": self.url, "pid": self.proc.pid,
                "token": (self.data_dir / "admin-token").read_text().strip(),
                "cafile": str(self.data_dir / "pki" / "ca.crt")}

    def memory_mb(self) -> dict:
        return memory_mb(self.proc.pid)

    def settle(self, timeout: float = 300.0) -> float:
        """Wait until the server is idle (below IDLE_PCT of a core over IDLE_WINDOW seconds), so
        that background work left by one phase (controllers catching up on the Services just
        created) is not billed to the next; the seconds waited."""
        return settle([self.proc.pid], timeout)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]


def sqlite_reference(db: Path) -> dict:
    """p50 over LIST_RUNS of reading the current Service rows from state.db and decoding them."""
    end = SERVICES_PREFIX[:-1] + chr(ord(SERVICES_PREFIX[-1]) + 1)
    sql = ("SELECT l.value FROM (SELECT MAX(id) AS id FROM log WHERE name >= ? AND name < ? "
           "GROUP BY name) AS m CROSS JOIN log AS l ON l.id = m.id WHERE l.deleted = 0")
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        runs = []
        for _ in range(LIST_RUNS):
            start = time.perf_counter()
            items = [orjson.loads(value) for (value,) in conn.execute(sql, (SERVICES_PREFIX, end))]
            runs.append((time.perf_counter() - start) * 1e3)
    finally:
        conn.close()
    return {"p50_ms": percentile(runs, 0.5), "runs_ms": runs, "items": len(items)}


# ---- the run -----------------------------------------------------------------------------------

def measure(services: int, writes: int, profile: Path | None, extra_args: list[str]) -> dict:
    work = Path(tempfile.mkdtemp(prefix="svcnet-bench-"))
    server = None
    try:
        server = Server(work, profile, extra_args)
        server.wait_ready()
        conn = server.conn()
        with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as client:
            r = {"services": services, "writes": writes, "settle_s": {}}

            def phase(name: str, *args):
                r["settle_s"][name] = server.settle()
                print(f"  {name} ...", file=sys.stderr, flush=True)
                return client.submit(run_phase, name, conn, *args).result()

            client.submit(time.sleep, 0).result()  # start the client process before measuring
            server.settle()
            r["rss_empty"] = server.memory_mb()
            r["floor"] = phase("floor", services)
            r["create"] = phase("create", services)
            r["busy_after_create_s"] = server.settle()
            r["rss_loaded"] = server.memory_mb()
            r["list"] = phase("list")
            r["rss_listed"] = server.memory_mb()
            r["sqlite"] = sqlite_reference(server.data_dir / "state.db")
            r["watch"] = phase("watch", writes)
        if r["create"]["failures"]:
            raise RuntimeError(f"{r['create']['failures']} creates failed, first: "
                               f"{r['create']['first_failure']}")
        for name in ("plain", "table", "paged"):
            result = r["list"][name]
            if result["items"] != r["sqlite"]["items"]:
                raise RuntimeError(f"LIST {name} returned {result['items']} items, state.db holds "
                                   f"{r['sqlite']['items']}")
        return r
    except BaseException:
        if server is not None:
            print(f"server log (tail):\n{server.log()}", file=sys.stderr)
        raise
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(work, ignore_errors=True)


def verdicts(r: dict) -> dict:
    return {
        "creates_per_s": r["create"]["rate"] >= TARGET_CREATES,
        "list_plain_ms": r["list"]["plain"]["p50_ms"] < TARGET_LIST_MS,
        "watch_p99_ms": r["watch"]["p99_ms"] < TARGET_WATCH_P99_MS,
        "rss_listed_mb": r["rss_listed"]["VmRSS"] < TARGET_RSS_MB,
    }


def section(r: dict, ok: dict) -> dict:
    """Issue 7's `api` section."""
    return {"services": r["services"], "creates_per_s": r["create"]["rate"],
            "list_ms": r["list"]["plain"]["p50_ms"], "watch_p99_ms": r["watch"]["p99_ms"],
            "create_p99_ms": r["create"]["p99_ms"], "healthz_floor_per_s": r["floor"]["rate"],
            "list_table_ms": r["list"]["table"]["p50_ms"], "list_sqlite_ms": r["sqlite"]["p50_ms"],
            "server_rss_mb": r["rss_listed"]["VmRSS"],
            "target": f"creates_per_s >= {TARGET_CREATES:g}, list_ms < {TARGET_LIST_MS:g} (10,000 Services), "
                      f"watch_p99_ms < {TARGET_WATCH_P99_MS:g}, server_rss_mb < {TARGET_RSS_MB:g}",
            "pass": all(ok.values())}


def report(r: dict, ok: dict) -> str:
    f, c, ls, sq, w = r["floor"], r["create"], r["list"], r["sqlite"], r["watch"]
    n = r["services"]

    def verdict(key: str) -> str:
        return "PASS" if ok[key] else "FAIL"

    def per_request(phase: dict) -> tuple[str, str, str, str]:
        us = phase["server_cpu_us_per_request"]
        return ("  server CPU per request (=> /s on a core)", f"{us:.0f} us ({1e6 / us:,.0f})", "", "")

    def cpu(phase: dict) -> tuple[str, str, str, str]:
        u = phase["cpu"]
        return ("  CPU % server / client / other", f"{u['server_pct']:.0f} / {u['client_pct']:.0f} / "
                f"{u['other_pct']:.0f}", "", "")

    rows = [
        (f"creates/s, {CONCURRENCY} conns ({n} Services)", f"{c['rate']:,.0f}/s",
         f">= {TARGET_CREATES:,.0f}/s", verdict("creates_per_s")),
        ("  create latency p50 / p99", f"{c['p50_ms']:.1f} / {c['p99_ms']:.1f} ms", "", ""),
        cpu(c),
        per_request(c),
        ("  server busy after the last create", f"{r['busy_after_create_s']:.1f} s", "", ""),
        (f"floor GET /healthz, {CONCURRENCY} conns", f"{f['rate']:,.0f}/s", "", ""),
        ("  floor latency p50 / p99", f"{f['p50_ms']:.1f} / {f['p99_ms']:.1f} ms", "", ""),
        cpu(f),
        per_request(f),
        (f"LIST {n} plain JSON, p50", f"{ls['plain']['p50_ms']:.0f} ms",
         f"< {TARGET_LIST_MS:.0f} ms", verdict("list_plain_ms")),
        (f"LIST {n} Table, p50", f"{ls['table']['p50_ms']:.0f} ms", "", ""),
        (f"LIST {n} limit={PAGE_LIMIT} ({ls['paged']['pages']} pages), p50",
         f"{ls['paged']['p50_ms']:.0f} ms", "", ""),
        cpu(ls),
        (f"sqlite3 read + orjson decode {sq['items']}, p50", f"{sq['p50_ms']:.0f} ms", "", ""),
        (f"watch latency p50 / p99 ({w['writes']} writes)",
         f"{w['p50_ms']:.2f} / {w['p99_ms']:.2f} ms", f"p99 < {TARGET_WATCH_P99_MS:.0f} ms",
         verdict("watch_p99_ms")),
        ("  watch latency max", f"{w['max_ms']:.2f} ms", "", ""),
        cpu(w),
        ("RSS empty", f"{r['rss_empty']['VmRSS']:.0f} MB", "", ""),
        (f"RSS {n} Services loaded", f"{r['rss_loaded']['VmRSS']:.0f} MB", "", ""),
        (f"RSS {n} Services after LIST (peak)",
         f"{r['rss_listed']['VmRSS']:.0f} MB ({r['rss_listed']['VmHWM']:.0f})",
         f"< {TARGET_RSS_MB:.0f} MB", verdict("rss_listed_mb")),
    ]
    ratios = [
        ("creates / floor", c["rate"] / f["rate"]),
        ("LIST plain / sqlite3+decode", ls["plain"]["p50_ms"] / sq["p50_ms"]),
        ("LIST Table / LIST plain", ls["table"]["p50_ms"] / ls["plain"]["p50_ms"]),
        ("LIST paged / LIST plain", ls["paged"]["p50_ms"] / ls["plain"]["p50_ms"]),
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    widths = [max(w, len(h)) for w, h in zip(widths, ("measure", "value", "target", "result"))]
    fmt = "  ".join(f"{{:{'<' if i == 0 else '>'}{w}}}" for i, w in enumerate(widths))
    lines = [fmt.format("measure", "value", "target", "result"), fmt.format(*("-" * w for w in widths))]
    lines += [fmt.format(*row) for row in rows]
    lines += ["", "ratios"] + [f"  {name:<28} {value:8.2f}x" for name, value in ratios]
    busiest = max(phase["cpu"]["other_pct"] for phase in (f, c, ls, w))
    if busiest > BUSY_OTHER_PCT:
        lines += ["", f"WARNING: other processes used up to {busiest:.0f}% of a core during the "
                      "measurement: absolute numbers are pessimistic; server CPU per request and "
                      "the ratios are the more stable figures."]
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="2,000 Services and 200 watch writes")
    p.add_argument("--profile", type=Path, metavar="FILE",
                   help="run the server under cProfile, write its stats to FILE (results not saved)")
    p.add_argument("--server-args", default="", metavar="ARGS",
                   help='extra `svcnet server` arguments, e.g. --server-args="--controllers=-endpoints"')
    args = p.parse_args()
    extra_args = shlex.split(args.server_args)
    services, writes = (2_000, 200) if args.quick else (10_000, 500)
    profile = args.profile.resolve() if args.profile else None
    info = machine()
    print(f"svcnet API benchmark: {services} Services, {writes} watch writes; {info['nproc']} CPUs "
          f"({info['cpu_model']}), Linux {info['kernel']}, Python {info['python']}, "
          f"commit {info['commit']}" + (f"; server args: {args.server_args}" if extra_args else "")
          + (" -- UNDER cProfile" if profile else ""), flush=True)
    r = measure(services, writes, profile, extra_args)
    ok = verdicts(r)
    print(report(r, ok))
    if profile:
        print(f"\ncProfile stats: {profile}")
    else:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps({"machine": info, "quick": args.quick,
                                       "server_args": extra_args, "results": r,
                                       "pass": ok, "sections": {"api": section(r, ok)}, "time": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                         time.gmtime())},
                                      indent=2) + "\n")
        print(f"\nwritten: {RESULTS.relative_to(ROOT)}")
    return 0 if all(ok.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
