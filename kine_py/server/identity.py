"""Who this server is, as etcd's response headers and Status/MemberList report it."""

from __future__ import annotations

from dataclasses import dataclass

from kine_py._pb.etcdserverpb import rpc_pb2 as pb

# A single member never changes term; etcd reports a small constant too.
RAFT_TERM = 1


@dataclass(frozen=True, slots=True)
class Identity:
    cluster_id: int
    member_id: int
    name: str
    client_urls: tuple[str, ...]
    version: str

    def fill(self, header: pb.ResponseHeader, revision: int | None = None) -> None:
        """Fill a top-level header as etcd does: ids and term always, revision when still 0."""
        header.cluster_id = self.cluster_id
        header.member_id = self.member_id
        header.raft_term = RAFT_TERM
        if revision is not None and header.revision == 0:
            header.revision = revision
