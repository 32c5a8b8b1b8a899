"""The real etcdctl 3.5.1 against kine-py, compared command by command with the real etcd.

Every expectation is etcd's own output: the same command runs against a reference etcd
and against kine-py holding the same history, and the two outcomes (exit code, normalized
stdout, error text) must be equal. Only what legitimately differs between two clusters is
normalized away: cluster_id, member_id and raft_term.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import pytest

from kine_py._pb.etcdserverpb import rpc_pb2
from kine_py.testing.processes import ServerProcess

from .conftest import connect, run_etcdctl

pytestmark = [pytest.mark.kine, pytest.mark.etcd_reference]

# Header fields that identify a cluster rather than its data.
IDENTITY_FIELDS = frozenset({"cluster_id", "member_id", "raft_term"})
IDENTITY_LINES = ('"ClusterID" :', '"MemberID" :', '"RaftTerm" :')

# The history both servers of the module-scoped pair get. A fresh store is at revision 1,
# so the n-th operation (from 0) commits revision n + 2; the comments give that revision.
SEED: list[tuple[str, bytes, bytes]] = [
    ("put", b"a", b"1"),  # 2
    ("put", b"ab", b"2"),  # 3
    ("put", b"abc", b"3"),  # 4
    ("put", b"b", b"x"),  # 5
    ("put", b"b", b"y"),  # 6
    ("put", b"c", b"0"),  # 7
    ("put", b"d/1", b"v1"),  # 8
    ("put", b"d/2", b"v2"),  # 9
    ("put", b"e", b""),  # 10
    ("put", b"a", b"10"),  # 11
    ("del", b"c", b""),  # 12
    ("put", b"zz", b"last"),  # 13
]

# Sort targets whose values are all distinct in SEED (VERSION has ties: see test_get_sort_by_version).
SORT_TARGETS = ["CREATE", "KEY", "MODIFY", "VALUE"]

GET_VARIANTS: list[list[str]] = [
    ["get", "a"],
    ["get", "missing"],
    ["get", "c"],
    ["get", "e"],
    ["get", "a", "--prefix"],
    ["get", "", "--prefix"],
    ["get", "d/", "--prefix"],
    ["get", "b", "--from-key"],
    ["get", "", "--from-key"],
    ["get", "a", "c"],
    ["get", "ab", "b"],
    ["get", "", "--prefix", "--limit", "2"],
    ["get", "b", "--from-key", "--limit", "1"],
    ["get", "a", "--prefix", "--keys-only"],
    ["get", "", "--prefix", "--count-only"],
    ["get", "a", "--prefix", "--count-only", "--limit", "1"],
    ["get", "a", "--prefix", "--print-value-only"],
    ["get", "a", "--rev", "2"],
    ["get", "a", "--rev", "10"],
    ["get", "b", "--rev", "5"],
    ["get", "c", "--rev", "11"],
    ["get", "", "--prefix", "--rev", "7"],
    ["get", "", "--prefix", "--rev", "1"],
    ["get", "a", "--rev", "13"],
    ["get", "a", "--rev", "14"],
    ["get", "a", "--rev", "1000"],
    ["get", "", "--prefix", "--consistency=s"],
    ["get", "d/", "--prefix", "--hex"],
    ["get", "", "--prefix", "--order=DESCEND"],
    ["get", "", "--prefix", "--sort-by=VALUE"],
    ["get", "", "--prefix", "--keys-only", "--limit", "3", "--order=DESCEND"],
    ["get", "a", "--prefix", "--limit", "1", "--sort-by=MODIFY", "--order=DESCEND"],
    *(
        ["get", "", "--prefix", f"--sort-by={target}", f"--order={order}"]
        for target in SORT_TARGETS
        for order in ("ASCEND", "DESCEND")
    ),
]

FORMATS = ["simple", "json", "fields"]


@dataclass(frozen=True)
class Outcome:
    """What an etcdctl run showed, minus what differs between any two clusters."""

    returncode: int
    stdout: Any
    errors: tuple[str, ...]


def strip_identity(value: Any) -> Any:
    """``value`` (parsed JSON) without cluster_id, member_id and raft_term anywhere."""
    if isinstance(value, dict):
        return {k: strip_identity(v) for k, v in value.items() if k not in IDENTITY_FIELDS}
    if isinstance(value, list):
        return [strip_identity(v) for v in value]
    return value


def normalize_stdout(stdout: str, fmt: str) -> Any:
    """Parse ``-w json`` output; drop the cluster identity lines of ``-w fields``."""
    if fmt == "json":
        # Some commands (compaction) print plain text whatever the format asked for.
        return [
            strip_identity(json.loads(line)) if line.startswith(("{", "[")) else line
            for line in stdout.splitlines()
        ]
    if fmt == "fields":
        return [line for line in stdout.splitlines() if not line.startswith(IDENTITY_LINES)]
    return stdout


def error_lines(stderr: str) -> tuple[str, ...]:
    """The ``Error:`` lines and the gRPC errors the client logged (without timestamps)."""
    found: list[str] = []
    for line in stderr.splitlines():
        if line.startswith("{"):
            try:
                logged = json.loads(line)
            except json.JSONDecodeError:
                found.append(line)
                continue
            if "error" in logged:
                found.append(f"logged: {logged['error']}")
        elif line.strip():
            found.append(line)
    return tuple(found)


def ctl(server: ServerProcess, *args: str, fmt: str = "simple", stdin: str | None = None) -> Outcome:
    """Run etcdctl with ``-w fmt`` against ``server`` and normalize what it printed."""
    done = run_etcdctl(server.endpoint, f"--write-out={fmt}", *args, stdin=stdin)
    stdout = normalize_stdout(done.stdout, fmt) if done.returncode == 0 else done.stdout
    return Outcome(done.returncode, stdout, error_lines(done.stderr))


@dataclass(frozen=True)
class Pair:
    """A reference etcd and a kine-py that have been given the same history."""

    etcd: ServerProcess
    kine: ServerProcess

    def same(self, *args: str, fmt: str = "simple", stdin: str | None = None) -> Outcome:
        """Run one etcdctl command against both; kine-py's outcome must equal etcd's."""
        want = ctl(self.etcd, *args, fmt=fmt, stdin=stdin)
        got = ctl(self.kine, *args, fmt=fmt, stdin=stdin)
        assert got == want, f"etcdctl -w {fmt} {' '.join(args)}\n  etcd: {want}\n  kine: {got}"
        return got


def apply_seed(server: ServerProcess) -> None:
    """Give ``server`` the SEED history over gRPC, checking each revision."""
    with connect(server.endpoint) as client:
        for n, (op, key, value) in enumerate(SEED):
            if op == "put":
                header = client.kv.Put(rpc_pb2.PutRequest(key=key, value=value), timeout=10).header
            else:
                header = client.kv.DeleteRange(rpc_pb2.DeleteRangeRequest(key=key), timeout=10).header
            assert header.revision == n + 2, f"{server.endpoint}: {op} {key!r}"


@pytest.fixture(scope="module")
def seeded(shared_etcd: ServerProcess, shared_kine: ServerProcess) -> Pair:
    """Module-wide pair holding SEED; tests using it must not write."""
    apply_seed(shared_etcd)
    apply_seed(shared_kine)
    return Pair(etcd=shared_etcd, kine=shared_kine)


@pytest.fixture
def pair(etcd: ServerProcess, kine: ServerProcess) -> Pair:
    """A fresh, empty pair for a test that writes."""
    return Pair(etcd=etcd, kine=kine)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("args", GET_VARIANTS, ids=lambda args: " ".join(args) or "-")
def test_get(seeded: Pair, args: list[str], fmt: str) -> None:
    """``etcdctl get`` with every flag combination prints what etcd prints."""
    seeded.same(*args, fmt=fmt)


@pytest.mark.parametrize("order", ["ASCEND", "DESCEND"])
def test_get_sort_by_version(seeded: Pair, order: str) -> None:
    """Sorting by VERSION, where most keys tie at version 1.

    etcd sorts with Go's ``sort.Sort``, which is not stable: for fewer than 12 keys it
    runs one Shell-sort pass with gap 6 before an insertion sort, so ties do not keep key
    order (ASCEND gives e, ab, abc, d/1, d/2, zz, b, a). A client that sorts by version
    sees exactly that order from etcd.
    """
    for fmt in FORMATS:
        seeded.same("get", "", "--prefix", "--sort-by=VERSION", f"--order={order}", fmt=fmt)


def test_get_json_fields(seeded: Pair) -> None:
    """A sanity check of the comparison itself: the JSON holds what SEED wrote."""
    out = seeded.same("get", "a", "--prefix", "--limit", "2", fmt="json").stdout
    (response,) = out
    assert response["header"] == {"revision": 13}
    assert response["more"] is True
    assert response["count"] == 3
    first = response["kvs"][0]
    assert first == {
        "key": "YQ==",
        "create_revision": 2,
        "mod_revision": 11,
        "version": 2,
        "value": "MTA=",
    }


@pytest.mark.parametrize("fmt", FORMATS)
def test_put(pair: Pair, fmt: str) -> None:
    """``etcdctl put`` with --prev-kv and --ignore-value, and its errors."""
    pair.same("put", "k", "v1", fmt=fmt)
    pair.same("put", "k", "v2", "--prev-kv", fmt=fmt)
    pair.same("put", "k", "--ignore-value", "--prev-kv", fmt=fmt)
    pair.same("put", "nokey", "--ignore-value", fmt=fmt)
    pair.same("put", "k", "v3", "--ignore-value", fmt=fmt)
    pair.same("put", "empty", "", fmt=fmt)
    pair.same("put", "", "v", fmt=fmt)
    pair.same("put", "k", "--ignore-lease", "v4", fmt=fmt)
    pair.same("get", "", "--from-key", fmt=fmt)


@pytest.mark.parametrize("fmt", FORMATS)
def test_del(pair: Pair, fmt: str) -> None:
    """``etcdctl del`` of one key, a range, a prefix and --from-key, with --prev-kv."""
    for key in ["a", "ab", "abc", "b", "c", "d/1", "d/2", "e", "f"]:
        pair.same("put", key, f"value-of-{key}", fmt=fmt)
    pair.same("del", "missing", fmt=fmt)
    pair.same("del", "a", fmt=fmt)
    pair.same("del", "a", "--prefix", "--prev-kv", fmt=fmt)
    pair.same("del", "b", "d/", "--prev-kv", fmt=fmt)
    pair.same("del", "d/", "--prefix", fmt=fmt)
    pair.same("get", "", "--prefix", fmt=fmt)
    pair.same("del", "e", "--from-key", "--prev-kv", fmt=fmt)
    pair.same("del", "", fmt=fmt)
    pair.same("get", "", "--prefix", fmt=fmt)


TXNS: list[str] = [
    # Compares hold: the success branch runs (a put, a get and a delete).
    'value("a") = "1"\nmod("b") > "0"\n\nput x 10\nget a\ndel b\n\nput y 20\n\n',
    # A compare fails: the failure branch runs.
    'version("a") = "5"\n\nput x 11\n\nput y 21\nget a --prefix\n\n',
    # No compares at all: success.
    "\nput n 1\nput m 2\n\n\n",
    # A missing key has create revision 0.
    'create("missing") = "0"\nversion("missing") = "0"\n\nput missing here\n\nput never x\n\n',
    # Value compares are byte-wise.
    'value("a") != "1"\n\nput wrong 1\n\nput right 1\n\n',
    'value("a") < "2"\nvalue("x") > "1"\n\nget x --prefix --keys-only\ndel x --prev-kv\n\nput no 1\n\n',
    # The same key twice in one branch is refused.
    "\nput dup 1\nput dup 2\n\n\n",
    # A delete by prefix and a put of a key inside that range.
    "\ndel a --prefix\nput ab 1\n\n\n",
    "\ndel a --prefix --prev-kv\nput z 1\n\n\n",
    # Only a failure branch, and it runs.
    'mod("a") = "0"\n\n\nget a\nget missing\n\n',
]


@pytest.mark.parametrize("fmt", ["simple", "json"])
def test_txn(pair: Pair, fmt: str) -> None:
    """``etcdctl txn`` (non-interactive, from stdin) runs the same branches as etcd."""
    pair.same("put", "a", "1", fmt=fmt)
    pair.same("put", "b", "2", fmt=fmt)
    for text in TXNS:
        pair.same("txn", fmt=fmt, stdin=text)
    pair.same("get", "", "--prefix", fmt=fmt)


def test_txn_branch_taken(pair: Pair) -> None:
    """A sanity check of the comparison: etcdctl reports which branch ran."""
    pair.same("put", "a", "1")
    pair.same("put", "b", "2")
    assert pair.same("txn", stdin=TXNS[0]).stdout.startswith("SUCCESS\n")
    assert pair.same("txn", stdin=TXNS[1]).stdout.startswith("FAILURE\n")


@pytest.mark.parametrize("physical", [False, True], ids=["logical", "physical"])
def test_compaction(pair: Pair, physical: bool) -> None:
    """``etcdctl compaction``; reads below it then fail with etcd's message."""
    flags = ["--physical"] if physical else []
    for n in range(6):
        pair.same("put", "k", f"v{n}")  # revisions 2..7
    pair.same("put", "other", "x")  # revision 8
    pair.same("compaction", "4", *flags)
    pair.same("get", "k", "--rev", "3")
    failed = pair.same("get", "k", "--rev", "2", fmt="json")
    assert failed.returncode != 0
    assert "Error: etcdserver: mvcc: required revision has been compacted" in failed.errors
    pair.same("get", "k", "--rev", "4", fmt="json")
    pair.same("get", "k", "--rev", "5")
    pair.same("compaction", "4", *flags)
    pair.same("compaction", "3", *flags)
    pair.same("compaction", "100", *flags)
    pair.same("compaction", "6", *flags, fmt="json")
    pair.same("get", "", "--prefix", "--rev", "5")
    pair.same("get", "", "--prefix", "--rev", "6", fmt="json")
    pair.same("get", "", "--prefix", "--rev", "8", fmt="json")
    pair.same("put", "k", "after")
    pair.same("get", "", "--prefix", fmt="json")


def status_of(server: ServerProcess) -> dict[str, Any]:
    """``etcdctl endpoint status -w json`` for a single endpoint, parsed."""
    done = run_etcdctl(server.endpoint, "endpoint", "status", "-w", "json")
    assert done.returncode == 0, done.stderr
    (entry,) = json.loads(done.stdout)
    assert entry["Endpoint"] == server.endpoint
    status: dict[str, Any] = entry["Status"]
    return status


def test_endpoint_status(seeded: Pair) -> None:
    """``endpoint status``: a version, a non-empty database, the current revision."""
    want, got = status_of(seeded.etcd), status_of(seeded.kine)
    assert want["version"] == "3.5.1"
    assert isinstance(got.get("version"), str)
    assert re.fullmatch(r"3\.5\.\d+", got["version"]), got
    assert got.get("dbSize", 0) > 0, got
    assert strip_identity(got["header"]) == strip_identity(want["header"]) == {"revision": 13}
    missing = {"header", "version", "dbSize", "leader", "dbSizeInUse"} - got.keys()
    assert not missing, f"status lacks {missing}: {got}"
    assert got["leader"] == got["header"]["member_id"], "a single member is its own leader"


def test_endpoint_status_table(seeded: Pair) -> None:
    """``endpoint status`` in the simple format has the columns etcd prints."""
    for server in (seeded.etcd, seeded.kine):
        done = run_etcdctl(server.endpoint, "endpoint", "status")
        assert done.returncode == 0, done.stderr
        columns = done.stdout.rstrip("\n").split(", ")  # the last column (errors) is empty
        assert columns[0] == server.endpoint
        assert len(columns) == 10, done.stdout
        assert columns[4:6] == ["true", "false"], f"{server.endpoint}: is leader, not learner: {columns}"


def test_endpoint_health(seeded: Pair) -> None:
    """``endpoint health`` says healthy, in text and JSON."""
    for server in (seeded.etcd, seeded.kine):
        done = run_etcdctl(server.endpoint, "endpoint", "health")
        assert done.returncode == 0, done.stderr
        healthy = rf"{re.escape(server.endpoint)} is healthy: successfully committed proposal: took = \S+"
        assert re.fullmatch(healthy, done.stdout.strip()), done.stdout
        done = run_etcdctl(server.endpoint, "endpoint", "health", "-w", "json")
        assert done.returncode == 0, done.stderr
        (entry,) = json.loads(done.stdout)
        assert entry.keys() == {"endpoint", "health", "took"}
        assert (entry["endpoint"], entry["health"]) == (server.endpoint, True)


def members_of(server: ServerProcess) -> dict[str, Any]:
    """``etcdctl member list -w json``, parsed."""
    done = run_etcdctl(server.endpoint, "member", "list", "-w", "json")
    assert done.returncode == 0, done.stderr
    listing: dict[str, Any] = json.loads(done.stdout)
    return listing


def test_member_list(seeded: Pair) -> None:
    """``member list``: exactly one member, itself, reachable at the endpoint."""
    for server in (seeded.etcd, seeded.kine):
        listing = members_of(server)
        (member,) = listing["members"]
        assert member["ID"] == listing["header"]["member_id"] != 0, listing
        assert f"http://{server.endpoint}" in member.get("clientURLs", []), listing
        assert member.get("name"), listing
        done = run_etcdctl(server.endpoint, "member", "list")
        assert done.returncode == 0, done.stderr
        columns = done.stdout.strip().split(", ")
        assert columns[0] == f"{member['ID']:x}" and columns[1] == "started", done.stdout
