"""``report``: the one command that measures everything and writes ``benchmarks/RESULTS.md``.

Order: machine facts; then three phases, each on fresh servers started here (etcd 3.5.1 and
kine-py on every backend asked for; a PostgreSQL that does not answer is left out, with a
note): (1) every scenario of ``scenarios.py``, the servers alternating (the ``FLOOR`` ones
also with the null grpc.aio server of ``null_server.py``); (2) memory, one server
after the other; (3) ``etcdctl check perf`` per load, one server after the other. Then the
markdown is written to ``--out``. Progress goes to stdout. A workload that fails is noted in
the file and the report goes on; a server that cannot start raises.
"""

from __future__ import annotations

import argparse
import shlex
import tempfile
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path

from kine_py.bench import machine
from kine_py.bench.checkperf import LOADS, check_perf
from kine_py.bench.compare import alternate
from kine_py.bench.machine import LABELS, servers
from kine_py.bench.memory import measure_memory
from kine_py.bench.render import Findings, markdown
from kine_py.bench.scenarios import FLOOR, scenarios
from kine_py.bench.setup import State
from kine_py.bench.stats import Result


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", type=Path, default=Path("benchmarks/RESULTS.md"), help="markdown file to write")
    p.add_argument("--quick", action="store_true", help="tiny sizes and durations: a smoke run")
    p.add_argument("--backends", nargs="+", choices=["sqlite", "postgres"], default=["sqlite", "postgres"])
    p.add_argument(
        "--check-perf",
        nargs="*",
        choices=LOADS,
        default=None,
        metavar="LOAD",
        help="etcdctl check perf loads (default s m l; --quick: s, against kine-py's first backend only)",
    )
    p.add_argument(
        "--memory-keys", type=int, default=0, help="keys of 1 KiB (default 100,000; --quick 2,000)"
    )
    p.add_argument("--only", nargs="*", default=None, metavar="ID", help="run only these scenario ids")


def _say(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


def _workloads(f: Findings, workdir: Path, only: list[str] | None) -> None:
    f.scenarios = [s for s in scenarios(f.quick) if only is None or s.id in only]
    with servers(workdir, "workloads", f.backends, null=True) as running:
        names = ["etcd", *f.backends, "null"]
        endpoints = {running[name].endpoint: name for name in names}
        states: dict[str, dict[str, State]] = {}
        for s in f.scenarios:
            chosen = [e for e, name in endpoints.items() if name != "null" or s.id in FLOOR]
            _say(f"{s.id}: {s.label}")

            def show(endpoint: str, result: Result) -> None:
                _say("  " + result.line(LABELS[endpoints[endpoint]]))

            shared = states.setdefault(s.setup, {}) if s.setup else {}
            try:
                found = alternate(s.spec, chosen, s.rounds, show, shared)
            except Exception as exc:
                f.notes.append(f"`{s.id}` failed: {type(exc).__name__}: {str(exc).splitlines()[-1][:300]}")
                _say(traceback.format_exc())
                continue
            f.results[s.id] = {endpoints[e]: runs for e, runs in found.items()}


def _memory(f: Findings, workdir: Path, keys: int) -> None:
    with servers(workdir, "memory", f.backends) as running:
        for name, server in running.items():
            assert server.proc is not None
            found = measure_memory(server.endpoint, server.proc.pid, keys=keys, val_size=1024)
            _say("memory " + found.line().replace(server.endpoint, LABELS[name]))
            f.memory[name] = found


def _check_perf(f: Findings, workdir: Path, loads: list[str]) -> None:
    f.check_loads = loads
    names = f.backends[:1] if f.quick else ["etcd", *f.backends]
    with servers(workdir, "check-perf", f.backends) as running:
        for i, load in enumerate(loads):
            for name in names if i % 2 == 0 else list(reversed(names)):
                found = check_perf(running[name].endpoint, load)
                _say(found.line().replace(running[name].endpoint, LABELS[name]))
                f.checks[(load, name)] = found
    if f.quick:
        f.notes.append(f"--quick runs etcdctl check perf only against {LABELS[f.backends[0]]}.")


def main(args: argparse.Namespace) -> int:
    argv: list[str] = getattr(args, "argv", [])
    f = Findings(
        command="python -m kine_py.bench " + shlex.join(argv),
        quick=args.quick,
        started=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        load_before=machine.load_average(),
        machine=machine.facts(),
        backends=list(dict.fromkeys(args.backends)),
    )
    problem = machine.postgres_problem() if "postgres" in f.backends else ""
    if problem:
        f.backends.remove("postgres")
        f.notes.append(f"kine-py on PostgreSQL was not measured: {problem}")
    loads = args.check_perf if args.check_perf is not None else (["s"] if args.quick else ["s", "m", "l"])
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="kine-bench-") as tmp:
        _workloads(f, Path(tmp), args.only)
        _memory(f, Path(tmp), args.memory_keys or (2_000 if args.quick else 100_000))
        if loads:
            _check_perf(f, Path(tmp), loads)
    f.minutes = (time.monotonic() - started) / 60
    f.load_after = machine.load_average()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(markdown(f))
    _say(f"wrote {args.out}")
    return 0
