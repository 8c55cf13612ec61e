"""agnhost, the image registry.k8s.io/e2e-test-images/agnhost: `python -m svcnet.images.agnhost`.

Like the Go binary (a cobra root command named "app"), the first non-flag argument picks the
subcommand and the rest are its flags. Implemented: `netexec`, `serve-hostname`, `pause`; each
module's `run(args)` returns the exit code, and is imported only when chosen so that `pause`
starts without asyncio. klog's logging flags (`--v=2`, `--logtostderr`, ...) are accepted and
ignored before or after the subcommand, as agnhost's persistent flags are.

No arguments, `help` or `--help` print the usage and exit 0 (cobra's behaviour). Any other
subcommand, including agnhost's own that svcnet does not implement, and any usage error, is
reported on stderr with exit status 2 (the Go binary would print the error and exit 0, which
would hide the mistake from the pod's status).
"""

from __future__ import annotations

import importlib
import sys

from .base import KLOG_FLAGS, out

SUBCOMMANDS = {
    "netexec": ("netexec", "Creates HTTP(S), UDP, and (optionally) SCTP servers with various "
                           "endpoints"),
    "pause": ("pause", "Pauses the execution"),
    "serve-hostname": ("serve_hostname", "Serves the hostname"),
}

USAGE = "Usage:\n  app [command]\n\nAvailable Commands:\n" + "".join(
    f"  {name:<16}{summary}\n" for name, (_, summary) in sorted(SUBCOMMANDS.items())
) + "\nUse \"app [command] --help\" for more information about a command.\n"


def main(argv: list[str]) -> int:
    index = _subcommand_index(argv)
    if index is None:
        out(USAGE)
        return 0
    name = argv[index]
    rest = argv[:index] + argv[index + 1:]
    if name == "help":
        out(USAGE)
        return 0
    if name not in SUBCOMMANDS:
        sys.stderr.write(f'Error: agnhost subcommand "{name}" is not implemented by svcnet '
                         f'(available: {", ".join(sorted(SUBCOMMANDS))})\n')
        return 2
    module = importlib.import_module(f"{__package__}.{SUBCOMMANDS[name][0]}")
    return module.run(rest)


def _subcommand_index(argv: list[str]) -> int | None:
    """The position of the first non-flag argument, skipping klog flags' values."""
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            return i + 1 if i + 1 < len(argv) else None
        if not arg.startswith("-"):
            return i
        name, has_value, _ = arg.lstrip("-").partition("=")
        if name in ("h", "help"):
            return None
        if KLOG_FLAGS.get(name) and not has_value:
            i += 1
        i += 1
    return None


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
