"""The UDP hot path: queries in batches with recvmmsg(2), answers in batches with sendmmsg(2).

Theory of operation
- Per query the kernel work of a UDP exchange dominates (the answer's delivery to the client's
  socket is charged to the sender); one recvfrom + one sendto per query costs a DNS server more
  than all its own logic. `BatchUDP` runs one thread that blocks in recvmmsg for up to `BATCH`
  datagrams (MSG_WAITFORONE: it sleeps until one arrives, then takes what is queued), answers
  every query it can from the resolver's cache (`Resolver.fast`, a dict lookup) into a send
  buffer and hands them all to one sendmmsg. Measured on this machine's loopback: 6.4 us of CPU
  per query against dnsmasq's 8.6 us and 9.1 us for the same cache behind an asyncio datagram
  endpoint (user + system time, dnsperf -c 4 -q 200).
- Everything else (a cache miss, EDNS, forwarding, a malformed query) is handed to the event
  loop (`call_soon_threadsafe`) with the client's address, answered there as the asyncio
  endpoint would, and sent with a non-blocking sendto on the same socket. At most MAX_BACKLOG
  such queries wait for the loop; beyond that they are dropped (a flood of names that miss the
  cache cannot queue memory without bound).
- The buffers (messages, iovecs, addresses, data) are allocated once; their fields are read and
  written through memoryviews of the raw structs (struct mmsghdr is 64 bytes on 64-bit Linux:
  msghdr name@0 namelen@8 iov@16 iovlen@24 control@32 controllen@40 flags@48, msg_len@56).
- The thread holds the GIL only while it builds a batch; it drops it in every system call, so
  the event loop (watches, TCP, the slow path) keeps running. The cache is only read here; the
  loop replaces and deletes entries, each a single atomic dict operation.
- Latency: each query is copied out of the receive buffer on its own (never the whole 256 KiB
  buffer per batch, which at half load, with batches of a few queries, cost more than answering
  them); the thread asks for a short scheduler slice (`short_slice`), so when it wakes on a busy
  CPU it preempts the running task instead of waiting for that task's slice to end. With
  TIMING_ENV set, `Timing` measures the server's own part of each query's latency from the
  kernel's receive timestamp (the bench reads it to tell it from the client's).
- Metrics: `fast` counts each hit into this thread's own Tally (metrics.py: plain list
  increments, no lock); the thread times each batch (recvmmsg returned -> sendmmsg returned)
  and gives that time to the batch's answers with one `Tally.batch` call per batch.
- `close()` stops the thread: the socket has a 0.2 s receive timeout, so recvmmsg returns and
  the thread sees the flag. Linux, 64-bit only; `available()` says whether it can be used.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import ipaddress
import logging
import os
import platform
import socket
import struct
import sys
import threading
import time
from array import array

log = logging.getLogger("svcnet.dns.udp")

BATCH = 64
QUERY_BUF = 4096   # larger queries are truncated by the kernel (MSG_TRUNC) and dropped
ANSWER_BUF = 1232  # the cache holds answers of at most 512 (plain) / 1232 (EDNS) bytes
NAME_BUF = 128     # sockaddr_storage
MMSGHDR = 64
MSG_WAITFORONE = 0x10000
MSG_TRUNC = 0x20
MAX_BACKLOG = 1024  # queries handed to the event loop and not yet taken; more are dropped
SO_TIMESTAMPNS = 35  # asm-generic (x86_64, aarch64): the kernel's receive time, a timespec cmsg
CTRL_BUF = 64        # a cmsghdr (16 bytes) and a timespec (16), rounded up
TIMING_ENV = "SVCNET_DNS_TIMING"  # set (to anything) in the environment: measure `Timing`

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
SLICE_NS = 100_000  # the thread's scheduler slice (EEVDF, Linux >= 6.12); the kernel's minimum
SYS_SCHED_SETATTR = {"x86_64": 314, "aarch64": 274}.get(platform.machine())


def short_slice(ns: int = SLICE_NS) -> bool:
    """Ask for a short scheduler slice for the calling thread (sched_setattr(2), SCHED_OTHER,
    its nice unchanged, sched_runtime = `ns`). EEVDF gives a waking task with a shorter slice an
    earlier deadline, so it preempts a CPU-bound task at once instead of waiting out that task's
    slice (about 1.4 ms here); its share of CPU time is unchanged. Unprivileged; kernels before
    6.12 accept and ignore it. False when the call failed."""
    if SYS_SCHED_SETATTR is None:
        return False
    # struct sched_attr (VER1, 56 bytes): size, policy, flags, nice, priority, runtime, deadline,
    # period, util_min, util_max
    attr = struct.pack("IIQiIQQQII", 56, 0, 0, os.getpriority(os.PRIO_PROCESS, 0), 0, ns, 0, 0, 0, 0)
    buf = ctypes.create_string_buffer(attr, len(attr))
    if _libc.syscall(SYS_SCHED_SETATTR, 0, buf, 0) != 0:
        log.debug("sched_setattr: errno %d", ctypes.get_errno())
        return False
    return True


def available() -> bool:
    return (sys.platform.startswith("linux") and struct.calcsize("P") == 8
            and hasattr(_libc, "recvmmsg") and hasattr(_libc, "sendmmsg"))


def decode_sockaddr(raw: bytes) -> tuple:
    """A sockaddr_in/sockaddr_in6 as Python's socket module gives addresses."""
    family = int.from_bytes(raw[:2], sys.byteorder)
    port = int.from_bytes(raw[2:4], "big")
    if family == socket.AF_INET6:
        return (str(ipaddress.IPv6Address(raw[8:24])), port,
                int.from_bytes(raw[4:8], "big"), int.from_bytes(raw[24:28], sys.byteorder))
    return str(ipaddress.IPv4Address(raw[4:8])), port


class Timing:
    """The server's own latency for each query the thread took, measured only when asked for
    (TIMING_ENV): from the kernel's receive timestamp (SO_TIMESTAMPNS, taken when the client's
    datagram reached the socket) to the return of recvmmsg on the thread (`wait`: the socket
    queue, the thread's wake-up and run-queue delay, the GIL) and to the return of the batch's
    sendmmsg (`total`: what the server added to the client's latency). A client-side latency
    well above `total` was spent outside the server (the client's own scheduling). At most LIMIT
    samples are kept between two reports, so memory stays bounded. It measures only between
    `start()` and `report()` (the per-query work would otherwise slow the throughput runs)."""

    LIMIT = 1 << 20

    def __init__(self):
        self.active = False
        self.reset()

    def start(self) -> None:
        self.reset()
        self.active = True

    def reset(self) -> None:
        self.wait, self.total = array("I"), array("I")
        self.batches = 0

    def add(self, ctrl_q, rmsg_q, n: int, t_recv: int, t_sent: int) -> None:
        """A batch of n queries received at t_recv, their answers sent at t_sent."""
        self.batches += 1
        wait, total = self.wait, self.total
        for i in range(n):
            if rmsg_q[8 * i + 5] >= 32 and len(wait) < self.LIMIT:
                stamp = ctrl_q[i * (CTRL_BUF // 8) + 2] * 1_000_000_000 + ctrl_q[i * (CTRL_BUF // 8) + 3]
                wait.append(max(0, t_recv - stamp) // 1000)
                total.append(max(0, t_sent - stamp) // 1000)
            rmsg_q[8 * i + 5] = CTRL_BUF  # the kernel wrote the control data's length there

    def report(self) -> dict:
        """Percentiles (microseconds) since `start()`; measuring stops until the next."""
        wait, total, batches = self.wait, self.total, self.batches
        self.active = False
        self.reset()
        out = {"queries": len(total), "batches": batches}
        for name, xs in (("wait", sorted(wait)), ("total", sorted(total))):
            for q in (.5, .9, .99, .999):
                out[f"{name}_p{q * 100:g}_us"] = xs[min(len(xs) - 1, int(q * len(xs)))] if xs else None
            out[f"{name}_max_us"] = xs[-1] if xs else None
        return out


class BatchUDP:
    def __init__(self, fast, host: str, port: int, reuse_port: bool = False, tally=None):
        """Bind host:port; `fast(query, counts) -> bytes | None` will run on the thread,
        counting its hits in `tally.counts` (a metrics.Tally written by this thread only)."""
        self.fast = fast
        self.tally = tally
        self.slow = None
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        if reuse_port:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("ll", 0, 200_000))
        self.sock.bind((host, port))
        self.loop = asyncio.get_running_loop()
        self.stopping = False
        # The backlog of the event loop, as two counters each written by one thread only.
        self.handed, self.taken, self.dropped = 0, 0, 0
        self.thread = threading.Thread(target=self._run, name=f"dns-udp-{host}:{port}", daemon=True)
        self.timing = Timing() if os.environ.get(TIMING_ENV) else None
        if self.timing is not None:
            self.sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)

    def start(self, slow) -> None:
        """Start answering; `slow(query, addr)` is called on the event loop for every query
        `fast` does not answer (at most MAX_BACKLOG waiting: a flood of them is dropped, so
        the queue between the thread and the loop stays bounded)."""
        self.slow = slow
        self.thread.start()

    def _take(self, query: bytes, addr) -> None:
        self.taken += 1
        self.slow(query, addr)

    def get_extra_info(self, name: str):
        return self.sock.getsockname() if name == "sockname" else None

    def close(self) -> None:
        self.stopping = True
        if self.thread.is_alive() and threading.current_thread() is not self.thread:
            self.thread.join(2)
        self.sock.close()

    async def drain_and_close(self, timeout: float = 2.0) -> None:
        """Stop receiving, answer what was already handed to the event loop, then close: a
        server being replaced loses no query it took in."""
        self.stopping = True
        loop = asyncio.get_running_loop()
        if self.thread.is_alive():
            await loop.run_in_executor(None, self.thread.join, timeout)
        deadline = loop.time() + timeout
        while self.taken < self.handed and loop.time() < deadline:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)  # forwarded ones are answered by tasks a little later
        self.sock.close()

    def _run(self) -> None:
        try:
            self._serve()
        except Exception:
            log.exception("UDP receive thread failed")

    def _serve(self) -> None:
        short_slice()
        n_ = BATCH
        rbuf = ctypes.create_string_buffer(QUERY_BUF * n_)
        sbuf = ctypes.create_string_buffer(ANSWER_BUF * n_)
        names = ctypes.create_string_buffer(NAME_BUF * n_)
        riov = ctypes.create_string_buffer(16 * n_)
        siov = ctypes.create_string_buffer(16 * n_)
        rmsg = ctypes.create_string_buffer(MMSGHDR * n_)
        smsg = ctypes.create_string_buffer(MMSGHDR * n_)
        addr = ctypes.addressof
        riov_q, siov_q = memoryview(riov).cast("B").cast("Q"), memoryview(siov).cast("B").cast("Q")
        rmsg_q, smsg_q = memoryview(rmsg).cast("B").cast("Q"), memoryview(smsg).cast("B").cast("Q")
        rmsg_i, smsg_i = memoryview(rmsg).cast("B").cast("I"), memoryview(smsg).cast("B").cast("I")
        for i in range(n_):
            riov_q[2 * i], riov_q[2 * i + 1] = addr(rbuf) + i * QUERY_BUF, QUERY_BUF
            siov_q[2 * i] = addr(sbuf) + i * ANSWER_BUF
            rmsg_q[8 * i], rmsg_q[8 * i + 2], rmsg_q[8 * i + 3] = addr(names) + i * NAME_BUF, addr(riov) + 16 * i, 1
            smsg_q[8 * i + 2], smsg_q[8 * i + 3] = addr(siov) + 16 * i, 1
        sview, rview = memoryview(sbuf).cast("B"), memoryview(rbuf).cast("B")
        nview = memoryview(names).cast("B")
        fd = self.sock.fileno()
        recvmmsg, sendmmsg = _libc.recvmmsg, _libc.sendmmsg
        fast, names_base = self.fast, addr(names)
        for i in range(n_):
            rmsg_i[16 * i + 2] = NAME_BUF
        tally = self.tally
        counts = tally.counts if tally is not None else None
        perf = time.perf_counter
        t0 = 0.0
        timing, ctrl_q = self.timing, None
        if timing is not None:
            ctrl = ctypes.create_string_buffer(CTRL_BUF * n_)
            ctrl_q = memoryview(ctrl).cast("B").cast("Q")
            for i in range(n_):
                rmsg_q[8 * i + 4], rmsg_q[8 * i + 5] = addr(ctrl) + i * CTRL_BUF, CTRL_BUF
        t_recv = 0
        while not self.stopping:
            n = recvmmsg(fd, rmsg, n_, MSG_WAITFORONE, None)
            if n <= 0:
                continue
            if tally is not None:
                t0 = perf()
            if timing is not None and timing.active:
                t_recv = time.time_ns()
            k = 0
            for i in range(n):
                # each query copied out on its own: `rbuf.raw` would copy all 256 KiB per batch
                off = i * QUERY_BUF
                query = bytes(rview[off:off + rmsg_i[16 * i + 14]])
                answer = fast(query, counts) if not rmsg_i[16 * i + 12] & MSG_TRUNC else b""
                namelen = rmsg_i[16 * i + 2]
                rmsg_i[16 * i + 2] = NAME_BUF  # the kernel wrote the address's length there
                if answer is None or len(answer) > ANSWER_BUF:
                    if self.handed - self.taken >= MAX_BACKLOG:
                        self.dropped += 1
                        continue
                    who = decode_sockaddr(bytes(nview[i * NAME_BUF:i * NAME_BUF + namelen]))
                    self.handed += 1
                    self.loop.call_soon_threadsafe(self._take, query, who)
                    continue
                if not answer:
                    continue
                o = k * ANSWER_BUF
                sview[o:o + len(answer)] = answer
                siov_q[2 * k + 1] = len(answer)
                smsg_q[8 * k] = names_base + i * NAME_BUF
                smsg_i[16 * k + 2] = namelen
                k += 1
            if k:
                sendmmsg(fd, smsg, k, 0)
                if tally is not None:
                    tally.batch(perf() - t0, k)
            if t_recv:
                timing.add(ctrl_q, rmsg_q, n, t_recv, time.time_ns())
                t_recv = 0
