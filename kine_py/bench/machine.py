"""Facts about the machine and the software a report was measured with, and the servers.

``facts()`` never raises: a fact it cannot find reads ``unknown (reason)``. ``servers()``
starts a fresh etcd and a fresh kine-py per backend, each in its own directory under
``workdir`` (PostgreSQL: a new database named after that directory, dropped on exit), and
stops them all on exit, in the reverse order.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import platform
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from kine_py.testing import databases
from kine_py.testing.processes import ServerProcess, etcd_bin_dir, etcd_process, free_port, kine_process

LABELS = {
    "etcd": "etcd 3.5.1",
    "sqlite": "kine-py SQLite",
    "postgres": "kine-py PostgreSQL",
    "null": "null grpc.aio server",
}
REPO = Path(__file__).resolve().parents[2]


def _safe(fn: Callable[[], str]) -> str:
    try:
        return fn().strip()
    except Exception as exc:
        return f"unknown ({type(exc).__name__}: {exc})"


def _proc_line(path: str, name: str) -> str:
    for line in Path(path).read_text().splitlines():
        if line.startswith(name):
            return line.split(":", 1)[1].strip()
    return "unknown"


def _run(*cmd: str) -> str:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=True).stdout


def _git() -> str:
    """The commit, and whether the package measured differs from it (read-only git calls)."""
    git = ("git", "--no-optional-locks", "-C", str(REPO))
    head = _run(*git, "rev-parse", "--short", "HEAD").strip()
    dirty = [line[3:] for line in _run(*git, "status", "--porcelain", "--", "kine_py").splitlines()]
    return head + (f" plus uncommitted changes to {len(dirty)} paths under kine_py/" if dirty else "")


def _postgres() -> str:
    import psycopg

    url = databases.POSTGRES.replace("postgres://", "postgresql://", 1) + "/postgres"
    with psycopg.connect(url, connect_timeout=3) as conn:
        row = conn.execute("SHOW server_version").fetchone()
        return f"PostgreSQL {row[0] if row else '?'}"


def _protobuf() -> str:
    import google.protobuf
    from google.protobuf.internal import api_implementation

    return f"{google.protobuf.__version__} ({api_implementation.Type()} backend)"


def facts() -> dict[str, str]:
    return {
        "CPU": _safe(lambda: f"{os.cpu_count()} x {_proc_line('/proc/cpuinfo', 'model name')}"),
        "memory": _safe(lambda: f"{int(_proc_line('/proc/meminfo', 'MemTotal').split()[0]) // 1024:,} MiB"),
        "kernel": _safe(lambda: f"{platform.system()} {platform.release()}"),
        "Python": sys.version.split()[0],
        "grpcio": _safe(lambda: importlib.metadata.version("grpcio")),
        "protobuf": _safe(_protobuf),
        "etcd": _safe(lambda: _run(str(etcd_bin_dir() / "etcd"), "--version").splitlines()[0]),
        "kine-py": _safe(lambda: f"{importlib.metadata.version('kine-py')}, commit {_git()}"),
        "SQLite": sqlite3.sqlite_version,
        "PostgreSQL": _safe(_postgres),
    }


def load_average() -> str:
    return " / ".join(f"{x:.1f}" for x in os.getloadavg())


def postgres_problem() -> str:
    """Why kine-py on PostgreSQL cannot run here ('' if it can)."""
    try:
        databases.check_reachable("postgres")
    except Exception as exc:
        return f"PostgreSQL at {databases.POSTGRES} is not reachable: {exc}"
    return ""


def _alive(server: ServerProcess) -> ServerProcess:
    """Raise if the server exited just after answering: then another process answered on its
    port (a port taken between ``free_port`` and the bind), and we would measure that one."""
    time.sleep(0.5)
    if server.proc is None or server.proc.poll() is not None:
        raise RuntimeError(f"server on {server.endpoint} exited at start; log:\n{server.log_text()[-2000:]}")
    return server


def null_process(workdir: Path) -> ServerProcess:
    """``kine_py.bench.null_server`` on a free loopback port (not started)."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    cmd = [sys.executable, "-m", "kine_py.bench.null_server", f"127.0.0.1:{port}"]
    return ServerProcess(cmd, port, workdir / "null.log")


@contextlib.contextmanager
def servers(
    workdir: Path, phase: str, backends: list[str], *, null: bool = False
) -> Iterator[dict[str, ServerProcess]]:
    """``{"etcd": ..., "sqlite": ..., "postgres": ...}`` (the backends asked for), and with
    ``null`` also ``"null"`` (the grpc.aio floor), started."""
    started: dict[str, ServerProcess] = {}
    base = workdir / phase
    try:
        started["etcd"] = _alive(etcd_process(base / "etcd").start())
        if null:
            started["null"] = _alive(null_process(base / "null").start())
        for backend in backends:
            data = base / f"kine-{backend}"
            started[backend] = _alive(
                kine_process(data, endpoint=databases.endpoint_for(data, backend)).start()
            )
        yield started
    finally:
        for server in reversed(list(started.values())):
            server.stop()
        databases.drop_created()
