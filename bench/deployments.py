#!/usr/bin/env python3
"""Deployment scale-up benchmark (issue 6): a Deployment scaled from 0 to N pods (default 50)
in a real single-node cluster built like the end-to-end tests (namespaces `svbw<pid>-*`: laptop,
LAN, node running `svcnet server` with its agent), until every pod is Ready and in the Service's
EndpointSlice.

Measured from inside the node namespace with watches on the pods and the Service's slices,
opened before the scale request:
- per pod: from the watch seeing the pod created to its address appearing ready in the slice
  (p50/p99), and from the scale request to that moment (p50/p99);
- total: scale request -> the last pod ready in the slice.
Reference in the same run (skipped with --quick): the same N pods created directly through the
API (no ReplicaSet controller), measured the same way, i.e. issue 4's pod start figure.

The pods run agnhost netexec without a readiness probe (Ready when the container runs), so the
figure is the control plane plus the pod runtime, not a probe period.

Prints the result as JSON on stdout and writes bench/results/deployments-latest.json
(`sections.deployments`, read by bench/suite.py). The world is removed at the end, on failure and
on Ctrl-C too.

    .venv/bin/python bench/deployments.py [--pods 50] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import RESULTS_DIR, log, machine, percentile  # noqa: E402

IMAGE = "registry.k8s.io/e2e-test-images/agnhost:2.53"
NS = "bench"


def manifest(app: str, replicas: int) -> str:
    import yaml

    return yaml.safe_dump_all([
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": app, "namespace": NS},
         "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": app}},
                  "template": {"metadata": {"labels": {"app": app}},
                               "spec": {"containers": [{"name": "netexec", "image": IMAGE,
                                                        "args": ["netexec", "--http-port=8080"]}]}}}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": app, "namespace": NS},
         "spec": {"selector": {"app": app}, "ports": [{"port": 80, "targetPort": 8080}]}}])


# ---- inner: runs inside the node namespace, talks to the API ----------------------------------------

async def measure(kubeconfig: str, app: str, n: int, mode: str) -> dict:
    """Start watches, trigger N pods (scale the Deployment, or create bare pods), wait until all
    are ready in the slice; per-pod times in ms."""
    from svcnet.api.resources import BY_KIND
    from svcnet.client import Client, Config

    pod_res, slice_res, dep_res = BY_KIND["Pod"], BY_KIND["EndpointSlice"], BY_KIND["Deployment"]
    client = Client(Config.from_kubeconfig(kubeconfig), user_agent="bench-deployments")
    created: dict[str, float] = {}
    in_slice: dict[str, float] = {}
    done = asyncio.Event()
    rv = (await client.list(pod_res, NS, labelSelector=f"app={app}"))["metadata"]["resourceVersion"]

    async def watch_pods():
        async for _, obj in client.watch(pod_res, NS, rv, labelSelector=f"app={app}"):
            name = obj["metadata"].get("name")
            if name and name not in created:
                created[name] = time.perf_counter()

    async def watch_slices():
        async for _, obj in client.watch(slice_res, NS, rv, labelSelector=f"kubernetes.io/service-name={app}"):
            now = time.perf_counter()
            for ep in obj.get("endpoints") or ():
                name = (ep.get("targetRef") or {}).get("name")
                if name and (ep.get("conditions") or {}).get("ready") and name not in in_slice:
                    in_slice[name] = now
            if len(in_slice) >= n:
                done.set()

    tasks = [asyncio.create_task(watch_pods()), asyncio.create_task(watch_slices())]
    await asyncio.sleep(0.3)  # the watches are open
    t0 = time.perf_counter()
    if mode == "deployment":
        await client.patch(dep_res, NS, app, {"spec": {"replicas": n}}, sub="scale")
    else:
        sem = asyncio.Semaphore(8)

        async def one(i: int):
            async with sem:
                await client.create(pod_res, {"apiVersion": "v1", "kind": "Pod",
                                              "metadata": {"name": f"{app}-{i}", "namespace": NS,
                                                           "labels": {"app": app}},
                                              "spec": {"containers": [{"name": "netexec", "image": IMAGE,
                                                                       "args": ["netexec", "--http-port=8080"]}]}})
        await asyncio.gather(*(one(i) for i in range(n)))
    try:
        await asyncio.wait_for(done.wait(), 300)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await client.close()
    per_pod = [(in_slice[k] - created.get(k, t0)) * 1000 for k in in_slice]
    from_request = [(v - t0) * 1000 for v in in_slice.values()]
    return {"pods": len(in_slice), "total_s": round(max(in_slice.values()) - t0, 3),
            "p50_ms": round(percentile(per_pod, 0.5), 1), "p99_ms": round(percentile(per_pod, 0.99), 1),
            "from_request_p50_ms": round(percentile(from_request, 0.5), 1),
            "from_request_p99_ms": round(percentile(from_request, 0.99), 1)}


# ---- outer: builds the world, runs the inner measurements, reports --------------------------------------

def run(args) -> dict:
    from tests.e2e.cluster import poll, running_cluster, unique_prefix

    work = Path(f"/tmp/svcnet-bench-deployments-{os.getpid()}")
    try:
        return measure_in_world(args, work / "node", running_cluster, unique_prefix("bw"), poll)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def measure_in_world(args, data: Path, running_cluster, prefix: str, poll) -> dict:
    result: dict = {"pods": args.pods}
    with running_cluster(prefix, data) as c:
        c.kubectl("create", "namespace", NS)

        def inner(app: str, mode: str) -> dict:
            r = c.world.run("node", sys.executable, str(Path(__file__).resolve()), "--inner",
                            json.dumps({"kubeconfig": str(c.kubeconfig), "app": app, "n": args.pods,
                                        "mode": mode}), timeout=400)
            if r.returncode != 0:
                raise RuntimeError(f"inner measurement failed: {r.stderr[-2000:]}")
            return json.loads(r.stdout.strip().splitlines()[-1])

        if not args.quick:
            log(f"reference: {args.pods} bare pods created through the API")
            c.kubectl("apply", "-f", "-", input=manifest("ref", 0))
            ref = inner("ref", "pods")
            result.update({f"pods_{k}": v for k, v in ref.items() if k != "pods"})
            c.kubectl("-n", NS, "delete", "pods", "-l", "app=ref", "--wait=false")
            poll(lambda: not c.json("-n", NS, "get", "pods")["items"], 120, "reference pods gone")
        log(f"Deployment: scale 0 -> {args.pods}")
        c.kubectl("apply", "-f", "-", input=manifest("web", 0))
        poll(lambda: c.json("-n", NS, "get", "rs", "-l", "app=web")["items"], 30, "the ReplicaSet")
        result.update(inner("web", "deployment"))
        if "pods_p50_ms" in result:
            result["p50_ratio_to_bare_pods"] = round(result["p50_ms"] / result["pods_p50_ms"], 2)
            result["total_ratio_to_bare_pods"] = round(result["total_s"] / result["pods_total_s"], 2)
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pods", type=int, default=50)
    ap.add_argument("--quick", action="store_true", help="skip the bare-pod reference")
    ap.add_argument("--inner", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.inner:
        cfg = json.loads(args.inner)
        print(json.dumps(asyncio.run(measure(cfg["kubeconfig"], cfg["app"], cfg["n"], cfg["mode"]))))
        return 0
    if os.geteuid() != 0:
        print("bench/deployments.py: needs root (network namespaces)", file=sys.stderr)
        return 2
    t = time.perf_counter()
    section = run(args)
    doc = {"when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "mode": "quick" if args.quick else "full",
           "wall_s": round(time.perf_counter() - t, 1), "machine": machine(),
           "sections": {"deployments": section}}
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / "deployments-latest.json").write_text(json.dumps(doc, indent=1))
    print(json.dumps(doc["sections"]["deployments"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
