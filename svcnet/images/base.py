"""What the built-in images share: Go-style logging, flags, addresses and sockets.

The images mirror Go programs (agnhost is cobra + pflag + the `log` package), so this module
reproduces the observable parts of that runtime:

- `log` writes `2006/01/02 15:04:05 message` lines to stderr with one write(2) each, like Go's
  `log.Printf` (unbuffered, so nothing is lost when a handler calls `go_exit`); `fatal` is
  `log.Fatalf` (exit status 1); `go_exit` is `os.Exit`: no cleanup, no waiting for requests.
- `FlagSet` parses the pflag syntax: `--name=value`, `--name value`, a bare `--name` for
  booleans, `--` ends the flags, flags and positionals may interleave. Single-dash long names
  (`-port=9376`, Go's `flag` package syntax used by the older standalone images) are accepted too.
  Errors raise `UsageError` carrying pflag's message; `-h`/`--help` raise `HelpRequested`.
  agnhost's root command also takes klog's logging flags (some tests pass them); they are
  accepted everywhere and ignored.
- `go_hostport` formats a socket address the way Go's `net.Addr.String()` does: `ip:port`,
  `[v6]:port`, and IPv4-mapped IPv6 addresses unmapped.
- `listen_socket` binds `:port` like Go's `net.Listen`: one dual-stack IPv6 socket accepting
  IPv4 too, or plain IPv4 where the kernel has no IPv6.
- `go_atoi`, `parse_go_duration` and `go_duration_text` are strconv.Atoi, time.ParseDuration
  and Duration.String(), with Go's error texts, for the query parameters agnhost parses.
"""

from __future__ import annotations

import errno
import os
import re
import socket
import time

# klog.InitFlags, as agnhost's root command adds them: name -> takes a value.
KLOG_FLAGS = {
    "add_dir_header": False, "alsologtostderr": False, "log_backtrace_at": True,
    "log_dir": True, "log_file": True, "log_file_max_size": True, "logtostderr": False,
    "one_output": False, "skip_headers": False, "skip_log_headers": False,
    "stderrthreshold": True, "v": True, "vmodule": True,
}


def log(message: str) -> None:
    stamp = time.strftime("%Y/%m/%d %H:%M:%S")
    line = f"{stamp} {message}"
    if not line.endswith("\n"):
        line += "\n"
    _write(2, line)


def out(text: str) -> None:
    """fmt.Print to stdout."""
    _write(1, text)


def _write(fd: int, text: str) -> None:
    data = text.encode("utf-8", "surrogateescape")
    try:
        while data:
            data = data[os.write(fd, data):]
    except OSError:
        pass        # a closed log pipe must not take the server down


def fatal(message: str) -> None:
    log(message)
    go_exit(1)


def go_exit(code: int) -> None:
    os._exit(code & 0xFF)


def hostname() -> str:
    """os.Hostname(): the UTS namespace's hostname, i.e. the pod's."""
    return socket.gethostname()


def go_hostport(addr) -> str:
    """net.Addr.String() for a Python socket address tuple."""
    host, port = addr[0], addr[1]
    if host.startswith("::ffff:") and "." in host:
        host = host[7:]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def listen_socket(port: int, kind: int, host: str = "") -> socket.socket:
    """A bound (and, for TCP, listening) non-blocking socket for `host:port`.

    An empty host means all addresses, dual-stack when the kernel has IPv6. Raises OSError with
    Go's wording (`listen tcp :8080: bind: address already in use`) on failure.
    """
    proto = "tcp" if kind == socket.SOCK_STREAM else "udp"
    shown = f"{'[' + host + ']' if ':' in host else host}:{port}"
    if host:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        candidates = [(family, host)]
    else:
        candidates = [(socket.AF_INET6, "::"), (socket.AF_INET, "0.0.0.0")]
    for family, bind_host in candidates:
        try:
            sock = socket.socket(family, kind)
        except OSError as e:
            if e.errno in (errno.EAFNOSUPPORT, errno.EPROTONOSUPPORT) and not host:
                continue
            raise OSError(e.errno, f"listen {proto} {shown}: socket: {syscall_text(e)}") from None
        try:
            if family == socket.AF_INET6 and not host:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            if kind == socket.SOCK_STREAM:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((bind_host, port))
            if kind == socket.SOCK_STREAM:
                sock.listen(4096)
        except OSError as e:
            sock.close()
            if e.errno == errno.EADDRNOTAVAIL and family == socket.AF_INET6 and not host:
                continue        # IPv6 disabled in this namespace: IPv4 only, as Go falls back
            raise OSError(e.errno, f"listen {proto} {shown}: bind: {syscall_text(e)}") from None
        sock.setblocking(False)
        return sock
    raise OSError(errno.EAFNOSUPPORT, f"listen {proto} {shown}: no usable address family")


def syscall_text(e: OSError) -> str:
    """Go's text for an errno: glibc's strerror, lower-cased ("connection refused")."""
    text = os.strerror(e.errno) if e.errno else str(e)
    return text[:1].lower() + text[1:]


def go_atoi(text: str) -> int:
    """strconv.Atoi, with its error wording."""
    if not re.fullmatch(r"[+-]?[0-9]+", text):
        raise ValueError(f'strconv.Atoi: parsing "{text}": invalid syntax')
    value = int(text)
    if not -(1 << 63) <= value < (1 << 63):
        raise ValueError(f'strconv.Atoi: parsing "{text}": value out of range')
    return value


_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0,
                   "m": 60.0, "h": 3600.0}
_DURATION_PART = re.compile(r"([0-9]*\.?[0-9]*)(ns|us|µs|μs|ms|s|m|h)")


def parse_go_duration(text: str) -> float:
    """time.ParseDuration ("1m30s", "300ms", "0"), in seconds."""
    body, sign = text, 1.0
    if body.startswith(("+", "-")):
        body, sign = body[1:], (-1.0 if body[0] == "-" else 1.0)
    if body == "0":
        return 0.0
    pos, total = 0, 0.0
    while pos < len(body):
        m = _DURATION_PART.match(body, pos)
        if not m or m.group(1) in ("", "."):
            break
        total += float(m.group(1)) * _DURATION_UNITS[m.group(2)]
        pos = m.end()
    if not body or pos < len(body):
        raise ValueError(f'time: invalid duration "{text}"')
    return sign * total


def go_duration_text(seconds: float) -> str:
    """time.Duration.String() for the log lines that print one ("1.5s", "0s", "2m0s")."""
    if seconds == 0:
        return "0s"
    sign, s = ("-" if seconds < 0 else ""), abs(seconds)
    if s < 1:
        for unit, scale in (("ms", 1e-3), ("µs", 1e-6), ("ns", 1e-9)):
            if s >= scale:
                return f"{sign}{s / scale:.9g}{unit}"
    hours, rest = divmod(s, 3600)
    minutes, secs = divmod(rest, 60)
    text = f"{secs:.9f}".rstrip("0").rstrip(".") + "s"
    if hours:
        return f"{sign}{int(hours)}h{int(minutes)}m{text}"
    if minutes:
        return f"{sign}{int(minutes)}m{text}"
    return sign + text


class UsageError(Exception):
    """A command-line error; the message is pflag's/cobra's."""


class HelpRequested(Exception):
    pass


class FlagSet:
    """A pflag-compatible parser for int, bool and string flags."""

    def __init__(self, command: str, summary: str):
        self.command = command
        self.summary = summary
        self._flags: dict[str, tuple[type, object, str]] = {}

    def add(self, name: str, kind: type, default, help_text: str) -> None:
        self._flags[name] = (kind, default, help_text)

    def parse(self, argv: list[str], max_args: int | None = 0) -> dict:
        values = {name: spec[1] for name, spec in self._flags.items()}
        positionals: list[str] = []
        i = 0
        while i < len(argv):
            arg = argv[i]
            i += 1
            if arg == "--":
                positionals.extend(argv[i:])
                break
            if not arg.startswith("-") or arg == "-":
                positionals.append(arg)
                continue
            body = arg[2:] if arg.startswith("--") else arg[1:]
            name, has_value, value = body.partition("=")
            if name in ("h", "help") and not has_value:
                raise HelpRequested()
            if name in KLOG_FLAGS:
                if KLOG_FLAGS[name] and not has_value:
                    i += 1
                continue
            if name not in self._flags:
                if arg.startswith("--"):
                    raise UsageError(f"unknown flag: --{name}")
                raise UsageError(f"unknown shorthand flag: {name[0]!r} in {arg}")
            kind = self._flags[name][0]
            if not has_value:
                if kind is bool:
                    value = "true"
                elif i < len(argv):
                    value, i = argv[i], i + 1
                else:
                    raise UsageError(f"flag needs an argument: {arg}")
            values[name] = self._convert(arg.split("=", 1)[0], kind, value)
        if max_args is not None and len(positionals) > max_args:
            raise UsageError(f"accepts at most {max_args} arg(s), received {len(positionals)}")
        return values

    @staticmethod
    def _convert(flag: str, kind: type, value: str):
        if kind is bool:
            if value in ("1", "t", "T", "true", "TRUE", "True"):
                return True
            if value in ("0", "f", "F", "false", "FALSE", "False"):
                return False
            reason = f'strconv.ParseBool: parsing "{value}": invalid syntax'
        elif kind is int:
            text = value.replace("_", "")
            try:
                if re.fullmatch(r"[+-]?0[0-7]+", text):
                    return int(text, 8)
                return int(text, 0)
            except ValueError:
                reason = f'strconv.ParseInt: parsing "{value}": invalid syntax'
        else:
            return value
        raise UsageError(f'invalid argument "{value}" for "{flag}" flag: {reason}')

    def usage(self) -> str:
        lines = [self.summary, "", "Usage:", f"  app {self.command} [flags]", "", "Flags:"]
        for name, (kind, default, help_text) in sorted(self._flags.items()):
            shown = {bool: "", int: " int", str: " string"}[kind]
            suffix = f" (default {default})" if default not in ("", False) else ""
            if kind is str and default:
                suffix = f' (default "{default}")'
            lines.append(f"      --{name}{shown}".ljust(40) + f"{help_text}{suffix}")
        return "\n".join(lines) + "\n"


def run_command(flags: FlagSet, argv: list[str], body) -> int:
    """Parse argv with `flags` and call body(values) -> exit code, reporting errors as cobra."""
    try:
        values = flags.parse(argv)
    except HelpRequested:
        out(flags.usage())
        return 0
    except UsageError as e:
        _write(2, f"Error: {e}\nRun 'app {flags.command} --help' for usage.\n")
        return 2
    return body(values)
