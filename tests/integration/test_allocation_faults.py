"""Allocators under concurrency and crashes, against real server processes."""

from __future__ import annotations

import asyncio
import signal
import threading

from .conftest import start_server, wait_for


def nodeport_svc(name: str) -> dict:
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"type": "NodePort", "selector": {"app": name},
                     "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}}


def _stored_allocations(data_dir) -> tuple[set[str], set[int]]:
    from svcnet.registry.service_alloc import IP_PREFIX, PORT_PREFIX
    from svcnet.store.sqlite import SQLiteBackend

    async def read():
        b = SQLiteBackend(str(data_dir / "state.db"))
        await b.start()
        try:
            ips = {kv.key[len(IP_PREFIX):] for kv in (await b.list(IP_PREFIX)).items}
            ports = {int(kv.key[len(PORT_PREFIX):]) for kv in (await b.list(PORT_PREFIX)).items}
            return ips, ports
        finally:
            await b.close()

    return asyncio.run(read())


def test_kill_9_during_concurrent_creates_loses_and_doubles_nothing(tmp_path):
    s = start_server(tmp_path / "crash")
    acked: dict[str, tuple[str, int]] = {}
    lock = threading.Lock()
    stop = threading.Event()

    def writer(w: int):
        i = 0
        while not stop.is_set():
            name = f"w{w}-{i}"
            i += 1
            try:
                status, _, body = s.request("POST", "/api/v1/namespaces/default/services", nodeport_svc(name))
            except OSError:
                return  # the server died under us
            if status == 201:
                with lock:
                    acked[name] = (body["spec"]["clusterIP"], body["spec"]["ports"][0]["nodePort"])

    threads = [threading.Thread(target=writer, args=(w,), daemon=True) for w in range(8)]
    try:
        for t in threads:
            t.start()
        wait_for(lambda: len(acked) >= 150, 60, what="150 acknowledged creates")
        s.proc.send_signal(signal.SIGKILL)  # mid-stream, by PID
        s.proc.wait(10)
        stop.set()
        for t in threads:
            t.join(30)
        s = start_server(s.data_dir, s.port)
        _, _, listed = s.request("GET", "/api/v1/namespaces/default/services")
        services = {o["metadata"]["name"]: o for o in listed["items"] if o["metadata"]["name"] != "kubernetes"}
        ips = [o["spec"]["clusterIP"] for o in services.values()]
        ports = [o["spec"]["ports"][0]["nodePort"] for o in services.values()]
        assert len(ips) == len(set(ips)), "a ClusterIP is held by two Services"
        assert len(ports) == len(set(ports)), "a NodePort is held by two Services"
        for name, (ip, port) in acked.items():
            assert name in services, f"acknowledged Service {name} was lost"
            got = services[name]["spec"]
            assert (got["clusterIP"], got["ports"][0]["nodePort"]) == (ip, port)
    finally:
        stop.set()
        s.stop()
    stored_ips, stored_ports = _stored_allocations(s.data_dir)
    # Every allocation is held by exactly the Services that exist, plus the control plane's own:
    # `default/kubernetes` (10.96.0.1) and `kube-system/kube-dns` (10.96.0.10).
    assert stored_ips == set(ips) | {"10.96.0.1", "10.96.0.10"}
    assert stored_ports == set(ports)


def test_repair_releases_an_injected_leak_and_restores_a_lost_key(tmp_path):
    from svcnet.registry.service_alloc import IP_PREFIX
    from svcnet.store.backend import Create, Delete
    from svcnet.store.sqlite import SQLiteBackend

    s = start_server(tmp_path / "repair")
    try:
        status, _, svc = s.request("POST", "/api/v1/namespaces/default/services", nodeport_svc("victim"))
        assert status == 201
        ip = svc["spec"]["clusterIP"]
    finally:
        s.stop()

    async def damage():
        b = SQLiteBackend(str(s.data_dir / "state.db"))
        await b.start()
        kv = await b.get(IP_PREFIX + ip)
        await b.txn([Delete(kv.key, kv.mod_revision),
                     Create(IP_PREFIX + "10.96.200.200", b'{"service":"default/ghost","uid":"x"}')])
        await b.close()

    asyncio.run(damage())
    s = start_server(s.data_dir, s.port, extra=["--repair-interval", "0.2"])
    try:
        def repaired():
            _, _, evs = s.request("GET", "/api/v1/namespaces/default/events")
            reasons = {(e["involvedObject"]["name"], e["reason"]) for e in evs["items"]}
            return ("victim", "ClusterIPNotAllocated") in reasons
        wait_for(repaired, 20, what="ClusterIPNotAllocated event")
        # the leak goes after three passes; a new Service may then take 10.96.200.200
        def leak_gone():
            body = nodeport_svc("taker")
            body["spec"]["clusterIP"] = "10.96.200.200"
            status, _, _ = s.request("POST", "/api/v1/namespaces/default/services", body)
            return status == 201
        wait_for(leak_gone, 20, interval=0.3, what="the leaked IP to be released")
        # and the restored key really protects the victim's IP
        body = nodeport_svc("thief")
        body["spec"]["clusterIP"] = ip
        status, _, err = s.request("POST", "/api/v1/namespaces/default/services", body)
        assert status == 422 and "provided IP is already allocated" in err["message"]
    finally:
        s.stop()
