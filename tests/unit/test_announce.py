"""The LoadBalancer announcer: which addresses are announced (pure), and, as root in throwaway
network namespaces, that an address on `svcnet-lb0` answers ARP on the LAN and stops when it
is removed."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

import pytest

import hashlib

from svcnet.agent.announce import (DummyLink, announced_addresses, elected, gratuitous_arp_frame,
                                   reconcile)
from svcnet.world import World


def lb(name: str, *ips: str, cls: str | None = None, type_: str = "LoadBalancer",
       external: tuple = ()) -> dict:
    spec = {"type": type_, "externalIPs": list(external)}
    if cls:
        spec["loadBalancerClass"] = cls
    return {"metadata": {"namespace": "default", "name": name}, "spec": spec,
            "status": {"loadBalancer": {"ingress": [{"ip": ip} for ip in ips]}}}


def test_announced_addresses_are_owned_lb_ingress_addresses_except_the_nodes_own():
    services = [
        lb("pool", "192.168.1.240"),
        lb("classed", "192.168.1.241", cls="svcnet.io/lb"),
        lb("servicelb", "192.168.1.2"),                       # the node's own address
        lb("nodeclass", "192.168.1.3", cls="svcnet.io/node-lb"),
        lb("foreign", "192.168.1.250", cls="example.com/other"),
        lb("v6", "fd00::1"),
        lb("ext", type_="ClusterIP", external=("192.168.1.99",)),  # externalIPs: never
    ]
    assert announced_addresses(services, "n1", ["192.168.1.2"], {}) == \
        {"192.168.1.240", "192.168.1.241"}


def test_local_policy_addresses_are_announced_only_with_a_ready_local_endpoint():
    svc = lb("local", "192.168.1.240")
    svc["spec"]["externalTrafficPolicy"] = "Local"

    def slices(node: str, ready: bool) -> dict:
        return {("default", "local"): {"local-1": {"endpoints": [
            {"addresses": ["10.244.0.2"], "nodeName": node, "conditions": {"ready": ready}}]}}}

    assert announced_addresses([svc], "n1", [], slices("n1", True)) == {"192.168.1.240"}
    assert announced_addresses([svc], "n1", [], slices("n1", False)) == set()
    assert announced_addresses([svc], "n1", [], slices("n2", True), ["n2"]) == set()
    assert announced_addresses([svc], "n2", [], slices("n2", True), ["n1", "n2"]) == \
        {"192.168.1.240"}  # the only candidate, whatever the hash says
    assert announced_addresses([svc], "n1", [], {}) == set()


def test_one_node_is_elected_per_address_as_metallb_does():
    ips = [f"192.168.1.{n}" for n in range(240, 251)]
    services = [lb(f"s{i}", ip) for i, ip in enumerate(ips)]
    nodes = ["n1", "n2", "n3"]
    per_node = {n: announced_addresses(services, n, [], {}, nodes) for n in nodes}
    assert set().union(*per_node.values()) == set(ips)
    assert sum(len(v) for v in per_node.values()) == len(ips)  # never two nodes for one address
    assert all(per_node.values())  # spread over the nodes (11 addresses, 3 nodes)
    ip = "192.168.1.240"
    want = min(nodes, key=lambda n: hashlib.sha256(f"{n}#{ip}".encode()).digest())
    assert elected(ip, nodes) == want and ip in per_node[want]
    # a node that is not Ready (not in the list) is no candidate; the node itself always is
    assert announced_addresses(services, "n1", [], {}, []) == set(ips)


def test_reconcile_is_a_sorted_diff():
    assert reconcile({"10.0.0.9", "10.0.0.10"}, {"10.0.0.10", "10.0.0.2", "10.0.0.11"}) == \
        (["10.0.0.2", "10.0.0.11"], ["10.0.0.9"])
    assert reconcile({"10.0.0.1"}, {"10.0.0.1"}) == ([], [])


def test_gratuitous_arp_frame_is_a_broadcast_announcement_of_the_address():
    mac = bytes.fromhex("020000000001")
    f = gratuitous_arp_frame(mac, "192.168.1.240")
    assert len(f) == 42
    assert f[:6] == b"\xff" * 6 and f[6:12] == mac and f[12:14] == b"\x08\x06"
    assert f[20:22] == b"\x00\x01"  # opcode: request (RFC 5227 announcement)
    assert f[22:28] == mac and f[28:32] == bytes([192, 168, 1, 240]) == f[38:42]
    assert f[32:38] == b"\x00" * 6


needs_root = pytest.mark.skipif(os.geteuid() != 0 or shutil.which("ip") is None,
                                reason="needs root and iproute2 for network namespaces")


@needs_root
def test_an_address_on_the_dummy_link_answers_on_the_lan_until_removed(tmp_path):
    world = World(f"svan{os.getpid() % 100000}")
    with world:
        link = DummyLink(netns=world.ns("node"))
        link.ensure()
        link.ensure()  # idempotent
        assert link.addresses() == set()
        (tmp_path / "index.html").write_text("announced\n")
        world.spawn("node", sys.executable, "-m", "http.server", "8080", "--bind", "0.0.0.0",
                    "--directory", str(tmp_path), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        def curl() -> str:
            r = world.run("laptop", "curl", "-s", "--max-time", "1", "http://192.168.1.240:8080/")
            return r.stdout

        assert curl() == ""  # nobody has 192.168.1.240 yet
        link.apply(["192.168.1.240"], [])
        assert link.addresses() == {"192.168.1.240"}
        deadline = time.monotonic() + 15
        while curl() != "announced\n":
            assert time.monotonic() < deadline, "the announced address never answered"
            time.sleep(0.2)
        mac = world.run("node", "cat", "/sys/class/net/eth0/address").stdout.strip()
        neigh = world.run("laptop", "ip", "neigh", "show", "192.168.1.240").stdout
        assert mac in neigh  # ARP answered by the node's LAN interface

        link.apply([], ["192.168.1.240"])
        assert link.addresses() == set()
        world.run("laptop", "ip", "neigh", "flush", "all")
        assert curl() == ""
        assert link.delete() and not link.delete()


@needs_root
def test_a_gratuitous_arp_moves_a_neighbours_stale_entry_to_the_node():
    world = World(f"svga{os.getpid() % 100000}")
    with world:
        ip = "192.168.1.240"
        world.run("laptop", "ip", "neigh", "replace", ip, "lladdr", "02:00:00:00:00:99", "dev",
                  "eth0", "nud", "stale", check=True)
        mac = world.run("node", "cat", "/sys/class/net/eth0/address").stdout.strip()
        assert mac not in world.run("laptop", "ip", "neigh", "show", ip).stdout
        r = world.run("node", sys.executable, "-c", "from svcnet.agent.announce import "
                      f"send_gratuitous_arp; send_gratuitous_arp('192.168.1.2', ['{ip}'])")
        assert r.returncode == 0, r.stderr
        deadline = time.monotonic() + 10
        while mac not in world.run("laptop", "ip", "neigh", "show", ip).stdout:
            assert time.monotonic() < deadline, world.run("laptop", "ip", "neigh").stdout
            time.sleep(0.1)
