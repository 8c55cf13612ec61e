"""Container logs: the log writer process (CRI lines) and the reader behind pods/NAME/log."""

from __future__ import annotations

import os
import time

import pytest

from svcnet.agent.runtime import logs
from svcnet.agent.runtime.containers import start_log_writer
from svcnet.agent.runtime.logwriter import cri_lines, timestamp

T0 = 1_790_000_000_123_400_000  # 2026-09-21T14:13:20.1234Z, in ns


def test_cri_lines_complete_and_partial():
    assert timestamp(T0) == b"2026-09-21T14:13:20.123400000Z"
    assert cri_lines(T0, b"stdout", b"a\n\nb") == (
        b"2026-09-21T14:13:20.123400000Z stdout F a\n"
        b"2026-09-21T14:13:20.123400000Z stdout F \n"
        b"2026-09-21T14:13:20.123400000Z stdout P b\n")


def test_parse_and_go_timestamps():
    e = logs.parse(b"2026-09-21T14:13:20.123400000Z stderr F hello world")
    assert (e.content, e.stream, e.partial) == (b"hello world", b"stderr", False)
    assert e.stamp == b"2026-09-21T14:13:20.1234Z"  # Go's RFC3339Nano drops trailing zeros
    assert e.when == pytest.approx(T0 / 1e9)
    assert logs.parse(b"2026-09-21T14:13:20.000000000Z stdout F x").stamp == b"2026-09-21T14:13:20Z"
    legacy = logs.parse(b"plain output")
    assert (legacy.content, legacy.when) == (b"plain output", None)
    assert logs.parse_time("2026-09-21T16:13:20+02:00") == pytest.approx(1_790_000_000)
    assert logs.parse_time("yesterday") is None


def _file(*chunks: tuple[int, bytes, bytes]) -> bytes:
    return b"".join(cri_lines(ns, stream, data) for ns, stream, data in chunks)


FILE = _file((T0, b"stdout", b"one\ntw"), (T0 + 10**9, b"stdout", b"o\n"),
             (T0 + 2 * 10**9, b"stderr", b"three\n"), (T0 + 3 * 10**9, b"stdout", b"four\n"))


def test_render_joins_partial_lines_and_prefixes_timestamps():
    out, _ = logs.start(FILE, logs.LogOptions())
    assert out == b"one\ntwo\nthree\nfour\n"
    out, _ = logs.start(FILE, logs.LogOptions(timestamps=True))
    assert out.splitlines() == [b"2026-09-21T14:13:20.1234Z one", b"2026-09-21T14:13:20.1234Z two",
                                b"2026-09-21T14:13:22.1234Z three", b"2026-09-21T14:13:23.1234Z four"]


def test_tail_since_and_limit_bytes():
    assert logs.start(FILE, logs.LogOptions(tail=3))[0] == b"two\nthree\nfour\n"
    assert logs.start(FILE, logs.LogOptions(tail=0))[0] == b""
    assert logs.start(FILE, logs.LogOptions(tail=10))[0] == b"one\ntwo\nthree\nfour\n"
    assert logs.start(FILE, logs.LogOptions(since=T0 / 1e9 + 1.5))[0] == b"three\nfour\n"
    assert logs.start(FILE, logs.LogOptions(limit_bytes=6))[0] == b"one\ntw"


def test_follow_keeps_an_incomplete_file_line_until_it_is_complete():
    first, renderer = logs.start(FILE[:-10], logs.LogOptions(), follow=True)
    assert first == b"one\ntwo\nthree\n"
    assert renderer.feed(FILE[-10:-3]) == b""
    assert renderer.feed(FILE[-3:]) == b"four\n"
    # without follow, the incomplete CRI line is a write in progress and is not shown either
    assert logs.start(FILE[:-10], logs.LogOptions())[0] == b"one\ntwo\nthree\n"


def test_follow_stops_at_the_byte_limit():
    _, renderer = logs.start(b"", logs.LogOptions(limit_bytes=5), follow=True)
    assert renderer.feed(FILE) == b"one\nt" and renderer.done


def test_files_from_before_the_log_writer_show_as_they_are():
    assert logs.start(b"raw line\nno newline", logs.LogOptions(timestamps=True))[0] == \
        b"raw line\nno newline"


def test_bad_options_are_the_api_servers_field_errors():
    def messages(**kw):
        args = dict(tail=None, limit_bytes=None, since_seconds=None, since_time=None) | kw
        return [e.message() for e in logs.validate(**args)]

    assert messages() == []
    assert messages(tail=-1) == ["tailLines: Invalid value: -1: must be greater than or equal to 0"]
    assert messages(limit_bytes=0) == ["limitBytes: Invalid value: 0: must be greater than 0"]
    assert messages(since_seconds=0) == ["sinceSeconds: Invalid value: 0: must be greater than 0"]
    assert messages(since_seconds=5, since_time="2026-01-01T00:00:00Z") == [
        "Forbidden: at most one of `sinceTime` or `sinceSeconds` may be specified"]


def test_the_log_writer_process_writes_cri_lines_until_both_pipes_close(tmp_path):
    path = tmp_path / "c" / "0.log"
    before = time.time()
    out_w, err_w = start_log_writer(path)
    os.write(out_w, b"hello\nno newline yet")
    os.write(err_w, b"oops\n")
    os.close(out_w)
    os.close(err_w)
    deadline = time.monotonic() + 20
    text = b""
    while time.monotonic() < deadline:
        text = path.read_bytes() if path.exists() else b""
        if text.count(b"\n") >= 3:
            break
        time.sleep(0.02)
    entries = [logs.parse(line) for line in text.splitlines()]
    assert sorted((e.stream, e.partial, e.content) for e in entries) == [
        (b"stderr", False, b"oops"), (b"stdout", False, b"hello"),
        (b"stdout", True, b"no newline yet")]
    assert all(before - 1 <= e.when <= time.time() + 1 for e in entries)


def test_the_log_file_rotates_and_keeps_max_files(tmp_path):
    from svcnet.agent.runtime.logwriter import LogFile

    path = tmp_path / "0.log"
    log = LogFile(str(path), max_size=100, max_files=3)
    for i in range(10):
        log.write(b"%d" % i + b"x" * 59 + b"\n")
    files = sorted(p.name for p in tmp_path.iterdir())
    assert "0.log" in files
    rotated = [f for f in files if f.startswith("0.log.")]
    assert len(rotated) == 2  # max_files counts the current file
    # the newest are kept: lines 6-7 and 8-9 (each rotated file holds two 61-byte lines)
    assert [(tmp_path / f).read_bytes()[:1] for f in rotated] == [b"6", b"8"]
    assert path.read_bytes() == b""


def test_the_log_writer_rotates_files_it_is_given_limits_for(tmp_path):
    path = tmp_path / "c" / "0.log"
    out_w, err_w = start_log_writer(path, rotate=(1000, 2))
    for _ in range(30):
        os.write(out_w, b"y" * 99 + b"\n")
    os.close(out_w)
    os.close(err_w)
    def lines() -> int:
        return sum(p.read_bytes().count(b" stdout F ") for p in path.parent.iterdir())

    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and lines() < 20:  # what the 2 files kept can hold
        time.sleep(0.02)
    names = sorted(p.name for p in path.parent.iterdir())
    assert names[0] == "0.log" and len(names) == 2 and names[1].startswith("0.log.")
