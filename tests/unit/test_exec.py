"""pods/exec's pure parts: protocol negotiation, channel framing, resize decoding, the final
Status of a command, PodExecOptions and container choice, and the runtime record's reading."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess

import orjson
import pytest
from multidict import MultiDict

from svcnet.agent.runtime.containers import proc_start_ticks
from svcnet.agent.runtime.podexec import ExecError, ExecTarget, spawn_exec, target_from_state
from svcnet.api import remotecommand as rc
from svcnet.api.errors import APIError

V5, V4, V4B64 = (rc.PROTOCOLS[n] for n in ("v5.channel.k8s.io", "v4.channel.k8s.io",
                                            "v4.base64.channel.k8s.io"))
V1, V1B64, NONE = (rc.PROTOCOLS[n] for n in ("channel.k8s.io", "base64.channel.k8s.io", ""))


# ---- negotiation ----------------------------------------------------------------------------

def test_the_clients_first_served_protocol_wins():
    assert rc.negotiate(["v5.channel.k8s.io"]) is V5                          # kubectl 1.32
    assert rc.negotiate(["v5.channel.k8s.io", "v4.channel.k8s.io"]) is V5     # python client
    assert rc.negotiate(["v4.channel.k8s.io", "v5.channel.k8s.io"]) is V4
    assert rc.negotiate(["SPDY/3.1", "base64.channel.k8s.io"]) is V1B64
    assert rc.negotiate([]) is NONE                                            # no subprotocol
    assert rc.negotiate(["v3.channel.k8s.io", "x"]) is None


def test_offered_protocols_come_from_a_comma_separated_header():
    assert rc.offered_protocols("v5.channel.k8s.io, v4.channel.k8s.io") == [
        "v5.channel.k8s.io", "v4.channel.k8s.io"]
    assert rc.offered_protocols("") == []


# ---- framing --------------------------------------------------------------------------------

def test_binary_protocols_prefix_the_channel_byte():
    for p in (V5, V4, V1, NONE):
        assert rc.encode(p, rc.STDOUT, b"hi\n") == b"\x01hi\n"
        assert rc.encode(p, rc.STDERR, b"") == b"\x02"
        assert rc.decode(p, b"\x00foo\n") == (0, b"foo\n")
        assert rc.decode(p, b"\x04{}") == (4, b"{}")


def test_base64_protocols_use_a_digit_and_base64_text():
    # wsstream's own example: "foo\n" on stdin, "\n" on stdout
    assert rc.decode(V1B64, "0Zm9vCg==") == (0, b"foo\n")
    assert rc.decode(V4B64, b"0Zm9vCg==") == (0, b"foo\n")
    assert rc.encode(V1B64, rc.STDOUT, b"\n") == "1Cg=="
    assert rc.encode(V4B64, rc.ERROR, b"") == "3"
    assert rc.decode(V1B64, "0not base64!") is None


def test_empty_messages_are_skipped_and_close_is_a_channel():
    assert rc.decode(V5, b"") is None
    assert rc.decode(V5, b"\xff\x00") == (rc.CLOSE, b"\x00")


# ---- resize ---------------------------------------------------------------------------------

def test_resize_events_are_decoded_across_messages():
    d = rc.ResizeDecoder()
    assert d.feed(b'{"Width":80,"Height":24}\n') == [(80, 24)]               # client-go
    assert d.feed(b'{"Height": 40, "Width": 120}') == [(120, 40)]            # python client
    assert d.feed(b'{"Width":1') == []
    assert d.feed(b'00,"Height":50}\n{"Width":7,"Height":8}\n') == [(100, 50), (7, 8)]
    assert d.feed(b'["not a size"]{"Width":-1,"Height":5}{"Width":"x"}') == []
    assert d.feed(b'{"Width":3,"Height":4}') == [(3, 4)]


# ---- the final Status -----------------------------------------------------------------------

def test_success_and_exit_codes_as_the_api_server_reports_them():
    assert rc.exit_status(0, ["true"]) == {"metadata": {}, "status": "Success"}
    status = rc.exit_status(3, ["sh", "-c", "exit 3"])
    assert status == {
        "metadata": {}, "status": "Failure", "reason": "NonZeroExitCode",
        "message": "command terminated with non-zero exit code: error executing command "
                   "[sh -c exit 3], exit code 3",
        "details": {"causes": [{"reason": "ExitCode", "message": "3"}]}}


def test_the_error_channel_carries_a_status_from_v4_on_and_text_before():
    ok, failed = rc.exit_status(0, ["true"]), rc.exit_status(2, ["false"])
    for p in (V5, V4, V4B64):
        assert json.loads(rc.error_payload(p, ok)) == ok
        assert json.loads(rc.error_payload(p, failed)) == failed
    for p in (V1, V1B64, NONE):
        assert rc.error_payload(p, ok) is None
        assert rc.error_payload(p, failed) == failed["message"].encode()


def test_signals_are_128_plus_the_signal():
    assert rc.wait_status(0) == 0 and rc.wait_status(7) == 7
    assert rc.wait_status(-9) == 137 and rc.wait_status(-15) == 143


# ---- PodExecOptions and the container -------------------------------------------------------

def q(**kw) -> MultiDict:
    m = MultiDict()
    for k, v in kw.items():
        for item in v if isinstance(v, list) else [v]:
            m.add(k, item)
    return m


def test_exec_options_from_kubectl_and_python_client_queries():
    o = rc.exec_options(q(command=["sh", "-c", "echo hi"], container="c", stdin="true",
                          stdout="true", stderr="true"))
    assert o == rc.ExecOptions(["sh", "-c", "echo hi"], "c", True, True, True, False)
    o = rc.exec_options(q(command="ls", stdin="False", stdout="True", stderr="True", tty="False"))
    assert (o.stdin, o.stdout, o.stderr, o.tty, o.container) == (False, True, True, False, "")
    o = rc.exec_options(q(command="sh", stdin="1", stdout="1", stderr="1", tty="1"))
    assert (o.stdin, o.stdout, o.stderr, o.tty) == (True, True, False, True)  # merged


@pytest.mark.parametrize("query, message", [
    (q(command="ls"), "you must specify at least 1 of stdin, stdout, stderr"),
    (q(stdout="true"), "you must specify at least one command for the container"),
])
def test_bad_exec_options_are_400(query, message):
    with pytest.raises(APIError) as e:
        rc.exec_options(query)
    assert (e.value.code, e.value.reason, e.value.message) == (400, "BadRequest", message)


POD = {"metadata": {"name": "web"},
       "spec": {"initContainers": [{"name": "init"}],
                "containers": [{"name": "a"}, {"name": "b"}]}}


def test_container_choice_as_kube_apiserver():
    assert rc.choose_container(POD, "web", "b") == "b"
    assert rc.choose_container(POD, "web", "init") == "init"
    one = {"spec": {"containers": [{"name": "only"}]}}
    assert rc.choose_container(one, "p", "") == "only"
    with pytest.raises(APIError) as e:
        rc.choose_container(POD, "web", "")
    assert e.value.message == ("a container name must be specified for pod web, choose one of: "
                               "[a b] or one of the init containers: [init]")
    with pytest.raises(APIError) as e:
        rc.choose_container(POD, "web", "c")
    assert (e.value.code, e.value.message) == (400, "container c is not valid for pod web")


def test_the_servers_node_comes_from_its_agents_record(tmp_path):
    assert rc.node_of_server(None) is None
    assert rc.node_of_server(tmp_path) is None
    (tmp_path / "node.json").write_bytes(orjson.dumps({"nodeName": "node1"}))
    assert rc.node_of_server(tmp_path) == "node1"


# ---- the runtime's record -------------------------------------------------------------------

STATE = {
    "pod": {"metadata": {"name": "web", "namespace": "default", "uid": "u"},
            "spec": {"hostname": "www",
                     "containers": [{"name": "a", "workingDir": "/srv"}, {"name": "b"}]}},
    "sandbox": {"pid": 100, "start": 5, "ip": "10.244.0.2"},
    "containers": [
        {"name": "a", "running": True, "pid": 200, "start": 6, "uid": 1000, "gid": 2000,
         "env": {"PATH": "/bin", "WEB_SERVICE_HOST": "10.96.0.20"}},
        {"name": "b", "running": False, "pid": None, "start": None},
    ],
}


def test_a_running_container_is_found_with_what_it_was_started_with(tmp_path):
    t = target_from_state(STATE, tmp_path, "a")
    assert (t.netns_pid, t.netns_start, t.pid, t.start) == (100, 5, 200, 6)
    assert (t.uid, t.gid, t.workdir, t.hostname) == (1000, 2000, "/srv", "www")
    assert t.env == {"PATH": "/bin", "WEB_SERVICE_HOST": "10.96.0.20"}
    assert t.files == {"/etc/resolv.conf": str(tmp_path / "resolv.conf"),
                       "/etc/hosts": str(tmp_path / "etc.hosts"),
                       "/etc/hostname": str(tmp_path / "etc.hostname")}


def test_a_container_that_does_not_run_is_not_found(tmp_path):
    assert target_from_state(STATE, tmp_path, "b") is None
    assert target_from_state(STATE, tmp_path, "nosuch") is None
    assert target_from_state({**STATE, "terminal": True}, tmp_path, "a") is None
    assert target_from_state({**STATE, "sandbox": None}, tmp_path, "a") is None


def test_an_argument_with_a_nul_byte_is_an_exec_error_not_a_traceback():
    """A query can carry `command=a%00b`: it must end as an error on the error channel (an
    ExecError), not as an exception out of the upgraded connection. Popen refuses it before
    forking, so nothing runs (the target is this test's own process and namespace)."""
    me = os.getpid()
    target = ExecTarget(netns_pid=me, netns_start=proc_start_ticks(me), hostname="h", files={},
                        uid=65534, gid=65534, env={"PATH": "/bin"}, workdir="/", pid=me,
                        start=proc_start_ticks(me))
    with pytest.raises(ExecError) as e:
        spawn_exec(target, ["echo", "a\x00b"], False, True, False, False)
    assert "null byte" in str(e.value)


def test_a_session_ends_when_its_container_ended_before_it_was_watched():
    """The container may end between exec_target's check and the session's watch on it: that
    is an end like any other (the session used to wait for it forever)."""
    gone = subprocess.Popen(["true"])
    start = proc_start_ticks(gone.pid)
    gone.wait()  # reaped: its PID names no process now
    target = ExecTarget(netns_pid=0, netns_start=0, hostname="h", files={}, uid=0, gid=0, env={},
                        workdir="/", pid=gone.pid, start=start or 0)

    async def watch():
        session = rc.Session(None, V5, rc.ExecOptions(["true"], "c", False, True, False, False))
        await asyncio.wait_for(session._container_ended(target), 5)

    asyncio.run(watch())
