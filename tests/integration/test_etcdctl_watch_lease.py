"""The real etcdctl 3.5.1 ``watch`` and ``lease`` commands against kine-py, compared with etcd.

As in ``test_etcdctl.py``, every expectation is etcd's own output: the same history goes to
a fresh etcd and a fresh kine-py, the same command runs against both, and what etcdctl
printed must be equal once cluster_id, member_id and raft_term are set aside. Two more
things legitimately differ and are normalized here: lease ids (each server picks its own,
so ids are named by the order they were granted in) and a lease's remaining TTL (a
countdown: only its presence and rough value are compared).

``etcdctl watch`` runs until it is killed, so it runs as a subprocess whose output lines
are read with a deadline; the watches in these tests start from a known revision (or wait
for a probe to come through) so that what they print does not depend on timing.
"""

from __future__ import annotations

import base64
import json
import os
import queue
import re
import subprocess
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

from kine_py._pb.etcdserverpb import rpc_pb2
from kine_py.testing.processes import ServerProcess, etcd_bin_dir

from .conftest import connect, run_etcdctl
from .test_etcdctl import IDENTITY_LINES, Outcome, error_lines, strip_identity

pytestmark = [pytest.mark.kine, pytest.mark.etcd_reference]

FORMATS = ["simple", "json", "fields"]

# --- writes over gRPC ----------------------------------------------------------------------

# An operation: ("put", key, value), ("del", key, range_end) or ("txn", [put/del ops]).
Op = tuple[Any, ...]

# Revisions in the comments. Every watched range in WATCH_CASES holds a/1, so the last
# history write (HIST) ends every replay and the last live write (END) ends every watch.
HISTORY: list[Op] = [
    ("put", b"a/1", b"v1"),  # 2
    ("put", b"a/2", b"v2"),  # 3
    ("put", b"b", b"x"),  # 4
    ("put", b"a/1", b"v1b"),  # 5
    ("del", b"a/2", b""),  # 6
    ("put", b"a/3", b"v3"),  # 7
    ("put", b"b", b"y"),  # 8
    ("put", b"a/1", b"HIST"),  # 9
]
LIVE: list[Op] = [
    ("put", b"a/2", b"live"),  # 10
    ("put", b"c", b"unwatched"),  # 11
    ("txn", [("put", b"a/3", b"t1"), ("del", b"a/2", b"")]),  # 12: one response, two events
    ("del", b"a/9", b""),  # no such key: no revision, no event
    ("del", b"a/", b"a0"),  # 13: a/1 and a/3 in one revision
    ("put", b"a/1", b"END"),  # 14
]


def request_op(op: Op) -> rpc_pb2.RequestOp:
    kind, key, arg = op
    if kind == "put":
        return rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=key, value=arg))
    return rpc_pb2.RequestOp(request_delete_range=rpc_pb2.DeleteRangeRequest(key=key, range_end=arg))


def apply(server: ServerProcess, ops: Sequence[Op]) -> None:
    """Commit ``ops`` on ``server``, one request (and at most one revision) each."""
    with connect(server.endpoint) as client:
        for op in ops:
            if op[0] == "put":
                client.kv.Put(rpc_pb2.PutRequest(key=op[1], value=op[2]), timeout=10)
            elif op[0] == "del":
                client.kv.DeleteRange(rpc_pb2.DeleteRangeRequest(key=op[1], range_end=op[2]), timeout=10)
            else:
                txn = rpc_pb2.TxnRequest(success=[request_op(o) for o in op[1]])
                assert client.kv.Txn(txn, timeout=10).succeeded


def compact(server: ServerProcess, revision: int) -> None:
    with connect(server.endpoint) as client:
        client.kv.Compact(rpc_pb2.CompactionRequest(revision=revision, physical=True), timeout=10)


# --- a running etcdctl watch ---------------------------------------------------------------


@dataclass
class Finished:
    """A stopped ``etcdctl watch``: exit code (negative: killed by that signal), output."""

    returncode: int
    lines: list[str]
    stderr: str


class Watch:
    """``etcdctl <args>`` as a subprocess, its stdout lines read by a thread into a queue."""

    def __init__(self, endpoint: str, *args: str, interactive: bool = False) -> None:
        cmd = [str(etcd_bin_dir() / "etcdctl"), f"--endpoints={endpoint}", *args]
        self.proc = subprocess.Popen(
            cmd,
            stdin=subprocess.PIPE if interactive else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "ETCDCTL_API": "3"},
        )
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._stderr: list[str] = []
        self._eof = False
        self._threads = [
            threading.Thread(target=self._pump_stdout, daemon=True),
            threading.Thread(target=self._pump_stderr, daemon=True),
        ]
        for thread in self._threads:
            thread.start()
        self.finished: Finished | None = None

    def _pump_stdout(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._queue.put(line.removesuffix("\n"))
        self._queue.put(None)

    def _pump_stderr(self) -> None:
        assert self.proc.stderr is not None
        self._stderr.extend(self.proc.stderr)

    def _next(self, timeout: float) -> str | None:
        """The next line (also kept in ``lines``); None at end of output; queue.Empty on timeout."""
        if self._eof:
            return None
        line = self._queue.get(timeout=max(timeout, 0))
        if line is None:
            self._eof = True
        else:
            self.lines.append(line)
        return line

    def poll_line(self, timeout: float) -> str | None:
        """The next line if one comes within ``timeout``, else None."""
        try:
            return self._next(timeout)
        except queue.Empty:
            return None

    def _fail(self, what: str) -> AssertionError:
        return AssertionError(f"{what}; etcdctl printed {self.lines}, stderr {''.join(self._stderr)!r}")

    def read_until(self, marker: str, *, tail: int = 0, timeout: float = 10) -> list[str]:
        """Read up to the first line holding ``marker`` and ``tail`` lines more."""
        deadline = time.monotonic() + timeout
        start = len(self.lines)
        while True:
            try:
                line = self._next(deadline - time.monotonic())
            except queue.Empty:
                raise self._fail(f"no {marker!r} within {timeout}s") from None
            if line is None:
                raise self._fail(f"etcdctl exited before printing {marker!r}")
            hits = [i for i, seen in enumerate(self.lines[start:], start) if marker in seen]
            if hits and len(self.lines) - 1 - hits[0] >= tail:
                return self.lines

    def read_lines(self, count: int, *, timeout: float = 10) -> list[str]:
        """Read until ``count`` lines in all have been printed."""
        deadline = time.monotonic() + timeout
        while len(self.lines) < count:
            try:
                line = self._next(deadline - time.monotonic())
            except queue.Empty:
                raise self._fail(f"fewer than {count} lines within {timeout}s") from None
            if line is None:
                raise self._fail(f"etcdctl exited before printing {count} lines")
        return self.lines

    def send(self, text: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(text)
        self.proc.stdin.flush()

    def close_stdin(self) -> None:
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            self.proc.stdin.close()

    def wait(self, timeout: float = 10) -> Finished:
        """Let etcdctl exit by itself (e.g. a canceled watch); kill it after ``timeout``."""
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            raise self._fail(f"etcdctl still running after {timeout}s") from None
        return self.stop()

    def stop(self) -> Finished:
        """SIGTERM (SIGKILL if needed), then collect everything it printed."""
        if self.finished is not None:
            return self.finished
        self.close_stdin()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        for thread in self._threads:
            thread.join(5)
        while not self._eof:
            try:
                self._next(0)
            except queue.Empty:
                break
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()
        self.finished = Finished(self.proc.returncode, list(self.lines), "".join(self._stderr))
        return self.finished

    def __enter__(self) -> Watch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def normalize_lines(lines: Sequence[str], fmt: str) -> list[Any]:
    """Parse ``-w json`` lines, drop the cluster identity lines of ``-w fields``."""
    if fmt == "json":
        return [strip_identity(json.loads(line)) if line.startswith("{") else line for line in lines]
    if fmt == "fields":
        return [line for line in lines if not line.startswith(IDENTITY_LINES)]
    return list(lines)


def outcome(done: Finished, fmt: str, skip: int = 0) -> Outcome:
    """What a stopped watch showed, from its ``skip``-th line on, cluster identity aside."""
    return Outcome(done.returncode, normalize_lines(done.lines[skip:], fmt), error_lines(done.stderr))


@dataclass(frozen=True)
class Pair:
    """A fresh reference etcd and a fresh kine-py."""

    etcd: ServerProcess
    kine: ServerProcess


@pytest.fixture
def pair(etcd: ServerProcess, kine: ServerProcess) -> Pair:
    return Pair(etcd=etcd, kine=kine)


def same_on_both(pair: Pair, scenario: Any, *args: Any) -> Outcome:
    """Run ``scenario(server, *args)`` on etcd, then on kine-py: the outcomes must be equal."""
    want: Outcome = scenario(pair.etcd, *args)
    got: Outcome = scenario(pair.kine, *args)
    assert got == want, f"{scenario.__name__}{args}\n  etcd: {want}\n  kine: {got}"
    return got


# --- watch ---------------------------------------------------------------------------------

EXEC = [
    "--",
    "sh",
    "-c",
    'echo "[$ETCD_WATCH_EVENT_TYPE $ETCD_WATCH_KEY $ETCD_WATCH_VALUE $ETCD_WATCH_REVISION]"',
]

WATCH_CASES: list[tuple[list[str], str]] = [
    (["a/1", "--rev=2"], "simple"),
    (["a/1", "--rev=6"], "simple"),
    (["a/1", "--rev=10"], "simple"),  # nothing to replay: the next revision on
    (["a/", "--prefix", "--rev=2"], "simple"),
    (["a/", "--prefix", "--rev=3", "--prev-kv"], "simple"),
    (["a/1", "a/3", "--rev=2"], "simple"),  # a range: a/1 and a/2
    (["", "--prefix", "--rev=2"], "simple"),  # everything
    (["a/", "--prefix", "--rev=2", "--hex"], "simple"),
    (["a/", "--prefix", "--rev=2"], "json"),
    (["a/", "--prefix", "--rev=3", "--prev-kv"], "json"),
    (["a/1", "--rev=2", "--prev-kv"], "json"),
    (["a/", "--prefix", "--rev=4", "--prev-kv"], "fields"),
    (["a/1", "--rev=2", *EXEC], "simple"),  # runs a command per event, with ETCD_WATCH_* set
    (["a/", "--prefix", "--rev=2", "--prev-kv", *EXEC], "simple"),
]


def marker(value: str, args: Sequence[str], fmt: str) -> str:
    """How ``value`` shows in what ``etcdctl -w fmt watch args`` prints."""
    if "--" in args:
        return f'"{value}"'  # the exec'd command's line, printed after the event
    if "--hex" in args:
        return "".join(f"\\x{byte:02x}" for byte in value.encode())
    if fmt == "json":
        return base64.b64encode(value.encode()).decode()
    return value


def watch_history(server: ServerProcess, args: list[str], fmt: str) -> Outcome:
    """Write HISTORY, watch from a past revision, write LIVE once the replay is printed."""
    apply(server, HISTORY)
    tail = 1 if fmt == "fields" else 0  # "Value" is followed by "Lease"
    with Watch(server.endpoint, f"--write-out={fmt}", "watch", *args) as watch:
        if int(next(a for a in args if a.startswith("--rev="))[6:]) <= 9:
            # Live writes only after the replay: a response holds what one sync found.
            watch.read_until(marker("HIST", args, fmt), tail=tail)
        apply(server, LIVE)
        watch.read_until(marker("END", args, fmt), tail=tail)
        return outcome(watch.stop(), fmt)


@pytest.mark.parametrize(
    ("args", "fmt"), WATCH_CASES, ids=lambda v: " ".join(v) if isinstance(v, list) else v
)
def test_watch_history(pair: Pair, args: list[str], fmt: str) -> None:
    """``etcdctl watch --rev=N``: history replayed from N, then live events, as etcd prints them."""
    got = same_on_both(pair, watch_history, args, fmt)
    assert got.returncode == -15 and not got.errors  # ran until terminated, no error


def test_watch_history_sanity(pair: Pair) -> None:
    """A check of the comparison itself: what the replay and the live part print."""
    got = same_on_both(pair, watch_history, ["a/1", "--rev=2", "--prev-kv"], "json")
    replay, *live = got.stdout
    assert [(e.get("type", 0), e["kv"]["mod_revision"]) for e in replay["Events"]] == [(0, 2), (0, 5), (0, 9)]
    assert replay["Header"] == {"revision": 9}
    assert [line["Header"]["revision"] for line in live] == [13, 14]
    deleted = live[0]["Events"][0]
    assert deleted["type"] == 1 and base64.b64decode(deleted["prev_kv"]["value"]) == b"HIST"


def test_watch_exec_sanity(pair: Pair) -> None:
    """The command after ``--`` runs once per event, with the response's header revision."""
    got = same_on_both(pair, watch_history, ["a/1", "--rev=2", *EXEC], "simple")
    replayed = ['["PUT" "a/1" "v1" 9]', '["PUT" "a/1" "v1b" 9]', '["PUT" "a/1" "HIST" 9]']
    assert got.stdout[6:12] == ["PUT", "a/1", "HIST", *replayed]
    assert got.stdout[-5:] == ['["DELETE" "a/1" "" 13]', "PUT", "a/1", "END", '["PUT" "a/1" "END" 14]']


LIVE_W: list[Op] = [
    ("put", b"w", b"1"),
    ("put", b"w/x", b"2"),
    ("put", b"wz", b"3"),
    ("put", b"other", b"4"),
    ("txn", [("put", b"w", b"5"), ("put", b"w/y", b"6")]),
    ("del", b"w", b""),
    ("del", b"w/", b"w0"),
    ("put", b"w", b"END"),
]


def watch_live(server: ServerProcess, args: list[str]) -> Outcome:
    """A plain watch (no --rev): probe until it is live, then compare what follows SYNC."""
    with Watch(server.endpoint, "watch", *args) as watch:
        deadline = time.monotonic() + 10
        while watch.poll_line(0.2) is None:
            assert time.monotonic() < deadline, "the watch never saw a probe"
            apply(server, [("put", b"w", b"probe")])
        # Probes may still be coming: everything up to the SYNC line is dropped.
        apply(server, [("put", b"w", b"SYNC")])
        watch.read_until("SYNC")
        apply(server, LIVE_W)
        watch.read_until("END")
        done = watch.stop()
    return outcome(done, "simple", skip=done.lines.index("SYNC") + 1)


@pytest.mark.parametrize(
    "args", [["w"], ["w", "--prefix"], ["w", "--prev-kv"], ["w", "--prefix", "--prev-kv"]], ids=" ".join
)
def test_watch_live(pair: Pair, args: list[str]) -> None:
    """``etcdctl watch key`` from now on, with --prefix and --prev-kv."""
    got = same_on_both(pair, watch_live, args)
    assert got.stdout[-3:] == ["PUT", "w", "END"]


def watch_compacted(server: ServerProcess, fmt: str) -> Outcome:
    """Watches below, at and above the compacted revision 5 (two cancel, one replays)."""
    apply(server, HISTORY)
    compact(server, 5)
    canceled = []
    for rev in (2, 4):
        with Watch(server.endpoint, f"--write-out={fmt}", "watch", "a/1", f"--rev={rev}") as watch:
            canceled.append(outcome(watch.wait(), fmt))
    with Watch(server.endpoint, f"--write-out={fmt}", "watch", "a/", "--prefix", "--rev=5") as watch:
        watch.read_until(marker("HIST", [], fmt), tail=1 if fmt == "fields" else 0)
        replayed = outcome(watch.stop(), fmt)
    return Outcome(0, [*canceled, replayed], ())


@pytest.mark.parametrize("fmt", FORMATS)
def test_watch_compacted(pair: Pair, fmt: str) -> None:
    """``etcdctl watch --rev`` below the compaction: canceled, with etcd's message and exit code."""
    first, _, replayed = same_on_both(pair, watch_compacted, fmt).stdout
    assert first.returncode == 5
    assert first.errors == (
        "watch was canceled (etcdserver: mvcc: required revision has been compacted)",
        "Error: watch is canceled by the server",
    )
    assert replayed.returncode == -15 and not replayed.errors


def watch_interactive(server: ServerProcess) -> Outcome:
    """``etcdctl watch -i``: bad lines, then a watch read from stdin, then end of input."""
    apply(server, HISTORY)
    with Watch(server.endpoint, "watch", "-i", interactive=True) as watch:
        watch.send("bogus a/1\nwatch\nwatch a/ --prefix --rev=2 --prev-kv\n")
        watch.read_until("HIST")
        apply(server, LIVE)
        watch.read_until("END")
        watch.close_stdin()
        return outcome(watch.wait(), "simple")


def test_watch_interactive(pair: Pair) -> None:
    got = same_on_both(pair, watch_interactive)
    assert got.returncode == 3
    assert got.errors[-1] == "Error: error reading watch request line: EOF"


# --- lease ---------------------------------------------------------------------------------

HEX_OR_DECIMAL = re.compile(r"\b(?:[0-9a-f]{16}|\d{4,})\b")
REMAINING = re.compile(r'remaining\((\d+)s\)|"TTL" : (\d+)')


@dataclass
class Leases:
    """One server's lease ids, named L0, L1, ... in the order they were granted."""

    ids: dict[str, int] = field(default_factory=dict)

    def add(self, lease_id: int) -> str:
        name = f"L{len(self.ids)}"
        self.ids[name] = lease_id
        return name

    def hex(self) -> dict[str, str]:
        return {name: f"{lease_id:x}" for name, lease_id in self.ids.items()}

    def name(self, lease_id: int) -> str | None:
        return next((f"<{n}>" for n, i in self.ids.items() if i == lease_id), None)

    def text(self, text: str) -> str:
        def rename(match: re.Match[str]) -> str:
            word = match.group(0)
            candidates = [int(word, 16)] if len(word) == 16 else []
            candidates += [int(word)] if word.isdigit() else []
            return next((n for c in candidates if (n := self.name(c))), word)

        return HEX_OR_DECIMAL.sub(rename, text)

    def value(self, value: Any) -> Any:
        """Parsed JSON with lease ids (as numbers) replaced by their names."""
        if isinstance(value, dict):
            return {k: self.value(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.value(v) for v in value]
        if isinstance(value, int) and not isinstance(value, bool) and (name := self.name(value)):
            return name
        return value


@dataclass(frozen=True)
class LeaseOutcome:
    """An etcdctl outcome with lease ids named and remaining TTLs set aside."""

    outcome: Outcome
    remaining: tuple[int, ...] = field(compare=False)


def set_aside_remaining(value: Any, found: list[int]) -> Any:
    """``value`` (text or parsed JSON) with each positive remaining TTL replaced by "<ttl>"."""
    if isinstance(value, str):

        def hide(match: re.Match[str]) -> str:
            found.append(int(match.group(1) or match.group(2)))
            return match.group(0).replace(match.group(1) or match.group(2), "<ttl>")

        return REMAINING.sub(hide, value)
    if isinstance(value, list):
        return [set_aside_remaining(v, found) for v in value]
    if isinstance(value, dict) and "granted-ttl" in value and value.get("ttl", -1) > 0:
        found.append(value["ttl"])
        return {**value, "ttl": "<ttl>"}
    return value


def sort_attached_keys(value: Any) -> Any:
    """etcd lists a lease's keys in Go map order: compare them as a set."""
    if isinstance(value, str):
        value = re.sub(
            r"attached keys\(\[(.*)\]\)", lambda m: f"attached keys({sorted(m[1].split())})", value
        )
        lines = value.split("\n")  # -w fields: one '"Key" : "k"' line per key
        keys = sorted(line for line in lines if line.startswith('"Key" : '))
        at = iter(keys)
        return "\n".join(next(at) if line.startswith('"Key" : ') else line for line in lines)
    if isinstance(value, list):
        return [sort_attached_keys(v) for v in value]
    if isinstance(value, dict) and isinstance(value.get("keys"), list):
        return {**value, "keys": sorted(value["keys"])}
    return value


@dataclass
class LeasePair:
    """etcd and kine-py given the same lease commands; each side's ids are named alike."""

    etcd: ServerProcess
    kine: ServerProcess
    names: dict[str, Leases] = field(default_factory=lambda: {"etcd": Leases(), "kine": Leases()})

    def sides(self) -> list[tuple[str, ServerProcess]]:
        return [("etcd", self.etcd), ("kine", self.kine)]

    def run(self, side: str, args: Sequence[str], fmt: str) -> subprocess.CompletedProcess[str]:
        """etcdctl with ``{L0}`` and the like in ``args`` replaced by this side's hex ids."""
        server = self.etcd if side == "etcd" else self.kine
        hex_ids = self.names[side].hex()
        return run_etcdctl(server.endpoint, f"--write-out={fmt}", *(a.format(**hex_ids) for a in args))

    def normalize(self, side: str, done: subprocess.CompletedProcess[str], fmt: str) -> LeaseOutcome:
        leases = self.names[side]
        stdout: Any = done.stdout
        if done.returncode == 0:
            if fmt == "json":
                stdout = [leases.value(v) for v in normalize_lines(done.stdout.splitlines(), fmt)]
            else:
                stdout = leases.text("\n".join(normalize_lines(done.stdout.splitlines(), fmt)))
        remaining: list[int] = []
        if "timetolive" in done.args:
            stdout = sort_attached_keys(set_aside_remaining(stdout, remaining))
        errors = tuple(leases.text(line) for line in error_lines(done.stderr))
        return LeaseOutcome(Outcome(done.returncode, stdout, errors), tuple(remaining))

    def compare(self, args: Sequence[str], fmt: str, runs: dict[str, Any]) -> Outcome:
        want = self.normalize("etcd", runs["etcd"], fmt)
        got = self.normalize("kine", runs["kine"], fmt)
        shown = f"etcdctl -w {fmt} {' '.join(args)}\n  etcd: {want}\n  kine: {got}"
        assert got == want, shown
        # A countdown: both show it, neither above what was granted, about the same value.
        assert len(got.remaining) == len(want.remaining), shown
        assert all(abs(g - w) <= 2 for g, w in zip(got.remaining, want.remaining, strict=True)), shown
        return got.outcome

    def same(self, *args: str, fmt: str = "simple") -> Outcome:
        """Run one etcdctl command on both; kine-py's outcome must equal etcd's."""
        return self.compare(args, fmt, {side: self.run(side, args, fmt) for side, _ in self.sides()})

    def grant(self, *args: str, fmt: str = "simple") -> str:
        """A command that grants a lease: name each side's new id, then compare."""
        runs = {side: self.run(side, args, fmt) for side, _ in self.sides()}
        names = set()
        for side, done in runs.items():
            assert done.returncode == 0, f"{side}: etcdctl {' '.join(args)}: {done.stderr}"
            names.add(self.names[side].add(granted_id(done.stdout, fmt)))
        (name,) = names
        self.compare(args, fmt, runs)
        return name


def granted_id(stdout: str, fmt: str) -> int:
    """The lease id in what ``etcdctl -w fmt lease grant`` printed."""
    if fmt == "json":
        lease_id: int = json.loads(stdout)["ID"]
        return lease_id
    if fmt == "fields":
        found = re.search(r'^"ID" : (\d+)$', stdout, re.MULTILINE)
        assert found, stdout
        return int(found[1])
    found = re.fullmatch(r"lease ([0-9a-f]{16}) granted with TTL\(\d+s\)\n", stdout)
    assert found, stdout
    return int(found[1], 16)


@pytest.fixture
def leases(etcd: ServerProcess, kine: ServerProcess) -> LeasePair:
    return LeasePair(etcd=etcd, kine=kine)


def test_lease_commands(leases: LeasePair) -> None:
    """grant, keep-alive --once, timetolive (--keys), list, revoke, put --lease / --ignore-lease."""
    p = leases
    assert p.grant("lease", "grant", "60") == "L0"
    p.grant("lease", "grant", "60", fmt="json")  # L1
    p.grant("lease", "grant", "30", fmt="fields")  # L2
    p.same("lease", "grant", "9000000001")  # too large
    p.same("lease", "grant", "abc")
    for fmt in FORMATS:
        p.same("lease", "keep-alive", "--once", "{L0}", fmt=fmt)
    p.same("lease", "keep-alive", "--once", "1234")
    p.same("lease", "keep-alive", "--once", "1234", fmt="json")

    p.same("put", "--lease={L0}", "k1", "v1")
    p.same("put", "--lease={L0}", "k2", "v2", fmt="json")
    p.same("put", "--lease={L1}", "k3", "v3")
    p.same("put", "--lease=1234", "k4", "v4")  # no such lease
    p.same("put", "--lease=zz", "k4", "v4")  # not hex
    p.same("put", "k1", "--ignore-lease", "v1b")  # keeps L0
    p.same("put", "k1", "--ignore-lease", "--prev-kv", "v1c", fmt="json")
    p.same("put", "nokey", "--ignore-lease", "v")  # nothing to keep a lease of
    p.same("put", "--lease={L1}", "k1", "--ignore-lease", "v")  # both
    p.same("put", "k3", "v3b")  # detached from L1
    for fmt in FORMATS:
        p.same("get", "k", "--prefix", fmt=fmt)

    for fmt in FORMATS:
        p.same("lease", "timetolive", "{L0}", fmt=fmt)
        p.same("lease", "timetolive", "{L0}", "--keys", fmt=fmt)
        p.same("lease", "timetolive", "{L1}", "--keys", fmt=fmt)  # no keys left
        p.same("lease", "timetolive", "1234", "--keys", fmt=fmt)  # unknown: expired
    # etcd lists leases by expiry: L2 (30s), L1, then L0 (kept alive last).
    for fmt in FORMATS:
        p.same("lease", "list", fmt=fmt)
    assert p.same("lease", "list").stdout == "found 3 leases\n<L2>\n<L1>\n<L0>"

    p.same("lease", "revoke", "{L0}")
    p.same("lease", "revoke", "{L0}")  # already gone
    p.same("lease", "revoke", "1234", fmt="json")
    p.same("get", "", "--prefix", fmt="json")  # k1 and k2 deleted, in one revision
    p.same("lease", "timetolive", "{L0}", "--keys")
    p.same("lease", "timetolive", "{L0}", "--keys", fmt="json")
    p.same("lease", "revoke", "{L1}", fmt="json")
    p.same("lease", "list", fmt="json")
    # Below the minimum TTL a lease gets the minimum (these expire soon: nothing lists them).
    p.grant("lease", "grant", "0")
    p.grant("lease", "grant", "1", fmt="json")


# --- lease expiry --------------------------------------------------------------------------

TTL = 2


def etcdctl_ok(server: ServerProcess, *args: str) -> str:
    done = run_etcdctl(server.endpoint, *args)
    assert done.returncode == 0, f"{server.endpoint}: etcdctl {' '.join(args)}: {done.stderr}"
    return done.stdout


def test_lease_expiry_deletes_key(pair: Pair) -> None:
    """A key put with a TTL-2 lease is gone a little after 2s, and watches see its DELETE."""
    servers = {"etcd": pair.etcd, "kine": pair.kine}
    watches: dict[tuple[str, str], Watch] = {}
    try:
        for side, server in servers.items():
            for fmt in ("simple", "json"):
                args = ("watch", "exp/", "--prefix", "--prev-kv", "--rev=2")  # from the lease's put on
                watches[side, fmt] = Watch(server.endpoint, f"--write-out={fmt}", *args)
        granted_at: dict[str, float] = {}
        names: dict[str, Leases] = {}
        for side, server in servers.items():
            granted_at[side] = time.monotonic()
            lease_id = granted_id(etcdctl_ok(server, "lease", "grant", str(TTL)), "simple")
            names[side] = Leases()
            names[side].add(lease_id)
            etcdctl_ok(server, "put", f"--lease={lease_id:x}", "exp/k", "v")
            assert etcdctl_ok(server, "get", "exp/k") == "exp/k\nv\n"
            assert etcdctl_ok(server, "lease", "timetolive", f"{lease_id:x}", "--keys").endswith(
                "attached keys([exp/k])\n"
            )
        gone_after: dict[str, float] = {}
        deadline = max(granted_at.values()) + TTL + 5
        while len(gone_after) < len(servers) and time.monotonic() < deadline:
            for side, server in servers.items():
                if side not in gone_after and etcdctl_ok(server, "get", "exp/k") == "":
                    gone_after[side] = time.monotonic() - granted_at[side]
            time.sleep(0.1)
        assert gone_after.keys() == servers.keys(), f"still there {TTL + 5}s after the grant: {gone_after}"
        for side, after in gone_after.items():
            assert TTL - 0.1 <= after <= TTL + 3, f"{side}: gone {after:.2f}s after a {TTL}s grant"

        printed: dict[tuple[str, str], Any] = {}
        for side in servers:
            simple = watches[side, "simple"]
            simple.read_lines(8)
            printed[side, "simple"] = simple.stop().lines
            as_json = watches[side, "json"]
            as_json.read_lines(2)
            lines = normalize_lines(as_json.stop().lines, "json")
            printed[side, "json"] = names[side].value(lines)
        # PUT, then DELETE with the previous value printed first.
        assert printed["etcd", "simple"] == ["PUT", "exp/k", "v", "DELETE", "exp/k", "v", "exp/k", ""]
        assert printed["kine", "simple"] == printed["etcd", "simple"]
        assert printed["kine", "json"] == printed["etcd", "json"]
        deleted = printed["kine", "json"][1]["Events"]
        assert deleted == [
            {
                "type": 1,
                "kv": {"key": "ZXhwL2s=", "mod_revision": 3},
                "prev_kv": {
                    "key": "ZXhwL2s=",
                    "create_revision": 2,
                    "mod_revision": 2,
                    "version": 1,
                    "value": "dg==",
                    "lease": "<L0>",
                },
            }
        ]
        for side, server in servers.items():
            lease_hex = f"{names[side].ids['L0']:x}"
            expired = etcdctl_ok(server, "lease", "timetolive", lease_hex)
            assert expired == f"lease {lease_hex:0>16} already expired\n", side
            assert etcdctl_ok(server, "lease", "list") == "found 0 leases\n", side
    finally:
        for watch in watches.values():
            watch.stop()
