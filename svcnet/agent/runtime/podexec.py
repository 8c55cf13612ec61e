"""Running a command in a running container: the runtime's half of `kubectl exec` (CRI Exec).

Theory of operation
- The pod runtime records in `<pod dir>/state.json` what each container was started with: the
  sandbox holder (PID + start time; its network namespace is the pod's), each container's
  process (PID + start time), user, group and environment (service variables included, as the
  container got them). `exec_target` reads that record (no round trip to the agent: the API
  server of the node calls it with its agent's data dir) and answers None unless the container
  is running now. `target_from_state` is its pure core.
- `spawn_exec` starts the command the way `containers.spawn` starts a container: in the pod's
  network namespace (entered through a descriptor opened and checked against the holder's start
  time first, so a reused PID can never put it elsewhere), in a private mount + UTS namespace
  carrying the pod's /etc/resolv.conf, /etc/hosts and /etc/hostname, with the container's
  environment, workingDir, user and group (no supplementary groups), as a session leader (the
  whole session is signalled as a group). With a TTY its stdin, stdout and stderr are the slave
  of a new pseudo-terminal, which becomes its controlling terminal (stderr is merged, as with
  any TTY); otherwise pipes, and /dev/null for a stream nobody asked for.
- The process gets PR_SET_PDEATHSIG(SIGKILL), set last (the kernel clears it on a credential
  change): no exec session outlives the process serving it. (The signal follows the *thread*
  that forked: call `spawn_exec` from one that lives as long as the server, the event loop's;
  a fork + exec takes a few ms.) That process kills the session's group when the client leaves
  and when the container's own process ends (as a container runtime ends the container's exec
  sessions with it). Once the command has ended, what it left in the background (`nohup x &`)
  keeps running, as in a container, until the pod's sandbox is swept.
"""

from __future__ import annotations

import ctypes
import fcntl
import json
import os
import signal
import struct
import subprocess
import termios
from dataclasses import dataclass
from pathlib import Path

from svcnet.agent.nsenter import _libc
from svcnet.agent.runtime.containers import (DEFAULT_GID, DEFAULT_PATH, DEFAULT_UID, STATE_FILE,
                                             alive, become_container, pod_dir, pod_hostname, pod_mounts,
                                             proc_start_ticks)

PR_SET_PDEATHSIG = 1


class ExecError(Exception):
    """The command could not be started; the message says why, as the runtime reports it."""


@dataclass
class ExecTarget:
    netns_pid: int          # the sandbox holder: /proc/PID/ns/net is the pod's namespace
    netns_start: int
    hostname: str
    files: dict[str, str]   # node path -> the pod's file, bind-mounted over it
    uid: int
    gid: int
    env: dict[str, str]
    workdir: str
    pid: int                # the container's own process
    start: int


@dataclass
class ExecProcess:
    proc: subprocess.Popen
    pidfd: int | None
    stdin: int | None    # where the client's input goes (pipe or pty master), non-blocking
    stdout: int | None   # what the command writes (pipe or pty master), non-blocking
    stderr: int | None   # (None with a TTY: merged into stdout)
    tty: bool

    @property
    def pid(self) -> int:
        return self.proc.pid

    def resize(self, width: int, height: int) -> None:
        """TIOCSWINSZ on the terminal (the command gets SIGWINCH); nothing without a TTY."""
        if self.tty and self.stdout is not None:
            set_window_size(self.stdout, width, height)

    def kill(self) -> None:
        """SIGKILL to the session's process group (the command and what it started)."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def close(self) -> None:
        """Kill the command if it still runs, reap it and release every descriptor
        (idempotent). Once it has ended, what it left in the background keeps running."""
        if self.proc.poll() is None:
            self.kill()
            self.proc.wait()
        fds = {self.stdin, self.stdout, self.stderr, self.pidfd}
        self.stdin = self.stdout = self.stderr = self.pidfd = None
        for fd in fds - {None}:
            os.close(fd)


def set_window_size(fd: int, width: int, height: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", height, width, 0, 0))


def target_from_state(state: dict, directory: Path, container: str) -> ExecTarget | None:
    """The running `container` of a pod record (state.json), or None if it is not running."""
    sandbox = state.get("sandbox") or {}
    if not sandbox.get("pid") or state.get("terminal"):
        return None
    record = next((c for c in state.get("containers") or []
                   if c.get("name") == container and c.get("running") and c.get("pid")), None)
    if record is None:
        return None
    pod = state.get("pod") or {}
    spec = next((c for c in ((pod.get("spec") or {}).get("initContainers") or [])
                 + ((pod.get("spec") or {}).get("containers") or []) if c.get("name") == container),
                {})
    return ExecTarget(
        netns_pid=int(sandbox["pid"]), netns_start=int(sandbox.get("start") or 0),
        hostname=pod_hostname(pod),
        files=pod_mounts(directory),
        uid=int(record.get("uid", DEFAULT_UID)), gid=int(record.get("gid", DEFAULT_GID)),
        env=dict(record.get("env") or {"PATH": DEFAULT_PATH}),
        workdir=spec.get("workingDir") or "/",
        pid=int(record["pid"]), start=int(record.get("start") or 0))


def exec_target(pods_dir: Path, pod: dict, container: str) -> ExecTarget | None:
    """The running `container` of `pod` on this node, checked against the live processes."""
    meta = pod["metadata"]
    directory = pod_dir(pods_dir, meta.get("namespace") or "default", meta["name"], meta["uid"])
    try:
        state = json.loads((directory / STATE_FILE).read_text())
    except (OSError, ValueError):
        return None
    target = target_from_state(state, directory, container)
    if target is None or not alive(target.pid, target.start) \
            or not alive(target.netns_pid, target.netns_start):
        return None
    return target


def _nonblocking(fd: int) -> int:
    os.set_blocking(fd, False)
    return fd


def spawn_exec(target: ExecTarget, argv: list[str], stdin: bool, stdout: bool, stderr: bool,
               tty: bool, size: tuple[int, int] | None = None) -> ExecProcess:
    """Fork + exec `argv` inside the container (blocking, a few ms). With a TTY, `size`
    (width, height) is the terminal's from the start. Raises ExecError."""
    if not argv:
        raise ExecError("no command")
    try:
        netns = os.open(f"/proc/{target.netns_pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    except OSError as e:
        raise ExecError(f"the pod's network namespace is gone: {e}") from e
    ours: list[int] = []     # the parent's ends
    theirs: list[int] = []   # the child's ends, closed here once it has them
    try:
        if proc_start_ticks(target.netns_pid) != target.netns_start:
            raise ExecError("the pod's sandbox is gone")
        env = dict(target.env)
        if tty:
            env.setdefault("TERM", "xterm")
            master, slave = os.openpty()
            ours.append(master)
            theirs.append(slave)
            os.fchown(slave, target.uid, -1)
            if size is not None:
                set_window_size(master, *size)
            child_in = child_out = child_err = slave
        else:
            child_in = child_out = child_err = subprocess.DEVNULL
            if stdin:
                r, w = os.pipe2(os.O_CLOEXEC)
                ours.append(w)
                theirs.append(r)
                child_in = r
            if stdout:
                r, w = os.pipe2(os.O_CLOEXEC)
                ours.append(r)
                theirs.append(w)
                child_out = w
            if stderr:
                r, w = os.pipe2(os.O_CLOEXEC)
                ours.append(r)
                theirs.append(w)
                child_err = w
        proc = _start(target, argv, env, netns, child_in, child_out, child_err, tty)
    except BaseException:
        for fd in ours:
            os.close(fd)
        raise
    finally:
        os.close(netns)
        for fd in theirs:
            os.close(fd)
    try:
        pidfd = os.pidfd_open(proc.pid)
    except OSError:
        pidfd = None
    if tty:
        master = _nonblocking(ours[0])
        return ExecProcess(proc, pidfd, master if stdin else None, master, None, True)
    it = iter(_nonblocking(fd) for fd in ours)
    return ExecProcess(proc, pidfd, next(it) if stdin else None, next(it) if stdout else None,
                       next(it) if stderr else None, False)


def _start(target: ExecTarget, argv: list[str], env: dict[str, str], netns: int, child_in,
           child_out, child_err, tty: bool) -> subprocess.Popen:
    err_r, err_w = os.pipe2(os.O_CLOEXEC)

    def child() -> None:
        # Between fork and exec: system calls only. The session is new (start_new_session).
        try:
            become_container(f"/proc/self/fd/{netns}", target.hostname, target.files,
                             target.workdir, (target.uid, target.gid))
            if tty:  # a session leader (start_new_session) takes its terminal as controlling
                fcntl.ioctl(0, termios.TIOCSCTTY, 0)
            if _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
                raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG)")
        except BaseException as e:  # noqa: BLE001 - reported to the parent through the pipe
            os.write(err_w, f"{e}".encode()[:1000])
            raise

    try:
        return subprocess.Popen(argv, env=env, stdin=child_in, stdout=child_out,
                                stderr=child_err, preexec_fn=child, start_new_session=True,
                                close_fds=True)
    except FileNotFoundError:
        raise ExecError(f'exec: "{argv[0]}": executable file not found in $PATH') from None
    except PermissionError:
        raise ExecError(f'exec: "{argv[0]}": permission denied') from None
    except ValueError as e:  # a NUL byte in an argument or variable: refused before the fork
        raise ExecError(f"exec: {e}") from None
    except (OSError, subprocess.SubprocessError) as e:
        os.close(err_w)
        err_w = -1
        detail = os.read(err_r, 1000).decode(errors="replace")
        raise ExecError(f"exec: {detail or e}") from None
    finally:
        if err_w >= 0:
            os.close(err_w)
        os.close(err_r)
