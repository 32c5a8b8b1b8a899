"""Build a ``RaftLog`` from the server's configuration (``--endpoint raft://DATA_DIR``)."""

from __future__ import annotations

from pathlib import Path

from kine_py.config import Config, grpc_address
from kine_py.replication.log import RaftLog
from kine_py.replication.members import check_url, parse_initial_cluster
from kine_py.replication.node import NodeConfig
from kine_py.replication.transport import PeerTLS
from kine_py.sqllog.log import QueryObserver


def _urls(text: str) -> tuple[str, ...]:
    return tuple(check_url(u.strip()) for u in text.split(",") if u.strip())


def node_config(config: Config, data_dir: str) -> NodeConfig:
    """ValueError for inconsistent flags (a name missing from --initial-cluster, bad URLs)."""
    listen = _urls(config.listen_peer_urls)
    advertise = _urls(config.initial_advertise_peer_urls) or listen
    initial_text = config.initial_cluster or f"{config.name}={','.join(advertise)}"
    initial = parse_initial_cluster(initial_text, config.initial_cluster_token)
    client_urls = tuple(u for u in config.advertise_client_urls.split(",") if u) or (
        grpc_address(config.listen_address)[1],
    )
    if config.heartbeat_interval <= 0 or config.election_timeout < 5 * config.heartbeat_interval:
        raise ValueError("--election-timeout must be at least 5 times --heartbeat-interval")
    tls = None
    if config.peer_cert_file or config.peer_key_file:
        tls = PeerTLS(config.peer_cert_file, config.peer_key_file, config.peer_trusted_ca_file)
    return NodeConfig(
        data_dir=Path(data_dir or "./db/raft"),
        name=config.name,
        initial_cluster=tuple(initial),
        cluster_state=config.initial_cluster_state,
        token=config.initial_cluster_token,
        listen_peer_urls=listen,
        advertise_peer_urls=advertise,
        client_urls=client_urls,
        tick_seconds=config.heartbeat_interval,
        election_ticks=round(config.election_timeout / config.heartbeat_interval),
        heartbeat_ticks=1,
        snapshot_count=config.snapshot_count,
        catch_up_entries=config.snapshot_catchup_entries,
        tls=tls,
    )


def open_raft_log(config: Config, data_dir: str, observer: QueryObserver | None = None) -> RaftLog:
    return RaftLog(node_config(config, data_dir), observer)
