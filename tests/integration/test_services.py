"""Service semantics through kubectl: validation, allocation, printing (issue 3)."""

from __future__ import annotations

import re


def svc(name: str, type_: str = "ClusterIP", ports: str = "[{port: 80, targetPort: 8080}]", extra: str = "") -> str:
    return (f"apiVersion: v1\nkind: Service\nmetadata: {{name: {name}}}\n"
            f"spec:\n  type: {type_}\n  selector: {{app: {name}}}\n  ports: {ports}\n{extra}")


def test_invalid_service_reports_every_error_as_kubernetes_does(kubectl, namespace):
    doc = svc("bad", "Foo", "[{port: 70000}, {port: 0, protocol: XX}]")
    p = kubectl("-n", namespace, "apply", "-f", "-", input=doc, check=False)
    assert p.returncode == 1
    assert p.stderr.strip().splitlines() == [
        'The Service "bad" is invalid: ',
        "* spec.ports[0].name: Required value",
        "* spec.ports[0].port: Invalid value: 70000: must be between 1 and 65535, inclusive",
        "* spec.ports[0].targetPort: Invalid value: 70000: must be between 1 and 65535, inclusive",
        "* spec.ports[1].name: Required value",
        "* spec.ports[1].port: Invalid value: 0: must be between 1 and 65535, inclusive",
        '* spec.ports[1].protocol: Unsupported value: "XX": supported values: "SCTP", "TCP", "UDP"',
        "* spec.ports[1].targetPort: Invalid value: 0: must be between 1 and 65535, inclusive",
        '* spec.type: Unsupported value: "Foo": supported values: "ClusterIP", "ExternalName", '
        '"LoadBalancer", "NodePort"',
    ]
    p = kubectl("-n", namespace, "apply", "-f", "-", check=False, input=svc(
        "cip", extra="  sessionAffinity: ClientIP\n  sessionAffinityConfig: {clientIP: {timeoutSeconds: 0}}\n"))
    assert p.stderr.strip() == (
        'The Service "cip" is invalid: spec.sessionAffinityConfig.clientIP.timeoutSeconds: Invalid '
        'value: 0: must be greater than 0 and less than 86400')


def test_get_prints_types_ports_and_pending_load_balancers(kubectl, namespace):
    kubectl("-n", namespace, "apply", "-f", "-",
            input=svc("np", "NodePort", "[{port: 80, targetPort: 80, nodePort: 30408}]"))
    kubectl("-n", namespace, "apply", "-f", "-",
            input=svc("lb", "LoadBalancer", "[{name: http, port: 80}, {name: dns, port: 53, protocol: UDP}]"))
    kubectl("-n", namespace, "apply", "-f", "-", input=svc("hl", extra="  clusterIP: None\n"))
    rows = {l.split()[0]: l.split() for l in kubectl("-n", namespace, "get", "svc").stdout.splitlines()[1:]}
    assert rows["np"][1:5] == ["NodePort", rows["np"][2], "<none>", "80:30408/TCP"]
    assert re.fullmatch(r"10\.(9[6-9]|10\d|11[01])\.\d+\.\d+", rows["np"][2])
    assert rows["lb"][1] == "LoadBalancer" and rows["lb"][3] == "<pending>"
    assert re.fullmatch(r"80:3\d{4}/TCP,53:3\d{4}/UDP", rows["lb"][4])
    assert rows["hl"][2] == "None"
    d = kubectl("-n", namespace, "describe", "svc", "lb").stdout
    for line in (r"Type:\s+LoadBalancer", r"IP Family Policy:\s+SingleStack", r"IP Families:\s+IPv4",
                 r"Port:\s+http\s+80/TCP", r"NodePort:\s+dns\s+3\d{4}/UDP", r"Session Affinity:\s+None",
                 r"External Traffic Policy:\s+Cluster"):
        assert re.search(line, d), line


def test_node_ports_are_exclusive_and_released_by_type_changes(kubectl, namespace):
    kubectl("-n", namespace, "apply", "-f", "-",
            input=svc("first", "NodePort", "[{port: 80, nodePort: 30409}]"))
    p = kubectl("-n", namespace, "apply", "-f", "-", check=False,
                input=svc("second", "NodePort", "[{port: 80, nodePort: 30409}]"))
    assert p.stderr.strip() == ('The Service "second" is invalid: spec.ports[0].nodePort: Invalid '
                                'value: 30409: provided port is already allocated')
    # NodePort -> ClusterIP drops and releases the node port, so "second" can now have it.
    kubectl("-n", namespace, "apply", "-f", "-", input=svc("first", "ClusterIP", "[{port: 80}]"))
    assert "nodePort" not in kubectl.json("-n", namespace, "get", "svc", "first")["spec"]["ports"][0]
    kubectl("-n", namespace, "apply", "-f", "-", input=svc("second", "NodePort", "[{port: 80, nodePort: 30409}]"))


def test_cluster_ip_survives_reapply_and_is_immutable(kubectl, namespace):
    kubectl("-n", namespace, "apply", "-f", "-", input=svc("keep"))
    ip = kubectl.json("-n", namespace, "get", "svc", "keep")["spec"]["clusterIP"]
    kubectl("-n", namespace, "apply", "-f", "-", input=svc("keep", ports="[{port: 81}]"))
    assert kubectl.json("-n", namespace, "get", "svc", "keep")["spec"]["clusterIP"] == ip
    p = kubectl("-n", namespace, "patch", "svc", "keep", "-p", '{"spec":{"clusterIP":"10.96.7.7","clusterIPs":["10.96.7.7"]}}',
                check=False)
    assert p.returncode == 1 and "may not change once set" in p.stderr


def test_kubernetes_service_points_at_the_api_server(kubectl, server):
    s = kubectl.json("-n", "default", "get", "svc", "kubernetes")
    assert s["spec"]["clusterIP"] == "10.96.0.1"
    assert s["spec"]["ports"] == [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": server.port}]
    out = kubectl("-n", "default", "get", "endpointslices", "kubernetes").stdout.splitlines()
    assert out[1].split()[1:4] == ["IPv4", str(server.port), "127.0.0.1"]
