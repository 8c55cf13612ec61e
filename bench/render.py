"""The service proxy's rendering alone: `desired()` and `full_transaction(...).text()` on issue 4's
full-sync input (10,000 ClusterIP Services, one TCP port each, one EndpointSlice of 5 ready
endpoints), the Python half of a full sync whose other half is `nft -f` (bench/dataplane.py
times both on a real kernel). No root, no network: a pure-CPU micro-benchmark for work on
svcnet/agent/proxy/ruleset.py and nft.py.

    .venv/bin/python bench/render.py [--services N] [--endpoints K] [--runs R] [--no-node-name]

Prints the median and minimum of R runs of each half, in milliseconds, and the text's size.
`--no-node-name` leaves nodeName out of the endpoints, as the benchmark suite's user-made
slices do (no endpoint is then known to be on another node: all count as local).
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time

from svcnet.agent.proxy.ruleset import NodeInfo, desired, full_transaction

NODE = NodeInfo("n1", ("192.168.1.2",), "10.244.0.0/16", "10.96.0.0/12")


def workload(services: int, endpoints: int, node_name: str | None) -> tuple[list[dict], list[dict]]:
    """`services` ClusterIP Services in 50 namespaces and one slice each of `endpoints` ready
    endpoints (on `node_name`, or on no node when it is None)."""
    svcs, slices = [], []
    for i in range(services):
        ns, name = f"ns{i % 50}", f"svc{i}"
        ip = f"10.{96 + (i >> 16)}.{(i >> 8) & 255}.{i & 255}"
        svcs.append({"metadata": {"namespace": ns, "name": name},
                     "spec": {"type": "ClusterIP", "clusterIP": ip, "clusterIPs": [ip],
                              "ports": [{"name": "http", "protocol": "TCP", "port": 80,
                                         "targetPort": 8080}]}})
        eps = []
        for j in range(endpoints):
            n = i * endpoints + j
            ep = {"addresses": [f"10.244.{n // 250 % 250}.{n % 250 + 2}"],
                  "conditions": {"ready": True, "serving": True, "terminating": False}}
            if node_name:
                ep["nodeName"] = node_name
            eps.append(ep)
        slices.append({"metadata": {"namespace": ns, "name": f"{name}-abc",
                                    "labels": {"kubernetes.io/service-name": name}},
                       "addressType": "IPv4",
                       "ports": [{"name": "http", "protocol": "TCP", "port": 8080}],
                       "endpoints": eps})
    return svcs, slices


def timed(fn, runs: int) -> tuple[list[float], object]:
    times, result = [], None
    for _ in range(runs):
        gc.collect()
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return times, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--services", type=int, default=10_000)
    parser.add_argument("--endpoints", type=int, default=5)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--no-node-name", action="store_true")
    args = parser.parse_args()
    services, slices = workload(args.services, args.endpoints,
                                None if args.no_node_name else NODE.name)
    render, state = timed(lambda: desired(services, slices, NODE), args.runs)
    text, out = timed(lambda: full_transaction(state).text(), args.runs)
    for label, times in (("desired()", render), ("full_transaction().text()", text)):
        print(f"{label:27} median {statistics.median(times) * 1e3:7.1f} ms"
              f"   min {min(times) * 1e3:7.1f} ms   ({args.runs} runs)")
    print(f"text: {len(out):,} bytes")


if __name__ == "__main__":
    main()
