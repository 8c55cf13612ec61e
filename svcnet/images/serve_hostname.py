"""agnhost serve-hostname: answer every request with the pod's hostname.

Mirrors test/images/agnhost/serve-hostname/serve_hostname.go (also the older standalone
`serve_hostname` image, same flags). On `:--port` (default 9376, dual-stack):

- `--http` (default true): every HTTP request, any method and path, gets 200 and the hostname;
  `--close` adds `Connection: close` so each connection carries one request;
- `--tcp`: each accepted connection gets the hostname written, then is closed;
- `--udp`: each datagram gets the hostname back.

HTTP cannot be combined with TCP or UDP (a fatal error: pass `--http=false`). On SIGTERM the
program logs, keeps serving and exits 0 after 60 s ("Awaiting pod deletion"), which normally
means the kubelet kills it first; SIGINT kills it at once.
"""

from __future__ import annotations

import asyncio
import signal
import socket

from .base import FlagSet, fatal, go_hostport, hostname, listen_socket, log, run_command
from .httpd import HTTPServer, Request, Response

AWAIT_DELETION_SECONDS = 60

FLAGS = FlagSet("serve-hostname", "Serves the hostname through HTTP / TCP / UDP on the given port.")
FLAGS.add("tcp", bool, False, "Serve raw over TCP.")
FLAGS.add("udp", bool, False, "Serve raw over UDP.")
FLAGS.add("http", bool, True, "Serve HTTP.")
FLAGS.add("close", bool, False, "Close connection per each HTTP request.")
FLAGS.add("port", int, 9376, "Port number.")


def run(argv: list[str]) -> int:
    return run_command(FLAGS, argv, lambda opts: asyncio.run(_serve(opts)))


class _UDP(asyncio.DatagramProtocol):
    def __init__(self, name: str):
        self.name = name.encode()

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:
        log(f"UDP request from {go_hostport(addr)}")
        self.transport.sendto(self.name, addr)


async def _serve(opts: dict) -> int:
    if opts["http"] and (opts["tcp"] or opts["udp"]):
        fatal("Can't serve TCP/UDP mode and HTTP mode at the same time")
    loop = asyncio.get_running_loop()
    terminated = asyncio.Event()
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    loop.add_signal_handler(signal.SIGTERM, terminated.set)
    name, port = hostname(), opts["port"]

    async def on_tcp(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        log(f"TCP request from {go_hostport(writer.get_extra_info('peername'))}")
        writer.write(name.encode())
        writer.close()

    async def on_http(request: Request) -> Response:
        log(f"HTTP request from {request.remote_addr}")
        return Response(200, name, close=opts["close"])

    try:
        if opts["tcp"]:
            await asyncio.start_server(on_tcp, sock=listen_socket(port, socket.SOCK_STREAM))
        if opts["udp"]:
            await loop.create_datagram_endpoint(
                lambda: _UDP(name), sock=listen_socket(port, socket.SOCK_DGRAM))
        if opts["http"]:
            await HTTPServer(on_http).listen(listen_socket(port, socket.SOCK_STREAM))
    except OSError as e:
        fatal(e.strerror or str(e))
    log(f"Serving on port {port}.")
    await terminated.wait()
    log("Shutting down after receiving signal: terminated.")
    log("Awaiting pod deletion.")
    await asyncio.sleep(AWAIT_DELETION_SECONDS)
    return 0
