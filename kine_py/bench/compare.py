"""Run one workload against one or more endpoints, alternating, as ``--compare`` does.

``alternate(spec, endpoints, rounds)``: first the setup of every endpoint (``setup.prepare``,
once each), then ``rounds`` rounds, each running the workload once against every endpoint —
in the given order on even rounds and reversed on odd ones, so that a drift of the machine's
load hurts both alike. Returns each endpoint's results in round order. Errors of the setup or
of a run propagate.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from kine_py.bench import load, watch
from kine_py.bench.setup import State, prepare
from kine_py.bench.spec import Spec
from kine_py.bench.stats import Result

Progress = Callable[[str, Result], None]


def measure(spec: Spec, endpoint: str, state: State) -> Result:
    """One run of ``spec`` against ``endpoint`` (set up beforehand with ``state``)."""
    if spec.workload == "watch-latency":
        return watch.watch_latency(spec, endpoint)
    return load.run(spec, endpoint, state)


def alternate(
    spec: Spec,
    endpoints: Sequence[str],
    rounds: int,
    progress: Progress | None = None,
    states: dict[str, State] | None = None,
) -> dict[str, list[Result]]:
    """``states``: setups already done (by endpoint); those missing are done here and added."""
    states = {} if states is None else states
    for endpoint in endpoints:
        if endpoint not in states:
            states[endpoint] = asyncio.run(prepare(spec, endpoint))
    results: dict[str, list[Result]] = {e: [] for e in endpoints}
    for r in range(rounds):
        for endpoint in endpoints if r % 2 == 0 else list(reversed(endpoints)):
            result = measure(spec, endpoint, states[endpoint])
            results[endpoint].append(result)
            if progress:
                progress(endpoint, result)
    return results
