"""etcdserverpb.Maintenance (Status, Alarm) and etcdserverpb.Cluster (MemberList)."""

from __future__ import annotations

from typing import Any

import grpc

from kine_py._pb.etcdserverpb import rpc_pb2 as pb
from kine_py._pb.etcdserverpb import rpc_pb2_grpc
from kine_py.errors import UnsupportedError
from kine_py.mvcc.store import Store
from kine_py.server.identity import RAFT_TERM, Identity
from kine_py.server.status import etcd_errors
from kine_py.server.unimplemented import unimplemented

Ctx = grpc.aio.ServicerContext[Any, Any]


@unimplemented("Maintenance", ["Defragment", "Hash", "HashKV", "Snapshot", "MoveLeader", "Downgrade"])
class MaintenanceService(rpc_pb2_grpc.MaintenanceServicer):
    def __init__(self, store: Store, identity: Identity) -> None:
        self._store = store
        self._id = identity

    @etcd_errors
    async def Status(self, request: pb.StatusRequest, context: Ctx) -> pb.StatusResponse:
        status = await self._store.status()
        resp = pb.StatusResponse(
            header=pb.ResponseHeader(revision=status.revision),
            version=self._id.version,
            dbSize=status.db_size,
            dbSizeInUse=status.db_size_in_use,
            leader=self._id.member_id,
            raftIndex=status.revision,
            raftAppliedIndex=status.revision,
            raftTerm=RAFT_TERM,
        )
        self._id.fill(resp.header)
        return resp

    @etcd_errors
    async def Alarm(self, request: pb.AlarmRequest, context: Ctx) -> pb.AlarmResponse:
        """kine-py raises no alarms: GET lists none, DEACTIVATE has nothing to clear."""
        if request.action == pb.AlarmRequest.ACTIVATE:
            raise UnsupportedError("Maintenance.Alarm ACTIVATE")
        resp = pb.AlarmResponse(header=pb.ResponseHeader())
        self._id.fill(resp.header, self._store.revision)
        return resp


@unimplemented("Cluster", ["MemberAdd", "MemberRemove", "MemberUpdate", "MemberPromote"])
class ClusterService(rpc_pb2_grpc.ClusterServicer):
    def __init__(self, identity: Identity) -> None:
        self._id = identity

    @etcd_errors
    async def MemberList(self, request: pb.MemberListRequest, context: Ctx) -> pb.MemberListResponse:
        member = pb.Member(ID=self._id.member_id, name=self._id.name, clientURLs=list(self._id.client_urls))
        resp = pb.MemberListResponse(header=pb.ResponseHeader(), members=[member])
        self._id.fill(resp.header)
        return resp
