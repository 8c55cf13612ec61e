"""The end-to-end harness: a real single-node cluster in a seed-shaped world of network namespaces.

`running_cluster(prefix, data_dir, *server_args)` builds the world (laptop 192.168.1.10, node
192.168.1.2 on a LAN bridge), starts `svcnet server` inside the node, waits for the API and the
Node, yields a `Cluster`, and on exit (failure too) stops the server, runs `svcnet down` in the
node and deletes every namespace it made. Each test module uses its own unique prefix.
The cluster DNS gets no upstream (`--resolv-conf /dev/null`) unless the caller passes one, so
no test ever forwards a query to this machine's resolvers.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from svcnet.world import World


def poll(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception as e:  # noqa: BLE001
            last = e
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}" + (f": {last!r}" if last else ""))


class Cluster:
    def __init__(self, world: World, data: Path):
        self.world = world
        self.data = data
        self.kubeconfig = data / "kubeconfig"

    def kubectl(self, *args: str, input: str | None = None, check: bool = True) -> str:
        r = self.world.run("node", "kubectl", f"--kubeconfig={self.kubeconfig}",
                           f"--cache-dir={self.data / 'kubectl-cache'}", *args, input=input)
        if check and r.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)}: {r.stdout}{r.stderr}")
        return r.stdout

    def json(self, *args: str) -> dict:
        return json.loads(self.kubectl(*args, "-o", "json"))

    def curl(self, host: str, url: str, timeout: float = 3) -> tuple[int, str]:
        r = self.world.run(host, "curl", "-s", "--max-time", str(timeout), url)
        return r.returncode, r.stdout

    def pod_ip(self, name: str) -> str:
        return self.json("get", "pod", name)["status"]["podIP"]

    def agent_pid(self) -> int:
        out = subprocess.run(["pgrep", "-f", f"svcnet.cli.main agent --kubeconfig {self.kubeconfig}"],
                             capture_output=True, text=True).stdout.split()
        return int(out[0]) if out else 0


@contextlib.contextmanager
def running_cluster(prefix: str, data: Path, *server_args: str, hosts: dict | None = None):
    """A world `prefix` with `svcnet server` (node1, 192.168.1.2) running in its node."""
    if "--resolv-conf" not in server_args:  # cluster DNS never forwards to this machine's resolvers
        server_args += ("--resolv-conf", "/dev/null")
    world = World(prefix, **({"hosts": hosts} if hosts else {}))
    data.mkdir(parents=True, exist_ok=True)
    world.create()
    c = Cluster(world, data)
    try:
        world.spawn("node", sys.executable, "-m", "svcnet.cli.main", "server", "--data-dir", str(data),
                    "--node-ip", "192.168.1.2", "--node-name", "node1", *server_args,
                    stdout=open(data.parent / f"{data.name}-server.log", "ab"), stderr=subprocess.STDOUT)
        poll(lambda: c.kubeconfig.exists() and c.kubectl("get", "--raw=/readyz", check=False) == "ok",
             60, "the API server")
        poll(lambda: c.json("get", "node", "node1")["spec"].get("podCIDR"), 60, "the node to register")
        yield c
    finally:
        for proc in world.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(30)
        world.run("node", sys.executable, "-m", "svcnet.cli.main", "down", "--data-dir", str(data))
        world.destroy()


def unique_prefix(tag: str) -> str:
    """A namespace prefix unique to this test run: `sv<tag><pid>` (kept short for link names)."""
    return f"sv{tag}{os.getpid() % 100000}"
