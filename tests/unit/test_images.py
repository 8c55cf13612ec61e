"""The built-in images as real processes: agnhost netexec / serve-hostname / pause, the pause
image, and the registry that maps container specs to them.

Each program runs as `python -m ...` with free ports, its stdout/stderr in files; tests poll
(with deadlines) until it listens or prints what it prints once its signal handling is in
place, then talk to it over real TCP/UDP sockets on 127.0.0.1. Every process is killed by PID
at the end.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from svcnet.images.registry import AGNHOST, PAUSE, resolve, split_image

ROOT = Path(__file__).resolve().parents[2]
HOSTNAME = socket.gethostname()
DEADLINE = 15.0


def _port_is_free(port: int) -> bool:
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
        with socket.socket(socket.AF_INET6, kind) as s:
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            try:
                s.bind(("::", port))
            except OSError:
                return False
    return True


_taken: set[int] = set()


def free_port() -> int:
    """A port free for TCP and UDP on all addresses, never handed out twice in this run."""
    for _ in range(100):
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            s.bind(("::", 0))
            port = s.getsockname()[1]
        if port not in _taken and _port_is_free(port):
            _taken.add(port)
            return port
    raise RuntimeError("no free port")


class Proc:
    def __init__(self, argv: list[str], directory: Path):
        self.argv = argv
        self.out_path = directory / f"{len(list(directory.iterdir()))}.out"
        self.err_path = self.out_path.with_suffix(".err")
        with open(self.out_path, "wb") as out, open(self.err_path, "wb") as err:
            self.popen = subprocess.Popen(argv, stdout=out, stderr=err, cwd=ROOT)
        self.pid = self.popen.pid

    @property
    def stdout(self) -> str:
        return self.out_path.read_text(errors="replace")

    @property
    def stderr(self) -> str:
        return self.err_path.read_text(errors="replace")

    def _check_alive(self) -> None:
        if self.popen.poll() is not None:
            pytest.fail(f"{self.argv} exited {self.popen.returncode}:\n"
                        f"{self.stdout}\n{self.stderr}")

    def wait_listening(self, port: int) -> None:
        deadline = time.monotonic() + DEADLINE
        while True:
            self._check_alive()
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"{self.argv} not listening on {port}:\n{self.stderr}")
                time.sleep(0.01)

    def wait_output(self, text: str, stream: str = "stderr") -> None:
        deadline = time.monotonic() + DEADLINE
        while text not in getattr(self, stream):
            self._check_alive()
            if time.monotonic() > deadline:
                pytest.fail(f"{text!r} never appeared in {stream} of {self.argv}")
            time.sleep(0.01)

    def signal(self, signo: int) -> None:
        os.kill(self.pid, signo)

    def wait(self, timeout: float = DEADLINE) -> int:
        return self.popen.wait(timeout)


@pytest.fixture
def spawn(tmp_path):
    procs: list[Proc] = []

    def start(*argv: str, module: str = "svcnet.images.agnhost") -> Proc:
        proc = Proc([sys.executable, "-m", module, *argv], tmp_path)
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.popen.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.popen.wait()


class Netexec:
    def __init__(self, spawn, *extra: str, udp: bool = True):
        self.http_port = free_port()
        self.udp_port = free_port() if udp else -1
        self.proc = spawn("--v=2", "netexec", "--logtostderr", f"--http-port={self.http_port}",
                          "--udp-port", str(self.udp_port), *extra)
        self.proc.wait_listening(self.http_port)

    def get(self, target: str, **kwargs):
        return http_request(self.http_port, target, **kwargs)


def http_request(port: int, target: str, method: str = "GET", headers=None, body=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=DEADLINE)
    try:
        conn.request(method, target, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read().decode()
    finally:
        conn.close()


def udp_exchange(port: int, payload: bytes, timeout: float = DEADLINE) -> tuple[str, str]:
    """Send one datagram, return (reply, our own "ip:port")."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.connect(("127.0.0.1", port))
        s.send(payload)
        local = "%s:%d" % s.getsockname()
        return s.recv(4096).decode(), local


# --- netexec: HTTP --------------------------------------------------------------------------

def test_netexec_http_endpoints(spawn):
    n = Netexec(spawn)
    status, headers, body = n.get("/")
    assert status == 200
    assert re.fullmatch(r"NOW: \d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d+)? [+-]\d{4} \S+ "
                        r"m=\+\d+\.\d{9}", body), body
    for path in ("/hostname", "/hostName"):
        status, headers, body = n.get(path)
        assert (status, body) == (200, HOSTNAME)
        assert headers["content-type"] == "text/plain; charset=utf-8"
        assert headers["content-length"] == str(len(HOSTNAME))
    assert n.get("/no/such/path")[2].startswith("NOW: ")

    assert n.get("/echo?msg=hello%20world")[::2] == (200, "hello world")
    assert n.get("/echo?msg=gone&code=404")[::2] == (404, "gone")
    assert n.get("/echo?msg=x&code=abc")[::2] == (
        200, "argument 'code' must be an integer or empty, got \"abc\"\n")
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    assert n.get("/echo", method="POST", body="msg=posted", headers=form)[::2] == (200, "posted")

    status, _, body = n.get("/header?key=x-test-header", headers={"X-Test-Header": "v1"})
    assert (status, body) == (200, "v1")
    status, _, body = n.get("/header", headers={"x-test-header": "v1", "X-Other": "<&>"})
    all_headers = json.loads(body)
    assert all_headers["X-Test-Header"] == ["v1"] and all_headers["X-Other"] == ["<&>"]
    assert "Host" not in all_headers and "\\u003c\\u0026\\u003e" in body

    status, headers, body = n.get("/redirect?location=/echo%3Fmsg%3Dfoo&code=307")
    assert (status, headers["location"]) == (307, "/echo?msg=foo")
    status, headers, body = n.get("/redirect?location=hostname")
    assert (status, headers["location"]) == (302, "/hostname")
    assert body == '<a href="/hostname">Found</a>.\n\n'
    status, headers, _ = n.get("//x/../hostname?a=1")
    assert (status, headers["location"]) == (301, "/hostname?a=1")

    status, headers, body = n.get("/hostname", method="HEAD")
    assert (status, headers["content-length"], body) == (200, str(len(HOSTNAME)), "")
    assert n.get("/healthz")[::2] == (200, "")
    assert n.get("/readyz")[::2] == (200, "ok")

    status, _, body = n.get("/shell?cmd=echo%20hi%3B%20exit%203")
    assert (status, json.loads(body)) == (200, {"error": "exit status 3", "output": "hi\n"})

    log = n.proc.stderr
    assert re.search(r"(?m)^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d Started HTTP server on port "
                     f"{n.http_port}$", log)
    assert f"Started UDP server on port  {n.udp_port}" in log
    assert "GET /echo?msg=hello world&code=" in log and f"hostname: {HOSTNAME}" in log


def test_netexec_clientip_and_keepalive(spawn):
    n = Netexec(spawn)
    conn = http.client.HTTPConnection("127.0.0.1", n.http_port, timeout=DEADLINE)
    conn.connect()
    sock = conn.sock
    local = "%s:%d" % sock.getsockname()
    for _ in range(3):
        conn.request("GET", "/clientip")
        resp = conn.getresponse()
        assert resp.read().decode() == local
        assert conn.sock is sock            # the same connection served all three
    conn.close()


def test_netexec_rejects_malformed_requests(spawn):
    n = Netexec(spawn)
    with socket.create_connection(("127.0.0.1", n.http_port), timeout=DEADLINE) as s:
        s.sendall(b"GET /hostname HTTP/1.1\r\n\r\n")        # HTTP/1.1 without Host
        data = s.makefile("rb").read()
    assert data.startswith(b"HTTP/1.1 400 Bad Request\r\n") and b"Connection: close" in data
    with socket.create_connection(("127.0.0.1", n.http_port), timeout=DEADLINE) as s:
        s.sendall(b"nonsense\r\n\r\n")
        assert s.makefile("rb").read().startswith(b"HTTP/1.1 400 ")
    assert n.get("/hostname")[2] == HOSTNAME                 # still serving


def raw_exchange(port: int, data: bytes) -> bytes:
    """Send raw bytes, read until the server closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=DEADLINE) as s:
        s.sendall(data)
        return s.makefile("rb").read()


def test_netexec_http_protocol_details(spawn):
    n = Netexec(spawn)
    reply = raw_exchange(n.http_port, b"GET /hostname HTTP/1.0\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 200 OK\r\n") and b"Connection: close\r\n" in reply
    form = b"Content-Type: application/x-www-form-urlencoded\r\n"
    reply = raw_exchange(n.http_port, b"POST /echo HTTP/1.1\r\nHost: x\r\n" + form +
                         b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
                         b"4\r\nmsg=\r\n5;ext=1\r\nchunk\r\n0\r\n\r\n")
    assert reply.endswith(b"\r\n\r\nchunk")
    reply = raw_exchange(n.http_port, b"POST /echo HTTP/1.1\r\nHost: x\r\n" + form +
                         b"Expect: 100-continue\r\nContent-Length: 6\r\n"
                         b"Connection: close\r\n\r\nmsg=go")
    assert reply.startswith(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n")
    assert reply.endswith(b"\r\n\r\ngo")
    reply = raw_exchange(n.http_port, b"GET /echo?msg=one HTTP/1.1\r\nHost: x\r\n\r\n"
                                      b"GET /echo?msg=two HTTP/1.1\r\nHost: x\r\n"
                                      b"Connection: close\r\n\r\n")   # pipelined
    assert reply.count(b"HTTP/1.1 200 OK") == 2 and reply.endswith(b"\r\n\r\ntwo")
    reply = raw_exchange(n.http_port, b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " +
                         b"a" * (1 << 20) + b"\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 431 ")
    assert raw_exchange(n.http_port, b"GET / HTTP/2.0\r\n\r\n").startswith(b"HTTP/1.1 505 ")
    reply = raw_exchange(n.http_port, b"GET /echo?msg=x&code=103 HTTP/1.1\r\nHost: x\r\n"
                                      b"Connection: close\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 103 Early Hints\r\n\r\nHTTP/1.1 200 OK\r\n")
    assert raw_exchange(n.http_port, b"GET /echo?code=1000 HTTP/1.1\r\nHost: x\r\n\r\n") == b""
    status, headers, body = n.get("/echo?msg=dropped&code=204")
    assert (status, body, "content-length" in headers) == (204, "", False)


def test_netexec_tls(spawn, tmp_path):
    import ssl

    from svcnet.pki import ensure_credentials
    creds = ensure_credentials(tmp_path / "tls", ["localhost"], ["127.0.0.1"])
    n = Netexec(spawn, f"--tls-cert-file={creds.server_cert}",
                f"--tls-private-key-file={creds.server_key}")
    context = ssl.create_default_context(cafile=str(creds.ca_cert))
    conn = http.client.HTTPSConnection("127.0.0.1", n.http_port, context=context,
                                       timeout=DEADLINE)
    conn.request("GET", "/hostname")
    assert conn.getresponse().read().decode() == HOSTNAME
    conn.close()


def test_netexec_http_override(spawn):
    n = Netexec(spawn, "--http-override=/hostname")
    assert n.get("/anything?x=1")[::2] == (200, HOSTNAME)
    assert n.get("/clientip")[::2] == (200, HOSTNAME)


# --- netexec: UDP ---------------------------------------------------------------------------

def test_netexec_udp_commands(spawn):
    n = Netexec(spawn)
    assert udp_exchange(n.udp_port, b"hostname")[0] == HOSTNAME
    assert udp_exchange(n.udp_port, b"  ECHO Hello World \n")[0] == "hello world"
    reply, local = udp_exchange(n.udp_port, b"clientip")
    assert reply == local
    with pytest.raises(socket.timeout):
        udp_exchange(n.udp_port, b"bogus", timeout=0.5)     # unknown commands get no answer
    assert udp_exchange(n.udp_port, b"HostName")[0] == HOSTNAME
    n.proc.wait_output("Unknown UDP command received from")


def test_netexec_udp_listen_addresses(spawn):
    n = Netexec(spawn, "--udp-listen-addresses=127.0.0.1,127.0.0.1")
    assert udp_exchange(n.udp_port, b"hostname")[0] == HOSTNAME
    assert n.proc.stderr.count(f"Started UDP server on port 127.0.0.1 {n.udp_port}") == 1


def test_netexec_health_without_udp(spawn):
    n = Netexec(spawn, udp=False)
    assert n.get("/healthz")[0] == 412      # agnhost: ready only once the UDP server runs
    assert n.get("/readyz")[0] == 412
    assert "Started UDP server" not in n.proc.stderr


# --- netexec: /dial -------------------------------------------------------------------------

def dial(n: Netexec, **params):
    query = "&".join(f"{k}={v}" for k, v in params.items())
    return n.get(f"/dial?{query}")


def test_dial_http_and_udp(spawn):
    n = Netexec(spawn)
    closed = free_port()
    status, _, body = dial(n, request="hostname", host="127.0.0.1", port=n.http_port,
                           protocol="http", tries=3)
    assert (status, body) == (200, json.dumps({"responses": [HOSTNAME] * 3}, separators=(",", ":")))
    status, _, body = dial(n, request="hostname", host="127.0.0.1", port=n.udp_port,
                           protocol="udp", tries=2)
    assert (status, json.loads(body)) == (200, {"responses": [HOSTNAME] * 2})
    assert json.loads(dial(n, request="echo%20hi", host="127.0.0.1", port=n.udp_port,
                           protocol="UDP")[2]) == {"responses": ["hi"]}
    # the protocol defaults to http; the target follows redirects; JSON escapes like Go's
    assert json.loads(dial(n, request="redirect%3Flocation%3D/hostname", host="127.0.0.1",
                           port=n.http_port)[2]) == {"responses": [HOSTNAME]}
    body = dial(n, request="echo%3Fmsg%3D%3Cb%3E", host="127.0.0.1", port=n.http_port)[2]
    assert body == '{"responses":["\\u003cb\\u003e"]}'

    body = json.loads(dial(n, request="hostname", host="127.0.0.1", port=closed, tries=2)[2])
    assert body == {"errors": [f'Get "http://127.0.0.1:{closed}/hostname": dial tcp '
                               f'127.0.0.1:{closed}: connect: connection refused'] * 2}
    body = json.loads(dial(n, request="hostname", host="127.0.0.1", port=closed,
                           protocol="udp")[2])
    assert list(body) == ["errors"] and "connection refused" in body["errors"][0]
    assert body["errors"][0].startswith("reading from udp connection failed. err:'read udp ")
    body = json.loads(dial(n, request="hostname", host="127.0.0.1", port=n.http_port,
                           protocol="sctp")[2])
    assert list(body) == ["errors"]
    assert dial(n, request="hostname", host="127.0.0.1", port=n.http_port, tries=0)[2] == "{}"


def test_dial_parameter_errors(spawn):
    n = Netexec(spawn)
    status, headers, body = dial(n, host="127.0.0.1", port=n.http_port)
    assert (status, body) == (400, "request parameter not specified. <nil>\n")
    assert headers["x-content-type-options"] == "nosniff"
    status, _, body = dial(n, request="hostname", host="127.0.0.1", port=n.http_port, tries="x")
    assert (status, body) == (400, 'tries parameter is invalid. strconv.Atoi: parsing "x": '
                                   'invalid syntax\n')
    assert dial(n, request="hostname", host="127.0.0.1", port=1, protocol="ftp")[::2] == (
        400, "unsupported protocol. ftp\n")
    status, _, body = dial(n, request="hostname", host="127.0.0.1", port="no-such-service")
    assert status == 400 and body.startswith("host and/or port param are invalid. ")


def test_dial_udp_timeout(spawn):
    n = Netexec(spawn)
    started = time.monotonic()
    body = json.loads(dial(n, request="bogus", host="127.0.0.1", port=n.udp_port,
                           protocol="udp")[2])
    assert time.monotonic() - started >= 4.5            # agnhost waits 5 s for a UDP answer
    assert list(body) == ["errors"] and body["errors"][0].endswith(": i/o timeout'")


# --- netexec: exits and signals -------------------------------------------------------------

def test_exit_without_timeout_exits_at_once(spawn):
    n = Netexec(spawn)
    with pytest.raises((http.client.RemoteDisconnected, ConnectionResetError)):
        n.get("/exit?code=3")
    assert n.proc.wait() == 3


def test_exit_with_timeout_answers_then_exits(spawn):
    n = Netexec(spawn)
    assert n.get("/exit?code=4&timeout=5s")[::2] == (200, "")
    assert n.proc.wait() == 4
    assert "Graceful shutdown completed with: <nil>" in n.proc.stderr
    assert "Will begin shutdown in 0s, allowing 5s for connections to close, then will exit " \
           "with 4" in n.proc.stderr


def test_shutdown_exits_zero(spawn):
    n = Netexec(spawn)
    with pytest.raises((http.client.RemoteDisconnected, ConnectionResetError)):
        n.get("/shutdown")
    assert n.proc.wait() == 0


def test_sigterm_exits_promptly(spawn):
    n = Netexec(spawn)
    started = time.monotonic()
    n.proc.signal(signal.SIGTERM)
    assert n.proc.wait() == 0
    assert time.monotonic() - started < 2


def test_sigterm_with_delay_shutdown_keeps_serving(spawn):
    n = Netexec(spawn, "--delay-shutdown=2")
    started = time.monotonic()
    n.proc.signal(signal.SIGTERM)
    n.proc.wait_output("Sleeping 2 seconds before terminating...")
    assert n.get("/readyz")[::2] == (503, "shutting down")
    assert n.get("/healthz")[0] == 200
    assert n.get("/hostname")[2] == HOSTNAME
    assert udp_exchange(n.udp_port, b"hostname")[0] == HOSTNAME
    assert n.proc.wait() == 0
    assert 1.8 <= time.monotonic() - started < 8


def test_netexec_usage_and_bind_errors(spawn):
    proc = spawn("netexec", "--bogus")
    assert proc.wait() == 2 and "unknown flag: --bogus" in proc.stderr
    proc = spawn("netexec", "--http-port=abc")
    assert proc.wait() == 2 and 'invalid argument "abc" for "--http-port" flag' in proc.stderr
    proc = spawn("netexec", "extra-arg")
    assert proc.wait() == 2 and "accepts at most 0 arg(s), received 1" in proc.stderr
    with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as busy:
        busy.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        busy.bind(("::", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = spawn("netexec", f"--http-port={port}", "--udp-port=-1")
        assert proc.wait() == 1
    assert f"listen tcp :{port}: bind: address already in use" in proc.stderr


# --- serve-hostname -------------------------------------------------------------------------

def test_serve_hostname_http(spawn):
    port = free_port()
    proc = spawn("serve-hostname", f"--port={port}")
    proc.wait_listening(port)
    assert http_request(port, "/")[::2] == (200, HOSTNAME)
    assert http_request(port, "/any/path?x=1", method="POST", body="data")[::2] == (200, HOSTNAME)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=DEADLINE)
    for _ in range(2):
        conn.request("GET", "/")
        resp = conn.getresponse()
        assert resp.read().decode() == HOSTNAME and resp.getheader("Connection") is None
    conn.close()
    proc.wait_output("HTTP request from 127.0.0.1:")
    assert f"Serving on port {port}." in proc.stderr


def test_serve_hostname_close(spawn):
    port = free_port()
    proc = spawn("serve-hostname", "--close", "--port", str(port))
    proc.wait_listening(port)
    with socket.create_connection(("127.0.0.1", port), timeout=DEADLINE) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        data = s.makefile("rb").read()      # returns: the server closes after one response
    assert b"Connection: close\r\n" in data and data.endswith(HOSTNAME.encode())


def test_serve_hostname_tcp_and_udp(spawn):
    port = free_port()
    proc = spawn("serve-hostname", "--http=false", "--tcp", "--udp=true", f"--port={port}")
    proc.wait_listening(port)
    with socket.create_connection(("127.0.0.1", port), timeout=DEADLINE) as s:
        assert s.makefile("rb").read() == HOSTNAME.encode()
    assert udp_exchange(port, b"")[0] == HOSTNAME
    assert udp_exchange(port, b"anything at all, longer than sixteen bytes")[0] == HOSTNAME
    proc.wait_output("UDP request from 127.0.0.1:")
    assert "TCP request from 127.0.0.1:" in proc.stderr


def test_serve_hostname_refuses_http_with_udp(spawn):
    proc = spawn("serve-hostname", "--udp", f"--port={free_port()}")
    assert proc.wait() == 1
    assert "Can't serve TCP/UDP mode and HTTP mode at the same time" in proc.stderr


def test_serve_hostname_keeps_serving_after_sigterm(spawn):
    port = free_port()
    proc = spawn("serve-hostname", f"--port={port}")
    proc.wait_listening(port)
    proc.signal(signal.SIGTERM)
    proc.wait_output("Awaiting pod deletion.")
    assert "Shutting down after receiving signal: terminated." in proc.stderr
    assert http_request(port, "/")[2] == HOSTNAME
    assert proc.popen.poll() is None        # waits for the kubelet's SIGKILL (60 s at most)


# --- pause ----------------------------------------------------------------------------------

@pytest.mark.parametrize("signo,code", [(signal.SIGTERM, 2), (signal.SIGINT, 1)])
def test_agnhost_pause(spawn, signo, code):
    proc = spawn("pause")
    proc.wait_output("Paused\n", "stdout")
    proc.signal(signo)
    assert proc.wait() == code
    assert proc.stdout == f"Paused\nexiting {code}\n"


def test_agnhost_pause_delay_shutdown(spawn):
    proc = spawn("pause", "--delay-shutdown=1")
    proc.wait_output("Paused\n", "stdout")
    started = time.monotonic()
    proc.signal(signal.SIGTERM)
    assert proc.wait() == 2
    assert time.monotonic() - started >= 0.9
    assert proc.stdout == "Paused\nSleeping 1 seconds before exit ...exiting 2\n"


def test_pause_image(spawn):
    proc = spawn(module="svcnet.images.pause")
    proc.wait_output("Warning: pause should be the first process")
    proc.signal(signal.SIGCHLD)              # reaps (nothing) and keeps waiting
    proc.signal(signal.SIGTERM)
    assert proc.wait() == 0
    assert "Shutting down, got signal: Terminated" in proc.stderr
    proc = spawn("-v", module="svcnet.images.pause")
    assert proc.wait() == 0 and proc.stdout.startswith("pause.c ")


# --- agnhost dispatch -----------------------------------------------------------------------

def test_agnhost_dispatch(spawn):
    proc = spawn()
    assert proc.wait() == 0 and "Available Commands" in proc.stdout and "netexec" in proc.stdout
    proc = spawn("porter")
    assert proc.wait() == 2 and 'subcommand "porter" is not implemented' in proc.stderr
    proc = spawn("netexec", "--help")
    assert proc.wait() == 0 and "--http-port int" in proc.stdout


# --- registry -------------------------------------------------------------------------------

@pytest.mark.parametrize("image,command,args,expected", [
    ("registry.k8s.io/e2e-test-images/agnhost:2.53", None, ["netexec", "--http-port=8080"],
     AGNHOST + ["netexec", "--http-port=8080"]),
    ("k8s.gcr.io/e2e-test-images/agnhost:2.21", [], [], AGNHOST + ["pause"]),
    ("e2e-test-images/agnhost:2.40", ["/agnhost", "serve-hostname"], ["--port=80"],
     AGNHOST + ["serve-hostname", "--port=80"]),
    ("registry.k8s.io/e2e-test-images/agnhost@sha256:" + "a" * 64, ["agnhost"], ["pause"],
     AGNHOST + ["pause"]),
    ("registry.k8s.io/e2e-test-images/agnhost:2.53", ["/bin/sh", "-c", "sleep 1"], [],
     ["/bin/sh", "-c", "sleep 1"]),
    ("registry.k8s.io/pause:3.10", None, None, PAUSE),
    ("k8s.gcr.io/pause", ["/pause"], [], PAUSE),
    ("k8s.gcr.io/serve_hostname:v1.4", None, ["-udp=true"],
     AGNHOST + ["serve-hostname", "-udp=true"]),
    ("busybox", ["sh", "-c", "echo hi"], ["x"], ["sh", "-c", "echo hi", "x"]),
    ("docker.io/library/busybox:1.36", None, ["sleep", "3600"], ["sleep", "3600"]),
    ("registry.k8s.io/e2e-test-images/busybox:1.36.1-1", None, None, ["sh"]),
    ("alpine:3.19", ["/bin/true"], None, ["/bin/true"]),
    ("nginx:1.25", ["nginx", "-g", "daemon off;"], [], ["nginx", "-g", "daemon off;"]),
    ("nginx:1.25", None, ["-g"], None),
    ("quay.io/someone/agnhost:1.0", None, ["netexec"], None),
])
def test_registry_resolve(image, command, args, expected):
    assert resolve(image, command, args) == expected


def test_split_image():
    assert split_image("registry.k8s.io/e2e-test-images/agnhost:2.53") == (
        "registry.k8s.io", "e2e-test-images/agnhost")
    assert split_image("localhost:5000/agnhost:1@sha256:00") == ("localhost:5000", "agnhost")
    assert split_image("library/busybox") == ("", "busybox")



def test_hello_image_answers_hello_world(spawn):
    argv = resolve("svcnet/hello:latest", None, None)
    assert argv[1:] == ["-m", "svcnet.images.hello"]
    port = free_port()
    proc = spawn("--port", str(port), module="svcnet.images.hello")
    proc.wait_listening(port)
    status, _, body = http_request(port, "/")
    assert (status, body) == (200, "Hello World!\n")
