"""protobuf <-> model, in both directions. Nothing else."""

from __future__ import annotations

from kine_py._pb.etcdserverpb import rpc_pb2 as pb
from kine_py._pb.mvccpb import kv_pb2
from kine_py.model import (
    Compare,
    CompareTarget,
    DeleteOp,
    DeleteResult,
    Event,
    KeyValue,
    Op,
    OpResult,
    PutOp,
    PutResult,
    RangeOp,
    RangeResult,
    TxnOp,
    TxnResult,
    WatchCreate,
    WatchReply,
)

_OPERAND_TARGET = {
    "version": CompareTarget.VERSION,
    "create_revision": CompareTarget.CREATE,
    "mod_revision": CompareTarget.MOD,
    "value": CompareTarget.VALUE,
    "lease": CompareTarget.LEASE,
}


def range_op(r: pb.RangeRequest) -> RangeOp:
    return RangeOp(
        key=r.key,
        range_end=r.range_end,
        limit=r.limit,
        revision=r.revision,
        sort_order=r.sort_order,
        sort_target=r.sort_target,
        serializable=r.serializable,
        keys_only=r.keys_only,
        count_only=r.count_only,
        min_mod_revision=r.min_mod_revision,
        max_mod_revision=r.max_mod_revision,
        min_create_revision=r.min_create_revision,
        max_create_revision=r.max_create_revision,
    )


def put_op(r: pb.PutRequest) -> PutOp:
    return PutOp(r.key, r.value, r.lease, r.prev_kv, r.ignore_value, r.ignore_lease)


def delete_op(r: pb.DeleteRangeRequest) -> DeleteOp:
    return DeleteOp(r.key, r.range_end, r.prev_kv)


def compare(c: pb.Compare) -> Compare:
    which = c.WhichOneof("target_union")
    operand = getattr(c, which) if which else None
    target = _OPERAND_TARGET[which] if which else None
    return Compare(c.key, c.target, c.result, operand, target, c.range_end)


def txn_op(r: pb.TxnRequest) -> TxnOp:
    return TxnOp(
        tuple(compare(c) for c in r.compare),
        tuple(request_op(o) for o in r.success),
        tuple(request_op(o) for o in r.failure),
    )


def request_op(o: pb.RequestOp) -> Op:
    which = o.WhichOneof("request")
    if which == "request_range":
        return range_op(o.request_range)
    if which == "request_put":
        return put_op(o.request_put)
    if which == "request_delete_range":
        return delete_op(o.request_delete_range)
    if which == "request_txn":
        return txn_op(o.request_txn)
    return None


def key_value(kv: KeyValue) -> kv_pb2.KeyValue:
    return kv_pb2.KeyValue(
        key=kv.key,
        create_revision=kv.create_revision,
        mod_revision=kv.mod_revision,
        version=kv.version,
        value=kv.value,
        lease=kv.lease,
    )


def range_response(r: RangeResult) -> pb.RangeResponse:
    return pb.RangeResponse(
        header=pb.ResponseHeader(revision=r.revision),
        kvs=[key_value(kv) for kv in r.kvs],
        more=r.more,
        count=r.count,
    )


def put_response(r: PutResult) -> pb.PutResponse:
    resp = pb.PutResponse(header=pb.ResponseHeader(revision=r.revision))
    if r.prev_kv is not None:
        resp.prev_kv.CopyFrom(key_value(r.prev_kv))
    return resp


def delete_response(r: DeleteResult) -> pb.DeleteRangeResponse:
    return pb.DeleteRangeResponse(
        header=pb.ResponseHeader(revision=r.revision),
        deleted=r.deleted,
        prev_kvs=[key_value(kv) for kv in r.prev_kvs],
    )


def txn_response(r: TxnResult) -> pb.TxnResponse:
    return pb.TxnResponse(
        header=pb.ResponseHeader(revision=r.revision),
        succeeded=r.succeeded,
        responses=[response_op(x) for x in r.responses],
    )


def response_op(r: OpResult) -> pb.ResponseOp:
    if isinstance(r, RangeResult):
        return pb.ResponseOp(response_range=range_response(r))
    if isinstance(r, PutResult):
        return pb.ResponseOp(response_put=put_response(r))
    if isinstance(r, DeleteResult):
        return pb.ResponseOp(response_delete_range=delete_response(r))
    return pb.ResponseOp(response_txn=txn_response(r))


def watch_create(r: pb.WatchCreateRequest) -> WatchCreate:
    return WatchCreate(
        key=r.key,
        range_end=r.range_end,
        start_revision=r.start_revision,
        progress_notify=r.progress_notify,
        filters=tuple(r.filters),
        prev_kv=r.prev_kv,
        watch_id=r.watch_id,
        fragment=r.fragment,
    )


def event(e: Event) -> kv_pb2.Event:
    out = kv_pb2.Event(type=int(e.type), kv=key_value(e.kv))  # type: ignore[arg-type]
    if e.prev_kv is not None:
        out.prev_kv.CopyFrom(key_value(e.prev_kv))
    return out


def watch_response(r: WatchReply) -> pb.WatchResponse:
    return pb.WatchResponse(
        header=pb.ResponseHeader(revision=r.revision),
        watch_id=r.watch_id,
        created=r.created,
        canceled=r.canceled,
        compact_revision=r.compact_revision,
        cancel_reason=r.cancel_reason,
        events=[event(e) for e in r.events],
    )
