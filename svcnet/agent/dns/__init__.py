"""Cluster DNS: `<service>.<namespace>.svc.cluster.local` and the rest of the Kubernetes DNS
specification, served at the `kube-system/kube-dns` Service (10.96.0.10) of every node.

answer.py is the pure answerer (a Catalog of Services/EndpointSlices -> records); wire.py the
DNS message format; server.py the response cache, its invalidation and the UDP/TCP listeners;
forward.py the upstream forwarding for other names; process.py the `svcnet dns` process with
its watches; node.py how the node agent runs it and points kube-dns at it.
"""

import ipaddress


def cluster_dns_ip(service_cidr: str) -> str:
    """The kube-dns ClusterIP: the tenth address of the service CIDR (10.96.0.10 by default), as
    kubeadm picks it. The control plane creates the Service there; pods' resolv.conf names it."""
    return str(ipaddress.ip_network(service_cidr).network_address + 10)
