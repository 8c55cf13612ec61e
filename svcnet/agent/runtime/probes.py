"""Container probes: the kubelet's prober worker as a pure state machine, plus async executors.

Theory of operation
- `ProbeSpec.from_api(probe)` reads a Kubernetes Probe with its defaults (initialDelaySeconds 0,
  periodSeconds 10, timeoutSeconds 1, successThreshold 1, failureThreshold 3).
- `ProbeState` is one probe of one container instance (a new instance starts a new state). Its
  clock is whatever the caller passes (monotonic seconds). Results are counted like the
  kubelet's worker (pkg/kubelet/prober/worker.go): a run of equal results changes the published
  `result` only when it reaches successThreshold (success) or failureThreshold (failure). A
  liveness or startup probe that fails is put on hold (the container is about to be killed);
  a startup probe stops once it has succeeded.
- Initial results: readiness Failure, liveness Success, startup Unknown (the container is not
  "started" until the startup probe passes; its first counted failure is a change).
- Early probes (svcnet's addition, for pod start latency): until a readiness or startup probe
  has succeeded once, the worker may probe between the scheduled probes (every `EARLY` seconds
  for the first seconds of the container, then every `EARLY_LATE`, for at most `EARLY_MAX`). An early failure is not
  counted, so it can never make a container fail sooner than the kubelet would; an early
  success counts like a scheduled one. The visible effect is only that a container becomes
  ready as soon as it answers instead of up to periodSeconds later.
- `due(now)` says when the next probe should run; the caller runs it (`run_probe`) and feeds
  the outcome to `observe(ok, now, early)`, which returns True when the published result
  changed.

Executors (`http_get`, `tcp_socket`; exec probes are run by the caller through a callback that
starts the command inside the pod) return `(ok, detail)`; they never raise for probe failures.
HTTP probes count 200-399 as success, as the kubelet does (redirects are not followed: a 3xx is
a success, as the kubelet reports a redirect to another host).
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass

READINESS, LIVENESS, STARTUP = "readiness", "liveness", "startup"
HANDLERS = ("httpGet", "tcpSocket", "exec", "grpc")
USER_AGENT = "kube-probe/1.32"
EARLY = 0.025          # early probe interval during the first EARLY_WINDOW seconds
EARLY_EXEC = 0.1       # exec probes fork a process: not as often
EARLY_WINDOW = 2.0
EARLY_LATE = 0.25      # early probe interval afterwards
EARLY_MAX = 60.0       # no early probes for containers older than this


@dataclass(frozen=True)
class ProbeSpec:
    handler: str           # one of HANDLERS
    action: dict           # the handler's object (httpGet / tcpSocket / exec / grpc)
    initial_delay: float = 0.0
    period: float = 10.0
    timeout: float = 1.0
    success_threshold: int = 1
    failure_threshold: int = 3

    @classmethod
    def from_api(cls, probe: dict | None) -> ProbeSpec | None:
        if not probe:
            return None
        handler = next((h for h in HANDLERS if probe.get(h) is not None), None)
        if handler is None:
            return None

        def num(key: str, default: float, minimum: float) -> float:
            v = probe.get(key)
            return max(minimum, float(v)) if isinstance(v, (int, float)) and v > 0 else default

        return cls(handler=handler, action=probe[handler] or {},
                   initial_delay=num("initialDelaySeconds", 0.0, 0.0),
                   period=num("periodSeconds", 10.0, 1.0),
                   timeout=num("timeoutSeconds", 1.0, 1.0),
                   success_threshold=int(num("successThreshold", 1, 1)),
                   failure_threshold=int(num("failureThreshold", 3, 1)))


class ProbeState:
    """One probe of one container instance. Pure: the caller supplies the time."""

    def __init__(self, kind: str, spec: ProbeSpec, started_at: float,
                 result: bool | None = None):
        self.kind = kind
        self.spec = spec
        self.started_at = started_at
        # The published result: True = Success, False = Failure, None = Unknown (startup).
        initial = {READINESS: False, LIVENESS: True, STARTUP: None}[kind]
        self.result: bool | None = initial if result is None else result
        self.ever_succeeded = bool(result) and kind != LIVENESS
        self.last_result: bool | None = None
        self.run = 0
        self.on_hold = False            # liveness/startup failed: wait for the next instance
        self.done = kind == STARTUP and self.ever_succeeded
        self.last_probe: float | None = None  # last scheduled probe
        self.last_any: float | None = None    # last probe of any kind
        self.message = ""

    @property
    def active(self) -> bool:
        return not (self.on_hold or self.done)

    def early_enabled(self) -> bool:
        return self.kind in (READINESS, STARTUP) and not self.ever_succeeded

    def next_scheduled(self) -> float:
        first = self.started_at + self.spec.initial_delay
        if self.last_probe is None:
            return first
        return max(first, self.last_probe + self.spec.period)

    def due(self, now: float) -> tuple[float, bool]:
        """(when, early): the next probe time and whether it is an early (uncounted) one."""
        scheduled = self.next_scheduled()
        if (not self.early_enabled() or self.last_any is None
                or now - self.started_at > EARLY_MAX):
            return scheduled, False
        start = self.started_at + self.spec.initial_delay
        gap = EARLY_EXEC if self.spec.handler == "exec" else EARLY
        if now - self.started_at > EARLY_WINDOW:
            gap = max(gap, EARLY_LATE)
        early = max(start, self.last_any + gap)
        if early < scheduled:
            return early, True
        return scheduled, False

    def observe(self, ok: bool, now: float, early: bool = False, message: str = "") -> bool:
        """Record one probe outcome; True when the published result changed."""
        self.last_any = now
        if not early:
            self.last_probe = now
        if not self.active:
            return False
        if early and not ok:
            return False  # early failures are not counted
        self.message = message
        if ok:
            self.ever_succeeded = True
        if self.last_result == ok:
            self.run += 1
        else:
            self.last_result = ok
            self.run = 1
        threshold = self.spec.success_threshold if ok else self.spec.failure_threshold
        if self.kind in (LIVENESS, STARTUP) and ok:
            threshold = 1  # successThreshold must be 1 for these
        if self.run < threshold:
            return False
        changed = self.result != ok
        self.result = ok
        if not ok and self.kind in (LIVENESS, STARTUP):
            self.on_hold = True
            self.run = 0
        if ok and self.kind == STARTUP:
            self.done = True
        return changed


# ---- executors --------------------------------------------------------------------------------

def resolve_port(port, container: dict) -> int | None:
    """A probe's port: a number, or the name of one of the container's ports."""
    if isinstance(port, int):
        return port if 0 < port < 65536 else None
    if isinstance(port, str):
        if port.isdigit():
            return int(port)
        for p in container.get("ports") or []:
            if p.get("name") == port and p.get("containerPort"):
                return int(p["containerPort"])
    return None


async def tcp_socket(host: str, port: int, timeout: float) -> tuple[bool, str]:
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    except (OSError, asyncio.TimeoutError) as e:
        return False, f"dial tcp {host}:{port}: {_reason(e)}"
    writer.close()
    try:
        await writer.wait_closed()
    except OSError:
        pass
    return True, ""


_INSECURE = None


def _insecure_context() -> ssl.SSLContext:
    global _INSECURE
    if _INSECURE is None:
        _INSECURE = ssl.create_default_context()
        _INSECURE.check_hostname = False
        _INSECURE.verify_mode = ssl.CERT_NONE
    return _INSECURE


async def http_get(host: str, port: int, path: str = "/", scheme: str = "HTTP",
                   headers: list[dict] | None = None, timeout: float = 1.0) -> tuple[bool, str]:
    if not path.startswith("/"):
        path = "/" + path
    hostport = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    lines = {"Host": hostport, "User-Agent": USER_AGENT, "Accept": "*/*"}
    for h in headers or []:
        if h.get("name"):
            # A probe header replaces the default of the same name (case-insensitively).
            for k in [k for k in lines if k.lower() == h["name"].lower()]:
                del lines[k]
            lines[h["name"]] = str(h.get("value", ""))
    request = (f"GET {path} HTTP/1.1\r\n"
               + "".join(f"{k}: {v}\r\n" for k, v in lines.items())
               + "Connection: close\r\n\r\n").encode("latin-1", "replace")
    ssl_ctx = _insecure_context() if scheme.upper() == "HTTPS" else None

    async def go() -> tuple[bool, str]:
        reader, writer = await asyncio.open_connection(host, port, ssl=ssl_ctx)
        try:
            writer.write(request)
            await writer.drain()
            status_line = await reader.readline()
        finally:
            writer.close()
        parts = status_line.decode("latin-1").split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
            return False, f"malformed HTTP response: {status_line[:80]!r}"
        code = int(parts[1])
        if 200 <= code < 400:
            return True, ""
        return False, f"HTTP probe failed with statuscode: {code}"

    url = f"{scheme.lower()}://{hostport}{path}"
    try:
        return await asyncio.wait_for(go(), timeout)
    except asyncio.TimeoutError:
        return False, (f'Get "{url}": context deadline exceeded (Client.Timeout exceeded while '
                       f'awaiting headers)')
    except (OSError, ssl.SSLError, ValueError) as e:
        return False, f'Get "{url}": {_reason(e)}'


def _reason(e: BaseException) -> str:
    if isinstance(e, asyncio.TimeoutError):
        return "i/o timeout"
    if isinstance(e, ConnectionRefusedError):
        return "connect: connection refused"
    if isinstance(e, OSError) and e.strerror:
        return e.strerror.lower()
    return str(e) or type(e).__name__
