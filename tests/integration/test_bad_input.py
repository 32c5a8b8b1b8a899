"""Bad requests and misbehaving clients, against kine-py and the reference etcd alike.

Each refused request must fail with exactly etcd's gRPC status code and details (the
expected values were taken from etcd 3.5.1, and every case runs against etcd as well),
and afterwards the server must go on serving ordinary Puts and Ranges. The last tests
abuse the transport: garbage bytes, half a HTTP/2 preface, abrupt resets and calls
cancelled half-way.
"""

from __future__ import annotations

import re
import socket
import struct
import time
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from typing import Any

import grpc
import pytest

from kine_py._pb.etcdserverpb import rpc_pb2 as pb
from kine_py.testing.processes import ServerProcess

from .conftest import Client, assert_serving, connect

INVALID = grpc.StatusCode.INVALID_ARGUMENT
OUT_OF_RANGE = grpc.StatusCode.OUT_OF_RANGE
NO_KEY = "etcdserver: key is not provided"
TOO_MANY_OPS = "etcdserver: too many operations in txn request"
DUPLICATE_KEY = "etcdserver: duplicate key given in txn request"
TOO_LARGE = "etcdserver: request is too large"
FUTURE_REV = "etcdserver: mvcc: required revision is a future revision"
COMPACTED = "etcdserver: mvcc: required revision has been compacted"
MiB = 1024 * 1024

pytestmark = pytest.mark.timeout(120)

# etcd's default --max-request-bytes is 1.5 MiB and its gRPC server takes messages up to
# that plus 512 KiB; anything bigger is refused by gRPC before etcd sees it.
GRPC_LIMIT = 2 * MiB
# The text is the gRPC library's, not etcd's: grpc-go says "grpc: received ...", grpc's C core
# (Python servers) "SERVER: Received ...". Both name the same limit.
GRPC_TOO_LARGE = re.compile(rf"(grpc: r|SERVER: R)eceived message larger than max \(\d+ vs\. {GRPC_LIMIT}\)")

# The HTTP/2 client connection preface (RFC 9113, section 3.4).
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def put_op(key: bytes, value: bytes = b"v") -> pb.RequestOp:
    """A Put inside a Txn."""
    return pb.RequestOp(request_put=pb.PutRequest(key=key, value=value))


def delete_op(key: bytes, range_end: bytes = b"") -> pb.RequestOp:
    """A DeleteRange inside a Txn."""
    return pb.RequestOp(request_delete_range=pb.DeleteRangeRequest(key=key, range_end=range_end))


def range_op(key: bytes, revision: int = 0) -> pb.RequestOp:
    """A Range inside a Txn."""
    return pb.RequestOp(request_range=pb.RangeRequest(key=key, revision=revision))


def puts(n: int, prefix: bytes = b"many/") -> list[pb.RequestOp]:
    """``n`` Puts of distinct keys."""
    return [put_op(prefix + b"%04d" % i) for i in range(n)]


def version_is_zero(key: bytes) -> pb.Compare:
    """A Compare that holds while ``key`` does not exist."""
    return pb.Compare(key=key, target=pb.Compare.VERSION, result=pb.Compare.EQUAL, version=0)


# A bad request: it gets the client and the store's current revision.
Call = Callable[[Client, int], object]


@dataclass(frozen=True)
class Refused:
    """A request the server must refuse with exactly this status."""

    call: Call
    code: grpc.StatusCode
    details: str


REFUSED: dict[str, Refused] = {
    "range-empty-key": Refused(lambda c, _: c.kv.Range(pb.RangeRequest(key=b"")), INVALID, NO_KEY),
    "range-empty-key-with-end": Refused(
        lambda c, _: c.kv.Range(pb.RangeRequest(key=b"", range_end=b"a")), INVALID, NO_KEY
    ),
    "range-empty-key-all": Refused(
        lambda c, _: c.kv.Range(pb.RangeRequest(key=b"", range_end=b"\0")), INVALID, NO_KEY
    ),
    "put-empty-key": Refused(lambda c, _: c.kv.Put(pb.PutRequest(key=b"", value=b"v")), INVALID, NO_KEY),
    "delete-empty-key": Refused(
        lambda c, _: c.kv.DeleteRange(pb.DeleteRangeRequest(key=b"")), INVALID, NO_KEY
    ),
    "delete-empty-key-with-end": Refused(
        lambda c, _: c.kv.DeleteRange(pb.DeleteRangeRequest(key=b"", range_end=b"z")), INVALID, NO_KEY
    ),
    "txn-put-empty-key": Refused(
        lambda c, _: c.kv.Txn(pb.TxnRequest(success=[put_op(b"")])), INVALID, NO_KEY
    ),
    "txn-range-empty-key": Refused(
        lambda c, _: c.kv.Txn(pb.TxnRequest(failure=[range_op(b"")])), INVALID, NO_KEY
    ),
    "txn-compare-empty-key": Refused(
        lambda c, _: c.kv.Txn(pb.TxnRequest(compare=[version_is_zero(b"")])), INVALID, NO_KEY
    ),
    "txn-129-success-ops": Refused(
        lambda c, _: c.kv.Txn(pb.TxnRequest(success=puts(129))), INVALID, TOO_MANY_OPS
    ),
    "txn-129-failure-ops": Refused(
        lambda c, _: c.kv.Txn(pb.TxnRequest(failure=puts(129))), INVALID, TOO_MANY_OPS
    ),
    "txn-129-compares": Refused(
        lambda c, _: c.kv.Txn(pb.TxnRequest(compare=[version_is_zero(b"x")] * 129)), INVALID, TOO_MANY_OPS
    ),
    "txn-duplicate-put": Refused(
        lambda c, _: c.kv.Txn(pb.TxnRequest(success=[put_op(b"d"), put_op(b"d", b"w")])),
        INVALID,
        DUPLICATE_KEY,
    ),
    "txn-duplicate-put-delete": Refused(
        lambda c, _: c.kv.Txn(pb.TxnRequest(success=[put_op(b"d"), delete_op(b"d")])), INVALID, DUPLICATE_KEY
    ),
    "txn-put-inside-deleted-range": Refused(
        lambda c, _: c.kv.Txn(pb.TxnRequest(success=[put_op(b"d"), delete_op(b"a", b"z")])),
        INVALID,
        DUPLICATE_KEY,
    ),
    "txn-duplicate-in-failure": Refused(
        lambda c, _: c.kv.Txn(pb.TxnRequest(failure=[put_op(b"d"), put_op(b"d")])), INVALID, DUPLICATE_KEY
    ),
    "txn-duplicate-in-nested-txn": Refused(
        lambda c, _: c.kv.Txn(
            pb.TxnRequest(
                success=[put_op(b"n"), pb.RequestOp(request_txn=pb.TxnRequest(success=[put_op(b"n")]))]
            )
        ),
        INVALID,
        DUPLICATE_KEY,
    ),
    "put-1.6MiB": Refused(
        lambda c, _: c.kv.Put(pb.PutRequest(key=b"big", value=b"x" * int(1.6 * MiB))), INVALID, TOO_LARGE
    ),
    "txn-2x0.8MiB": Refused(
        lambda c, _: c.kv.Txn(
            pb.TxnRequest(
                success=[put_op(b"t1", b"x" * int(0.8 * MiB)), put_op(b"t2", b"x" * int(0.8 * MiB))]
            )
        ),
        INVALID,
        TOO_LARGE,
    ),
    "put-ignore-value-with-value": Refused(
        lambda c, _: c.kv.Put(pb.PutRequest(key=b"base", value=b"x", ignore_value=True)),
        INVALID,
        "etcdserver: value is provided",
    ),
    "put-ignore-value-missing-key": Refused(
        lambda c, _: c.kv.Put(pb.PutRequest(key=b"no-such-key", ignore_value=True)),
        INVALID,
        "etcdserver: key not found",
    ),
    "put-ignore-lease-missing-key": Refused(
        lambda c, _: c.kv.Put(pb.PutRequest(key=b"no-such-key", value=b"x", ignore_lease=True)),
        INVALID,
        "etcdserver: key not found",
    ),
    "put-ignore-lease-with-lease": Refused(
        lambda c, _: c.kv.Put(pb.PutRequest(key=b"base", value=b"x", ignore_lease=True, lease=5)),
        INVALID,
        "etcdserver: lease is provided",
    ),
    "range-future-revision": Refused(
        lambda c, rev: c.kv.Range(pb.RangeRequest(key=b"base", revision=rev + 1)), OUT_OF_RANGE, FUTURE_REV
    ),
    "range-far-future-revision": Refused(
        lambda c, rev: c.kv.Range(pb.RangeRequest(key=b"base", revision=rev + 10**9)),
        OUT_OF_RANGE,
        FUTURE_REV,
    ),
    "txn-range-future-revision": Refused(
        lambda c, rev: c.kv.Txn(pb.TxnRequest(success=[range_op(b"base", rev + 1)])), OUT_OF_RANGE, FUTURE_REV
    ),
    "compact-future-revision": Refused(
        lambda c, rev: c.kv.Compact(pb.CompactionRequest(revision=rev + 1)), OUT_OF_RANGE, FUTURE_REV
    ),
}


@pytest.fixture
def client(shared_server: ServerProcess) -> Iterator[Client]:
    """A client of the module's server, with key ``base`` present."""
    with connect(shared_server.endpoint) as c:
        c.kv.Put(pb.PutRequest(key=b"base", value=b"v"), timeout=10)
        yield c
    assert_serving(shared_server.endpoint)


def current_revision(client: Client) -> int:
    """The store's revision now."""
    return int(client.kv.Range(pb.RangeRequest(key=b"base"), timeout=10).header.revision)


def refused_with(call: Callable[[], object]) -> tuple[grpc.StatusCode, str]:
    """Run ``call``, which must fail, and return its status code and details."""
    with pytest.raises(grpc.RpcError) as caught:
        call()
    error = caught.value
    assert isinstance(error, grpc.Call)
    return error.code(), error.details() or ""


@pytest.mark.parametrize("case", REFUSED.values(), ids=REFUSED.keys())
def test_refused(client: Client, case: Refused) -> None:
    """The request is refused with etcd's exact code and details, and changes nothing."""
    before = current_revision(client)
    got = refused_with(lambda: case.call(client, before))
    assert got == (case.code, case.details)
    assert current_revision(client) == before, "a refused request must not commit a revision"


@pytest.mark.parametrize("size", [int(2.1 * MiB), 3 * MiB])
def test_over_grpc_message_limit(client: Client, size: int) -> None:
    """A request over 2 MiB is refused by the gRPC layer with RESOURCE_EXHAUSTED."""
    code, details = refused_with(lambda: client.kv.Put(pb.PutRequest(key=b"huge", value=b"x" * size)))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED, details
    assert GRPC_TOO_LARGE.fullmatch(details), details


def test_just_under_size_limit(client: Client) -> None:
    """A 1.4 MiB value is within etcd's 1.5 MiB request limit and is stored."""
    value = b"y" * int(1.4 * MiB)
    put = client.kv.Put(pb.PutRequest(key=b"large", value=value), timeout=10)
    got = client.kv.Range(pb.RangeRequest(key=b"large"), timeout=10)
    assert [(kv.value == value, kv.mod_revision) for kv in got.kvs] == [(True, put.header.revision)]


def test_txn_with_128_ops(client: Client) -> None:
    """128 operations is the limit, and is allowed: one revision for all of them."""
    before = current_revision(client)
    done = client.kv.Txn(pb.TxnRequest(success=puts(128, b"ops128/")), timeout=10)
    assert done.succeeded and len(done.responses) == 128
    assert done.header.revision == before + 1


def test_range_negative_revision(client: Client) -> None:
    """A negative revision reads the current revision, as revision 0 does."""
    now = client.kv.Range(pb.RangeRequest(key=b"base"), timeout=10)
    for revision in (-1, -5, -(2**62)):
        got = client.kv.Range(pb.RangeRequest(key=b"base", revision=revision), timeout=10)
        assert got == now


def test_negative_limit_is_no_limit(client: Client) -> None:
    """A negative limit returns everything, as limit 0 does."""
    got = client.kv.Range(pb.RangeRequest(key=b"base", limit=-1), timeout=10)
    assert [kv.key for kv in got.kvs] == [b"base"]
    assert (got.count, got.more) == (1, False)


def test_untaken_branch_is_not_checked(client: Client) -> None:
    """A future revision in the branch that does not run is not an error."""
    rev = current_revision(client)
    done = client.kv.Txn(pb.TxnRequest(failure=[range_op(b"base", rev + 100)]), timeout=10)
    assert done.succeeded and list(done.responses) == []
    assert done.header.revision == rev


def test_compacted_revisions(client: Client) -> None:
    """Range below the compaction, and Compact at or below it, fail as compacted."""
    revs = [
        client.kv.Put(pb.PutRequest(key=b"comp", value=b"%d" % i), timeout=10).header.revision
        for i in range(3)
    ]
    client.kv.Compact(pb.CompactionRequest(revision=revs[1]), timeout=10)
    compacted = (OUT_OF_RANGE, COMPACTED)
    assert refused_with(lambda: client.kv.Range(pb.RangeRequest(key=b"comp", revision=revs[0]))) == compacted
    assert refused_with(lambda: client.kv.Range(pb.RangeRequest(key=b"comp", revision=1))) == compacted
    txn = pb.TxnRequest(success=[range_op(b"comp", revs[0])])
    assert refused_with(lambda: client.kv.Txn(txn)) == compacted
    at = client.kv.Range(pb.RangeRequest(key=b"comp", revision=revs[1]), timeout=10)
    assert [(kv.value, kv.mod_revision) for kv in at.kvs] == [(b"1", revs[1])]
    for revision in (revs[1], revs[0], 1, 0, -1):
        compact = pb.CompactionRequest(revision=revision)
        assert refused_with(lambda: client.kv.Compact(compact)) == compacted  # noqa: B023 - called at once
    client.kv.Compact(pb.CompactionRequest(revision=revs[2], physical=True), timeout=10)
    assert refused_with(lambda: client.kv.Range(pb.RangeRequest(key=b"comp", revision=revs[1]))) == compacted


# --- Misbehaving transports ---------------------------------------------------------------


@contextmanager
def raw_socket(server: ServerProcess) -> Iterator[socket.socket]:
    """A plain TCP connection to the server's gRPC port."""
    with closing(socket.create_connection(("127.0.0.1", server.port), timeout=5)) as sock:
        yield sock


def drain(sock: socket.socket, seconds: float = 1.0) -> bytes:
    """Read what the server sends until it closes, resets, or ``seconds`` pass."""
    sock.settimeout(0.2)
    deadline = time.monotonic() + seconds
    received = b""
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            continue
        except OSError:
            break
        if not chunk:
            break
        received += chunk
    return received


def reset(sock: socket.socket) -> None:
    """Close with an RST instead of a FIN (SO_LINGER with a zero timeout)."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


GARBAGE = {
    "random-bytes": bytes((i * 7919 + 13) % 256 for i in range(4096)),
    "http1-request": b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n",
    "partial-preface": PREFACE[:10],
    "preface-then-garbage": PREFACE + b"\xff" * 64,
    "preface-then-huge-frame": PREFACE + b"\xff\xff\xff\x00\x00\x00\x00\x00\x01" + b"\x00" * 100,
    "tls-client-hello": bytes.fromhex("16030100c4010000c00303") + b"\x00" * 200,
}


@pytest.mark.parametrize("payload", GARBAGE.values(), ids=GARBAGE.keys())
def test_garbage_then_close(shared_server: ServerProcess, payload: bytes) -> None:
    """Bytes that are not gRPC, then a normal close: the server keeps serving."""
    with raw_socket(shared_server) as sock:
        sock.sendall(payload)
        drain(sock)
    assert_serving(shared_server.endpoint)


@pytest.mark.parametrize("payload", GARBAGE.values(), ids=GARBAGE.keys())
def test_garbage_then_reset(shared_server: ServerProcess, payload: bytes) -> None:
    """Bytes that are not gRPC, then a connection reset without waiting for an answer."""
    with raw_socket(shared_server) as sock:
        sock.sendall(payload)
        reset(sock)
    assert_serving(shared_server.endpoint)


def test_hung_connections_do_not_block_others(shared_server: ServerProcess) -> None:
    """Idle and half-preface connections held open do not stop other clients."""
    socks = [socket.create_connection(("127.0.0.1", shared_server.port), timeout=5) for _ in range(20)]
    try:
        for n, sock in enumerate(socks):
            sock.sendall([b"", PREFACE[:5], PREFACE][n % 3])
        assert_serving(shared_server.endpoint, b"while-hung")
    finally:
        for sock in socks:
            sock.close()
    assert_serving(shared_server.endpoint)


def test_connection_churn(shared_server: ServerProcess) -> None:
    """Many connections opened and reset at once."""
    for _ in range(5):
        socks = [socket.create_connection(("127.0.0.1", shared_server.port), timeout=5) for _ in range(40)]
        for n, sock in enumerate(socks):
            if n % 2:
                sock.sendall(PREFACE[: n % len(PREFACE)])
            reset(sock)
    assert_serving(shared_server.endpoint)


# --- Calls cancelled half-way ---------------------------------------------------------------

BIG_PREFIX = b"big-range/"
BIG_KEYS = 300
BIG_VALUE = b"z" * 2048


DEADLINE = grpc.StatusCode.DEADLINE_EXCEEDED
# What etcd answers when its handler, not the client, notices the deadline first.
ETCD_DEADLINE = (grpc.StatusCode.UNKNOWN, "context deadline exceeded")


def fill_big_range(client: Client) -> None:
    """BIG_KEYS keys of 2 KiB under BIG_PREFIX, written in Txns of 100."""
    for start in range(0, BIG_KEYS, 100):
        ops = [put_op(BIG_PREFIX + b"%05d" % i, BIG_VALUE) for i in range(start, start + 100)]
        client.kv.Txn(pb.TxnRequest(success=ops), timeout=30)


def big_range() -> pb.RangeRequest:
    """A Range over all of BIG_PREFIX (about 600 KiB of values)."""
    return pb.RangeRequest(key=BIG_PREFIX, range_end=BIG_PREFIX[:-1] + b"0")


def settle(future: grpc.Future[Any]) -> str | grpc.StatusCode:
    """How a call ended: "answered" if it completed before it was abandoned, else its code."""
    if future.cancelled():
        return grpc.StatusCode.CANCELLED
    try:
        future.result(timeout=10)
    except grpc.RpcError as exc:
        assert isinstance(exc, grpc.Call)
        return exc.code()
    return "answered"


def test_cancelled_calls(client: Client, shared_server: ServerProcess) -> None:
    """Big Ranges abandoned by deadline or cancellation, and cancelled Puts: nothing breaks."""
    fill_big_range(client)
    for _ in range(20):
        try:
            client.kv.Range(big_range(), timeout=0.001)
        except grpc.RpcError as exc:
            assert isinstance(exc, grpc.Call)
            # etcd itself may notice the deadline first and answer UNKNOWN "context deadline exceeded".
            assert exc.code() == DEADLINE or (exc.code(), exc.details()) == ETCD_DEADLINE, exc.details()
    futures: list[grpc.Future[Any]] = [client.kv.Range.future(big_range(), timeout=10) for _ in range(20)]
    futures += [
        client.kv.Put.future(pb.PutRequest(key=b"cancelled", value=b"x"), timeout=10) for _ in range(5)
    ]
    for future in futures:
        future.cancel()
    assert {settle(future) for future in futures} <= {"answered", grpc.StatusCode.CANCELLED}
    got = client.kv.Range(big_range(), timeout=30)
    assert got.count == BIG_KEYS and len(got.kvs) == BIG_KEYS
    assert all(kv.value == BIG_VALUE for kv in got.kvs)
    assert_serving(shared_server.endpoint)


def test_client_vanishes_mid_call(shared_server: ServerProcess) -> None:
    """A channel closed while its calls are in flight."""
    with connect(shared_server.endpoint) as c:
        fill_big_range(c)
        futures = [c.kv.Range.future(big_range(), timeout=10) for _ in range(10)]
    assert {settle(future) for future in futures} <= {"answered", grpc.StatusCode.CANCELLED}
    assert_serving(shared_server.endpoint)
