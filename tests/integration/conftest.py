"""Fixtures that run a real `svcnet server` process over HTTPS on 127.0.0.1.

The server listens on a free loopback port with its own data dir; kubectl runs with the
generated kubeconfig and a private discovery cache; the official Python client loads the same
kubeconfig. Everything is stopped (by PID) and removed at the end, on failure too.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout: float = 20.0, interval: float = 0.05, what: str = "condition"):
    """Poll `predicate` until it returns a truthy value or the deadline passes."""
    deadline = time.monotonic() + timeout
    last_exc = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception as e:  # noqa: BLE001 - keep polling, report the last failure
            last_exc = e
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}" + (f": {last_exc!r}" if last_exc else ""))


@dataclass
class Server:
    proc: subprocess.Popen
    data_dir: Path
    port: int
    log_path: Path

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def kubeconfig(self) -> Path:
        return self.data_dir / "kubeconfig"

    @property
    def token(self) -> str:
        return (self.data_dir / "admin-token").read_text().strip()

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.data_dir / "pki" / "ca.crt"))

    def request(self, method: str, path: str, body=None, headers: dict | None = None,
                token: str | None = "default", raw: bytes | None = None):
        """(status, headers, parsed-or-raw body) of one HTTPS request."""
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        h = {"Content-Type": "application/json"}
        if token == "default":
            token = self.token
        if token:
            h["Authorization"] = f"Bearer {token}"
        h.update(headers or {})
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=h)
        try:
            with urllib.request.urlopen(req, context=self.ssl_context(), timeout=30) as r:
                status, hdrs, payload = r.status, dict(r.headers), r.read()
        except urllib.error.HTTPError as e:
            status, hdrs, payload = e.code, dict(e.headers), e.read()
        try:
            return status, hdrs, json.loads(payload)
        except ValueError:
            return status, hdrs, payload

    def ready(self) -> bool:
        try:
            status, _, _ = self.request("GET", "/readyz", token=None)
            return status == 200 and self.kubeconfig.exists()
        except OSError:
            return False

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def start_server(data_dir: Path, port: int | None = None, extra: list[str] | None = None) -> Server:
    port = port or free_port()
    log_path = data_dir.parent / f"{data_dir.name}-server.log"
    log = open(log_path, "ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "svcnet.cli.main", "server", "--data-dir", str(data_dir),
         "--bind", "127.0.0.1", "--port", str(port), "--node-ip", "127.0.0.1", "--no-agent",
         *(extra or [])],
        stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    log.close()
    server = Server(proc, data_dir, port, log_path)
    try:
        wait_for(lambda: proc.poll() is not None or server.ready(), 30, what="server to answer")
        if proc.poll() is not None:
            raise AssertionError(f"server exited with {proc.returncode}:\n{server.log()}")
    except BaseException:
        server.stop(signal.SIGKILL)
        raise
    return server


@pytest.fixture(scope="session")
def server(tmp_path_factory) -> Server:
    data_dir = tmp_path_factory.mktemp("svcnet") / "data"
    s = start_server(data_dir)
    yield s
    s.stop()


class Kubectl:
    def __init__(self, server: Server, cache_dir: Path):
        self.server = server
        self.cache_dir = cache_dir

    def __call__(self, *args: str, input: str | None = None, check: bool = True,
                 timeout: float = 60) -> subprocess.CompletedProcess:
        env = dict(os.environ, KUBECONFIG=str(self.server.kubeconfig))
        p = subprocess.run(["kubectl", f"--cache-dir={self.cache_dir}", *args], input=input,
                           capture_output=True, text=True, env=env, timeout=timeout)
        if check and p.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({p.returncode}):\n"
                                 f"{p.stdout}\n{p.stderr}")
        return p

    def json(self, *args: str) -> dict:
        return json.loads(self(*args, "-o", "json").stdout)


@pytest.fixture(scope="session")
def kubectl(server, tmp_path_factory) -> Kubectl:
    return Kubectl(server, tmp_path_factory.mktemp("kubectl-cache"))


@pytest.fixture(scope="session")
def k8s(server):
    """The official Python client's ApiClient configured from the generated kubeconfig."""
    from kubernetes import client, config

    api_client = config.new_client_from_config(config_file=str(server.kubeconfig))
    yield client, api_client
    api_client.close()


_ns_counter = [0]


@pytest.fixture
def namespace(kubectl) -> str:
    """A fresh namespace per test, deleted afterwards."""
    _ns_counter[0] += 1
    name = f"t{os.getpid() % 10000}-{_ns_counter[0]}"
    kubectl("apply", "-f", "-", input=f"apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {name}\n")
    yield name
    kubectl("delete", "namespace", name, "--wait=false", check=False)
