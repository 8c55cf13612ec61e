"""kube-proxy's service health server: the pure part (which Services, how many local ready
endpoints) and the real HTTP listeners on loopback."""

from __future__ import annotations

import asyncio
import json
import socket

import aiohttp

from svcnet.agent.proxy.healthcheck import (ServiceHealthServer, desired_health_checks,
                                            health_response, local_ready_endpoints)


def svc(name: str, hc: int | None, etp: str = "Local", type_: str = "LoadBalancer") -> dict:
    spec = {"type": type_, "externalTrafficPolicy": etp}
    if hc:
        spec["healthCheckNodePort"] = hc
    return {"metadata": {"namespace": "default", "name": name}, "spec": spec}


def ep(ip: str, node: str, ready=True, **conditions) -> dict:
    c = dict(conditions)
    if ready is not None:
        c["ready"] = ready
    return {"addresses": [ip], "nodeName": node, "conditions": c}


def test_local_ready_endpoints_counts_distinct_ready_addresses_on_this_node():
    slices = [
        {"endpoints": [ep("10.244.0.2", "n1"), ep("10.244.0.3", "n1", ready=None),
                       ep("10.244.0.4", "n1", ready=False, serving=True, terminating=True),
                       ep("10.244.1.2", "n2")]},
        {"endpoints": [ep("10.244.0.2", "n1")]},  # the same address on another port
    ]
    assert local_ready_endpoints(slices, "n1") == 2
    assert local_ready_endpoints(slices, "n2") == 1
    assert local_ready_endpoints(slices, "n3") == 0


def test_only_local_policy_load_balancers_with_a_port_get_a_health_check():
    services = [svc("a", 32001), svc("cluster", 32002, etp="Cluster"), svc("noport", None),
                svc("np", 32003, type_="NodePort")]
    slices = {("default", "a"): {"a-1": {"endpoints": [ep("10.244.0.2", "n1")]}}}
    assert desired_health_checks(services, slices, "n1") == {("default", "a"): (32001, 1)}
    assert desired_health_checks(services, {}, "n1") == {("default", "a"): (32001, 0)}


def test_the_response_is_kube_proxys():
    status, body = health_response(("default", "a"), 2, True)
    assert status == 200
    assert json.loads(body) == {"service": {"namespace": "default", "name": "a"},
                                "localEndpoints": 2, "serviceProxyHealthy": True}
    assert health_response(("default", "a"), 0, True)[0] == 503
    assert health_response(("default", "a"), 3, False)[0] == 503


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_listeners_follow_the_services_and_their_counts():
    async def main():
        port, other = _free_port(), _free_port()
        server = ServiceHealthServer(("127.0.0.1",))
        await server.start()
        try:
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as http:
                async def get(p: int, path: str = "/healthz"):
                    async with http.get(f"http://127.0.0.1:{p}{path}") as r:
                        weight = r.headers.get("X-Load-Balancing-Endpoint-Weight")
                        assert weight == str(json.loads(await r.text())["localEndpoints"])
                        return r.status, r.headers.get("Content-Type"), await r.text()

                await server.sync({("default", "a"): (port, 0)})
                status, ctype, body = await get(port)
                assert (status, ctype) == (503, "application/json")
                assert json.loads(body)["localEndpoints"] == 0
                await server.sync({("default", "a"): (port, 3)})
                status, _, body = await get(port, "/anything")  # any path, as kube-proxy
                assert status == 200 and json.loads(body)["localEndpoints"] == 3
                # the port moves: the old listener closes
                await server.sync({("default", "a"): (other, 1)})
                assert (await get(other))[0] == 200
                try:
                    await get(port)
                    raise AssertionError("the old port still answers")
                except aiohttp.ClientConnectionError:
                    pass
                # a port that is taken is reported and the others still open
                with socket.socket() as busy:
                    busy.bind(("127.0.0.1", 0))
                    busy.listen()
                    taken = busy.getsockname()[1]
                    failed = await server.sync({("default", "a"): (other, 1),
                                                ("default", "b"): (taken, 1)})
                    assert ("default", "b") not in server.sites
                    assert "in use" in failed[("default", "b")]
                    assert (await get(other))[0] == 200
                await server.sync({})
                assert server.sites == {}
        finally:
            await server.stop()

    asyncio.run(main())
