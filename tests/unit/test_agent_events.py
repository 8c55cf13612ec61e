"""The agent tells the user, with Events, why a container does not run."""

from svcnet.agent.agent import _event_body, waiting_events


def status(**waiting) -> dict:
    return {"containerStatuses": [
        {"name": n, "state": {"waiting": {"reason": r, "message": f"{r} because"}} if r else {"running": {}}}
        for n, r in waiting.items()]}


def test_new_waiting_reasons_become_events_once():
    assert waiting_events(status(c="PodInitializing"), status(c="ErrImageNeverPull")) == [
        ("c", "Failed", "ErrImageNeverPull because")]
    assert waiting_events(status(c="ErrImageNeverPull"), status(c="ErrImageNeverPull")) == []
    assert waiting_events(status(c=None), status(c="CrashLoopBackOff")) == [
        ("c", "BackOff", "CrashLoopBackOff because")]
    plain = {"containerStatuses": [{"name": "c", "state": {"waiting": {"reason": "ContainerCreating"}}}]}
    assert waiting_events({}, plain) == []


def test_a_sandbox_that_cannot_be_made_is_reported_once():
    creating = {"containerStatuses": [{"name": "c", "state": {"waiting": {
        "reason": "ContainerCreating",
        "message": "failed to create pod sandbox: no free address in pod CIDR 10.244.0.0/29"}}}]}
    assert waiting_events({}, creating) == [
        ("c", "FailedCreatePodSandBox",
         "failed to create pod sandbox: no free address in pod CIDR 10.244.0.0/29")]
    assert waiting_events(creating, creating) == []


def test_event_body_points_at_the_container():
    pod = {"metadata": {"name": "p", "namespace": "ns", "uid": "u1"}}
    ev = _event_body(pod, "node1", "c", "Failed", "image x is not built in")
    assert ev["involvedObject"] == {"kind": "Pod", "apiVersion": "v1", "namespace": "ns", "name": "p",
                                    "uid": "u1", "fieldPath": "spec.containers{c}"}
    assert (ev["type"], ev["reason"], ev["source"]) == ("Warning", "Failed", {"component": "kubelet",
                                                                           "host": "node1"})
