"""What ``report`` runs: the workloads of issue #7 and the targets they are judged by.

``scenarios(quick)`` lists the runs in order; scenarios with the same ``setup`` key share
one setup per endpoint (the range-prefix runs over one history). ``quick`` shrinks sizes
and durations for a smoke run. ``TARGETS`` compare kine-py with etcd (a ratio of the two)
or kine-py with itself (``HISTORY``: a page over 20 revisions per key against 1).
"""

from __future__ import annotations

from dataclasses import dataclass

from kine_py.bench.spec import Spec


@dataclass(frozen=True)
class Scenario:
    id: str
    label: str
    spec: Spec
    rounds: int
    setup: str = ""


@dataclass(frozen=True)
class Target:
    """kine-py's ``metric`` over etcd's must be >= ``limit`` (rate) or <= ``limit`` (latency)."""

    text: str
    scenario: str
    metric: str
    limit: float

    def met(self, ratio: float) -> bool:
        return ratio >= self.limit if self.metric == "rate" else ratio <= self.limit


@dataclass(frozen=True)
class HistoryTarget:
    """kine-py's p50 on ``deep`` over its p50 on ``shallow`` must be <= ``limit``."""

    text: str
    shallow: str
    deep: str
    limit: float


def _sizes(quick: bool) -> dict[str, float]:
    if quick:
        return {"d": 0.4, "rounds": 1, "procs": 1, "many": 8, "keys": 300, "deep": 3, "watchers": 20}
    return {"d": 4.0, "rounds": 2, "procs": 2, "many": 50, "keys": 10_000, "deep": 20, "watchers": 1000}


def scenarios(quick: bool) -> list[Scenario]:
    z = _sizes(quick)
    d, rounds, procs, many = z["d"], int(z["rounds"]), int(z["procs"]), int(z["many"])
    keys, deep, watchers = int(z["keys"]), int(z["deep"]), int(z["watchers"])
    one = Spec("put", duration=d, procs=1, clients=1, conns=1)
    load = Spec("put", duration=d, procs=procs, clients=many, conns=max(1, many // 10))
    n = f"{procs} x {many}"
    page = Spec("range-prefix", duration=d, procs=1, clients=1, conns=1, prefix_keys=keys, limit=500)
    found = [
        Scenario("put-1", "Put, 1 client", one, rounds),
        Scenario("put-n", f"Put, {n} clients", load, rounds),
        Scenario(
            "range-1", "Range one key (linearizable), 1 client", one.with_(workload="range"), rounds, "range"
        ),
        Scenario(
            "range-n",
            f"Range one key (linearizable), {n}",
            load.with_(workload="range"),
            rounds,
            "range",
        ),
        Scenario(
            "range-s",
            f"Range one key (serializable), {n}",
            load.with_(workload="range", serializable=True),
            rounds,
            "range",
        ),
        Scenario(
            "txn-put",
            f"txn-put: Get + MOD==rev ? Put : Range, {procs} x 16",
            load.with_(workload="txn-put", clients=16),
            rounds,
        ),
        Scenario(
            "txn-create",
            f"txn-create: CREATE==0 ? Put : Range, {procs} x 16",
            load.with_(workload="txn-create", clients=16),
            rounds,
        ),
    ]
    for revs in (1, deep):
        for at in ("current", "old"):
            found.append(
                Scenario(
                    f"page-r{revs}-{at}",
                    f"page of 500 of {keys:,} keys, {revs} rev/key, {at} revision",
                    page.with_(revisions_per_key=revs, at=at),
                    rounds,
                    f"list-r{revs}",
                )
            )
    found += [
        Scenario(
            f"list-r{deep}",
            f"paginated list of all {keys:,} keys (500 a page), {deep} rev/key",
            page.with_(revisions_per_key=deep, paginate=True),
            rounds,
            f"list-r{deep}",
        ),
        Scenario(
            "watch-1",
            "watch latency, 1 watcher",
            Spec("watch-latency", duration=d, procs=1, watchers=1),
            rounds,
        ),
        Scenario(
            "watch-n",
            f"watch latency, {watchers:,} watchers ({procs} processes)",
            Spec("watch-latency", duration=d, procs=procs, conns=2, watchers=watchers),
            rounds,
        ),
        Scenario(
            "mixed",
            f"mixed kube-apiserver-like, {procs} x 16 clients, 1,000 objects, 10 watchers",
            Spec("mixed", duration=d, procs=procs, clients=16, conns=2, prefix_keys=1000, watchers=10),
            rounds,
        ),
    ]
    return found


FLOOR = ("put-1", "put-n", "range-1", "range-n", "range-s")
"""Scenarios also run against the null grpc.aio server (``null_server``): the framework's floor."""

TARGETS = [
    Target("Put throughput, many clients >= 0.5x etcd", "put-n", "rate", 0.5),
    Target("Put latency (p50), 1 client <= 2x etcd", "put-1", "p50", 2.0),
    Target("linearizable Range throughput, many clients >= 0.5x etcd", "range-n", "rate", 0.5),
    Target("page of 500, 1 rev/key, current revision: p50 <= 1x etcd", "page-r1-current", "p50", 1.0),
    Target("page of 500, 1 rev/key, old revision: p50 <= 1x etcd", "page-r1-old", "p50", 1.0),
    Target("page of 500, deep history, current revision: p50 <= 1x etcd", "page-rD-current", "p50", 1.0),
    Target("page of 500, deep history, old revision: p50 <= 1x etcd", "page-rD-old", "p50", 1.0),
    Target("watch latency p99, 1 watcher <= 2x etcd", "watch-1", "p99", 2.0),
    Target("watch latency p99, many watchers <= 2x etcd", "watch-n", "p99", 2.0),
]
HISTORY = [
    HistoryTarget(
        "page at current revision: deep history / 1 rev per key <= 1.5",
        "page-r1-current",
        "page-rD-current",
        1.5,
    ),
    HistoryTarget(
        "page at old revision: deep history / 1 rev per key <= 1.5", "page-r1-old", "page-rD-old", 1.5
    ),
]


def resolve(scenario_id: str, quick: bool) -> str:
    """Target ids name the deep-history scenarios ``rD``; the real id has the number."""
    return scenario_id.replace("rD", f"r{int(_sizes(quick)['deep'])}")
