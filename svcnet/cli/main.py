"""The `svcnet` command: `svcnet server` (control plane, and from issue 4 on, the node agent)."""

from __future__ import annotations

import argparse
import asyncio
import faulthandler
import gc
import logging
import signal
import socket
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
    s.add_argument("--service-cidr", default=DEFAULT_SERVICE_CIDR,
                   help="ClusterIP range (default 10.96.0.0/12)")
    s.add_argument("--cluster-cidr", default="10.244.0.0/16",
                   help="pod network; each node gets a /24 of it (default 10.244.0.0/16)")
    s.add_argument("--nodeport-range", default="30000-32767",
                   help="NodePort range (default 30000-32767)")
    s.add_argument("--repair-interval", type=float, default=180.0,
                   help="seconds between allocator repair passes (default 180)")
    s.add_argument("--no-agent", action="store_true", help="control plane only")
    _dns_args(s)
    s.add_argument("--controllers", default="*",
                   help='controllers to run: "*" (all), names, "-name" to disable one; names: '
                        "nodeipam, endpointslice, endpoints, garbagecollector, loadbalancer, "
                        "replicaset, deployment")
    _lb_pool_arg(s)
    s.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    a = sub.add_parser("agent", help="run a node agent against an API server")
    _api_server_args(a)
    a.add_argument("--data-dir", default=DEFAULT_DATA_DIR, help="pod state, logs (default /var/lib/svcnet)")
    a.add_argument("--node-name", default=None, help="this node's name (default: hostname)")
    a.add_argument("--node-ip", default=None, help="this node's address (default: the default "
                   "route's interface address, else the first global IPv4 address)")
    a.add_argument("--cluster-cidr", default="10.244.0.0/16")
    a.add_argument("--service-cidr", default=DEFAULT_SERVICE_CIDR)
    _dns_args(a)
    a.add_argument("--no-dns", action="store_true", help="do not run the cluster DNS server")
    a.add_argument("--no-schedule", action="store_true",
                   help="do not bind pods that have no node to this node")
    a.add_argument("--parent-pid", type=int, default=0, help=argparse.SUPPRESS)
    a.add_argument("-v", "--verbose", action="store_true", help="debug logging")

    n = sub.add_parser("dns", help="run the cluster DNS server against an API server")
    _api_server_args(n)
    n.add_argument("--listen", action="append", default=[], type=_address(53), metavar="ADDR[:PORT]",
                   help="ADDR[:PORT] to answer on, UDP and TCP (repeatable; default 127.0.0.1:53)")
    _dns_args(n)
    n.add_argument("--workers", type=int, default=1,
                   help="processes sharing the addresses with SO_REUSEPORT (default 1)")
    n.add_argument("--reuse-port", action="store_true",
                   help="bind with SO_REUSEPORT (a new server can start beside a running one)")
    n.add_argument("--pid-file", help="write 'PID START-TICKS' here once answering")
    n.add_argument("--metrics-listen", metavar="ADDR[:PORT]", default=None, type=_address(9153),
                   help="serve CoreDNS's /metrics, /health and /ready here over HTTP, port 9153 "
                        "unless given (default: none; the node agent uses its DNS address)")
    n.add_argument("--parent-pid", type=int, default=0, help=argparse.SUPPRESS)
    n.add_argument("-v", "--verbose", action="store_true", help="debug logging")

    d = sub.add_parser("down", help="stop this node's pods and remove everything svcnet made here")
    d.add_argument("--data-dir", default=DEFAULT_DATA_DIR)
    d.add_argument("-v", "--verbose", action="store_true", help="debug logging")

    c = sub.add_parser("controller-manager",
                       help="run the controllers against an API server (started by `server`)")
    c.add_argument("--kubeconfig", required=True, help="kubeconfig of the API server to use")
    c.add_argument("--controllers", default="*",
                   help='"*" (all), names, "-name" to disable one; names: nodeipam, '
                        "endpointslice, endpoints, garbagecollector, loadbalancer, replicaset, "
                        "deployment")
    c.add_argument("--cluster-cidr", default="10.244.0.0/16", help="pod network for node IPAM")
    _lb_pool_arg(c)
    c.add_argument("--parent-pid", type=int, default=0,
                   help="stop when this process (svcnet server) is no longer the parent")
    c.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return p


def _lb_pool(value: str) -> str:
    from svcnet.controllers.lbipam import Pool

    try:
        Pool.parse([value])
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return value


def _address(default_port: int):
    """An argparse type: ADDR[:PORT] -> (ADDR, PORT)."""
    def convert(value: str) -> tuple[str, int]:
        from svcnet.agent.dns.process import parse_listen
        try:
            return parse_listen(value, default_port)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None
    return convert


def _api_server_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--kubeconfig", help="kubeconfig of the API server (or --server/--token-file)")
    p.add_argument("--server", help="API server URL, e.g. https://192.168.1.2:6443")
    p.add_argument("--token-file", help="file holding the bearer token")
    p.add_argument("--ca-file", help="CA certificate of the API server")


def _dns_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--cluster-domain", default="cluster.local", help="DNS domain of the cluster")
    p.add_argument("--resolv-conf", default="/etc/resolv.conf",
                   help="upstream nameservers of the cluster DNS for other names, and of pods "
                        "with dnsPolicy Default (as kubelet's flag; an empty file: other names "
                        "are REFUSED)")


def _lb_pool_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--lb-pool", action="append", default=[], type=_lb_pool, metavar="RANGE",
                   help="addresses for LoadBalancer Services, e.g. 192.168.1.240-192.168.1.250 "
                        "or 192.168.1.240/28 (repeatable); without it a LoadBalancer gets the "
                        "nodes' addresses")


async def _serve(args: argparse.Namespace) -> int:
    from svcnet.controlplane import ControlPlane, Options

    node_ip = args.node_ip or netinfo.default_node_ip() or "127.0.0.1"
    cp = ControlPlane(Options(
        data_dir=Path(args.data_dir), bind=args.bind, port=args.port, node_ip=node_ip,
        service_cidr=args.service_cidr, cluster_cidr=args.cluster_cidr,
        nodeport_range=args.nodeport_range,
        repair_interval=args.repair_interval, controllers=args.controllers,
        agent=not args.no_agent, node_name=args.node_name or socket.gethostname(),
        lb_pool=args.lb_pool, cluster_domain=args.cluster_domain, resolv_conf=args.resolv_conf,
        extra_sans=netinfo.local_ipv4_addresses()))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):  # before anything starts: a stop is never lost
        loop.add_signal_handler(sig, stop.set)
    await cp.start()
    # The server holds few long-lived objects but decodes many short-lived ones per LIST:
    # collect young objects less often, and exclude what startup built from every collection.
    gc.set_threshold(50_000, 20, 100)
    gc.freeze()
    log.info("API server listening on https://%s:%d (advertised as %s)", args.bind, args.port, node_ip)
    log.info("kubeconfig: %s  (export KUBECONFIG=%s)", cp.kubeconfig, cp.kubeconfig)
    await stop.wait()
    log.info("shutting down")
    await cp.stop()
    return 0


async def _controller_manager(args: argparse.Namespace) -> int:
    from svcnet import controllermanager

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await controllermanager.run(Path(args.kubeconfig), args.controllers, args.cluster_cidr, stop,
                                args.parent_pid, args.lb_pool)
    return 0


def _client_config(args: argparse.Namespace):
    from svcnet.client import Config

    if args.kubeconfig:
        return Config.from_kubeconfig(args.kubeconfig)
    if args.server and args.token_file:
        return Config(args.server, Path(args.token_file).read_text().strip(), args.ca_file)
    log.error("svcnet %s needs --kubeconfig, or --server and --token-file", args.command)
    return None


def _credential_args(args: argparse.Namespace) -> list[str]:
    """The same API credentials, as arguments for a child process (the DNS server)."""
    if args.kubeconfig:
        return ["--kubeconfig", args.kubeconfig]
    return ["--server", args.server, "--token-file", args.token_file,
            *(["--ca-file", args.ca_file] if args.ca_file else [])]


async def _run_api_client(args: argparse.Namespace, user_agent: str, make) -> int:
    """Run `make(client)` (an object with start() and stop()) against the API until SIGTERM,
    SIGINT or, with --parent-pid, the parent's death; a failed start is raised."""
    from svcnet.client import Client
    from svcnet.controllermanager import exit_with_parent

    config = _client_config(args)
    if config is None:
        return 2
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if args.parent_pid:
        loop.create_task(exit_with_parent(args.parent_pid, stop))
    client = Client(config, user_agent=user_agent)
    component = make(client)
    done = getattr(component, "done", None)  # set by a component that stops by itself
    if done is not None:
        async def relay() -> None:
            await done.wait()
            stop.set()
        loop.create_task(relay())
    starting = asyncio.create_task(component.start())
    stopping = asyncio.create_task(stop.wait())
    await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
    if starting.done() and starting.exception():
        raise starting.exception()
    await stop.wait()
    if starting.done():
        await component.stop()
    else:
        starting.cancel()
    await client.close()
    return 0


async def _dns(args: argparse.Namespace) -> int:
    from svcnet.agent.dns.process import DNSProcess

    return await _run_api_client(args, "svcnet-dns", lambda client: DNSProcess(
        client, args.listen or [("127.0.0.1", 53)],
        args.cluster_domain, args.resolv_conf, reuse_port=args.reuse_port or args.workers > 1,
        pid_file=args.pid_file, metrics_listen=args.metrics_listen))


async def _agent(args: argparse.Namespace) -> int:
    from svcnet.agent.agent import Agent

    # Like the server: informer caches are large and long-lived, syncs allocate many short-lived
    # objects; collect young objects less often so a full sync is not dominated by GC passes.
    gc.set_threshold(50_000, 20, 100)
    return await _run_api_client(args, "svcnet-agent", lambda client: Agent(
        client, Path(args.data_dir), args.node_name or socket.gethostname(),
        args.node_ip or netinfo.default_node_ip() or "127.0.0.1",
        args.cluster_cidr, args.service_cidr, schedule=not args.no_schedule,
        resolv_conf=args.resolv_conf, dns=None if args.no_dns else {
            "credentials": _credential_args(args), "domain": args.cluster_domain,
            "resolv_conf": args.resolv_conf}))


async def _down(args: argparse.Namespace) -> int:
    from svcnet.agent.down import down

    await down(Path(args.data_dir))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if getattr(args, "lb_pool", None):  # each range was checked alone; now together (overlaps)
        from svcnet.controllers.lbipam import Pool

        try:
            Pool.parse(args.lb_pool)
        except ValueError as e:
            parser.error(str(e))
    faulthandler.register(signal.SIGUSR1)  # `kill -USR1 PID` dumps every thread's stack
    logging.basicConfig(level=logging.DEBUG if getattr(args, "verbose", False) else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    if args.command == "server":
        return asyncio.run(_serve(args))
    if args.command == "controller-manager":
        return asyncio.run(_controller_manager(args))
    if args.command == "agent":
        return asyncio.run(_agent(args))
    if args.command == "down":
        return asyncio.run(_down(args))
    if args.command == "dns":
        from svcnet.agent.dns.process import fork_workers

        if args.workers > 1 and not fork_workers(args.workers):
            args.pid_file = None  # a forked worker: the first process is the one to stop
            args.metrics_listen = None  # and the one serving metrics
        return asyncio.run(_dns(args))
    return 2


if __name__ == "__main__":
    sys.exit(main())
