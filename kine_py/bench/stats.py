"""Latency samples and what is printed about them: throughput, percentiles, ratios.

A ``Result`` is built by the load runner (``load.py``) or the watch runner (``watch.py``) once a
run is over; nothing mutates it afterwards. Latencies are in seconds; ``kinds`` splits them by
operation kind (the mixed workload's create/update/get/...), ``errors`` counts failed RPCs per
kind (they are not in the latencies).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field

PERCENTILES = (0.5, 0.9, 0.99, 1.0)


def percentile(samples: Sequence[float], p: float) -> float:
    """The ``p`` quantile (0..1) of ``samples`` by the nearest-rank rule; 0.0 when empty."""
    if not samples:
        return 0.0
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))]


@dataclass(frozen=True)
class Result:
    """One run of one workload against one endpoint."""

    ops: int
    seconds: float
    latencies: list[float]
    kinds: dict[str, list[float]] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    extra: dict[str, float] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.ops / self.seconds if self.seconds > 0 else 0.0

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    def percentile(self, p: float) -> float:
        return percentile(self.latencies, p)

    def line(self, name: str) -> str:
        """``NAME: N ops in S s = R/s; latency ms p50 .. p90 .. p99 .. max ..`` (+ errors, extras)."""
        ms = {p: self.percentile(p) * 1000 for p in PERCENTILES}
        text = (
            f"{name}: {self.ops} ops in {self.seconds:.2f}s = {self.rate:,.0f}/s; latency ms "
            f"p50 {ms[0.5]:.2f} p90 {ms[0.9]:.2f} p99 {ms[0.99]:.2f} max {ms[1.0]:.2f}"
        )
        if self.errors:
            text += "; errors " + ", ".join(f"{k} {n}" for k, n in sorted(self.errors.items()))
        if self.extra:
            text += "; " + ", ".join(f"{k} {v:,.0f}" for k, v in sorted(self.extra.items()))
        return text

    def kind_lines(self) -> list[str]:
        """One line per operation kind, when the workload has more than one."""
        if len(self.kinds) < 2:
            return []
        return [
            f"  {kind.replace(' ', '-')}: {len(lat)} ops; latency ms p50 {percentile(lat, 0.5) * 1000:.2f} "
            f"p99 {percentile(lat, 0.99) * 1000:.2f} max {percentile(lat, 1.0) * 1000:.2f}"
            for kind, lat in sorted(self.kinds.items())
        ]


def merge(ops_seconds: float, parts: Sequence[Result]) -> Result:
    """Several processes' results of one run, over the run's wall time ``ops_seconds``."""
    kinds: dict[str, list[float]] = {}
    errors: dict[str, int] = {}
    extra: dict[str, float] = {}
    for part in parts:
        for kind, lat in part.kinds.items():
            kinds.setdefault(kind, []).extend(lat)
        for kind, n in part.errors.items():
            errors[kind] = errors.get(kind, 0) + n
        for key, value in part.extra.items():
            extra[key] = extra.get(key, 0.0) + value
    latencies = [x for part in parts for x in part.latencies]
    return Result(len(latencies), ops_seconds, latencies, kinds, errors, extra)


@dataclass(frozen=True)
class Summary:
    """The median over rounds of one endpoint's runs of one workload."""

    rate: float
    p50: float
    p99: float
    max: float
    errors: int

    @staticmethod
    def of(results: Sequence[Result]) -> Summary:
        return Summary(
            rate=statistics.median(r.rate for r in results),
            p50=statistics.median(r.percentile(0.5) for r in results),
            p99=statistics.median(r.percentile(0.99) for r in results),
            max=max(r.percentile(1.0) for r in results),
            errors=sum(r.error_count for r in results),
        )


def ratio(a: float, b: float) -> float:
    """``a / b``; ``inf`` when only ``b`` is 0, ``nan`` when both are (no ratio to speak of)."""
    if b > 0:
        return a / b
    return float("nan") if a == 0 else float("inf")


def ratio_line(first: str, second: str, a: Summary, b: Summary) -> str:
    """``ratio A / B: throughput 0.50x, p50 latency 1.20x, p99 latency 2.00x``."""
    return (
        f"ratio {first} / {second}: throughput {times(ratio(a.rate, b.rate))}, "
        f"p50 latency {times(ratio(a.p50, b.p50))}, p99 latency {times(ratio(a.p99, b.p99))}"
    )


def times(value: float) -> str:
    """``0.50x``, or ``n/a`` for a ratio that is not a number."""
    return f"{value:.2f}x" if math.isfinite(value) else "n/a"
