"""The grpc.aio floor: etcd's KV service answered with constants, storing nothing.

``python -m kine_py.bench.null_server HOST:PORT`` serves ``Range`` (one key-value pair of
``--val-size`` bytes under the requested key, as a single-key read of the benchmark returns),
``Put``, ``DeleteRange``, ``Txn`` and ``Compact`` (a header only), and ``Maintenance.Status``
(so readiness checks pass), on kine-py's own stack — grpcio's asyncio server on the same
event loop — and does nothing else; other methods answer UNIMPLEMENTED. What a workload
measures against it is the most a Python server on grpc.aio reaches on that machine, so
``report`` runs it beside etcd and kine-py: kine-py's distance to it is kine-py's own cost,
its distance to etcd the framework's.
"""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from kine_py._pb.etcdserverpb import rpc_pb2 as pb
from kine_py.app import run_loop

_HEADER = pb.ResponseHeader(cluster_id=1, member_id=1, revision=2, raft_term=1)
Handler = Callable[[Any, Any], Awaitable[Any]]


def _constant(response: Any) -> Handler:
    async def answer(request: Any, context: Any) -> Any:
        return response

    return answer


def _range(val_size: int) -> Handler:
    value = b"v" * val_size

    async def answer(request: pb.RangeRequest, context: Any) -> pb.RangeResponse:
        resp = pb.RangeResponse(header=_HEADER, count=1)
        resp.kvs.add(key=request.key, value=value, create_revision=2, mod_revision=2, version=1)
        return resp

    return answer


def _service(name: str, methods: dict[str, tuple[Handler, Any, Any]]) -> grpc.GenericRpcHandler[Any, Any]:
    return grpc.method_handlers_generic_handler(
        f"etcdserverpb.{name}",
        {
            method: grpc.unary_unary_rpc_method_handler(
                fn, request_deserializer=req.FromString, response_serializer=resp.SerializeToString
            )
            for method, (fn, req, resp) in methods.items()
        },
    )


async def serve(address: str, val_size: int) -> None:
    kv = {
        "Range": (_range(val_size), pb.RangeRequest, pb.RangeResponse),
        "Put": (_constant(pb.PutResponse(header=_HEADER)), pb.PutRequest, pb.PutResponse),
        "DeleteRange": (
            _constant(pb.DeleteRangeResponse(header=_HEADER)),
            pb.DeleteRangeRequest,
            pb.DeleteRangeResponse,
        ),
        "Txn": (_constant(pb.TxnResponse(header=_HEADER, succeeded=True)), pb.TxnRequest, pb.TxnResponse),
        "Compact": (
            _constant(pb.CompactionResponse(header=_HEADER)),
            pb.CompactionRequest,
            pb.CompactionResponse,
        ),
    }
    status = pb.StatusResponse(header=_HEADER, version="null", leader=1)
    server = grpc.aio.server()
    server.add_generic_rpc_handlers(
        (
            _service("KV", kv),
            _service("Maintenance", {"Status": (_constant(status), pb.StatusRequest, pb.StatusResponse)}),
        )
    )
    if server.add_insecure_port(address) == 0:
        raise OSError(f"cannot listen on {address}")
    await server.start()
    await server.wait_for_termination()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("address", help="HOST:PORT to listen on")
    parser.add_argument("--val-size", type=int, default=256, help="bytes of the value Range returns")
    args = parser.parse_args()
    run_loop(serve(args.address, args.val_size))


if __name__ == "__main__":
    main()
