"""Reading container logs: CRI-format log files -> what `kubectl logs` shows (pure).

Theory of operation
- Log files hold CRI lines (`<RFC3339Nano> <stream> <F|P> <content>`, written by logwriter.py);
  a `P` line is a piece of a longer line that the next lines of the same stream complete, as
  the kubelet's `ReadLogs` reads them. Lines that are not CRI lines (files written before the
  log writer existed) are shown as they are, without a timestamp.
- `LogOptions` is PodLogOptions: `timestamps` prefixes each line with its time in Go's
  RFC3339Nano form (trailing zeros dropped), `since` (from sinceSeconds or sinceTime) skips
  older lines, `tail` keeps the last N lines, `limit_bytes` stops the output after that many
  bytes. `validate` returns the API server's field errors for bad values.
- `LogRenderer` turns file bytes into output bytes incrementally (for `follow`, fed as the file
  grows; it keeps an incomplete trailing file line until its newline arrives); `start`
  renders a file's current bytes, tail included, and returns the renderer to continue with.
"""

from __future__ import annotations

import calendar
import re
import time
from dataclasses import dataclass, field

from svcnet.api import errors

_CRI = re.compile(rb"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d{1,9})?(Z|[+-]\d\d:\d\d) "
                  rb"(stdout|stderr) ([FP]) (.*)$", re.S)
_STAMPED = re.compile(rb"^\d{4}-\d\d-\d\dT")
_TIME = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d{1,9})?(Z|[+-]\d\d:\d\d)$")


@dataclass
class Entry:
    content: bytes
    stream: bytes = b"stdout"
    partial: bool = False
    when: float | None = None        # seconds since the epoch; None for a non-CRI line
    stamp: bytes = b""               # the timestamp as kubectl shows it


def _epoch(base: str, frac: str | None, zone: str) -> float:
    t = calendar.timegm(time.strptime(base, "%Y-%m-%dT%H:%M:%S"))
    if zone != "Z":
        sign = 1 if zone[0] == "+" else -1
        t -= sign * (int(zone[1:3]) * 3600 + int(zone[4:6]) * 60)
    return t + (float(frac) if frac else 0.0)


def parse_time(value: str) -> float | None:
    """An RFC 3339 time (as sinceTime carries it) as seconds since the epoch; None if invalid."""
    m = _TIME.match(value.strip())
    if not m:
        return None
    try:
        return _epoch(m.group(1), m.group(2), m.group(3))
    except ValueError:
        return None


def go_rfc3339nano(base: bytes, frac: bytes | None, zone: bytes) -> bytes:
    """Go's time.RFC3339Nano formatting: trailing zeros of the fraction dropped."""
    digits = (frac or b"")[1:].rstrip(b"0")
    return base + (b"." + digits if digits else b"") + zone


def parse(line: bytes) -> Entry:
    """One file line (without its newline)."""
    m = _CRI.match(line)
    if not m:
        return Entry(content=line)
    base, frac, zone = m.group(1), m.group(2), m.group(3)
    try:
        when = _epoch(base.decode(), frac.decode() if frac else None, zone.decode())
    except ValueError:
        return Entry(content=line)
    return Entry(content=m.group(6), stream=m.group(4), partial=m.group(5) == b"P", when=when,
                 stamp=go_rfc3339nano(base, frac, zone))


@dataclass
class LogOptions:
    timestamps: bool = False
    since: float | None = None
    tail: int | None = None
    limit_bytes: int | None = None


def validate(tail: int | None, limit_bytes: int | None, since_seconds: int | None,
             since_time: str | None) -> list[errors.FieldError]:
    """ValidatePodLogOptions, with the API server's messages (a sinceTime that is no time never
    gets here: the query does not decode, a 400)."""
    errs = []
    if tail is not None and tail < 0:
        errs.append(errors.invalid_value("tailLines", tail, "must be greater than or equal to 0"))
    if limit_bytes is not None and limit_bytes < 1:
        errs.append(errors.invalid_value("limitBytes", limit_bytes, "must be greater than 0"))
    if since_seconds is not None and since_time is not None:
        errs.append(errors.forbidden("", "at most one of `sinceTime` or `sinceSeconds` may be "
                                         "specified"))
    elif since_seconds is not None and since_seconds < 1:
        errs.append(errors.invalid_value("sinceSeconds", since_seconds, "must be greater than 0"))
    return errs


@dataclass
class LogRenderer:
    """File bytes in, `kubectl logs` bytes out, as the file grows."""

    opts: LogOptions
    pending: bytes = b""                                    # an incomplete file line
    mid_line: dict[bytes, bool] = field(default_factory=dict)  # a stream's line is unfinished
    written: int = 0

    @property
    def done(self) -> bool:
        return self.opts.limit_bytes is not None and self.written >= self.opts.limit_bytes

    def feed(self, data: bytes) -> bytes:
        lines = (self.pending + data).split(b"\n")
        self.pending = lines.pop()
        return self.entries([parse(line) for line in lines])

    def entries(self, entries: list[Entry]) -> bytes:
        out = []
        opts = self.opts
        for e in entries:
            if opts.since is not None and e.when is not None and e.when < opts.since:
                continue
            piece = e.content if e.partial else e.content + b"\n"
            if opts.timestamps and e.when is not None and not self.mid_line.get(e.stream):
                piece = e.stamp + b" " + piece
            self.mid_line[e.stream] = e.partial
            out.append(piece)
        text = b"".join(out)
        if opts.limit_bytes is not None:
            text = text[:max(0, opts.limit_bytes - self.written)]
        self.written += len(text)
        return text


def tail_start(entries: list[Entry], n: int) -> int:
    """The index of the first entry of the last `n` lines (a line's partial pieces included)."""
    if n <= 0:
        return len(entries)
    seen = 0
    for i in range(len(entries) - 1, -1, -1):
        if not entries[i].partial:
            seen += 1
            if seen > n:
                return i + 1
    return 0


def start(data: bytes, opts: LogOptions, follow: bool = False) -> tuple[bytes, LogRenderer]:
    """The output for a log file's current bytes, and the renderer to feed what is appended
    later (`follow`). A final line without its newline is a write in progress: it waits in the
    renderer, unless the file is not in CRI format at all and nothing more will come."""
    lines = data.split(b"\n")
    pending = lines.pop()
    entries = [parse(line) for line in lines]
    if pending and not follow and not _STAMPED.match(pending):
        entries.append(Entry(content=pending, partial=True))
        pending = b""
    if opts.tail is not None:
        entries = entries[tail_start(entries, opts.tail):]
    renderer = LogRenderer(opts, pending=pending)
    return renderer.entries(entries), renderer
