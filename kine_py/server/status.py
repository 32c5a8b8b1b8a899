"""The one table from domain errors to etcd's gRPC status codes and messages.

Messages are etcd's, byte for byte (``api/v3rpc/rpctypes/error.go``): etcd
clients turn a status back into a typed error by matching the text. The most
specific class in an exception's MRO wins.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn, TypeVar

import grpc

from kine_py import errors

log = logging.getLogger(__name__)

C = grpc.StatusCode
_TABLE: dict[type[errors.KineError], tuple[grpc.StatusCode, str]] = {
    errors.CompactedError: (C.OUT_OF_RANGE, "etcdserver: mvcc: required revision has been compacted"),
    errors.FutureRevisionError: (C.OUT_OF_RANGE, "etcdserver: mvcc: required revision is a future revision"),
    errors.EmptyKeyError: (C.INVALID_ARGUMENT, "etcdserver: key is not provided"),
    errors.TooManyOpsError: (C.INVALID_ARGUMENT, "etcdserver: too many operations in txn request"),
    errors.DuplicateKeyError: (C.INVALID_ARGUMENT, "etcdserver: duplicate key given in txn request"),
    errors.KeyNotFoundError: (C.INVALID_ARGUMENT, "etcdserver: key not found"),
    errors.ValueProvidedError: (C.INVALID_ARGUMENT, "etcdserver: value is provided"),
    errors.LeaseProvidedError: (C.INVALID_ARGUMENT, "etcdserver: lease is provided"),
    errors.RequestTooLargeError: (C.INVALID_ARGUMENT, "etcdserver: request is too large"),
    errors.InvalidSortOptionError: (C.INVALID_ARGUMENT, "etcdserver: invalid sort option"),
    errors.LeaseNotFoundError: (C.NOT_FOUND, "etcdserver: requested lease not found"),
    errors.LeaseExistsError: (C.FAILED_PRECONDITION, "etcdserver: lease already exists"),
    errors.LeaseTTLTooLargeError: (C.OUT_OF_RANGE, "etcdserver: too large lease TTL"),
    errors.ServerStoppedError: (C.UNAVAILABLE, "etcdserver: server stopped"),
    errors.NoLeaderError: (C.UNAVAILABLE, "etcdserver: no leader"),
    errors.NotLeaderError: (C.UNAVAILABLE, "etcdserver: not leader"),
    errors.LeaderChangedError: (C.UNAVAILABLE, "etcdserver: leader changed"),
    errors.RequestTimeoutError: (C.UNAVAILABLE, "etcdserver: request timed out"),
    errors.MemberNotFoundError: (C.NOT_FOUND, "etcdserver: member not found"),
    errors.MemberExistsError: (C.FAILED_PRECONDITION, "etcdserver: member ID already exist"),
    errors.PeerURLExistsError: (C.FAILED_PRECONDITION, "etcdserver: Peer URLs already exists"),
    errors.MemberNotLearnerError: (C.FAILED_PRECONDITION, "etcdserver: can only promote a learner member"),
    errors.LearnerNotReadyError: (
        C.FAILED_PRECONDITION,
        "etcdserver: can only promote a learner member which is in sync with leader",
    ),
    errors.BadLeaderTransfereeError: (C.FAILED_PRECONDITION, "etcdserver: bad leader transferee"),
    errors.MemberBadURLsError: (C.INVALID_ARGUMENT, "etcdserver: given member URLs are invalid"),
    errors.UnavailableError: (C.UNAVAILABLE, ""),
    errors.UnsupportedError: (C.UNIMPLEMENTED, ""),
    errors.KineError: (C.INTERNAL, ""),
}


def to_status(exc: errors.KineError) -> tuple[grpc.StatusCode, str]:
    """The (code, message) etcd would answer for ``exc``."""
    for cls in type(exc).__mro__:
        if cls in _TABLE:
            code, message = _TABLE[cls]
            break
    if isinstance(exc, errors.UnsupportedError):
        return code, f"{exc.field} is not implemented by kine-py"
    return code, message or str(exc) or type(exc).__name__


async def abort(context: grpc.aio.ServicerContext[Any, Any], exc: BaseException) -> NoReturn:
    """End the call with the status for ``exc``; unexpected exceptions are logged and INTERNAL."""
    if isinstance(exc, errors.KineError):
        code, message = to_status(exc)
    else:
        log.error("unexpected error", exc_info=exc)
        code, message = C.INTERNAL, f"kine-py: internal error: {type(exc).__name__}: {exc}"
    await context.abort(code, message)
    raise AssertionError("context.abort returned")  # pragma: no cover


S = TypeVar("S")
Req = TypeVar("Req")
Resp = TypeVar("Resp")
Handler = Callable[[S, Req, grpc.aio.ServicerContext[Any, Any]], Awaitable[Resp]]


def etcd_errors(fn: Handler[S, Req, Resp]) -> Handler[S, Req, Resp]:
    """Decorate a unary handler so every error leaves as etcd's status."""

    @functools.wraps(fn)
    async def handler(self: S, request: Req, context: grpc.aio.ServicerContext[Any, Any]) -> Resp:
        try:
            return await fn(self, request, context)
        except asyncio.CancelledError:
            raise
        except grpc.aio.AbortError:
            raise
        except Exception as exc:
            await abort(context, exc)

    return handler
