"""Who this server is, as etcd's response headers and Status/MemberList report it."""

from __future__ import annotations

from dataclasses import dataclass

from kine_py._pb.etcdserverpb import rpc_pb2 as pb
from kine_py.cluster import ClusterControl

# A single member never changes term; etcd reports a small constant too.
RAFT_TERM = 1


@dataclass(frozen=True, slots=True)
class Identity:
    cluster_id: int
    member_id: int
    name: str
    client_urls: tuple[str, ...]
    version: str
    cluster: ClusterControl | None = None
    """Set in Raft mode: membership, leadership and the real Raft term."""

    def fill(self, header: pb.ResponseHeader, revision: int | None = None) -> None:
        """Fill a top-level header as etcd does: ids and term always, revision when still 0."""
        header.cluster_id = self.cluster_id
        header.member_id = self.member_id
        header.raft_term = self.cluster.consensus_status().raft_term if self.cluster else RAFT_TERM
        if revision is not None and header.revision == 0:
            header.revision = revision
