"""Cluster DNS: `<service>.<namespace>.svc.cluster.local` and the rest of the Kubernetes DNS
specification, served at the `kube-system/kube-dns` Service (10.96.0.10) of every node.

answer.py is the pure answerer (a Catalog of Services/EndpointSlices -> records); wire.py the
DNS message format; server.py the response cache, its invalidation and the UDP/TCP listeners;
forward.py the upstream forwarding for other names; process.py the `svcnet dns` process with
its watches; node.py how the node agent runs it and points kube-dns at it.
"""
