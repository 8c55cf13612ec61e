"""Wait for a stop signal: agnhost's `pause` subcommand and the `registry.k8s.io/pause` image.

Both block SIGINT and SIGTERM before announcing themselves and then wait for them with
sigwait(2), so a signal sent right after startup can never be lost or kill the process early.

- `run(argv)` is agnhost pause (test/images/agnhost/pause/pause.go): prints "Paused", and on
  SIGINT/SIGTERM optionally sleeps `--delay-shutdown` seconds, prints "exiting N" and exits
  N = 1 for SIGINT, 2 for SIGTERM.
- `main(argv)` (`python -m svcnet.images.pause`) is the pause container (build/pause/linux/
  pause.c): warns on stderr when it is not PID 1, reaps children on SIGCHLD, and on SIGINT or
  SIGTERM prints "Shutting down, got signal: <name>" and exits 0; `-v` prints the version.
"""

from __future__ import annotations

import os
import signal
import sys
import time

from .base import FlagSet, out, run_command

FLAGS = FlagSet("pause", "Pauses the execution.")
FLAGS.add("delay-shutdown", int, 0,
          "Number of seconds to delay shutdown when receiving SIGTERM/SIGINT.")

_STOP = {signal.SIGINT, signal.SIGTERM}


def run(argv: list[str]) -> int:
    return run_command(FLAGS, argv, _pause)


def _pause(opts: dict) -> int:
    signal.pthread_sigmask(signal.SIG_BLOCK, _STOP)
    out("Paused\n")
    result = 1 if signal.sigwait(_STOP) == signal.SIGINT else 2
    if opts["delay-shutdown"] > 0:
        out(f"Sleeping {opts['delay-shutdown']} seconds before exit ...")
        time.sleep(opts["delay-shutdown"])
    out(f"exiting {result}\n")
    return result


def main(argv: list[str]) -> int:
    if any(arg.lower() == "-v" for arg in argv):
        out("pause.c svcnet\n")
        return 0
    waited = _STOP | {signal.SIGCHLD}
    signal.pthread_sigmask(signal.SIG_BLOCK, waited)
    if os.getpid() != 1:
        sys.stderr.write("Warning: pause should be the first process\n")
        sys.stderr.flush()
    while (signo := signal.sigwait(waited)) == signal.SIGCHLD:
        _reap()
    sys.stderr.write(f"Shutting down, got signal: {signal.strsignal(signo)}\n")
    return 0


def _reap() -> None:
    try:
        while os.waitpid(-1, os.WNOHANG)[0] > 0:
            pass
    except ChildProcessError:
        pass


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
