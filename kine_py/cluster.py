"""What the etcd Cluster and Maintenance APIs need from a replicated log (Raft mode).

The gRPC layer sees only this protocol; a log that is not replicated provides none, and the
server answers as a single member.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable


@dataclass(frozen=True, slots=True)
class MemberInfo:
    id: int
    name: str
    peer_urls: tuple[str, ...]
    client_urls: tuple[str, ...]
    is_learner: bool


@dataclass(frozen=True, slots=True)
class ConsensusStatus:
    """For ``Maintenance.Status``: etcd's leader, raft_index, raft_term, raft_applied_index."""

    member_id: int
    leader: int
    raft_term: int
    raft_index: int
    raft_applied_index: int
    is_learner: bool


@runtime_checkable
class ClusterControl(Protocol):
    """Membership and leadership of a replicated log. Methods raise ``kine_py.errors``
    (``MembershipError`` subclasses, ``NoLeaderError``, ``RequestTimeoutError``, ...)."""

    def members(self) -> list[MemberInfo]: ...

    async def add_member(self, peer_urls: tuple[str, ...], is_learner: bool) -> MemberInfo: ...

    async def remove_member(self, member_id: int) -> None: ...

    async def promote_member(self, member_id: int) -> None: ...

    async def move_leader(self, target_id: int) -> None: ...

    def consensus_status(self) -> ConsensusStatus: ...

    def has_leader(self) -> bool:
        """Whether this member knows a leader now (cheap: asked on every call in Raft mode)."""
        ...

    def is_learner(self) -> bool:
        """Whether this member is a learner now (cheap, as ``has_leader``)."""
        ...

    def election_timeout(self) -> float:
        """Seconds without a leader's word after which a follower campaigns."""
        ...

    def on_removed(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` (on the event loop) once this member has been removed from the
        cluster; the process should then stop, as etcd's does."""
        ...
