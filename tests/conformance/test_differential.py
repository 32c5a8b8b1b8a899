"""Differential tests: kine-py must answer every generated KV request exactly as etcd 3.5.1 does.

``KINE_DIFF_SEEDS`` overrides the seeds of the kine-vs-etcd test: a count (``5`` runs seeds
0..4), a list (``3,7``) or a span (``10-14``). ``KINE_DIFF_OPS`` overrides the number of
requests per seed (default 2,000). A failure prints the mismatch report of
:mod:`.differential`; ``python -m tests.conformance.differential --seed N`` replays one seed.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from kine_py._pb.etcdserverpb import rpc_pb2
from kine_py._pb.mvccpb import kv_pb2
from kine_py.testing.processes import ServerProcess, etcd_process

from .differential import (
    KEYS,
    RequestGenerator,
    StoreView,
    normalise,
    ops_from_env,
    run_differential,
    seeds_from_env,
    strip_unsafe_ignores,
    to_text,
)

SELF_CHECK_SEEDS = (0, 1)
SELF_CHECK_OPS = 300


def fixed_view() -> StoreView:
    """A made-up store state, for tests of the generator that need no server."""
    kvs = {k: kv_pb2.KeyValue(key=k, value=b"v", version=2, create_revision=3, mod_revision=9) for k in KEYS}
    return StoreView(revision=40, compact_revision=5, kvs=kvs)


def test_generator_is_deterministic():
    """The same seed and the same views give the same requests."""
    view = fixed_view()
    first, second = RequestGenerator(7), RequestGenerator(7)
    for _ in range(500):
        assert to_text(first.next_request(view)) == to_text(second.next_request(view))


def test_normalise_clears_ids_in_nested_headers():
    """cluster_id, member_id and raft_term go everywhere; the revision stays."""
    header = rpc_pb2.ResponseHeader(cluster_id=1, member_id=2, revision=3, raft_term=4)
    inner = rpc_pb2.TxnResponse(
        header=header, responses=[rpc_pb2.ResponseOp(response_range=rpc_pb2.RangeResponse(header=header))]
    )
    outer = rpc_pb2.TxnResponse(header=header, responses=[rpc_pb2.ResponseOp(response_txn=inner)])
    clean = normalise(outer)
    assert isinstance(clean, rpc_pb2.TxnResponse)
    expected = rpc_pb2.ResponseHeader(revision=3)
    assert clean.header == expected
    assert clean.responses[0].response_txn.header == expected
    assert clean.responses[0].response_txn.responses[0].response_range.header == expected
    assert outer.header.cluster_id == 1


def test_strip_unsafe_ignores():
    """A txn Put with ignore_value after a delete covering its key loses the flag; others keep it."""
    put = rpc_pb2.PutRequest(key=b"a/03", ignore_value=True)
    txn = rpc_pb2.TxnRequest(
        success=[
            rpc_pb2.RequestOp(request_put=put),
            rpc_pb2.RequestOp(request_delete_range=rpc_pb2.DeleteRangeRequest(key=b"a", range_end=b"\x00")),
            rpc_pb2.RequestOp(request_txn=rpc_pb2.TxnRequest(failure=[rpc_pb2.RequestOp(request_put=put)])),
        ]
    )
    strip_unsafe_ignores(txn)
    assert txn.success[0].request_put.ignore_value
    assert not txn.success[2].request_txn.failure[0].request_put.ignore_value


def start_etcd(data_dir: Path) -> ServerProcess:
    """A second fresh etcd, for the self-check."""
    return etcd_process(data_dir).start()


@pytest.mark.etcd_reference
@pytest.mark.kine
@pytest.mark.parametrize("seed", SELF_CHECK_SEEDS)
def test_self_check_etcd_vs_etcd(seed: int, etcd: ServerProcess, tmp_path: Path):
    """Two fresh etcds agree on everything: the harness and the generator are deterministic."""
    other = start_etcd(tmp_path / "etcd-2")
    try:
        mismatch = run_differential(seed, SELF_CHECK_OPS, etcd.endpoint, other.endpoint, ("etcd", "etcd-2"))
    finally:
        other.stop()
    if mismatch is not None:
        pytest.fail(mismatch.report(), pytrace=False)


@pytest.mark.etcd_reference
@pytest.mark.kine
@pytest.mark.slow
@pytest.mark.parametrize("seed", seeds_from_env("KINE_DIFF_SEEDS"))
def test_differential_kine_vs_etcd(seed: int, etcd: ServerProcess, kine: ServerProcess):
    """kine-py answers every request of the seed's sequence exactly as etcd does."""
    mismatch = run_differential(
        seed, ops_from_env("KINE_DIFF_OPS"), etcd.endpoint, kine.endpoint, ("etcd", "kine")
    )
    if mismatch is not None:
        pytest.fail(mismatch.report(), pytrace=False)
