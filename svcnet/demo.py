"""The seed scenario, live: a single-node cluster in network namespaces with the example applied.

    python -m svcnet.demo [--prefix svcnet-demo] [--data-dir /tmp/svcnet-demo]

Builds the world of DESIGN.md (laptop 192.168.1.10 and node 192.168.1.2 on a LAN bridge, each a
network namespace), runs `svcnet server` (API, controllers, node agent) inside the node,
applies examples/seed.yaml, waits until the pods are Ready, prints how to reach them and how to
use kubectl, and keeps running until Ctrl-C. On the way out it stops the server, runs
`svcnet down` inside the node and deletes the namespaces: nothing is left behind, and the
machine's own network namespace is never touched.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from svcnet.world import World

ROOT = Path(__file__).resolve().parent.parent
SEED = ROOT / "examples" / "seed.yaml"
LB_POOL = "192.168.1.240-192.168.1.250"


def kubectl(world: World, kubeconfig: Path, *args: str, input: str | None = None,
            check: bool = True) -> subprocess.CompletedProcess:
    return world.run("node", "kubectl", f"--kubeconfig={kubeconfig}",
                     f"--cache-dir={kubeconfig.parent / 'kubectl-cache'}", *args,
                     input=input, check=check)


def wait_for(what: str, predicate, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"demo: timed out waiting for {what}")
        time.sleep(0.2)


def _interrupt(*_) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="svcnet-demo", description=__doc__.splitlines()[0])
    p.add_argument("--prefix", default="svcnet-demo", help="name prefix of the namespaces")
    p.add_argument("--data-dir", default="/tmp/svcnet-demo", help="the node's data dir")
    p.add_argument("--exit-after-ready", action="store_true",
                   help="tear down as soon as everything answered (a smoke test)")
    args = p.parse_args(argv)
    data = Path(args.data_dir)
    kubeconfig = data / "kubeconfig"
    world = World(args.prefix)
    signal.signal(signal.SIGTERM, _interrupt)
    print(f"demo: building laptop {world.address('laptop')} and node {world.address('node')} "
          f"on a LAN, in network namespaces {args.prefix}-*", flush=True)
    world.create()
    server = None
    try:
        log_path = Path(f"{data}.log")
        print(f"demo: starting svcnet server in {args.prefix}-node (its log: {log_path})", flush=True)
        with open(log_path, "ab") as log:
            server = world.spawn("node", sys.executable, "-m", "svcnet.cli.main", "server",
                                 "--data-dir", str(data), "--node-ip", world.address("node"),
                                 "--node-name", "node1",
                                 # cluster DNS with no upstream: names outside cluster.local are
                                 # REFUSED, never forwarded to this machine's resolvers
                                 "--resolv-conf", "/dev/null",
                                 # LoadBalancer addresses on the LAN, announced by the node
                                 "--lb-pool", LB_POOL,
                                 stdout=log, stderr=subprocess.STDOUT)
        wait_for("the API server", lambda: kubeconfig.exists() and kubectl(
            world, kubeconfig, "get", "--raw=/readyz", check=False).returncode == 0, 60)
        kubectl(world, kubeconfig, "apply", "-f", "-", input=SEED.read_text())
        wait_for("the seed pods to be Ready", lambda: kubectl(
            world, kubeconfig, "wait", "--for=condition=Ready", "pod", "--all", "--timeout=2s",
            check=False).returncode == 0, 120)
        pods = json.loads(kubectl(world, kubeconfig, "get", "pods", "-o", "json").stdout)["items"]
        ips = {pod["metadata"]["name"]: pod["status"].get("podIP") for pod in pods}
        backend_ip = json.loads(kubectl(world, kubeconfig, "get", "svc", "backend", "-o", "json")
                                .stdout)["spec"]["clusterIP"]
        lb_ip = ""

        def lb_assigned() -> bool:
            nonlocal lb_ip
            svc = json.loads(kubectl(world, kubeconfig, "get", "svc", "backend-lb", "-o", "json").stdout)
            lb_ip = ((svc["status"].get("loadBalancer") or {}).get("ingress") or [{}])[0].get("ip", "")
            return bool(lb_ip)

        wait_for("the LoadBalancer address", lb_assigned, 60)
        node, laptop = f"{args.prefix}-node", f"{args.prefix}-laptop"
        print(f"""
svcnet is up: a single-node cluster in namespace {node}.

  From the laptop, the NodePort answers (the pod's own IP does not):
    ip netns exec {laptop} curl http://{world.address('node')}:30008
    ip netns exec {laptop} curl --max-time 2 http://{ips.get('hello')}      # unreachable
  From the node, the pod answers on its IP:
    ip netns exec {node} curl http://{ips.get('hello')}
  The front-end reaches the back-end through its ClusterIP {backend_ip}:
    ip netns exec {node} curl 'http://{ips.get('frontend')}:8080/dial?request=hostname&host={backend_ip}&port=80&tries=4'
  ... and by its DNS name (cluster DNS at 10.96.0.10, through the pod's search path):
    ip netns exec {node} curl 'http://{ips.get('frontend')}:8080/dial?request=hostname&host=backend&port=80&tries=4'
  ... or from a shell in the front-end pod:
    ip netns exec {node} kubectl --kubeconfig {kubeconfig} exec frontend -- curl -s http://backend/hostname
  From the laptop, the LoadBalancer address spreads requests over both back-ends:
    ip netns exec {laptop} curl http://{lb_ip}/hostname
  kubectl:
    ip netns exec {node} kubectl --kubeconfig {kubeconfig} get pods,svc,endpointslices -o wide

Ctrl-C stops the cluster and removes everything the demo made.
""", flush=True)
        hello = world.run("laptop", "curl", "-s", "--max-time", "5",
                          f"http://{world.address('node')}:30008").stdout.strip()
        print(f"demo: laptop -> node:30008 answered: {hello!r}", flush=True)
        hostnames = {world.run("laptop", "curl", "-s", "--max-time", "5",
                               f"http://{lb_ip}/hostname").stdout.strip() for _ in range(12)}
        print(f"demo: laptop -> {lb_ip} (LoadBalancer) answered from: {', '.join(sorted(hostnames))}",
              flush=True)
        dial = world.run("node", "curl", "-s", "--max-time", "20",
                         f"http://{ips.get('frontend')}:8080/dial?request=hostname&host=backend"
                         "&port=80&tries=8").stdout
        by_name = set(json.loads(dial).get("responses") or []) if dial.startswith("{") else set()
        print(f"demo: frontend -> backend (by DNS name) answered from: "
              f"{', '.join(sorted(by_name)) or dial.strip()}", flush=True)
        r = kubectl(world, kubeconfig, "exec", "frontend", "--", "curl", "-s", "--max-time", "5",
                    "http://backend/hostname", check=False)
        print(f"demo: kubectl exec frontend -- curl http://backend/hostname answered: "
              f"{r.stdout.strip() or r.stderr.strip()!r}", flush=True)
        if args.exit_after_ready:
            return 0 if hello == "Hello World!" and hostnames == by_name == {"backend-1", "backend-2"} \
                else 1
        while server.poll() is None:
            time.sleep(1)
        print(f"demo: the server exited with {server.returncode}", flush=True)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        print("demo: tearing down", flush=True)
        if server is not None and server.poll() is None:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(30)
            except subprocess.TimeoutExpired:
                server.kill()
        world.run("node", sys.executable, "-m", "svcnet.cli.main", "down", "--data-dir", str(data))
        world.destroy()
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
