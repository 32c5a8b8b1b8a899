"""UNIMPLEMENTED answers that name what is missing, for RPCs kine-py does not serve yet."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

import grpc

from kine_py._pb.etcdserverpb import rpc_pb2_grpc

T = TypeVar("T")
P = ParamSpec("P")


def _message(service: str, method: str) -> str:
    return f"etcdserverpb.{service}/{method} is not implemented by kine-py"


def _method(service: str, method: str) -> Callable[..., Any]:
    async def handler(self: object, request: object, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, _message(service, method))

    handler.__name__ = method
    return handler


def unimplemented(service: str, methods: list[str]) -> Callable[[type[T]], type[T]]:
    """Class decorator: each named method answers UNIMPLEMENTED with a message naming it."""

    def decorate(cls: type[T]) -> type[T]:
        for method in methods:
            setattr(cls, method, _method(service, method))
        return cls

    return decorate


def concrete(cls: Callable[P, T]) -> Callable[P, T]:
    """Tell the type checker that a class completed by ``unimplemented`` may be instantiated."""
    return cls


def _methods_of(servicer: type) -> list[str]:
    return [name for name in vars(servicer) if not name.startswith("_")]


@unimplemented("Auth", _methods_of(rpc_pb2_grpc.AuthServicer))
class AuthService(rpc_pb2_grpc.AuthServicer):
    """Authentication is not supported; listen on loopback or a unix socket."""
