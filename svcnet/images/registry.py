"""Which program a container runs: the built-in images and Kubernetes' command/args rules.

`resolve(image, command, args)` returns the argv the pod runtime execs, or None when the image
is unknown and the container gives no command. The image reference is reduced to its
repository (registry host, tag and digest dropped; `docker.io/library/` too), then:

- agnhost (`[registry.k8s.io|k8s.gcr.io|gcr.io/]e2e-test-images/agnhost`, any tag): entrypoint
  `python -m svcnet.images.agnhost`, default args `["pause"]` as in its Dockerfile
  (`ENTRYPOINT ["/agnhost"]`, `CMD ["pause"]`). A `command` naming the binary (`/agnhost`,
  `agnhost`, or the `agnhost-2` link the entrypoint tests use) means agnhost with the rest of
  the command before `args`; any other command runs as-is on the host (`/bin/sh -c ...`).
- the legacy standalone `serve_hostname` image (`ENTRYPOINT ["/serve_hostname"]`): agnhost's
  `serve-hostname` with the container's args.
- `pause` (`registry.k8s.io/pause`, `k8s.gcr.io/pause`, any tag): `python -m
  svcnet.images.pause`, which ignores its args as pause.c does.
- `svcnet/hello` (the seed example): `python -m svcnet.images.hello`, an HTTP server answering
  "Hello World!" (args such as `--port 8080` pass through).
- busybox and alpine: no entrypoint, `CMD ["sh"]`, so `command + args` run on the host, or
  `args` alone, or `sh`.
- anything else runs its explicit `command + args` on the host, and is unknown (None) without.

Kubernetes' rules decide how `command` and `args` combine with the image's ENTRYPOINT and CMD:
a command replaces both (args follow it); args alone replace CMD; neither keeps both.
"""

from __future__ import annotations

import os
import sys

K8S_REGISTRIES = {"", "registry.k8s.io", "k8s.gcr.io", "gcr.io", "staging-k8s.gcr.io"}
AGNHOST_REPOS = {"e2e-test-images/agnhost", "kubernetes-e2e-test-images/agnhost"}
AGNHOST_BINARIES = {"agnhost", "agnhost-2"}
SERVE_HOSTNAME_REPOS = {"serve_hostname", "google_containers/serve_hostname"}
PAUSE_REPOS = {"pause", "google_containers/pause", "pause-amd64", "google_containers/pause-amd64"}
SHELL_IMAGES = {"busybox", "alpine"}

AGNHOST = [sys.executable, "-m", "svcnet.images.agnhost"]
PAUSE = [sys.executable, "-m", "svcnet.images.pause"]
HELLO = [sys.executable, "-m", "svcnet.images.hello"]


def resolve(image: str, command: list[str] | None, args: list[str] | None) -> list[str] | None:
    command, args = list(command or []), list(args or [])
    registry, repo = split_image(image)
    builtin = registry in K8S_REGISTRIES
    if builtin and repo in AGNHOST_REPOS:
        if command and os.path.basename(command[0]) in AGNHOST_BINARIES:
            return AGNHOST + command[1:] + args
        return _combine(AGNHOST, ["pause"], command, args)
    if builtin and repo in SERVE_HOSTNAME_REPOS:
        if command and os.path.basename(command[0]) == "serve_hostname":
            command = []
        return _combine(AGNHOST + ["serve-hostname"], [], command, args)
    if builtin and repo in PAUSE_REPOS:
        if command and os.path.basename(command[0]) == "pause":
            command = []
        return _combine(PAUSE, [], command, args)
    if repo == "svcnet/hello":
        return _combine(HELLO, [], command, args)
    if repo.rsplit("/", 1)[-1] in SHELL_IMAGES:
        return _combine([], ["sh"], command, args)
    return command + args if command else None


def split_image(image: str) -> tuple[str, str]:
    """"registry.k8s.io/e2e-test-images/agnhost:2.53@sha256:..." -> (registry, repository)."""
    name = image.strip().split("@", 1)[0]
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > slash:
        name = name[:colon]
    first, _, rest = name.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        registry, repo = first, rest
    else:
        registry, repo = "", name
    if registry in ("", "docker.io", "index.docker.io") and repo.startswith("library/"):
        registry, repo = "", repo[len("library/"):]
    return registry, repo


def _combine(entrypoint: list[str], cmd: list[str], command: list[str],
             args: list[str]) -> list[str]:
    if command:
        return command + args
    return entrypoint + (args or cmd)
