"""kubectl 1.32 against a real `svcnet server` over HTTPS: what a user types, what they see."""

from __future__ import annotations

import json
import re
import subprocess
import os

from .conftest import wait_for

SERVICE = """
apiVersion: v1
kind: Service
metadata:
  name: {name}
  labels: {{app: {app}, tier: {tier}}}
spec:
  selector: {{app: {app}}}
  ports:
  - port: 80
    targetPort: 8080
"""


def svc_yaml(name: str, app: str = "web", tier: str = "front") -> str:
    return SERVICE.format(name=name, app=app, tier=tier)


def test_version_reports_1_32(kubectl):
    out = kubectl("version", "-o", "json").stdout
    server = json.loads(out)["serverVersion"]
    assert (server["major"], server["minor"]) == ("1", "32")
    client = json.loads(out)["clientVersion"]
    assert client["gitVersion"].startswith("v1.32.")  # the dispatcher picked kubectl 1.32


def test_api_resources_lists_served_kinds(kubectl):
    out = kubectl("api-resources").stdout
    for line in ("services", "svc", "endpointslices", "deployments", "deploy", "leases"):
        assert line in out
    row = next(l for l in out.splitlines() if l.startswith("services "))
    assert row.split() == ["services", "svc", "v1", "true", "Service"]
    row = next(l for l in out.splitlines() if l.startswith("deployments "))
    assert row.split() == ["deployments", "deploy", "apps/v1", "true", "Deployment"]


def test_create_get_describe_delete(kubectl, namespace):
    out = kubectl("-n", namespace, "create", "-f", "-", input=svc_yaml("web")).stdout
    assert out.strip() == "service/web created"
    svc = kubectl.json("-n", namespace, "get", "svc", "web")
    assert svc["metadata"]["uid"] and svc["metadata"]["resourceVersion"]
    assert svc["metadata"]["creationTimestamp"].endswith("Z")
    assert svc["spec"]["ports"][0]["targetPort"] == 8080

    table = kubectl("-n", namespace, "get", "svc", "-o", "wide").stdout.splitlines()
    assert table[0].split() == ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE", "SELECTOR"]
    cells = table[1].split()
    assert cells[0] == "web" and cells[1] == "ClusterIP" and cells[4] == "80/TCP"
    assert cells[-1] == "app=web"

    assert kubectl("-n", namespace, "get", "svc", "-o", "name").stdout.strip() == "service/web"
    y = kubectl("-n", namespace, "get", "svc", "web", "-o", "yaml").stdout
    assert "kind: Service" in y and "name: web" in y

    d = kubectl("-n", namespace, "describe", "svc", "web").stdout
    assert re.search(r"Name:\s+web", d) and re.search(rf"Namespace:\s+{namespace}", d)
    assert re.search(r"Selector:\s+app=web", d)

    out = kubectl("-n", namespace, "delete", "svc", "web").stdout
    assert out.strip() == 'service "web" deleted'
    p = kubectl("-n", namespace, "get", "svc", "web", check=False)
    assert p.returncode == 1
    assert p.stderr.strip() == 'Error from server (NotFound): services "web" not found'


def test_errors_print_as_on_a_real_cluster(kubectl, namespace):
    kubectl("-n", namespace, "create", "-f", "-", input=svc_yaml("dup"))
    p = kubectl("-n", namespace, "create", "-f", "-", input=svc_yaml("dup"), check=False)
    assert p.returncode == 1
    assert p.stderr.strip() == ('Error from server (AlreadyExists): error when creating "STDIN": '
                                'services "dup" already exists')
    p = kubectl("-n", namespace, "create", "--dry-run=server", "-f", "-", input=svc_yaml("dup"),
                check=False)
    assert p.returncode == 1 and 'services "dup" already exists' in p.stderr  # dry run checks too

    p = kubectl("-n", "no-such-ns", "create", "-f", "-", input=svc_yaml("x"), check=False)
    assert p.returncode == 1
    assert 'namespaces "no-such-ns" not found' in p.stderr

    bad = svc_yaml("Bad_Name")
    p = kubectl("-n", namespace, "create", "-f", "-", input=bad, check=False)
    assert p.returncode == 1
    assert p.stderr.startswith('The Service "Bad_Name" is invalid: metadata.name: Invalid value: "Bad_Name": '
                               "a DNS-1035 label must consist of lower case alphanumeric characters")


def test_strict_field_validation(kubectl, namespace):
    doc = svc_yaml("strict") + "  foo: bar\n"
    p = kubectl("-n", namespace, "create", "-f", "-", input=doc, check=False)
    assert p.returncode == 1
    assert p.stderr.strip() == ('Error from server (BadRequest): error when creating "STDIN": Service '
                                'in version "v1" cannot be handled as a Service: strict decoding '
                                'error: unknown field "spec.foo"')
    p = kubectl("-n", namespace, "get", "svc", "strict", check=False)
    assert p.returncode == 1  # nothing was stored


def test_label_selectors_chunking_and_all_namespaces(kubectl, namespace):
    for i in range(5):
        kubectl("-n", namespace, "create", "-f", "-",
                input=svc_yaml(f"s{i}", app="a" if i % 2 else "b", tier=f"t{i}"))
    names = lambda out: sorted(l.split()[0] for l in out.splitlines()[1:])  # noqa: E731
    assert names(kubectl("-n", namespace, "get", "svc", "-l", "app=a").stdout) == ["s1", "s3"]
    assert names(kubectl("-n", namespace, "get", "svc", "-l", "app!=a").stdout) == ["s0", "s2", "s4"]
    assert names(kubectl("-n", namespace, "get", "svc", "-l", "tier in (t0,t4)").stdout) == ["s0", "s4"]
    assert names(kubectl("-n", namespace, "get", "svc", "-l", "tier notin (t0,t4),app").stdout) == ["s1", "s2", "s3"]
    assert names(kubectl("-n", namespace, "get", "svc", "-l", "!app").stdout) == []
    assert names(kubectl("-n", namespace, "get", "svc", "--chunk-size=2").stdout) == [f"s{i}" for i in range(5)]
    out = kubectl("get", "svc", "-A", "-l", "app=b").stdout.splitlines()
    assert out[0].split()[:2] == ["NAMESPACE", "NAME"]
    assert sorted((l.split()[0], l.split()[1]) for l in out[1:]) == [
        (namespace, "s0"), (namespace, "s2"), (namespace, "s4")]
    byname = kubectl("-n", namespace, "get", "svc", "--field-selector", "metadata.name=s3").stdout
    assert names(byname) == ["s3"]


def test_patch_flavours(kubectl, namespace):
    kubectl("-n", namespace, "create", "-f", "-", input=svc_yaml("p"))
    kubectl("-n", namespace, "patch", "svc", "p", "-p", '{"spec":{"selector":{"app":"other"}}}')
    assert kubectl.json("-n", namespace, "get", "svc", "p")["spec"]["selector"] == {"app": "other"}
    kubectl("-n", namespace, "patch", "svc", "p", "--type=merge", "-p", '{"metadata":{"labels":{"x":"y"}}}')
    assert kubectl.json("-n", namespace, "get", "svc", "p")["metadata"]["labels"]["x"] == "y"
    kubectl("-n", namespace, "patch", "svc", "p", "--type=json",
            "-p", '[{"op":"replace","path":"/spec/ports/0/port","value":81}]')
    assert kubectl.json("-n", namespace, "get", "svc", "p")["spec"]["ports"][0]["port"] == 81
    # Strategic merge patch merges ports by their key (a merge patch would replace the list).
    kubectl("-n", namespace, "patch", "svc", "p", "--type=json",
            "-p", '[{"op":"add","path":"/spec/ports/0/name","value":"a"}]')
    kubectl("-n", namespace, "patch", "svc", "p", "-p", '{"spec":{"ports":[{"name":"b","port":90}]}}')
    ports = kubectl.json("-n", namespace, "get", "svc", "p")["spec"]["ports"]
    assert sorted((p["name"], p["port"]) for p in ports) == [("a", 81), ("b", 90)]


def test_replace_with_stale_resource_version_conflicts(kubectl, namespace, tmp_path):
    kubectl("-n", namespace, "create", "-f", "-", input=svc_yaml("r"))
    stale = kubectl.json("-n", namespace, "get", "svc", "r")
    kubectl("-n", namespace, "label", "svc", "r", "changed=yes")
    f = tmp_path / "stale.json"
    f.write_text(json.dumps(stale))
    p = kubectl("-n", namespace, "replace", "-f", str(f), check=False)
    assert p.returncode == 1
    assert p.stderr.strip() == (
        f'Error from server (Conflict): error when replacing "{f}": Operation cannot be fulfilled on '
        'services "r": the object has been modified; please apply your changes to the latest '
        'version and try again')
    fresh = kubectl.json("-n", namespace, "get", "svc", "r")
    fresh["metadata"]["labels"]["replaced"] = "yes"
    f.write_text(json.dumps(fresh))
    assert kubectl("-n", namespace, "replace", "-f", str(f)).stdout.strip() == "service/r replaced"


def test_client_side_apply(kubectl, namespace):
    out = kubectl("-n", namespace, "apply", "-f", "-", input=svc_yaml("ap")).stdout
    assert out.strip() == "service/ap created"
    changed = svc_yaml("ap").replace("targetPort: 8080", "targetPort: 9090")
    out = kubectl("-n", namespace, "apply", "-f", "-", input=changed).stdout
    assert out.strip() == "service/ap configured"
    svc = kubectl.json("-n", namespace, "get", "svc", "ap")
    assert svc["spec"]["ports"][0]["targetPort"] == 9090
    assert "kubectl.kubernetes.io/last-applied-configuration" in svc["metadata"]["annotations"]
    out = kubectl("-n", namespace, "apply", "-f", "-", input=changed).stdout
    assert out.strip() == "service/ap unchanged"


def test_server_side_apply_and_conflicts(kubectl, namespace):
    out = kubectl("-n", namespace, "apply", "--server-side", "-f", "-", input=svc_yaml("ssa")).stdout
    assert out.strip() == "service/ssa serverside-applied"
    svc = kubectl.json("-n", namespace, "get", "svc", "ssa", "--show-managed-fields")
    managers = {m["manager"]: m for m in svc["metadata"]["managedFields"]}
    assert managers["kubectl"]["operation"] == "Apply"
    assert "f:spec" in managers["kubectl"]["fieldsV1"]
    # Another manager changes a field kubectl owns: conflict, then force wins.
    other = svc_yaml("ssa").replace("targetPort: 8080", "targetPort: 7070")
    p = kubectl("-n", namespace, "apply", "--server-side", "--field-manager=other", "-f", "-",
                input=other, check=False)
    assert p.returncode == 1
    assert "conflict" in p.stderr.lower() and 'with "kubectl"' in p.stderr
    kubectl("-n", namespace, "apply", "--server-side", "--field-manager=other", "--force-conflicts",
            "-f", "-", input=other)
    assert kubectl.json("-n", namespace, "get", "svc", "ssa")["spec"]["ports"][0]["targetPort"] == 7070


def test_watch_prints_new_objects(kubectl, namespace, server):
    env = dict(os.environ, KUBECONFIG=str(server.kubeconfig))
    proc = subprocess.Popen(["kubectl", f"--cache-dir={kubectl.cache_dir}", "-n", namespace,
                             "get", "svc", "-w", "--output-watch-events"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        lines: list[str] = []
        import threading

        t = threading.Thread(target=lambda: [lines.append(l) for l in proc.stdout], daemon=True)
        t.start()
        # Whether the create lands before or after the watch starts, it shows as ADDED.
        kubectl("-n", namespace, "create", "-f", "-", input=svc_yaml("w1"))
        wait_for(lambda: any("w1" in l for l in lines), 15, what="ADDED event for w1")
        kubectl("-n", namespace, "delete", "svc", "w1")
        wait_for(lambda: any(l.startswith("DELETED") and "w1" in l for l in lines), 15,
                 what="DELETED event for w1")
        headers = [l for l in lines if l.startswith("EVENT")]
        assert len(headers) == 1, lines  # headers only once, as against a real cluster
        assert proc.poll() is None  # the stream stays open
    finally:
        proc.kill()
        proc.wait()


def test_explain(kubectl):
    out = kubectl("explain", "service.spec").stdout
    assert "KIND:       Service" in out
    assert "clusterIP" in out and "ports" in out
    out = kubectl("explain", "service.spec.ports.targetPort").stdout
    assert "FIELD: targetPort <IntOrString>" in out
    assert "Number or name of the port to access on the pods" in out


def test_delete_namespace_deletes_content(kubectl):
    kubectl("create", "namespace", "doomed")
    kubectl("-n", "doomed", "create", "-f", "-", input=svc_yaml("inside"))
    kubectl("-n", "doomed", "create", "configmap", "cm1", "--from-literal=a=b")
    kubectl("delete", "namespace", "doomed", "--timeout=30s")
    p = kubectl("get", "namespace", "doomed", check=False)
    assert p.returncode == 1 and "not found" in p.stderr
    out = kubectl("get", "svc,cm", "-A").stdout
    assert "doomed" not in out


def test_typed_create_commands_send_protobuf_and_work(kubectl):
    # kubectl's typed clients send application/vnd.kubernetes.protobuf bodies.
    assert kubectl("create", "namespace", "proto").stdout.strip() == "namespace/proto created"
    out = kubectl("-n", "proto", "create", "service", "nodeport", "web", "--tcp=80:8080",
                  "--node-port=30123").stdout
    assert out.strip() == "service/web created"
    svc = kubectl.json("-n", "proto", "get", "svc", "web")
    assert svc["spec"]["type"] == "NodePort" and svc["spec"]["selector"] == {"app": "web"}
    assert svc["spec"]["ports"] == [{"name": "80-8080", "nodePort": 30123, "port": 80,
                                     "protocol": "TCP", "targetPort": 8080}]
    kubectl("-n", "proto", "create", "configmap", "cm", "--from-literal=a=b")
    assert kubectl.json("-n", "proto", "get", "cm", "cm")["data"] == {"a": "b"}
    kubectl("-n", "proto", "create", "deployment", "d", "--image=registry.k8s.io/pause:3.10",
            "--replicas=0")
    dep = kubectl.json("-n", "proto", "get", "deploy", "d")
    assert dep["spec"]["replicas"] == 0 and dep["spec"]["selector"] == {"matchLabels": {"app": "d"}}
    kubectl("delete", "namespace", "proto", "--wait=false")
