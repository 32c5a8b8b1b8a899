"""Wiring: config -> log backend -> store -> gRPC server, and the signal-driven lifetime."""

from __future__ import annotations

import asyncio
import logging
import signal

from kine_py import backends
from kine_py.config import Config, grpc_address
from kine_py.mvcc.store import Store, StoreConfig
from kine_py.server.grpc_server import build_server
from kine_py.server.identity import Identity

log = logging.getLogger("kine_py")


async def serve(config: Config, stop: asyncio.Event) -> None:
    """Serve until ``stop`` is set, then shut down cleanly (in-flight calls get 5 s)."""
    endpoint = backends.Endpoint.parse(config.endpoint)
    options = backends.BackendOptions(
        ca_file=config.ca_file,
        cert_file=config.cert_file,
        key_file=config.key_file,
        max_open_connections=config.max_open_connections,
        poll_interval=config.poll_interval,
    )
    store = Store(
        backends.open_log(endpoint, options),
        StoreConfig(
            max_txn_ops=config.max_txn_ops,
            max_request_bytes=config.max_request_bytes,
            poll_interval=config.poll_interval,
        ),
    )
    await store.start()
    address, client_url = grpc_address(config.listen_address)
    status = await store.status()
    identity = Identity(
        status.cluster_id, status.member_id, config.name, (client_url,), config.emulated_etcd_version
    )
    server, health = build_server(
        store,
        identity,
        max_request_bytes=config.max_request_bytes,
        progress_interval=config.watch_progress_notify_interval,
    )
    try:
        if server.add_insecure_port(address) == 0:
            raise OSError(f"cannot listen on {address}")
        await server.start()
        log.info("serving etcd v3 API on %s, storage %s", client_url, endpoint.redacted())
        await stop.wait()
        log.info("shutting down")
        health.serving = False
        await server.stop(grace=5)
    finally:
        await store.close()


def run(config: Config) -> int:
    """Run until SIGTERM or SIGINT; the process exit code."""

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await serve(config, stop)

    try:
        asyncio.run(main())
    except (OSError, ValueError, RuntimeError, ImportError) as exc:
        log.error("kine-py failed: %s", exc)
        return 1
    return 0
