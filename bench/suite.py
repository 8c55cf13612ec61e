#!/usr/bin/env python3
"""The benchmark suite behind `bench/run [--quick]` (issue 7): runs every benchmark, each in the
world it builds for itself (bench/api.py and bench/endpointslices.py: a server on 127.0.0.1;
bench/dataplane.py: a cluster in network namespaces `svb<pid>-*`; bench/dns.py: a namespace
`svd<pid>`; bench/deployments.py when it exists), each removing its world afterwards, on failure
and Ctrl-C too. Prints one table and writes bench/results/latest.json and latest.md.

Theory of operation
===================

Each benchmark is a script that measures its figures next to references taken in the same run and
writes `bench/results/NAME-latest.json` holding a `sections` object: issue 7's sections by name,
each a dict of numbers plus `target`/`pass` where a target exists, or `{"missing": reason}`. The
suite deletes that file before running the script, so a figure that was not measured in this run
can never be reported from an older one; it then merges the sections, checks that every field
issue 7 names is a number (a field that is not is listed as missing with the benchmark's reason),
and renders the table. A benchmark that fails or overruns its time budget (it gets SIGINT, which
makes it tear its world down) leaves its sections missing with the reason; the others still run.

    bench/run              # the full sizes (10,000 Services ...), 20-30 minutes
    bench/run --quick      # within 10 minutes on a 2-core machine
    bench/run --only dataplane,dns
"""

from __future__ import annotations

import argparse
import json
import re
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import RESULTS_DIR, log, machine, machine_cpu_seconds  # noqa: E402

# name, script, time budget in seconds (quick, full)
BENCHMARKS = (
    ("dataplane", "bench/dataplane.py", (600, 1500)),
    ("api", "bench/api.py", (240, 600)),
    ("dns", "bench/dns.py", (180, 400)),
    ("deployments", "bench/deployments.py", (300, 600)),
    ("endpointslices", "bench/endpointslices.py", (300, 1500)),
)

# The fields issue 7 requires in each section (all numbers), and how the table shows them:
# section -> [(field, label, format)]; fields after the required ones are shown when present.
REQUIRED = {
    "dataplane": ["direct_rps", "clusterip_rps", "nodeport_rps", "clusterip_ratio", "nodeport_ratio",
                  # issue 5: LoadBalancer and policy paths / the laptop's routed direct path
                  "lb_rps", "lb_ratio", "lb_local_rps", "lb_local_ratio", "lb_ranges_rps", "lb_ranges_ratio",
                  "lb_affinity_rps", "lb_affinity_ratio"],
    "first_packet": ["services_small", "services_large", "p50_us_small", "p50_us_large", "ratio_p50"],
    "programming_latency": ["services", "p50_ms", "p99_ms"],
    "full_sync": ["services", "endpoints", "svcnet_s", "raw_nft_s", "ratio", "kubeproxy_shape_nft_s"],
    "partial_sync": ["services", "svcnet_update_ms", "kubeproxy_shape_update_ms"],
    "dns": ["svcnet_qps", "dnsmasq_qps", "ratio", "p99_ms"],
    "api": ["creates_per_s", "list_ms", "watch_p99_ms"],
    "pod_startup": ["p50_ms", "p99_ms"],
    "memory": ["services", "server_rss_mb", "agent_rss_mb"],
}
SHOW = {
    "dataplane": [("direct_rps", "direct to the pod, from the node", "{:,.0f} req/s"),
                  ("clusterip_rps", "through its ClusterIP, from the node", "{:,.0f} req/s"),
                  ("clusterip_ratio", "ClusterIP / direct", "{:.2f}x"),
                  ("laptop_direct_rps", "laptop -> pod IP routed via the node", "{:,.0f} req/s"),
                  ("nodeport_rps", "laptop -> NodePort", "{:,.0f} req/s"),
                  ("nodeport_ratio", "NodePort / laptop direct", "{:.2f}x"),
                  ("lb_rps", "laptop -> LoadBalancer address (eTP Cluster)", "{:,.0f} req/s"),
                  ("lb_ratio", "LoadBalancer / laptop direct", "{:.2f}x"),
                  ("lb_local_rps", "laptop -> LoadBalancer, eTP Local", "{:,.0f} req/s"),
                  ("lb_local_ratio", "LoadBalancer eTP Local / laptop direct", "{:.2f}x"),
                  ("lb_ranges_rps", "laptop -> LoadBalancer, loadBalancerSourceRanges", "{:,.0f} req/s"),
                  ("lb_ranges_ratio", "LoadBalancer source ranges / laptop direct", "{:.2f}x"),
                  ("lb_affinity_rps", "laptop -> LoadBalancer, sessionAffinity ClientIP", "{:,.0f} req/s"),
                  ("lb_affinity_ratio", "LoadBalancer affinity / laptop direct", "{:.2f}x"),
                  ("lb_vs_nodeport_ratio", "LoadBalancer / NodePort", "{:.2f}x"),
                  ("laptop_host_rps", "laptop -> a server on the node itself", "{:,.0f} req/s"),
                  ("clusterip_extra_us", "ClusterIP - direct, per request on 1 connection (p50)", "{:+.1f} us"),
                  ("nodeport_extra_us", "NodePort - laptop direct, per request on 1 connection (p50)", "{:+.1f} us"),
                  ("lb_extra_us", "LoadBalancer - laptop direct, per request on 1 connection (p50)", "{:+.1f} us"),
                  ("lb_local_extra_us", "LB eTP Local - laptop direct, same", "{:+.1f} us"),
                  ("lb_ranges_extra_us", "LB source ranges - laptop direct, same", "{:+.1f} us"),
                  ("lb_affinity_extra_us", "LB affinity - laptop direct, same", "{:+.1f} us"),
                  ("laptop_direct_1conn_p50_us", "laptop direct, per request on 1 connection (p50)", "{:.0f} us")],
    "first_packet": [("p50_us_small", "connect() p50, {services_small} Services", "{:.0f} us"),
                     ("p50_us_large", "connect() p50, {services_large} Services", "{:.0f} us"),
                     ("ratio_p50", "large / small", "{:.2f}x"),
                     ("direct_p50_us_large", "direct to the pod", "{:.0f} us")],
    "programming_latency": [("p50_ms", "endpoint change -> live, p50 ({services} Services)", "{:.1f} ms"),
                            ("p99_ms", "p99", "{:.1f} ms")],
    "full_sync": [("svcnet_s", "agent full sync, {services} Services / {endpoints} endpoints", "{:.2f} s"),
                  ("raw_nft_s", "nft -f of the same text", "{:.2f} s"),
                  ("ratio", "agent / nft -f", "{:.2f}x"),
                  ("kubeproxy_shape_nft_s", "nft -f of a kube-proxy-shaped ruleset", "{:.2f} s")],
    "partial_sync": [("svcnet_update_ms", "one endpoint change, nft -f, {services} Services", "{:.1f} ms"),
                     ("kubeproxy_shape_update_ms", "same change, kube-proxy shape", "{:.1f} ms")],
    "dns": [("svcnet_qps", "svcnet DNS, {names} names", "{:,.0f} QPS"),
            ("dnsmasq_qps", "dnsmasq, same names", "{:,.0f} QPS"),
            ("ratio", "svcnet / dnsmasq", "{:.2f}x"),
            ("p99_ms", "svcnet p99 at half dnsmasq's QPS", "{:.2f} ms"),
            ("dnsmasq_p99_ms", "dnsmasq p99 at the same load", "{:.2f} ms"),
            ("svcnet_qps_workers_2", "svcnet DNS --workers 2", "{:,.0f} QPS")],
    "api": [("creates_per_s", "Service creates/s, 32 clients", "{:,.0f}/s"),
            ("healthz_floor_per_s", "GET /healthz, same clients (HTTP+TLS floor)", "{:,.0f}/s"),
            ("list_ms", "LIST {services} Services", "{:.0f} ms"),
            ("list_sqlite_ms", "sqlite3 read + decode of the same rows", "{:.0f} ms"),
            ("watch_p99_ms", "watch event p99", "{:.1f} ms"),
            ("server_rss_mb", "server RSS with {services} Services", "{:.0f} MB")],
    "endpointslices": [("p99_ms", "readiness -> EndpointSlice p99, {services} Services", "{:.1f} ms"),
                       ("p99_ms_small", "p99, {services_small} Services", "{:.1f} ms")],
    "pod_startup": [("p50_ms", "pod created -> reachable via its Service, p50 ({pods} pods)", "{:.0f} ms"),
                    ("p99_ms", "p99", "{:.0f} ms"),
                    ("ready_p50_ms", "-> Ready (watch), p50", "{:.0f} ms")],
    "deployments": [("total_s", "scale 0 -> {pods} pods, all in the endpoints", "{:.1f} s"),
                    ("p50_ms", "per pod: created -> ready in the slice, p50", "{:.0f} ms"),
                    ("p99_ms", "per pod p99", "{:.0f} ms"),
                    ("pods_p50_ms", "bare pods, same measure (reference), p50", "{:.0f} ms")],
    "memory": [("server_rss_mb", "server RSS, {services} Services", "{:.0f} MB"),
               ("agent_rss_mb", "agent RSS", "{:.0f} MB"),
               ("controller_manager_rss_mb", "controller manager RSS", "{:.0f} MB")],
}
ORDER = ["dataplane", "first_packet", "programming_latency", "full_sync", "partial_sync", "pod_startup",
         "memory", "api", "endpointslices", "dns", "deployments"]
# Which benchmark produces which sections (for the reason when one did not run).
PRODUCES = {"dataplane": ["dataplane", "first_packet", "programming_latency", "full_sync", "partial_sync",
                          "pod_startup", "memory"],
            "api": ["api"], "endpointslices": ["endpointslices"], "dns": ["dns"], "deployments": ["deployments"]}


def run_benchmark(name: str, script: str, budget: float, quick: bool, logs: Path) -> dict:
    """Run one benchmark script; its sections, or the reason there are none."""
    path = ROOT / script
    result = RESULTS_DIR / f"{name}-latest.json"
    if not path.exists():
        return {"status": "not built", "reason": f"{script} does not exist yet"}
    result.unlink(missing_ok=True)
    log_path = logs / f"{name}.log"
    t = time.perf_counter()
    busy0, own0 = machine_cpu_seconds(), children_cpu_seconds()
    with open(log_path, "wb") as out:
        proc = subprocess.Popen([sys.executable, str(path), *(["--quick"] if quick else [])],
                                stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
        try:
            rc = proc.wait(budget)
            reason = None if rc == 0 else f"exited with {rc} (a target missed, or an error: see {log_path})"
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGINT)  # the benchmark tears its world down
            try:
                proc.wait(180)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            rc, reason = None, f"overran its {budget:.0f} s budget and was stopped"
        except KeyboardInterrupt:
            proc.wait(180)  # it got the SIGINT too and is tearing its world down
            raise
    wall = time.perf_counter() - t
    # How busy the machine was meanwhile, in cores: in all, and by other work than this benchmark's
    # processes (those it waited for; pods it left to `svcnet down` count as other work).
    busy, own = machine_cpu_seconds() - busy0, children_cpu_seconds() - own0
    load = {"busy_cores": round(busy / wall, 2), "other_cores": round(max(0.0, busy - own) / wall, 2)}
    doc = json.loads(result.read_text()) if result.exists() else {}
    if not doc.get("sections"):
        tail = log_path.read_text(errors="replace").strip().splitlines()[-3:]
        return {"status": "failed", "rc": rc, "wall_s": wall, **load,
                "reason": (reason or "wrote no results") + (f"; last output: {' | '.join(tail)}" if tail else "")}
    return {"status": "ok" if rc == 0 else "partial", "rc": rc, "wall_s": wall, "reason": reason, **load,
            "sections": doc["sections"], "error": doc.get("error")}


def children_cpu_seconds() -> float:
    """CPU time of this process's children (and theirs) that have been waited for."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def check(sections: dict) -> None:
    """Mark required fields that are not numbers as missing (with the section's reason)."""
    for name, fields in REQUIRED.items():
        sec = sections.setdefault(name, {"missing": "not measured"})
        absent = [f for f in fields if not isinstance(sec.get(f), (int, float)) or isinstance(sec.get(f), bool)]
        if absent:
            sec.setdefault("missing", "not measured")
            sec["missing_fields"] = absent


def rows(sections: dict) -> list[tuple[str, str, str, str, str]]:
    """(section, figure, value, verdict, target) for the table."""
    out = []
    for name in ORDER:
        sec = sections.get(name)
        if sec is None:
            continue
        verdict = "" if "pass" not in sec else ("PASS" if sec["pass"] else "FAIL")
        target = sec.get("target", "")
        shown = False
        for field, label, fmt in SHOW.get(name, []):
            value = sec.get(field)
            if not isinstance(value, (int, float)):
                continue
            try:
                label = label.format(**sec)
            except (KeyError, ValueError):
                pass
            out.append((name if not shown else "", label, fmt.format(value),
                        verdict if not shown else "", target if not shown else ""))
            shown = True
        if "missing" in sec:
            fields = sec.get("missing_fields")
            out.append((name if not shown else "", "MISSING" + (f" ({', '.join(fields)})" if fields else ""),
                        "-", "MISSING", sec["missing"]))
    return out


def text_table(table: list[tuple]) -> str:
    head = ("section", "figure", "value", "verdict", "target / reason")
    widths = [max(len(str(r[i])) for r in [head, *table]) for i in range(5)]
    lines = ["  ".join(str(h).ljust(w) for h, w in zip(head, widths)), "  ".join("-" * w for w in widths)]
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip() for r in table]
    return "\n".join(lines)


def markdown(doc: dict, table: list[tuple]) -> str:
    m = doc["machine"]
    out = [f"# svcnet benchmarks: {doc['mode']} run, {doc['when']}", "",
           f"Machine: {m['nproc']} cores ({m['cpu_model']}), {m['mem_gb']} GB, Linux {m['kernel']}, "
           f"{m['nft']}, Python {m['python']}, wrk {m.get('wrk', '?')}, dnsperf {m.get('dnsperf', '?')}, "
           f"dnsmasq {m.get('dnsmasq', '?')}; commit {m['commit']}. Wall time {doc['wall_s']:.0f} s.", "",
           "| section | figure | value | verdict | target / reason |", "| --- | --- | --- | --- | --- |"]
    out += ["| " + " | ".join(str(c).replace("|", "/") for c in r) + " |" for r in table]
    out += ["", f"The benchmarks ran one after the other. `busy`: the CPU the whole machine used meanwhile, "
                f"in cores (of {m['nproc']}); `other`: the part not used by the benchmark's own processes, "
                "i.e. other work sharing the machine.", "",
            "| benchmark | status | wall | busy | other | note |", "| --- | --- | --- | --- | --- | --- |"]
    for name, b in doc["benchmarks"].items():
        wall = f"{b['wall_s']:.0f} s" if b.get("wall_s") else ""
        out.append(f"| {name} | {b['status']} | {wall} | {b.get('busy_cores', '')} | {b.get('other_cores', '')} | "
                   f"{(b.get('reason') or '').replace('|', '/')} |")
    return "\n".join(out) + "\n"


def tool_versions() -> dict:
    def first_line(*argv: str, pattern: str = r"[\d][\w.\-~+]*") -> str:
        try:
            p = subprocess.run(argv, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return "?"
        m = re.search(pattern, p.stdout + p.stderr)
        return m.group(0) if m else "?"

    return {"wrk": first_line("wrk", "--version"), "dnsperf": first_line("dnsperf", "-h", pattern=r"(?<=Version )\S+"),
            "dnsmasq": first_line("dnsmasq", "--version")}


def main() -> int:
    p = argparse.ArgumentParser(description="Run every svcnet benchmark; table + bench/results/latest.{json,md}")
    p.add_argument("--quick", action="store_true", help="smaller sizes: within 10 minutes on 2 cores")
    p.add_argument("--report", action="store_true",
                   help="run nothing: render latest.json/md again from the benchmarks' last results")
    p.add_argument("--only", default="", help="comma-separated benchmark names: "
                   + ",".join(b[0] for b in BENCHMARKS))
    args = p.parse_args()
    only = set(filter(None, args.only.split(",")))
    unknown = only - {b[0] for b in BENCHMARKS}
    if unknown:
        p.error(f"unknown benchmarks: {', '.join(sorted(unknown))}")
    if args.report:
        return report_only()
    logs = RESULTS_DIR / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    at_start = {"machine": {**machine(), **tool_versions()}}  # the commit the run started from
    benchmarks, sections = {}, {}
    try:
        for name, script, budgets in BENCHMARKS:
            if only and name not in only:
                continue
            log(f"{name}: {script}{' --quick' if args.quick else ''} (budget {budgets[not args.quick]} s)")
            b = run_benchmark(name, script, budgets[not args.quick], args.quick, logs)
            log(f"{name}: {b['status']}" + (f" in {b['wall_s']:.0f} s" if b.get("wall_s") else "")
                + (f" - {b['reason']}" if b.get("reason") else ""))
            for sec_name, sec in b.pop("sections", {}).items():
                sections[sec_name] = sec
            for sec_name in PRODUCES[name]:
                sections.setdefault(sec_name, {"missing": f"{name}: {b.get('reason') or b['status']}"})
            benchmarks[name] = b
    except KeyboardInterrupt:
        log("interrupted: reporting what was measured")
    return write(sections, benchmarks, "quick" if args.quick else "full", time.perf_counter() - t0,
                 check_all=not only, run=at_start)


def write(sections: dict, benchmarks: dict, mode: str, wall: float, check_all: bool = True,
          run: dict | None = None) -> int:
    """Print the table, write latest.json and latest.md; the exit status. `run`: the `when` and
    `machine` of the run being reported again (`--report`), else they are taken now."""
    if check_all:
        check(sections)
    table = rows(sections)
    doc = {"when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "mode": mode,
           "wall_s": wall, "machine": {**machine(), **tool_versions()}, **(run or {}),
           "benchmarks": benchmarks, **{k: sections[k] for k in ORDER if k in sections}}
    print(text_table(table))
    print(f"\n{doc['mode']} run, {doc['wall_s']:.0f} s; machine: {json.dumps(doc['machine'])}")
    for name, b in benchmarks.items():
        print(f"  {name}: {b['status']}, {b.get('wall_s') or 0:.0f} s, machine busy {b.get('busy_cores')} cores "
              f"(other work {b.get('other_cores')})")
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / "latest.json").write_text(json.dumps(doc, indent=1) + "\n")
    (RESULTS_DIR / "latest.md").write_text(markdown(doc, table))
    print("written: bench/results/latest.json, bench/results/latest.md (logs in bench/results/logs/)")
    failed = [k for k, s in sections.items() if s.get("pass") is False or "missing" in s]
    return 1 if failed else 0


def report_only() -> int:
    """latest.json/md again from each benchmark's last results (e.g. after `bench/NAME.py
    --resummarize`), keeping the run's mode, wall time and benchmark statuses."""
    last = json.loads((RESULTS_DIR / "latest.json").read_text())
    sections = {}
    for name, _, _ in BENCHMARKS:
        path = RESULTS_DIR / f"{name}-latest.json"
        if name in last["benchmarks"] and path.exists():
            sections.update(json.loads(path.read_text()).get("sections") or {})
    for name in ORDER:
        if name not in sections and name in last:
            sections[name] = last[name]
    return write(sections, last["benchmarks"], last["mode"], last["wall_s"],
                 run={"when": last["when"], "machine": last["machine"],
                      "reported_again": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})


if __name__ == "__main__":
    sys.exit(main())
