"""The agent's pod runtime: pods as processes in their own network namespaces.

    runtime = PodRuntime(data_dir, node_name, node_ip, pod_cidr)
    await runtime.start()                       # node network; adopt running pods
    await runtime.sync_pod(pod, service_env)    # idempotent; returns quickly
    runtime.pod_status(uid)                     # Kubernetes PodStatus JSON
    uid = await runtime.changes.get()           # a pod's status changed
    await runtime.kill_pod(uid, grace_seconds)

Modules: `manager` (PodRuntime), `pod` (one pod's lifecycle), `sandbox` (network namespace
holders and netlink), `containers` (argv, env, files, processes), `probes`, `status` (pure),
`logwriter` (the per-container log writer process), `logs` (reading its files, pure).
"""

import importlib

_EXPORTS = {"PodRuntime": "manager", "ProbeSpec": "probes", "ProbeState": "probes",
            "ContainerView": "status", "pod_phase": "status", "pod_status": "status"}
__all__ = list(_EXPORTS)


def __getattr__(name: str):
    """Lazy exports: the API server imports `logs` alone, without the runtime's machinery."""
    if name not in _EXPORTS:
        raise AttributeError(name)
    return getattr(importlib.import_module(f"svcnet.agent.runtime.{_EXPORTS[name]}"), name)
