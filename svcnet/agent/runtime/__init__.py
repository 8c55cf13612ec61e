"""The agent's pod runtime: pods as processes in their own network namespaces.

    runtime = PodRuntime(data_dir, node_name, node_ip, pod_cidr)
    await runtime.start()                       # node network; adopt running pods
    await runtime.sync_pod(pod, service_env)    # idempotent; returns quickly
    runtime.pod_status(uid)                     # Kubernetes PodStatus JSON
    uid = await runtime.changes.get()           # a pod's status changed
    await runtime.kill_pod(uid, grace_seconds)

Modules: `manager` (PodRuntime), `pod` (one pod's lifecycle), `sandbox` (network namespace
holders and netlink), `containers` (argv, env, files, processes), `probes`, `status` (pure).
"""

from svcnet.agent.runtime.manager import PodRuntime
from svcnet.agent.runtime.probes import ProbeSpec, ProbeState
from svcnet.agent.runtime.status import ContainerView, pod_phase, pod_status

__all__ = ["PodRuntime", "ProbeSpec", "ProbeState", "ContainerView", "pod_phase", "pod_status"]
