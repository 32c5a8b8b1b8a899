"""The ``kine-py`` command: flags (each also a KINE_* environment variable), logging, run."""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
from collections.abc import Sequence

from kine_py import __version__
from kine_py.config import DEFAULT_EMULATED_VERSION, DEFAULT_ENDPOINT, DEFAULT_LISTEN, Config

_DESCRIPTION = """\
kine-py: an etcd v3-compatible datastore (for kube-apiserver, etcdctl or any etcd
client) that keeps its data in SQL. Every flag can also be set through the
environment variable named in its help (flags win)."""


def _env(name: str, default: str) -> str:
    return os.environ.get(f"KINE_{name}", default)


def _duration(text: str) -> float:
    """Seconds from a Go-style duration: 5s, 500ms, 1m, 1m30s, or a plain number of seconds."""
    units = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
    match = re.fullmatch(r"((\d+(?:\.\d+)?)(ms|s|m|h))+", text.strip())
    if match is None:
        try:
            return float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a duration: {text!r}") from None
    return sum(float(n) * units[u] for n, u in re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", text))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kine-py", description=_DESCRIPTION)
    p.add_argument(
        "--listen-address",
        default=_env("LISTEN_ADDRESS", DEFAULT_LISTEN),
        help="where clients connect: host:port, http://host:port or unix://path "
        f"(KINE_LISTEN_ADDRESS; default {DEFAULT_LISTEN}, loopback only: there is no auth)",
    )
    p.add_argument(
        "--endpoint",
        default=_env("ENDPOINT", DEFAULT_ENDPOINT),
        help="the storage DSN: sqlite://PATH, postgres://..., mysql://..., or raft://DATA_DIR for the "
        f"built-in replicated mode (KINE_ENDPOINT; default {DEFAULT_ENDPOINT})",
    )
    p.add_argument("--name", default=_env("NAME", "default"), help="member name in MemberList (KINE_NAME)")
    p.add_argument(
        "--debug",
        action="store_true",
        default=_env("DEBUG", "") not in ("", "0", "false"),
        help="debug logging (KINE_DEBUG)",
    )
    p.add_argument(
        "--log-format",
        choices=["plain", "json"],
        default=_env("LOG_FORMAT", "plain"),
        help="log line format (KINE_LOG_FORMAT; default plain)",
    )
    p.add_argument(
        "--emulated-etcd-version",
        default=_env("EMULATED_ETCD_VERSION", DEFAULT_EMULATED_VERSION),
        help="the etcd version Maintenance.Status reports "
        f"(KINE_EMULATED_ETCD_VERSION; default {DEFAULT_EMULATED_VERSION})",
    )
    p.add_argument(
        "--max-txn-ops",
        type=int,
        default=int(_env("MAX_TXN_OPS", "128")),
        help="most operations in one txn, as etcd's flag (KINE_MAX_TXN_OPS; default 128)",
    )
    p.add_argument(
        "--max-request-bytes",
        type=int,
        default=int(_env("MAX_REQUEST_BYTES", str(1536 * 1024))),
        help="largest write request, as etcd's flag (KINE_MAX_REQUEST_BYTES; default 1572864)",
    )
    p.add_argument(
        "--watch-progress-notify-interval",
        type=_duration,
        default=_duration(_env("WATCH_PROGRESS_NOTIFY_INTERVAL", "5s")),
        help="how often watches created with progress_notify get a progress notification when "
        "idle, e.g. 5s, 500ms, 1m (KINE_WATCH_PROGRESS_NOTIFY_INTERVAL; default 5s; 0 disables)",
    )
    tls = p.add_argument_group("TLS on the etcd endpoint (kube-apiserver's --etcd-cafile/certfile/keyfile)")
    tls.add_argument(
        "--server-cert-file",
        default=_env("SERVER_CERT_FILE", ""),
        help="server certificate (KINE_SERVER_CERT_FILE)",
    )
    tls.add_argument(
        "--server-key-file", default=_env("SERVER_KEY_FILE", ""), help="server key (KINE_SERVER_KEY_FILE)"
    )
    tls.add_argument(
        "--trusted-ca-file",
        default=_env("TRUSTED_CA_FILE", ""),
        help="require client certificates signed by this CA (mTLS) (KINE_TRUSTED_CA_FILE). "
        "Changed files are picked up for new connections without a restart.",
    )
    ops = p.add_argument_group("operations")
    ops.add_argument(
        "--metrics-bind-address",
        default=_env("METRICS_BIND_ADDRESS", "127.0.0.1:8080"),
        help="host:port for HTTP /metrics, /healthz and /readyz; 0 disables "
        "(KINE_METRICS_BIND_ADDRESS; default 127.0.0.1:8080)",
    )
    ops.add_argument(
        "--slow-sql-threshold",
        type=_duration,
        default=_duration(_env("SLOW_SQL_THRESHOLD", "1s")),
        help="log SQL statements slower than this, with their name (KINE_SLOW_SQL_THRESHOLD; default 1s)",
    )
    db = p.add_argument_group("database backends (postgres://, mysql://)")
    db.add_argument(
        "--ca-file",
        default=_env("CA_FILE", ""),
        help="CA to verify the database's TLS certificate (KINE_CA_FILE)",
    )
    db.add_argument(
        "--cert-file",
        default=_env("CERT_FILE", ""),
        help="client certificate for the database (KINE_CERT_FILE)",
    )
    db.add_argument(
        "--key-file", default=_env("KEY_FILE", ""), help="client key for the database (KINE_KEY_FILE)"
    )
    db.add_argument(
        "--datastore-max-open-connections",
        type=int,
        default=int(_env("DATASTORE_MAX_OPEN_CONNECTIONS", "4")),
        help="database connections per process: one writes, the rest read "
        "(KINE_DATASTORE_MAX_OPEN_CONNECTIONS; default 4, at least 2)",
    )
    db.add_argument(
        "--poll-interval",
        type=_duration,
        default=_duration(_env("POLL_INTERVAL", "100ms")),
        help="how often to check the database for other processes' writes (KINE_POLL_INTERVAL; "
        "default 100ms; PostgreSQL is also notified at once by LISTEN/NOTIFY)",
    )
    _raft_flags(p)
    p.add_argument("--version", action="version", version=f"kine-py {__version__}")
    return p


def _raft_flags(p: argparse.ArgumentParser) -> None:
    raft = p.add_argument_group("Raft mode (--endpoint raft://DATA_DIR; etcd's flag names)")
    raft.add_argument(
        "--initial-cluster",
        default=_env("INITIAL_CLUSTER", ""),
        help="NAME=PEER_URL,... of the first members (KINE_INITIAL_CLUSTER; default: just this one)",
    )
    raft.add_argument(
        "--initial-cluster-state",
        choices=["new", "existing"],
        default=_env("INITIAL_CLUSTER_STATE", "new"),
        help="new: bootstrap with --initial-cluster; existing: join after `member add` "
        "(KINE_INITIAL_CLUSTER_STATE; default new)",
    )
    raft.add_argument(
        "--initial-cluster-token",
        default=_env("INITIAL_CLUSTER_TOKEN", "kine-py-cluster"),
        help="makes member and cluster ids unique per cluster (KINE_INITIAL_CLUSTER_TOKEN)",
    )
    raft.add_argument(
        "--listen-peer-urls",
        default=_env("LISTEN_PEER_URLS", "http://127.0.0.1:2380"),
        help="where other members connect (KINE_LISTEN_PEER_URLS; default http://127.0.0.1:2380)",
    )
    raft.add_argument(
        "--initial-advertise-peer-urls",
        default=_env("INITIAL_ADVERTISE_PEER_URLS", ""),
        help="this member's peer URLs as others reach them (KINE_INITIAL_ADVERTISE_PEER_URLS; "
        "default --listen-peer-urls)",
    )
    raft.add_argument(
        "--advertise-client-urls",
        default=_env("ADVERTISE_CLIENT_URLS", ""),
        help="client URLs shown in MemberList (KINE_ADVERTISE_CLIENT_URLS; default --listen-address)",
    )
    for flag, what in (("cert", "certificate"), ("key", "key"), ("trusted-ca", "CA for mutual TLS")):
        env = f"PEER_{flag.upper().replace('-', '_')}_FILE"
        raft.add_argument(f"--peer-{flag}-file", default=_env(env, ""), help=f"peer TLS {what} (KINE_{env})")
    raft.add_argument(
        "--heartbeat-interval",
        type=int,
        default=int(_env("HEARTBEAT_INTERVAL", "100")),
        help="milliseconds between leader heartbeats (KINE_HEARTBEAT_INTERVAL; default 100)",
    )
    raft.add_argument(
        "--election-timeout",
        type=int,
        default=int(_env("ELECTION_TIMEOUT", "1000")),
        help="milliseconds without a leader before an election (KINE_ELECTION_TIMEOUT; default 1000)",
    )
    raft.add_argument(
        "--snapshot-count",
        type=int,
        default=int(_env("SNAPSHOT_COUNT", "10000")),
        help="applied entries between Raft log compactions (KINE_SNAPSHOT_COUNT; default 10000)",
    )
    raft.add_argument(
        "--snapshot-catchup-entries",
        type=int,
        default=int(_env("SNAPSHOT_CATCHUP_ENTRIES", "5000")),
        help="entries kept after a compaction for slow followers; one further behind gets a "
        "snapshot (KINE_SNAPSHOT_CATCHUP_ENTRIES; default 5000)",
    )


def parse_config(argv: Sequence[str] | None = None) -> Config:
    args = build_parser().parse_args(argv)
    return Config(
        listen_address=args.listen_address,
        endpoint=args.endpoint,
        name=args.name,
        debug=args.debug,
        log_format=args.log_format,
        emulated_etcd_version=args.emulated_etcd_version,
        max_txn_ops=args.max_txn_ops,
        max_request_bytes=args.max_request_bytes,
        watch_progress_notify_interval=args.watch_progress_notify_interval,
        ca_file=args.ca_file,
        cert_file=args.cert_file,
        key_file=args.key_file,
        max_open_connections=max(2, args.datastore_max_open_connections),
        poll_interval=args.poll_interval,
        server_cert_file=args.server_cert_file,
        server_key_file=args.server_key_file,
        trusted_ca_file=args.trusted_ca_file,
        metrics_bind_address=args.metrics_bind_address,
        slow_sql_threshold=args.slow_sql_threshold,
        initial_cluster=args.initial_cluster,
        initial_cluster_state=args.initial_cluster_state,
        initial_cluster_token=args.initial_cluster_token,
        listen_peer_urls=args.listen_peer_urls,
        initial_advertise_peer_urls=args.initial_advertise_peer_urls,
        advertise_client_urls=args.advertise_client_urls,
        peer_cert_file=args.peer_cert_file,
        peer_key_file=args.peer_key_file,
        peer_trusted_ca_file=args.peer_trusted_ca_file,
        heartbeat_interval=args.heartbeat_interval / 1000,
        election_timeout=args.election_timeout / 1000,
        snapshot_count=args.snapshot_count,
        snapshot_catchup_entries=args.snapshot_catchup_entries,
    )


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def setup_logging(config: Config) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if config.log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.DEBUG if config.debug else logging.INFO, handlers=[handler], force=True)


def main(argv: Sequence[str] | None = None) -> None:
    config = parse_config(argv)
    setup_logging(config)
    from kine_py.app import run

    sys.exit(run(config))
