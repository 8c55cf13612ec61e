"""The termination chain's question to the service proxy: may this node's rules still send new
connections to a pod as a ready endpoint? Driven through the real Proxier's change handlers and
its per-Service pieces (the real ruleset renderer); "programming" a change is what a sync does
to that state (pieces replaced, pending changes cleared)."""

from __future__ import annotations

from svcnet.agent.proxy.nft import Transaction
from svcnet.agent.proxy.proxier import Proxier
from svcnet.agent.proxy.ruleset import NodeInfo, desired

NODE = NodeInfo("node-1", ("192.168.1.2",), "10.244.0.0/16", "10.96.0.0/12")
A, B = "10.244.0.5", "10.244.0.6"


def service(ns: str, name: str) -> dict:
    return {"metadata": {"namespace": ns, "name": name},
            "spec": {"type": "ClusterIP", "clusterIP": "10.96.0.20", "clusterIPs": ["10.96.0.20"],
                     "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}}


def endpoint_slice(ns: str, name: str, endpoints: dict[str, dict]) -> dict:
    return {"metadata": {"namespace": ns, "name": f"{name}-abc",
                         "labels": {"kubernetes.io/service-name": name}},
            "addressType": "IPv4", "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
            "endpoints": [{"addresses": [ip], "nodeName": "node-1", "conditions": c}
                          for ip, c in endpoints.items()]}


READY = {"ready": True, "serving": True, "terminating": False}
TERMINATING = {"ready": False, "serving": True, "terminating": True}


class World:
    def __init__(self):
        self.proxier = Proxier(None, NODE)
        self.services: dict[tuple[str, str], dict] = {}

    def slice_changed(self, ns: str, name: str, endpoints: dict[str, dict]) -> None:
        self.services[(ns, name)] = service(ns, name)
        self.proxier._on_slice("MODIFIED", None, endpoint_slice(ns, name, endpoints))

    def program(self) -> None:
        """What a partial sync does to the proxier's state, for every pending change."""
        p = self.proxier
        for key in list(p.dirty):
            slices = list(p.slices_by_service.get(key, {}).values())
            p.merged.replace(key, desired([self.services[key]], slices, NODE), Transaction())
        p.dirty.clear()

    def routed(self, ip: str, ns: str = "shop") -> bool:
        return self.proxier.routes_new_connections_to(ip, ns)


def test_a_deleted_pod_is_routed_until_the_change_is_programmed():
    w = World()
    w.slice_changed("shop", "web", {A: READY, B: READY})
    w.program()
    assert w.routed(A) and w.routed(B)
    w.slice_changed("shop", "web", {A: TERMINATING, B: READY})  # A was deleted
    assert w.routed(A)            # the slice says so, the rules do not yet
    w.program()
    assert not w.routed(A) and w.routed(B)
    assert not w.routed(A, "other")


def test_a_last_endpoint_kept_as_a_terminating_fallback_does_not_hold_its_pod():
    w = World()
    w.slice_changed("shop", "web", {A: READY})
    w.program()
    w.slice_changed("shop", "web", {A: TERMINATING})
    assert w.routed(A)
    w.program()  # the rules still DNAT to A (nothing better), but no longer as a ready endpoint
    assert not w.routed(A)


def test_pending_changes_elsewhere_do_not_hold_a_pod():
    w = World()
    w.slice_changed("shop", "web", {A: READY, B: READY})
    w.program()
    w.slice_changed("shop", "web", {A: TERMINATING, B: READY})
    w.program()
    w.slice_changed("shop", "cart", {B: READY})           # churn in the same namespace
    w.slice_changed("other", "web", {A: READY, B: READY})  # and in another one
    assert not w.routed(A)
    assert w.routed(A, "other")
