"""What one benchmark run does: a plain, picklable description shared by every module.

The command line (``cli.py``) and the report (``report.py``) build a ``Spec``; the runners
(``load.py``, ``watch.py``) read it in the parent and, pickled, in each client process. A run
ends after ``total`` operations or, when ``duration`` > 0, after that many seconds.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace

WORKLOADS = ("put", "range", "range-prefix", "txn-put", "txn-create", "watch-latency", "mixed")


@dataclass(frozen=True)
class Spec:
    workload: str
    total: int = 2000
    duration: float = 0.0
    procs: int = 2
    clients: int = 8
    conns: int = 2
    key_size: int = 16
    val_size: int = 256
    key_space: int = 1000
    serializable: bool = False
    prefix_keys: int = 10_000
    limit: int = 500
    revisions_per_key: int = 1
    at: str = "current"
    paginate: bool = False
    setup_batch: int = 100
    watchers: int = 1
    watch_streams: int = 0
    since: str = "acked"
    seed: int = 1

    def __post_init__(self) -> None:
        if self.workload not in WORKLOADS:
            raise ValueError(f"unknown workload {self.workload!r}; one of {', '.join(WORKLOADS)}")
        if self.at not in ("current", "old"):
            raise ValueError(f"--at must be current or old, not {self.at!r}")
        if self.since not in ("acked", "sent"):
            raise ValueError(f"--since must be acked or sent, not {self.since!r}")
        if min(self.procs, self.clients, self.conns, self.limit, self.setup_batch) < 1:
            raise ValueError("--procs, --clients, --conns, --limit and --setup-batch must be >= 1")
        if self.total < 1 and self.duration <= 0:
            raise ValueError("give --total >= 1 or --duration > 0")

    def with_(self, **changes: object) -> Spec:
        return replace(self, **changes)  # type: ignore[arg-type]


def token() -> bytes:
    """A short random tag, so that runs against one server never reuse each other's keys."""
    return os.urandom(4).hex().encode()


def prefix_end(prefix: bytes) -> bytes:
    """etcd's ``range_end`` for every key starting with ``prefix`` (clientv3.GetPrefixRangeEnd)."""
    end = bytearray(prefix)
    while end:
        if end[-1] < 0xFF:
            end[-1] += 1
            return bytes(end)
        end.pop()
    return b"\0"


def share(total: int, parts: int, index: int) -> tuple[int, int]:
    """Part ``index`` of ``total`` items split as evenly as possible: ``(first, count)``."""
    base, extra = divmod(total, parts)
    first = index * base + min(index, extra)
    return first, base + (1 if index < extra else 0)
