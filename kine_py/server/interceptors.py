"""One gRPC interceptor for every call: a debug log line and per-method metrics."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Protocol

import grpc

log = logging.getLogger("kine_py.requests")


class CallObserver(Protocol):
    def call_done(self, method: str, code: str, seconds: float) -> None: ...


def _code(context: Any, error: BaseException | None) -> str:
    """The call's status: set by abort or the handler, else OK, or CANCELLED/UNKNOWN on errors."""
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return code.name
    if error is None:
        return "OK"
    return "CANCELLED" if "Cancel" in type(error).__name__ else "UNKNOWN"


class RequestInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """Times every call and reports (method, status code) to the observer."""

    def __init__(self, observer: CallObserver | None) -> None:
        self._observer = observer

    def _done(self, method: str, context: Any, started: float, error: BaseException | None) -> None:
        seconds = time.perf_counter() - started
        code = _code(context, error)
        if self._observer is not None:
            self._observer.call_done(method, code, seconds)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%s %s %.2fms", method, code, seconds * 1000)

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any]]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any]:
        handler = await continuation(details)
        if handler is None:
            return handler
        method = (
            details.method.rsplit("/", 2)[-2].rsplit(".", 1)[-1] + "/" + details.method.rsplit("/", 1)[-1]
        )
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                self._unary(method, handler.unary_unary),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.stream_stream is not None:
            return grpc.stream_stream_rpc_method_handler(
                self._stream(method, handler.stream_stream),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                self._stream(method, handler.unary_stream),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return handler

    def _unary(self, method: str, behavior: Any) -> Any:
        async def call(request: Any, context: Any) -> Any:
            started, error = time.perf_counter(), None
            try:
                return await behavior(request, context)
            except BaseException as exc:
                error = exc
                raise
            finally:
                self._done(method, context, started, error)

        return call

    def _stream(self, method: str, behavior: Any) -> Any:
        async def call(request: Any, context: Any) -> AsyncIterator[Any]:
            started, error = time.perf_counter(), None
            try:
                async for response in behavior(request, context):
                    yield response
            except BaseException as exc:
                error = exc
                raise
            finally:
                self._done(method, context, started, error)

        return call
