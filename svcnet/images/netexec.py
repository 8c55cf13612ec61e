"""agnhost netexec: HTTP and UDP servers with the endpoints Kubernetes' network tests drive.

Mirrors test/images/agnhost/netexec/netexec.go (agnhost 2.4x), on one asyncio loop:

- HTTP on `:--http-port` (dual-stack; HTTPS with `--tls-cert-file`/`--tls-private-key-file`),
  routed like Go's ServeMux: exact paths below, anything else is `/`, unclean paths get a 301.
  `/` "NOW: <Go time.Now()>"; `/hostname`, `/hostName` the hostname; `/clientip` the peer's
  "ip:port"; `/header?key=K` one request header (all of them as JSON without `key`);
  `/echo?msg=M&code=C`; `/redirect?location=L&code=C` (302 by default); `/healthz` 200 once the
  UDP server runs, else 412; `/readyz` the same but 503 "shutting down" after SIGTERM;
  `/shell?cmd=C` runs `/bin/sh -c C` and returns {"output","error"}; `/dial?request=R&host=H&
  port=P&protocol=http|udp&tries=N` makes N sequential attempts (a new connection each, 5 s
  timeout) and answers 200 with {"errors":[...],"responses":[...]} where, as in Go, "responses"
  is present only when the last attempt returned a non-empty body and "errors" only when
  non-empty; bad parameters give 400. `/exit?code=&timeout=&wait=` sleeps `wait`, then exits at
  once (timeout 0, no response) or shuts down gracefully within `timeout`; `/shutdown` exits 0.
  `--http-override=PATH` answers every request as a bare `GET PATH` (no headers, no client
  address, as Go's NewRequest builds it).
- UDP on `:--udp-port` (or each of `--udp-listen-addresses`; -1 disables), per datagram of the
  trimmed, lower-cased text: "hostname" -> hostname, "echo <msg>" -> msg, "clientip" -> the
  sender's "ip:port"; anything else is logged and not answered.
- SIGTERM: /readyz turns 503, the servers keep serving for `--delay-shutdown` seconds, then the
  process exits 0. SIGINT kills the process, as it does a Go program that does not catch it.

SCTP is not available (svcnet's kernels may lack it): `--sctp-port` is accepted and logged,
and `/dial?protocol=sctp` reports an error per attempt. `/upload` is not implemented (it falls
through to `/`, as an unknown path would).
"""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import time

from .base import (FlagSet, fatal, go_atoi, go_duration_text, go_exit, go_hostport, hostname,
                   listen_socket, log, parse_go_duration, run_command, syscall_text)
from .httpd import (Abort, DialError, HTTPServer, Request, Response, clean_path, http_error,
                    http_get, redirect)

_START = time.monotonic()
DIAL_TIMEOUT = 5.0

FLAGS = FlagSet("netexec", "Creates HTTP(S), UDP, and (optionally) SCTP servers with various "
                           "endpoints")
FLAGS.add("http-port", int, 8080, "HTTP Listen Port")
FLAGS.add("tls-cert-file", str, "", "File containing an x509 certificate for HTTPS.")
FLAGS.add("tls-private-key-file", str, "", "File containing an x509 private key matching "
                                           "--tls-cert-file")
FLAGS.add("udp-port", int, 8081, "UDP Listen Port")
FLAGS.add("sctp-port", int, -1, "SCTP Listen Port")
FLAGS.add("http-override", str, "", "Override the HTTP handler to always respond as if it were "
                                    "a GET with this path & params")
FLAGS.add("udp-listen-addresses", str, "", "A comma separated list of ip addresses the udp "
                                           "servers listen from")
FLAGS.add("delay-shutdown", int, 0, "Number of seconds to delay shutdown when receiving SIGTERM.")


def run(argv: list[str]) -> int:
    return run_command(FLAGS, argv, lambda opts: asyncio.run(Netexec(opts).main()))


def go_json(value) -> bytes:
    """encoding/json.Marshal: compact, sorted map keys, HTML characters escaped."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    for old, new in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"),
                     ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(old, new)
    return text.encode("utf-8", "replace")


def go_now() -> str:
    """time.Now().String(): "2006-01-02 15:04:05.999999999 -0700 MST m=+0.000000001"."""
    ns = time.time_ns()
    secs, frac = divmod(ns, 10**9)
    local = time.localtime(secs)
    text = time.strftime("%Y-%m-%d %H:%M:%S", local)
    if frac:
        text += f".{frac:09d}".rstrip("0")
    return f"{text} {time.strftime('%z %Z', local)} m=+{time.monotonic() - _START:.9f}"


def logged_hostname() -> str:
    name = hostname()
    log(f"hostname: {name}")
    return name


class Netexec:
    def __init__(self, opts: dict):
        self.opts = opts
        self.udp_ready = False
        self.sigterm = asyncio.Event()
        self.http = HTTPServer(self.serve)
        self.routes = {
            "/clientip": self.clientip, "/header": self.header, "/dial": self.dial,
            "/echo": self.echo, "/exit": self.exit, "/healthz": self.healthz,
            "/readyz": self.readyz, "/hostname": self.hostname, "/redirect": self.redirect,
            "/shell": self.shell, "/hostName": self.hostname, "/shutdown": self.shutdown,
        }

    async def main(self) -> None:
        loop = asyncio.get_running_loop()
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        loop.add_signal_handler(signal.SIGTERM, self.sigterm.set)
        loop.set_exception_handler(lambda _loop, ctx: log(ctx.get("message", "error")))
        udp_port, http_port = self.opts["udp-port"], self.opts["http-port"]
        try:
            if udp_port != -1:
                for address in self._udp_addresses():
                    sock = listen_socket(udp_port, socket.SOCK_DGRAM, address)
                    await loop.create_datagram_endpoint(UDPServer, sock=sock)
                    log(f"Started UDP server on port {address} {udp_port}")
                    self.udp_ready = True
            if self.opts["sctp-port"] != -1:
                log(f"SCTP is not supported by svcnet: not serving --sctp-port="
                    f"{self.opts['sctp-port']}")
            await self.http.listen(listen_socket(http_port, socket.SOCK_STREAM),
                                   self._tls_context())
        except OSError as e:
            fatal(e.strerror or str(e))
        log(f"Started HTTP server on port {http_port}")
        await self.sigterm.wait()
        if self.opts["delay-shutdown"] > 0:
            log(f"Sleeping {self.opts['delay-shutdown']} seconds before terminating...")
            await asyncio.sleep(self.opts["delay-shutdown"])
        go_exit(0)

    def _udp_addresses(self) -> list[str]:
        if not self.opts["udp-listen-addresses"]:
            return [""]
        addresses = set()
        for address in self.opts["udp-listen-addresses"].split(","):
            try:
                socket.inet_pton(socket.AF_INET6 if ":" in address else socket.AF_INET, address)
            except OSError:
                fatal(f"parseAddress: invalid address {address}")
            addresses.add(address)
        return sorted(addresses)

    def _tls_context(self):
        if not self.opts["tls-cert-file"]:
            return None
        import ssl
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        try:
            context.load_cert_chain(self.opts["tls-cert-file"],
                                    self.opts["tls-private-key-file"] or None)
        except (OSError, ssl.SSLError) as e:
            fatal(f"open {self.opts['tls-cert-file']}: {e}")
        return context

    async def serve(self, request: Request) -> Response:
        cleaned = clean_path(request.path)
        if cleaned != request.path and request.method != "CONNECT":
            query = "?" + request.raw_query if request.raw_query else ""
            return redirect(request, cleaned + query, 301)
        if self.opts["http-override"]:
            try:
                request = Request("GET", self.opts["http-override"])
            except ValueError as e:
                return http_error(f"override request failed: {e}", 500)
            request.path = clean_path(request.path)
        return await self.routes.get(request.path, self.root)(request)

    async def root(self, request: Request) -> Response:
        log("GET /")
        return Response(200, f"NOW: {go_now()}")

    async def hostname(self, request: Request) -> Response:
        log(f"GET {request.path}")
        return Response(200, logged_hostname())

    async def clientip(self, request: Request) -> Response:
        log("GET /clientip")
        return Response(200, request.remote_addr)

    async def header(self, request: Request) -> Response:
        key = request.form_value("key")
        if key:
            log(f"GET /header?key={key}")
            return Response(200, request.header(key))
        log("GET /header")
        return Response(200, go_json(request.header_map()))

    async def echo(self, request: Request) -> Response:
        msg, code_text = request.form_value("msg"), request.form_value("code")
        log(f"GET /echo?msg={msg}&code={code_text}")
        if not code_text:
            return Response(200, msg)
        try:
            code = go_atoi(code_text)
        except ValueError:
            return Response(200, f"argument 'code' must be an integer or empty, got "
                                 f"{json.dumps(code_text)}\n")
        return _status_response(code, msg)

    async def redirect(self, request: Request) -> Response:
        location, code_text = request.form_value("location"), request.form_value("code")
        log(f"{request.method} /redirect?msg={location}&code={code_text}")
        code = 302
        if code_text:
            try:
                code = go_atoi(code_text)
            except ValueError:
                return Response(200, f"argument 'code' must be an integer or empty, got "
                                     f"{json.dumps(code_text)}\n")
        if not 100 <= code <= 999:
            raise _abort(code)
        return redirect(request, location, code)

    async def healthz(self, request: Request) -> Response:
        log("GET /healthz")
        return Response(200 if self.udp_ready else 412)

    async def readyz(self, request: Request) -> Response:
        log("GET /readyz")
        if self.sigterm.is_set():
            return Response(503, "shutting down")
        return Response(200, "ok") if self.udp_ready else Response(412)

    async def shutdown(self, request: Request) -> Response:
        log("GET /shutdown")
        go_exit(0)

    async def exit(self, request: Request) -> Response:
        wait_text, timeout_text = request.form_value("wait"), request.form_value("timeout")
        code_text = request.form_value("code")
        log(f"GET /exit?code={code_text}&timeout={timeout_text}&wait={wait_text}")
        try:
            timeout = parse_go_duration(timeout_text) if timeout_text else 0.0
        except ValueError:
            return Response(200, f"argument 'timeout' must be a valid golang duration or empty, "
                                 f"got {json.dumps(timeout_text)}\n")
        try:
            wait = parse_go_duration(wait_text) if wait_text else 0.0
        except ValueError:
            return Response(200, f"argument 'wait' must be a valid golang duration or empty, "
                                 f"got {json.dumps(wait_text)}\n")
        try:
            code = go_atoi(code_text) if code_text else 0
        except ValueError:
            return Response(200, f"argument 'code' must be an integer [0-127] or empty, got "
                                 f"{json.dumps(code_text)}\n")
        log(f"Will begin shutdown in {go_duration_text(wait)}, allowing "
            f"{go_duration_text(timeout)} for connections to close, then will exit with {code}")
        await asyncio.sleep(max(wait, 0))
        if timeout == 0:
            go_exit(code)
        asyncio.get_running_loop().create_task(self._graceful_exit(code, timeout))
        return Response(200)

    async def _graceful_exit(self, code: int, timeout: float) -> None:
        result = await self.http.shutdown(timeout)
        log(f"Graceful shutdown completed with: {result}")
        go_exit(code)

    async def shell(self, request: Request) -> Response:
        command = request.form_value("shellCommand") or request.form_value("cmd")
        log(f"GET /shell?cmd={command}")
        output: dict[str, str] = {}
        try:
            proc = await asyncio.create_subprocess_exec(
                "/bin/sh", "-c", command, stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
            data, _ = await proc.communicate()
            if data:
                output["output"] = data.decode("utf-8", "replace")
            if proc.returncode > 0:
                output["error"] = f"exit status {proc.returncode}"
            elif proc.returncode < 0:
                output["error"] = f"signal: {_signal_text(-proc.returncode)}"
        except OSError as e:
            output["error"] = f"fork/exec /bin/sh: {syscall_text(e)}"
        log("Output: map[" + " ".join(f"{k}:{v}" for k, v in sorted(output.items())) + "]")
        return Response(200, go_json(output))

    async def dial(self, request: Request) -> Response:
        host, port = request.query("host"), request.query("port")
        payload, protocol = request.query("request"), request.query("protocol")
        tries_text = request.query("tries")
        log(f"GET /dial?host={host}&protocol={protocol}&port={port}&request={payload}"
            f"&tries={tries_text}")
        tries = 1
        if tries_text:
            try:
                tries = go_atoi(tries_text)
            except ValueError as e:
                return http_error(f"tries parameter is invalid. {e}", 400)
        if not payload:
            return http_error("request parameter not specified. <nil>", 400)
        kind = protocol.lower()
        if kind not in ("", "http", "udp", "sctp"):
            return http_error(f"unsupported protocol. {protocol}", 400)
        try:
            family, address = await _resolve(host, port, kind)
        except OSError as e:
            return http_error(f"host and/or port param are invalid. {e}", 400)
        errors: list[str] = []
        responses: list[str] = []
        last = ""
        for _ in range(tries):
            try:
                if kind in ("", "http"):
                    last = await http_get(f"http://{go_hostport(address)}/{payload}",
                                          DIAL_TIMEOUT)
                elif kind == "udp":
                    last = await _dial_udp(payload, family, address)
                else:
                    raise DialError("sctp dial failed. err:SCTP is not supported by svcnet")
                responses.append(last)
            except DialError as e:
                last = ""
                errors.append(str(e))
        output = {}
        if last:
            output["responses"] = responses
        if errors:
            output["errors"] = errors
        return Response(200, go_json(output))


def _status_response(code: int, body: str) -> Response:
    """w.WriteHeader(code) then a write, as Go's ResponseWriter takes them."""
    if not 100 <= code <= 999:
        raise _abort(code)
    if 100 <= code < 200 and code != 101:
        return Response(200, body, informational=code)
    return Response(code, body)


def _abort(code: int) -> Exception:
    log(f"http: panic serving: invalid WriteHeader code {code}")
    return Abort()


def _signal_text(number: int) -> str:
    text = signal.strsignal(number) or f"signal {number}"
    return text[:1].lower() + text[1:]


async def _resolve(host: str, port: str, kind: str) -> tuple[int, tuple]:
    """net.ResolveTCPAddr/ResolveUDPAddr of host:port: IPv4 preferred, "" is localhost."""
    sock_type = socket.SOCK_DGRAM if kind == "udp" else socket.SOCK_STREAM
    if port and not port.isdigit():
        try:
            port = str(socket.getservbyname(port, "udp" if kind == "udp" else "tcp"))
        except OSError:
            raise OSError(f"lookup {kind or 'tcp'}/{port}: unknown port") from None
    if port and int(port) > 65535:
        raise OSError(f"address {port}: invalid port")
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(
            host or "localhost", int(port or 0), type=sock_type)
    except socket.gaierror:
        raise OSError(f"lookup {host}: no such host") from None
    family, _, _, _, address = next(
        (info for info in infos if info[0] == socket.AF_INET), infos[0])
    return family, address


async def _dial_udp(payload: str, family: int, address: tuple) -> str:
    loop = asyncio.get_running_loop()
    remote = go_hostport(address)
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        try:
            sock.connect(address)
        except OSError as e:
            raise DialError(f"udp dial failed. err:dial udp {remote}: connect: "
                            f"{syscall_text(e)}") from None
        ends = f"{go_hostport(sock.getsockname())}->{remote}"
        try:
            await loop.sock_sendall(sock, payload.encode("utf-8", "surrogateescape"))
        except OSError as e:
            raise DialError(f"udp connection write failed. err:write udp {ends}: write: "
                            f"{syscall_text(e)}") from None
        reason, data = "<nil>", b""
        try:
            data = await asyncio.wait_for(loop.sock_recv(sock, 2048), DIAL_TIMEOUT)
        except TimeoutError:
            reason = f"read udp {ends}: i/o timeout"
        except OSError as e:
            reason = f"read udp {ends}: read: {syscall_text(e)}"
        if not data:
            raise DialError(f"reading from udp connection failed. err:'{reason}'")
        return data.decode("utf-8", "replace")


class UDPServer(asyncio.DatagramProtocol):
    """netexec's UDP commands, one datagram in, at most one out."""

    transport: asyncio.DatagramTransport

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:
        text = data[:2048].decode("utf-8", "surrogateescape").strip().lower()
        client = go_hostport(addr)
        if text == "hostname":
            log("Sending udp hostName response")
            reply = logged_hostname()
        elif text.startswith("echo "):
            reply = text.split(" ", 1)[1]
            log(f"Echoing {reply} to UDP client {client}")
        elif text == "clientip":
            log(f"Sending clientip back to UDP client {client}")
            reply = client
        else:
            if text:
                log(f"Unknown UDP command received from {client}: {text}")
            return
        self.transport.sendto(reply.encode("utf-8", "surrogateescape"), addr)

    def error_received(self, exc: Exception) -> None:
        log(f"UDP server error: {exc}")
