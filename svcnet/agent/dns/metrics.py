"""Prometheus metrics of the cluster DNS, named and labelled as CoreDNS's, so the dashboards and
alerts written for CoreDNS work unchanged.

Theory of operation
- Every answer belongs to a *class*: (zone, query type (the types labelled "other" as one),
  rcode, plugin, cache outcome, request size, response size), interned once in `Classes` as a
  small int. A cached answer carries its class id and its zone's index (server.py stores both
  in the cache entry), so counting a cache hit on the UDP thread is two list increments
  (`counts[cls] += 1; counts[zone] += 1`) in a `Tally`: plain ints in a plain list, written by
  that thread only, no lock. Answers made on the event loop (misses, forwarded names, errors,
  TCP) are interned there and counted in the event loop's own Tally the same way.
- Durations: the UDP thread times each batch (recvmmsg returned -> sendmmsg returned: what each
  of its answers waited in the server) and `Tally.batch` adds that time once per answer of the
  batch to its zone's histogram, from the per-zone counts since the previous batch; the event
  loop times each answer on its own.
- A scrape (`DNSMetrics.render`, on the event loop) folds every Tally's counts through the class
  table into CoreDNS's families. It may read numbers a batch old; nothing is ever reset, so
  nothing is lost. The class table only grows: once it holds MAX_CLASSES, new classes get
  sizes rounded up to their histogram bucket's bound (the buckets stay exact, the size sums
  become upper bounds), so it stays bounded whatever the queries.
- Labels: `server` is "dns://ADDR:PORT" as CoreDNS writes it with the bind plugin; `zone` the
  matched zone of a Corefile serving `<cluster domain> in-addr.arpa ip6.arpa` and forwarding `.`
  ("dropped" for a query that could not be read, as CoreDNS labels queries that never reach its
  plugins); `view` is always empty; `type` CoreDNS's list of monitored types, others "other";
  `plugin` the one that wrote the answer ("cache", "kubernetes", "forward"; empty when the
  server itself refused or rejected the query).
- The cache's families: hits by type "success"/"denial" (NXDOMAIN or no answer records),
  misses, requests (hits + misses) and entries, with the cache's zone as `zones`; the forward
  families are counted by forward.py per upstream ("to").
"""

from __future__ import annotations

import bisect
import os
import platform
import time

from svcnet.agent.metrics import family

ZONES = ("cluster.local.", "in-addr.arpa.", "ip6.arpa.", ".", "dropped")  # (CLUSTER: the domain's)
CLUSTER, IN_ADDR, IP6, ROOT, DROPPED = range(len(ZONES))

# plugin.TimeBuckets (0.25 ms .. 8.192 s, factor 2) and the request/response size buckets
TIME_BUCKETS = [0.00025 * 2 ** i for i in range(16)]
SIZE_BUCKETS = [0, 100, 200, 300, 400, 511, 1023, 2047, 4095, 8291, 16e3, 32e3, 48e3, 64e3]

# plugin/metrics/vars: the query types counted by name; every other type is "other"
TYPES = {1: "A", 2: "NS", 5: "CNAME", 6: "SOA", 12: "PTR", 15: "MX", 16: "TXT", 28: "AAAA",
         33: "SRV", 43: "DS", 46: "RRSIG", 47: "NSEC", 48: "DNSKEY", 50: "NSEC3", 65: "HTTPS",
         251: "IXFR", 252: "AXFR", 255: "ANY"}
RCODES = ("NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED", "YXDOMAIN",
          "YXRRSET", "NXRRSET", "NOTAUTH", "NOTZONE")

CACHE, KUBERNETES, FORWARD, SERVER = "cache", "kubernetes", "forward", ""
# what the cache made of a query: a hit ("success" or "denial", CoreDNS's cache types), a miss,
# or nothing (the query never reached it)
SUCCESS, DENIAL, MISS, UNCACHED = "success", "denial", "miss", ""

MAX_CLASSES = 100_000
try:
    from importlib.metadata import version as _version
    VERSION = _version("svcnet")
except Exception:  # not installed as a distribution (run from a checkout)
    VERSION = "0.1.0"


def type_label(qtype: int) -> str:
    return TYPES.get(qtype, "other")


def rcode_label(rcode: int) -> str:
    return RCODES[rcode] if rcode < len(RCODES) else f"RCODE{rcode}"


def zone_index(qname: str, domain: str) -> int:
    """The zone a (lower-case, dot-less) name is counted under."""
    if qname == domain or qname.endswith("." + domain):
        return CLUSTER
    if qname == "in-addr.arpa" or qname.endswith(".in-addr.arpa"):
        return IN_ADDR
    if qname == "ip6.arpa" or qname.endswith(".ip6.arpa"):
        return IP6
    return ROOT


def server_label(host: str, port: int) -> str:
    return f"dns://[{host}]:{port}" if ":" in host else f"dns://{host}:{port}"


def hit_type(response: bytes) -> str:
    """CoreDNS's cache type of an answer: "denial" for NXDOMAIN and NODATA (NOERROR without
    answer records), else "success"."""
    rcode = response[3] & 0xF
    return DENIAL if rcode == 3 or (rcode == 0 and response[6:8] == b"\0\0") else SUCCESS


def _bucket_bound(bounds: list, value: float) -> float:
    i = bisect.bisect_left(bounds, value)
    return bounds[i] if i < len(bounds) else value


class Classes:
    """The class table (see the module doc), shared by every Tally of one Resolver. Only the
    event loop adds classes; a new id is in every Tally before anyone can count it."""

    def __init__(self, domain: str = "cluster.local"):
        self.domain = domain
        self.zones = (domain.strip(".") + ".",) + ZONES[1:]  # the zone labels, by index
        self.ids: dict[tuple, int] = {}
        self.labels: list[tuple | None] = [None] * len(ZONES)  # ids below len(ZONES): zones
        self.tallies: list[Tally] = []

    def intern(self, zone: int, qtype: int, rcode: int, plugin: str, cache: str,
               reqsize: int, respsize: int) -> int:
        # a type outside TYPES is only ever "other": one class for all of them (65,536 types)
        key = (zone, qtype if qtype in TYPES else 0, rcode, plugin, cache, reqsize, respsize)
        cls = self.ids.get(key)
        if cls is not None:
            return cls
        if len(self.labels) >= MAX_CLASSES:
            key = key[:5] + (_bucket_bound(SIZE_BUCKETS, reqsize), _bucket_bound(SIZE_BUCKETS, respsize))
            cls = self.ids.get(key)
            if cls is not None:
                return cls
        cls = len(self.labels)
        for t in self.tallies:
            t.counts.append(0)
        self.labels.append(key)
        self.ids[key] = cls
        return cls

    def tally(self, server: str, proto: str, family: str) -> "Tally":
        t = Tally(server, proto, family, len(self.labels))
        self.tallies.append(t)
        return t


class Tally:
    """The counts of one receive path (listener x protocol x thread): `counts` per class and
    per zone, and per-zone duration histograms. One writer only."""

    def __init__(self, server: str, proto: str, family: str, size: int):
        self.server, self.proto, self.family = server, proto, family
        self.counts = [0] * size
        self.timed = [0] * len(ZONES)  # the zone counts already in `durations`
        self.durations = [[0] * (len(TIME_BUCKETS) + 1) for _ in ZONES]
        self.duration_sums = [0.0] * len(ZONES)

    def batch(self, seconds: float, answers: int = 1) -> None:
        """Every answer counted since the last call (`answers` of them) took `seconds`. Zones
        are looked at in order until all are found: a batch of cluster names costs one."""
        counts, timed = self.counts, self.timed
        b = bisect.bisect_left(TIME_BUCKETS, seconds)
        z = 0
        while answers > 0 and z < len(ZONES):
            n = counts[z] - timed[z]
            if n:
                timed[z] += n
                self.durations[z][b] += n
                self.duration_sums[z] += n * seconds
                answers -= n
            z += 1

    def answered(self, classes: Classes, query: bytes, response: bytes, plugin: str, cache: str,
                 seconds: float, qname: str | None = None, qtype: int = 0,
                 dropped: bool = False) -> None:
        """Count one answer made on the event loop (`qname`/`qtype` when the caller could read
        them: without, type "other"). Zone "dropped": a query that could not be read, or that
        the server refused before looking at its name (`dropped`)."""
        if qname is None or dropped:
            zone = DROPPED
        else:
            zone = zone_index(qname.lower().rstrip("."), classes.domain)
        self.counts[classes.intern(zone, qtype, response[3] & 0xF, plugin, cache,
                                   len(query), len(response))] += 1
        self.counts[zone] += 1
        self.batch(seconds)


def _histogram(store: dict, key: tuple, bounds: list, value: float, n: int) -> None:
    h = store.get(key)
    if h is None:
        h = store[key] = [[0] * (len(bounds) + 1), 0.0]
    h[0][bisect.bisect_left(bounds, value)] += n
    h[1] += value * n


def _labels(names: tuple, values: tuple) -> str:
    """Label pairs in name order, as the Go client writes them."""
    return ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(zip(names, values)))


def _num(v: float) -> str:
    """A sample value: integers without a decimal point, other floats in full precision."""
    return str(int(v)) if v == int(v) and abs(v) < 1e15 else repr(float(v))


def _escape(v) -> str:
    return str(v).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _counter_samples(name: str, names: tuple, store: dict) -> list[str]:
    return [f"{name}{{{_labels(names, k)}}} {v}" for k, v in sorted(store.items())]


def _histogram_samples(name: str, names: tuple, bounds: list, store: dict) -> list[str]:
    out = []
    for key, (counts, total) in sorted(store.items()):
        lab = _labels(names, key)
        running = 0
        for bound, n in zip(bounds + [float("inf")], counts):
            running += n
            le = "+Inf" if bound == float("inf") else format(bound, "g")
            out.append(f'{name}_bucket{{{lab},le="{le}"}} {running}')
        out.append(f"{name}_sum{{{lab}}} {_num(total)}")
        out.append(f"{name}_count{{{lab}}} {running}")
    return out


class DNSMetrics:
    """What `svcnet dns` serves at /metrics: the tallies of its listeners, its cache's entries
    (`entries`, kept by the Resolver as (zone index, hit type) -> count), its forwarder's
    counts (`requests`, `responses`, `durations`)."""

    def __init__(self, classes: Classes, entries: dict, forwarder=None, cache_server: str = ""):
        self.classes = classes
        self.entries = entries
        self.forwarder = forwarder
        self.cache_server = cache_server  # the server label of the (one, shared) cache
        self.started = _start_time()

    def fold(self) -> dict:
        """The families' samples as {family: {label values: value}} from every Tally."""
        f = {k: {} for k in ("requests", "responses", "duration", "reqsize", "respsize",
                             "hits", "misses", "cache_requests")}
        labels = self.classes.labels
        for t in list(self.classes.tallies):
            counts = t.counts
            for cls in range(len(ZONES), min(len(counts), len(labels))):
                n = counts[cls]
                if not n:
                    continue
                zone, qtype, rcode, plugin, cache, reqsize, respsize = labels[cls]
                z = self.classes.zones[zone]
                k = (t.server, z, "", t.proto, t.family, type_label(qtype))
                f["requests"][k] = f["requests"].get(k, 0) + n
                k = (t.server, z, "", rcode_label(rcode), plugin)
                f["responses"][k] = f["responses"].get(k, 0) + n
                _histogram(f["reqsize"], (t.server, z, "", t.proto), SIZE_BUCKETS, reqsize, n)
                _histogram(f["respsize"], (t.server, z, "", t.proto), SIZE_BUCKETS, respsize, n)
                if cache:
                    k = (t.server, z, "")
                    f["cache_requests"][k] = f["cache_requests"].get(k, 0) + n
                    if cache == MISS:
                        f["misses"][k] = f["misses"].get(k, 0) + n
                    else:
                        k = (t.server, cache, z, "")
                        f["hits"][k] = f["hits"].get(k, 0) + n
            for z, (hist, total) in enumerate(zip(t.durations, t.duration_sums)):
                if any(hist):
                    k = (t.server, self.classes.zones[z], "")
                    h = f["duration"].setdefault(k, [[0] * len(hist), 0.0])
                    h[0] = [a + b for a, b in zip(h[0], hist)]
                    h[1] += total
        return f

    def render(self) -> str:
        f = self.fold()
        out = [
            family("coredns_build_info", "A metric with a constant '1' value labeled by version, "
                   "revision, and goversion from which CoreDNS was built.", "gauge",
                   [f'coredns_build_info{{goversion="python{platform.python_version()}",'
                    f'revision="",version="{VERSION}"}} 1']),
            family("coredns_dns_requests_total", "Counter of DNS requests made per zone, "
                   "protocol and family.", "counter", _counter_samples(
                       "coredns_dns_requests_total",
                       ("server", "zone", "view", "proto", "family", "type"), f["requests"])),
            family("coredns_dns_responses_total", "Counter of response status codes.", "counter",
                   _counter_samples("coredns_dns_responses_total",
                                    ("server", "zone", "view", "rcode", "plugin"), f["responses"])),
            family("coredns_dns_request_duration_seconds", "Histogram of the time (in seconds) "
                   "each request took per zone.", "histogram", _histogram_samples(
                       "coredns_dns_request_duration_seconds", ("server", "zone", "view"),
                       TIME_BUCKETS, f["duration"])),
            family("coredns_dns_request_size_bytes", "Size of the EDNS0 UDP buffer in bytes "
                   "(64K for TCP) per zone and protocol.", "histogram", _histogram_samples(
                       "coredns_dns_request_size_bytes", ("server", "zone", "view", "proto"),
                       SIZE_BUCKETS, f["reqsize"])),
            family("coredns_dns_response_size_bytes", "Size of the returned response in bytes.",
                   "histogram", _histogram_samples(
                       "coredns_dns_response_size_bytes", ("server", "zone", "view", "proto"),
                       SIZE_BUCKETS, f["respsize"])),
            family("coredns_cache_entries", "The number of elements in the cache.", "gauge",
                   _counter_samples("coredns_cache_entries", ("server", "type", "zones", "view"), {
                       (self.cache_server, kind, self.classes.zones[z], ""): n
                       for (z, kind), n in self.entries.items() if n})),
            family("coredns_cache_requests_total", "The count of cache requests.", "counter",
                   _counter_samples("coredns_cache_requests_total", ("server", "zones", "view"),
                                    f["cache_requests"])),
            family("coredns_cache_hits_total", "The count of cache hits.", "counter",
                   _counter_samples("coredns_cache_hits_total", ("server", "type", "zones", "view"),
                                    f["hits"])),
            family("coredns_cache_misses_total", "The count of cache misses. Deprecated, derive "
                   "misses from cache hits/requests counters.", "counter",
                   _counter_samples("coredns_cache_misses_total", ("server", "zones", "view"),
                                    f["misses"])),
        ]
        fw = self.forwarder
        if fw is not None:
            out += [
                family("coredns_forward_requests_total", "Counter of requests made per upstream.",
                       "counter", _counter_samples("coredns_forward_requests_total", ("to",),
                                                   {(k,): v for k, v in fw.requests.items()})),
                family("coredns_forward_responses_total", "Counter of responses received per "
                       "upstream.", "counter", _counter_samples(
                           "coredns_forward_responses_total", ("rcode", "to"),
                           {(rcode_label(r), to): v for (to, r), v in fw.responses.items()})),
                family("coredns_forward_request_duration_seconds", "Histogram of the time each "
                       "request took.", "histogram", _histogram_samples(
                           "coredns_forward_request_duration_seconds", ("to", "rcode"),
                           TIME_BUCKETS, {(to, rcode_label(r)): h
                                          for (to, r), h in fw.durations.items()})),
            ]
        out.append(process_metrics(self.started))
        return "".join(out)


def observe(store: dict, key: tuple, seconds: float) -> None:
    """One duration into a histogram of `store` (TIME_BUCKETS), as forward.py keeps them."""
    _histogram(store, key, TIME_BUCKETS, seconds, 1)


def _start_time() -> float:
    """This process's start, seconds since the epoch (boot time + start ticks)."""
    try:
        ticks = int(open("/proc/self/stat").read().rsplit(")", 1)[1].split()[19])
        btime = next(int(line.split()[1]) for line in open("/proc/stat") if line.startswith("btime"))
        return btime + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return time.time()


def process_metrics(started: float) -> str:
    """The process_* basics of the Prometheus client libraries, from /proc/self."""
    try:
        stat = open("/proc/self/stat").read().rsplit(")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        cpu = (int(stat[11]) + int(stat[12])) / ticks
        vsize, rss = int(stat[20]), int(stat[21]) * os.sysconf("SC_PAGE_SIZE")
        fds = len(os.listdir("/proc/self/fd"))
        import resource
        max_fds = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    except (OSError, ValueError, IndexError):
        return ""
    return "".join(family(n, h, k, [f"{n} {_num(v)}"])
                   for n, h, k, v in (
        ("process_cpu_seconds_total", "Total user and system CPU time spent in seconds.", "counter", cpu),
        ("process_max_fds", "Maximum number of open file descriptors.", "gauge", max_fds),
        ("process_open_fds", "Number of open file descriptors.", "gauge", fds),
        ("process_resident_memory_bytes", "Resident memory size in bytes.", "gauge", rss),
        ("process_start_time_seconds", "Start time of the process since unix epoch in seconds.",
         "gauge", started),
        ("process_virtual_memory_bytes", "Virtual memory size in bytes.", "gauge", vsize)))
