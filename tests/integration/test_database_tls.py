"""TLS to the database (--ca-file/--cert-file/--key-file): a throwaway PostgreSQL cluster
that only accepts TLS connections with a client certificate, started for this test."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from kine_py._pb.etcdserverpb import rpc_pb2 as pb
from kine_py._pb.etcdserverpb import rpc_pb2_grpc as rpc
from kine_py.testing.certs import make_ca, make_cert
from kine_py.testing.processes import free_port, kine_process

PG_BIN = Path("/usr/lib/postgresql/15/bin")
pytestmark = pytest.mark.timeout(120)


def as_postgres(*cmd: str) -> None:
    subprocess.run(["runuser", "-u", "postgres", "--", *cmd], check=True, capture_output=True)


@pytest.fixture
def tls_postgres(tmp_path: Path) -> Iterator[tuple[int, Path, tuple[Path, Path]]]:
    """(port, CA certificate, client certificate and key) of a TLS-only PostgreSQL."""
    from tests.conftest import require

    if not (PG_BIN / "initdb").exists() or shutil.which("runuser") is None:
        require("PostgreSQL 15 binaries (initdb, pg_ctl) are needed to start a TLS cluster")
    base = Path(f"/tmp/kine-pgtls-{os.getpid()}-{free_port()}")
    certs = base / "certs"
    ca = make_ca(certs, "ca")
    server = make_cert(certs, "server", ca, server=True)
    client = make_cert(certs, "postgres", ca, server=False)  # CN = the database user
    data, port = base / "data", free_port()
    base.chmod(0o755)
    shutil.chown(base, "postgres")
    for path in certs.iterdir():
        shutil.chown(path, "postgres")
        path.chmod(0o600)
    certs.chmod(0o755)
    as_postgres(str(PG_BIN / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres")
    (data / "pg_hba.conf").write_text("hostssl all all 127.0.0.1/32 cert\nlocal all all trust\n")
    options = (
        f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c ssl=on -c ssl_cert_file={server[0]}"
        f" -c ssl_key_file={server[1]} -c ssl_ca_file={ca[0]}"
    )
    as_postgres(
        str(PG_BIN / "pg_ctl"), "-D", str(data), "-o", options, "-w", "-l", str(base / "pg.log"), "start"
    )
    client_copy = (tmp_path / "client.crt", tmp_path / "client.key")
    for src, dst in zip(client, client_copy, strict=True):
        shutil.copy(src, dst)
        dst.chmod(0o600)
    try:
        yield port, ca[0], client_copy
    finally:
        stop = [str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]
        subprocess.run(["runuser", "-u", "postgres", "--", *stop], check=False, capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


def test_kine_reaches_postgres_over_mtls(
    tmp_path: Path, tls_postgres: tuple[int, Path, tuple[Path, Path]]
) -> None:
    port, ca, (cert, key) = tls_postgres
    endpoint = f"postgres://postgres@127.0.0.1:{port}/kine?sslmode=verify-full"
    tls = ["--ca-file", str(ca), "--cert-file", str(cert), "--key-file", str(key)]
    server = kine_process(tmp_path / "kine", *tls, endpoint=endpoint).start()
    try:
        kv = rpc.KVStub(grpc.insecure_channel(server.endpoint))
        kv.Put(pb.PutRequest(key=b"tls", value=b"yes"))
        assert kv.Range(pb.RangeRequest(key=b"tls")).kvs[0].value == b"yes"
    finally:
        server.stop()
    # Without the client certificate the database refuses, and kine-py says so at start.
    refused = kine_process(tmp_path / "refused", "--ca-file", str(ca), endpoint=endpoint)
    with pytest.raises(RuntimeError, match="cannot reach PostgreSQL"):
        refused.start(timeout=20)


@pytest.fixture
def tls_mariadb(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """(port, CA certificate) of a throwaway MariaDB serving TLS with a certificate from that CA."""
    from tests.conftest import require

    if not Path("/usr/sbin/mariadbd").exists() or shutil.which("mariadb-install-db") is None:
        require("MariaDB binaries (mariadbd, mariadb-install-db) are needed to start a TLS server")
    base = Path(f"/tmp/kine-mytls-{os.getpid()}-{free_port()}")
    certs = base / "certs"
    ca = make_ca(certs, "ca")
    server = make_cert(certs, "server", ca, server=True)
    data, port = base / "data", free_port()
    subprocess.run(
        [
            "mariadb-install-db",
            "--user=mysql",
            f"--datadir={data}",
            "--auth-root-authentication-method=normal",
        ],
        check=True,
        capture_output=True,
    )
    for path in [base, certs, *certs.iterdir()]:
        shutil.chown(path, "mysql")
    flags = [
        "--user=mysql",
        f"--datadir={data}",
        f"--port={port}",
        "--bind-address=127.0.0.1",
        f"--socket={base / 'mysqld.sock'}",
        f"--pid-file={base / 'mysqld.pid'}",
        "--skip-grant-tables",
        "--require-secure-transport=ON",
        f"--ssl-ca={ca[0]}",
        f"--ssl-cert={server[0]}",
        f"--ssl-key={server[1]}",
    ]
    proc = subprocess.Popen(
        ["/usr/sbin/mariadbd", *flags], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 30
        while (base / "mysqld.pid").exists() is False and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(0.5)
        yield port, ca[0]
    finally:
        proc.kill()
        proc.wait()
        shutil.rmtree(base, ignore_errors=True)


def test_kine_reaches_mariadb_over_tls(tmp_path: Path, tls_mariadb: tuple[int, Path]) -> None:
    port, ca = tls_mariadb
    endpoint = f"mysql://root@tcp(127.0.0.1:{port})/kine"
    server = kine_process(tmp_path / "kine", "--ca-file", str(ca), endpoint=endpoint).start()
    try:
        kv = rpc.KVStub(grpc.insecure_channel(server.endpoint))
        kv.Put(pb.PutRequest(key=b"tls", value=b"yes"))
        assert kv.Range(pb.RangeRequest(key=b"tls")).kvs[0].value == b"yes"
    finally:
        server.stop()
    # The server's certificate is checked: trusting another CA, kine-py refuses to connect.
    other_ca = make_ca(tmp_path / "other", "other-ca")[0]
    refused = kine_process(tmp_path / "refused", "--ca-file", str(other_ca), endpoint=endpoint)
    with pytest.raises(RuntimeError, match="cannot reach MySQL"):
        refused.start(timeout=20)
