"""A Wing-Gong-Lowe linearizability checker for etcd single-key registers (porcupine's design).

The history is split by key (P-compositionality: a history is linearizable iff each key's
sub-history is) and each key is searched on its own, within one overall time budget:

* The calls and returns of the key's operations are put in one time-ordered, doubly linked
  list; intervals are closed, so at equal times a call comes before a return (concurrent).
* The search repeatedly linearizes the earliest call the model accepts, unlinks it and its
  return and restarts from the head; on reaching the return of an operation it has not
  linearized, it backtracks (pops the last choice and tries the next call after it).
* ``(bitset of linearized ops, model state)`` pairs already explored are cached and never
  explored again: this memoisation is what makes the search practical.

The model (an etcd register with revisions) is stronger than a value-only register: the state
is the key's ``(value, mod_revision, create_revision, version)`` or absent, plus lower bounds
on the store revision. A read must return the value *and* the revisions and version of the last
linearized write; a write's revision must be above every revision linearized before it on the
key, and a read's header revision must not be below any. An UNKNOWN write has return time
+infinity and may take effect at any point after its call, or never; its revision is then
unknown until a later read or ``prev_kv`` reveals it. UNKNOWN and FAIL reads are dropped; FAIL
writes never happened; a CAS whose compare failed is a read (its failure branch read the key).

Entry point: ``check_linearizability(history)``. It returns a ``CheckResult`` whose verdict is
OK, ILLEGAL (an anomaly ``not-linearizable`` per bad key, with the longest linearizable prefix
and the first operation that cannot be placed in ``text``) or UNKNOWN (``budget-exceeded``).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from kine_py.testing.history import KV, Anomaly, CheckResult, Kind, Op, Outcome

# A model op is a tuple whose first item is one of these codes.
_READ, _PUT, _PUT_U, _DEL, _DEL_U, _CAS, _CAS_FAIL, _CAS_U = range(8)

# The key's value, mod_revision, create_revision, version; a revision is None while unknown.
_Reg = tuple[bytes, int | None, int | None, int]
# (seen, floor, register): seen is a lower bound of the store revision at this point of the
# linearization; floor a lower bound of the last write's revision on the key (exact when known).
_State = tuple[int, int, _Reg | None]
_Obs = tuple[bytes, int, int, int] | None
_ModelOp = tuple[object, ...]

_INF = float("inf")


def _obs(kv: KV | None) -> _Obs:
    return None if kv is None else (kv.value, kv.mod_revision, kv.create_revision, kv.version)


def _compile(op: Op) -> _ModelOp | None:
    """The model op for ``op``, or None if it has no effect the model can check."""
    prev = _obs(op.state)
    if op.outcome is Outcome.UNKNOWN:
        return {
            Kind.PUT: (_PUT_U, op.value),
            Kind.DELETE: (_DEL_U,),
            Kind.CAS: (_CAS_U, op.expected, op.value),
        }.get(op.kind)
    if op.read_only:
        if op.kind is Kind.GET and not op.observed:
            return None
        if op.kind is Kind.CAS:
            return (_CAS_FAIL, op.revision, op.expected, op.observed, prev)
        return (_READ, op.revision, prev if op.kind is Kind.GET else None)
    if not op.applied:
        return None
    if op.kind is Kind.PUT:
        return (_PUT, op.revision, op.value, op.observed, prev)
    if op.kind is Kind.DELETE:
        return (_DEL, op.revision, op.observed, prev)
    return (_CAS, op.revision, op.expected, op.value, op.observed, prev)


def _match(floor: int, reg: _Reg | None, obs: _Obs, at: int) -> tuple[int, _Reg | None] | None:
    """The register after checking it against ``obs`` (read at revision ``at``), binding unknown
    revisions to the observed ones; None if they cannot agree."""
    if obs is None or reg is None:
        return (floor, reg) if obs is None and reg is None else None
    value, mod, create, version = reg
    v, m, c, ver = obs
    if value != v or version != ver or m > at:
        return None
    if mod is None:
        if m < floor:
            return None
        mod = floor = m
    elif mod != m:
        return None
    if create is None:
        if c > m or (version == 1 and c != m):
            return None
        create = c
    elif create != c:
        return None
    return floor, (value, mod, create, version)


def _after_put(reg: _Reg | None, value: bytes, rev: int | None) -> _Reg:
    if reg is None:
        return (value, rev, rev, 1)
    return (value, rev, reg[2], reg[3] + 1)


def _compare(floor: int, reg: _Reg | None, expected: int) -> tuple[int, _Reg | None] | None:
    """The register if ``mod_revision == expected`` can hold (binding an unknown mod_revision)."""
    if reg is None:
        return (floor, reg) if expected == 0 else None
    if reg[1] is None:
        if expected < floor:
            return None
        create = expected if reg[3] == 1 else reg[2]
        return expected, (reg[0], expected, create, reg[3])
    return (floor, reg) if reg[1] == expected else None


def _step_read(state: _State, op: _ModelOp) -> _State | None:
    seen, floor, reg = state
    at = op[1]
    assert isinstance(at, int)
    if at < seen:
        return None
    if op[0] == _CAS_FAIL:
        matched = _match(floor, reg, op[4], at) if op[3] else (floor, reg)  # type: ignore[arg-type]
        if matched is None:
            return None
        reg = matched[1]
        mod = 0 if reg is None else reg[1]
        return None if mod == op[2] else (at, matched[0], reg)
    matched = _match(floor, reg, op[2], at)  # type: ignore[arg-type]
    return None if matched is None else (at, matched[0], matched[1])


def _step_write(state: _State, op: _ModelOp) -> _State | None:
    seen, floor, reg = state
    code, rev = op[0], op[1]
    assert isinstance(rev, int)
    if rev <= seen:
        return None
    if code == _CAS:
        compared = _compare(floor, reg, op[2])  # type: ignore[arg-type]
        if compared is None:
            return None
        floor, reg = compared
    observed, prev = op[-2], op[-1]
    if observed:
        matched = _match(floor, reg, prev, rev - 1)  # type: ignore[arg-type]
        if matched is None:
            return None
        floor, reg = matched
    if code == _DEL:
        return None if reg is None else (rev, rev, None)
    value = op[2] if code == _PUT else op[3]
    return rev, rev, _after_put(reg, value, rev)  # type: ignore[arg-type]


def _step_unknown(state: _State, op: _ModelOp) -> _State | None:
    seen, floor, reg = state
    code = op[0]
    if code == _DEL_U:
        return None if reg is None else (seen + 1, seen + 1, None)
    if code == _CAS_U:
        compared = _compare(floor, reg, op[1])  # type: ignore[arg-type]
        if compared is None:
            return None
        reg = compared[1]
    value = op[1] if code == _PUT_U else op[2]
    return seen + 1, seen + 1, _after_put(reg, value, None)  # type: ignore[arg-type]


_STEPS = {
    _READ: _step_read,
    _CAS_FAIL: _step_read,
    _PUT: _step_write,
    _DEL: _step_write,
    _CAS: _step_write,
    _PUT_U: _step_unknown,
    _DEL_U: _step_unknown,
    _CAS_U: _step_unknown,
}


def step(state: _State, op: _ModelOp) -> _State | None:
    """The model: the state after ``op`` is linearized in ``state``, or None if it cannot be."""
    return _STEPS[op[0]](state, op)  # type: ignore[index]


@dataclass(slots=True)
class _Failure:
    prefix: list[int]  # indexes of the ops in the longest linearizable prefix, in order
    state: _State
    blocked: int  # the op whose return was reached unlinearized


class _BudgetExceeded(Exception):
    pass


class _Search:
    """One key's search. Positions 0..E-1 are the time-ordered entries, E is the list head."""

    def __init__(self, ops: list[tuple[int, float, _ModelOp]]) -> None:
        entries = sorted(
            [(call, 0, i) for i, (call, _, _) in enumerate(ops)]
            + [(ret, 1, i) for i, (_, ret, _) in enumerate(ops) if ret != _INF]
        )
        self.model = [op for _, _, op in ops]
        self.head = len(entries)
        self.is_call = [kind == 0 for _, kind, _ in entries]
        self.op_of = [i for _, _, i in entries]
        self.ret_pos = [-1] * len(ops)
        for pos, (_, kind, i) in enumerate(entries):
            if kind == 1:
                self.ret_pos[i] = pos
        self.nxt = [*range(1, len(entries)), -1, 0 if entries else -1]
        self.prv = [self.head, *range(len(entries) - 1), -1]
        self.explored = 0

    def _lift(self, pos: int) -> None:
        nxt, prv = self.nxt, self.prv
        for p in (pos, self.ret_pos[self.op_of[pos]]):
            if p >= 0:
                nxt[prv[p]] = nxt[p]
                if nxt[p] >= 0:
                    prv[nxt[p]] = prv[p]

    def _unlift(self, pos: int) -> None:
        nxt, prv = self.nxt, self.prv
        for p in (self.ret_pos[self.op_of[pos]], pos):
            if p >= 0:
                nxt[prv[p]] = p
                if nxt[p] >= 0:
                    prv[nxt[p]] = p

    def run(self, init: _State, deadline: float) -> _Failure | None:
        """None if linearizable; else the longest prefix found. Raises _BudgetExceeded.

        An op that leaves the state unchanged is linearized greedily: if the search fails after
        it, it fails without it too (it can always move to the front), so backtracking skips
        the alternatives to it (``forced`` on the stack)."""
        state, linearized = init, 0
        cache: set[tuple[int, _State]] = set()
        stack: list[tuple[int, _State, bool]] = []
        remaining = sum(1 for p in self.ret_pos if p >= 0)
        best: _Failure | None = None
        cur = self.nxt[self.head]
        while remaining:
            self.explored += 1
            if not self.explored & 0xFFF and time.monotonic() > deadline:
                raise _BudgetExceeded
            i = self.op_of[cur]
            if self.is_call[cur]:
                new = step(state, self.model[i])
                if new is None:
                    cur = self.nxt[cur]
                    continue
                bits = linearized | (1 << i)
                if (bits, new) not in cache:
                    cache.add((bits, new))
                    stack.append((cur, state, new == state))
                    state, linearized = new, bits
                    self._lift(cur)
                    remaining -= self.ret_pos[i] >= 0
                    cur = self.nxt[self.head]
                    continue
                if new != state:
                    cur = self.nxt[cur]
                    continue
                # else: this state-preserving op already failed from here, so this point fails
            elif best is None or len(stack) > len(best.prefix):
                best = _Failure([self.op_of[p] for p, _, _ in stack], state, i)
            forced = True
            while forced:
                if not stack:
                    return best
                cur, state, forced = stack.pop()
                i = self.op_of[cur]
                linearized ^= 1 << i
                self._unlift(cur)
                remaining += self.ret_pos[i] >= 0
            cur = self.nxt[cur]
        return None


def _initial(kv: KV | None) -> _State:
    if kv is None:
        return (0, 0, None)
    return (kv.mod_revision, kv.mod_revision, (kv.value, kv.mod_revision, kv.create_revision, kv.version))


def _describe(state: _State) -> str:
    seen, floor, reg = state
    if reg is None:
        return f"absent (store revision >= {seen})"
    mod = reg[1] if reg[1] is not None else f"?>={floor}"
    create = reg[2] if reg[2] is not None else "?"
    return f"{reg[0].decode('latin-1')!r}@{mod}(c{create},v{reg[3]}) (store revision >= {seen})"


def _explain(key: bytes, ops: list[Op], failure: _Failure, state0: _State) -> str:
    blocked = ops[failure.blocked]
    lines = [
        f"key {key!r}: not linearizable ({len(ops)} ops). Longest linearizable prefix "
        f"({len(failure.prefix)} ops), starting from {_describe(state0)}:"
    ]
    lines += [f"    {ops[i].describe()}" for i in failure.prefix]
    lines.append(f"  state after the prefix: {_describe(failure.state)}")
    lines.append(f"  cannot be placed (returned before it could be linearized): {blocked.describe()}")
    done = set(failure.prefix)
    assert blocked.return_ns is not None
    pending = [
        op
        for i, op in enumerate(ops)
        if i not in done and i != failure.blocked and op.invoke_ns <= blocked.return_ns
    ]
    if pending:
        lines.append("  other ops invoked by then and not in the prefix:")
        lines += [f"    {op.describe()}" for op in pending[:15]]
    return "\n".join(lines)


def partition(ops: Iterable[Op]) -> dict[bytes, list[tuple[Op, _ModelOp]]]:
    """The checkable ops of each key, with their model ops."""
    keys: dict[bytes, list[tuple[Op, _ModelOp]]] = {}
    for op in ops:
        compiled = _compile(op)
        if compiled is not None:
            keys.setdefault(op.key, []).append((op, compiled))
    return keys


def check_linearizability(
    ops: Iterable[Op], *, timeout: float = 60.0, initial: Mapping[bytes, KV | None] | None = None
) -> CheckResult:
    """Check every key's sub-history; keys absent from ``initial`` start absent.

    The budget ``timeout`` (seconds) is shared by all keys, smallest first; keys left when it
    runs out get a ``budget-exceeded`` anomaly (verdict UNKNOWN unless another key is ILLEGAL).
    """
    deadline = time.monotonic() + timeout
    result = CheckResult("linearizability")
    keys = sorted(partition(ops).items(), key=lambda item: (len(item[1]), item[0]))
    explained, explored, largest = [], 0, 0
    for key, entries in keys:
        largest = max(largest, len(entries))
        state0 = _initial((initial or {}).get(key))
        timed = [(op.invoke_ns, _return_time(op), model) for op, model in entries]
        search = _Search(timed)
        try:
            failure = search.run(state0, deadline)
        except _BudgetExceeded:
            result.anomalies.append(Anomaly("budget-exceeded", f"key {key!r}: no answer within {timeout}s"))
            continue
        finally:
            explored += search.explored
        if failure is not None:
            key_ops = [op for op, _ in entries]
            blocked = key_ops[failure.blocked]
            message = f"key {key!r}: cannot linearize {blocked.describe()}"
            result.anomalies.append(Anomaly("not-linearizable", message, (blocked.id,)))
            explained.append(_explain(key, key_ops, failure, state0))
    result.stats = {"keys": len(keys), "ops": sum(len(e) for _, e in keys), "largest_key": largest}
    result.stats["explored"] = explored
    result.text = "\n".join(explained)
    return result


def _return_time(op: Op) -> float:
    if op.outcome is Outcome.UNKNOWN or op.return_ns is None:
        return _INF
    return op.return_ns


__all__ = ["check_linearizability", "partition", "step"]
