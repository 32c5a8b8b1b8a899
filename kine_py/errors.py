"""Domain exceptions. No gRPC here: ``kine_py.server.status`` maps them to etcd's status codes.

Hierarchy::

    KineError
      RequestError             bad input (INVALID_ARGUMENT)
        EmptyKeyError, TooManyOpsError, DuplicateKeyError, KeyNotFoundError,
        ValueProvidedError, LeaseProvidedError, RequestTooLargeError, InvalidSortOptionError
      RevisionError            (OUT_OF_RANGE)
        CompactedError, FutureRevisionError
      LeaseError
        LeaseNotFoundError     (NOT_FOUND)
        LeaseExistsError       (FAILED_PRECONDITION)
        LeaseTTLTooLargeError  (OUT_OF_RANGE)
      UnavailableError         (UNAVAILABLE)
        BackendUnavailableError, ServerStoppedError,
        NoLeaderError, NotLeaderError, LeaderChangedError, RequestTimeoutError  (Raft mode)
      MembershipError          Cluster API refusals (Raft mode): MemberNotFoundError (NOT_FOUND),
        MemberExistsError, PeerURLExistsError, MemberNotLearnerError, LearnerNotReadyError,
        BadLeaderTransfereeError (FAILED_PRECONDITION), MemberBadURLsError (INVALID_ARGUMENT)
      RevisionConflictError    another writer advanced the log; never leaves the store
      UnsupportedError(field)  (UNIMPLEMENTED)
"""

from __future__ import annotations


class KineError(Exception):
    """Base of every error kine-py raises on purpose."""


class RequestError(KineError):
    """The request is malformed; etcd answers INVALID_ARGUMENT."""


class EmptyKeyError(RequestError):
    pass


class TooManyOpsError(RequestError):
    pass


class DuplicateKeyError(RequestError):
    pass


class KeyNotFoundError(RequestError):
    """ignore_value / ignore_lease on a key that does not exist (or an empty RequestOp)."""


class ValueProvidedError(RequestError):
    pass


class LeaseProvidedError(RequestError):
    pass


class RequestTooLargeError(RequestError):
    pass


class InvalidSortOptionError(RequestError):
    pass


class RevisionError(KineError):
    """A revision outside what the store holds."""


class CompactedError(RevisionError):
    pass


class FutureRevisionError(RevisionError):
    pass


class LeaseError(KineError):
    pass


class LeaseNotFoundError(LeaseError):
    pass


class LeaseExistsError(LeaseError):
    pass


class LeaseTTLTooLargeError(LeaseError):
    pass


class UnavailableError(KineError):
    """Transient: the client may retry."""


class BackendUnavailableError(UnavailableError):
    """The database cannot be reached or failed; the message says why."""


class ServerStoppedError(UnavailableError):
    pass


class NoLeaderError(UnavailableError):
    """Raft mode: no leader is known, so nothing can be committed now."""


class NotLeaderError(UnavailableError):
    """Raft mode: the request must go to the leader (MoveLeader)."""


class LeaderChangedError(UnavailableError):
    """Raft mode: the leader changed while the request waited; it may or may not have applied."""


class RequestTimeoutError(UnavailableError):
    """Raft mode: not committed in time; it may or may not apply later."""


class MembershipError(KineError):
    pass


class MemberNotFoundError(MembershipError):
    pass


class MemberExistsError(MembershipError):
    pass


class PeerURLExistsError(MembershipError):
    pass


class MemberNotLearnerError(MembershipError):
    pass


class LearnerNotReadyError(MembershipError):
    pass


class BadLeaderTransfereeError(MembershipError):
    pass


class MemberBadURLsError(MembershipError):
    pass


class RevisionConflictError(KineError):
    """The log's revision moved under a writer (another process wrote). Internal only."""


class UnsupportedError(KineError):
    """A field or RPC kine-py does not implement; ``field`` names it."""

    def __init__(self, field: str) -> None:
        super().__init__(field)
        self.field = field
