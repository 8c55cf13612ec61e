"""The proxier's incremental state: per-Service pieces folded into one table, checked against the
full ruleset on the in-memory nftables model."""

from __future__ import annotations

import random

from svcnet.agent.proxy.model import Model
from svcnet.agent.proxy.nft import Transaction
from svcnet.agent.proxy.proxier import MergedState
from svcnet.agent.proxy.ruleset import NodeInfo, desired, full_transaction

NODE = NodeInfo("node-1", ("192.168.1.2",), "10.244.0.0/16", "10.96.0.0/12")


def service(i: int, nports: int = 1, node_port: bool = False) -> dict:
    ports = [{"name": f"p{j}", "port": 80 + j, "protocol": "UDP" if j == 1 else "TCP",
              **({"nodePort": 30100 + 10 * i + j} if node_port else {})} for j in range(nports)]
    return {"metadata": {"namespace": "default", "name": f"s{i}"},
            "spec": {"type": "NodePort" if node_port else "ClusterIP", "clusterIP": f"10.96.0.{i + 10}",
                     "clusterIPs": [f"10.96.0.{i + 10}"], "ports": ports}}


def slices(i: int, n: int, nports: int = 1, ready=lambda k: True) -> dict:
    return {"metadata": {"namespace": "default", "name": f"s{i}-abc",
                         "labels": {"kubernetes.io/service-name": f"s{i}"}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": [f"10.244.0.{k + 2}"], "nodeName": "node-1",
                           "conditions": {"ready": ready(k)}} for k in range(n)],
            "ports": [{"name": f"p{j}", "port": 8080 + j, "protocol": "UDP" if j == 1 else "TCP"}
                      for j in range(nports)]}


def full_dump(svcs: dict, sls: dict) -> str:
    m = Model()
    m.apply(full_transaction(desired(list(svcs.values()), list(sls.values()), NODE)))
    return m.dump()


def check_random_changes(rng: random.Random, n: int, actions: list[str], make_service,
                         make_slice) -> tuple[dict, MergedState]:
    """300 random changes to Services s0..s<n-1> and their slices, each applied as the
    incremental piece a partial sync writes: the model must equal a full sync after every one.
    make_service(i) and make_slice(i, nports) build the objects; returns the final Services and
    merged state."""
    svcs: dict[int, dict] = {}
    sls: dict[int, dict] = {}
    merged = MergedState(NODE)
    model = Model()
    model.apply(full_transaction(merged.state()))
    for step in range(300):
        i = rng.randrange(n)
        action = rng.choice(actions)
        if action == "svc":
            svcs[i] = make_service(i)
        elif action == "slice":
            sls[i] = make_slice(i, len(svcs[i]["spec"]["ports"]) if i in svcs else 2)
        elif action == "delete-slice":
            sls.pop(i, None)
        else:
            svcs.pop(i, None)
        piece = desired([svcs[i]], [sls[i]] if i in sls else [], NODE) if i in svcs else None
        tx = Transaction()
        merged.replace(("default", f"s{i}"), piece, tx)
        if tx.ops:
            model.apply(tx)
        assert model.dump() == full_dump(svcs, sls), f"diverged at step {step} ({action} s{i})"
    assert merged.state() == desired(list(svcs.values()), list(sls.values()), NODE)
    return svcs, merged


def test_incremental_pieces_match_the_full_ruleset_through_random_changes():
    rng = random.Random(7)
    check_random_changes(
        rng, 8, ["svc", "svc", "slice", "slice", "delete-slice", "delete-svc"],
        lambda i: service(i, rng.randint(1, 3), rng.random() < 0.4),
        lambda i, nports: slices(i, rng.randint(0, 5), nports, lambda k: rng.random() < 0.8))


def test_a_change_touches_only_its_own_elements():
    merged = MergedState(NODE)
    tx = Transaction()
    for i in range(50):
        merged.replace(("default", f"s{i}"), desired([service(i)], [slices(i, 3)], NODE), tx)
    tx = Transaction()
    merged.replace(("default", "s7"), desired([service(7)], [slices(7, 2)], NODE), tx)
    text = tx.text()
    assert "10.96.0.17" in text and "10.96.0.18" not in text
    assert "10.96.0.17 . 80 . 2," in text  # the third endpoint goes


def test_add_all_builds_the_same_state_as_piece_by_piece_replacement():
    svcs = {i: service(i, 2, i % 2 == 0) for i in range(20)}
    sls = {i: slices(i, i % 4, 2) for i in range(0, 20, 3)}
    pieces = {("default", f"s{i}"): desired([svcs[i]], [sls[i]] if i in sls else [], NODE) for i in svcs}
    one_by_one, at_once = MergedState(NODE), MergedState(NODE)
    for key, piece in pieces.items():
        one_by_one.replace(key, piece, Transaction())
    at_once.add_all(pieces)
    assert at_once.state() == one_by_one.state() == desired(list(svcs.values()), list(sls.values()), NODE)
    # and later changes diff correctly against a state built at once
    tx = Transaction()
    at_once.replace(("default", "s3"), None, tx)
    model = Model()
    model.apply(full_transaction(one_by_one.state()))
    model.apply(tx)
    del svcs[3]
    assert model.dump() == full_dump(svcs, sls)


def policy_service(i: int, rng) -> dict:
    """A Service with a random mix of issue 5's knobs."""
    s = service(i, rng.randint(1, 2), True)
    spec = s["spec"]
    spec["type"] = rng.choice(["NodePort", "LoadBalancer", "ClusterIP"])
    if spec["type"] == "ClusterIP":
        for p in spec["ports"]:
            p.pop("nodePort", None)
    s["status"] = {"loadBalancer": {"ingress": [{"ip": f"192.168.1.{240 + i}"}]}}
    if rng.random() < 0.3:
        spec["externalIPs"] = [f"192.168.2.{i}"]
    if rng.random() < 0.4:
        spec["externalTrafficPolicy"] = "Local"
    if rng.random() < 0.3:
        spec["internalTrafficPolicy"] = "Local"
    if rng.random() < 0.4:
        spec["sessionAffinity"] = "ClientIP"
        spec["sessionAffinityConfig"] = {"clientIP": {"timeoutSeconds": rng.choice([60, 10800])}}
    if rng.random() < 0.4:
        spec["loadBalancerSourceRanges"] = rng.sample(["10.0.0.0/8", "192.168.1.0/24", "172.16.0.0/12"], 2)
    return s


def test_incremental_pieces_match_the_full_ruleset_with_policies_and_affinity():
    rng = random.Random(11)

    def make_slice(i: int, nports: int) -> dict:
        sl = slices(i, rng.randint(0, 4), nports, lambda k: rng.random() < 0.8)
        for ep in sl["endpoints"]:
            ep["nodeName"] = rng.choice(["node-1", "node-2"])
        return sl

    svcs, merged = check_random_changes(rng, 6, ["svc", "svc", "slice", "slice", "delete-svc"],
                                        lambda i: policy_service(i, rng), make_slice)
    assert any(s.startswith("aff-") for s in merged.state().sets) or not any(
        s["spec"].get("sessionAffinity") for s in svcs.values())
