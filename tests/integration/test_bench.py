"""The benchmark tool: every workload against kine-py and the real etcd, memory, and the report.

Smoke runs only: tiny sizes, and timings are never asserted. What is asserted is that each
command runs against both servers, prints its numbers in the documented format, gets no
RPC errors (a paginated list that misses keys counts as one), and that ``report --quick``
writes every section of the results file.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from kine_py.testing import databases
from kine_py.testing.processes import ServerProcess, etcd_process, kine_process
from tests.conftest import require
from tests.integration.conftest import require_etcd

pytestmark = [pytest.mark.etcd_reference, pytest.mark.timeout(300)]
LINE = re.compile(
    r"^(\S+): (\d+) ops in [\d.]+s = [\d,]+/s; latency ms p50 [\d.]+ p90 [\d.]+ p99 [\d.]+ max [\d.]+(.*)$",
    re.M,
)
RATIO = re.compile(
    r"^ratio .+: throughput ([\d.]+x|n/a), p50 latency ([\d.]+x|n/a), p99 latency [\d.]+x$", re.M
)


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    """One kine-py and one etcd for the whole module: each workload writes under its own keys."""
    require_etcd()
    base = tmp_path_factory.mktemp("bench")
    kine = kine_process(base / "kine").start()
    try:
        etcd = etcd_process(base / "etcd").start()
        try:
            yield kine, etcd
        finally:
            etcd.stop()
    finally:
        kine.stop()


def bench(*args: str, timeout: float = 120) -> str:
    cmd = [sys.executable, "-m", "kine_py.bench", *args]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


WORKLOADS = {
    "put": "--procs 2 --clients 4 --total 200",
    "range": "--procs 1 --clients 4 --total 200 --serializable",
    "txn-put": "--procs 1 --clients 4 --total 200",
    "txn-create": "--procs 1 --clients 4 --total 200",
    "range-prefix": "--procs 1 --clients 2 --total 20 --prefix-keys 300 --limit 50 --revisions-per-key 3"
    " --at old",
    "range-prefix --paginate": "--procs 1 --clients 2 --total 10 --prefix-keys 300 --limit 40"
    " --revisions-per-key 2",
    "mixed": "--procs 2 --clients 3 --total 200 --prefix-keys 60 --limit 25 --watchers 3",
    "watch-latency": "--procs 2 --watchers 30 --watch-streams 4 --total 20",
}


@pytest.mark.parametrize("workload", list(WORKLOADS))
def test_workload_compares_kine_with_etcd(
    workload: str, servers: tuple[ServerProcess, ServerProcess]
) -> None:
    kine, etcd = servers
    name, *flags = f"{workload} {WORKLOADS[workload]}".split()
    ends = ["--endpoint", kine.endpoint, "--compare", etcd.endpoint, "--rounds", "1"]
    out = bench(name, *flags, *ends)
    lines = LINE.findall(out)
    assert [endpoint for endpoint, _, _ in lines] == [kine.endpoint, etcd.endpoint], out
    assert all("errors" not in rest for _, _, rest in lines), out
    assert len(RATIO.findall(out)) == 1, out
    total = int(flags[flags.index("--total") + 1])
    assert all(int(n) == total for _, n, _ in lines), out
    if name == "watch-latency":
        assert all(f"events {30 * total:,}" in rest for _, _, rest in lines), out
    if name == "mixed":
        kinds = set(re.findall(r"^  (\w+): \d+ ops", out, re.M))
        assert kinds == {"create", "update", "get", "delete", "revision", "list"}, out


def test_memory_reads_both_servers_rss(servers: tuple[ServerProcess, ServerProcess]) -> None:
    kine, etcd = servers
    assert kine.proc and etcd.proc
    out = bench(
        "memory", "--endpoint", kine.endpoint, "--compare", etcd.endpoint,
        "--pids", str(kine.proc.pid), str(etcd.proc.pid), "--keys", "3000",
    )  # fmt: skip
    found = re.findall(r"^(\S+): VmRSS ([\d.]+) MiB -> ([\d.]+) MiB .* after 3,000 keys of 1024 B", out, re.M)
    assert [endpoint for endpoint, _, _ in found] == [kine.endpoint, etcd.endpoint], out
    assert all(float(after) > 1 for _, _, after in found), out
    assert re.search(r"^ratio .+: VmRSS after [\d.]+x$", out, re.M), out


def test_report_quick_writes_every_section(tmp_path: Path) -> None:
    """The one command, shrunk: fresh etcd, kine-py on SQLite and PostgreSQL, every workload,
    memory, and ``etcdctl check perf --load=s`` (60 s, against kine-py on SQLite only)."""
    require_etcd()
    try:
        databases.check_reachable("postgres")
    except Exception as exc:
        require(f"PostgreSQL is not reachable: {exc}")
    out = tmp_path / "RESULTS.md"
    bench("report", "--quick", "--out", str(out), timeout=280)
    text = out.read_text()
    for heading in (
        "## Machine and versions",
        "## Commands",
        "## Targets",
        "## kine-py SQLite vs etcd 3.5.1",
        "## kine-py PostgreSQL vs etcd 3.5.1",
        "## The grpc.aio floor",
        "## etcdctl check perf",
        "## Memory",
        "## Notes",
    ):
        assert heading in text, heading
    assert "python -m kine_py.bench report --quick --out" in text
    assert re.search(r"\| s \(150/s\) \| not run \| (PASS|\*\*FAIL\*\*): \d+/s", text), text
    assert len(re.findall(r"^\| kine-py (SQLite|PostgreSQL) \| 2,000 x 1024 B", text, re.M)) == 2, text
    assert "failed:" not in text, text
    floor = text.split("## The grpc.aio floor")[1].split("## etcdctl check perf")[0]
    floor_rows = [r for r in floor.splitlines() if r.startswith("| ") and "workload" not in r]
    assert len(floor_rows) == 5, floor  # put 1 / many, range 1 / many / serializable
    assert all(
        re.search(r"\| [\d,]+ \| [\d,]+ \| [\d.]+x \| [\d,]+ \| [\d.]+x \| [\d,]+ \| [\d.]+x \|$", r)
        for r in floor_rows
    ), floor
    tables = text.split("## kine-py SQLite vs")[1].split("## The grpc.aio floor")[0]
    assert "not run" not in tables, tables
    for table in tables.split("## kine-py PostgreSQL vs"):
        rows = [r for r in table.splitlines() if r.startswith("| ") and "workload" not in r]
        assert len(rows) >= 15 and all(r.count(" | ") == 9 for r in rows[:15]), table
