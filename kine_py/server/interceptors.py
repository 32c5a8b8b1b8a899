"""Per-call metrics and debug log lines, wrapped around each method handler once, at startup.

Not a ``grpc.aio.ServerInterceptor``: an interceptor runs an extra coroutine and
builds a new method handler on every call. Here ``MethodTable`` collects the
handlers that the generated ``add_*Servicer_to_server`` functions register,
wraps each behaviour once with the timing/reporting code, and serves them all
from one dictionary (one ``GenericRpcHandler``). That also keeps grpc.aio's
accept loop cheap: it waits on one pending call future per *registered* method,
and with none registered it waits on one.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any, Protocol

import grpc

from kine_py.server.gate import LeaderGate

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


def short_name(full_method: str) -> str:
    """``/etcdserverpb.KV/Put`` -> ``KV/Put`` (the metric label)."""
    service, method = full_method.rsplit("/", 2)[-2:]
    return service.rsplit(".", 1)[-1] + "/" + method


class _Reporter:
    """Reports one finished call of one method to the observer and the debug log."""

    __slots__ = ("_method", "_observer")

    def __init__(self, method: str, observer: CallObserver | None) -> None:
        self._method = method
        self._observer = observer

    def done(self, context: Any, started: float, error: BaseException | None) -> None:
        seconds = time.perf_counter() - started
        code = _code(context, error)
        if self._observer is not None:
            self._observer.call_done(self._method, code, seconds)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%s %s %.2fms", self._method, code, seconds * 1000)


def _unary(report: _Reporter, behavior: Any) -> Any:
    async def call(request: Any, context: Any) -> Any:
        started, error = time.perf_counter(), None
        try:
            return await behavior(request, context)
        except BaseException as exc:
            error = exc
            raise
        finally:
            report.done(context, started, error)

    return call


def _stream(report: _Reporter, behavior: Any) -> Any:
    async def call(request: Any, context: Any) -> AsyncIterator[Any]:
        started, error = time.perf_counter(), None
        try:
            async for response in behavior(request, context):
                yield response
        except BaseException as exc:
            error = exc
            raise
        finally:
            report.done(context, started, error)

    return call


def _passing_bytes(serializer: Any) -> Any:
    """A response serializer that sends ``bytes`` as they are: a handler may yield responses
    it serialized itself (the Watch stream does, to encode each event once)."""
    if serializer is None:
        return None

    def serialize(message: Any) -> bytes:
        if type(message) is bytes:
            return message
        return bytes(serializer(message))

    return serialize


def instrument(
    handler: grpc.RpcMethodHandler[Any, Any], method: str, observer: CallObserver | None
) -> grpc.RpcMethodHandler[Any, Any]:
    """``handler`` with its behaviour timed and reported as ``method`` (e.g. ``KV/Put``)."""
    report = _Reporter(method, observer)
    kw: dict[str, Any] = {
        "request_deserializer": handler.request_deserializer,
        "response_serializer": _passing_bytes(handler.response_serializer),
    }
    if handler.unary_unary is not None:
        return grpc.unary_unary_rpc_method_handler(_unary(report, handler.unary_unary), **kw)
    if handler.stream_stream is not None:
        return grpc.stream_stream_rpc_method_handler(_stream(report, handler.stream_stream), **kw)
    if handler.unary_stream is not None:
        return grpc.unary_stream_rpc_method_handler(_stream(report, handler.unary_stream), **kw)
    if handler.stream_unary is not None:
        return grpc.stream_unary_rpc_method_handler(_unary(report, handler.stream_unary), **kw)
    return handler


class MethodTable(grpc.GenericRpcHandler):  # type: ignore[type-arg]
    """Every method of every service, instrumented, in one dictionary.

    Pass it as the ``server`` argument of the generated ``add_*Servicer_to_server``
    functions (it takes their ``add_registered_method_handlers`` calls), then
    register it on the real server with ``server.add_generic_rpc_handlers((table,))``.
    """

    def __init__(self, observer: CallObserver | None, gate: LeaderGate | None = None) -> None:
        self._observer = observer
        self._gate = gate
        self._methods: dict[str, grpc.RpcMethodHandler[Any, Any]] = {}

    def add_generic_rpc_handlers(self, handlers: object) -> None:
        """Ignored: the generated code registers the same handlers by name too."""

    def add_registered_method_handlers(
        self, service: str, handlers: Mapping[str, grpc.RpcMethodHandler[Any, Any]]
    ) -> None:
        for name, handler in handlers.items():
            full = f"/{service}/{name}"
            self._methods[full] = instrument(handler, short_name(full), self._observer)

    def methods(self) -> list[str]:
        return sorted(self._methods)

    def service(
        self, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = self._methods.get(handler_call_details.method)
        if handler is None or self._gate is None:
            return handler
        details: Any = handler_call_details  # grpc.aio's carries invocation_metadata
        return self._gate.handler(details.method, handler, details.invocation_metadata)
