"""etcdserverpb.Lease: Grant, Revoke, KeepAlive (stream), TimeToLive, Leases."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc

from kine_py._pb.etcdserverpb import rpc_pb2 as pb
from kine_py._pb.etcdserverpb import rpc_pb2_grpc
from kine_py.errors import LeaseNotFoundError
from kine_py.mvcc.store import Store
from kine_py.server.identity import Identity
from kine_py.server.status import abort, etcd_errors

Ctx = grpc.aio.ServicerContext[Any, Any]


class LeaseService(rpc_pb2_grpc.LeaseServicer):
    def __init__(self, store: Store, identity: Identity) -> None:
        self._store = store
        self._id = identity

    def _header(self, revision: int | None = None) -> pb.ResponseHeader:
        header = pb.ResponseHeader()
        self._id.fill(header, self._store.revision if revision is None else revision)
        return header

    @etcd_errors
    async def LeaseGrant(self, request: pb.LeaseGrantRequest, context: Ctx) -> pb.LeaseGrantResponse:
        result = await self._store.lease_grant(request.TTL, request.ID)
        return pb.LeaseGrantResponse(header=self._header(result.revision), ID=result.id, TTL=result.ttl)

    @etcd_errors
    async def LeaseRevoke(self, request: pb.LeaseRevokeRequest, context: Ctx) -> pb.LeaseRevokeResponse:
        revision = await self._store.lease_revoke(request.ID)
        return pb.LeaseRevokeResponse(header=self._header(revision))

    async def LeaseKeepAlive(
        self, request_iterator: AsyncIterator[pb.LeaseKeepAliveRequest], context: Ctx
    ) -> AsyncIterator[pb.LeaseKeepAliveResponse]:
        try:
            async for request in request_iterator:
                ttl = await self._store.lease_renew(request.ID)
                yield pb.LeaseKeepAliveResponse(header=self._header(), ID=request.ID, TTL=ttl)
        except Exception as exc:
            await abort(context, exc)

    @etcd_errors
    async def LeaseTimeToLive(
        self, request: pb.LeaseTimeToLiveRequest, context: Ctx
    ) -> pb.LeaseTimeToLiveResponse:
        try:
            info = await self._store.lease_info(request.ID, request.keys)
        except LeaseNotFoundError:  # etcd answers TTL -1 rather than an error
            return pb.LeaseTimeToLiveResponse(header=self._header(), ID=request.ID, TTL=-1)
        return pb.LeaseTimeToLiveResponse(
            header=self._header(), ID=info.id, TTL=info.ttl, grantedTTL=info.granted_ttl, keys=info.keys
        )

    @etcd_errors
    async def LeaseLeases(self, request: pb.LeaseLeasesRequest, context: Ctx) -> pb.LeaseLeasesResponse:
        leases = [pb.LeaseStatus(ID=lease_id) for lease_id in await self._store.lease_ids()]
        return pb.LeaseLeasesResponse(header=self._header(), leases=leases)
