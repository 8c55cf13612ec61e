"""`pods/NAME/exec`: remote command execution over WebSocket channel protocols (kubectl exec).

Theory of operation
- The request is checked as kube-apiserver checks it (pod 404, container choice and
  `container X is not valid for pod Y`, no node, PodExecOptions), and only then upgraded. The
  pod must run on this server's own node: exec is served here, by the API server, from the
  node agent's records (agent/runtime/podexec.py), not proxied to a kubelet; a pod of another
  node gets a 400 that says so.
- Protocols (the client offers them in Sec-WebSocket-Protocol; its first one we serve wins):
  `v5.channel.k8s.io` (kubectl >= 1.30; adds the CLOSE signal, `[255, channel]`, so stdin can
  be half-closed), `v4.channel.k8s.io` and `v4.base64.channel.k8s.io` (the Python client;
  the error channel carries a metav1.Status), `channel.k8s.io`, `base64.channel.k8s.io` and
  no subprotocol (v1: the error channel carries only an error's text). Each message is one
  channel byte (a digit character in base64 protocols, whose payload is base64 text) and its
  data: 0 stdin, 1 stdout, 2 stderr, 3 error, 4 resize (`{"Width":W,"Height":H}` JSON). SPDY
  (kubectl's fallback) is not served: such a request gets a 400 that says so.
- The session, as the kubelet and the API server's stream translator run it: after the
  upgrade an empty message on the lowest writable channel says the connection is up; a
  container that is not running is an InternalError on the error channel ("unable to upgrade
  connection: container not found"), as kube-apiserver 1.32 relays the kubelet's refusal;
  stdout and stderr are copied as the command writes them; when it has exited and its output
  is drained, the error channel gets Success or NonZeroExitCode with an ExitCode cause (so
  `kubectl exec` exits with the command's code), then the server sends a close frame and
  waits for the client's. The command's process group is killed when the client goes away
  and when the container's own process ends; what a command that ended left running in the
  background (`nohup x &`) keeps running, as in a container, until the pod ends.
- Pure parts (negotiation, framing, resize decoding, the final Status) are at the top and are
  tested without sockets; `serve_exec` is the I/O shell.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import orjson
from aiohttp import WSMsgType, web

from svcnet.api import errors
from svcnet.api.request import Target, query_bool
from svcnet.registry.store import Registry

log = logging.getLogger("svcnet.api.exec")

STDIN, STDOUT, STDERR, ERROR, RESIZE = 0, 1, 2, 3, 4
CLOSE = 255          # v5: [255, channel] half-closes `channel`
READ_SIZE = 32 * 1024
DRAIN_SECONDS = 2.0  # output still read after the command exited (its children may hold it open)
FIRST_SIZE_SECONDS = 0.5  # a TTY command waits this long at most for the terminal's size


@dataclass(frozen=True)
class Protocol:
    name: str
    base64: bool = False     # text messages: '0'+channel, then base64 data
    status: bool = False     # the error channel carries a metav1.Status (v4, v5)
    close: bool = False      # the CLOSE signal (v5)


PROTOCOLS: dict[str, Protocol] = {p.name: p for p in (
    Protocol("v5.channel.k8s.io", status=True, close=True),
    Protocol("v4.channel.k8s.io", status=True),
    Protocol("v4.base64.channel.k8s.io", base64=True, status=True),
    Protocol("channel.k8s.io"),
    Protocol("base64.channel.k8s.io", base64=True),
    Protocol(""),            # no subprotocol asked for: channel.k8s.io, as the kubelet does
)}


def negotiate(offered: list[str]) -> Protocol | None:
    """The first protocol of the client's list that is served (no list: v1); None if none."""
    if not offered:
        return PROTOCOLS[""]
    return next((PROTOCOLS[p] for p in offered if p and p in PROTOCOLS), None)


def offered_protocols(header: str) -> list[str]:
    return [p.strip() for p in (header or "").split(",") if p.strip()]


def encode(protocol: Protocol, channel: int, data: bytes) -> bytes | str:
    """One message of `data` on `channel`."""
    if protocol.base64:
        return chr(ord("0") + channel) + base64.b64encode(data).decode()
    return bytes((channel,)) + data


def decode(protocol: Protocol, message: bytes | str) -> tuple[int, bytes] | None:
    """(channel, data) of a client message; None for an empty or undecodable one (skipped,
    as wsstream does)."""
    raw = message.encode() if isinstance(message, str) else message
    if not raw:
        return None
    channel, data = raw[0], raw[1:]
    if protocol.base64:
        if channel == CLOSE:
            return channel, data
        channel -= ord("0")
        try:
            data = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            return None
    return channel, data


class ResizeDecoder:
    """The resize channel is a stream of JSON objects ({"Width":W,"Height":H}); client-go
    writes one per message with a newline, others without. `feed` returns the complete ones."""

    def __init__(self) -> None:
        self.buffer = ""
        self.decoder = json.JSONDecoder()

    def feed(self, data: bytes) -> list[tuple[int, int]]:
        self.buffer += data.decode(errors="replace")
        sizes = []
        while True:
            text = self.buffer.lstrip()
            if not text:
                self.buffer = ""
                return sizes
            try:
                obj, end = self.decoder.raw_decode(text)
            except ValueError:
                if len(text) > 4096:  # garbage, never a size: drop it
                    self.buffer = ""
                else:
                    self.buffer = text
                return sizes
            self.buffer = text[end:]
            if isinstance(obj, dict):
                try:
                    width, height = int(obj.get("Width") or 0), int(obj.get("Height") or 0)
                except (TypeError, ValueError):
                    continue
                if 0 <= width < 65536 and 0 <= height < 65536:
                    sizes.append((width, height))


def go_list(argv: list[str]) -> str:
    """A []string as Go's %v prints it."""
    return "[" + " ".join(argv) + "]"


def exit_status(code: int, argv: list[str]) -> dict:
    """The error channel's last word on a command that ran (the API server's stream
    translator: codeExitToStatusError over the runtime's CodeExitError)."""
    if code == 0:
        return {"metadata": {}, "status": "Success"}
    return {"metadata": {}, "status": "Failure",
            "message": f"command terminated with non-zero exit code: error executing command "
                       f"{go_list(argv)}, exit code {code}",
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]}}


def error_payload(protocol: Protocol, status: dict) -> bytes | None:
    """What the error channel carries for `status`: the Status (v4, v5), or for v1 an error's
    message and nothing on success."""
    if protocol.status:
        return orjson.dumps(status)
    if status.get("status") == "Success":
        return None
    return (status.get("message") or "").encode()


def wait_status(wait_returncode: int) -> int:
    """Popen's returncode as an exit code: a signal N is 128+N, as container runtimes say."""
    return 128 - wait_returncode if wait_returncode < 0 else wait_returncode


@dataclass(frozen=True)
class ExecOptions:
    command: list[str]
    container: str
    stdin: bool
    stdout: bool
    stderr: bool
    tty: bool


def exec_options(query) -> ExecOptions:
    """PodExecOptions from the query; 400 as the kubelet refuses them."""
    tty = query_bool(query.get("tty"))
    stdin, stdout = query_bool(query.get("stdin")), query_bool(query.get("stdout"))
    stderr = query_bool(query.get("stderr")) and not tty  # a TTY merges stderr into stdout
    command = query.getall("command", [])
    if not (stdin or stdout or stderr):
        raise errors.bad_request("you must specify at least 1 of stdin, stdout, stderr")
    if not command:
        raise errors.bad_request("you must specify at least one command for the container")
    return ExecOptions(command, query.get("container") or "", stdin, stdout, stderr, tty)


def choose_container(pod: dict, name: str, container: str) -> str:
    """The container to run in, as kube-apiserver's streamLocation picks it."""
    spec = pod.get("spec") or {}
    names = [c.get("name") for c in spec.get("containers") or []]
    init_names = [c.get("name") for c in spec.get("initContainers") or []]
    if not container:
        if len(names) == 1:
            return names[0]
        if not names:
            raise errors.bad_request(f"a container name must be specified for pod {name}")
        message = (f"a container name must be specified for pod {name}, choose one of: "
                   f"[{' '.join(names)}]")
        if init_names:
            message += f" or one of the init containers: [{' '.join(init_names)}]"
        raise errors.bad_request(message)
    if container not in names + init_names:
        raise errors.bad_request(f"container {container} is not valid for pod {name}")
    return container


def node_of_server(node_dir: Path | None) -> str | None:
    """The node whose agent this server runs (node.json in its data dir), if any."""
    if node_dir is None:
        return None
    try:
        return json.loads((node_dir / "node.json").read_text()).get("nodeName")
    except (OSError, ValueError, AttributeError):
        return None


def is_websocket(request: web.Request) -> bool:
    connection = [v.strip().lower() for v in request.headers.get("Connection", "").split(",")]
    return request.headers.get("Upgrade", "").lower() == "websocket" and "upgrade" in connection


# ---- the I/O shell --------------------------------------------------------------------------

async def serve_exec(request: web.Request, t: Target, registry: Registry,
                     node_dir: Path | None) -> web.StreamResponse:
    """GET or POST pods/NAME/exec. Errors before the upgrade are APIErrors (Status answers)."""
    from svcnet.agent.runtime import podexec

    opts = exec_options(request.query)
    pod = await registry.get(t.res, t.namespace, t.name)
    container = choose_container(pod, t.name, opts.container)
    node = (pod.get("spec") or {}).get("nodeName")
    if not node:
        raise errors.bad_request(f"pod {t.name} does not have a host assigned")
    own = node_of_server(node_dir)
    if node != own:
        raise errors.bad_request(
            f'pod {t.name} runs on node "{node}": this svcnet server serves exec only for the '
            f"pods of its own node" + (f' ("{own}")' if own else " (it runs no node agent)"))
    if not is_websocket(request):
        upgrade = request.headers.get("Upgrade", "")
        if upgrade.lower().startswith("spdy"):
            raise errors.bad_request(
                f"svcnet serves pods/exec over WebSocket only ({', '.join(p for p in PROTOCOLS if p)}); "
                f"the {upgrade} upgrade is not supported")
        raise errors.bad_request("Upgrade request required")
    offered = offered_protocols(request.headers.get("Sec-WebSocket-Protocol", ""))
    protocol = negotiate(offered)
    if protocol is None:
        raise errors.bad_request(f"requested protocol(s) are not supported: {go_list(offered)}; "
                                 f"supports {go_list([p for p in PROTOCOLS if p])}")
    assert node_dir is not None  # (it names the node: node_of_server read it)
    target = podexec.exec_target(node_dir / "pods", pod, container)

    ws = web.WebSocketResponse(protocols=(protocol.name,) if protocol.name else (),
                               autoping=True, compress=False, max_msg_size=4 * 1024 * 1024)
    await ws.prepare(request)
    session = Session(ws, protocol, opts)
    try:
        first = STDOUT if opts.stdout else STDERR if opts.stderr else ERROR
        try:
            await session.send(first, b"")  # "the connection is up"
        except ConnectionError:
            return ws  # the client is gone already
        if target is None:
            await session.finish(errors.internal(
                f'unable to upgrade connection: container not found ("{container}")').status())
            return ws
        size = await session.first_size() if opts.tty else None
        if size is None and ws.closed:
            return ws
        try:
            proc = podexec.spawn_exec(target, opts.command, opts.stdin, opts.stdout,
                                      opts.stderr, opts.tty, size)
        except (podexec.ExecError, OSError) as e:  # OSError: no pty or pipe (EMFILE...)
            await session.finish(errors.internal(
                f"error executing command in container: {e}").status())
            return ws
        log.info("exec in %s/%s container %s: %s (pid %d, %s)", t.namespace, t.name, container,
                 go_list(opts.command), proc.pid, protocol.name or "channel.k8s.io")
        try:
            status = await session.run(proc, target)
        except (asyncio.CancelledError, ConnectionError):
            raise  # the client or the server is going away
        except Exception as e:  # the response is a WebSocket now: say it on the error channel
            log.exception("exec in %s/%s", t.namespace, t.name)
            status = errors.internal(f"{type(e).__name__}: {e}").status()
        finally:
            proc.close()
        if status is not None:
            await session.finish(status)
        return ws
    finally:
        if not ws.closed:
            with contextlib.suppress(Exception):
                await ws.close()


class Session:
    """One upgraded exec connection: pumps between the WebSocket and the command."""

    def __init__(self, ws: web.WebSocketResponse, protocol: Protocol, opts: ExecOptions):
        self.ws = ws
        self.protocol = protocol
        self.opts = opts
        self.loop = asyncio.get_running_loop()
        self.resizes = ResizeDecoder()
        self.pending: list[tuple[int, bytes]] = []   # read before the command started
        self.stdin_open = opts.stdin

    async def send(self, channel: int, data: bytes) -> None:
        message = encode(self.protocol, channel, data)
        if isinstance(message, str):
            await self.ws.send_str(message)
        else:
            await self.ws.send_bytes(message)

    async def finish(self, status: dict) -> None:
        """The error channel's status, a close frame, and the client's close (bounded)."""
        payload = error_payload(self.protocol, status)
        with contextlib.suppress(ConnectionError, RuntimeError):
            if payload is not None:
                await self.send(ERROR, payload)
            await self.ws.close()

    async def run(self, proc, target) -> dict | None:
        """Until the command ends (its Status) or the client leaves (None)."""
        exited = asyncio.ensure_future(self._wait_fd(proc.pidfd)) if proc.pidfd is not None \
            else asyncio.ensure_future(self._poll_exit(proc))
        pumps = [asyncio.ensure_future(self._pump(fd, channel))
                 for fd, channel in ((proc.stdout, STDOUT), (proc.stderr, STDERR)) if fd is not None]
        reader = asyncio.ensure_future(self._read_client(proc))
        container = asyncio.ensure_future(self._container_ended(target))
        tasks = [exited, reader, container, *pumps]
        try:
            await asyncio.wait([exited, reader, container], return_when=asyncio.FIRST_COMPLETED)
            if not exited.done():
                proc.kill()  # the client left, or the container ended: the session ends too
                if reader.done():
                    return None
                await exited
            if pumps:
                await asyncio.wait(pumps, timeout=DRAIN_SECONDS)
            # What it started in the background keeps running, as in a container (`nohup x &`):
            # it ends with the container's sandbox (the pod's end sweeps its network namespace).
            code = wait_status(proc.proc.wait())
            for p in pumps:
                if not p.done():
                    p.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)
            if self.ws.closed:
                return None
            return exit_status(code, self.opts.command)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    # ---- the pumps --------------------------------------------------------------------------

    async def _wait_fd(self, fd: int, write: bool = False) -> None:
        future = self.loop.create_future()
        add, remove = ((self.loop.add_writer, self.loop.remove_writer) if write
                       else (self.loop.add_reader, self.loop.remove_reader))
        add(fd, lambda: future.done() or future.set_result(None))
        try:
            await future
        finally:
            remove(fd)

    async def _poll_exit(self, proc) -> None:
        while proc.proc.poll() is None:
            await asyncio.sleep(0.05)

    async def _container_ended(self, target) -> None:
        """Returns when the container's own process has ended (never if it cannot be watched)."""
        try:
            fd = os.pidfd_open(target.pid)
        except ProcessLookupError:
            return  # it ended since exec_target found it running
        except OSError:
            await asyncio.Event().wait()
            return
        try:
            from svcnet.agent.runtime.containers import proc_start_ticks
            if proc_start_ticks(target.pid) == target.start:
                await self._wait_fd(fd)
        finally:
            os.close(fd)

    async def _pump(self, fd: int, channel: int) -> None:
        """Copy the command's output to `channel` until end of file (EIO on a pty master
        whose slave is closed everywhere counts as one)."""
        while True:
            try:
                data = os.read(fd, READ_SIZE)
            except BlockingIOError:
                await self._wait_fd(fd)
                continue
            except OSError:
                return
            if not data:
                return
            await self.send(channel, data)

    async def _write(self, fd: int, data: bytes) -> bool:
        """All of `data` to the command's input; False once it no longer reads any."""
        view = memoryview(data)
        while view:
            try:
                n = os.write(fd, view)
            except BlockingIOError:
                await self._wait_fd(fd, write=True)
                continue
            except OSError:
                return False
            view = view[n:]
        return True

    async def first_size(self) -> tuple[int, int] | None:
        """With a TTY: the client's first terminal size, which clients send at once, so that
        the command starts on a terminal of the right size (waits FIRST_SIZE_SECONDS at most).
        Other messages read meanwhile are kept for `_read_client`."""
        deadline = self.loop.time() + FIRST_SIZE_SECONDS
        while (left := deadline - self.loop.time()) > 0:
            try:
                msg = await self.ws.receive(timeout=left)
            except asyncio.TimeoutError:
                return None
            if msg.type not in (WSMsgType.BINARY, WSMsgType.TEXT):
                if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED,
                                WSMsgType.ERROR):
                    return None
                continue
            frame = decode(self.protocol, msg.data)
            if frame is not None and frame[0] == RESIZE:
                sizes = self.resizes.feed(frame[1])
                if sizes:
                    return sizes[-1]
            elif frame is not None:
                self.pending.append(frame)
        return None

    async def _read_client(self, proc) -> None:
        """The client's messages: stdin, resizes, CLOSE; returns when the client is gone."""
        for frame in self.pending:
            await self._handle(proc, *frame)
        self.pending.clear()
        async for msg in self.ws:
            if msg.type in (WSMsgType.BINARY, WSMsgType.TEXT):
                frame = decode(self.protocol, msg.data)
                if frame is not None:
                    await self._handle(proc, *frame)

    async def _handle(self, proc, channel: int, data: bytes) -> None:
        if channel == STDIN and self.stdin_open and data:
            self.stdin_open = await self._write(proc.stdin, data)
        elif channel == RESIZE and self.opts.tty:
            for width, height in self.resizes.feed(data):
                with contextlib.suppress(OSError):
                    proc.resize(width, height)
        elif channel == CLOSE and self.protocol.close and data[:1] == bytes((STDIN,)) \
                and self.stdin_open:
            self.stdin_open = False
            if proc.tty:  # end of input on a terminal is its EOF character
                await self._write(proc.stdin, b"\x04")
            else:
                os.close(proc.stdin)
                proc.stdin = None

