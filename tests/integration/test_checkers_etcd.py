"""The register workload against real servers, every history checked by all three checkers.

Against the reference etcd 3.5.1 this validates the checkers (a correct store must pass); against
kine-py it checks kine-py, also across a SIGKILL and restart in the middle of the run. A failing
run leaves its history as JSON in the test's tmp_path (``History.load`` it to check again).

etcd 3.5.1 runs without progress requests: before 3.5.8 a requested progress notification could
overtake events still being sent (etcd-io/etcd#15220), which the Bookmarkable check would flag.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import pytest

from kine_py.testing.checkers import all_ok, check_history, summary
from kine_py.testing.history import History, Kind, Outcome
from kine_py.testing.processes import ServerProcess, kine_process
from kine_py.testing.workload import Workload, WorkloadConfig

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

LOAD_SECONDS = 8


def config(endpoint: str, *, progress: bool, seed: int) -> WorkloadConfig:
    return WorkloadConfig(
        endpoints=[endpoint],
        prefix=b"/checkers/",
        clients=6,
        keys=6,
        watchers=2,
        op_timeout=1.0,
        progress_interval=0.2 if progress else None,
        progress_notify=progress,
        seed=seed,
    )


def assert_consistent(history: History, tmp_path: Path) -> None:
    """All checkers say OK; otherwise save the history and fail with their reports."""
    started = time.monotonic()
    results = check_history(history, prefix=b"/checkers/", timeout=60)
    took = time.monotonic() - started
    if not all_ok(results):
        saved = history.save(tmp_path / "history.json")
        pytest.fail(f"history saved to {saved}\n{summary(results)}")
    assert took < 20, f"checking took {took:.1f}s:\n{summary(results)}"


def assert_meaningful(history: History, min_ops: int) -> Counter[tuple[Kind, Outcome]]:
    """The run did what the checks need: many ops of every kind, both CAS branches, reads of
    present keys, and watchers that saw events."""
    outcomes = Counter((op.kind, op.outcome) for op in history.ops if op.outcome is not None)
    assert sum(outcomes.values()) >= min_ops, outcomes
    for wanted in [(Kind.GET, Outcome.OK), (Kind.PUT, Outcome.OK), (Kind.DELETE, Outcome.OK)]:
        assert outcomes[wanted] >= 20, outcomes
    assert outcomes[Kind.CAS, Outcome.OK] >= 10 and outcomes[Kind.CAS, Outcome.FAIL] >= 10, outcomes
    assert sum(1 for op in history.ops if op.kind is Kind.GET and op.state is not None) >= 20
    assert history.ground_truth is not None and len(history.ground_truth) >= min_ops // 4
    for watch in history.watches:
        assert sum(len(s.events()) for s in watch.sessions) >= min_ops // 4
    return outcomes


@pytest.mark.etcd_reference
def test_reference_etcd_history_is_consistent(etcd: ServerProcess, tmp_path: Path) -> None:
    """A correct store passes: the checkers raise no false alarm on etcd 3.5.1."""
    history = Workload(config(etcd.endpoint, progress=False, seed=1)).run(LOAD_SECONDS)
    assert_consistent(history, tmp_path)
    assert_meaningful(history, min_ops=1000)


@pytest.mark.kine
def test_kine_history_is_consistent(tmp_path: Path) -> None:
    """Linearizable registers, every write in the revision history, watches with all six
    guarantees, progress notifications (periodic and requested) included."""
    with kine_process(tmp_path / "kine", "--watch-progress-notify-interval", "300ms") as server:
        history = Workload(config(server.endpoint, progress=True, seed=2)).run(LOAD_SECONDS)
    assert_consistent(history, tmp_path)
    assert_meaningful(history, min_ops=500)
    progress = sum(1 for w in history.watches for s in w.sessions for r in s.responses if r.progress)
    assert progress >= 10, "the watchers got (almost) no progress notifications"


@pytest.mark.kine
def test_kine_history_across_sigkill_is_consistent(tmp_path: Path) -> None:
    """SIGKILL kine-py under load and restart it on the same data and port: requests in flight
    may or may not have happened, but no acknowledged write is lost, nothing goes backwards and
    the watchers resume exactly where they were."""
    data = tmp_path / "kine"
    server = kine_process(data, "--watch-progress-notify-interval", "300ms").start()
    workload = Workload(config(server.endpoint, progress=True, seed=3))
    try:
        workload.start()
        time.sleep(LOAD_SECONDS / 2)
        server.kill()
        time.sleep(0.3)
        server = kine_process(data, "--watch-progress-notify-interval", "300ms", port=server.port).start()
        time.sleep(LOAD_SECONDS / 2)
        workload.finish()
    except BaseException:
        workload.abort()
        raise
    finally:
        server.stop()
    history = workload.history
    assert_consistent(history, tmp_path)
    outcomes = assert_meaningful(history, min_ops=500)
    assert sum(n for (_, outcome), n in outcomes.items() if outcome is Outcome.UNKNOWN) >= 1, outcomes
    assert all(len(w.sessions) >= 2 for w in history.watches), "no watcher had to resume"
