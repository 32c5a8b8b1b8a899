"""Raft mode under faults, checked by the project's history checkers: clients write, read,
compare-and-swap and watch through all three replicas while the leader and then a follower
are killed with SIGKILL and restarted (and, in the second test, while the leader is cut off
from its peers). The linearizability checker (per-key registers, Wing-Gong-Lowe), the
revision-replay checker (every acknowledged write exactly once in the revision history) and
the watch checker (gapless, ordered, resumable on another replica) must find nothing.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from kine_py.testing.checkers import all_ok, check_history, summary
from kine_py.testing.history import History, Kind, Outcome
from kine_py.testing.processes import RaftMemberProcess, raft_cluster
from kine_py.testing.workload import Workload, WorkloadConfig
from tests.integration.test_raft_cluster import _proxy_peers, leader_of

pytestmark = [pytest.mark.raft, pytest.mark.slow, pytest.mark.timeout(300)]
PREFIX = b"/raft-history/"


def workload(members: list[RaftMemberProcess], seed: int) -> Workload:
    return Workload(
        WorkloadConfig(
            endpoints=[m.endpoint for m in members],
            prefix=PREFIX,
            clients=6,
            keys=6,
            watchers=3,
            op_timeout=2.0,
            progress_interval=0.3,
            progress_notify=True,
            seed=seed,
        )
    )


def check(history: History, tmp_path: Path) -> None:
    results = check_history(history, prefix=PREFIX, timeout=90)
    if not all_ok(results):
        saved = history.save(tmp_path / "history.json")
        pytest.fail(f"history saved to {saved}\n{summary(results)}")
    ok_writes = sum(1 for op in history.ops if op.kind in (Kind.PUT, Kind.CAS) and op.outcome is Outcome.OK)
    assert ok_writes >= 100, "too few acknowledged writes for the check to mean much"
    assert all(len(w.sessions) >= 1 for w in history.watches)


def start(members: list[RaftMemberProcess]) -> None:
    for m in members:
        m.start(wait=False)
    for m in members:
        m.start()


def test_histories_across_leader_and_follower_kills(tmp_path: Path) -> None:
    members = raft_cluster(tmp_path, 3, "--watch-progress-notify-interval", "300ms")
    start(members)
    load = workload(members, seed=11)
    try:
        load.start()
        time.sleep(3)
        leader = leader_of(members)
        leader.kill()
        time.sleep(3)
        leader.start()
        time.sleep(2)
        follower = next(m for m in members if m is not leader_of(members))
        follower.kill()
        time.sleep(2)
        follower.start()
        time.sleep(2)
        load.finish(timeout=60)
    except BaseException:
        load.abort()
        raise
    finally:
        for m in members:
            m.stop()
    check(load.history, tmp_path)


def test_histories_across_an_isolated_leader(tmp_path: Path) -> None:
    members = raft_cluster(tmp_path, 3, "--watch-progress-notify-interval", "300ms")
    proxies = _proxy_peers(members)
    start(members)
    load = workload(members, seed=12)
    try:
        load.start()
        time.sleep(3)
        cut = proxies[members.index(leader_of(members))]
        cut.cut()
        time.sleep(4)
        cut.restore()
        time.sleep(3)
        load.finish(timeout=60)
    except BaseException:
        load.abort()
        raise
    finally:
        for m in members:
            m.stop()
        for p in proxies:
            p.close()
    check(load.history, tmp_path)
