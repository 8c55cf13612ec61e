"""Cluster DNS end to end (issue 5): kube-dns at 10.96.0.10, from the node and from pods.

    laptop 192.168.1.10 (a fake upstream DNS) ---- LAN ---- node 192.168.1.2 (svcnet server + agent)
                                                              | svcnet0 10.244.0.1 (cluster DNS :53)
                                                            pods 10.244.0.x

The server's --resolv-conf names only the laptop's fake upstream, so forwarded names never
reach this machine's resolvers. Queries are made with dig (bind9-dnsutils) and, inside pods,
with glibc (getent, netexec's /dial), through the pods' own resolv.conf and search path.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import textwrap
import threading
import time
import urllib.parse
from pathlib import Path

import pytest

from svcnet.agent.runtime.containers import proc_start_ticks
from tests.e2e.cluster import poll, running_cluster, unique_prefix

pytestmark = [pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces"),
              pytest.mark.skipif(shutil.which("dig") is None, reason="needs dig (bind9-dnsutils)")]

DNS = "10.96.0.10"
GATEWAY = "10.244.0.1"  # the node's DNS server listens on its pod gateway

# A tiny upstream resolver for the laptop: *.example.test -> 192.168.1.10, anything else NXDOMAIN.
FAKE_UPSTREAM = textwrap.dedent("""
    import socket, struct, threading

    def answer(q):
        pos, labels = 12, []
        while q[pos]:
            labels.append(q[pos + 1:pos + 1 + q[pos]].decode().lower())
            pos += 1 + q[pos]
        qtype = struct.unpack("!H", q[pos + 1:pos + 3])[0]
        known = ".".join(labels).endswith(".example.test")
        rr = b""
        if known and qtype == 1:
            rr = b"\\xc0\\x0c" + struct.pack("!HHIH", 1, 1, 30, 4) + socket.inet_aton("192.168.1.10")
        head = struct.pack("!HHHHH", 0x8180 | (0 if known else 3), 1, 1 if rr else 0, 0, 0)
        return q[:2] + head + q[12:pos + 5] + rr

    def tcp():
        t = socket.socket()
        t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        t.bind(("192.168.1.10", 53))
        t.listen()
        while True:
            c, _ = t.accept()
            with c:
                n = struct.unpack("!H", c.recv(2))[0]
                q = b""
                while len(q) < n:
                    q += c.recv(n - len(q))
                r = answer(q)
                c.sendall(struct.pack("!H", len(r)) + r)

    threading.Thread(target=tcp, daemon=True).start()
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("192.168.1.10", 53))
    while True:
        q, addr = s.recvfrom(4096)
        s.sendto(answer(q), addr)
""")

POD = """
apiVersion: v1
kind: Pod
metadata: {{name: {name}, labels: {{app: web}}}}
spec:
  {extra}
  containers:
  - name: netexec
    image: registry.k8s.io/e2e-test-images/agnhost:2.53
    args: [netexec, --http-port=8080, --udp-port=-1]
    readinessProbe: {{httpGet: {{path: /hostname, port: 8080}}, periodSeconds: 1}}
---
"""
# web-0 has a hostname in the headless Service `peers`; web-1 does not.
MANIFEST = POD.format(name="web-0", extra="hostname: web-0\n  subdomain: peers") \
    + POD.format(name="web-1", extra="") + """
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: peers}
spec:
  clusterIP: None
  selector: {app: web}
  ports: [{name: http, port: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: nobody}
spec:
  clusterIP: None
  selector: {app: nobody}
  ports: [{name: http, port: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: ext}
spec:
  type: ExternalName
  externalName: www.example.test
"""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dns")
    resolv = tmp / "upstream-resolv.conf"
    resolv.write_text("nameserver 192.168.1.10\n")
    with running_cluster(unique_prefix("d"), tmp / "node", "--resolv-conf", str(resolv)) as c:
        c.world.spawn("laptop", sys.executable, "-c", FAKE_UPSTREAM)
        c.kubectl("apply", "-f", "-", input=MANIFEST)
        poll(lambda: c.kubectl("wait", "--for=condition=Ready", "pod", "--all", "--timeout=1s",
                               check=False).count("condition met") == 2, 90, "the pods to be Ready")
        poll(lambda: dig(c, "kubernetes.default.svc.cluster.local") == ["10.96.0.1"], 60,
             "the cluster DNS to answer at 10.96.0.10")
        poll(lambda: len(dig(c, "peers.default.svc.cluster.local")) == 2, 30,
             "the headless Service's endpoints")
        yield c


def dig(cluster, name: str, qtype: str = "A", *opts: str, host: str = "node", server: str = DNS) -> list[str]:
    r = cluster.world.run(host, "dig", f"@{server}", "+short", "+time=2", "+tries=2", *opts, name, qtype)
    if r.returncode != 0:
        return [f"dig failed: {r.stdout}"]
    return sorted(line for line in r.stdout.split("\n")[:-1] if not line.startswith(";;"))  # not retries' notes


def status(cluster, name: str, qtype: str = "A", host: str = "node") -> str:
    out = cluster.world.run(host, "dig", f"@{DNS}", "+time=2", "+tries=2", name, qtype).stdout
    return out.split("status: ", 1)[1].split(",", 1)[0] if "status: " in out else out


def in_pod(cluster, pod: str, cmd: str) -> str:
    """Run a shell command inside a pod (netexec /shell), with the pod's resolv.conf."""
    url = f"http://{cluster.pod_ip(pod)}:8080/shell?cmd={urllib.parse.quote(cmd)}"
    rc, body = cluster.curl("node", url, timeout=15)
    assert rc == 0, body
    return json.loads(body).get("output", "")


def test_a_record_of_a_cluster_ip_service_over_udp_and_tcp_from_the_node(cluster):
    ip = cluster.json("get", "svc", "web")["spec"]["clusterIP"]
    assert dig(cluster, "web.default.svc.cluster.local") == [ip]
    assert dig(cluster, "web.default.svc.cluster.local", "A", "+tcp") == [ip]
    assert dig(cluster, "WeB.DeFault.svc.cluster.local") == [ip]  # names are case-insensitive
    assert dig(cluster, "web.default.svc.cluster.local", "AAAA") == []  # IPv4 only: NODATA
    assert status(cluster, "web.default.svc.cluster.local", "AAAA") == "NOERROR"


def test_srv_for_named_ports(cluster):
    assert dig(cluster, "_http._tcp.web.default.svc.cluster.local", "SRV") == [
        "0 100 80 web.default.svc.cluster.local."]
    web1 = cluster.pod_ip("web-1").replace(".", "-")  # no hostname: named by its address
    assert dig(cluster, "_http._tcp.peers.default.svc.cluster.local", "SRV") == sorted([
        "0 50 8080 web-0.peers.default.svc.cluster.local.",
        f"0 50 8080 {web1}.peers.default.svc.cluster.local."])
    assert status(cluster, "_nope._tcp.web.default.svc.cluster.local", "SRV") == "NXDOMAIN"


def test_headless_service_hostnames_and_ptr(cluster):
    ips = sorted(cluster.pod_ip(p) for p in ("web-0", "web-1"))
    assert dig(cluster, "peers.default.svc.cluster.local") == ips
    assert dig(cluster, "web-0.peers.default.svc.cluster.local") == [cluster.pod_ip("web-0")]
    assert status(cluster, "nobody.default.svc.cluster.local") == "NXDOMAIN"  # no endpoints
    web_ip = cluster.json("get", "svc", "web")["spec"]["clusterIP"]
    assert dig(cluster, web_ip, "PTR", "-x") == ["web.default.svc.cluster.local."]
    assert dig(cluster, cluster.pod_ip("web-0"), "PTR", "-x") == [
        "web-0.peers.default.svc.cluster.local."]


def test_external_name_is_a_cname_followed_upstream(cluster):
    assert dig(cluster, "ext.default.svc.cluster.local") == ["192.168.1.10", "www.example.test."]
    assert dig(cluster, "ext.default.svc.cluster.local", "CNAME") == ["www.example.test."]


def test_unknown_names_are_nxdomain(cluster):
    assert status(cluster, "nope.default.svc.cluster.local") == "NXDOMAIN"
    assert status(cluster, "web.nonamespace.svc.cluster.local") == "NXDOMAIN"
    assert status(cluster, "default.svc.cluster.local") == "NOERROR"  # the namespace exists


def test_other_names_are_forwarded_to_the_resolv_conf_upstream(cluster):
    assert dig(cluster, "api.example.test") == ["192.168.1.10"]
    assert dig(cluster, "api.example.test", "A", "+tcp") == ["192.168.1.10"]  # TCP, forwarded over TCP
    assert status(cluster, "missing.invalid") == "NXDOMAIN"  # the upstream's own answer


def test_a_pod_resolves_services_by_short_name_through_its_search_path(cluster):
    resolv = in_pod(cluster, "web-1", "cat /etc/resolv.conf")
    assert f"nameserver {DNS}" in resolv and "search default.svc.cluster.local" in resolv
    ip = cluster.json("get", "svc", "web")["spec"]["clusterIP"]
    assert in_pod(cluster, "web-1", "getent hosts web").split() == [ip, "web.default.svc.cluster.local"]
    assert in_pod(cluster, "web-1", "getent hosts web.default").split()[0] == ip
    assert in_pod(cluster, "web-1", "getent hosts api.example.test").split()[0] == "192.168.1.10"
    assert in_pod(cluster, "web-1", "getent hosts nope; echo rc=$?").strip() == "rc=2"
    # netexec's /dial resolves the short name inside the pod and reaches both back ends
    rc, body = cluster.curl("node", f"http://{cluster.pod_ip('web-1')}:8080/dial?request=hostname"
                                    "&protocol=http&host=web&port=80&tries=20", timeout=30)
    assert rc == 0 and set(json.loads(body)["responses"]) == {"web-0", "web-1"}, body


def test_dig_from_a_pod_srv_and_tcp(cluster):
    out = in_pod(cluster, "web-0", "dig +short +search _http._tcp.web SRV; dig +short +tcp +search web")
    ip = cluster.json("get", "svc", "web")["spec"]["clusterIP"]
    assert out.split("\n")[:2] == ["0 100 80 web.default.svc.cluster.local.", ip]


def test_malformed_queries_get_formerr_and_the_server_keeps_serving(cluster):
    probe = textwrap.dedent(f"""
        import socket
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(2)
        s.sendto(b"\\x12\\x34\\x01\\x00\\x00\\x01\\x00\\x00\\x00\\x00\\x00\\x00\\x3fxx", ("{DNS}", 53))
        r = s.recv(512)
        print(r[:2].hex(), r[3] & 15)
        s.sendto(b"\\x01", ("{DNS}", 53))  # not even a header: dropped
    """)
    out = cluster.world.run("node", sys.executable, "-c", probe)
    assert out.stdout.split() == ["1234", "1"], out.stderr  # FORMERR, the query's ID
    assert dig(cluster, "kubernetes.default.svc.cluster.local") == ["10.96.0.1"]


def test_answers_follow_changes(cluster):
    cluster.kubectl("create", "service", "clusterip", "late", "--tcp=80:8080")
    ip = cluster.json("get", "svc", "late")["spec"]["clusterIP"]
    poll(lambda: dig(cluster, "late.default.svc.cluster.local") == [ip], 10, "the new Service")
    cluster.kubectl("delete", "service", "late")
    poll(lambda: status(cluster, "late.default.svc.cluster.local") == "NXDOMAIN", 10,
         "the deleted Service to be gone")


def test_kube_dns_service_and_its_endpoint_slice(cluster):
    svc = cluster.json("get", "svc", "kube-dns", "-n", "kube-system")
    assert svc["spec"]["clusterIP"] == DNS and "selector" not in svc["spec"]
    assert {(p["name"], p["protocol"], p["port"]) for p in svc["spec"]["ports"]} == {
        ("dns", "UDP", 53), ("dns-tcp", "TCP", 53), ("metrics", "TCP", 9153)}
    slices = cluster.json("get", "endpointslices", "-n", "kube-system",
                          "-l", "kubernetes.io/service-name=kube-dns")["items"]
    assert [s["endpoints"][0]["addresses"] for s in slices] == [["10.244.0.1"]]
    assert {(p["name"], p["protocol"], p["port"]) for p in slices[0]["ports"]} == {
        ("dns", "UDP", 53), ("dns-tcp", "TCP", 53), ("metrics", "TCP", 9153)}
    assert slices[0]["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"] == "svcnet-agent"
    node = cluster.json("get", "node", "node1")
    assert slices[0]["metadata"]["ownerReferences"] == [
        {"apiVersion": "v1", "kind": "Node", "name": "node1", "uid": node["metadata"]["uid"]}]


def scrape(cluster) -> str:
    """/metrics of the cluster DNS, through the kube-dns Service's `metrics` port."""
    rc, body = cluster.curl("node", f"http://{DNS}:9153/metrics", timeout=10)
    assert rc == 0 and "coredns_build_info" in body, (rc, body[:500])
    return body


def sample(text: str, name: str, **labels: str) -> float:
    """The sum of `name`'s samples whose labels include `labels`."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{"):
            continue
        head, value = line.rsplit(" ", 1)
        have = dict(kv.split("=", 1) for kv in head[len(name) + 1:-1].split(","))
        if all(have.get(k) == f'"{v}"' for k, v in labels.items()):
            total += float(value)
    return total


def test_coredns_metrics_through_the_kube_dns_service(cluster):
    """Queries of names of this test's own (type MX, which nothing else asks) counted exactly:
    a miss each (the answerer, NXDOMAIN), then a hit each from the UDP thread, one over TCP; and
    one name forwarded to the laptop's upstream. Read from the node at 10.96.0.10:9153 (the Service's `metrics` port and this node's slice)."""
    names = [f"m{i}-{os.getpid()}.default.svc.cluster.local" for i in range(3)]
    zone = {"zone": "cluster.local."}
    series = {
        "udp": ("coredns_dns_requests_total", dict(zone, proto="udp", type="MX", family="1")),
        "tcp": ("coredns_dns_requests_total", dict(zone, proto="tcp", type="MX")),
        "answered": ("coredns_dns_responses_total", dict(zone, rcode="NXDOMAIN", plugin="kubernetes")),
        "cached": ("coredns_dns_responses_total", dict(zone, rcode="NXDOMAIN", plugin="cache")),
        "hits": ("coredns_cache_hits_total", {"zones": "cluster.local.", "type": "denial"}),
        "timed": ("coredns_dns_request_duration_seconds_count", zone),
        "sent": ("coredns_forward_requests_total", {"to": "192.168.1.10:53"}),
        "relayed": ("coredns_forward_responses_total", {"to": "192.168.1.10:53", "rcode": "NOERROR"}),
        "forwarded": ("coredns_dns_responses_total", {"zone": ".", "plugin": "forward"}),
    }
    before = scrape(cluster)
    for opts in (("+noedns",), ("+noedns",), ("+noedns", "+tcp")):
        for name in names[:1] if "+tcp" in opts else names:
            r = cluster.world.run("node", "dig", f"@{DNS}", "+tries=1", "+time=5", *opts, name, "MX")
            assert "status: NXDOMAIN" in r.stdout, r.stdout
    assert dig(cluster, f"f-{os.getpid()}.example.test", "A", "+tries=1") == ["192.168.1.10"]
    after = scrape(cluster)
    grew = {k: sample(after, n, **lab) - sample(before, n, **lab) for k, (n, lab) in series.items()}
    assert grew == {"udp": 6, "tcp": 1, "answered": 3, "cached": 4, "hits": 4, "timed": 7,
                    "sent": 1, "relayed": 1, "forwarded": 1}
    assert 'server="dns://10.244.0.1:53"' in after and "process_resident_memory_bytes" in after
    assert cluster.curl("node", f"http://{DNS}:9153/health") == (0, "OK")
    assert cluster.curl("node", f"http://{DNS}:9153/ready") == (0, "OK")


def kube_dns_slice(cluster) -> dict | None:
    r = cluster.kubectl("get", "endpointslice", "-n", "kube-system", "kube-dns-node1", "-o", "json",
                        check=False)
    return json.loads(r) if r.strip().startswith("{") else None


def test_a_deleted_kube_dns_slice_is_published_again(cluster):
    before = kube_dns_slice(cluster)["metadata"]["uid"]
    cluster.kubectl("delete", "endpointslice", "-n", "kube-system", "kube-dns-node1")
    poll(lambda: (kube_dns_slice(cluster) or {}).get("metadata", {}).get("uid") not in (None, before),
         10, "the agent to publish the kube-dns EndpointSlice again")
    poll(lambda: dig(cluster, "web.default.svc.cluster.local") == [
        cluster.json("get", "svc", "web")["spec"]["clusterIP"]], 10, "names through 10.96.0.10 again")


def dns_server_pid(cluster) -> int:
    return int((cluster.data / "dns.pid").read_text().split()[0])


def test_names_keep_resolving_while_the_agent_restarts(cluster):
    """The DNS server outlives the agent; the next agent's server takes over without a gap."""
    old_dns, old_agent = dns_server_pid(cluster), cluster.agent_pid()
    failures, done = [], threading.Event()

    def load():
        while not done.is_set():
            # a client that retries as resolvers do (a datagram queued on the old server's
            # socket in the instant it closes is lost; the retry reaches the new one)
            got = dig(cluster, "web.default.svc.cluster.local", "A", "+tries=2", "+time=1")
            if len(got) != 1 or got[0].startswith("dig failed"):
                failures.append(got)

    t = threading.Thread(target=load)
    t.start()
    try:
        os.kill(old_agent, signal.SIGTERM)
        poll(lambda: cluster.agent_pid() not in (0, old_agent), 30, "the agent to be restarted")
        poll(lambda: dns_server_pid(cluster) != old_dns and proc_start_ticks(old_dns) is None,
             30, "the new DNS server to take over")
    finally:
        done.set()
        t.join()
    assert failures == []
    assert dig(cluster, "web.default.svc.cluster.local") == [
        cluster.json("get", "svc", "web")["spec"]["clusterIP"]]


def dns_servers(cluster) -> list[int]:
    """PIDs of this node's DNS server processes (their command line names its pid file)."""
    pid_file = str(cluster.data / "dns.pid").encode()
    out = []
    for d in Path("/proc").iterdir():
        try:
            argv = (d / "cmdline").read_bytes().split(b"\0") if d.name.isdigit() else []
        except OSError:
            continue
        if b"dns" in argv and pid_file in argv and proc_start_ticks(int(d.name)) is not None:
            out.append(int(d.name))
    return out


def test_extra_dns_servers_step_down_by_themselves(cluster):
    """A server the agent does not own (as one orphaned by an agent killed mid-start) takes
    over while it is newest, then steps down when the agent's replacement takes over."""
    mine = dns_servers(cluster)
    assert len(mine) == 1
    argv = Path(f"/proc/{mine[0]}/cmdline").read_bytes().split(b"\0")[:-1]
    extra = cluster.world.spawn("node", *[a.decode() for a in argv])
    poll(lambda: dns_server_pid(cluster) == extra.pid, 30, "the extra server to take over")
    poll(lambda: extra.poll() is not None, 30, "the extra server to step down")
    poll(lambda: len(dns_servers(cluster)) == 1 and dns_server_pid(cluster) in dns_servers(cluster),
         30, "one DNS server, the agent's")
    assert dig(cluster, "web.default.svc.cluster.local") == [
        cluster.json("get", "svc", "web")["spec"]["clusterIP"]]


def test_a_deleted_nodes_kube_dns_slice_goes_with_it(cluster):
    """Next to last: `kubectl delete node` (a node removed from the cluster) takes its kube-dns
    EndpointSlice with it (garbage collector, ownerReference), and the agent does not publish a
    slice for a Node that is gone, so no pod's query goes to a removed node's server."""
    assert kube_dns_slice(cluster) is not None
    cluster.kubectl("delete", "node", "node1")
    poll(lambda: kube_dns_slice(cluster) is None, 30, "the garbage collector to delete the slice")
    # the agent checks again on each change of the slice, so a re-publish would follow at once:
    # watch for one over a window
    end = time.monotonic() + 2
    while time.monotonic() < end:
        assert kube_dns_slice(cluster) is None, "the slice of a deleted Node was published again"


def test_svcnet_down_stops_the_dns_server(cluster):
    """Runs last: stop the server (DNS keeps answering, like pods keep running), then down."""
    pid = dns_server_pid(cluster)
    for proc in cluster.world.procs[:1]:  # svcnet server (the fake upstream is procs[1])
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    assert os.path.exists(f"/proc/{pid}")
    assert dig(cluster, "10.0.96.10.in-addr.arpa", "PTR", server=GATEWAY) == [
        "kube-dns.kube-system.svc.cluster.local."]  # directly: the Node (and its slice) is gone
    r = cluster.world.run("node", sys.executable, "-m", "svcnet.cli.main", "down", "--data-dir",
                          str(cluster.data))
    assert r.returncode == 0, r.stderr
    poll(lambda: proc_start_ticks(pid) is None, 10, "the DNS server to end")  # gone or a zombie
    assert dns_servers(cluster) == []
    assert not (cluster.data / "dns.pid").exists()
