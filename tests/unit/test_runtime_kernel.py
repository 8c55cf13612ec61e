"""The pod runtime on a real kernel. Each test creates a throwaway "node" network namespace and
runs the PodRuntime inside it (`ip netns exec NODE python driver.py`, on uvloop as the agent
does), driven over JSON lines on stdin/stdout. Traffic goes only to pods inside that namespace.
Teardown (always): the runtime's teardown, then every holder and container process seen is
killed by PID, then the namespace is deleted. Needs root and `ip`; skipped otherwise.
"""

from __future__ import annotations

import itertools
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from svcnet.agent.runtime import logs
from svcnet.agent.runtime.containers import alive, proc_start_ticks
from svcnet.agent.runtime.sandbox import find_holders, holder_tag, host_if_name

POD_CIDR = "10.244.0.0/24"
GATEWAY = "10.244.0.1"
NODE_IP = "192.168.77.2"
AGNHOST = "registry.k8s.io/e2e-test-images/agnhost:2.53"
REPO = Path(__file__).resolve().parents[2]


def _skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root (network namespaces, veths, setns)"
    if shutil.which("ip") is None:
        return "`ip` (iproute2) is not installed"
    return None


pytestmark = pytest.mark.skipif(_skip_reason() is not None, reason=_skip_reason() or "")

DRIVER = textwrap.dedent('''
    import asyncio, faulthandler, json, logging, signal, sys, traceback
    from pathlib import Path

    faulthandler.register(signal.SIGUSR1, all_threads=True)  # stacks on demand, when stuck

    import uvloop

    from svcnet.agent.runtime import PodRuntime


    async def main():
        logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                            format="%(asctime)s %(name)s %(message)s")
        loop = asyncio.get_running_loop()
        rt = None
        events = []
        while True:
            line = await loop.run_in_executor(None, sys.stdin.readline)
            if not line:
                return
            req = json.loads(line)
            op = req["op"]
            try:
                out = None
                if op == "start":
                    rt = PodRuntime(Path(req["data_dir"]), "node-1", req["node_ip"],
                                    req["pod_cidr"], backoff_initial=req["backoff_initial"])
                    rt.on_event = lambda pod, c, reason, message: events.append(
                        [pod["metadata"]["name"], c, reason, message])
                    await rt.start()
                elif op == "events":
                    out = events
                elif op == "route":
                    # a fake service proxy: the pod is routed for `seconds` after it is first
                    # asked about (None: not routed at all); a sync asked for is done at once
                    routed = {"until": None, "syncs": 0}
                    def still_routed(ip, namespace, seconds=req["seconds"]):
                        if seconds is None:
                            return False
                        if routed["until"] is None:
                            routed["until"] = loop.time() + seconds
                        return loop.time() < routed["until"]
                    rt.still_routed = still_routed
                    rt.proxy_syncs = lambda: routed["syncs"]
                    rt.proxy_kick = lambda: routed.update(syncs=routed["syncs"] + 1)
                elif op == "sync":
                    await rt.sync_pod(req["pod"], req.get("env") or {})
                    out = rt.pod_status(req["pod"]["metadata"]["uid"])
                elif op == "status":
                    out = rt.pod_status(req["uid"])
                elif op == "timings":
                    out = rt.pod_timings(req["uid"])
                elif op == "kill":
                    await rt.kill_pod(req["uid"], req["grace"])
                    out = rt.pod_status(req["uid"])
                elif op == "kill_async":
                    asyncio.ensure_future(rt.kill_pod(req["uid"], req["grace"]))
                elif op == "running":
                    out = sorted(rt.running_uids())
                elif op == "log":
                    p = rt.log_file(req["uid"], req["container"], req.get("previous", False))
                    out = str(p) if p else None
                elif op == "stop":
                    await rt.stop()
                elif op == "teardown":
                    await rt.teardown()
                elif op == "exit":
                    print(json.dumps({"ok": True, "result": None}), flush=True)
                    return
                else:
                    raise ValueError(f"unknown op {op}")
                print(json.dumps({"ok": True, "result": out}), flush=True)
            except Exception as e:
                traceback.print_exc()
                print(json.dumps({"ok": False, "error": f"{type(e).__name__}: {e}"}), flush=True)


    uvloop.install()
    asyncio.run(main())
''')

_names = itertools.count()


class Driver:
    """A PodRuntime in a process inside the node namespace."""

    def __init__(self, node: "Node"):
        self.node = node
        self.stderr = open(node.tmp / f"driver-{next(_names)}.log", "w")
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", node.name, sys.executable, str(node.driver_file)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr, text=True,
            cwd=REPO)

    def call(self, op: str, timeout: float = 30.0, **req):
        self.proc.stdin.write(json.dumps(dict(req, op=op)) + "\n")
        self.proc.stdin.flush()
        if not select.select([self.proc.stdout], [], [], timeout)[0]:
            self.proc.send_signal(signal.SIGUSR1)  # `ip netns exec` execs: this is python
            time.sleep(0.5)
            raise AssertionError(f"driver did not answer {op} in {timeout}s; its log:\n"
                                 f"{self.node.logs()}")
        line = self.proc.stdout.readline()
        if not line:
            raise AssertionError(f"driver died; its log:\n{self.node.logs()}")
        reply = json.loads(line)
        if not reply["ok"]:
            raise AssertionError(f"{op}: {reply['error']}\n{self.node.logs()}")
        result = reply["result"]
        if op in ("sync", "status", "kill") and result:
            self.node.remember(result)
        return result

    def start(self, backoff_initial: float = 10.0) -> "Driver":
        self.call("start", data_dir=str(self.node.data_dir), node_ip=NODE_IP, pod_cidr=POD_CIDR,
                  backoff_initial=backoff_initial)
        return self

    def wait(self, uid: str, predicate, timeout: float = 10.0, what: str = "condition") -> dict:
        deadline = time.monotonic() + timeout
        status = None
        while time.monotonic() < deadline:
            status = self.call("status", uid=uid)
            if status and predicate(status):
                return status
            time.sleep(0.01)
        raise AssertionError(f"timed out waiting for {what}; last status:\n"
                             f"{json.dumps(status, indent=1)}\n{self.node.logs()}")

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.call("exit")
            except (AssertionError, OSError, ValueError):
                pass
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.stderr.close()


class Node:
    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.name = f"svr-{os.getpid()}-{next(_names)}"
        self.data_dir = tmp / "data"
        self.driver_file = tmp / "driver.py"
        self.driver_file.write_text(DRIVER)
        self.drivers: list[Driver] = []
        self.pids: dict[int, int] = {}  # container processes seen: pid -> start ticks

    def create(self) -> None:
        r = subprocess.run(["ip", "netns", "add", self.name], capture_output=True, text=True)
        if r.returncode != 0:
            pytest.skip(f"cannot create a network namespace: {r.stderr.strip()}")
        self.ip("link", "set", "lo", "up")

    def ip(self, *args: str) -> str:
        return subprocess.run(["ip", "-n", self.name, *args], capture_output=True, text=True,
                              check=True).stdout

    def exec(self, *argv: str, timeout: float = 10) -> subprocess.CompletedProcess:
        return subprocess.run(["ip", "netns", "exec", self.name, *argv], capture_output=True,
                              text=True, timeout=timeout)

    def http(self, url: str) -> str:
        code = ("import sys, urllib.request; "
                "sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=3).read().decode())")
        r = self.exec(sys.executable, "-c", code, url)
        assert r.returncode == 0, r.stderr
        return r.stdout

    def runtime(self, backoff_initial: float = 10.0) -> Driver:
        d = Driver(self)
        self.drivers.append(d)
        return d.start(backoff_initial)

    def remember(self, status: dict) -> None:
        for cs in status.get("containerStatuses", []) + status.get("initContainerStatuses", []):
            cid = cs.get("containerID") or ""
            if cid.startswith("svcnet://"):
                pid = int(cid.split("//")[1])
                ticks = proc_start_ticks(pid)
                if ticks is not None and pid not in self.pids:
                    self.pids[pid] = ticks

    def logs(self) -> str:
        return "\n".join(f.read_text()[-4000:] for f in sorted(self.tmp.glob("driver-*.log")))

    def destroy(self) -> None:
        try:
            live = [d for d in self.drivers if d.proc.poll() is None]
            if live:
                try:
                    live[-1].call("teardown")
                except AssertionError:
                    pass
            elif self.data_dir.exists():
                d = Driver(self)
                self.drivers.append(d)
                try:
                    d.call("start", data_dir=str(self.data_dir), node_ip=NODE_IP,
                           pod_cidr=POD_CIDR, backoff_initial=10.0)
                    d.call("teardown")
                except AssertionError:
                    pass
        finally:
            for d in self.drivers:
                d.close()
            # Safety net: anything still alive that this test started, by PID.
            for pid, ticks in self.pids.items():
                if alive(pid, ticks):
                    os.killpg(pid, signal.SIGKILL)
            for pid in find_holders(holder_tag(self.data_dir)):
                os.kill(pid, signal.SIGKILL)
            subprocess.run(["ip", "netns", "del", self.name], capture_output=True)


@pytest.fixture
def node(tmp_path):
    n = Node(tmp_path)
    n.create()
    try:
        yield n
    finally:
        n.destroy()


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def pod(name: str, containers: list[dict], uid: str | None = None, **spec) -> dict:
    return {"metadata": {"name": name, "namespace": "default", "uid": uid or f"uid-{name}"},
            "spec": dict({"nodeName": "node-1", "containers": containers}, **spec)}


def netexec(**extra) -> dict:
    c = dict({"name": "netexec", "image": AGNHOST, "args": ["netexec", "--http-port=8080"],
              "ports": [{"name": "http", "containerPort": 8080}],
              "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http"}}}, **extra)
    return {k: v for k, v in c.items() if v is not None}


def condition(status: dict, type_: str) -> str | None:
    return next((c["status"] for c in status.get("conditions", []) if c["type"] == type_), None)


def ready(status: dict) -> bool:
    return condition(status, "Ready") == "True"


def container_pid(status: dict, i: int = 0) -> int:
    return int(status["containerStatuses"][i]["containerID"].split("//")[1])


def log_text(path: str, **options) -> str:
    """A container's log file as `kubectl logs` shows it."""
    return logs.start(Path(path).read_bytes(), logs.LogOptions(**options))[0].decode()


def proc_ids(pid: int) -> dict[str, list[int]]:
    ids = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(("Uid:", "Gid:")):
            ids[line[:3]] = [int(x) for x in line.split()[1:]]
    return ids


def links(node: Node) -> set[str]:
    return {line.split()[0].split("@")[0] for line in node.ip("-br", "link").splitlines()}


# ---- tests --------------------------------------------------------------------------------------

def test_netexec_pod_gets_an_address_and_answers_from_the_node(node):
    rt = node.runtime()
    t0 = time.monotonic()
    rt.call("sync", pod=pod("web", [netexec()]), env={"WEB_SERVICE_HOST": "10.96.0.5"})
    status = rt.wait("uid-web", ready, what="Ready")
    to_ready = (time.monotonic() - t0) * 1000
    timings = rt.call("timings", uid="uid-web")
    print(f"\nsync_pod -> Ready {to_ready:.0f} ms (as seen by polling); sandbox setup "
          f"{timings['sandbox_ms']:.1f} ms, container start {timings['container_ms:netexec']:.1f} ms")

    assert status["phase"] == "Running"
    ip = status["podIP"]
    assert ip.startswith("10.244.0.") and ip != GATEWAY
    assert status["podIPs"] == [{"ip": ip}] and status["hostIP"] == NODE_IP
    (cs,) = status["containerStatuses"]
    assert cs["ready"] and cs["started"] and cs["restartCount"] == 0 and "running" in cs["state"]

    # From the node namespace: the pod's own name, and the node's bridge address as client.
    assert node.http(f"http://{ip}:8080/hostname") == "web"
    assert node.http(f"http://{ip}:8080/clientip").startswith(f"{GATEWAY}:")

    # The process: unprivileged by default, in the pod's namespaces with the pod's files.
    pid = container_pid(status)
    assert proc_ids(pid) == {"Uid": [65534] * 4, "Gid": [65534] * 4}
    # preexec ran (the agent runs on uvloop): the pod's namespaces, not the node's (the driver's).
    for ns in ("net", "uts", "mnt"):
        assert os.readlink(f"/proc/{pid}/ns/{ns}") != os.readlink(f"/proc/{rt.proc.pid}/ns/{ns}")
    assert os.getsid(pid) == pid
    root = Path(f"/proc/{pid}/root/etc")
    assert (root / "resolv.conf").read_text() == (
        "nameserver 10.96.0.10\nsearch default.svc.cluster.local svc.cluster.local "
        "cluster.local\noptions ndots:5\n")
    assert f"{ip}\tweb\n" in (root / "hosts").read_text()
    assert (root / "hostname").read_text() == "web\n"
    environ = dict(item.split("=", 1) for item in
                   Path(f"/proc/{pid}/environ").read_text().split("\0") if "=" in item)
    assert environ["WEB_SERVICE_HOST"] == "10.96.0.5" and environ["HOSTNAME"] == "web"

    # The node: a bridge with the gateway, a hairpin veth, the service route.
    assert f"{GATEWAY}/24" in node.ip("-br", "addr", "show", "svcnet0")
    host_if = host_if_name("uid-web")
    assert host_if in links(node)
    assert "hairpin on" in node.ip("-d", "link", "show", host_if)
    assert "10.96.0.0/12 dev svcnet0" in node.ip("route")

    log = rt.call("log", uid="uid-web", container="netexec")
    assert log and Path(log).name == "0.log"


def test_exec_probe_runs_inside_the_pod(node):
    rt = node.runtime()
    check = ("grep -q 'search default.svc.cluster.local' /etc/resolv.conf && "
             "test \"$(hostname)\" = box && test \"$(id -u)\" = 1000")
    spec = pod("box", [{"name": "sh", "image": "busybox",
                        "command": ["sh", "-c", "while true; do sleep 1; done"],
                        "securityContext": {"runAsUser": 1000},
                        "readinessProbe": {"exec": {"command": ["sh", "-c", check]},
                                           "periodSeconds": 1}}])
    rt.call("sync", pod=spec)
    status = rt.wait("uid-box", ready, what="Ready through an exec probe")
    assert proc_ids(container_pid(status))["Uid"] == [1000] * 4


def test_crashing_container_goes_to_crash_loop_back_off(node):
    rt = node.runtime(backoff_initial=0.5)
    rt.call("sync", pod=pod("crash", [{"name": "crash", "image": "busybox",
                                       "command": ["sh", "-c", "echo boom; exit 3"]}]))

    def looping(s):
        cs = s["containerStatuses"][0]
        return (cs["restartCount"] >= 2
                and cs["state"].get("waiting", {}).get("reason") == "CrashLoopBackOff")

    status = rt.wait("uid-crash", looping, timeout=15, what="CrashLoopBackOff")
    cs = status["containerStatuses"][0]
    assert cs["lastState"]["terminated"]["exitCode"] == 3
    assert cs["lastState"]["terminated"]["reason"] == "Error"
    assert cs["state"]["waiting"]["message"].startswith("back-off ")
    assert cs["state"]["waiting"]["message"].endswith(
        "restarting failed container=crash pod=crash_default(uid-crash)")
    assert status["phase"] == "Running"  # restartPolicy Always: always on its way back
    log = rt.call("log", uid="uid-crash", container="crash")
    previous = rt.call("log", uid="uid-crash", container="crash", previous=True)
    assert log_text(previous) == "boom\n"  # (that instance exited long ago: all copied)
    assert Path(log).name == f"{cs['restartCount']}.log"
    later = rt.wait("uid-crash", lambda s: s["containerStatuses"][0]["restartCount"] >= 3,
                    timeout=15, what="another restart")
    assert later["containerStatuses"][0]["restartCount"] >= 3


def test_restart_policy_never_ends_failed(node):
    rt = node.runtime()
    rt.call("sync", pod=pod("once", [{"name": "once", "image": "busybox",
                                      "command": ["sh", "-c", "exit 3"]}],
                            restartPolicy="Never"))
    status = rt.wait("uid-once", lambda s: s["phase"] == "Failed", what="phase Failed")
    term = status["containerStatuses"][0]["state"]["terminated"]
    assert term["exitCode"] == 3 and term["reason"] == "Error"
    assert status["containerStatuses"][0]["restartCount"] == 0
    assert "uid-once" not in rt.call("running")
    # A terminal pod gives its network back (right after it became terminal).
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline and (
            host_if_name("uid-once") in links(node)
            or "uid-once" in find_holders(holder_tag(node.data_dir)).values()):
        time.sleep(0.01)
    assert host_if_name("uid-once") not in links(node)
    assert "uid-once" not in find_holders(holder_tag(node.data_dir)).values()
    assert rt.call("status", uid="uid-once")["podIP"] == status["podIP"]  # still reported


def test_unknown_image_without_command_waits_with_a_clear_reason(node):
    rt = node.runtime()
    rt.call("sync", pod=pod("ghost", [{"name": "app", "image": "example.com/shop/ghost:1.0"}]))
    status = rt.wait("uid-ghost", lambda s: "waiting" in s["containerStatuses"][0]["state"]
                     and s["containerStatuses"][0]["state"]["waiting"]["reason"]
                     == "ErrImageNeverPull", what="the waiting reason")
    waiting = status["containerStatuses"][0]["state"]["waiting"]
    assert waiting["message"] == ('Container image "example.com/shop/ghost:1.0" is not a '
                                  'built-in svcnet image and the container has no command: '
                                  'svcnet cannot run it')
    assert status["phase"] == "Pending"
    assert condition(status, "Ready") == "False"


def test_kill_pod_is_graceful_and_leaves_nothing(node):
    rt = node.runtime()
    script = "trap 'echo TERM; exit 0' TERM; while true; do sleep 0.1; done"
    rt.call("sync", pod=pod("calm", [{"name": "calm", "image": "busybox",
                                      "command": ["sh", "-c", script]}]))
    status = rt.wait("uid-calm", ready, what="Ready")
    pid = container_pid(status)
    holders = [p for p, u in find_holders(holder_tag(node.data_dir)).items() if u == "uid-calm"]
    assert len(holders) == 1
    assert host_if_name("uid-calm") in links(node)

    t0 = time.monotonic()
    final = rt.call("kill", uid="uid-calm", grace=10)
    took = time.monotonic() - t0
    term = final["containerStatuses"][0]["state"]["terminated"]
    assert term["exitCode"] == 0 and term["reason"] == "Completed"  # the trap ran: SIGTERM
    assert took < 5
    assert final["phase"] == "Succeeded"
    assert not Path(f"/proc/{pid}").exists() or proc_start_ticks(pid) is None
    assert not Path(f"/proc/{holders[0]}").exists() or proc_start_ticks(holders[0]) is None
    assert links(node) == {"lo", "svcnet0"}
    assert rt.call("running") == []
    assert not list((node.data_dir / "pods").glob("*_calm_*"))


def test_a_process_that_left_its_containers_process_group_dies_with_the_pod(node):
    """A daemon (`setsid`) escapes the container's process-group kill; removing the sandbox
    kills what is still in the pod's network namespace."""
    rt = node.runtime()
    rt.call("sync", pod=pod("daemon", [{"name": "c", "image": "busybox", "command": [
        "sh", "-c", "setsid sleep 1000 & exec sleep 1000"]}]))
    status = rt.wait("uid-daemon", ready, what="Ready")
    netns = os.readlink(f"/proc/{container_pid(status)}/ns/net")

    def members() -> list[int]:
        out = []
        for d in Path("/proc").iterdir():
            try:
                if d.name.isdigit() and os.readlink(d / "ns" / "net") == netns \
                        and b"sleep" in (d / "cmdline").read_bytes():
                    out.append(int(d.name))
            except OSError:
                continue
        return out

    escaped = wait_for(lambda: [p for p in members() if os.getpgid(p) != container_pid(status)],
                       10, "the setsid'd process")
    rt.call("kill", uid="uid-daemon", grace=2)
    wait_for(lambda: all(proc_start_ticks(p) is None for p in escaped), 10,
             "the escaped process to be killed with the pod")


def test_adoption_after_an_agent_restart_keeps_ip_and_process(node):
    first = node.runtime()
    first.call("sync", pod=pod("web", [netexec()]))
    before = first.wait("uid-web", ready, what="Ready")
    ip, pid = before["podIP"], container_pid(before)
    first.call("stop")
    first.close()  # the agent is gone; its pods are not
    assert node.http(f"http://{ip}:8080/hostname") == "web"
    # ... and neither is their logging (the log writer is the container's, not the agent's)
    log = ""
    deadline = time.monotonic() + 10
    while "GET /hostname" not in log and time.monotonic() < deadline:
        time.sleep(0.05)
        log = log_text(next((node.data_dir / "pods").glob("*_web_*/netexec/0.log")),
                       timestamps=True)
    line = next(x for x in log.splitlines() if x.endswith("GET /hostname"))
    assert logs.parse_time(line.split(" ", 1)[0]) >= time.time() - 30

    second = node.runtime()
    after = second.call("status", uid="uid-web")
    assert after["podIP"] == ip
    assert container_pid(after) == pid
    assert after["containerStatuses"][0]["restartCount"] == 0
    assert ready(after)  # published results are restored: no readiness blip
    again = second.call("sync", pod=pod("web", [netexec()]))
    assert container_pid(again) == pid and again["podIP"] == ip
    assert second.call("running") == ["uid-web"]
    assert node.http(f"http://{ip}:8080/hostname") == "web"

    # The adopted container is still supervised: when it dies it is restarted.
    os.kill(pid, signal.SIGKILL)
    restarted = second.wait("uid-web", lambda s: s["containerStatuses"][0]["restartCount"] == 1
                            and ready(s), what="a restart of the adopted container")
    assert container_pid(restarted) != pid and restarted["podIP"] == ip
    assert node.http(f"http://{ip}:8080/hostname") == "web"


def test_init_containers_run_first_and_liveness_failures_restart(node):
    rt = node.runtime(backoff_initial=0.2)
    spec = pod("lively", [netexec(livenessProbe={"tcpSocket": {"port": 9999}, "periodSeconds": 1,
                                                 "failureThreshold": 1},
                                  readinessProbe=None)],
               initContainers=[{"name": "setup", "image": "busybox",
                                "command": ["sh", "-c", "echo init done"]}],
               terminationGracePeriodSeconds=1)
    rt.call("sync", pod=spec)
    status = rt.wait("uid-lively", lambda s: s["containerStatuses"][0]["restartCount"] >= 1,
                     timeout=15, what="a restart after a liveness failure")
    assert condition(status, "Initialized") == "True"
    (init,) = status["initContainerStatuses"]
    assert init["state"]["terminated"]["exitCode"] == 0
    assert init["state"]["terminated"]["reason"] == "Completed"
    last = status["containerStatuses"][0]["lastState"]["terminated"]
    assert last["reason"] == "Error" and last["exitCode"] in (137, 143)
    assert "failed liveness probe" in last["message"]
    # (its log writer may still be copying the last output as the exit is seen)
    setup_log = rt.call("log", uid="uid-lively", container="setup")
    deadline = time.monotonic() + 10
    while not log_text(setup_log) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert log_text(setup_log) == "init done\n"


def test_host_network_pod_runs_in_the_node_namespace(node):
    rt = node.runtime()
    rt.call("sync", pod=pod("hostnet", [{"name": "sh", "image": "busybox",
                                         "command": ["sleep", "1000"]}], hostNetwork=True))
    status = rt.wait("uid-hostnet", ready, what="Ready")
    assert status["podIP"] == NODE_IP
    pid = container_pid(status)
    node_ns = os.readlink(f"/proc/{rt.proc.pid}/ns/net")
    assert os.readlink(f"/proc/{pid}/ns/net") == node_ns
    assert host_if_name("uid-hostnet") not in links(node)
    rt.call("kill", uid="uid-hostnet", grace=2)


# ---- lifecycle hooks ----------------------------------------------------------------------------

def stamp_script(path: Path, what: str) -> str:
    return f"echo {what} $(date +%s.%N) >> {path}"


def as_root(c: dict) -> dict:
    return dict(c, securityContext={"runAsUser": 0})  # to write into the test's private tmp dir


def test_pre_stop_runs_before_sigterm_within_the_grace_period(node, tmp_path):
    marks = tmp_path / "marks"
    rt = node.runtime()
    script = f"trap '{stamp_script(marks, 'term')}; exit 0' TERM; while true; do sleep 0.05; done"
    rt.call("sync", pod=pod("hooked", [as_root({
        "name": "c", "image": "busybox", "command": ["sh", "-c", script],
        "lifecycle": {"preStop": {"exec": {"command": ["sh", "-c", "sleep 0.5; " + stamp_script(
            marks, "prestop")]}}}})]))
    rt.wait("uid-hooked", ready, what="Ready")
    final = rt.call("kill", uid="uid-hooked", grace=10)
    assert final["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 0
    lines = [line.split() for line in marks.read_text().splitlines()]
    assert [what for what, _ in lines] == ["prestop", "term"]
    assert float(lines[0][1]) <= float(lines[1][1])


def test_pre_stop_sleep_action_and_its_time_counts_against_the_grace(node, tmp_path):
    marks = tmp_path / "marks"
    rt = node.runtime()
    # SIGTERM is ignored: only SIGKILL ends it, at the end of the grace period (3 s), which
    # includes the 1 s preStop sleep (the kubelet's minimum of 2 s after it does not apply).
    rt.call("sync", pod=pod("sleepy", [as_root({
        "name": "c", "image": "busybox",
        "command": ["sh", "-c", f"trap '{stamp_script(marks, 'term')}' TERM; "
                                "while true; do sleep 0.05; done"],
        "lifecycle": {"preStop": {"sleep": {"seconds": 1}}}})]))
    rt.wait("uid-sleepy", ready, what="Ready")
    t0 = time.monotonic()
    final = rt.call("kill", uid="uid-sleepy", grace=3)
    took = time.monotonic() - t0
    term = final["containerStatuses"][0]["state"]["terminated"]
    assert term["exitCode"] == 137  # SIGKILL
    assert 2.8 <= took < 6, took
    assert marks.read_text().startswith("term ")  # SIGTERM came (after the sleep)


def test_failed_post_start_hook_kills_the_container_with_an_event(node):
    rt = node.runtime(backoff_initial=0.2)
    rt.call("sync", pod=pod("poststart", [{
        "name": "c", "image": "busybox", "command": ["sleep", "1000"],
        "lifecycle": {"postStart": {"exec": {"command": ["sh", "-c", "echo nope; exit 3"]}},
                      "preStop": {"httpGet": {"port": 9}}}}], terminationGracePeriodSeconds=2))
    status = rt.wait("uid-poststart", lambda s: s["containerStatuses"][0]["restartCount"] >= 1,
                     timeout=20, what="a restart after the postStart hook failed")
    last = status["containerStatuses"][0]["lastState"]["terminated"]
    assert last["exitCode"] in (137, 143)
    expected = ('Exec lifecycle hook ([sh -c echo nope; exit 3]) for Container "c" in Pod '
                '"poststart_default(uid-poststart)" failed - error: command \'sh -c echo nope; '
                'exit 3\' exited with 3: , message: "nope\\n"')
    assert last["message"] == expected
    events = rt.call("events")
    assert ["poststart", "c", "FailedPostStartHook", expected] in events
    # the kill ran the preStop hook too, and its failure (nothing on port 9) is an event
    assert any(e[2] == "FailedPreStopHook" and e[3].startswith(
        'HTTP lifecycle hook () for Container "c" in Pod "poststart_default(uid-poststart)" '
        'failed - error: ') for e in events)


def test_post_start_hook_holds_the_container_in_creating_until_it_succeeds(node):
    rt = node.runtime()
    rt.call("sync", pod=pod("slowstart", [dict(netexec(), lifecycle={
        "postStart": {"exec": {"command": ["sh", "-c", "sleep 1"]}}})]))
    first = rt.wait("uid-slowstart", lambda s: s["containerStatuses"][0]["state"].get("waiting"),
                    what="the container waiting on its postStart hook")
    assert first["containerStatuses"][0]["state"]["waiting"]["reason"] == "ContainerCreating"
    assert not ready(first)
    status = rt.wait("uid-slowstart", ready, timeout=15, what="Ready after the hook")
    assert "running" in status["containerStatuses"][0]["state"]
    assert rt.call("events") == []


# ---- the termination chain ----------------------------------------------------------------------

def test_kill_waits_until_the_proxy_no_longer_routes_the_pod_before_sigterm(node, tmp_path):
    marks = tmp_path / "marks"
    rt = node.runtime()
    script = f"trap '{stamp_script(marks, 'term')}; exit 0' TERM; while true; do sleep 0.05; done"

    def sigterm_after(name: str, routed_seconds: float | None, grace: int) -> float:
        """Seconds from the kill to SIGTERM, with the (fake) proxy routing the pod so long."""
        marks.unlink(missing_ok=True)
        rt.call("sync", pod=pod(name, [as_root({"name": "c", "image": "busybox",
                                                "command": ["sh", "-c", script]})]))
        rt.wait(f"uid-{name}", ready, what="Ready")
        rt.call("route", seconds=routed_seconds)
        t0 = time.time()
        rt.call("kill", uid=f"uid-{name}", grace=grace)
        return float(marks.read_text().split()[1]) - t0

    took = sigterm_after("routed", 2.0, grace=10)
    assert 1.9 <= took < 5, took  # SIGTERM only once the proxy let go
    # A pod the proxy does not route is stopped at once; one it never lets go of, after the
    # bound (min(grace, 5 s)), within its grace period.
    assert sigterm_after("unrouted", None, grace=10) < 1.5  # (well under the 2 s above)
    assert 0.9 <= sigterm_after("stuck", 3600, grace=1) < 3


def test_an_agent_stopping_during_a_pods_termination_leaves_it_to_the_next_one(node, tmp_path):
    marks = tmp_path / "marks"
    first = node.runtime()
    script = f"trap '{stamp_script(marks, 'term')}; exit 0' TERM; while true; do sleep 0.05; done"
    spec = pod("leaving", [as_root({"name": "c", "image": "busybox", "command": ["sh", "-c", script],
                                    "lifecycle": {"preStop": {"sleep": {"seconds": 4}}}})],
               terminationGracePeriodSeconds=10)
    first.call("sync", pod=spec)
    pid = container_pid(first.wait("uid-leaving", ready, what="Ready"))
    first.call("kill_async", uid="uid-leaving", grace=10)
    t0 = time.monotonic()
    first.call("stop")  # in the middle of the preStop sleep: no waiting for it
    assert time.monotonic() - t0 < 3
    first.close()
    assert alive(pid, node.pids[pid]) and not marks.exists()  # not stopped, not signalled

    second = node.runtime()
    assert container_pid(second.call("status", uid="uid-leaving")) == pid
    t0 = time.monotonic()
    final = second.call("kill", uid="uid-leaving", grace=10)  # (the agent sees it deleted)
    assert 3.5 <= time.monotonic() - t0 < 9  # the preStop hook ran again, in full
    assert final["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 0
    assert marks.read_text().startswith("term ")
    assert second.call("running") == []
