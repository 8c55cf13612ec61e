"""The Kubernetes service environment variables a container starts with (pure).

As the kubelet's `getServiceEnvVarMap` + `envvars.FromServices`: for every Service of the pod's
namespace that has a ClusterIP (not headless, not ExternalName) and exists when the pod starts —
only the `kubernetes` Service of `default` when `enableServiceLinks` is false, and that one in
every namespace — the Docker-links style variables:

    WEB_SERVICE_HOST=10.96.0.5          WEB_SERVICE_PORT=80   WEB_SERVICE_PORT_HTTP=80
    WEB_PORT=tcp://10.96.0.5:80         WEB_PORT_80_TCP=tcp://10.96.0.5:80
    WEB_PORT_80_TCP_PROTO=tcp           WEB_PORT_80_TCP_PORT=80   WEB_PORT_80_TCP_ADDR=10.96.0.5
"""

from __future__ import annotations


def _name(service: str) -> str:
    return service.upper().replace("-", "_")


def _has_cluster_ip(svc: dict) -> bool:
    ip = (svc.get("spec") or {}).get("clusterIP")
    return bool(ip) and ip != "None" and (svc.get("spec") or {}).get("type") != "ExternalName"


def service_env(svc: dict) -> dict[str, str]:
    spec = svc["spec"]
    name, ip = _name(svc["metadata"]["name"]), spec["clusterIP"]
    ports = spec.get("ports") or []
    env: dict[str, str] = {}
    if not ports:
        return env
    env[f"{name}_SERVICE_HOST"] = ip
    env[f"{name}_SERVICE_PORT"] = str(ports[0]["port"])
    for p in ports:
        if p.get("name"):
            env[f"{name}_SERVICE_PORT_{_name(p['name'])}"] = str(p["port"])
    first = ports[0]
    env[f"{name}_PORT"] = f"{(first.get('protocol') or 'TCP').lower()}://{ip}:{first['port']}"
    for p in ports:
        proto = (p.get("protocol") or "TCP")
        prefix = f"{name}_PORT_{p['port']}_{proto.upper()}"
        env[prefix] = f"{proto.lower()}://{ip}:{p['port']}"
        env[f"{prefix}_PROTO"] = proto.lower()
        env[f"{prefix}_PORT"] = str(p["port"])
        env[f"{prefix}_ADDR"] = ip
    return env


def pod_service_env(pod: dict, services: list[dict]) -> dict[str, str]:
    """The variables for `pod`, from all Services in the cluster (the caller's informer)."""
    ns = pod["metadata"].get("namespace", "default")
    links = (pod.get("spec") or {}).get("enableServiceLinks", True) is not False
    chosen: dict[str, dict] = {}
    for svc in services:
        m = svc["metadata"]
        if not _has_cluster_ip(svc):
            continue
        if m.get("namespace") == "default" and m["name"] == "kubernetes":
            chosen.setdefault("kubernetes", svc)
        elif links and m.get("namespace") == ns:
            chosen[m["name"]] = svc  # a namespace's own "kubernetes" Service wins, as in the kubelet
    env: dict[str, str] = {}
    for name in sorted(chosen):
        env.update(service_env(chosen[name]))
    return env
