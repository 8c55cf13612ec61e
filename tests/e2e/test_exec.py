"""`kubectl exec` and the Python client's `stream()` into svcnet pods, end to end.

One real single-node cluster in namespaces this module creates (prefix `svx...`), driven by the
real kubectl (WebSocket v5.channel.k8s.io) and the official Python client (v4.channel.k8s.io),
both run inside the node's namespace. The commands run are the host's binaries, as the pods'
containers are.
"""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import struct
import subprocess
import sys
import termios
import fcntl
import time

import pytest

from svcnet.agent.runtime.containers import proc_start_ticks, processes_in_netns
from tests.e2e.cluster import poll, running_cluster, unique_prefix

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces")

MANIFEST = """
apiVersion: v1
kind: Pod
metadata:
  name: backend
  labels: {app: backend}
spec:
  containers:
  - name: netexec
    image: registry.k8s.io/e2e-test-images/agnhost:2.53
    args: [netexec, --http-port=8080, --udp-port=-1]
    readinessProbe:
      httpGet: {path: /hostname, port: 8080}
      periodSeconds: 1
---
apiVersion: v1
kind: Service
metadata:
  name: backend
spec:
  selector: {app: backend}
  ports:
  - {name: http, port: 80, targetPort: 8080}
---
apiVersion: v1
kind: Pod
metadata:
  name: client
  annotations: {kubectl.kubernetes.io/default-container: main}
spec:
  containers:
  - name: side
    image: busybox
    command: [sleep, "3600"]
    workingDir: /tmp
    env: [{name: GREETING, value: hello}]
    securityContext: {runAsUser: 1234, runAsGroup: 2345}
  - name: main
    image: busybox
    command: [sleep, "3600"]
---
apiVersion: v1
kind: Pod
metadata:
  name: starting
spec:
  initContainers:
  - {name: wait, image: busybox, command: [sleep, "3600"]}
  containers:
  - {name: app, image: busybox, command: [sleep, "3600"]}
---
apiVersion: v1
kind: Pod
metadata:
  name: elsewhere
spec:
  nodeName: node2
  containers:
  - {name: app, image: busybox, command: [sleep, "3600"]}
"""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with running_cluster(unique_prefix("x"), tmp_path_factory.mktemp("exec") / "node") as c:
        c.kubectl("apply", "-f", "-", input=MANIFEST)
        poll(lambda: c.kubectl("wait", "--for=condition=Ready", "pod/backend", "pod/client",
                               "--timeout=1s", check=False).count("condition met") == 2,
             90, "the pods to be Ready")
        poll(lambda: c.json("get", "pod", "starting")["status"].get("initContainerStatuses",
                                                                  [{}])[0].get("state", {})
             .get("running"), 60, "the init container to run")
        yield c


def kubectl(cluster, *args: str, input: str | None = None) -> subprocess.CompletedProcess:
    return cluster.world.run("node", "kubectl", f"--kubeconfig={cluster.kubeconfig}",
                             f"--cache-dir={cluster.data / 'kubectl-cache'}", *args, input=input,
                             timeout=30)


def test_stdout_and_exit_code(cluster):
    r = kubectl(cluster, "exec", "client", "-c", "main", "--", "echo", "hello world")
    assert (r.returncode, r.stdout) == (0, "hello world\n"), r.stderr
    r = kubectl(cluster, "exec", "client", "-c", "main", "--", "sh", "-c", "exit 3")
    assert r.returncode == 3
    assert "command terminated with exit code 3" in r.stderr
    r = kubectl(cluster, "exec", "client", "-c", "main", "--", "seq", "300000")
    assert r.returncode == 0 and r.stdout == "".join(f"{i}\n" for i in range(1, 300001))


def test_stderr_is_separate(cluster):
    r = kubectl(cluster, "exec", "client", "-c", "main", "--", "sh", "-c", "echo out; echo err >&2")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "out\n"
    assert r.stderr == "err\n"


def test_stdin_is_piped_and_closed(cluster):
    r = kubectl(cluster, "exec", "-i", "client", "-c", "main", "--", "sh", "-c", "cat; echo done",
                input="hi\nthere\n")
    assert (r.returncode, r.stdout) == (0, "hi\nthere\ndone\n"), r.stderr
    r = kubectl(cluster, "exec", "client", "-c", "main", "--", "sh", "-c", "cat; echo eof")
    assert (r.returncode, r.stdout) == (0, "eof\n"), r.stderr  # no -i: /dev/null


def test_runs_in_the_pod_as_the_container(cluster):
    resolv = kubectl(cluster, "exec", "client", "-c", "main", "--", "cat", "/etc/resolv.conf").stdout
    assert "nameserver 10.96.0.10" in resolv
    assert "search default.svc.cluster.local svc.cluster.local cluster.local" in resolv
    assert kubectl(cluster, "exec", "client", "-c", "main", "--", "hostname").stdout == "client\n"
    ip = cluster.pod_ip("client")
    addrs = kubectl(cluster, "exec", "client", "-c", "main", "--", "ip", "-4", "-o", "addr").stdout
    assert f"inet {ip}/" in addrs  # the pod's network namespace
    out = kubectl(cluster, "exec", "client", "-c", "side", "--", "sh", "-c",
                  'id -u; id -g; id -G; pwd; echo "$GREETING"; echo "$BACKEND_SERVICE_HOST"').stdout
    svc_ip = cluster.json("get", "svc", "backend")["spec"]["clusterIP"]
    assert out.split("\n") == ["1234", "2345", "2345", "/tmp", "hello", svc_ip, ""]


def test_container_choice(cluster):
    # kubectl picks the default-container annotation ("main", unprivileged by default) ...
    r = kubectl(cluster, "exec", "client", "--", "id", "-u")
    assert (r.returncode, r.stdout) == (0, "65534\n"), r.stderr
    # ... while the API, asked without a container, wants one named
    r = kubectl(cluster, "get", "--raw", "/api/v1/namespaces/default/pods/client/exec?command=id&stdout=1")
    assert r.returncode != 0
    assert "a container name must be specified for pod client, choose one of: [side main]" in r.stderr


def test_errors(cluster):
    r = kubectl(cluster, "exec", "nosuch", "--", "true")
    assert r.returncode == 1 and 'pods "nosuch" not found' in r.stderr
    r = kubectl(cluster, "exec", "client", "-c", "nosuch", "--", "true")
    assert r.returncode == 1 and "container nosuch is not valid for pod client" in r.stderr
    r = kubectl(cluster, "exec", "starting", "-c", "app", "--", "true")
    assert r.returncode == 1
    assert 'unable to upgrade connection: container not found ("app")' in r.stderr
    r = kubectl(cluster, "exec", "client", "-c", "main", "--", "no-such-binary")
    assert r.returncode == 1 and "executable file not found in $PATH" in r.stderr
    # the init container that runs can be exec'd into
    r = kubectl(cluster, "exec", "starting", "-c", "wait", "--", "echo", "init")
    assert (r.returncode, r.stdout) == (0, "init\n"), r.stderr


def _raw(cluster, method: str, path: str, *headers: str) -> tuple[int, dict]:
    """(HTTP status, Status body) of a request sent with curl from the node."""
    token = (cluster.data / "admin-token").read_text().strip()
    r = cluster.world.run("node", "curl", "-s", "--cacert", str(cluster.data / "pki" / "ca.crt"),
                          "-o", "-", "-w", "\n%{http_code}", "-X", method,
                          "-H", f"Authorization: Bearer {token}",
                          *(a for h in headers for a in ("-H", h)),
                          f"https://127.0.0.1:6443{path}", timeout=20)
    body, _, code = r.stdout.rpartition("\n")
    return int(code), json.loads(body)


def test_what_is_not_served(cluster):
    path = "/api/v1/namespaces/default/pods/client/exec?container=main&command=true&stdout=true"
    code, status = _raw(cluster, "POST", path, "Connection: Upgrade", "Upgrade: SPDY/3.1",
                        "X-Stream-Protocol-Version: v4.channel.k8s.io")
    assert code == 400 and "over WebSocket only" in status["message"], status
    assert "SPDY/3.1 upgrade is not supported" in status["message"]
    code, status = _raw(cluster, "GET", path)
    assert (code, status["message"]) == (400, "Upgrade request required")
    code, status = _raw(cluster, "GET", path, "Connection: Upgrade", "Upgrade: websocket",
                        "Sec-WebSocket-Version: 13", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
                        "Sec-WebSocket-Protocol: v3.channel.k8s.io")
    assert code == 400 and "requested protocol(s) are not supported: [v3.channel.k8s.io]" \
        in status["message"], status
    code, status = _raw(cluster, "GET", path.replace("stdout=true", "stdout=false"))
    assert (code, status["message"]) == (400, "you must specify at least 1 of stdin, stdout, stderr")
    code, status = _raw(cluster, "PUT", path)
    assert code == 405
    # a pod of another node: this server runs only its own node's pods
    r = kubectl(cluster, "exec", "elsewhere", "--", "true")
    assert r.returncode == 1
    assert 'pod elsewhere runs on node "node2": this svcnet server serves exec only for the ' \
           'pods of its own node ("node1")' in r.stderr


def test_reaches_a_service_by_dns_name(cluster):
    r = kubectl(cluster, "exec", "client", "-c", "main", "--",
                "wget", "-qO-", "-T", "5", "http://backend/hostname")
    assert (r.returncode, r.stdout) == (0, "backend"), r.stderr
    r = kubectl(cluster, "exec", "client", "-c", "main", "--",
                "wget", "-qO-", "-T", "5", "http://backend.default.svc.cluster.local/hostname")
    assert (r.returncode, r.stdout) == (0, "backend"), r.stderr


def _run_on_a_terminal(cluster, argv: list[str], rows: int, cols: int, stdin: bytes = b"",
                       timeout: float = 20) -> tuple[int, bytes]:
    """Run kubectl with a pseudo-terminal as its stdin/stdout/stderr (sized rows x cols)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    proc = subprocess.Popen(cluster.world.command("node", "kubectl", f"--kubeconfig={cluster.kubeconfig}",
                                                  f"--cache-dir={cluster.data / 'kubectl-cache'}",
                                                  *argv),
                            stdin=slave, stdout=slave, stderr=slave, start_new_session=True)
    os.close(slave)
    out = b""
    deadline = time.monotonic() + timeout
    if stdin:
        os.write(master, stdin)
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(master, 4096)
                except OSError:
                    break
                if not chunk:
                    break
                out += chunk
            elif proc.poll() is not None:
                break
        return proc.wait(5), out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)


def test_tty(cluster):
    code, out = _run_on_a_terminal(cluster, ["exec", "-it", "client", "-c", "main", "--",
                                             "sh", "-c", "tty; stty size; echo x >&2"], 33, 101)
    assert code == 0, out
    lines = out.decode().replace("\r", "").split("\n")
    assert lines[0].startswith("/dev/pts/"), out
    assert lines[1] == "33 101", out
    assert lines[2] == "x", out  # stderr merged into the terminal
    code, out = _run_on_a_terminal(cluster, ["exec", "-it", "client", "-c", "main", "--",
                                             "sh", "-c", "exit 7"], 24, 80)
    assert code == 7, out
    # an interactive shell: typed input (its echo differs from the output), then exit
    code, out = _run_on_a_terminal(cluster, ["exec", "-it", "client", "-c", "main", "--", "sh"],
                                   24, 80, stdin=b"echo he''llo $((6*7))\nexit 4\n")
    assert code == 4, out
    assert b"hello 42" in out, out


def _exec_processes(cluster) -> list[int]:
    """PIDs in the client pod's network namespace other than its containers and sandbox."""
    status = cluster.json("get", "pod", "client")["status"]
    mains = {int(c["containerID"].split("://")[1]) for c in status["containerStatuses"]}
    holder = next(iter(mains))
    return [p for p in processes_in_netns(holder) if p not in mains
            and b"svcnet-sandbox" not in open(f"/proc/{p}/cmdline", "rb").read()]


def _sleep_in(cluster, pod: str, container: str, seconds: int) -> subprocess.Popen:
    """`kubectl exec POD -c CONTAINER -- sleep SECONDS`, running once this returns."""
    proc = subprocess.Popen(cluster.world.command(
        "node", "kubectl", f"--kubeconfig={cluster.kubeconfig}", "exec", pod, "-c", container,
        "--", "sh", "-c", f"echo started; exec sleep {seconds}"), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    if proc.stdout.readline() != "started\n":
        proc.kill()
        raise AssertionError(f"kubectl exec: {proc.communicate()}")
    return proc


def test_a_client_that_goes_away_takes_its_command_along(cluster):
    proc = _sleep_in(cluster, "client", "main", 300)
    try:
        assert poll(lambda: any(b"sleep\x00300" in open(f"/proc/{p}/cmdline", "rb").read()
                                for p in _exec_processes(cluster)), 10, "the exec'd sleep")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    poll(lambda: not _exec_processes(cluster), 15, "the exec'd process to end")


def test_the_session_ends_with_the_container(cluster):
    """A container runtime ends a container's exec sessions with it: so does svcnet."""
    proc = _sleep_in(cluster, "starting", "wait", 300)
    try:
        status = cluster.json("get", "pod", "starting")["status"]["initContainerStatuses"][0]
        os.kill(int(status["containerID"].split("://")[1]), signal.SIGKILL)
        assert proc.wait(15) == 137  # the exec'd sleep was killed with it
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_what_a_command_leaves_in_the_background_keeps_running(cluster):
    """`kubectl exec pod -- sh -c 'nohup daemon &'` starts a daemon in the container, as on a
    real cluster: the session ends, the daemon does not."""
    r = kubectl(cluster, "exec", "backend", "--", "sh", "-c",
                "nohup sleep 301 >/dev/null 2>&1 & echo $!")
    assert r.returncode == 0, r.stderr
    pid = int(r.stdout)
    try:
        ticks = proc_start_ticks(pid)
        assert ticks is not None and b"sleep\x00301" in open(f"/proc/{pid}/cmdline", "rb").read()
        backend = cluster.json("get", "pod", "backend")["status"]["containerStatuses"][0]
        assert pid in processes_in_netns(int(backend["containerID"].split("://")[1]))
    finally:
        if proc_start_ticks(pid) is not None:
            os.kill(pid, signal.SIGKILL)


PYTHON_CLIENT = r"""
import base64, json, ssl, sys
import websocket
from kubernetes import client, config
from kubernetes.stream import stream
config.load_kube_config(sys.argv[1])
api = client.CoreV1Api()
got = {}
got["all"] = stream(api.connect_get_namespaced_pod_exec, "client", "default", container="side",
                    command=["sh", "-c", "echo to-out; echo to-err >&2; id -u"],
                    stderr=True, stdin=False, stdout=True, tty=False)
for protocol in ("v5.channel.k8s.io", "v4.channel.k8s.io"):
    api.api_client.set_default_header("sec-websocket-protocol", protocol)
    resp = stream(api.connect_get_namespaced_pod_exec, "client", "default", container="main",
                  command=["sh", "-c", "echo o; echo e >&2; exit 5"],
                  stderr=True, stdin=False, stdout=True, tty=False, _preload_content=False)
    resp.run_forever(timeout=20)
    got[protocol] = [resp.subprotocol, resp.read_stdout(), resp.read_stderr(), resp.returncode]

# A bare WebSocket client on the oldest protocol: base64 text frames, plain-text errors.
c = api.api_client.configuration
url = c.host.replace("https://", "wss://") + ("/api/v1/namespaces/default/pods/client/exec?"
      "container=main&command=sh&command=-c&command=echo+hi%3B+exit+2&stdout=true&stderr=true")
ws = websocket.create_connection(url, header=["Authorization: " + (c.get_api_key_with_prefix("BearerToken")
                                         or c.get_api_key_with_prefix("authorization"))],
                                 subprotocols=["base64.channel.k8s.io"],
                                 sslopt={"cert_reqs": ssl.CERT_REQUIRED, "ca_certs": c.ssl_ca_cert})
frames = []
while True:
    op, data = ws.recv_data(control_frame=False)
    if op == websocket.ABNF.OPCODE_CLOSE:
        break
    text = data.decode()
    frames.append([text[0], base64.b64decode(text[1:]).decode()])
got["base64"] = [ws.subprotocol, frames]
print(json.dumps(got))
"""


def test_python_client_stream(cluster):
    r = cluster.world.run("node", sys.executable, "-c", PYTHON_CLIENT, str(cluster.kubeconfig),
                          timeout=60)
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    assert sorted(got["all"].splitlines()) == ["1234", "to-err", "to-out"]
    for protocol in ("v5.channel.k8s.io", "v4.channel.k8s.io"):
        assert got[protocol] == [protocol, "o\n", "e\n", 5]
    assert got["base64"] == ["base64.channel.k8s.io", [
        ["1", ""], ["1", "hi\n"],
        ["3", "command terminated with non-zero exit code: error executing command "
              "[sh -c echo hi; exit 2], exit code 2"]]]


def test_sessions_die_with_the_server(cluster):
    """Last: kills the cluster's server. Its exec sessions (PR_SET_PDEATHSIG) go with it."""
    proc = _sleep_in(cluster, "client", "main", 301)
    try:
        sleeper = poll(lambda: [p for p in _exec_processes(cluster)
                                if b"sleep\x00301" in open(f"/proc/{p}/cmdline", "rb").read()],
                       10, "the exec'd sleep")[0]
        server = cluster.world.procs[0]
        server.send_signal(signal.SIGKILL)
        server.wait(10)
        poll(lambda: not os.path.exists(f"/proc/{sleeper}") or
             open(f"/proc/{sleeper}/stat").read().split(") ")[1][0] == "Z", 10,
             "the exec'd process to die with the server")
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
