"""The pod runtime's pure parts: pod status (phase, conditions, container statuses), container
launch data (argv, env, user, files) and the crash back-off message format. No root needed."""

from __future__ import annotations

import sys

import pytest

from svcnet.agent.runtime import containers as ct
from svcnet.agent.runtime.status import (ContainerView, pod_conditions, pod_phase, pod_status,
                                         qos_class, waiting, with_transition_times)

NOW = "2026-01-01T00:00:10Z"
EARLIER = "2026-01-01T00:00:00Z"


def running(name="app", ready=True, restarts=0, last=None):
    return ContainerView(name=name, image="img", state={"running": {"startedAt": EARLIER}},
                         ready=ready, started=True, restart_count=restarts,
                         last_state={"terminated": last} if last else {})


def terminated(name="app", code=0, restarts=0):
    return ContainerView(name=name, image="img",
                         state={"terminated": {"exitCode": code,
                                               "reason": "Completed" if code == 0 else "Error"}},
                         restart_count=restarts)


def backoff(name="app", code=1, restarts=1):
    return ContainerView(name=name, image="img",
                         state=waiting("CrashLoopBackOff", "back-off 10s restarting failed"),
                         last_state={"terminated": {"exitCode": code, "reason": "Error"}},
                         restart_count=restarts)


def creating(name="app"):
    return ContainerView(name=name, image="img")


# ---- phase (kubelet getPhase) -------------------------------------------------------------------

@pytest.mark.parametrize("policy,containers,phase", [
    ("Always", [creating()], "Pending"),
    ("Always", [running()], "Running"),
    ("Always", [running(), creating("b")], "Pending"),
    ("Always", [backoff()], "Running"),                 # crash loop: on its way to a restart
    ("Always", [terminated(code=0)], "Running"),
    ("OnFailure", [terminated(code=0)], "Succeeded"),
    ("OnFailure", [backoff(code=3)], "Running"),
    ("OnFailure", [terminated(code=3)], "Running"),
    ("Never", [terminated(code=3)], "Failed"),
    ("Never", [terminated(code=0), terminated("b", code=0)], "Succeeded"),
    ("Never", [terminated(code=0), terminated("b", code=1)], "Failed"),
    ("Never", [terminated(code=1), running("b")], "Running"),
    ("Always", [ContainerView("app", "img", state=waiting("ErrImageNeverPull", "x"))], "Pending"),
])
def test_phase(policy, containers, phase):
    assert pod_phase(policy, [], containers) == phase


def test_phase_with_init_containers():
    # An init container still running keeps the pod Pending, its app containers initializing.
    assert pod_phase("Always", [running("init")],
                     [ContainerView("app", "img", state=waiting("PodInitializing"))]) == "Pending"
    # A failed init container fails the pod only when nothing restarts it.
    assert pod_phase("Never", [terminated("init", code=1)],
                     [ContainerView("app", "img", state=waiting("PodInitializing"))]) == "Failed"
    assert pod_phase("Always", [backoff("init")],
                     [ContainerView("app", "img", state=waiting("PodInitializing"))]) == "Pending"
    assert pod_phase("Always", [terminated("init", code=0)], [running()]) == "Running"


def test_phase_of_a_stopped_pod_is_terminal():
    assert pod_phase("Always", [], [terminated(code=143)], terminal=True) == "Failed"
    assert pod_phase("Always", [], [terminated(code=0)], terminal=True) == "Succeeded"


# ---- conditions ---------------------------------------------------------------------------------

def _by_type(conds):
    return {c["type"]: c for c in conds}


def test_conditions_ready_pod():
    conds = _by_type(pod_conditions("Running", [], [running()], sandbox_ready=True))
    assert [conds[t]["status"] for t in ("PodScheduled", "PodReadyToStartContainers",
                                         "Initialized", "ContainersReady", "Ready")] == ["True"] * 5


def test_conditions_unready_containers_are_named_like_the_kubelet():
    conds = _by_type(pod_conditions("Running", [], [running("a", ready=False), running("b"),
                                                     creating("c")], sandbox_ready=True))
    for t in ("ContainersReady", "Ready"):
        assert conds[t]["status"] == "False"
        assert conds[t]["reason"] == "ContainersNotReady"
        assert conds[t]["message"] == "containers with unready status: [a c]"


def test_conditions_init_incomplete():
    conds = _by_type(pod_conditions("Pending", [running("setup")], [creating()], True))
    assert conds["Initialized"] == {"type": "Initialized", "status": "False",
                                    "lastProbeTime": None, "reason": "ContainersNotInitialized",
                                    "message": "containers with incomplete status: [setup]"}


def test_conditions_succeeded_pod():
    conds = _by_type(pod_conditions("Succeeded", [], [terminated()], False))
    assert conds["ContainersReady"]["reason"] == "PodCompleted"
    assert conds["Ready"]["status"] == "False"
    assert conds["PodReadyToStartContainers"]["status"] == "False"


def test_readiness_gates():
    conds = _by_type(pod_conditions("Running", [], [running()], True, ["example.com/lb"], {}))
    assert conds["ContainersReady"]["status"] == "True"
    assert conds["Ready"]["status"] == "False"
    assert conds["Ready"]["reason"] == "ReadinessGatesNotReady"
    assert '"example.com/lb" does not exist' in conds["Ready"]["message"]
    conds = _by_type(pod_conditions("Running", [], [running()], True, ["example.com/lb"],
                                    {"example.com/lb": "True"}))
    assert conds["Ready"]["status"] == "True"


def test_transition_times_are_kept_while_the_status_does_not_change():
    previous = [{"type": "Ready", "status": "False", "lastTransitionTime": EARLIER},
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": EARLIER}]
    conds = _by_type(with_transition_times(
        [{"type": "Ready", "status": "True"}, {"type": "PodScheduled", "status": "True"},
         {"type": "Initialized", "status": "True"}], previous, NOW))
    assert conds["Ready"]["lastTransitionTime"] == NOW
    assert conds["PodScheduled"]["lastTransitionTime"] == EARLIER
    assert conds["Initialized"]["lastTransitionTime"] == NOW


# ---- the whole status ---------------------------------------------------------------------------

def test_pod_status_document():
    spec = {"containers": [{"name": "app", "image": "img"}]}
    last = {"exitCode": 3, "reason": "Error", "startedAt": EARLIER, "finishedAt": EARLIER}
    status = pod_status(spec, [], [running(restarts=2, last=last)], pod_ip="10.244.0.5",
                        host_ip="192.168.1.2", start_time=EARLIER, sandbox_ready=True,
                        previous_conditions=None, now=NOW)
    assert status["phase"] == "Running"
    assert status["podIP"] == "10.244.0.5" and status["podIPs"] == [{"ip": "10.244.0.5"}]
    assert status["hostIP"] == "192.168.1.2" and status["hostIPs"] == [{"ip": "192.168.1.2"}]
    assert status["startTime"] == EARLIER
    assert status["qosClass"] == "BestEffort"
    assert "initContainerStatuses" not in status
    (cs,) = status["containerStatuses"]
    assert cs["restartCount"] == 2 and cs["ready"] is True and cs["started"] is True
    assert cs["lastState"] == {"terminated": last}
    assert all(c["lastTransitionTime"] == NOW for c in status["conditions"])


def test_pod_status_keeps_foreign_conditions():
    spec = {"containers": [{"name": "app", "image": "img"}],
            "readinessGates": [{"conditionType": "example.com/lb"}]}
    previous = [{"type": "example.com/lb", "status": "True", "lastTransitionTime": EARLIER}]
    status = pod_status(spec, [], [running()], pod_ip=None, host_ip="h", start_time=None,
                        sandbox_ready=True, previous_conditions=previous, now=NOW)
    conds = _by_type(status["conditions"])
    assert conds["example.com/lb"]["lastTransitionTime"] == EARLIER
    assert conds["Ready"]["status"] == "True"
    assert "podIP" not in status


@pytest.mark.parametrize("resources,qos", [
    ([{}], "BestEffort"),
    ([{"limits": {"cpu": "1", "memory": "1Gi"}}], "Guaranteed"),
    ([{"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"cpu": "1", "memory": "1Gi"}}],
     "Guaranteed"),
    ([{"requests": {"cpu": "100m"}}], "Burstable"),
    ([{"limits": {"cpu": "1", "memory": "1Gi"}}, {}], "Burstable"),
])
def test_qos_class(resources, qos):
    spec = {"containers": [{"name": f"c{i}", "resources": r} for i, r in enumerate(resources)]}
    assert qos_class(spec) == qos


# ---- launch data --------------------------------------------------------------------------------

POD = {"metadata": {"name": "web-1", "namespace": "shop", "uid": "u-1",
                    "labels": {"app": "web"}},
       "spec": {"nodeName": "node-1", "containers": []}}
CTX = {"podIP": "10.244.0.7", "hostIP": "192.168.1.2", "nodeName": "node-1"}


def test_env_order_field_refs_and_expansion():
    container = {"name": "app", "image": "busybox", "env": [
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
        {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
        {"name": "URL", "value": "http://$(POD_IP):$(PORT)/$$(x)"},
        {"name": "WEB_SERVICE_HOST", "value": "overridden"},
    ]}
    env = ct.container_env(POD, container, {"WEB_SERVICE_HOST": "10.96.0.5", "A": "1"}, CTX)
    assert env["POD_NAME"] == "web-1" and env["POD_IP"] == "10.244.0.7"
    assert env["NODE"] == "node-1" and env["NS"] == "shop" and env["APP"] == "web"
    assert env["URL"] == "http://10.244.0.7:$(PORT)/$(x)"
    assert env["WEB_SERVICE_HOST"] == "overridden" and env["A"] == "1"
    assert env["HOSTNAME"] == "web-1" and env["PATH"].startswith("/usr/local/sbin")


def test_unsupported_env_sources_are_clear_errors():
    container = {"name": "app", "env": [{"name": "X", "valueFrom": {"secretKeyRef": {
        "name": "s", "key": "k"}}}]}
    with pytest.raises(ct.LaunchError) as e:
        ct.container_env(POD, container, {}, CTX)
    assert e.value.reason == "CreateContainerConfigError"
    optional = {"name": "app", "env": [{"name": "X", "valueFrom": {"configMapKeyRef": {
        "name": "c", "key": "k", "optional": True}}}]}
    assert "X" not in ct.container_env(POD, optional, {}, CTX)


CONFIG_MAPS = {("shop", "settings"): {"data": {"COLOR": "blue", "SIZE": "L", "bad key": "x",
                                              "1ST": "y"}},
               ("shop", "other"): {"data": {"COLOR": "red", "MODE": "$(COLOR)"}}}


def _cm(namespace, name):
    return CONFIG_MAPS.get((namespace, name))


def test_env_from_config_maps_with_prefix_and_precedence():
    container = {"name": "app", "envFrom": [
        {"configMapRef": {"name": "settings"}},
        {"prefix": "OTHER_", "configMapRef": {"name": "other"}},
        {"configMapRef": {"name": "absent", "optional": True}},
    ], "env": [{"name": "SIZE", "value": "XL"},
               {"name": "PICK", "valueFrom": {"configMapKeyRef": {"name": "other", "key": "COLOR"}}},
               {"name": "NONE", "valueFrom": {"configMapKeyRef": {"name": "other", "key": "nope",
                                                                   "optional": True}}},
               {"name": "DERIVED", "value": "$(OTHER_COLOR)-$(COLOR)"}]}
    warnings = []
    env = ct.container_env(POD, container, {"COLOR": "service", "KEEP": "1"}, CTX, _cm, warnings)
    assert env["COLOR"] == "blue"               # envFrom over the service variables
    assert env["SIZE"] == "XL"                  # env over envFrom
    assert env["OTHER_COLOR"] == "red" and env["OTHER_MODE"] == "$(COLOR)"  # not expanded
    assert env["PICK"] == "red" and "NONE" not in env and env["KEEP"] == "1"
    assert env["DERIVED"] == "red-blue"
    # keys that are not variable names (IsEnvVarName: no leading digit, no space) are skipped
    assert "bad key" not in env and "1ST" not in env
    assert warnings == ["Keys [1ST, bad key] from the EnvFrom configMap shop/settings were "
                        "skipped since they are considered invalid environment variable names."]


@pytest.mark.parametrize("env_from, env, message", [
    ([{"configMapRef": {"name": "absent"}}], [], 'configmap "absent" not found'),
    ([], [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "absent", "key": "k"}}}],
     'configmap "absent" not found'),
    ([], [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "k"}}}],
     "couldn't find key k in ConfigMap shop/settings"),
    ([{"secretRef": {"name": "creds"}}], [],
     'secret "creds" not found (svcnet does not serve Secrets)'),
    ([], [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "k"}}}],
     'secret "creds" not found (svcnet does not serve Secrets)'),
])
def test_missing_config_is_create_container_config_error(env_from, env, message):
    with pytest.raises(ct.LaunchError) as e:
        ct.container_env(POD, {"name": "app", "envFrom": env_from, "env": env}, {}, CTX, _cm)
    assert (e.value.reason, e.value.message) == ("CreateContainerConfigError", message)
    optional = {"name": "app", "envFrom": [{"secretRef": {"name": "creds", "optional": True}}],
                "env": [{"name": "X", "valueFrom": {"secretKeyRef": {
                    "name": "creds", "key": "k", "optional": True}}}]}
    assert "X" not in ct.container_env(POD, optional, {}, CTX, _cm)


def test_launch_builtin_image_goes_through_runas_as_nobody():
    container = {"name": "app", "image": "registry.k8s.io/e2e-test-images/agnhost:2.53",
                 "args": ["netexec", "--http-port=$(PORT)"], "env": [{"name": "PORT",
                                                                      "value": "8080"}]}
    launch = ct.launch_for(POD, container, {}, CTX)
    assert launch.builtin and (launch.uid, launch.gid) == (65534, 65534)
    assert launch.argv == [sys.executable, "-u", "-m", "svcnet.agent.runas", "--private-mounts",
                           "65534", "65534", "--", "svcnet.images.agnhost", "netexec",
                           "--http-port=8080"]
    assert launch.workdir == "/"


def test_launch_host_command_and_security_context():
    pod = dict(POD, spec={"securityContext": {"runAsUser": 1000, "runAsGroup": 2000}})
    container = {"name": "app", "image": "busybox", "command": ["sh", "-c", "exit 3"],
                 "workingDir": "/tmp", "securityContext": {"runAsUser": 0}}
    launch = ct.launch_for(pod, container, {}, CTX)
    assert launch.argv == ["sh", "-c", "exit 3"] and not launch.builtin
    assert (launch.uid, launch.gid) == (0, 2000)
    assert launch.workdir == "/tmp"
    assert ct.run_as(POD, {"securityContext": {"runAsUser": 0}}) == (0, 0)


def test_unknown_image_without_command_is_a_clear_error():
    with pytest.raises(ct.LaunchError) as e:
        ct.launch_for(POD, {"name": "app", "image": "example.com/shop/web:1"}, {}, CTX)
    assert e.value.reason == "ErrImageNeverPull"
    assert 'image "example.com/shop/web:1" is not a built-in svcnet image' in e.value.message
    assert "has no command" in e.value.message


def test_pod_files(tmp_path):
    node_resolv = tmp_path / "resolv.conf"
    node_resolv.write_text("# the node's resolvers\nnameserver 192.168.1.10\nsearch lan.example\n"
                           "options timeout:2\n")
    pod = {"metadata": {"name": "web-1", "namespace": "shop"},
           "spec": {"hostname": "h1", "subdomain": "sub",
                    "hostAliases": [{"ip": "10.1.1.1", "hostnames": ["foo", "bar"]}],
                    "dnsConfig": {"options": [{"name": "ndots", "value": "2"}, {"name": "edns0"}],
                                  "searches": ["example.com"]}}}
    files = ct.pod_files(pod, "10.244.0.7", "10.96.0.10", "cluster.local", str(node_resolv))
    assert files["resolv.conf"] == (  # the node's search domains follow the cluster's
        "nameserver 10.96.0.10\n"
        "search shop.svc.cluster.local svc.cluster.local cluster.local lan.example example.com\n"
        "options ndots:2 edns0\n")
    assert "10.244.0.7\th1.sub.shop.svc.cluster.local\th1\n" in files["hosts"]
    assert "127.0.0.1\tlocalhost\n" in files["hosts"]
    assert "10.1.1.1\tfoo\tbar\n" in files["hosts"]
    assert files["hostname"] == "h1\n"
    plain = ct.pod_files({"metadata": {"name": "p", "namespace": "default"}, "spec": {}},
                         "10.244.0.9", "10.96.0.10", "cluster.local", "/nonexistent")
    assert plain["resolv.conf"] == ("nameserver 10.96.0.10\nsearch default.svc.cluster.local "
                                    "svc.cluster.local cluster.local\noptions ndots:5\n")
    assert plain["hosts"].endswith("10.244.0.9\tp\n")
    # dnsPolicy Default: the node's resolvers as --resolv-conf names them, not /etc/resolv.conf
    default = ct.pod_files({"metadata": {"name": "p", "namespace": "default"},
                            "spec": {"dnsPolicy": "Default"}},
                           "10.244.0.9", "10.96.0.10", "cluster.local", str(node_resolv))
    assert default["resolv.conf"] == ("nameserver 192.168.1.10\nsearch lan.example\n"
                                      "options timeout:2\n")
    empty = ct.pod_files({"metadata": {"name": "p", "namespace": "default"},
                          "spec": {"dnsPolicy": "Default"}},
                         "10.244.0.9", "10.96.0.10", "cluster.local", "/dev/null")
    assert empty["resolv.conf"] == ""


@pytest.mark.parametrize("seconds,text", [(10, "10s"), (20, "20s"), (80, "1m20s"),
                                          (160, "2m40s"), (300, "5m0s"), (0.5, "500ms"),
                                          (2.5, "2.5s")])
def test_backoff_durations_are_printed_like_go(seconds, text):
    assert ct.format_duration(seconds) == text


def test_expand():
    env = {"A": "x"}
    assert ct.expand("$(A)-$(B)-$$(A)-$$$(A)", env) == "x-$(B)-$(A)-$x"


def test_wait_status_decoding():
    assert ct.decode_wait_status(3 << 8) == (3, None)
    assert ct.decode_wait_status(9) == (137, 9)
    assert ct.decode_wait_status(15) == (143, 15)


# ---- crash back-off and container views (the pod worker's pure decisions) ---------------------

def _worker(tmp_path, **spec):
    import asyncio
    from types import SimpleNamespace

    from svcnet.agent.runtime.pod import PodWorker

    rt = SimpleNamespace(pods_dir=tmp_path, backoff_initial=10.0, backoff_max=300.0,
                         changes=asyncio.Queue(), node_ip="192.168.1.2")
    pod = {"metadata": {"name": "web", "namespace": "default", "uid": "u1"},
           "spec": dict({"containers": [{"name": "app", "image": "busybox"}]}, **spec)}
    return PodWorker(rt, pod, {})


def test_crash_back_off_follows_the_kubelet(tmp_path):
    w = _worker(tmp_path)
    c = w.app[0]
    c.finished_wall = 100.0
    assert w._backoff(c, now=100.0) == 0          # first crash: restart at once
    c.finished_wall = 101.0                        # crashed again right away
    assert w._backoff(c, now=101.0) == pytest.approx(10.0)
    assert c.waiting == ("CrashLoopBackOff",
                         "back-off 10s restarting failed container=app pod=web_default(u1)")
    assert w._backoff(c, now=106.0) == pytest.approx(5.0)
    assert w._backoff(c, now=111.0) == 0           # waited: restart, next back-off doubles
    delays = []
    t = 111.0
    for _ in range(8):
        t += 1.0                                   # it keeps crashing after a second
        c.finished_wall = t
        wait = w._backoff(c, now=t)
        delays.append(wait)
        t += wait
        assert w._backoff(c, now=t) == 0
    assert delays == [20, 40, 80, 160, 300, 300, 300, 300]
    assert c.waiting[1].startswith("back-off 5m0s ")
    # A container that ran for longer than twice the maximum starts over at 10s.
    c.finished_wall = t + 1000
    assert w._backoff(c, now=t + 1000) == 0
    assert c.backoff == 10.0


def test_container_views(tmp_path):
    w = _worker(tmp_path, initContainers=[{"name": "setup", "image": "busybox"}])
    status = w.status()
    assert status["phase"] == "Pending"
    assert status["initContainerStatuses"][0]["state"] == {"waiting": {"reason":
                                                                      "ContainerCreating"}}
    assert status["containerStatuses"][0]["state"] == {"waiting": {"reason": "PodInitializing"}}
    setup, app = w.init[0], w.app[0]
    setup.terminated = {"exitCode": 0, "reason": "Completed"}
    setup.final = True
    app.running, app.pid, app.started_at, app.started, app.ready = True, 42, "t0", True, True
    status = w.status()
    assert status["phase"] == "Running"
    cs = status["containerStatuses"][0]
    assert cs["state"] == {"running": {"startedAt": "t0"}} and cs["containerID"] == "svcnet://42"
    assert cs["ready"] is True and cs["lastState"] == {}
    # Exited, waiting for its back-off: waiting with the termination as lastState.
    app.running, app.ready = False, False
    app.terminated = {"exitCode": 3, "reason": "Error", "containerID": "svcnet://42"}
    app.waiting = ("CrashLoopBackOff", "back-off 10s ...")
    cs = w.status()["containerStatuses"][0]
    assert cs["state"]["waiting"]["reason"] == "CrashLoopBackOff"
    assert cs["lastState"] == {"terminated": app.terminated}
    # Done for good: terminated.
    app.final, app.waiting = True, None
    cs = w.status()["containerStatuses"][0]
    assert cs["state"] == {"terminated": app.terminated}
