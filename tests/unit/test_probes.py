"""The probe state machine (kubelet prober worker semantics) and the HTTP/TCP executors against
a local server on loopback. No root needed."""

from __future__ import annotations

import asyncio

import pytest

from svcnet.agent.runtime.probes import (EARLY, LIVENESS, READINESS, STARTUP, ProbeSpec,
                                         ProbeState, http_get, resolve_port, tcp_socket)


def spec(**kw) -> ProbeSpec:
    probe = {"httpGet": {"path": "/", "port": 80}}
    probe.update(kw)
    return ProbeSpec.from_api(probe)


def test_defaults():
    s = spec()
    assert (s.handler, s.initial_delay, s.period, s.timeout, s.success_threshold,
            s.failure_threshold) == ("httpGet", 0.0, 10.0, 1.0, 1, 3)
    s = spec(initialDelaySeconds=5, periodSeconds=2, timeoutSeconds=3, successThreshold=2,
             failureThreshold=4)
    assert (s.initial_delay, s.period, s.timeout, s.success_threshold,
            s.failure_threshold) == (5, 2, 3, 2, 4)
    assert ProbeSpec.from_api({"exec": {"command": ["true"]}}).handler == "exec"
    assert ProbeSpec.from_api({"tcpSocket": {"port": 80}}).handler == "tcpSocket"
    assert ProbeSpec.from_api({}) is None and ProbeSpec.from_api(None) is None


def test_initial_results():
    assert ProbeState(READINESS, spec(), 0).result is False
    assert ProbeState(LIVENESS, spec(), 0).result is True
    assert ProbeState(STARTUP, spec(), 0).result is None


def test_schedule_initial_delay_then_period():
    p = ProbeState(LIVENESS, spec(initialDelaySeconds=5, periodSeconds=2), started_at=100)
    assert p.due(100) == (105, False)
    p.observe(True, 105)
    assert p.due(105.01) == (107, False)


def test_readiness_thresholds():
    p = ProbeState(READINESS, spec(successThreshold=2, failureThreshold=2), 0)
    assert not p.observe(True, 0) and p.result is False      # 1 of 2 successes
    assert p.observe(True, 10) and p.result is True          # ready
    assert not p.observe(False, 20) and p.result is True     # 1 of 2 failures
    assert not p.observe(True, 30)                           # the run is broken
    assert not p.observe(False, 40)
    assert p.observe(False, 50) and p.result is False        # 2 failures in a row


def test_liveness_failure_puts_the_probe_on_hold():
    p = ProbeState(LIVENESS, spec(failureThreshold=3), 0)
    assert not p.observe(False, 0)
    assert not p.observe(False, 10)
    assert p.observe(False, 20) and p.result is False
    assert not p.active  # the container is being killed; a new instance gets a new state
    assert not p.observe(True, 30)


def test_startup_probe_stops_after_success():
    p = ProbeState(STARTUP, spec(failureThreshold=30, periodSeconds=1), 0)
    assert not p.observe(False, 0)
    assert p.observe(True, 1) and p.result is True
    assert p.done and not p.active


def test_early_probes_only_before_the_first_success_and_failures_do_not_count():
    p = ProbeState(READINESS, spec(periodSeconds=10), started_at=0)
    assert p.due(0) == (0, False)             # the first probe is a scheduled one
    p.observe(False, 0)
    when, early = p.due(0.001)
    assert early and when == pytest.approx(EARLY)
    assert not p.observe(False, when, early=True) and p.run == 1  # not counted
    when, early = p.due(when)
    assert early
    assert p.observe(True, when, early=True) and p.result is True
    assert p.due(when) == (10, False)         # back to the period once it has succeeded


def test_early_probes_never_hasten_a_startup_failure():
    p = ProbeState(STARTUP, spec(periodSeconds=10, failureThreshold=2), 0)
    assert not p.observe(False, 0)                      # 1 of 2 (scheduled)
    when, early = p.due(0.001)
    assert early
    assert not p.observe(False, when, early=True)        # early: not counted
    assert p.result is None and p.active
    assert p.due(when)[0] < 10                           # still probing early
    assert p.observe(False, 10) and p.result is False    # the 2nd scheduled failure
    assert not p.active                                  # the container will be restarted


def test_no_early_probes_for_liveness():
    p = ProbeState(LIVENESS, spec(periodSeconds=10), 0)
    p.observe(False, 0)
    assert p.due(0.001) == (10, False)


def test_restored_results_after_an_agent_restart():
    p = ProbeState(READINESS, spec(), 0, result=True)
    assert p.result is True and not p.early_enabled()
    s = ProbeState(STARTUP, spec(), 0, result=True)
    assert s.done


def test_resolve_port():
    container = {"ports": [{"name": "http", "containerPort": 8080}]}
    assert resolve_port(80, container) == 80
    assert resolve_port("http", container) == 8080
    assert resolve_port("8081", container) == 8081
    assert resolve_port("nope", container) is None
    assert resolve_port(0, container) is None


# ---- executors on loopback ----------------------------------------------------------------------

async def _server(handler):
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


def _http(status: int, seen: list):
    async def handle(reader, writer):
        request = await reader.readuntil(b"\r\n\r\n")
        seen.append(request.decode())
        writer.write(f"HTTP/1.1 {status} X\r\nContent-Length: 0\r\n\r\n".encode())
        await writer.drain()
        writer.close()
    return handle


@pytest.mark.parametrize("code,ok", [(200, True), (302, True), (399, True), (404, False),
                                     (500, False)])
def test_http_get_status_codes(code, ok):
    async def main():
        seen: list = []
        server, port = await _server(_http(code, seen))
        async with server:
            result = await http_get("127.0.0.1", port, "/healthz",
                                    headers=[{"name": "X-Probe", "value": "yes"},
                                             {"name": "host", "value": "example"}])
        return result, seen

    (got, detail), seen = asyncio.run(main())
    assert got is ok
    if not ok:
        assert f"statuscode: {code}" in detail
    request = seen[0]
    assert request.startswith("GET /healthz HTTP/1.1\r\n")
    assert "User-Agent: kube-probe/1.32\r\n" in request
    assert "X-Probe: yes\r\n" in request and "host: example\r\n" in request
    assert "Host: 127.0.0.1" not in request


def test_http_get_timeout_and_refused():
    async def main():
        async def silent(reader, writer):
            await asyncio.sleep(5)
        server, port = await _server(silent)
        async with server:
            slow = await http_get("127.0.0.1", port, "/", timeout=0.2)
        refused = await http_get("127.0.0.1", port, "/", timeout=0.5)
        return slow, refused

    slow, refused = asyncio.run(main())
    assert slow[0] is False and "deadline exceeded" in slow[1]
    assert refused[0] is False and "connection refused" in refused[1]


def test_tcp_socket():
    async def main():
        async def accept(reader, writer):
            writer.close()
        server, port = await _server(accept)
        async with server:
            up = await tcp_socket("127.0.0.1", port, 1.0)
        down = await tcp_socket("127.0.0.1", port, 1.0)
        return up, down

    up, down = asyncio.run(main())
    assert up == (True, "")
    assert down[0] is False and "refused" in down[1]
