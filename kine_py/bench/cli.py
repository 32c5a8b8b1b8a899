"""The command line: ``python -m kine_py.bench COMMAND [flags]`` (see ``kine_py.bench``)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from kine_py.bench import checkperf, compare, memory, report, spec
from kine_py.bench.stats import Result, Summary, ratio_line


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--endpoint", default="127.0.0.1:2379", help="host:port of the server to load")
    p.add_argument("--compare", default="", help="a second endpoint: run both, alternating, and print ratios")


def _load_flags(p: argparse.ArgumentParser, workload: str) -> None:
    _common(p)
    p.add_argument("--rounds", type=int, default=2, help="alternations with --compare (1 without)")
    p.add_argument("--procs", type=int, default=2, help="client processes (watch-latency: watcher processes)")
    p.add_argument("--clients", type=int, default=8, help="concurrent clients per process")
    p.add_argument("--conns", type=int, default=2, help="gRPC connections per process")
    p.add_argument("--total", type=int, default=2000, help="operations in all (Puts for watch-latency)")
    p.add_argument("--duration", type=float, default=0.0, help="run for this many seconds instead of --total")
    p.add_argument("--key-size", type=int, default=16)
    p.add_argument("--val-size", type=int, default=256)
    p.add_argument("--seed", type=int, default=1)
    if workload in ("put", "range", "txn-put"):
        p.add_argument("--key-space", type=int, default=1000, help="distinct keys")
    if workload == "range":
        p.add_argument("--serializable", action="store_true", help="serializable reads")
    if workload in ("range-prefix", "mixed"):
        p.add_argument("--prefix-keys", type=int, default=10_000 if workload == "range-prefix" else 1000)
        p.add_argument("--limit", type=int, default=500, help="keys per page")
        p.add_argument("--setup-batch", type=int, default=100, help="Puts per Txn while setting up")
    if workload == "range-prefix":
        p.add_argument("--revisions-per-key", type=int, default=1, help="setup writes each key this often")
        p.add_argument(
            "--at", choices=["current", "old"], default="current", help="old: after the first round"
        )
        p.add_argument("--paginate", action="store_true", help="each op lists every page, pinned revision")
    if workload in ("watch-latency", "mixed"):
        p.add_argument("--watchers", type=int, default=1 if workload == "watch-latency" else 10)
        p.add_argument(
            "--watch-streams", type=int, default=0, help="Watch streams in all (0: one per 10 watches)"
        )
    if workload == "watch-latency":
        p.add_argument(
            "--since", choices=["acked", "sent"], default="acked", help="latency from the Put's ..."
        )


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m kine_py.bench", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for workload in spec.WORKLOADS:
        _load_flags(sub.add_parser(workload, help=f"the {workload} workload"), workload)
    mem = sub.add_parser("memory", help="resident size before/after loading keys")
    _common(mem)
    mem.add_argument("--pid", type=int, default=0, help="the server's process id")
    mem.add_argument("--pids", type=int, nargs=2, default=None, metavar=("PID", "COMPARE_PID"))
    mem.add_argument("--keys", type=int, default=100_000)
    mem.add_argument("--val-size", type=int, default=1024)
    mem.add_argument("--key-size", type=int, default=32)
    mem.add_argument("--setup-batch", type=int, default=100)
    perf = sub.add_parser("etcdctl-check-perf", help="etcdctl check perf against each endpoint")
    _common(perf)
    perf.add_argument("--load", nargs="+", choices=checkperf.LOADS, default=["s"])
    report.add_arguments(sub.add_parser("report", help="run everything on fresh servers; write RESULTS.md"))
    return p


def _spec(args: argparse.Namespace) -> spec.Spec:
    fields = set(spec.Spec.__dataclass_fields__)
    values = {k: v for k, v in vars(args).items() if k in fields}
    return spec.Spec(workload=args.command, **values)


def run_workload(args: argparse.Namespace) -> int:
    bench = _spec(args)
    endpoints = [args.endpoint, *([args.compare] if args.compare else [])]
    rounds = args.rounds if args.compare else 1
    results = compare.alternate(bench, endpoints, rounds, lambda e, r: _print_result(e, r))
    if args.compare:
        a, b = (Summary.of(results[e]) for e in endpoints)
        print(ratio_line(args.endpoint, args.compare, a, b))
    return 0


def _print_result(endpoint: str, result: Result) -> None:
    print(result.line(endpoint), flush=True)
    for line in result.kind_lines():
        print(line, flush=True)


def run_memory(args: argparse.Namespace) -> int:
    pids = list(args.pids) if args.pids else [args.pid]
    endpoints = [args.endpoint, *([args.compare] if args.compare else [])]
    if len(pids) != len(endpoints) or not all(pids):
        raise SystemExit("memory: give --pid PID, or --compare ENDPOINT with --pids PID COMPARE_PID")
    found = [
        memory.measure_memory(
            e, pid, keys=args.keys, val_size=args.val_size, key_size=args.key_size, batch=args.setup_batch
        )
        for e, pid in zip(endpoints, pids, strict=True)
    ]
    for m in found:
        print(m.line())
    if len(found) == 2:
        print(
            f"ratio {endpoints[0]} / {endpoints[1]}: VmRSS after {found[0].rss_mib / found[1].rss_mib:.2f}x"
        )
    return 0


def run_check_perf(args: argparse.Namespace) -> int:
    passed = True
    for load in args.load:
        for endpoint in [args.endpoint, *([args.compare] if args.compare else [])]:
            found = checkperf.check_perf(endpoint, load)
            print(found.line(), flush=True)
            passed = passed and found.passed
    return 0 if passed else 1


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser().parse_args(argv)
    args.argv = argv
    if args.command == "memory":
        return run_memory(args)
    if args.command == "etcdctl-check-perf":
        return run_check_perf(args)
    if args.command == "report":
        return report.main(args)
    return run_workload(args)


if __name__ == "__main__":
    sys.exit(main())
