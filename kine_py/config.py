"""The server's configuration, as parsed from flags and KINE_* environment variables."""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_LISTEN = "127.0.0.1:2379"
DEFAULT_ENDPOINT = "sqlite://./db/state.db"
# kube-apiserver turns on consistent reads from its watch cache for >= 3.5.13.
DEFAULT_EMULATED_VERSION = "3.5.13"


@dataclass(frozen=True, slots=True)
class Config:
    listen_address: str = DEFAULT_LISTEN
    endpoint: str = DEFAULT_ENDPOINT
    name: str = "default"
    debug: bool = False
    log_format: str = "plain"
    emulated_etcd_version: str = DEFAULT_EMULATED_VERSION
    max_txn_ops: int = 128
    max_request_bytes: int = 1536 * 1024
    watch_progress_notify_interval: float = 5.0
    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""
    max_open_connections: int = 4
    poll_interval: float = 0.1
    server_cert_file: str = ""
    server_key_file: str = ""
    trusted_ca_file: str = ""
    metrics_bind_address: str = "127.0.0.1:8080"
    slow_sql_threshold: float = 1.0
    # Raft mode (--endpoint raft://DATA_DIR); etcd's flag names.
    initial_cluster: str = ""
    initial_cluster_state: str = "new"
    initial_cluster_token: str = "kine-py-cluster"
    listen_peer_urls: str = "http://127.0.0.1:2380"
    initial_advertise_peer_urls: str = ""
    advertise_client_urls: str = ""
    peer_cert_file: str = ""
    peer_key_file: str = ""
    peer_trusted_ca_file: str = ""
    heartbeat_interval: float = 0.1
    election_timeout: float = 1.0
    snapshot_count: int = 10_000
    snapshot_catchup_entries: int = 5_000


def is_loopback(address: str) -> bool:
    """Whether a grpc address (``host:port`` or ``unix:path``) is reachable only from this host."""
    if address.startswith("unix:"):
        return True
    host = address.rpartition(":")[0].strip("[]")
    return host in ("localhost", "::1") or host.startswith("127.")


def split_host_port(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    if not port.isdigit():
        raise ValueError(f"{address!r} is not host:port")
    return host.strip("[]") or "127.0.0.1", int(port)


def grpc_address(listen: str) -> tuple[str, str]:
    """(address for grpc's add_insecure_port, client URL) for a --listen-address.

    Accepts ``host:port``, ``http://host:port``, ``:port`` (loopback) and ``unix://path``.
    """
    if listen.startswith("unix://"):
        path = listen[len("unix://") :]
        return f"unix:{path}", f"unix://{path}"
    if listen.startswith("https://"):
        raise ValueError("https:// listen addresses need TLS, which kine-py does not support yet")
    address = listen.removeprefix("http://")
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"listen address {listen!r} is not host:port")
    host = host or "127.0.0.1"
    return f"{host}:{port}", f"http://{host}:{port}"
