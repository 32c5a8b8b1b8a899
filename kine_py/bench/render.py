"""The markdown of ``benchmarks/RESULTS.md``, from what ``report`` measured.

Pure functions of a ``Findings``: nothing here runs a server or reads a clock. Ratios are
always kine-py / etcd: above 1 is better for throughput, below 1 is better for latency.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from kine_py.bench.checkperf import TARGET_RATE, CheckPerf
from kine_py.bench.machine import LABELS
from kine_py.bench.memory import Memory
from kine_py.bench.scenarios import FLOOR, HISTORY, TARGETS, Scenario, resolve
from kine_py.bench.spec import Spec
from kine_py.bench.stats import Result, Summary, percentile, ratio, times

QUICK = " (--quick: sizes shrunk, numbers meaningless)"
SECTIONS = (
    "## Machine and versions",
    "## Commands",
    "## Targets",
    "## etcdctl check perf",
    "## Memory",
    "## Notes",
)


@dataclass
class Findings:
    command: str
    quick: bool
    started: str
    minutes: float = 0.0
    load_before: str = ""
    load_after: str = ""
    machine: dict[str, str] = field(default_factory=dict)
    backends: list[str] = field(default_factory=list)
    scenarios: list[Scenario] = field(default_factory=list)
    results: dict[str, dict[str, list[Result]]] = field(default_factory=dict)
    memory: dict[str, Memory] = field(default_factory=dict)
    checks: dict[tuple[str, str], CheckPerf] = field(default_factory=dict)
    check_loads: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def summary(self, scenario: str, server: str) -> Summary | None:
        runs = self.results.get(scenario, {}).get(server)
        return Summary.of(runs) if runs else None


def cli_command(spec: Spec, rounds: int) -> str:
    """The ``python -m kine_py.bench`` command line that runs ``spec`` alone."""
    flags = [f"--duration {spec.duration:g}" if spec.duration > 0 else f"--total {spec.total}"]
    flags += [f"--procs {spec.procs}", f"--clients {spec.clients}", f"--conns {spec.conns}"]
    flags += [f"--key-size {spec.key_size}", f"--val-size {spec.val_size}"]
    w = spec.workload
    if w in ("put", "range", "txn-put"):
        flags.append(f"--key-space {spec.key_space}")
    if w == "range" and spec.serializable:
        flags.append("--serializable")
    if w in ("range-prefix", "mixed"):
        flags += [f"--prefix-keys {spec.prefix_keys}", f"--limit {spec.limit}"]
    if w == "range-prefix":
        flags += [f"--revisions-per-key {spec.revisions_per_key}", f"--at {spec.at}"]
        flags += ["--paginate"] if spec.paginate else []
    if w in ("watch-latency", "mixed"):
        flags.append(f"--watchers {spec.watchers}")
    return f"python -m kine_py.bench {w} --endpoint KINE --compare ETCD --rounds {rounds} " + " ".join(flags)


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f}"


def _machine(f: Findings) -> list[str]:
    lines = ["## Machine and versions", "", "| | |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in f.machine.items()]
    lines += [
        f"| load average (1/5/15 min) | {f.load_before} at the start, {f.load_after} at the end |",
        f"| run | started {f.started}, took {f.minutes:.1f} min{QUICK if f.quick else ''} |",
        "",
    ]
    return lines


def _commands(f: Findings) -> list[str]:
    lines = [
        "## Commands",
        "",
        "Regenerate this file (starts its own servers; PostgreSQL must answer on",
        "`$KINE_TEST_POSTGRES`, default `postgres://postgres@127.0.0.1:5432`):",
        "",
    ]
    lines += ["```sh", f.command, "```", ""]
    lines += [
        "Each row below is one of these workloads, run against a fresh etcd and fresh kine-py",
        "servers started by the report, alternating between them (`--rounds` times, reversing the",
        "order every other round); the report runs all three servers in one alternation, which",
        "`--compare` does with two. The same workload alone, against servers of your own:",
        "",
        "```sh",
    ]
    lines += [f"# {s.label}\n{cli_command(s.spec, s.rounds)}" for s in f.scenarios]
    lines += [
        "python -m kine_py.bench etcdctl-check-perf --endpoint KINE --compare ETCD --load "
        + " ".join(f.check_loads or ["s"]),
        "python -m kine_py.bench memory --endpoint KINE --compare ETCD --pids KINE_PID ETCD_PID --keys "
        + (f"{next(iter(f.memory.values())).keys}" if f.memory else "100000"),
        "```",
        "",
    ]
    return lines


def _target_cell(f: Findings, scenario: str, backend: str, metric: str, limit: float) -> str:
    kine, etcd = f.summary(scenario, backend), f.summary(scenario, "etcd")
    if not kine or not etcd:
        return "not run"
    value = ratio(getattr(kine, metric), getattr(etcd, metric))
    if math.isnan(value):
        return "n/a (both 0)"
    met = value >= limit if metric == "rate" else value <= limit
    return f"{'met' if met else '**not met**'} ({times(value)})"


def _history_cell(f: Findings, shallow: str, deep: str, backend: str, limit: float) -> str:
    a, b = f.summary(shallow, backend), f.summary(deep, backend)
    if not a or not b:
        return "not run"
    value = ratio(b.p50, a.p50)
    return f"{'met' if value <= limit else '**not met**'} ({times(value)})"


def _check_cell(f: Findings, load: str, backend: str) -> str:
    found = f.checks.get((load, backend))
    if found is None:
        return "not run"
    return f"{'PASS' if found.passed else '**FAIL**'} ({found.throughput or 0} writes/s)"


def _targets(f: Findings) -> list[str]:
    heads = [LABELS[b] for b in f.backends]
    lines = [
        "## Targets",
        "",
        "Ratios are kine-py / etcd 3.5.1 in the same run (medians over the rounds).",
        "",
    ]
    lines += ["| target | " + " | ".join(heads) + " |", "|---" * (len(heads) + 1) + "|"]
    for t in TARGETS:
        sid = resolve(t.scenario, f.quick)
        cells = [_target_cell(f, sid, b, t.metric, t.limit) for b in f.backends]
        lines.append(f"| {t.text} | " + " | ".join(cells) + " |")
    for h in HISTORY:
        deep = resolve(h.deep, f.quick)
        cells = [_history_cell(f, h.shallow, deep, b, h.limit) for b in f.backends]
        lines.append(f"| {h.text} (kine-py against itself) | " + " | ".join(cells) + " |")
    for load in ("s", "m", "l"):
        must = "passes" if load in ("s", "m") else "(reported)"
        cells = [_check_cell(f, load, b) for b in f.backends]
        lines.append(f"| `etcdctl check perf --load={load}` {must} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def _backend_table(f: Findings, backend: str) -> list[str]:
    lines = [
        f"## {LABELS[backend]} vs etcd 3.5.1",
        "",
        "Throughput in operations/s (watch latency: Puts/s, one at a time); latency in ms.",
        "",
        "| workload | etcd /s | kine-py /s | ratio | etcd p50 | kine-py p50 | ratio "
        "| etcd p99 | kine-py p99 | ratio |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in f.scenarios:
        kine, etcd = f.summary(s.id, backend), f.summary(s.id, "etcd")
        if not kine or not etcd:
            lines.append(f"| {s.label} | not run |" + " |" * 9)
            continue
        errors = f" ({kine.errors} errors)" if kine.errors else ""
        errors += f" (etcd: {etcd.errors} errors)" if etcd.errors else ""
        rel = {m: times(ratio(getattr(kine, m), getattr(etcd, m))) for m in ("rate", "p50", "p99")}
        lines.append(
            f"| {s.label}{errors} | {etcd.rate:,.0f} | {kine.rate:,.0f} | {rel['rate']} "
            f"| {_ms(etcd.p50)} | {_ms(kine.p50)} | {rel['p50']} "
            f"| {_ms(etcd.p99)} | {_ms(kine.p99)} | {rel['p99']} |"
        )
    return [*lines, *_kinds(f, backend), ""]


BREAKDOWNS = {
    "watch-1": "Watch latency, 1 watcher, by measure",
    "watch-n": "Watch latency, many watchers, by measure",
    "mixed": "Mixed workload by operation kind",
}


def _kinds(f: Findings, backend: str) -> list[str]:
    """Latency split by kind (first round) for the scenarios that have several kinds."""
    lines: list[str] = []
    for sid, title in BREAKDOWNS.items():
        kine, etcd = f.results.get(sid, {}).get(backend), f.results.get(sid, {}).get("etcd")
        if not kine or not etcd:
            continue
        lines += ["", f"{title} (first round), latency ms:", ""]
        lines += [
            "| kind | etcd ops | kine-py ops | etcd p50 / p99 | kine-py p50 / p99 |",
            "|---|---|---|---|---|",
        ]
        for kind in sorted(set(kine[0].kinds) | set(etcd[0].kinds)):
            a, b = etcd[0].kinds.get(kind, []), kine[0].kinds.get(kind, [])
            lines.append(f"| {kind} | {len(a)} | {len(b)} | {_p50_p99(a)} | {_p50_p99(b)} |")
    return lines


def _p50_p99(samples: list[float]) -> str:
    return f"{_ms(percentile(samples, 0.5))} / {_ms(percentile(samples, 0.99))}"


def _floor(f: Findings) -> list[str]:
    """The FLOOR scenarios against the null grpc.aio server, beside etcd and kine-py."""
    rows = [s for s in f.scenarios if s.id in FLOOR and f.summary(s.id, "null") and f.summary(s.id, "etcd")]
    if not rows:
        return []
    kines = [b for b in f.backends if any(f.summary(s.id, b) for s in rows)]
    lines = [
        "## The grpc.aio floor",
        "",
        "`python -m kine_py.bench.null_server`: kine-py's own stack (grpcio's asyncio server on",
        "uvloop) answering every call with a constant and storing nothing, in the same alternation.",
        "Its throughput against etcd's is the most one Python process on grpc.aio reaches on this",
        "machine; kine-py's against it is what kine-py's own work (store, SQL, encoding) costs.",
        "",
        "| workload | etcd /s | null /s | null / etcd | "
        + " | ".join(f"{LABELS[b]} /s | kine-py / null" for b in kines)
        + " |",
        "|---" * (4 + 2 * len(kines)) + "|",
    ]
    for s in rows:
        etcd, null = f.summary(s.id, "etcd"), f.summary(s.id, "null")
        assert etcd and null
        cells = [f"{etcd.rate:,.0f}", f"{null.rate:,.0f}", times(ratio(null.rate, etcd.rate))]
        for b in kines:
            kine = f.summary(s.id, b)
            cells += [f"{kine.rate:,.0f}", times(ratio(kine.rate, null.rate))] if kine else ["not run", ""]
        lines.append(f"| {s.label} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def _check_detail(c: CheckPerf | None) -> str:
    if c is None:
        return "not run"
    text = f"{'PASS' if c.passed else '**FAIL**'}: {c.throughput or 0}/s, slowest {c.slowest or 0:.3f}s, "
    text += f"stddev {c.stddev or 0:.3f}s"
    text += f"; {c.error}" if c.error else ""
    return text + ("" if c.cleaned else "; prefix left behind")


def _check_perf(f: Findings) -> list[str]:
    servers = ["etcd", *f.backends]
    lines = [
        "## etcdctl check perf",
        "",
        "etcdctl 3.5.1's own check: 60 s of Puts (256 B keys, 1 KiB values) at a fixed rate; PASS needs",
        "> 90 % of the rate, slowest request <= 0.5 s, stddev <= 0.1 s. Fresh servers.",
        "",
        "| load (target rate) | " + " | ".join(LABELS[s] for s in servers) + " |",
        "|---" * (len(servers) + 1) + "|",
    ]
    for load in f.check_loads:
        cells = [_check_detail(f.checks.get((load, server))) for server in servers]
        lines.append(f"| {load} ({TARGET_RATE[load]}/s) | " + " | ".join(cells) + " |")
    return [*lines, ""]


def _memory(f: Findings) -> list[str]:
    lines = [
        "## Memory",
        "",
        "VmRSS of the server process (kine-py on PostgreSQL: without the database's own processes),",
        "fresh servers, before and after loading the keys.",
        "",
        "| server | keys | before MiB | after MiB | growth MiB | bytes/key | after / etcd | load s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    etcd = f.memory.get("etcd")
    for server, m in f.memory.items():
        rel = times(m.rss_mib / etcd.rss_mib) if etcd else "n/a"
        per_key = m.growth_mib * 1024 * 1024 / max(1, m.keys)
        before = m.before["VmRSS"] / 1024
        lines.append(
            f"| {LABELS[server]} | {m.keys:,} x {m.val_size} B | {before:.1f} | {m.rss_mib:.1f} "
            f"| {m.growth_mib:.1f} | {per_key:,.0f} | {rel} | {m.load_seconds:.1f} |"
        )
    return [*lines, ""]


def _notes(f: Findings) -> list[str]:
    lines = [
        "## Notes",
        "",
        "- The machine is shared and the load generator runs on the same cores as the server, so",
        "  absolute numbers are noisy and pessimistic; only the ratios, measured in one alternation,",
        "  are meant to be read. See `benchmarks/README.md` for how to read the tables.",
    ]
    lines += [f"- {n}" for n in f.notes]
    return [*lines, ""]


def markdown(f: Findings) -> str:
    lines = [
        "# kine-py vs etcd 3.5.1: benchmark results",
        "",
        "Generated by `python -m kine_py.bench report`; do not edit by hand.",
        "",
        *_machine(f),
        *_commands(f),
        *_targets(f),
    ]
    for backend in f.backends:
        lines += _backend_table(f, backend)
    lines += [*_floor(f), *_check_perf(f), *_memory(f), *_notes(f)]
    return "\n".join(lines)
