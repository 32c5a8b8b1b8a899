"""etcdserverpb.KV: Range, Put, DeleteRange, Txn, Compact."""

from __future__ import annotations

from typing import Any

import grpc

from kine_py._pb.etcdserverpb import rpc_pb2 as pb
from kine_py._pb.etcdserverpb import rpc_pb2_grpc
from kine_py.mvcc.store import Store
from kine_py.server import convert
from kine_py.server.identity import Identity
from kine_py.server.status import etcd_errors

Ctx = grpc.aio.ServicerContext[Any, Any]

# etcd measures a write against --max-request-bytes after wrapping it in its
# raft request; the wrapper adds this many bytes (measured on etcd 3.5.1).
RAFT_REQUEST_OVERHEAD = 17


def _size(request: Any) -> int:
    return int(request.ByteSize()) + RAFT_REQUEST_OVERHEAD


class KVService(rpc_pb2_grpc.KVServicer):
    def __init__(self, store: Store, identity: Identity, encoder: convert.Encoder | None = None) -> None:
        self._store = store
        self._id = identity
        self._encoder = encoder or convert.Encoder(identity.fill)

    @etcd_errors
    async def Range(  # type: ignore[override]  # answers pre-serialized bytes
        self, request: pb.RangeRequest, context: Ctx
    ) -> bytes:
        """Serialized by ``convert.Encoder``: each KeyValue's bytes are built once and reused."""
        return self._encoder.range_response(await self._store.range(convert.range_op(request)))

    @etcd_errors
    async def Put(self, request: pb.PutRequest, context: Ctx) -> pb.PutResponse:
        result = await self._store.put(convert.put_op(request), _size(request))
        resp = convert.put_response(result)
        self._id.fill(resp.header)
        return resp

    @etcd_errors
    async def DeleteRange(self, request: pb.DeleteRangeRequest, context: Ctx) -> pb.DeleteRangeResponse:
        result = await self._store.delete_range(convert.delete_op(request), _size(request))
        resp = convert.delete_response(result)
        self._id.fill(resp.header)
        return resp

    @etcd_errors
    async def Txn(self, request: pb.TxnRequest, context: Ctx) -> pb.TxnResponse:
        result = await self._store.txn(convert.txn_op(request), _size(request))
        resp = convert.txn_response(result)
        self._id.fill(resp.header)
        return resp

    @etcd_errors
    async def Compact(self, request: pb.CompactionRequest, context: Ctx) -> pb.CompactionResponse:
        revision = await self._store.compact(request.revision, request.physical)
        resp = pb.CompactionResponse(header=pb.ResponseHeader(revision=revision))
        self._id.fill(resp.header)
        return resp
