"""The node's DNS server bookkeeping: which server is current (the pid file), stepping down, and
`svcnet down` stopping every server of a data dir. Real processes (sleepers), no root."""

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import time

import aiohttp
import pytest

from svcnet.agent.dns.node import (PID_FILE, NodeDNS, kube_dns_slice, read_pid_file, stop_server,
                                   superseded, take_over)
from svcnet.agent.runtime.containers import proc_start_ticks
from svcnet.api.errors import APIError


@pytest.fixture
def sleepers(tmp_path):
    """Start processes that look like this data dir's DNS servers (by command line)."""
    procs = []

    def start(pid_file=None):
        argv = [sys.executable, "-c", "import time; time.sleep(60)", "svcnet.cli.main", "dns",
                "--pid-file", str(pid_file or tmp_path / PID_FILE)]
        p = subprocess.Popen(argv)
        procs.append(p)
        deadline = time.monotonic() + 5
        while proc_start_ticks(p.pid) is None and time.monotonic() < deadline:
            time.sleep(0.01)
        return p
    yield start
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait()


def write(path, pid):
    path.write_text(f"{pid} {proc_start_ticks(pid)}\n")


def test_the_first_server_takes_over_and_stays_current(tmp_path):
    pid_file = tmp_path / PID_FILE
    assert superseded(pid_file)  # no pid file: not (or no longer) the node's DNS
    assert take_over(pid_file)
    assert read_pid_file(tmp_path) == (os.getpid(), proc_start_ticks(os.getpid()))
    assert not superseded(pid_file)


def test_an_older_server_never_takes_over_from_a_newer_one(tmp_path, sleepers):
    pid_file = tmp_path / PID_FILE
    newer = sleepers()  # started after this test process
    write(pid_file, newer.pid)
    assert not take_over(pid_file)
    assert superseded(pid_file)


def test_a_newer_server_takes_over_from_an_older_or_dead_one(tmp_path, sleepers):
    pid_file = tmp_path / PID_FILE
    write(pid_file, 1)  # started long before this test process
    assert take_over(pid_file)
    dead = sleepers()
    write(pid_file, dead.pid)
    dead.kill()
    dead.wait()
    assert read_pid_file(tmp_path) is None
    assert take_over(pid_file) and not superseded(pid_file)


def test_down_stops_every_server_of_its_data_dir_and_no_other(tmp_path, sleepers):
    current, orphan = sleepers(), sleepers()
    other = sleepers(tmp_path / "elsewhere" / PID_FILE)
    write(tmp_path / PID_FILE, current.pid)
    assert stop_server(tmp_path, timeout=5)
    assert current.wait(5) is not None and orphan.wait(5) is not None
    assert other.poll() is None
    assert not (tmp_path / PID_FILE).exists()
    assert not stop_server(tmp_path)


def test_kube_dns_slice():
    s = kube_dns_slice("node1", "10.244.0.1")
    assert s["metadata"]["labels"] == {"kubernetes.io/service-name": "kube-dns",
                                       "endpointslice.kubernetes.io/managed-by": "svcnet-agent"}
    assert s["endpoints"][0]["addresses"] == ["10.244.0.1"] and s["endpoints"][0]["conditions"]["ready"]
    assert {(p["name"], p["protocol"], p["port"]) for p in s["ports"]} == {
        ("dns", "UDP", 53), ("dns-tcp", "TCP", 53), ("metrics", "TCP", 9153)}


@contextlib.asynccontextmanager
async def supervising(dns: NodeDNS):
    """`dns` started; stopped, and the server it started killed, at the end."""
    await dns.start()
    try:
        yield dns
    finally:
        await dns.stop()
        if dns.proc is not None:
            dns.proc.kill()
            dns.proc.wait()


def test_the_server_starts_only_once_the_proxy_has_synced(tmp_path):
    """The agent passes the proxy's first sync as `after`: no DNS server process competes with
    the full sync (at 10,000 Services both take a core), and one starts once it is done."""
    class Sleeper(NodeDNS):
        def command(self):
            return [sys.executable, "-c", "import time; time.sleep(60)"]

    async def scenario():
        synced = asyncio.Event()
        dns = Sleeper(None, [], node_name="n1", address="10.244.0.1", data_dir=tmp_path,
                      after=synced.wait)
        async with supervising(dns):
            await asyncio.sleep(0.3)  # what it would do meanwhile, if it did not wait
            assert dns.proc is None
            synced.set()
            deadline = time.monotonic() + 5
            while dns.proc is None and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            assert dns.proc is not None and dns.proc.poll() is None

    asyncio.run(scenario())


ECHO_SERVER = r"""
import socket, sys
from pathlib import Path
from svcnet.agent.dns.node import take_over
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", int(sys.argv[1])))
take_over(Path(sys.argv[2]))
while True:  # a query echoed back has its id and rcode 0: probe() takes it for an answer
    data, peer = s.recvfrom(4096)
    s.sendto(data, peer)
"""


class FlakyAPI:
    """In-memory EndpointSlices; the calls listed in `failures` raise those errors first (what
    the aiohttp client raises while the API server restarts). The slice watch sees nothing."""

    def __init__(self, *failures: Exception):
        self.failures = list(failures)
        self.slices: dict[str, dict] = {}

    async def get(self, res, namespace, name):
        if self.failures:
            raise self.failures.pop(0)
        if name not in self.slices:
            raise APIError(404, "NotFound", f'endpointslices.discovery.k8s.io "{name}" not found')
        return self.slices[name]

    async def create(self, res, obj, manager=""):
        self.slices[obj["metadata"]["name"]] = obj
        return obj

    async def list(self, res, namespace="", accept=None, **params):
        return {"items": [], "metadata": {"resourceVersion": "1"}}

    async def watch(self, res, namespace="", resource_version="", **params):
        await asyncio.Event().wait()
        yield


@pytest.mark.parametrize("failure", [aiohttp.ServerDisconnectedError(), aiohttp.ClientPayloadError(),
                                     ConnectionRefusedError()])
def test_the_slice_is_published_after_the_api_server_went_away_mid_request(tmp_path, failure):
    """A request cut off by an API server restart is retried: the supervisor (which also
    restarts the DNS server) must not die of it."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]

    class Echo(NodeDNS):
        def command(self):
            return [sys.executable, "-c", ECHO_SERVER, str(port), str(tmp_path / PID_FILE)]

    async def scenario():
        api = FlakyAPI(failure)
        dns = Echo(api, [], node_name="n1", address="127.0.0.1", port=port, data_dir=tmp_path)
        async with supervising(dns):
            deadline = time.monotonic() + 10
            while "kube-dns-n1" not in api.slices and time.monotonic() < deadline:
                assert not dns.tasks[0].done(), dns.tasks[0].exception()
                await asyncio.sleep(0.05)
            assert api.slices["kube-dns-n1"]["endpoints"][0]["addresses"] == ["127.0.0.1"]

    asyncio.run(scenario())
