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
        help=f"the storage DSN; sqlite://PATH (KINE_ENDPOINT; default {DEFAULT_ENDPOINT})",
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
    p.add_argument("--version", action="version", version=f"kine-py {__version__}")
    return p


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
