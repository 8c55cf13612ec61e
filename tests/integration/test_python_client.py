"""The official `kubernetes` Python client against a real `svcnet server` over HTTPS."""

from __future__ import annotations

import threading

import pytest

from .conftest import wait_for


def _svc(client, name: str, labels: dict | None = None):
    return client.V1Service(
        metadata=client.V1ObjectMeta(name=name, labels=labels or {"app": name}),
        spec=client.V1ServiceSpec(selector={"app": name},
                                  ports=[client.V1ServicePort(port=80, target_port=8080)]))


def test_crud_and_typed_models(k8s, namespace):
    client, api = k8s
    core = client.CoreV1Api(api)
    created = core.create_namespaced_service(namespace, _svc(client, "py"))
    assert created.metadata.name == "py" and created.metadata.uid
    assert created.spec.ports[0].target_port == 8080

    got = core.read_namespaced_service("py", namespace)
    assert got.metadata.resource_version == created.metadata.resource_version

    got.metadata.labels["changed"] = "yes"
    replaced = core.replace_namespaced_service("py", namespace, got)
    assert int(replaced.metadata.resource_version) > int(created.metadata.resource_version)

    patched = core.patch_namespaced_service("py", namespace, {"metadata": {"labels": {"p": "1"}}})
    assert patched.metadata.labels == {"app": "py", "changed": "yes", "p": "1"}

    listed = core.list_namespaced_service(namespace, label_selector="p=1")
    assert [s.metadata.name for s in listed.items] == ["py"]

    deleted = core.delete_namespaced_service("py", namespace)  # a V1Service, as on a real cluster
    assert deleted.metadata.name == "py"
    with pytest.raises(client.exceptions.ApiException) as e:
        core.read_namespaced_service("py", namespace)
    assert e.value.status == 404


def test_conflict_on_stale_update(k8s, namespace):
    client, api = k8s
    core = client.CoreV1Api(api)
    core.create_namespaced_service(namespace, _svc(client, "cas"))
    a = core.read_namespaced_service("cas", namespace)
    b = core.read_namespaced_service("cas", namespace)
    a.metadata.labels["w"] = "a"
    core.replace_namespaced_service("cas", namespace, a)
    b.metadata.labels["w"] = "b"
    with pytest.raises(client.exceptions.ApiException) as e:
        core.replace_namespaced_service("cas", namespace, b)
    assert e.value.status == 409
    assert core.read_namespaced_service("cas", namespace).metadata.labels["w"] == "a"


def test_watch_stream(k8s, namespace):
    from kubernetes import watch

    client, api = k8s
    core = client.CoreV1Api(api)
    events: list[tuple[str, str]] = []
    w = watch.Watch()

    def run():
        for ev in w.stream(core.list_namespaced_service, namespace, timeout_seconds=20):
            events.append((ev["type"], ev["object"].metadata.name))
            if ev["type"] == "DELETED":
                w.stop()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    core.create_namespaced_service(namespace, _svc(client, "wa"))
    wait_for(lambda: ("ADDED", "wa") in events, 10, what="ADDED")
    core.patch_namespaced_service("wa", namespace, {"metadata": {"labels": {"x": "1"}}})
    wait_for(lambda: ("MODIFIED", "wa") in events, 10, what="MODIFIED")
    core.delete_namespaced_service("wa", namespace)
    t.join(15)
    assert events == [("ADDED", "wa"), ("MODIFIED", "wa"), ("DELETED", "wa")]


def test_apps_scale_and_other_groups(k8s, namespace):
    client, api = k8s
    apps = client.AppsV1Api(api)
    dep = client.V1Deployment(
        metadata=client.V1ObjectMeta(name="d"),
        spec=client.V1DeploymentSpec(
            replicas=1,
            selector=client.V1LabelSelector(match_labels={"app": "d"}),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels={"app": "d"}),
                spec=client.V1PodSpec(containers=[client.V1Container(name="c", image="x")]))))
    created = apps.create_namespaced_deployment(namespace, dep)
    assert created.metadata.generation == 1
    scale = apps.patch_namespaced_deployment_scale("d", namespace, {"spec": {"replicas": 3}})
    assert scale.spec.replicas == 3 and scale.status.selector == "app=d"
    after = apps.read_namespaced_deployment("d", namespace)
    assert after.spec.replicas == 3 and after.metadata.generation == 2

    coord = client.CoordinationV1Api(api)
    lease = coord.create_namespaced_lease(namespace, client.V1Lease(
        metadata=client.V1ObjectMeta(name="l"), spec=client.V1LeaseSpec(holder_identity="me")))
    assert lease.spec.holder_identity == "me"
    disc = client.DiscoveryV1Api(api)
    es = disc.create_namespaced_endpoint_slice(namespace, client.V1EndpointSlice(
        metadata=client.V1ObjectMeta(name="es"), address_type="IPv4",
        endpoints=[client.V1Endpoint(addresses=["10.244.0.5"])]))
    assert es.endpoints[0].addresses == ["10.244.0.5"]


def test_status_subresource_changes_only_status(k8s, namespace):
    client, api = k8s
    core = client.CoreV1Api(api)
    core.create_namespaced_service(namespace, _svc(client, "st"))
    # status in a create is ignored
    svc = core.read_namespaced_service("st", namespace)
    svc.status = client.V1ServiceStatus(load_balancer=client.V1LoadBalancerStatus(
        ingress=[client.V1LoadBalancerIngress(ip="192.0.2.7")]))
    svc.spec.selector = {"app": "changed-through-status"}
    out = core.replace_namespaced_service_status("st", namespace, svc)
    assert out.status.load_balancer.ingress[0].ip == "192.0.2.7"
    assert out.spec.selector == {"app": "st"}  # spec untouched by a status write
    # a main-resource write does not change status
    out.metadata.labels["m"] = "1"
    out.status = client.V1ServiceStatus(load_balancer=client.V1LoadBalancerStatus())
    again = core.replace_namespaced_service("st", namespace, out)
    assert again.status.load_balancer.ingress[0].ip == "192.0.2.7"
