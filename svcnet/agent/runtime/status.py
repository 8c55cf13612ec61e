"""Pod status from what the runtime knows: phase, conditions and container statuses (pure).

This is the kubelet's status generation (pkg/kubelet/kubelet_pods.go `getPhase`,
`convertToAPIContainerStatuses`; pkg/kubelet/status/generate.go) as functions of plain data, so
it is tested without processes or root:

- `ContainerView` is one container as the runtime sees it: its current `state` (one of
  waiting / running / terminated, Kubernetes' shape), the last termination, ready / started,
  restart count and ids.
- `pod_phase` counts containers the way `getPhase` does: a container waiting after a termination
  (CrashLoopBackOff) counts as stopped, so a crash-looping pod with restartPolicy Always is
  Running, and Failed only when nothing will restart it.
- `pod_status` assembles the PodStatus JSON. Conditions keep their `lastTransitionTime` from the
  previous status while their `status` is unchanged.

Invariants: the output depends only on the arguments (no clock, no I/O); every container of the
spec has exactly one status, in spec order.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Condition types, in the order the kubelet lists them.
POD_SCHEDULED = "PodScheduled"
READY_TO_START = "PodReadyToStartContainers"
INITIALIZED = "Initialized"
CONTAINERS_READY = "ContainersReady"
READY = "Ready"


@dataclass
class ContainerView:
    name: str
    image: str
    state: dict = field(default_factory=lambda: {"waiting": {"reason": "ContainerCreating"}})
    last_state: dict = field(default_factory=dict)
    ready: bool = False
    started: bool = False
    restart_count: int = 0
    container_id: str | None = None
    image_id: str = ""

    def to_api(self) -> dict:
        status = {"name": self.name, "image": self.image, "imageID": self.image_id,
                  "ready": self.ready, "started": self.started,
                  "restartCount": self.restart_count, "state": self.state,
                  "lastState": self.last_state}
        if self.container_id:
            status["containerID"] = self.container_id
        return status


def waiting(reason: str, message: str | None = None) -> dict:
    w = {"reason": reason}
    if message:
        w["message"] = message
    return {"waiting": w}


def _terminated_last(view: ContainerView) -> dict | None:
    return (view.last_state or {}).get("terminated")


def pod_phase(restart_policy: str, init: list[ContainerView], containers: list[ContainerView],
              terminal: bool = False) -> str:
    """kubelet getPhase (without sidecar init containers). `terminal`: the pod was stopped
    (deleted) and none of its containers will run again."""
    pending_init = failed_init = 0
    for v in init:
        if "running" in v.state:
            pending_init += 1
        elif "terminated" in v.state:
            if v.state["terminated"].get("exitCode", 0) != 0:
                failed_init += 1
        elif "waiting" in v.state:
            last = _terminated_last(v)
            if last is not None:
                if last.get("exitCode", 0) != 0:
                    failed_init += 1
            else:
                pending_init += 1
        else:
            pending_init += 1

    running = waiting_ = stopped = succeeded = 0
    for v in containers:
        if "running" in v.state:
            running += 1
        elif "terminated" in v.state:
            stopped += 1
            if v.state["terminated"].get("exitCode", 0) == 0:
                succeeded += 1
        elif "waiting" in v.state:
            last = _terminated_last(v)
            if last is not None:
                stopped += 1
                if last.get("exitCode", 0) == 0:
                    succeeded += 1
            else:
                waiting_ += 1

    if failed_init > 0 and restart_policy == "Never":
        return "Failed"
    if pending_init > 0 or waiting_ > 0:
        return "Pending"
    if running > 0:
        return "Running"
    if stopped > 0:
        if terminal:
            return "Succeeded" if stopped == succeeded else "Failed"
        if restart_policy == "Always":
            return "Running"  # every container is on its way to a restart
        if stopped == succeeded:
            return "Succeeded"
        if restart_policy == "Never":
            return "Failed"
        return "Running"  # OnFailure: the failed ones restart
    return "Pending"


def _names(names: list[str]) -> str:
    return "[" + " ".join(names) + "]"  # Go's %s of a []string


def _condition(type_: str, ok: bool, reason: str | None = None,
               message: str | None = None) -> dict:
    c = {"type": type_, "status": "True" if ok else "False", "lastProbeTime": None}
    if not ok or reason:
        if reason:
            c["reason"] = reason
        if message:
            c["message"] = message
    return c


def pod_conditions(phase: str, init: list[ContainerView], containers: list[ContainerView],
                   sandbox_ready: bool, readiness_gates: list[str] | None = None,
                   gate_status: dict[str, str] | None = None) -> list[dict]:
    """The conditions without timestamps (see `with_transition_times`)."""
    conds = [_condition(POD_SCHEDULED, True), _condition(READY_TO_START, sandbox_ready)]

    # Initialized (GeneratePodInitializedCondition)
    incomplete = [v.name for v in init
                  if not ("terminated" in v.state and v.state["terminated"].get("exitCode") == 0)]
    if not incomplete:
        conds.append(_condition(INITIALIZED, True))
    elif phase == "Succeeded":
        conds.append(_condition(INITIALIZED, True, "PodCompleted"))
    else:
        conds.append(_condition(INITIALIZED, False, "ContainersNotInitialized",
                                f"containers with incomplete status: {_names(incomplete)}"))

    # ContainersReady (GenerateContainersReadyCondition)
    unready = [v.name for v in containers if not v.ready]
    if phase == "Succeeded":
        ready_cond = _condition(CONTAINERS_READY, False, "PodCompleted")
    elif unready:
        ready_cond = _condition(CONTAINERS_READY, False, "ContainersNotReady",
                                f"containers with unready status: {_names(unready)}")
    else:
        ready_cond = _condition(CONTAINERS_READY, True)
    conds.append(ready_cond)

    # Ready (GeneratePodReadyCondition): ContainersReady, then the readiness gates.
    if ready_cond["status"] != "True":
        pod_ready = dict(ready_cond, type=READY)
    else:
        gate_status = gate_status or {}
        unmet = []
        for g in readiness_gates or []:
            if g not in gate_status:
                unmet.append(f'corresponding condition of pod readiness gate "{g}" does not exist.')
            elif gate_status[g] != "True":
                unmet.append(f'the status of pod readiness gate "{g}" is not "True", '
                             f'but {gate_status[g]}')
        if unmet:
            pod_ready = _condition(READY, False, "ReadinessGatesNotReady", ", ".join(unmet))
        else:
            pod_ready = _condition(READY, True)
    conds.append(pod_ready)
    return conds


def with_transition_times(conditions: list[dict], previous: list[dict] | None,
                          now: str) -> list[dict]:
    """Stamp lastTransitionTime: kept from `previous` when the status did not change."""
    before = {c.get("type"): c for c in previous or []}
    out = []
    for c in conditions:
        old = before.get(c["type"])
        if old is not None and old.get("status") == c["status"] and old.get("lastTransitionTime"):
            t = old["lastTransitionTime"]
        else:
            t = now
        out.append(dict(c, lastTransitionTime=t))
    return out


def qos_class(spec: dict) -> str:
    """Guaranteed / Burstable / BestEffort from the containers' requests and limits."""
    containers = list(spec.get("containers") or []) + list(spec.get("initContainers") or [])
    any_set = False
    guaranteed = True
    for c in containers:
        res = c.get("resources") or {}
        requests, limits = res.get("requests") or {}, res.get("limits") or {}
        if requests or limits:
            any_set = True
        for name in ("cpu", "memory"):
            limit = limits.get(name)
            request = requests.get(name, limit)
            if limit is None or str(request) != str(limit):
                guaranteed = False
    if not any_set:
        return "BestEffort"
    return "Guaranteed" if guaranteed else "Burstable"


def pod_status(spec: dict, init: list[ContainerView], containers: list[ContainerView], *,
               pod_ip: str | None, host_ip: str, start_time: str | None, sandbox_ready: bool,
               previous_conditions: list[dict] | None, now: str,
               terminal: bool = False) -> dict:
    """The PodStatus JSON. `terminal`: the pod was stopped for good (see `pod_phase`)."""
    restart_policy = spec.get("restartPolicy") or "Always"
    phase = pod_phase(restart_policy, init, containers, terminal)
    gates = [g.get("conditionType") for g in spec.get("readinessGates") or []
             if g.get("conditionType")]
    gate_status = {c.get("type"): c.get("status") for c in previous_conditions or []}
    conds = pod_conditions(phase, init, containers, sandbox_ready, gates, gate_status)
    status: dict = {
        "phase": phase,
        "conditions": with_transition_times(conds, previous_conditions, now),
        "hostIP": host_ip,
        "hostIPs": [{"ip": host_ip}],
        "qosClass": qos_class(spec),
        "containerStatuses": [v.to_api() for v in containers],
    }
    # Conditions the runtime does not own (readiness gates set by controllers) are kept.
    owned = {c["type"] for c in conds}
    status["conditions"] += [c for c in previous_conditions or [] if c.get("type") not in owned]
    if init:
        status["initContainerStatuses"] = [v.to_api() for v in init]
    if pod_ip:
        status["podIP"] = pod_ip
        status["podIPs"] = [{"ip": pod_ip}]
    if start_time:
        status["startTime"] = start_time
    return status
