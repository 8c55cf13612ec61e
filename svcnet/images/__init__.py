"""Built-in container images: Kubernetes' test images reimplemented as standalone programs.

svcnet has no container registry. Pods are processes in network namespaces, so the few images
that Kubernetes' own Service tests use are provided here as Python programs that the pod runtime
execs as the container's process, with the container's args:

- `registry.resolve(image, command, args)` maps a container spec to the argv to exec;
- `agnhost` is `registry.k8s.io/e2e-test-images/agnhost` (subcommands `netexec`,
  `serve-hostname`, `pause`); `pause` is `registry.k8s.io/pause`.

The programs use only the standard library (asyncio for the servers), start in well under
150 ms, and log like the Go originals: `log.Printf` lines on stderr, `fmt.Print` on stdout.
"""
