#!/usr/bin/env python3
"""EndpointSlice benchmark: the target of issue 3, "EndpointSlice updated within 50 ms (p99) of a
pod's readiness change, with 10,000 Services of 5 endpoints each in the store", beside the same
latency measured in the same run with a store of 100 Services, so that the cost of a change can be
read as a ratio (it must not grow with the number of Services).

What is measured (a real `svcnet server` over HTTPS on 127.0.0.1, fresh data dir, --no-agent, its
controller manager running as the server's child process, as always):

1. Setup. Services are created in namespaces `es-0`, `es-1`, ... of 100 Services each (`s-0` ..
   `s-99`, selector app=s-I, port 80 -> 8080); each Service gets 5 pods bound to one Node
   (created through the API), and each pod's status is then written through pods/NAME/status as
   kwok or a kubelet would (phase Running, a unique podIP, Ready=True). Requests come from a
   separate process: an aiohttp client on uvloop, 32 workers on 32 keep-alive TLS connections, in
   three batches (all Services, all pods, all status writes). Then the script polls the API (per
   namespace LISTs of the controller's EndpointSlices, every POLL_INTERVAL s, with a deadline) until
   every Service has slices holding exactly 5 endpoints, all ready. Reported: the load time and
   rate (objects/s = Services + pods; requests/s including status writes), the time the
   controllers needed after the last request, and the total.
2. Latency. After the server and the controller manager have gone idle, a watch on endpointslices
   in all namespaces is opened from the current resourceVersion; then S times, sequentially: a
   random pod's Ready condition is flipped (True -> False or back) with a merge patch of
   pods/NAME/status, and the time is taken from the PATCH response being fully received to the
   watch delivering that Service's slice with the pod's endpoint at `conditions.ready` == the new
   value (0 if the event came first; the time from sending the PATCH is kept too). p50/p99/max.
   Flipped pods are made Ready again afterwards.
3. Both, first with the small store (namespace es-0 only: 100 Services, 500 pods), then again
   after loading the rest (N Services in all), and the large/small latency ratio.
4. VmRSS of the server and of the controller manager after each stage, and the CPU used during
   each phase by the server, the controller manager, the client and everything else on the
   machine (in % of one core; bench/api.py's accounting, extended by the controller manager).

Full run: N=10,000 Services (50,000 pods), S=300. `--quick`: N=1,000. `--server-args` appends
arguments to the server's command line. `--profile FILE` runs the server under cProfile;
`--profile-cm FILE` starts the server with `--controllers=` and runs the controller manager
itself under cProfile (`svcnet controller-manager --kubeconfig DIR/kubeconfig`). Profiled runs do
not write results. Otherwise the table goes to stdout and, with a machine description, to
bench/results/endpointslices-latest.json; the exit status is 0 when the target passes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from urllib.parse import quote

import orjson

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.api import (  # noqa: E402  (the API benchmark's server, client and CPU accounting)
    BUSY_OTHER_PCT,
    CONCURRENCY,
    CpuWindow,
    Server,
    _get_ok,
    _session,
)
from bench.common import (  # noqa: E402
    children,
    machine,
    memory_mb,
    percentile,
    process_cpu_seconds,
    settle,
)

RESULTS = ROOT / "bench" / "results" / "endpointslices-latest.json"

PER_NAMESPACE = 100  # Services per namespace; the small store is the first namespace
PODS_PER_SERVICE = 5
NODE = "bench-node"
ZONE = "zone-a"
SERVICE_NAME = "kubernetes.io/service-name"
MANAGED = "endpointslice.kubernetes.io/managed-by=endpointslice-controller.k8s.io"
POLL_INTERVAL = 0.5  # s between convergence polls
POLL_CONCURRENCY = 4  # namespaces LISTed at once while polling
SAMPLE_TIMEOUT = 10.0  # s for one readiness flip to reach the watch
SETUP_DEADLINE = 3600.0  # s for the controllers to converge after a load

TARGET_P99_MS = 50.0  # readiness change -> EndpointSlice on a watch, p99, at most


def ns_name(k: int) -> str:
    return f"es-{k}"


def pod_ip(ns_index: int, svc: int, j: int) -> str:
    g = (ns_index * PER_NAMESPACE + svc) * PODS_PER_SERVICE + j  # < 16,777,216
    return f"10.{128 + g // 62_500}.{g // 250 % 250}.{g % 250 + 1}"


def rfc3339(t: float | None = None) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def status_body(ip: str, ready: bool, when: str) -> bytes:
    """What kwok (or a kubelet) writes once the pod runs."""
    st = "True" if ready else "False"
    conds = [{"type": t, "status": s, "lastTransitionTime": when}
             for t, s in (("PodReadyToStartContainers", "True"), ("Initialized", "True"),
                          ("Ready", st), ("ContainersReady", st), ("PodScheduled", "True"))]
    return orjson.dumps({"status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
                                    "hostIP": "127.0.0.1", "hostIPs": [{"ip": "127.0.0.1"}],
                                    "startTime": "2026-01-01T00:00:00Z", "conditions": conds}})


def service_body(name: str) -> bytes:
    return orjson.dumps({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
                         "spec": {"selector": {"app": name},
                                  "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}})


def pod_body(svc: str, j: int) -> bytes:
    return orjson.dumps({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": f"{svc}-{j}", "labels": {"app": svc}},
        "spec": {"nodeName": NODE, "containers": [{
            "name": "app", "image": "registry.k8s.io/pause:3.10",
            "ports": [{"name": "http", "containerPort": 8080}]}]}})


# ---- CPU and memory ----------------------------------------------------------------------------

class Cpu:
    """bench/api.py's CpuWindow (server, this process, others), plus the controller manager."""

    def __init__(self, server_pid: int, cm_pid: int):
        self.cm_pid = cm_pid
        self.cm_start = (time.perf_counter(), process_cpu_seconds(cm_pid))
        self.window = CpuWindow(server_pid)

    def stop(self) -> dict:
        out = self.window.stop()
        wall = time.perf_counter() - self.cm_start[0]
        try:
            cm = process_cpu_seconds(self.cm_pid) - self.cm_start[1]
        except OSError:  # the controller manager was restarted
            cm = float("nan")
        out.update(cm_s=cm, cm_pct=100 * cm / wall,
                   other_pct=max(0.0, out["other_pct"] - (100 * cm / wall if cm == cm else 0.0)))
        return out


def find_controller_manager(server_pid: int, timeout: float = 60.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for pid in children(server_pid):
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    if b"controller-manager" in f.read():
                        return pid
            except OSError:
                pass
        time.sleep(0.1)
    raise RuntimeError(f"no controller manager under server pid {server_pid} after {timeout}s")


# ---- the client process ------------------------------------------------------------------------
# As in bench/api.py: each phase runs in a separate (spawned) process on a fresh uvloop loop.

def run_phase(name: str, conn: dict, *args):
    import uvloop

    return uvloop.run(PHASES[name](conn, *args))


async def _batch(s, requests: list[tuple[str, str, bytes, str]], ok: tuple[int, ...]) -> dict:
    """`requests` (method, path, body, content type) from CONCURRENCY workers."""
    failures: list[str] = []
    todo = iter(requests)

    async def worker() -> None:
        for method, path, body, ctype in todo:
            async with s.request(method, path, data=body, headers={"Content-Type": ctype}) as r:
                payload = await r.read()
            if r.status not in ok:
                failures.append(f"{method} {path}: {r.status} {payload[:300]!r}")

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    wall = time.perf_counter() - start
    if failures:
        raise RuntimeError(f"{len(failures)} of {len(requests)} requests failed, first: {failures[0]}")
    return {"requests": len(requests), "seconds": wall, "rate": len(requests) / wall}


async def _ready_counts(s, ns: str) -> dict[str, tuple[int, int]]:
    """Service name -> (endpoints, ready endpoints) in the controller's slices of `ns`."""
    out: dict[str, list[int]] = {}
    token = ""
    while True:
        path = (f"/apis/discovery.k8s.io/v1/namespaces/{ns}/endpointslices?limit=500"
                f"&labelSelector={quote(MANAGED)}" + (f"&continue={quote(token)}" if token else ""))
        page = orjson.loads(await _get_ok(s, path))
        for sl in page["items"]:
            c = out.setdefault(sl["metadata"]["labels"].get(SERVICE_NAME, ""), [0, 0])
            for ep in sl.get("endpoints") or ():
                c[0] += 1
                c[1] += bool((ep.get("conditions") or {}).get("ready"))
        token = page["metadata"].get("continue", "")
        if not token:
            return {k: (a, b) for k, a, b in ((k, *v) for k, v in out.items())}


async def phase_setup(conn: dict, first_ns: int, end_ns: int, check_ns: list[int]) -> dict:
    """Load namespaces [first_ns, end_ns) (Services, pods, pod status), then poll until every
    Service of `check_ns` has 5 ready endpoints."""
    json_ct, merge_ct = "application/json", "application/merge-patch+json"
    async with _session(conn, CONCURRENCY) as s:
        for _ in range(2):  # open every connection before the clock starts
            await asyncio.gather(*(_get_ok(s, "/healthz") for _ in range(CONCURRENCY)))
        if first_ns == 0:
            async with s.post("/api/v1/nodes", data=orjson.dumps({
                    "apiVersion": "v1", "kind": "Node", "metadata": {"name": NODE, "labels": {
                        "kubernetes.io/hostname": NODE, "topology.kubernetes.io/zone": ZONE}}}),
                    headers={"Content-Type": json_ct}) as r:
                if r.status != 201:
                    raise RuntimeError(f"POST node: {r.status} {await r.text()}")
        namespaces = [ns_name(k) for k in range(first_ns, end_ns)]
        svcs = [f"s-{i}" for i in range(PER_NAMESPACE)]
        result = {"namespaces": len(namespaces), "services": len(namespaces) * PER_NAMESPACE,
                  "pods": len(namespaces) * PER_NAMESPACE * PODS_PER_SERVICE}
        cpu = Cpu(conn["pid"], conn["cm_pid"])
        start = time.perf_counter()
        result["namespace_batch"] = await _batch(s, [
            ("POST", "/api/v1/namespaces", orjson.dumps({"apiVersion": "v1", "kind": "Namespace",
                                                         "metadata": {"name": ns}}), json_ct)
            for ns in namespaces], (201, 409))
        result["service_batch"] = await _batch(s, [
            ("POST", f"/api/v1/namespaces/{ns}/services", service_body(svc), json_ct)
            for ns in namespaces for svc in svcs], (201,))
        result["pod_batch"] = await _batch(s, [
            ("POST", f"/api/v1/namespaces/{ns}/pods", pod_body(svc, j), json_ct)
            for ns in namespaces for svc in svcs for j in range(PODS_PER_SERVICE)], (201,))
        when = rfc3339()
        result["status_batch"] = await _batch(s, [
            ("PATCH", f"/api/v1/namespaces/{ns}/pods/{svc}-{j}/status",
             status_body(pod_ip(first_ns + k, i, j), True, when), merge_ct)
            for k, ns in enumerate(namespaces) for i, svc in enumerate(svcs)
            for j in range(PODS_PER_SERVICE)], (200,))
        loaded = time.perf_counter()
        result["load_cpu"] = cpu.stop()
        result["load_s"] = loaded - start
        requests = sum(result[b]["requests"] for b in
                       ("namespace_batch", "service_batch", "pod_batch", "status_batch"))
        result["objects_per_s"] = (result["services"] + result["pods"]) / result["load_s"]
        result["requests_per_s"] = requests / result["load_s"]

        # Poll until converged. A namespace found complete is not LISTed again (nothing changes
        # its pods any more), so the polls cost less and less.
        cpu = Cpu(conn["pid"], conn["cm_pid"])
        pending = [ns_name(k) for k in check_ns]
        want = (PODS_PER_SERVICE, PODS_PER_SERVICE)
        sem = asyncio.Semaphore(POLL_CONCURRENCY)
        polls, poll_s = 0, []
        deadline = loaded + SETUP_DEADLINE
        progress = time.perf_counter()

        async def done(ns: str) -> bool:
            async with sem:
                counts = await _ready_counts(s, ns)
            return len(counts) == PER_NAMESPACE and all(c == want for c in counts.values())

        while True:
            t = time.perf_counter()
            flags = await asyncio.gather(*(done(ns) for ns in pending))
            polls += 1
            poll_s.append(time.perf_counter() - t)
            pending = [ns for ns, ok in zip(pending, flags) if not ok]
            if not pending:
                break
            now = time.perf_counter()
            if now > deadline:
                raise RuntimeError(f"after {SETUP_DEADLINE:.0f}s, {len(pending)} namespaces still "
                                   f"lack 5 ready endpoints per Service, e.g. {pending[0]}: "
                                   f"{await _ready_counts(s, pending[0])}")
            if now - progress > 30:
                print(f"    {now - loaded:.0f}s after the load: {len(pending)} namespaces not "
                      "converged yet", file=sys.stderr, flush=True)
                progress = now
            await asyncio.sleep(POLL_INTERVAL)
        converged = time.perf_counter()
        result["converge_cpu"] = cpu.stop()
        result["converge_s"] = converged - loaded
        result["setup_s"] = converged - start
        result["polls"] = polls
        result["poll_max_s"] = max(poll_s)
    return result


async def phase_latency(conn: dict, namespaces: int, samples: int, seed: int) -> dict:
    """`samples` sequential readiness flips of random pods of namespaces [0, namespaces); for each,
    the time from the status PATCH response to the watch event showing it in the slice."""
    import aiohttp

    rng = random.Random(seed)
    loop = asyncio.get_running_loop()
    async with _session(conn, 2) as s:  # one connection for the watch, one for the writes
        listing = orjson.loads(await _get_ok(s, "/apis/discovery.k8s.io/v1/endpointslices?limit=1"))
        rv = listing["metadata"]["resourceVersion"]
        watch = await s.get(f"/apis/discovery.k8s.io/v1/endpointslices?watch=true&resourceVersion={rv}",
                            timeout=aiohttp.ClientTimeout(total=None, sock_read=None))
        if watch.status != 200:
            raise RuntimeError(f"watch: {watch.status} {await watch.text()}")
        # the one pending sample: (namespace, service, pod, wanted ready value, future)
        pending: list = [None]
        events = [0]

        async def read_events() -> None:
            async for line in watch.content:
                now = time.perf_counter()
                ev = orjson.loads(line)
                if ev.get("type") == "ERROR":
                    raise RuntimeError(f"watch error: {ev}")
                events[0] += 1
                p = pending[0]
                if p is None or p[4].done():
                    continue
                m = ev["object"].get("metadata") or {}
                if m.get("namespace") != p[0] or (m.get("labels") or {}).get(SERVICE_NAME) != p[1]:
                    continue
                for ep in ev["object"].get("endpoints") or ():
                    if (ep.get("targetRef") or {}).get("name") == p[2] and \
                            bool((ep.get("conditions") or {}).get("ready")) == p[3]:
                        p[4].set_result(now)
                        break

        reader = asyncio.create_task(read_events())
        not_ready: dict[tuple[int, int, int], bool] = {}
        latencies, from_send, zero = [], [], 0
        cpu = Cpu(conn["pid"], conn["cm_pid"])
        try:
            for _ in range(samples):
                k, i, j = (rng.randrange(namespaces), rng.randrange(PER_NAMESPACE),
                           rng.randrange(PODS_PER_SERVICE))
                ready = not_ready.pop((k, i, j), False)  # the new value: not ready -> ready
                if not ready:
                    not_ready[(k, i, j)] = True
                ns, svc = ns_name(k), f"s-{i}"
                pod = f"{svc}-{j}"
                fut = loop.create_future()
                pending[0] = (ns, svc, pod, ready, fut)
                body = status_body(pod_ip(k, i, j), ready, rfc3339())
                sent = time.perf_counter()
                async with s.patch(f"/api/v1/namespaces/{ns}/pods/{pod}/status", data=body,
                                   headers={"Content-Type": "application/merge-patch+json"}) as r:
                    payload = await r.read()
                received = time.perf_counter()
                if r.status != 200:
                    raise RuntimeError(f"PATCH {ns}/{pod}/status: {r.status} {payload[:300]!r}")
                try:
                    arrived = await asyncio.wait_for(asyncio.shield(fut), SAMPLE_TIMEOUT)
                except TimeoutError:
                    raise RuntimeError(f"{ns}/{svc}: no slice with {pod} ready={ready} on the watch "
                                       f"within {SAMPLE_TIMEOUT}s") from None
                if reader.done():
                    reader.result()
                zero += arrived <= received
                latencies.append(max(0.0, arrived - received) * 1e3)
                from_send.append((arrived - sent) * 1e3)
            cpu = cpu.stop()
            # make the flipped pods ready again, so every stage starts from all-ready
            for k, i, j in not_ready:
                async with s.patch(f"/api/v1/namespaces/{ns_name(k)}/pods/s-{i}-{j}/status",
                                   data=status_body(pod_ip(k, i, j), True, rfc3339()),
                                   headers={"Content-Type": "application/merge-patch+json"}) as r:
                    if r.status != 200:
                        raise RuntimeError(f"PATCH restore: {r.status} {await r.text()}")
        finally:
            reader.cancel()
            watch.close()
    return {"samples": samples, "services": namespaces * PER_NAMESPACE, "cpu": cpu,
            "p50_ms": percentile(latencies, 0.5), "p99_ms": percentile(latencies, 0.99),
            "max_ms": max(latencies), "zero": zero, "watch_events": events[0],
            "from_send_p50_ms": percentile(from_send, 0.5),
            "from_send_p99_ms": percentile(from_send, 0.99), "restored": len(not_ready)}


PHASES = {"setup": phase_setup, "latency": phase_latency}


# ---- the run -----------------------------------------------------------------------------------

def measure(services: int, samples: int, seed: int, profile: Path | None, profile_cm: Path | None,
            extra_args: list[str]) -> dict:
    namespaces = services // PER_NAMESPACE
    work = Path(tempfile.mkdtemp(prefix="svcnet-bench-es-"))
    server = cm_proc = None
    try:
        server = Server(work, profile, extra_args + (["--controllers="] if profile_cm else []))
        server.wait_ready()
        if profile_cm:
            with open(work / "controller-manager.log", "wb") as log:
                cm_proc = subprocess.Popen(
                    [sys.executable, "-m", "cProfile", "-o", str(profile_cm), "-m", "svcnet.cli.main",
                     "controller-manager", "--kubeconfig", str(server.data_dir / "kubeconfig")],
                    stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
            cm_pid = cm_proc.pid
        else:
            cm_pid = find_controller_manager(server.proc.pid)
        conn = {**server.conn(), "cm_pid": cm_pid}
        pids = [server.proc.pid, cm_pid]

        def rss() -> dict:
            return {"server": memory_mb(server.proc.pid), "controller_manager": memory_mb(cm_pid)}

        with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as client:
            def phase(name: str, *args):
                waited = settle(pids)
                shown = ", ".join(f"[{len(a)} namespaces]" if isinstance(a, list) else str(a) for a in args)
                print(f"  {name}({shown}) (after {waited:.1f}s idle wait) ...", file=sys.stderr,
                      flush=True)
                return client.submit(run_phase, name, conn, *args).result()

            client.submit(time.sleep, 0).result()  # start the client process before measuring
            r = {"services": services, "samples": samples, "seed": seed, "rss_empty": rss()}
            r["small_setup"] = phase("setup", 0, 1, [0])
            r["rss_small"] = rss()
            r["small_latency"] = phase("latency", 1, samples, seed)
            r["large_setup"] = phase("setup", 1, namespaces, list(range(namespaces)))
            r["rss_large"] = rss()
            r["large_latency"] = phase("latency", namespaces, samples, seed + 1)
            r["busy_after_s"] = settle(pids)
            r["rss_end"] = rss()
        small, large = r["small_setup"], r["large_setup"]
        r["setup_total_s"] = small["setup_s"] + large["setup_s"]
        r["load_total_s"] = small["load_s"] + large["load_s"]
        r["objects_per_s"] = (small["services"] + small["pods"] + large["services"] + large["pods"]) \
            / r["load_total_s"]
        return r
    except BaseException:
        if server is not None:
            print(f"server log (tail):\n{server.log()}", file=sys.stderr)
        raise
    finally:
        if cm_proc is not None and cm_proc.poll() is None:
            cm_proc.send_signal(signal.SIGTERM)  # a clean exit writes the profile
            try:
                cm_proc.wait(60)
            except subprocess.TimeoutExpired:
                cm_proc.kill()
                cm_proc.wait(5)
        if server is not None:
            server.stop()
        shutil.rmtree(work, ignore_errors=True)


def verdicts(r: dict) -> dict:
    return {"latency_p99_ms": r["large_latency"]["p99_ms"] <= TARGET_P99_MS}


def section(r: dict, ok: dict) -> dict:
    """An `endpointslices` section for bench/run (issue 3's target)."""
    small, large = r["small_latency"], r["large_latency"]
    return {"services": large["services"], "p50_ms": large["p50_ms"], "p99_ms": large["p99_ms"],
            "services_small": small["services"], "p50_ms_small": small["p50_ms"], "p99_ms_small": small["p99_ms"],
            "ratio_p50": large["p50_ms"] / small["p50_ms"] if small["p50_ms"] else None,
            "setup_objects_per_s": r["objects_per_s"],
            "target": f"p99_ms <= {TARGET_P99_MS:g} (readiness change -> EndpointSlice on a watch)",
            "pass": all(ok.values())}


def report(r: dict, ok: dict) -> str:
    n, small_n = r["services"], r["small_setup"]["services"]
    ss, ls, sl, ll = r["small_setup"], r["large_setup"], r["small_latency"], r["large_latency"]

    def cpu(u: dict, label: str = "  CPU % server / ctrl-mgr / client / other") -> tuple:
        return (label, f"{u['server_pct']:.0f} / {u['cm_pct']:.0f} / {u['client_pct']:.0f} / "
                f"{u['other_pct']:.0f}", "", "")

    def setup_rows(st: dict, what: str) -> list[tuple]:
        return [
            (f"{what}: load {st['services']:,} Services + {st['pods']:,} pods",
             f"{st['load_s']:.1f} s", "", ""),
            ("  objects/s (requests/s incl. pod status)",
             f"{st['objects_per_s']:,.0f} ({st['requests_per_s']:,.0f})", "", ""),
            ("  creates/s Services / pods; status writes/s",
             f"{st['service_batch']['rate']:,.0f} / {st['pod_batch']['rate']:,.0f}; "
             f"{st['status_batch']['rate']:,.0f}", "", ""),
            cpu(st["load_cpu"]),
            ("  controllers converge after the load", f"{st['converge_s']:.1f} s", "", ""),
            cpu(st["converge_cpu"]),
            ("  setup (load + converge)", f"{st['setup_s']:.1f} s", "", ""),
        ]

    def latency_rows(lt: dict, target: bool) -> list[tuple]:
        return [
            (f"readiness -> slice on watch, {lt['services']:,} Services, p50 / p99",
             f"{lt['p50_ms']:.1f} / {lt['p99_ms']:.1f} ms",
             f"p99 <= {TARGET_P99_MS:.0f} ms" if target else "",
             ("PASS" if ok["latency_p99_ms"] else "FAIL") if target else ""),
            (f"  max ({lt['samples']} samples; {lt['zero']} before the response)",
             f"{lt['max_ms']:.1f} ms", "", ""),
            ("  from sending the PATCH, p50 / p99",
             f"{lt['from_send_p50_ms']:.1f} / {lt['from_send_p99_ms']:.1f} ms", "", ""),
            cpu(lt["cpu"]),
        ]

    def mem(key: str, what: str) -> tuple:
        m = r[key]
        return (f"RSS server / ctrl-mgr, {what}",
                f"{m['server']['VmRSS']:.0f} / {m['controller_manager']['VmRSS']:.0f} MB", "", "")

    rows = (setup_rows(ss, f"small ({small_n} Services)") + latency_rows(sl, False)
            + setup_rows(ls, f"large (to {n:,})")
            + [(f"setup of {n:,} Services / {n * PODS_PER_SERVICE:,} pods, total",
                f"{r['setup_total_s']:.1f} s", "", ""),
               ("  load rate overall (objects/s)", f"{r['objects_per_s']:,.0f}", "", "")]
            + latency_rows(ll, True)
            + [mem("rss_empty", "empty"), mem("rss_small", f"{small_n} Services"),
               mem("rss_large", f"{n:,} Services"), mem("rss_end", "end"),
               ("  peak (VmHWM) server / ctrl-mgr",
                f"{r['rss_end']['server']['VmHWM']:.0f} / "
                f"{r['rss_end']['controller_manager']['VmHWM']:.0f} MB", "", "")])
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    widths = [max(w, len(h)) for w, h in zip(widths, ("measure", "value", "target", "result"))]
    fmt = "  ".join(f"{{:{'<' if i == 0 else '>'}{w}}}" for i, w in enumerate(widths))
    lines = [fmt.format("measure", "value", "target", "result"), fmt.format(*("-" * w for w in widths))]
    lines += [fmt.format(*row) for row in rows]

    def ratio(a: float, b: float) -> str:
        return f"{a / b:8.2f}x" if b > 0 else "     n/a"

    lines += ["", f"ratios, {n:,} Services / {small_n} Services (the cost of a change should not "
                  "grow with the store)",
              f"  latency p50                  {ratio(ll['p50_ms'], sl['p50_ms'])}",
              f"  latency p99                  {ratio(ll['p99_ms'], sl['p99_ms'])}",
              f"  from send p50                {ratio(ll['from_send_p50_ms'], sl['from_send_p50_ms'])}",
              f"  server CPU per flip          {ratio(ll['cpu']['server_s'], sl['cpu']['server_s'])}",
              f"  ctrl-mgr CPU per flip        {ratio(ll['cpu']['cm_s'], sl['cpu']['cm_s'])}"]
    busiest = max(u["other_pct"] for u in (ss["load_cpu"], ss["converge_cpu"], sl["cpu"],
                                            ls["load_cpu"], ls["converge_cpu"], ll["cpu"]))
    if busiest > BUSY_OTHER_PCT:
        lines += ["", f"WARNING: other processes used up to {busiest:.0f}% of a core during the "
                      "measurement: absolute numbers are pessimistic."]
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="1,000 Services (5,000 pods)")
    p.add_argument("--services", type=int, default=None,
                   help=f"Services in the large store, a multiple of {PER_NAMESPACE} (default 10,000)")
    p.add_argument("--samples", type=int, default=300, help="readiness flips per store size")
    p.add_argument("--seed", type=int, default=1, help="random seed of the pods flipped")
    p.add_argument("--profile", type=Path, metavar="FILE",
                   help="run the server under cProfile, write its stats to FILE (results not saved)")
    p.add_argument("--profile-cm", type=Path, metavar="FILE",
                   help="run the controller manager under cProfile (the server gets --controllers=), "
                        "write its stats to FILE (results not saved)")
    p.add_argument("--server-args", default="", metavar="ARGS", help="extra `svcnet server` arguments")
    args = p.parse_args()
    services = args.services or (1_000 if args.quick else 10_000)
    if services < 2 * PER_NAMESPACE or services % PER_NAMESPACE:
        p.error(f"--services must be a multiple of {PER_NAMESPACE}, at least {2 * PER_NAMESPACE}")
    extra_args = shlex.split(args.server_args)
    profile = args.profile.resolve() if args.profile else None
    profile_cm = args.profile_cm.resolve() if args.profile_cm else None
    info = machine()
    print(f"svcnet EndpointSlice benchmark: {services:,} Services x {PODS_PER_SERVICE} pods "
          f"(small store: {PER_NAMESPACE}), {args.samples} readiness flips each; {info['nproc']} CPUs "
          f"({info['cpu_model']}), Linux {info['kernel']}, Python {info['python']}, "
          f"commit {info['commit']}" + (f"; server args: {args.server_args}" if extra_args else "")
          + (" -- server UNDER cProfile" if profile else "")
          + (" -- controller manager UNDER cProfile" if profile_cm else ""), flush=True)
    r = measure(services, args.samples, args.seed, profile, profile_cm, extra_args)
    ok = verdicts(r)
    print(report(r, ok))
    if profile or profile_cm:
        print("\ncProfile stats: " + ", ".join(str(f) for f in (profile, profile_cm) if f))
    else:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps({"machine": info, "quick": args.quick, "server_args": extra_args,
                                       "target_p99_ms": TARGET_P99_MS, "results": r, "pass": ok,
                                       "sections": {"endpointslices": section(r, ok)},
                                       "time": rfc3339()}, indent=2) + "\n")
        print(f"\nwritten: {RESULTS.relative_to(ROOT)}")
    return 0 if all(ok.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
