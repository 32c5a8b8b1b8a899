"""The benchmark tool runs every workload, against kine-py and the real etcd, and compares."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from kine_py.testing.processes import ServerProcess

pytestmark = [pytest.mark.etcd_reference, pytest.mark.timeout(300)]
LINE = re.compile(r"(\d+) ops in [\d.]+s = [\d,]+/s; latency ms p50 [\d.]+ p90 [\d.]+ p99 [\d.]+ max [\d.]+")


def bench(*args: str) -> str:
    cmd = [sys.executable, "-m", "kine_py.bench", *args, "--procs", "1", "--clients", "4", "--total", "200"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=240, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.parametrize("workload", ["put", "range", "txn-put"])
def test_workloads_compare_kine_with_etcd(workload: str, kine: ServerProcess, etcd: ServerProcess) -> None:
    out = bench(workload, "--endpoint", kine.endpoint, "--compare", etcd.endpoint, "--rounds", "1")
    counts = [int(m.group(1)) for m in LINE.finditer(out)]
    assert counts == [200, 200], out
    assert re.search(r"ratio .+: throughput [\d.]+x, p99 latency [\d.]+x", out), out


def test_watch_latency(kine: ServerProcess) -> None:
    out = bench("watch-latency", "--endpoint", kine.endpoint, "--watchers", "3")
    match = LINE.search(out)
    assert match and int(match.group(1)) == 200, out
