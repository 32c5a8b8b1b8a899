"""The error table gives etcd's exact codes and messages."""

import grpc

from kine_py import errors
from kine_py.server.status import to_status


def test_etcd_messages() -> None:
    assert to_status(errors.CompactedError()) == (
        grpc.StatusCode.OUT_OF_RANGE,
        "etcdserver: mvcc: required revision has been compacted",
    )
    assert to_status(errors.DuplicateKeyError()) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "etcdserver: duplicate key given in txn request",
    )
    assert to_status(errors.LeaseNotFoundError()) == (
        grpc.StatusCode.NOT_FOUND,
        "etcdserver: requested lease not found",
    )


def test_backend_errors_keep_their_message_and_unsupported_names_the_field() -> None:
    assert to_status(errors.BackendUnavailableError("db down")) == (grpc.StatusCode.UNAVAILABLE, "db down")
    code, message = to_status(errors.UnsupportedError("RangeRequest.foo"))
    assert code == grpc.StatusCode.UNIMPLEMENTED and "RangeRequest.foo" in message
