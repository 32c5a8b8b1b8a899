"""Prometheus metrics. Names follow Kine where they exist (``kine_sql_total``,
``kine_sql_time_seconds``, ``kine_compact_total``, ``kine_insert_errors_total``) so its
dashboards work; the rest use the same prefix. Everything registers in the
``CollectorRegistry`` passed in, never the global one, so tests read their own.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

log = logging.getLogger("kine_py.sql")

# Kine's buckets ("keep consistent with etcd backend latencies"): 1 ms x 2^n.
LATENCY_BUCKETS = tuple(0.001 * 2**n for n in range(14))
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


@dataclass(frozen=True, slots=True)
class Gauges:
    """Read at scrape time: (name, help, value-callable)."""

    items: tuple[tuple[str, str, Callable[[], float]], ...]


class _GaugeCollector(Collector):
    def __init__(self, gauges: Gauges) -> None:
        self._gauges = gauges

    def collect(self) -> Iterable[GaugeMetricFamily]:
        for name, doc, read in self._gauges.items:
            yield GaugeMetricFamily(name, doc, value=read())


class Metrics:
    """The collectors kine-py updates, and the hooks the layers call."""

    def __init__(self, registry: CollectorRegistry, *, slow_sql_threshold: float = 1.0) -> None:
        self.registry = registry
        self.slow_sql_threshold = slow_sql_threshold
        self.sql_total = Counter(
            "kine_sql_total",
            "SQL statements run, by name and error code",
            ["name", "error_code"],
            registry=registry,
        )
        self.sql_time = Histogram(
            "kine_sql_time_seconds",
            "SQL statement latency",
            ["name"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.compact_total = Counter(
            "kine_compact_total", "Compactions, by result", ["result"], registry=registry
        )
        self.insert_errors = Counter(
            "kine_insert_errors_total", "Failed appends to the log", ["retriable"], registry=registry
        )
        self.grpc_total = Counter(
            "kine_grpc_requests_total",
            "gRPC calls, by method and code",
            ["method", "code"],
            registry=registry,
        )
        self.grpc_time = Histogram(
            "kine_grpc_request_duration_seconds",
            "gRPC call latency (unary; streams until they end)",
            ["method"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.batch_size = Histogram(
            "kine_write_batch_size",
            "Write requests committed together",
            buckets=BATCH_BUCKETS,
            registry=registry,
        )
        self.commit_time = Histogram(
            "kine_commit_duration_seconds",
            "Time to commit one write batch",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.watch_lag = Histogram(
            "kine_watch_delivery_lag_seconds",
            "From a commit to its events being handed to a watch stream",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        # labels() takes a lock and builds a key on every call; resolve each child once.
        self._call_children: dict[tuple[str, str], tuple[Counter, Histogram]] = {}
        self._sql_children: dict[tuple[str, str], tuple[Counter, Histogram]] = {}

    @staticmethod
    def add_gauges_to(registry: CollectorRegistry, gauges: Gauges) -> None:
        registry.register(_GaugeCollector(gauges))

    # ---- hooks ----

    def query(self, name: str, seconds: float, error: BaseException | None) -> None:
        """One SQL statement (or group of statements) ran."""
        code = "" if error is None else type(error).__name__
        key = (name, code)
        children = self._sql_children.get(key)
        if children is None:
            children = self._sql_children[key] = (
                self.sql_total.labels(name, code),
                self.sql_time.labels(name),
            )
        children[0].inc()
        children[1].observe(seconds)
        if seconds >= self.slow_sql_threshold:
            log.warning("slow SQL %s took %.3fs%s", name, seconds, f" ({code})" if code else "")

    def call_done(self, method: str, code: str, seconds: float) -> None:
        """One gRPC call ended (on the event loop, once per call: kept cheap)."""
        key = (method, code)
        children = self._call_children.get(key)
        if children is None:
            children = self._call_children[key] = (
                self.grpc_total.labels(method, code),
                self.grpc_time.labels(method),
            )
        children[0].inc()
        children[1].observe(seconds)

    def committed(self, requests: int, seconds: float) -> None:
        self.batch_size.observe(requests)
        self.commit_time.observe(seconds)

    def insert_failed(self, retriable: bool) -> None:
        self.insert_errors.labels("true" if retriable else "false").inc()

    def compacted(self, ok: bool) -> None:
        self.compact_total.labels("success" if ok else "error").inc()

    def delivered(self, committed_at: float) -> None:
        self.watch_lag.observe(max(0.0, time.time() - committed_at))
