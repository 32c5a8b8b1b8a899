"""``SharedRound``: concurrent callers of an idempotent read share one run of it.

For "what is the latest state?" questions (the ``meta`` row of a shared database before a
linearizable read): an answer is good for a caller only if the question was asked *after*
the caller arrived. So a caller never joins the run in flight; it joins the next one, which
starts as soon as the one in flight ends. Under load that is at most two runs at a time per
process, however many callers wait, instead of one per caller.

Owned by one event loop. A failed run fails every caller of that run; the next run starts
afresh. A caller that is cancelled leaves the run going for the others.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class SharedRound(Generic[T]):
    def __init__(self, run: Callable[[], Awaitable[T]]) -> None:
        self._run = run
        self._next: asyncio.Future[T] | None = None  # callers waiting for the next run
        self._busy = False
        self._task: asyncio.Task[None] | None = None

    async def __call__(self) -> T:
        future = self._next
        if future is None:
            future = self._next = asyncio.get_running_loop().create_future()
            future.add_done_callback(_retrieve)
            if not self._busy:
                self._start()
        return await asyncio.shield(future)

    def _start(self) -> None:
        self._busy = True
        self._task = asyncio.get_running_loop().create_task(self._round())

    async def _round(self) -> None:
        # Callers that arrive before the run actually begins still join it.
        future, self._next = self._next, None
        assert future is not None
        try:
            result = await self._run()
        except asyncio.CancelledError:  # shutting down: no more runs
            future.cancel()
            if self._next is not None:
                self._next.cancel()
                self._next = None
            raise
        except Exception as exc:
            _settle(future, exc)
        else:
            _settle(future, result)
        self._busy = False
        if self._next is not None:
            self._start()


def _settle(future: asyncio.Future[T], outcome: T | Exception) -> None:
    if future.done():
        return
    if isinstance(outcome, Exception):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)


def _retrieve(future: asyncio.Future[Any]) -> None:
    """Mark a failed run's exception as seen even if every caller was cancelled."""
    if not future.cancelled():
        future.exception()
