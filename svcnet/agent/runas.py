"""Run a built-in image's module as an unprivileged user:

    python -m svcnet.agent.runas [--private-mounts] UID GID -- MODULE [ARGS...]

The pod runtime execs the venv's interpreter as root (an unprivileged user may not be allowed
to exec it: it can live under /root, mode 700) and this launcher drops privileges before the
image's code runs: no supplementary groups, then GID, then UID; then `MODULE` runs as
`__main__` with `sys.argv = [MODULE, *ARGS]`, like `python -m MODULE ARGS`.

Python keeps importing lazily after the drop, so the interpreter's files must stay readable:
with `--private-mounts` (the caller promises this process is in its own mount namespace, as
every container is) any directory on the interpreter's paths that the user could not traverse
is covered with a small tmpfs that re-exposes only those paths, bind-mounted from the
originals. This changes nothing outside the container's mount namespace. Without the flag, or if
that fails, the modules already imported are all the image gets (a warning is printed).
"""

from __future__ import annotations

import os
import runpy
import stat
import sys


def _traversable(path: str, uid: int, gid: int) -> bool:
    try:
        st = os.stat(path)
    except OSError:
        return True  # nothing to expose
    if uid == 0:
        return True
    if st.st_uid == uid:
        return bool(st.st_mode & stat.S_IXUSR)
    if st.st_gid == gid:
        return bool(st.st_mode & stat.S_IXGRP)
    return bool(st.st_mode & stat.S_IXOTH)


def _needed_paths() -> list[str]:
    paths = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix,
             os.path.dirname(os.path.realpath(sys.executable))}
    paths.update(p for p in sys.path if p and os.path.isdir(p))
    return sorted(os.path.realpath(p) for p in paths)


def _blocked_ancestor(path: str, uid: int, gid: int) -> str | None:
    """The highest strict ancestor of `path` that `uid` cannot traverse."""
    parts = path.strip("/").split("/")
    for i in range(len(parts) - 1):
        ancestor = "/" + "/".join(parts[: i + 1])
        if not _traversable(ancestor, uid, gid):
            return ancestor
    return None


def expose_interpreter(uid: int, gid: int) -> None:
    from svcnet.agent.nsenter import _check, _libc, bind_mount  # noqa: F401 (root-only helpers)

    MS_NOSUID, MS_NODEV = 2, 4
    blocked: dict[str, list[str]] = {}
    for path in _needed_paths():
        top = _blocked_ancestor(path, uid, gid)
        if top is not None:
            blocked.setdefault(top, []).append(path)
    for top, paths in blocked.items():
        # Keep only the outermost paths: an inner one is exposed with its parent.
        outer = [p for p in paths if not any(p != q and p.startswith(q + "/") for q in paths)]
        fds = {p: os.open(p, os.O_PATH | os.O_DIRECTORY) for p in outer}
        try:
            _check(_libc.mount(b"tmpfs", top.encode(), b"tmpfs", MS_NOSUID | MS_NODEV,
                               b"mode=0755,size=64k"), f"tmpfs on {top}")
            for p, fd in fds.items():
                os.makedirs(p, mode=0o755, exist_ok=True)
                bind_mount(f"/proc/self/fd/{fd}", p)
        finally:
            for fd in fds.values():
                os.close(fd)


def main(argv: list[str]) -> int:
    private = False
    if argv and argv[0] == "--private-mounts":
        private, argv = True, argv[1:]
    if len(argv) < 4 or argv[2] != "--":
        sys.stderr.write("usage: python -m svcnet.agent.runas [--private-mounts] UID GID -- "
                         "MODULE [ARGS...]\n")
        return 2
    uid, gid, module, args = int(argv[0]), int(argv[1]), argv[3], argv[4:]
    if os.geteuid() == 0 and uid != 0:
        if private:
            try:
                expose_interpreter(uid, gid)
            except OSError as e:
                sys.stderr.write(f"svcnet runas: warning: cannot expose the interpreter: {e}\n")
        os.setgroups([])
        os.setgid(gid)
        os.setuid(uid)
    elif os.geteuid() == 0:
        os.setgroups([])
        os.setgid(gid)
    sys.argv = [module, *args]
    runpy.run_module(module, run_name="__main__", alter_sys=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
