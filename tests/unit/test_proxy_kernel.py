"""The proxy's rulesets in a real kernel: each test builds a throwaway network namespace, loads
rendered transactions with the real `nft`, and (for traffic) runs servers and clients inside it.
Needs root, `ip` and `nft`; skipped otherwise. Nothing touches the root namespace.

"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import sys
import time

import pytest

from svcnet.agent.proxy.apply import affinity_memory, apply
from svcnet.agent.proxy.model import Model, trace
from svcnet.agent.proxy.nft import NftError
from svcnet.agent.proxy.ruleset import NodeInfo, desired, full_transaction, partial_transaction

NODE_IP = "192.168.77.1"
PODS = ("10.244.0.2", "10.244.0.3", "10.244.0.4")
NODE = NodeInfo("node-1", (NODE_IP,), "10.244.0.0/16", "10.96.0.0/12")


def _skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root (network namespaces and nft)"
    for tool in ("ip", "nft"):
        if shutil.which(tool) is None:
            return f"`{tool}` is not installed"
    return None


pytestmark = pytest.mark.skipif(_skip_reason() is not None, reason=_skip_reason() or "")

_names = itertools.count()


class Netns:
    def __init__(self, name: str):
        self.name = name
        self.procs: list[subprocess.Popen] = []
        self.nft = ("ip", "netns", "exec", name, "nft")

    def run(self, *argv: str, timeout: float = 60) -> str:
        out = subprocess.run(["ip", "netns", "exec", self.name, *argv], capture_output=True,
                             text=True, timeout=timeout)
        if out.returncode != 0:
            raise AssertionError(f"{' '.join(argv)} failed: {out.stderr.strip()}")
        return out.stdout

    def spawn(self, *argv: str) -> None:
        self.procs.append(subprocess.Popen(["ip", "netns", "exec", self.name, *argv],
                                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))


@pytest.fixture
def make_netns():
    """Creates namespaces named svt-<pid>-<n>; kills their processes and deletes them after."""
    made: list[Netns] = []

    def make() -> Netns:
        name = f"svt-{os.getpid()}-{next(_names)}"
        out = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True)
        if out.returncode != 0:
            pytest.skip(f"cannot create a network namespace: {out.stderr.strip()}")
        made.append(Netns(name))
        made[-1].run("ip", "link", "set", "lo", "up")
        return made[-1]

    try:
        yield make
    finally:
        for ns in made:
            for p in ns.procs:
                p.kill()
                p.wait()
        for ns in made:
            subprocess.run(["ip", "netns", "del", ns.name], capture_output=True)


@pytest.fixture
def netns(make_netns):
    return make_netns()


def svc(name, ip, *ports, type="ClusterIP"):
    return {"metadata": {"namespace": "default", "name": name},
            "spec": {"type": type, "clusterIP": ip, "clusterIPs": [ip], "ports": list(ports)}}


def slice_(service, ports, ips):
    return {"metadata": {"namespace": "default", "name": f"{service}-x",
                         "labels": {"kubernetes.io/service-name": service}},
            "addressType": "IPv4",
            "ports": [{"name": n, "port": p, "protocol": proto} for n, p, proto in ports],
            "endpoints": [{"addresses": [ip], "conditions": {"ready": True}, "nodeName": "node-1"}
                          for ip in ips]}


SERVICES = [
    svc("web", "10.96.0.10", {"name": "http", "port": 80, "protocol": "TCP", "nodePort": 30080},
        type="NodePort"),
    svc("dns", "10.96.0.53", {"name": "dns", "port": 53, "protocol": "UDP"}),
    svc("empty", "10.96.0.20", {"name": "http", "port": 80, "protocol": "TCP"}),
]


def slices(web_pods):
    return [slice_("web", [("http", 8080, "TCP")], web_pods),
            slice_("dns", [("dns", 5353, "UDP")], [PODS[0]])]


def snapshot(ns: Netns) -> dict:
    """The table as the kernel reports it, without handles and with elements sorted."""
    out: dict = {}
    for obj in json.loads(ns.run("nft", "-j", "list", "table", "ip", "svcnet"))["nftables"]:
        (kind, body), = obj.items()
        if kind == "metainfo":
            continue
        body = {k: v for k, v in body.items() if k != "handle"}
        if "elem" in body:
            body["elem"] = sorted(json.dumps(e, sort_keys=True) for e in body["elem"])
        if kind == "rule":
            out.setdefault(("rules", body["chain"]), []).append(json.dumps(body["expr"], sort_keys=True))
        else:
            out[(kind, body["name"])] = json.dumps(body, sort_keys=True)
    return out


# --- the kernel accepts what we render -----------------------------------------------------

def test_full_partial_and_failed_syncs_in_the_kernel(netns):
    old = desired(SERVICES, slices(PODS), NODE)
    apply(full_transaction(old), nft=netns.nft)
    apply(full_transaction(old), nft=netns.nft)  # again over an existing table: still accepted
    listing = netns.run("nft", "list", "table", "ip", "svcnet")
    assert "10.96.0.10 . tcp . 80 : goto ep-tcp-3" in listing

    # A partial sync of one element (and a new endpoint chain, which nft 1.0.6 must accept in a
    # later transaction) ends exactly where a full sync of the new state would.
    new = desired(SERVICES, slices(PODS[:2]), NODE)
    apply(partial_transaction(old, new), nft=netns.nft)
    after_partial = snapshot(netns)
    apply(full_transaction(new), nft=netns.nft)
    assert snapshot(netns) == after_partial
    assert "goto ep-tcp-2" in netns.run("nft", "list", "map", "ip", "svcnet", "service-ips")

    # All or nothing: a full sync that fails on its last statement leaves the old table.
    before = snapshot(netns)
    bad = full_transaction(old).text() + "delete element ip svcnet cluster-ips { 10.96.0.99 }\n"
    with pytest.raises(NftError, match="No such file or directory"):
        apply(bad, nft=netns.nft)
    assert snapshot(netns) == before

    # A full sync replaces everything: an empty state leaves empty maps and no endpoint chains.
    apply(full_transaction(desired([], [], NODE)), nft=netns.nft)
    listing = netns.run("nft", "list", "table", "ip", "svcnet")
    assert "ep-tcp" not in listing and "10.96.0.10" not in listing


# --- real traffic --------------------------------------------------------------------------

SERVER = r"""
import http.server, socket, sys
ip, port, proto = sys.argv[1], int(sys.argv[2]), sys.argv[3]
if proto == "udp":
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((ip, port))
    while True:
        _, peer = s.recvfrom(100)
        s.sendto(f"{ip} {peer[0]}".encode(), peer)
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = f"{ip} {self.client_address[0]}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
http.server.HTTPServer((ip, port), Handler).serve_forever()
"""

# Prints {"seen": {"<server ip> <client ip as the server saw it>": count}, "errors": [[name, s]]}.
CLIENT = r"""
import json, socket, sys, time
host, port, n, proto, timeout = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], float(sys.argv[5])
seen, errors = {}, []
for _ in range(n):
    start = time.monotonic()
    try:
        if proto == "tcp":
            with socket.create_connection((host, port), timeout=timeout) as s:
                s.sendall(b"GET / HTTP/1.0\r\n\r\n")
                data = b""
                while chunk := s.recv(4096):
                    data += chunk
            body = data.split(b"\r\n\r\n", 1)[1].decode()
        else:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.settimeout(timeout)
                s.sendto(b"who", (host, port))
                body = s.recv(100).decode()
        seen[body] = seen.get(body, 0) + 1
    except OSError as e:
        errors.append([type(e).__name__, round(time.monotonic() - start, 3)])
print(json.dumps({"seen": seen, "errors": errors}))
"""


def request(ns: Netns, host: str, port: int, n: int = 1, proto: str = "tcp", timeout: float = 3) -> dict:
    return json.loads(ns.run(sys.executable, "-c", CLIENT, host, str(port), str(n), proto, str(timeout)))


def served(r: dict) -> dict[str, set[str]]:
    """server ip -> the client addresses it saw."""
    out: dict[str, set[str]] = {}
    for body in r["seen"]:
        server, client = body.split()
        out.setdefault(server, set()).add(client)
    return out


def wait_for_servers(ns: Netns, ips) -> None:
    deadline = time.monotonic() + 15
    while not all(request(ns, ip, 8080, timeout=1)["errors"] == [] for ip in ips):
        assert time.monotonic() < deadline, "pod servers did not start"
        time.sleep(0.2)


def test_traffic_from_the_node_to_cluster_ip_node_port_and_udp(netns):
    """Endpoints are addresses of the node namespace itself; clients run on the node (output
    hook, then input via loopback)."""
    netns.run("ip", "link", "add", "name", "node0", "type", "veth", "peer", "name", "pods0")
    netns.run("ip", "addr", "add", f"{NODE_IP}/24", "dev", "node0")
    for ip in PODS:
        netns.run("ip", "addr", "add", f"{ip}/24", "dev", "pods0")
    netns.run("ip", "link", "set", "node0", "up")
    netns.run("ip", "link", "set", "pods0", "up")
    netns.run("ip", "route", "add", NODE.service_cidr, "dev", "node0")
    for ip in PODS:
        netns.spawn(sys.executable, "-c", SERVER, ip, "8080", "tcp")
    netns.spawn(sys.executable, "-c", SERVER, PODS[0], "5353", "udp")
    wait_for_servers(netns, PODS)

    model = Model()
    old = desired(SERVICES, slices(PODS), NODE)
    for apply_to in (model.apply, lambda tx: apply(tx, nft=netns.nft)):
        apply_to(full_transaction(old))

    def predicted(dst, port):
        result = trace(model, NODE_IP, dst, "tcp", port, hook="output", local_ips=[NODE_IP, *PODS])
        return {e.split(":")[0] for e in result.endpoints}

    # ClusterIP: ~30 new connections reach all three pods, as the tracer predicts.
    r = request(netns, "10.96.0.10", 80, n=30)
    assert r["errors"] == [] and set(served(r)) == set(PODS) == predicted("10.96.0.10", 80)
    # NodePort on the node's address.
    r = request(netns, NODE_IP, 30080, n=30)
    assert r["errors"] == [] and set(served(r)) == set(PODS) == predicted(NODE_IP, 30080)
    # UDP ClusterIP (the udp endpoint map and chain).
    r = request(netns, "10.96.0.53", 53, n=3, proto="udp")
    assert r["errors"] == [] and set(served(r)) == {PODS[0]}
    # No endpoints, or a live ClusterIP on an unknown port: refused at once, not a timeout.
    for target in (("10.96.0.20", 80), ("10.96.0.10", 81)):
        r = request(netns, *target, n=3)
        assert r["seen"] == {} and [e[0] for e in r["errors"]] == ["ConnectionRefusedError"] * 3
        assert max(e[1] for e in r["errors"]) < 1.0
    # An unallocated address in the service CIDR is dropped (the client times out).
    r = request(netns, "10.96.0.11", 80, timeout=0.5)
    assert r["errors"][0][0] == "TimeoutError"

    # Partial sync: one endpoint goes; the remaining two get all the traffic.
    new = desired(SERVICES, slices(PODS[:2]), NODE)
    tx = partial_transaction(old, new)
    apply(tx, nft=netns.nft)
    model.apply(tx)
    r = request(netns, "10.96.0.10", 80, n=30)
    assert r["errors"] == [] and set(served(r)) == set(PODS[:2]) == predicted("10.96.0.10", 80)


def test_traffic_from_pods_and_from_off_cluster(make_netns):
    """The seed topology: pods in their own namespaces routed by the node, and a laptop on the
    node's LAN. Exercises prerouting, forward and postrouting, and shows who is masqueraded by
    the client address the pod sees.

        laptop 192.168.77.10 --- lan0 192.168.77.1 [node] p0 10.244.1.1 --- pod0 10.244.1.2
                                                          p1 10.244.1.1 --- pod1 10.244.1.3
    """
    node, laptop, pods, gateway = seed_world(make_netns)
    services = [svc("app", "10.96.0.30", {"name": "http", "port": 80, "protocol": "TCP", "nodePort": 30030},
                    type="NodePort"),
                svc("empty", "10.96.0.20", {"name": "http", "port": 80, "protocol": "TCP"})]
    state = desired(services, [slice_("app", [("http", 8080, "TCP")], list(pods))], NODE)
    apply(full_transaction(state), nft=node.nft)
    model = Model()
    model.apply(full_transaction(state))

    # pod0 -> its own Service: the other pod sees pod0's address; pod0 itself (hairpin) sees the
    # node's gateway address, else its replies would bypass the un-DNAT and the connection fail.
    r = request(pods["10.244.1.2"], "10.96.0.30", 80, n=30)
    assert r["errors"] == []
    assert served(r) == {"10.244.1.2": {gateway}, "10.244.1.3": {"10.244.1.2"}}
    assert str(trace(model, "10.244.1.2", "10.96.0.30", "tcp", 80, local_ips=[NODE_IP, gateway])) == \
        "dnat 10.244.1.2:8080 masquerade=True | dnat 10.244.1.3:8080 masquerade=False"
    # pod -> Service without endpoints: rejected in forward.
    r = request(pods["10.244.1.3"], "10.96.0.20", 80)
    assert [e[0] for e in r["errors"]] == ["ConnectionRefusedError"] and r["errors"][0][1] < 1.0

    # The laptop reaches the NodePort; every pod sees the node (masquerade).
    r = request(laptop, NODE_IP, 30030, n=30)
    assert r["errors"] == [] and served(r) == {ip: {gateway} for ip in pods}
    # The laptop cannot reach a pod directly (no route), and through the node only by Service.
    assert request(laptop, "10.244.1.2", 8080, timeout=0.5)["errors"][0][0] == "OSError"
    # With a route to the service CIDR, off-cluster traffic to a ClusterIP is masqueraded too.
    laptop.run("ip", "route", "add", NODE.service_cidr, "via", NODE_IP)
    r = request(laptop, "10.96.0.30", 80, n=10)
    assert r["errors"] == [] and set().union(*served(r).values()) == {gateway}


def seed_world(make_netns):
    """node, laptop, {pod ip: pod} and the pods' gateway, wired as in the docstring above, with
    a server on :8080 in each pod."""
    node, laptop = make_netns(), make_netns()
    pods = {"10.244.1.2": make_netns(), "10.244.1.3": make_netns()}
    gateway = "10.244.1.1"
    node.run("sysctl", "-qw", "net.ipv4.ip_forward=1")
    node.run("ip", "link", "add", "name", "lan0", "type", "veth", "peer", "name", "eth0", "netns", laptop.name)
    node.run("ip", "addr", "add", f"{NODE_IP}/24", "dev", "lan0")
    node.run("ip", "link", "set", "lan0", "up")
    laptop.run("ip", "addr", "add", "192.168.77.10/24", "dev", "eth0")
    laptop.run("ip", "link", "set", "eth0", "up")
    for i, (ip, pod) in enumerate(pods.items()):
        node.run("ip", "link", "add", "name", f"p{i}", "type", "veth", "peer", "name", "eth0", "netns", pod.name)
        node.run("ip", "addr", "add", f"{gateway}/32", "dev", f"p{i}")
        node.run("ip", "link", "set", f"p{i}", "up")
        node.run("ip", "route", "add", f"{ip}/32", "dev", f"p{i}")
        pod.run("ip", "addr", "add", f"{ip}/32", "dev", "eth0")
        pod.run("ip", "link", "set", "eth0", "up")
        pod.run("ip", "route", "add", gateway, "dev", "eth0")
        pod.run("ip", "route", "add", "default", "via", gateway)
        pod.spawn(sys.executable, "-c", SERVER, ip, "8080", "tcp")
    node.run("ip", "route", "add", NODE.service_cidr, "dev", "lan0")
    wait_for_servers(node, pods)
    return node, laptop, pods, gateway


# --- scale (printed, not asserted) ---------------------------------------------------------

def scale_inputs(n_services: int = 10_000, n_endpoints: int = 5):
    services, slices_ = [], []
    for i in range(n_services):
        vip = f"10.96.{(i + 100) // 256}.{(i + 100) % 256}"
        services.append(svc(f"s{i}", vip, {"name": "http", "port": 80, "protocol": "TCP"}))
        base = i * n_endpoints
        slices_.append(slice_(f"s{i}", [("http", 8080, "TCP")],
                              [f"10.{244 + (base + j) // 65536}.{(base + j) // 256 % 256}.{(base + j) % 256}"
                               for j in range(n_endpoints)]))
    return services, slices_


def test_sync_times_with_10k_services(netns, capsys):
    services, slices_ = scale_inputs()
    apply(full_transaction(desired(services, slices_, NODE)), nft=netns.nft)  # warm: table exists
    full, nft_alone = [], []
    for _ in range(2):
        start = time.perf_counter()
        state = desired(services, slices_, NODE)
        text = full_transaction(state).text()
        rendered = time.perf_counter()
        apply(text, nft=netns.nft)
        full.append((rendered - start, time.perf_counter() - start))
        start = time.perf_counter()
        apply(text, nft=netns.nft)
        nft_alone.append(time.perf_counter() - start)

    changed = [dict(s) for s in slices_]
    changed[1234] = dict(changed[1234], endpoints=changed[1234]["endpoints"][:4])
    start = time.perf_counter()
    new = desired(services, changed, NODE)
    diffed = time.perf_counter()
    tx = partial_transaction(state, new)
    rendered = time.perf_counter()
    apply(tx, nft=netns.nft)
    done = time.perf_counter()
    vip = services[1234]["spec"]["clusterIP"]
    assert f"{vip} . tcp . 80 : goto ep-tcp-4" in netns.run("nft", "list", "map", "ip", "svcnet", "service-ips")

    render, total = min(full, key=lambda f: f[1])
    with capsys.disabled():
        print(f"\n[proxy scale] 10,000 services x 5 endpoints, {len(text) / 1e6:.1f} MB of nft text"
              f"\n  full sync (render + nft -f): {total:.2f} s (render {render:.2f} s)"
              f"\n  nft -f of the same text alone: {min(nft_alone):.2f} s"
              f"  -> ratio {total / min(nft_alone):.2f}"
              f"\n  partial sync, one endpoint removed: desired() {diffed - start:.3f} s,"
              f" diff+text {rendered - diffed:.3f} s, nft -f {done - rendered:.3f} s"
              f" ({len(tx.text().splitlines())} lines)")


# --- issue 5: LoadBalancer addresses and traffic policies ------------------------------------

def test_policy_rulesets_load_and_partial_syncs_end_where_full_syncs_do(netns):
    """Walk through every policy shape of test_proxy_policies (affinity sets and chains coming
    and going, interval source ranges, Local maps): each partial sync in nft 1.0.6 leaves the
    table a full sync of the same state leaves."""
    from tests.unit.test_proxy_policies import NODE as PNODE, SERVICES as PSERVICES, SLICES as PSLICES

    slices_cycle = itertools.cycle(["all", "remote only", "none", "local only", "one"])
    old = desired([], [], PNODE)
    apply(full_transaction(old), nft=netns.nft)
    for name in list(PSERVICES) + ["affinity", "plain"]:
        new = desired([PSERVICES[name]], PSLICES[next(slices_cycle)], PNODE)
        tx = partial_transaction(old, new)
        if tx is not None:
            apply(tx, nft=netns.nft)
        after_partial = snapshot(netns)
        apply(full_transaction(new), nft=netns.nft)
        assert snapshot(netns) == after_partial, name
        old = new


def lb_service(name, ip, lb_ip, port, **spec):
    s = svc(name, ip, {"name": "http", "port": port, "protocol": "TCP", "nodePort": 30000 + port},
            type="LoadBalancer")
    s["spec"].update(spec)
    s["status"] = {"loadBalancer": {"ingress": [{"ip": lb_ip}]}}
    return s


def test_load_balancer_addresses_and_policies_with_real_traffic(make_netns):
    """In the seed topology, with the LB address as a local address of the node (as an
    announcer adds it) and one of the two pods declared to live on another node."""
    node, laptop, pods, gateway = seed_world(make_netns)
    here, there = "10.244.1.2", "10.244.1.3"
    lb_ip, laptop_ip = "192.168.77.240", "192.168.77.10"
    node.run("ip", "addr", "add", f"{lb_ip}/32", "dev", "lan0")  # (this kernel has no dummy links)
    services = [
        lb_service("cluster", "10.96.0.40", lb_ip, 80),
        lb_service("local", "10.96.0.41", lb_ip, 81, externalTrafficPolicy="Local"),
        lb_service("ranges", "10.96.0.42", lb_ip, 82, loadBalancerSourceRanges=["10.0.0.0/8"]),
        lb_service("sticky", "10.96.0.43", lb_ip, 83, sessionAffinity="ClientIP"),
        lb_service("servicelb", "10.96.0.44", NODE_IP, 84),
        lb_service("udp", "10.96.0.45", lb_ip, 85),
        lb_service("brief", "10.96.0.46", lb_ip, 86, sessionAffinity="ClientIP",
                   sessionAffinityConfig={"clientIP": {"timeoutSeconds": 3}}),
    ]
    services[5]["spec"]["ports"][0]["protocol"] = "UDP"
    for ip, pod in pods.items():
        pod.spawn(sys.executable, "-c", SERVER, ip, "8080", "udp")
    slices_ = []
    for s in services:
        proto = s["spec"]["ports"][0]["protocol"]
        slice_s = slice_(s["metadata"]["name"], [("http", 8080, proto)], [here, there])
        slice_s["endpoints"][1]["nodeName"] = "node-2"
        slices_.append(slice_s)
    state = desired(services, slices_, NODE)
    apply(full_transaction(state), nft=node.nft)

    # eTP Cluster: both pods, masqueraded; ServiceLB mode on the node's own address the same.
    for port in (80, 84):
        target = lb_ip if port == 80 else NODE_IP
        r = request(laptop, target, port, n=30)
        assert r["errors"] == [] and served(r) == {here: {gateway}, there: {gateway}}, port
    # eTP Local: only this node's pod, and it sees the laptop's own address.
    r = request(laptop, lb_ip, 81, n=20)
    assert r["errors"] == [] and served(r) == {here: {laptop_ip}}
    r = request(laptop, NODE_IP, 30081, n=10)
    assert r["errors"] == [] and served(r) == {here: {laptop_ip}}
    # ... while a pod reaching the same address is cluster traffic: both pods.
    r = request(pods[here], lb_ip, 81, n=30)  # (not `there`: it is not really on another node)
    assert r["errors"] == [] and set(served(r)) == {here, there}
    # ClientIP affinity: one client, one pod; the kernel remembers the laptop in that pod's set.
    r = request(laptop, lb_ip, 83, n=20)
    assert r["errors"] == [] and len(served(r)) == 1
    listing = node.run("nft", "list", "table", "ip", "svcnet")
    remembered = [line for line in listing.splitlines() if laptop_ip in line and "expires" in line]
    assert len(remembered) == 1 and "expires 2h59m" in remembered[0], listing  # timeout 10800 s
    # A full sync replaces the table but writes the memory back: the laptop keeps its pod.
    memory = affinity_memory(node.nft)
    assert [list(clients) for clients in memory.values()] == [[laptop_ip]]
    apply(full_transaction(state, memory), nft=node.nft)
    assert served(request(laptop, lb_ip, 83, n=10)) == served(r)
    # timeoutSeconds: the kernel forgets the client when it runs out.
    assert request(laptop, lb_ip, 86)["errors"] == []
    brief = [n for n, clients in affinity_memory(node.nft).items() if n not in memory]
    assert len(brief) == 1 and laptop_ip in affinity_memory(node.nft)[brief[0]]
    deadline = time.monotonic() + 15
    while brief[0] in affinity_memory(node.nft):
        assert time.monotonic() < deadline, "the 3 s affinity did not expire"
        time.sleep(0.2)
    # UDP through the LB address.
    r = request(laptop, lb_ip, 85, n=20, proto="udp")
    assert r["errors"] == [] and served(r) == {here: {gateway}, there: {gateway}}
    # loadBalancerSourceRanges: the laptop is outside 10.0.0.0/8 (dropped: a timeout) ...
    r = request(laptop, lb_ip, 82, timeout=0.5)
    assert r["seen"] == {} and r["errors"][0][0] == "TimeoutError"
    assert request(laptop, NODE_IP, 30082)["errors"] == []  # (its NodePort is not subject)
    # ... until a partial sync lets its LAN in.
    services[2]["spec"]["loadBalancerSourceRanges"] = ["10.0.0.0/8", "192.168.77.0/24"]
    new = desired(services, slices_, NODE)
    apply(partial_transaction(state, new), nft=node.nft)
    r = request(laptop, lb_ip, 82, n=10)
    assert r["errors"] == [] and set(served(r)) == {here, there}
    # eTP Local with no local endpoint: the laptop is dropped, a pod still served.
    for s in slices_:
        s["endpoints"] = s["endpoints"][1:]
    newer = desired(services, slices_, NODE)
    apply(partial_transaction(new, newer), nft=node.nft)
    assert request(laptop, lb_ip, 81, timeout=0.5)["errors"][0][0] == "TimeoutError"
    r = request(pods[here], lb_ip, 81, n=5)
    assert r["errors"] == [] and set(served(r)) == {there}


def test_conntrack_cli_lists_and_deletes_udp_entries_in_the_namespace(netns):
    from svcnet.agent.proxy.conntrack import ConntrackCLI
    netns.run("nft", "add table ip t")  # conntrack runs in a namespace once a hook needs it
    netns.run("nft", "add chain ip t o { type filter hook output priority 0 ; }")
    netns.run("nft", "add rule ip t o ct state new counter")
    send = "import socket\nfor p in (9, 9, 10):\n    socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b'x', ('127.0.0.1', p))"
    netns.run(sys.executable, "-c", send)
    ct = ConntrackCLI(("ip", "netns", "exec", netns.name, "conntrack"))
    entries = ct.list_udp()
    assert sorted(e.dport for e in entries) == [9, 9, 10] and {e.reply_src for e in entries} == {"127.0.0.1"}
    ct.delete("127.0.0.1", 9, "127.0.0.1")
    assert [e.dport for e in ct.list_udp()] == [10]


# An ICMP echo over a raw socket (no `ping` needed); prints "reply" or "timeout".
PING = r"""
import socket, struct, sys, time
def checksum(b):
    s = sum(struct.unpack(f"!{len(b) // 2}H", b))
    s = (s >> 16) + (s & 0xffff)
    return ~(s + (s >> 16)) & 0xffff
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
s.settimeout(2)
body = struct.pack("!BBHHH", 8, 0, 0, 0x5356, 1) + b"svcnet"
s.sendto(body[:2] + struct.pack("!H", checksum(body)) + body[4:], (sys.argv[1], 0))
deadline = time.monotonic() + 2
try:
    while time.monotonic() < deadline:
        data, peer = s.recvfrom(1500)
        if peer[0] == sys.argv[1] and data[20] == 0 and data[24:26] == b"\x53\x56":
            print("reply")
            break
    else:
        print("timeout")
except socket.timeout:
    print("timeout")
"""


def test_an_lb_address_exposes_only_its_service_ports(make_netns):
    """The announcer makes the LB address local, so without the ruleset the laptop reaches
    whatever listens on the node there (here a TCP server on :7443 standing for the API server,
    a UDP one on :5300). With it: the Service port works, other ports and NodePorts are refused
    on the LB address (from the laptop, a pod and the node itself), the node's own address keeps
    its sockets, NodePorts and a ServiceLB-mode port, ping answers; moving the LB address is an
    element update."""
    node, laptop, pods, gateway = seed_world(make_netns)
    lb_ip, moved = "192.168.77.240", "192.168.77.241"
    for ip in (lb_ip, moved):
        node.run("ip", "addr", "add", f"{ip}/32", "dev", "lan0")
    node.spawn(sys.executable, "-c", SERVER, "0.0.0.0", "7443", "tcp")
    node.spawn(sys.executable, "-c", SERVER, "0.0.0.0", "5300", "udp")
    deadline = time.monotonic() + 15
    while request(laptop, lb_ip, 7443, timeout=1)["errors"]:  # the leak this test is about
        assert time.monotonic() < deadline, "the node's server did not start"
        time.sleep(0.2)
    assert request(laptop, lb_ip, 5300, proto="udp")["errors"] == []
    services = [lb_service("web", "10.96.0.40", lb_ip, 80), lb_service("servicelb", "10.96.0.44", NODE_IP, 84)]
    slices_ = [slice_(s["metadata"]["name"], [("http", 8080, "TCP")], list(pods)) for s in services]
    state = desired(services, slices_, NODE)
    apply(full_transaction(state), nft=node.nft)
    model = Model()
    model.apply(full_transaction(state))
    local = [NODE_IP, lb_ip, moved, gateway]

    def refused(client, host, port):  # (not timed: the kernel rate-limits ICMP errors per peer)
        return [e[0] for e in request(client, host, port)["errors"]] == ["ConnectionRefusedError"]

    for client, src in ((laptop, "192.168.77.10"), (pods["10.244.1.2"], "10.244.1.2"), (node, NODE_IP)):
        hook = "output" if client is node else "prerouting"
        for port in (7443, 30080, 30084):
            assert refused(client, lb_ip, port), (src, port)
            assert trace(model, src, lb_ip, "tcp", port, hook=hook, local_ips=local).verdict == "reject"
        assert trace(model, src, lb_ip, "tcp", 80, hook=hook, local_ips=local).local is False
    r = request(laptop, lb_ip, 80, n=20)
    assert r["errors"] == [] and set(served(r)) == set(pods)
    r = request(laptop, lb_ip, 5300, proto="udp", timeout=0.5)  # rejected: the server is silent
    assert r["seen"] == {} and r["errors"][0][0] == "TimeoutError"
    assert laptop.run(sys.executable, "-c", PING, lb_ip).strip() == "reply"
    # The node's own address: its sockets, NodePorts and the ServiceLB-mode port.
    assert served(request(laptop, NODE_IP, 7443)) == {"0.0.0.0": {"192.168.77.10"}}
    assert request(laptop, NODE_IP, 5300, proto="udp")["errors"] == []
    for port in (30080, 84, 30084):
        r = request(laptop, NODE_IP, port, n=5)
        assert r["errors"] == [] and set(served(r)) <= set(pods), port
    assert trace(model, "192.168.77.10", NODE_IP, "tcp", 7443, local_ips=local).local is True

    # The Service moves to another address: one element out of the set, one in.
    services[0]["status"]["loadBalancer"]["ingress"] = [{"ip": moved}]
    new = desired(services, slices_, NODE)
    apply(partial_transaction(state, new), nft=node.nft)
    assert refused(laptop, moved, 7443)
    assert served(request(laptop, lb_ip, 7443)) == {"0.0.0.0": {"192.168.77.10"}}  # no longer an LB address
    r = request(laptop, moved, 80, n=5)
    assert r["errors"] == [] and set(served(r)) <= set(pods)
