"""The node's DNS server bookkeeping: which server is current (the pid file), stepping down, and
`svcnet down` stopping every server of a data dir. Real processes (sleepers), no root."""

import asyncio
import os
import subprocess
import sys
import time

import pytest

from svcnet.agent.dns.node import (PID_FILE, NodeDNS, kube_dns_slice, read_pid_file, stop_server,
                                   superseded, take_over)
from svcnet.agent.runtime.containers import proc_start_ticks


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
        ("dns", "UDP", 53), ("dns-tcp", "TCP", 53)}


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
        await dns.start()
        try:
            await asyncio.sleep(0.3)  # what it would do meanwhile, if it did not wait
            assert dns.proc is None
            synced.set()
            deadline = time.monotonic() + 5
            while dns.proc is None and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            assert dns.proc is not None and dns.proc.poll() is None
        finally:
            await dns.stop()
            if dns.proc is not None:
                dns.proc.kill()
                dns.proc.wait()

    asyncio.run(scenario())
