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
- Rotation, as the kubelet's container log manager does it (containerLogMaxSize 10Mi,
  containerLogMaxFiles 5): when the file reaches MAX_SIZE it is renamed `<LOG>.<UTC time>`
  (to the nanosecond, so names sort in rotation order) and a new one is started; only the
  newest MAX_FILES - 1 rotated files are kept. `kubectl logs` reads the current file, as it
  does from a kubelet (and `-f` goes on from a rotated file to the new one).
- Runs as `python -I -S logwriter.py LOG STDOUT_FD STDERR_FD [MAX_SIZE MAX_FILES]`: standard
  library only, so it starts in milliseconds. Failing to write (disk full, the pod's directory
  removed) never blocks the container: the writer keeps draining its pipes.
"""

from __future__ import annotations

import os
import selectors
import signal
import sys
import time

READ_SIZE = 64 * 1024
MAX_SIZE = 10 * 1024 * 1024
MAX_FILES = 5


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


class LogFile:
    """The container's log file, rotated at `max_size` bytes; never raises."""

    def __init__(self, path: str, max_size: int = MAX_SIZE, max_files: int = MAX_FILES):
        self.path, self.max_size, self.max_files = path, max_size, max_files
        self.fd, self.size = -1, 0
        self._open()

    def _open(self) -> None:
        try:
            self.fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC,
                              0o640)
            self.size = os.fstat(self.fd).st_size
        except OSError:
            self.fd = -1

    def write(self, data: bytes) -> None:
        if self.fd < 0:
            return
        try:
            os.write(self.fd, data)
        except OSError:
            return
        self.size += len(data)
        if self.size >= self.max_size:
            self.rotate()

    def rotate(self) -> None:
        # <LOG>.<UTC time to the nanosecond>: names sort in rotation order
        seconds, ns = divmod(time.time_ns(), 1_000_000_000)
        target = f"{self.path}.{time.strftime('%Y%m%d-%H%M%S', time.gmtime(seconds))}.{ns:09d}"
        try:
            os.rename(self.path, target)
            directory, base = os.path.split(self.path)
            rotated = sorted(f for f in os.listdir(directory) if f.startswith(base + "."))
            for old in rotated[:max(0, len(rotated) - (self.max_files - 1))]:
                os.unlink(os.path.join(directory, old))
        except OSError:
            pass
        os.close(self.fd)
        self._open()


def run(out: LogFile, fds: dict[int, bytes]) -> None:
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
            out.write(cri_lines(time.time_ns(), key.data, chunk))


def main(argv: list[str]) -> int:
    # Keyboard and hang-up signals are the agent's or the container's business, not ours.
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGPIPE):
        signal.signal(sig, signal.SIG_IGN)
    log_path, stdout_fd, stderr_fd = argv[1], int(argv[2]), int(argv[3])
    limits = [int(x) for x in argv[4:6]]
    run(LogFile(log_path, *limits), {stdout_fd: b"stdout", stderr_fd: b"stderr"})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
