"""The namespace world used by the demo and the end-to-end tests (needs root)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from svcnet.world import World

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to create network namespaces")


def test_laptop_reaches_node_over_the_lan_and_destroy_removes_everything():
    w = World(f"svw{os.getpid() % 100000}")
    with w:
        server = w.spawn("node", sys.executable, "-m", "http.server", "8000", "--bind", "192.168.1.2",
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            r = w.run("laptop", "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                      "--max-time", "1", "http://192.168.1.2:8000/")
            if r.stdout == "200" or time.monotonic() > deadline:
                break
        assert r.stdout == "200"
        assert w.run("node", "ip", "-br", "addr", "show", "eth0").stdout.split()[2] == "192.168.1.2/24"
    assert server.poll() is not None
    names = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert w.prefix not in names
