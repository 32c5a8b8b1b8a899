"""etcd's txn checks and compare rules, without storage."""

import pytest

from kine_py.errors import DuplicateKeyError, EmptyKeyError, KeyNotFoundError, TooManyOpsError
from kine_py.model import Compare, CompareResult, CompareTarget, DeleteOp, KeyValue, PutOp, RangeOp, TxnOp
from kine_py.mvcc.txn_eval import check_intervals, check_txn, compare_kv, is_read_only

KV = KeyValue(b"k", create_revision=2, mod_revision=5, version=3, value=b"m", lease=0)


def test_too_many_ops_counts_the_widest_list_and_shrinks_for_nested() -> None:
    check_txn(TxnOp(success=tuple(PutOp(b"k%d" % i) for i in range(128))), 128)
    with pytest.raises(TooManyOpsError):
        check_txn(TxnOp(success=tuple(PutOp(b"k%d" % i) for i in range(129))), 128)
    nested = TxnOp(success=tuple(PutOp(b"n%d" % i) for i in range(100)))
    with pytest.raises(TooManyOpsError):
        check_txn(TxnOp(success=(nested, *(PutOp(b"k%d" % i) for i in range(29)))), 128)


def test_empty_keys_and_empty_ops() -> None:
    with pytest.raises(EmptyKeyError):
        check_txn(TxnOp(compare=(Compare(b""),)), 128)
    with pytest.raises(EmptyKeyError):
        check_txn(TxnOp(failure=(RangeOp(b""),)), 128)
    with pytest.raises(KeyNotFoundError):
        check_txn(TxnOp(success=(None,)), 128)


def test_duplicate_puts_and_puts_under_deletes() -> None:
    with pytest.raises(DuplicateKeyError):
        check_intervals([PutOp(b"a"), PutOp(b"a")])
    with pytest.raises(DuplicateKeyError):
        check_intervals([DeleteOp(b"a", b"c"), PutOp(b"b")])
    with pytest.raises(DuplicateKeyError):
        check_intervals([PutOp(b"a"), TxnOp(success=(PutOp(b"a"),))])
    # Both branches of one nested txn may put the same key: only one runs.
    check_intervals([TxnOp(success=(PutOp(b"a"),), failure=(PutOp(b"a"),))])
    # Overlapping deletes are fine, and a from-key delete overlaps nothing (etcd 3.5).
    check_intervals([DeleteOp(b"a", b"z"), DeleteOp(b"b")])
    check_intervals([DeleteOp(b"a", b"\0"), PutOp(b"b")])


def test_read_only_detection_looks_into_nested_branches() -> None:
    assert is_read_only(TxnOp(success=(RangeOp(b"a"),), failure=(TxnOp(success=(RangeOp(b"b"),)),)))
    assert not is_read_only(TxnOp(failure=(TxnOp(failure=(DeleteOp(b"b"),)),)))


@pytest.mark.parametrize(
    ("target", "result", "operand", "expected"),
    [
        (CompareTarget.VERSION, CompareResult.EQUAL, 3, True),
        (CompareTarget.CREATE, CompareResult.LESS, 3, True),
        (CompareTarget.MOD, CompareResult.GREATER, 5, False),
        (CompareTarget.MOD, CompareResult.NOT_EQUAL, 4, True),
        (CompareTarget.VALUE, CompareResult.GREATER, b"a", True),
        (CompareTarget.LEASE, CompareResult.EQUAL, 0, True),
    ],
)
def test_compare_on_an_existing_key(target: int, result: int, operand: int | bytes, expected: bool) -> None:
    assert compare_kv(Compare(b"k", target, result, operand, target), KV) is expected


def test_compare_on_a_missing_key_and_mismatched_operands() -> None:
    assert compare_kv(Compare(b"k", CompareTarget.MOD, CompareResult.EQUAL, 0, CompareTarget.MOD), None)
    assert not compare_kv(
        Compare(b"k", CompareTarget.VALUE, CompareResult.EQUAL, b"", CompareTarget.VALUE), None
    )
    # The operand was set for VERSION but the target is MOD: etcd compares MOD with 0.
    assert compare_kv(Compare(b"k", CompareTarget.MOD, CompareResult.GREATER, 99, CompareTarget.VERSION), KV)
