"""grpc.health.v1.Health: SERVING while the store is open."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc

from kine_py._pb.grpc.health.v1 import health_pb2 as hpb
from kine_py._pb.grpc.health.v1 import health_pb2_grpc

Ctx = grpc.aio.ServicerContext[Any, Any]
# The services this server reports on: "" (the whole server) and each etcd service.
SERVICES = ("", "etcdserverpb.KV", "etcdserverpb.Maintenance", "etcdserverpb.Cluster")


class HealthService(health_pb2_grpc.HealthServicer):
    def __init__(self) -> None:
        self.serving = True

    def _status(self) -> hpb.HealthCheckResponse.ServingStatus.ValueType:
        return hpb.HealthCheckResponse.SERVING if self.serving else hpb.HealthCheckResponse.NOT_SERVING

    async def Check(self, request: hpb.HealthCheckRequest, context: Ctx) -> hpb.HealthCheckResponse:
        if request.service not in SERVICES:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"unknown service {request.service!r}")
        return hpb.HealthCheckResponse(status=self._status())

    async def Watch(
        self, request: hpb.HealthCheckRequest, context: Ctx
    ) -> AsyncIterator[hpb.HealthCheckResponse]:
        if request.service not in SERVICES:
            yield hpb.HealthCheckResponse(status=hpb.HealthCheckResponse.SERVICE_UNKNOWN)
            return
        last = None
        while True:
            status = self._status()
            if status != last:
                yield hpb.HealthCheckResponse(status=status)
                last = status
            await asyncio.sleep(1)
