"""Wiring: config -> log backend -> store -> gRPC server and HTTP endpoints, and the
signal-driven lifetime."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Coroutine

import grpc
from prometheus_client import CollectorRegistry

from kine_py import backends
from kine_py.cluster import ClusterControl
from kine_py.config import Config, grpc_address, is_loopback, split_host_port
from kine_py.metrics import Gauges, Metrics
from kine_py.mvcc.log import Log
from kine_py.mvcc.store import Store, StoreConfig
from kine_py.server.grpc_server import build_server
from kine_py.server.http import HttpEndpoints
from kine_py.server.identity import Identity
from kine_py.server.tls import server_credentials

log = logging.getLogger("kine_py")
# How long in-flight calls get on shutdown before they are cancelled.
SHUTDOWN_GRACE = 5.0


def _log(config: Config, endpoint: backends.Endpoint, metrics: Metrics) -> Log:
    if endpoint.scheme == "raft":
        from kine_py.replication.setup import open_raft_log

        return open_raft_log(config, endpoint.rest, metrics)
    options = backends.BackendOptions(
        ca_file=config.ca_file,
        cert_file=config.cert_file,
        key_file=config.key_file,
        max_open_connections=config.max_open_connections,
        poll_interval=config.poll_interval,
        observer=metrics,
    )
    return backends.open_log(endpoint, options)


def _store(config: Config, metrics: Metrics) -> tuple[Store, backends.Endpoint, Log]:
    endpoint = backends.Endpoint.parse(config.endpoint)
    store_config = StoreConfig(
        max_txn_ops=config.max_txn_ops,
        max_request_bytes=config.max_request_bytes,
        poll_interval=config.poll_interval,
    )
    log_backend = _log(config, endpoint, metrics)
    return Store(log_backend, store_config, observer=metrics), endpoint, log_backend


def _gauges(store: Store, db_size: list[int]) -> Gauges:
    def stat(name: str) -> float:
        return float(store.stats()[name])

    return Gauges(
        (
            ("kine_revision", "Current (committed) revision", lambda: stat("revision")),
            ("kine_compact_revision", "Compact revision", lambda: stat("compact_revision")),
            ("kine_keys", "Keys in the index (live or with retained history)", lambda: stat("keys")),
            ("kine_leases", "Leases", lambda: stat("leases")),
            ("kine_watch_streams", "Open watch streams", lambda: stat("watch_streams")),
            ("kine_watchers", "Watches", lambda: stat("watchers")),
            (
                "kine_watch_pending_revisions",
                "Revisions committed but not yet sent, summed over watches",
                lambda: stat("watch_pending_revisions"),
            ),
            ("kine_db_size_bytes", "Database size on disk", lambda: float(db_size[0])),
        )
    )


def _listen(server: grpc.aio.Server, config: Config) -> tuple[str, str]:
    address, client_url = grpc_address(config.listen_address)
    if config.server_cert_file:
        creds = server_credentials(config.server_cert_file, config.server_key_file, config.trusted_ca_file)
        bound = server.add_secure_port(address, creds)
        client_url = client_url.replace("http://", "https://", 1)
    else:
        bound = server.add_insecure_port(address)
        if not is_loopback(address):
            log.warning("serving plaintext without client authentication on %s", address)
    if bound == 0:
        raise OSError(f"cannot listen on {address}")
    return address, client_url


async def _metrics_port(config: Config, store: Store, registry: CollectorRegistry) -> HttpEndpoints | None:
    if config.metrics_bind_address in ("", "0"):
        return None
    db_size = [0]

    async def refresh() -> None:
        db_size[0] = (await store.status()).db_size

    Metrics.add_gauges_to(registry, _gauges(store, db_size))
    http = HttpEndpoints(registry, store.ready, refresh)
    host, port = split_host_port(config.metrics_bind_address)
    await http.start(host, port)
    log.info("metrics and health on http://%s:%d", host, port)
    return http


def _cluster_control(log_backend: Log) -> ClusterControl | None:
    return log_backend if isinstance(log_backend, ClusterControl) else None


async def serve(config: Config, stop: asyncio.Event) -> None:
    """Serve until ``stop`` is set, then shut down: stop accepting, end watches, give
    in-flight calls ``SHUTDOWN_GRACE`` seconds, close the database."""
    registry = CollectorRegistry()
    metrics = Metrics(registry, slow_sql_threshold=config.slow_sql_threshold)
    store, endpoint, log_backend = _store(config, metrics)
    await store.start()
    status = await store.status()
    cluster = _cluster_control(log_backend)
    if cluster is not None:
        cluster.on_removed(stop.set)  # as etcd: a removed member stops (exit code 0)
    server, health, http = None, None, None
    try:
        http = await _metrics_port(config, store, registry)
        _, client_url = grpc_address(config.listen_address)
        identity = Identity(
            status.cluster_id,
            status.member_id,
            config.name,
            (client_url,),
            config.emulated_etcd_version,
            cluster=cluster,
        )
        server, health = build_server(
            store,
            identity,
            max_request_bytes=config.max_request_bytes,
            progress_interval=config.watch_progress_notify_interval,
            observer=metrics,
        )
        address, client_url = _listen(server, config)
        await server.start()
        if address.startswith("unix:"):
            os.chmod(address[len("unix:") :], 0o600)
        log.info("serving etcd v3 API on %s, storage %s", client_url, endpoint.redacted())
        await stop.wait()
        log.info("shutting down")
    finally:
        if health is not None:
            health.serving = False
        store.hub.close_all()
        if server is not None:
            await server.stop(grace=SHUTDOWN_GRACE)
        if http is not None:
            await http.stop()
        await store.close()


def run_loop(main: Coroutine[None, None, None]) -> None:
    """uvloop when it is installed (a dependency on Linux and macOS): about a tenth less CPU per
    request than asyncio's own loop, measured with the put benchmark; asyncio's loop otherwise."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
        return
    uvloop.run(main)


def run(config: Config) -> int:
    """Run until SIGTERM or SIGINT; the process exit code."""

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await serve(config, stop)

    try:
        run_loop(main())
    except (OSError, ValueError, RuntimeError, ImportError) as exc:
        log.error("kine-py failed: %s", exc)
        return 1
    return 0
