"""Service environment variables for containers (the kubelet's docker-links style)."""

from svcnet.agent.envvars import pod_service_env


def svc(name, ns="default", ip="10.96.0.5", ports=None, type_="ClusterIP"):
    return {"metadata": {"name": name, "namespace": ns},
            "spec": {"type": type_, "clusterIP": ip,
                     "ports": ports if ports is not None else [{"name": "http", "port": 80, "protocol": "TCP"}]}}


KUBERNETES = svc("kubernetes", ip="10.96.0.1", ports=[{"name": "https", "port": 443, "protocol": "TCP"}])


def pod(ns="app", links=True):
    return {"metadata": {"name": "p", "namespace": ns}, "spec": {"enableServiceLinks": links}}


def test_variables_for_a_named_multi_port_service():
    back = svc("back-end", "app", "10.96.0.7", [{"name": "http", "port": 80, "protocol": "TCP"},
                                                 {"name": "dns", "port": 53, "protocol": "UDP"}])
    env = pod_service_env(pod(), [KUBERNETES, back])
    assert env["BACK_END_SERVICE_HOST"] == "10.96.0.7"
    assert env["BACK_END_SERVICE_PORT"] == "80"
    assert env["BACK_END_SERVICE_PORT_DNS"] == "53"
    assert env["BACK_END_PORT"] == "tcp://10.96.0.7:80"
    assert env["BACK_END_PORT_53_UDP"] == "udp://10.96.0.7:53"
    assert env["BACK_END_PORT_53_UDP_PROTO"] == "udp"
    assert env["BACK_END_PORT_53_UDP_ADDR"] == "10.96.0.7"
    assert env["KUBERNETES_SERVICE_HOST"] == "10.96.0.1"
    assert env["KUBERNETES_PORT_443_TCP"] == "tcp://10.96.0.1:443"


def test_other_namespaces_headless_and_external_names_give_nothing():
    env = pod_service_env(pod(), [KUBERNETES, svc("other", "elsewhere"), svc("hl", "app", "None"),
                                  svc("ext", "app", "", type_="ExternalName")])
    assert {k.split("_")[0] for k in env} == {"KUBERNETES"}


def test_enable_service_links_false_keeps_only_the_kubernetes_service():
    env = pod_service_env(pod(links=False), [KUBERNETES, svc("web", "app")])
    assert "WEB_SERVICE_HOST" not in env and env["KUBERNETES_SERVICE_PORT"] == "443"
