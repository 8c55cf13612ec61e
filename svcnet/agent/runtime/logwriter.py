"""svcnet's conmon: copies one container's stdout and stderr into its CRI-format log file.

Theory of operation
- One writer process per container instance, started by `containers.spawn` just before the
  container, in a session of its own: like the container it outlives the agent, so an adopted
  pod keeps logging across agent restarts with nothing to reconnect. It holds the read ends of
  the container's stdout and stderr pipes (file descriptors named on its command line) and
  ends when both reach end of file, i.e. when the container and everything that inherited its
  output have exited.
- Every chunk read becomes CRI log lines, as the kubelet's readers expect them
  (`<RFC3339Nano timestamp> <stdout|stderr> <F|P> <content>`): each complete line is an `F`
  line; bytes after the last newline of a read are written at once as a `P` (partial) line,
  so nothing waits in memory (a crash loses nothing, `kubectl logs -f` sees a prompt without a
  newline) and readers join partial lines. Timestamps are taken when the bytes are read, in
  UTC with nine fractional digits.
- Runs as `python -I -S logwriter.py LOG STDOUT_FD STDERR_FD`: standard library only, so it
  starts in milliseconds. Failing to write (disk full, the pod's directory removed) never
  blocks the container: the writer keeps draining its pipes.
"""

from __future__ import annotations

import os
import selectors
import signal
import sys
import time

READ_SIZE = 64 * 1024


def timestamp(ns: int) -> bytes:
    """RFC 3339 in UTC with nine fractional digits, from nanoseconds since the epoch."""
    seconds, frac = divmod(ns, 1_000_000_000)
    return (time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{frac:09d}Z").encode()


def cri_lines(ns: int, stream: bytes, chunk: bytes) -> bytes:
    """The CRI log lines for one chunk read from `stream` at time `ns`."""
    ts = timestamp(ns)
    parts = chunk.split(b"\n")
    out = [b"%s %s F %s\n" % (ts, stream, line) for line in parts[:-1]]
    if parts[-1]:
        out.append(b"%s %s P %s\n" % (ts, stream, parts[-1]))
    return b"".join(out)


def run(log_path: str, fds: dict[int, bytes]) -> None:
    try:
        out = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o640)
    except OSError:
        out = -1
    sel = selectors.DefaultSelector()
    for fd, stream in fds.items():
        sel.register(fd, selectors.EVENT_READ, stream)
    open_fds = len(fds)
    while open_fds:
        for key, _ in sel.select():
            try:
                chunk = os.read(key.fd, READ_SIZE)
            except InterruptedError:
                continue
            except OSError:
                chunk = b""
            if not chunk:
                sel.unregister(key.fd)
                os.close(key.fd)
                open_fds -= 1
                continue
            if out >= 0:
                try:
                    os.write(out, cri_lines(time.time_ns(), key.data, chunk))
                except OSError:
                    pass


def main(argv: list[str]) -> int:
    # Keyboard and hang-up signals are the agent's or the container's business, not ours.
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGPIPE):
        signal.signal(sig, signal.SIG_IGN)
    log_path, stdout_fd, stderr_fd = argv[1], int(argv[2]), int(argv[3])
    run(log_path, {stdout_fd: b"stdout", stderr_fd: b"stderr"})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
