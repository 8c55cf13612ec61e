"""Pod IPAM: lowest free address, persisted before use, released when pods are gone."""

from __future__ import annotations

import pytest

from svcnet.agent.ipam import IPAM, PodCIDRExhausted


def test_addresses_skip_network_gateway_and_broadcast_and_survive_a_restart(tmp_path):
    state = tmp_path / "ipam.json"
    ipam = IPAM("10.244.3.0/24", state)
    assert ipam.gateway == "10.244.3.1"
    assert [ipam.allocate(u) for u in ("a", "b")] == ["10.244.3.2", "10.244.3.3"]
    assert ipam.allocate("a") == "10.244.3.2"  # idempotent per pod
    again = IPAM("10.244.3.0/24", state)  # a restarted agent
    assert again.allocate("a") == "10.244.3.2" and again.allocate("c") == "10.244.3.4"


def test_released_and_retained(tmp_path):
    ipam = IPAM("10.244.0.0/24", tmp_path / "s.json")
    for u in "abcd":
        ipam.allocate(u)
    ipam.release("b")
    assert ipam.allocate("e") == "10.244.0.3"  # the lowest free one is reused
    assert sorted(ipam.retain({"a", "e"})) == ["c", "d"]
    assert ipam.allocate("f") == "10.244.0.4"


def test_an_exhausted_pod_cidr_is_an_error_not_a_duplicate(tmp_path):
    ipam = IPAM("10.244.0.0/29", tmp_path / "s.json")  # 6 hosts: gateway + 5 pods
    got = {ipam.allocate(str(i)) for i in range(5)}
    assert len(got) == 5 and "10.244.0.1" not in got
    with pytest.raises(PodCIDRExhausted):
        ipam.allocate("one-too-many")


def test_state_for_another_cidr_is_not_reused(tmp_path):
    state = tmp_path / "s.json"
    IPAM("10.244.0.0/24", state).allocate("a")
    assert IPAM("10.244.1.0/24", state).allocate("b") == "10.244.1.2"
