"""grpc.health.v1.Health: SERVING while the backend answers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

from kine_py._pb.grpc.health.v1 import health_pb2 as hpb
from kine_py._pb.grpc.health.v1 import health_pb2_grpc

Ctx = grpc.aio.ServicerContext[Any, Any]
# The services this server reports on: "" (the whole server) and each etcd service.
SERVICES = ("", "etcdserverpb.KV", "etcdserverpb.Maintenance", "etcdserverpb.Cluster")


class HealthService(health_pb2_grpc.HealthServicer):
    """SERVING only while the backend answers (checked at most once a second) and the
    server is not shutting down."""

    def __init__(self, ready: Callable[[], Awaitable[bool]]) -> None:
        self.serving = True
        self._ready = ready
        self._checked_at = -1.0
        self._backend_ok = False

    async def _status(self) -> hpb.HealthCheckResponse.ServingStatus.ValueType:
        now = time.monotonic()
        if now - self._checked_at >= 1.0:
            self._backend_ok = await self._ready()
            self._checked_at = now
        ok = self.serving and self._backend_ok
        return hpb.HealthCheckResponse.SERVING if ok else hpb.HealthCheckResponse.NOT_SERVING

    async def Check(self, request: hpb.HealthCheckRequest, context: Ctx) -> hpb.HealthCheckResponse:
        if request.service not in SERVICES:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"unknown service {request.service!r}")
        return hpb.HealthCheckResponse(status=await self._status())

    async def Watch(
        self, request: hpb.HealthCheckRequest, context: Ctx
    ) -> AsyncIterator[hpb.HealthCheckResponse]:
        if request.service not in SERVICES:
            yield hpb.HealthCheckResponse(status=hpb.HealthCheckResponse.SERVICE_UNKNOWN)
            return
        last = None
        while True:
            status = await self._status()
            if status != last:
                yield hpb.HealthCheckResponse(status=status)
                last = status
            await asyncio.sleep(1)
