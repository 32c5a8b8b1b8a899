"""etcd's per-call checks of a replicated member (``v3rpc/interceptor.go``), for Raft mode.

- A **learner** serves only ``Maintenance.Status`` and serializable ``KV.Range``; every other
  unary call and every stream gets UNAVAILABLE "etcdserver: rpc not supported for learner",
  so clients move on to another member.
- A call carrying the metadata ``hasleader: true`` (clientv3's ``WithRequireLeader``, which
  kube-apiserver puts on every watch) gets UNAVAILABLE "etcdserver: no leader" while the
  member knows no leader; such a *stream* that is already open is ended with the same status
  once the member has been without a leader for three election timeouts in a row, so a
  watcher cut off with a minority reconnects to the majority instead of waiting in silence.

``MethodTable.service`` asks ``LeaderGate.handler`` for every call; without a cluster (the SQL
modes) there is no gate and no per-call cost. Everything runs on the event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, TypeAlias

import grpc

from kine_py.cluster import ClusterControl

NOT_FOR_LEARNER = "etcdserver: rpc not supported for learner"
NO_LEADER = "etcdserver: no leader"
# etcd cancels require-leader streams after this many election timeouts without a leader.
MAX_NO_LEADER_CHECKS = 3
STATUS = "/etcdserverpb.Maintenance/Status"
RANGE = "/etcdserverpb.KV/Range"

if TYPE_CHECKING:
    Handler: TypeAlias = grpc.RpcMethodHandler[Any, Any]
else:
    Handler = grpc.RpcMethodHandler


def _is_stream(handler: Handler) -> bool:
    return handler.unary_unary is None


def _refusing(handler: Handler, message: str) -> Handler:
    """A handler of ``handler``'s shape that only answers UNAVAILABLE ``message``."""
    kw: dict[str, Any] = {
        "request_deserializer": handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }

    async def unary(request: Any, context: Any) -> Any:
        await context.abort(grpc.StatusCode.UNAVAILABLE, message)

    async def stream(request: Any, context: Any) -> AsyncIterator[Any]:
        await context.abort(grpc.StatusCode.UNAVAILABLE, message)
        yield  # pragma: no cover - abort raises

    if handler.unary_unary is not None:
        return grpc.unary_unary_rpc_method_handler(unary, **kw)
    if handler.stream_stream is not None:
        return grpc.stream_stream_rpc_method_handler(stream, **kw)
    if handler.unary_stream is not None:
        return grpc.unary_stream_rpc_method_handler(stream, **kw)
    return grpc.stream_unary_rpc_method_handler(unary, **kw)


def _serializable_only(handler: Handler) -> Handler:
    """``KV.Range`` for a learner: linearizable requests are refused."""
    inner = handler.unary_unary
    assert inner is not None

    async def call(request: Any, context: Any) -> Any:
        if not request.serializable:
            await context.abort(grpc.StatusCode.UNAVAILABLE, NOT_FOR_LEARNER)
        return await inner(request, context)

    return grpc.unary_unary_rpc_method_handler(
        call,
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )


def requires_leader(metadata: Any) -> bool:
    """Whether the call's metadata holds ``hasleader: true``."""
    return any(key == "hasleader" and value == "true" for key, value in metadata or ())


class LeaderGate:
    """The checks above for one member; built once per server."""

    def __init__(self, cluster: ClusterControl) -> None:
        self._cluster = cluster
        self._variants: dict[tuple[str, str], Handler] = {}
        self._streams: set[asyncio.Task[Any]] = set()
        self._cancelled: set[asyncio.Task[Any]] = set()
        self._monitor: asyncio.Task[None] | None = None

    def handler(self, method: str, handler: Handler, metadata: Any) -> Handler:
        """The handler that serves this call: ``handler`` itself, or a refusing or watched one."""
        if self._cluster.is_learner():
            if method == STATUS:
                return handler
            if method == RANGE:
                return self._variant(method, "learner-range", handler)
            return self._variant(method, "not-for-learner", handler)
        if not requires_leader(metadata):
            return handler
        if not self._cluster.has_leader():
            return self._variant(method, "no-leader", handler)
        return self._variant(method, "watched", handler) if _is_stream(handler) else handler

    def _variant(self, method: str, kind: str, handler: Handler) -> Handler:
        found = self._variants.get((method, kind))
        if found is None:
            if kind == "learner-range":
                found = _serializable_only(handler)
            elif kind == "not-for-learner":
                found = _refusing(handler, NOT_FOR_LEARNER)
            elif kind == "no-leader":
                found = _refusing(handler, NO_LEADER)
            else:
                found = self._watched(handler)
            self._variants[(method, kind)] = found
        return found

    # ---- require-leader streams ----

    def _watched(self, handler: Handler) -> Handler:
        """``handler`` (a stream) registered for cancellation while it runs."""
        behavior: Any = handler.stream_stream or handler.unary_stream
        kw: dict[str, Any] = {
            "request_deserializer": handler.request_deserializer,
            "response_serializer": handler.response_serializer,
        }
        if behavior is None:  # client streaming: one answer, nothing to end early
            return handler

        async def call(request: Any, context: Any) -> AsyncIterator[Any]:
            task = asyncio.current_task()
            assert task is not None
            self._register(task)
            try:
                async for response in behavior(request, context):
                    yield response
            except asyncio.CancelledError:
                if task not in self._cancelled:
                    raise
                task.uncancel()
                await context.abort(grpc.StatusCode.UNAVAILABLE, NO_LEADER)
            finally:
                self._streams.discard(task)
                self._cancelled.discard(task)

        if handler.stream_stream is not None:
            return grpc.stream_stream_rpc_method_handler(call, **kw)
        return grpc.unary_stream_rpc_method_handler(call, **kw)

    def _register(self, task: asyncio.Task[Any]) -> None:
        self._streams.add(task)
        if self._monitor is None or self._monitor.done():
            self._monitor = asyncio.get_running_loop().create_task(self._watch_leader())

    async def _watch_leader(self) -> None:
        """Check every election timeout while require-leader streams are open (etcd's
        ``monitorLeader``); after ``MAX_NO_LEADER_CHECKS`` checks in a row without a leader,
        end them all."""
        without = 0
        while self._streams:
            await asyncio.sleep(self._cluster.election_timeout())
            without = 0 if self._cluster.has_leader() else without + 1
            if without >= MAX_NO_LEADER_CHECKS:
                for task in list(self._streams):
                    self._cancelled.add(task)
                    task.cancel()
                self._streams.clear()
