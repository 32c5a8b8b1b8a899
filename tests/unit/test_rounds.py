"""``SharedRound``: concurrent callers share runs, and never one that began before them."""

from __future__ import annotations

import asyncio

import pytest

from kine_py.mvcc.rounds import SharedRound


class Counter:
    """A run that takes a while and says which run it was."""

    def __init__(self, fail_on: int = 0) -> None:
        self.started = 0
        self.fail_on = fail_on
        self.gate = asyncio.Event()
        self.began = asyncio.Event()

    async def __call__(self) -> int:
        self.started += 1
        self.began.set()
        run = self.started
        await self.gate.wait()
        if run == self.fail_on:
            raise RuntimeError(f"run {run} failed")
        return run


async def test_callers_share_one_run() -> None:
    run = Counter()
    shared = SharedRound(run)
    callers = [asyncio.create_task(shared()) for _ in range(50)]
    await asyncio.sleep(0)
    run.gate.set()
    assert await asyncio.gather(*callers) == [1] * 50
    assert run.started == 1


async def test_a_caller_never_joins_the_run_in_flight() -> None:
    run = Counter()
    shared = SharedRound(run)
    first = asyncio.create_task(shared())
    await run.began.wait()
    late = [asyncio.create_task(shared()) for _ in range(10)]  # run 1 began before them
    await asyncio.sleep(0)
    assert run.started == 1  # they wait for the next run, which starts when run 1 ends
    run.gate.set()
    assert await first == 1
    assert await asyncio.gather(*late) == [2] * 10
    assert run.started == 2


async def test_a_failed_run_fails_its_callers_only() -> None:
    run = Counter(fail_on=1)
    shared = SharedRound(run)
    first = [asyncio.create_task(shared()) for _ in range(3)]
    await run.began.wait()
    second = asyncio.create_task(shared())
    run.gate.set()
    for task in first:
        with pytest.raises(RuntimeError, match="run 1 failed"):
            await task
    assert await second == 2


async def test_a_cancelled_caller_leaves_the_run_to_the_others() -> None:
    run = Counter()
    shared = SharedRound(run)
    quitter, stayer = asyncio.create_task(shared()), asyncio.create_task(shared())
    await asyncio.sleep(0)
    quitter.cancel()
    await asyncio.sleep(0)
    run.gate.set()
    assert await stayer == 1
    assert quitter.cancelled()
