"""Entering a pod: the few system calls that put a forked process inside a pod's sandbox.

`enter_pod(...)` runs in the child between fork and exec (a subprocess `preexec_fn`), so the
container process starts directly inside the pod with no helper process left around:
  1. join the pod's network namespace (setns on /run/netns/NAME);
  2. unshare a mount and a UTS namespace, make mounts private, bind-mount the pod's own
     /etc/resolv.conf, /etc/hosts and /etc/hostname over the node's, set the hostname;
  3. drop to the container's user and group (no supplementary groups);
Python 3.11 has no os.setns/os.unshare, hence ctypes on libc.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWNET = 0x40000000
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def _check(rc: int, what: str) -> None:
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def setns(path: str, nstype: int) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        _check(_libc.setns(fd, nstype), f"setns {path}")
    finally:
        os.close(fd)


def unshare(flags: int) -> None:
    _check(_libc.unshare(flags), "unshare")


def bind_mount(src: str, dst: str) -> None:
    _check(_libc.mount(src.encode(), dst.encode(), None, MS_BIND, None), f"bind {src} on {dst}")


def make_mounts_private() -> None:
    _check(_libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None), "make / private")


def sethostname(name: str) -> None:
    raw = name.encode()
    _check(_libc.sethostname(raw, len(raw)), "sethostname")


def enter_pod(netns: str, hostname: str, files: dict[str, str], uid: int | None,
              gid: int | None) -> None:
    """Called in the forked child; raises OSError (the exec then fails with it)."""
    setns(netns, CLONE_NEWNET)
    unshare(CLONE_NEWNS | CLONE_NEWUTS)
    make_mounts_private()
    for target, source in files.items():  # e.g. {"/etc/resolv.conf": ".../resolv.conf"}
        if os.path.exists(target):
            bind_mount(source, target)
    sethostname(hostname)
    if gid is not None:
        os.setgroups([])
        os.setgid(gid)
    if uid is not None:
        os.setuid(uid)
