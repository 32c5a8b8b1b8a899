"""etcdserverpb.Maintenance (Status, Alarm, MoveLeader) and etcdserverpb.Cluster (members).

A single-member server (the SQL modes) reports itself as the only member and leader; in
Raft mode ``Identity.cluster`` answers membership, leadership and the Raft indexes.
"""

from __future__ import annotations

from typing import Any

import grpc

from kine_py._pb.etcdserverpb import rpc_pb2 as pb
from kine_py._pb.etcdserverpb import rpc_pb2_grpc
from kine_py.cluster import ClusterControl, MemberInfo
from kine_py.errors import UnsupportedError
from kine_py.mvcc.store import Store
from kine_py.server.identity import RAFT_TERM, Identity
from kine_py.server.status import etcd_errors
from kine_py.server.unimplemented import unimplemented

Ctx = grpc.aio.ServicerContext[Any, Any]


@unimplemented("Maintenance", ["Defragment", "Hash", "HashKV", "Snapshot", "Downgrade"])
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
        if self._id.cluster is not None:
            raft = self._id.cluster.consensus_status()
            resp.leader, resp.raftTerm = raft.leader, raft.raft_term
            resp.raftIndex, resp.raftAppliedIndex = raft.raft_index, raft.raft_applied_index
            resp.isLearner = raft.is_learner
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

    @etcd_errors
    async def MoveLeader(self, request: pb.MoveLeaderRequest, context: Ctx) -> pb.MoveLeaderResponse:
        """Raft mode: hand leadership to ``targetID`` (asked of the leader, as etcd requires)."""
        await _cluster(self._id, "Maintenance.MoveLeader").move_leader(request.targetID)
        resp = pb.MoveLeaderResponse(header=pb.ResponseHeader())
        self._id.fill(resp.header, self._store.revision)
        return resp


@unimplemented("Cluster", ["MemberUpdate"])
class ClusterService(rpc_pb2_grpc.ClusterServicer):
    def __init__(self, identity: Identity) -> None:
        self._id = identity

    @etcd_errors
    async def MemberList(self, request: pb.MemberListRequest, context: Ctx) -> pb.MemberListResponse:
        if self._id.cluster is None:
            members = [
                pb.Member(ID=self._id.member_id, name=self._id.name, clientURLs=list(self._id.client_urls))
            ]
        else:
            members = [_member(m) for m in self._id.cluster.members()]
        resp = pb.MemberListResponse(header=pb.ResponseHeader(), members=members)
        self._id.fill(resp.header)
        return resp

    @etcd_errors
    async def MemberAdd(self, request: pb.MemberAddRequest, context: Ctx) -> pb.MemberAddResponse:
        cluster = _cluster(self._id, "Cluster.MemberAdd")
        added = await cluster.add_member(tuple(request.peerURLs), request.isLearner)
        resp = pb.MemberAddResponse(
            header=pb.ResponseHeader(), member=_member(added), members=[_member(m) for m in cluster.members()]
        )
        self._id.fill(resp.header)
        return resp

    @etcd_errors
    async def MemberRemove(self, request: pb.MemberRemoveRequest, context: Ctx) -> pb.MemberRemoveResponse:
        cluster = _cluster(self._id, "Cluster.MemberRemove")
        await cluster.remove_member(request.ID)
        resp = pb.MemberRemoveResponse(
            header=pb.ResponseHeader(), members=[_member(m) for m in cluster.members()]
        )
        self._id.fill(resp.header)
        return resp

    @etcd_errors
    async def MemberPromote(self, request: pb.MemberPromoteRequest, context: Ctx) -> pb.MemberPromoteResponse:
        cluster = _cluster(self._id, "Cluster.MemberPromote")
        await cluster.promote_member(request.ID)
        resp = pb.MemberPromoteResponse(
            header=pb.ResponseHeader(), members=[_member(m) for m in cluster.members()]
        )
        self._id.fill(resp.header)
        return resp


def _cluster(identity: Identity, rpc: str) -> ClusterControl:
    if identity.cluster is None:
        raise UnsupportedError(f"{rpc} (membership changes need Raft mode, --endpoint raft://DIR)")
    return identity.cluster


def _member(m: MemberInfo) -> pb.Member:
    return pb.Member(
        ID=m.id,
        name=m.name,
        peerURLs=list(m.peer_urls),
        clientURLs=list(m.client_urls),
        isLearner=m.is_learner,
    )
