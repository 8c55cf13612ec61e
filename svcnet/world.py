"""A small world of hosts in network namespaces, for the demo and the end-to-end tests.

    laptop 192.168.1.10 ---- LAN 192.168.1.0/24 (a bridge) ---- node 192.168.1.2

Every host is a network namespace `<prefix>-<host>`, wired by a veth pair to a bridge in the
namespace `<prefix>-lan`. Links are created inside those namespaces (`ip -n`), never in the
caller's, so the machine's own network is left alone. `destroy()` stops every process started
through `spawn()`/`run()` (by PID) and deletes the namespaces, which removes their links.
"""

from __future__ import annotations

import os
import signal
import subprocess
from dataclasses import dataclass, field

SEED_HOSTS = {"node": "192.168.1.2/24", "laptop": "192.168.1.10/24"}


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


@dataclass
class World:
    prefix: str
    hosts: dict[str, str] = field(default_factory=lambda: dict(SEED_HOSTS))
    procs: list[subprocess.Popen] = field(default_factory=list)
    created: list[str] = field(default_factory=list)

    def ns(self, host: str) -> str:
        return f"{self.prefix}-{host}"

    def address(self, host: str) -> str:
        return self.hosts[host].split("/")[0]

    def create(self) -> "World":
        try:
            lan = self.ns("lan")
            _ip("netns", "add", lan)
            self.created.append(lan)
            _ip("-n", lan, "link", "add", "br0", "type", "bridge")
            _ip("-n", lan, "link", "set", "br0", "up")
            for i, (host, cidr) in enumerate(self.hosts.items()):
                name = self.ns(host)
                _ip("netns", "add", name)
                self.created.append(name)
                port = f"p{i}"
                _ip("-n", name, "link", "add", "eth0", "type", "veth", "peer", "name", port,
                    "netns", lan)
                _ip("-n", name, "addr", "add", cidr, "dev", "eth0")
                _ip("-n", name, "link", "set", "eth0", "up")
                _ip("-n", name, "link", "set", "lo", "up")
                _ip("-n", lan, "link", "set", port, "master", "br0", "up")
        except BaseException:
            self.destroy()
            raise
        return self

    def command(self, host: str, *argv: str) -> list[str]:
        return ["ip", "netns", "exec", self.ns(host), *argv]

    def run(self, host: str, *argv: str, timeout: float = 60, check: bool = False,
            input: str | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(self.command(host, *argv), capture_output=True, text=True,
                              timeout=timeout, check=check, input=input, env=env)

    def spawn(self, host: str, *argv: str, **kwargs) -> subprocess.Popen:
        proc = subprocess.Popen(self.command(host, *argv), **kwargs)
        self.procs.append(proc)
        return proc

    def destroy(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(5)
        for name in reversed(self.created):
            subprocess.run(["ip", "netns", "del", name], capture_output=True)
        self.created.clear()

    def __enter__(self) -> "World":
        return self.create()

    def __exit__(self, *exc) -> None:
        self.destroy()
