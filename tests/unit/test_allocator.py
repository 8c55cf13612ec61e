"""ClusterIP/NodePort allocation: the pure ranges and the allocator on the in-memory store."""

from __future__ import annotations

import asyncio
import random

import orjson
import pytest

from svcnet.api.errors import APIError
from svcnet.api.resources import BY_KIND
from svcnet.registry.allocator import IPRange, PortRange, RangeFull, pick_offset
from svcnet.registry.service_alloc import IP_PREFIX, PORT_PREFIX, ServiceAllocator
from svcnet.registry.store import Registry
from svcnet.store.backend import Create
from svcnet.store.memory import MemoryBackend

SVC, NS = BY_KIND["Service"], BY_KIND["Namespace"]


@pytest.mark.parametrize("cidr,size,band", [
    ("10.96.0.0/12", 2**20 - 2, 256),   # KEP-3070: min(max(16, size/16), 256)
    ("10.0.0.0/22", 1022, 63),
    ("10.0.0.0/24", 254, 16),
    ("10.0.0.0/28", 14, 0),             # below 16 addresses: no split
])
def test_ip_range_bands(cidr, size, band):
    r = IPRange(cidr)
    assert (r.size, r.band) == (size, band)
    assert r.first() == str(r.network.network_address + 1)
    assert r.contains(r.first()) and not r.contains(str(r.network.network_address))
    assert not r.contains(str(r.network.broadcast_address))


def test_node_port_range_band_is_86_for_the_default_range():
    r = PortRange.parse("30000-32767")
    assert (r.base, r.size, r.band) == (30000, 2768, 86)
    assert r.contains(30000) and r.contains(32767) and not r.contains(32768)


def test_dynamic_picks_avoid_the_static_band_until_the_upper_band_is_full():
    r = PortRange.parse("30000-30099")  # size 100, band 16
    rng = random.Random(1)
    taken: set[int] = set()
    for _ in range(100 - r.band):
        p = r.pick(taken, rng)
        assert p >= 30000 + r.band
        taken.add(p)
    lower = r.pick(taken, rng)
    assert 30000 <= lower < 30000 + r.band
    taken |= set(range(30000, 30000 + r.band))
    with pytest.raises(RangeFull):
        r.pick(taken, rng)


def test_pick_offset_scans_with_wraparound():
    taken = {o for o in range(10) if o != 3}
    assert pick_offset(10, 0, lambda o: o in taken, random.Random(5)) == 3


def run(coro):
    return asyncio.run(coro)


async def setup(cidr="10.96.0.0/12", ports="30000-32767"):
    backend = MemoryBackend()
    await backend.start()
    reg = Registry(backend)
    alloc = ServiceAllocator(backend, IPRange(cidr), PortRange.parse(ports))
    await alloc.start()
    alloc.install(reg)
    await reg.create(NS, {"metadata": {"name": "default"}})
    return reg, alloc


def svc(name, type_="ClusterIP", ports=None, **spec):
    return {"metadata": {"name": name, "namespace": "default"},
            "spec": {"type": type_, "ports": ports or [{"name": "http", "port": 80, "protocol": "TCP"}],
                     "selector": {"app": name}, **spec}}


async def keys(backend, prefix):
    return {kv.key[len(prefix):]: orjson.loads(kv.value) for kv in (await backend.list(prefix)).items}


def test_create_allocates_and_delete_releases_in_the_same_transaction():
    async def go():
        reg, alloc = await setup()
        out = await reg.create(SVC, svc("a", "NodePort"))
        ip, np = out["spec"]["clusterIP"], out["spec"]["ports"][0]["nodePort"]
        assert out["spec"]["clusterIPs"] == [ip] and IPRange("10.96.0.0/12").contains(ip)
        assert 30086 <= np <= 32767
        assert (await keys(reg.backend, IP_PREFIX))[ip]["service"] == "default/a"
        assert str(np) in await keys(reg.backend, PORT_PREFIX)
        await reg.delete(SVC, "default", "a")
        assert await keys(reg.backend, IP_PREFIX) == {} and await keys(reg.backend, PORT_PREFIX) == {}
    run(go())


def test_requested_values_are_honoured_or_refused_with_kubernetes_messages():
    async def go():
        reg, alloc = await setup()
        a = await reg.create(SVC, svc("a", "NodePort", clusterIP="10.96.0.50", clusterIPs=["10.96.0.50"],
                                      ports=[{"port": 80, "protocol": "TCP", "nodePort": 30008}]))
        assert a["spec"]["clusterIP"] == "10.96.0.50" and a["spec"]["ports"][0]["nodePort"] == 30008
        with pytest.raises(APIError) as e:
            await reg.create(SVC, svc("b", "NodePort", clusterIP="10.96.0.50", clusterIPs=["10.96.0.50"],
                                      ports=[{"port": 80, "protocol": "TCP", "nodePort": 30008}]))
        assert e.value.code == 422
        assert e.value.message == (
            'Service "b" is invalid: [spec.clusterIPs: Invalid value: []string{"10.96.0.50"}: failed to '
            'allocate IP 10.96.0.50: provided IP is already allocated, spec.ports[0].nodePort: Invalid '
            'value: 30008: provided port is already allocated]')
        with pytest.raises(APIError) as e:
            await reg.create(SVC, svc("c", "NodePort", ports=[{"port": 80, "protocol": "TCP", "nodePort": 40000}]))
        assert e.value.details["causes"][0] == {
            "reason": "FieldValueInvalid", "field": "spec.ports[0].nodePort",
            "message": "Invalid value: 40000: provided port is not in the valid range. The range of "
                       "valid ports is 30000-32767"}
        assert await reg.try_get(SVC, "default", "b") is None and await reg.try_get(SVC, "default", "c") is None
        assert set(await keys(reg.backend, IP_PREFIX)) == {"10.96.0.50"}  # nothing leaked
    run(go())


def test_one_node_port_per_port_number_across_protocols():
    async def go():
        reg, _ = await setup()
        out = await reg.create(SVC, svc("dns", "NodePort", ports=[
            {"name": "dns", "port": 53, "protocol": "UDP"}, {"name": "dns-tcp", "port": 53, "protocol": "TCP"}]))
        a, b = (p["nodePort"] for p in out["spec"]["ports"])
        assert a == b
        assert list(await keys(reg.backend, PORT_PREFIX)) == [str(a)]
    run(go())


def test_health_check_node_port_for_local_load_balancers():
    async def go():
        reg, _ = await setup()
        out = await reg.create(SVC, svc("lb", "LoadBalancer", externalTrafficPolicy="Local"))
        hc = out["spec"]["healthCheckNodePort"]
        assert hc and hc != out["spec"]["ports"][0]["nodePort"]
        assert {str(hc), str(out["spec"]["ports"][0]["nodePort"])} == set(await keys(reg.backend, PORT_PREFIX))
    run(go())


def test_update_releases_what_the_new_spec_no_longer_needs():
    async def go():
        reg, _ = await setup()
        out = await reg.create(SVC, svc("a", "NodePort"))
        np = out["spec"]["ports"][0]["nodePort"]
        out["spec"]["ports"] = [{"name": "http", "port": 80, "protocol": "TCP", "nodePort": np},
                                {"name": "x", "port": 81, "protocol": "TCP"}]
        out = await reg.update(SVC, "default", "a", out)
        second = out["spec"]["ports"][1]["nodePort"]
        assert set(await keys(reg.backend, PORT_PREFIX)) == {str(np), str(second)}
        out["spec"]["ports"] = out["spec"]["ports"][1:]
        await reg.update(SVC, "default", "a", out)
        assert set(await keys(reg.backend, PORT_PREFIX)) == {str(second)}
    run(go())


def test_concurrent_creates_never_share_a_value():
    async def go():
        reg, _ = await setup(cidr="10.0.0.0/24", ports="30000-30299")
        results = await asyncio.gather(*[reg.create(SVC, svc(f"s{i}", "NodePort")) for i in range(200)],
                                       return_exceptions=True)
        ok = [r for r in results if isinstance(r, dict)]
        assert len(ok) == 200
        ips = [r["spec"]["clusterIP"] for r in ok]
        ports = [r["spec"]["ports"][0]["nodePort"] for r in ok]
        assert len(set(ips)) == 200 and len(set(ports)) == 200
        assert set(await keys(reg.backend, IP_PREFIX)) == set(ips)
    run(go())


def test_full_range_is_an_error_not_a_double_allocation():
    async def go():
        reg, _ = await setup(cidr="10.0.0.0/29")  # 6 usable addresses
        for i in range(6):
            await reg.create(SVC, svc(f"s{i}"))
        with pytest.raises(APIError) as e:
            await reg.create(SVC, svc("s6"))
        assert e.value.code == 500 and "range is full" in e.value.message
    run(go())


def test_repair_restores_missing_keys_and_releases_leaks_after_three_passes():
    async def go():
        reg, alloc = await setup()
        out = await reg.create(SVC, svc("a"))
        ip = out["spec"]["clusterIP"]
        # Simulate damage: the Service's key disappears and a key nobody holds appears.
        kv = await reg.backend.get(IP_PREFIX + ip)
        from svcnet.store.backend import Delete
        await reg.backend.txn([Delete(kv.key, kv.mod_revision),
                               Create(IP_PREFIX + "10.96.9.9", b'{"service":"x/gone","uid":"u"}')])
        events = []

        async def record(obj, reason, message):
            events.append((obj["metadata"]["name"], reason))

        services = (await reg.list(SVC)).items
        await alloc.repair(services, record)
        assert ("a", "ClusterIPNotAllocated") in events
        assert set(await keys(reg.backend, IP_PREFIX)) == {ip, "10.96.9.9"}
        await alloc.repair(services, record)
        assert "10.96.9.9" in await keys(reg.backend, IP_PREFIX)
        await alloc.repair(services, record)
        assert set(await keys(reg.backend, IP_PREFIX)) == {ip}
    run(go())
