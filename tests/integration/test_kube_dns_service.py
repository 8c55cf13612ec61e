"""The control plane's kube-system/kube-dns Service: its ports as kubeadm has them, and a Service
from before the `metrics` port (a cluster made by an older svcnet) updated at the next start."""

from __future__ import annotations

from tests.integration.conftest import start_server

PATH = "/api/v1/namespaces/kube-system/services/kube-dns"


def ports(s) -> set:
    _, _, svc = s.request("GET", PATH)
    return {(p["name"], p["protocol"], p["port"], p["targetPort"]) for p in svc["spec"]["ports"]}


def test_kube_dns_has_the_metrics_port_and_an_old_service_gets_it_at_start(tmp_path):
    s = start_server(tmp_path / "cp")
    try:
        assert ports(s) == {("dns", "UDP", 53, 53), ("dns-tcp", "TCP", 53, 53),
                            ("metrics", "TCP", 9153, 9153)}
        _, _, svc = s.request("GET", PATH)
        svc["spec"]["ports"] = [p for p in svc["spec"]["ports"] if p["name"] != "metrics"]
        status, _, _ = s.request("PUT", PATH, svc)
        assert status == 200 and len(ports(s)) == 2  # as a cluster made before the port existed
    finally:
        s.stop()
    s = start_server(s.data_dir, s.port)
    try:
        assert ("metrics", "TCP", 9153, 9153) in ports(s)
        _, _, svc = s.request("GET", PATH)
        assert svc["spec"]["clusterIP"] == "10.96.0.10"  # updated, not replaced
    finally:
        s.stop()
