"""Build the grpc.aio server with etcd's settings and every service registered."""

from __future__ import annotations

from typing import Any

import grpc

from kine_py._pb.etcdserverpb import rpc_pb2_grpc
from kine_py._pb.grpc.health.v1 import health_pb2_grpc
from kine_py.mvcc.store import Store
from kine_py.server import convert
from kine_py.server.gate import LeaderGate
from kine_py.server.health import HealthService
from kine_py.server.identity import Identity
from kine_py.server.interceptors import CallObserver, MethodTable
from kine_py.server.kv import KVService
from kine_py.server.lease import LeaseService
from kine_py.server.maintenance import ClusterService, MaintenanceService
from kine_py.server.unimplemented import AuthService, concrete
from kine_py.server.watch import WatchService

# etcd's server settings (server/embed/config.go, etcdserver/api/v3rpc/grpc.go).
MAX_REQUEST_BYTES = 1536 * 1024
GRPC_OVERHEAD_BYTES = 512 * 1024


def grpc_options(max_request_bytes: int = MAX_REQUEST_BYTES) -> list[tuple[str, int]]:
    return [
        ("grpc.max_receive_message_length", max_request_bytes + GRPC_OVERHEAD_BYTES),
        ("grpc.max_send_message_length", -1),
        # Accept client pings every 5 s (etcd's keepalive enforcement MinTime), so
        # kube-apiserver's 30 s keepalive is never answered with GOAWAY.
        ("grpc.http2.min_recv_ping_interval_without_data_ms", 5000),
        ("grpc.http2.min_ping_interval_without_data_ms", 5000),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.keepalive_time_ms", 2 * 3600 * 1000),
        ("grpc.keepalive_timeout_ms", 20_000),
        # Never share the port with another process.
        ("grpc.so_reuseport", 0),
    ]


def build_server(
    store: Store,
    identity: Identity,
    *,
    max_request_bytes: int = MAX_REQUEST_BYTES,
    progress_interval: float = 5.0,
    observer: CallObserver | None = None,
) -> tuple[grpc.aio.Server, HealthService]:
    """A server with KV, Maintenance, Cluster, Health and the UNIMPLEMENTED ones; no port yet.
    In Raft mode (``identity.cluster``) every call passes etcd's learner and require-leader
    checks (``gate.LeaderGate``).

    Every method is served from one ``MethodTable`` (instrumented once, here), not
    through an interceptor and not as grpc's registered methods: both cost Python
    work on every call.
    """
    server = grpc.aio.server(options=grpc_options(max_request_bytes))
    table = MethodTable(observer, LeaderGate(identity.cluster) if identity.cluster is not None else None)
    registry: Any = table  # takes the generated add_*Servicer_to_server calls
    health = HealthService(store.ready)
    encoder = convert.Encoder(identity.fill)  # serialized KeyValues and Events, shared
    rpc_pb2_grpc.add_KVServicer_to_server(KVService(store, identity, encoder), registry)
    rpc_pb2_grpc.add_MaintenanceServicer_to_server(
        concrete(MaintenanceService)(store, identity),
        registry,
    )
    rpc_pb2_grpc.add_ClusterServicer_to_server(concrete(ClusterService)(identity), registry)
    watch = WatchService(
        store,
        identity,
        progress_interval=progress_interval,
        # etcd splits fragmented watch responses at its gRPC receive limit (request + overhead).
        fragment_bytes=max_request_bytes + GRPC_OVERHEAD_BYTES,
        encoder=encoder,
    )
    rpc_pb2_grpc.add_WatchServicer_to_server(watch, registry)
    rpc_pb2_grpc.add_LeaseServicer_to_server(LeaseService(store, identity), registry)
    rpc_pb2_grpc.add_AuthServicer_to_server(concrete(AuthService)(), registry)
    health_pb2_grpc.add_HealthServicer_to_server(health, registry)
    server.add_generic_rpc_handlers((table,))
    return server, health
