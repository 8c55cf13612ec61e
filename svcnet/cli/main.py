"""The `svcnet` command: `svcnet server` (control plane, and from issue 4 on, the node agent)."""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import logging
import signal
import sys
from pathlib import Path

from svcnet import netinfo

log = logging.getLogger("svcnet")

DEFAULT_DATA_DIR = "/var/lib/svcnet"
DEFAULT_SERVICE_CIDR = "10.96.0.0/12"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="svcnet", description="Kubernetes Services, for real.")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("server", help="run the API server and controllers (and the node agent)")
    s.add_argument("--data-dir", default=DEFAULT_DATA_DIR, help="state, credentials, kubeconfig")
    s.add_argument("--bind", default="0.0.0.0", help="address to listen on (default: all)")
    s.add_argument("--port", type=int, default=6443, help="HTTPS port of the API (default 6443)")
    s.add_argument("--node-ip", default=None,
                   help="address the server advertises (default: the default route's interface "
                        "address, else the first global IPv4 address)")
    s.add_argument("--node-name", default=None, help="this node's name (default: hostname)")
    s.add_argument("--service-cidr", default=DEFAULT_SERVICE_CIDR)
    s.add_argument("--no-agent", action="store_true", help="control plane only")
    s.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return p


def _first_service_ip(cidr: str) -> str:
    net = ipaddress.ip_network(cidr, strict=False)
    return str(net.network_address + 1)


async def _serve(args: argparse.Namespace) -> int:
    from aiohttp import web

    from svcnet import pki
    from svcnet.api.server import APIConfig, APIServer, server_ssl_context
    from svcnet.registry.store import Registry
    from svcnet.store.sqlite import SQLiteBackend

    data_dir = Path(args.data_dir)
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    node_ip = args.node_ip or netinfo.default_node_ip() or "127.0.0.1"
    ips = ["127.0.0.1", node_ip, _first_service_ip(args.service_cidr)] + netinfo.local_ipv4_addresses()
    if args.bind not in ("0.0.0.0", "::"):
        ips.append(args.bind)
    dns = ["localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
           "kubernetes.default.svc.cluster.local"]
    creds = pki.ensure_credentials(data_dir, dns, ips)

    backend = SQLiteBackend(str(data_dir / "state.db"))
    await backend.start()
    registry = Registry(backend)
    api = APIServer(registry, APIConfig(creds.token, node_ip, args.port))
    await api.bootstrap()

    runner = web.AppRunner(api.app(), access_log=None, handler_cancellation=True,
                           shutdown_timeout=2.0)
    await runner.setup()
    site = web.TCPSite(runner, args.bind, args.port,
                       ssl_context=server_ssl_context(creds.server_cert, creds.server_key),
                       backlog=1024, reuse_address=True)
    await site.start()
    api.start_background()

    host = "127.0.0.1" if args.bind in ("0.0.0.0", "::") else args.bind
    kubeconfig = data_dir / "kubeconfig"
    pki.write_kubeconfig(kubeconfig, f"https://{host}:{args.port}", creds)
    log.info("API server listening on https://%s:%d (advertised as %s)", args.bind, args.port, node_ip)
    log.info("kubeconfig: %s  (export KUBECONFIG=%s)", kubeconfig, kubeconfig)
    if not args.no_agent:
        log.info("node agent: not part of this build yet; running the control plane only")

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("shutting down")
    await api.stop_background()
    await runner.cleanup()
    await backend.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if getattr(args, "verbose", False) else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    if args.command == "server":
        try:
            import uvloop

            uvloop.install()
        except ImportError:
            pass
        return asyncio.run(_serve(args))
    return 2


if __name__ == "__main__":
    sys.exit(main())
