"""Running it in production: mTLS (with rotation), metrics, health endpoints, graceful stop."""

from __future__ import annotations

import os
import shutil
import time
import urllib.error
import urllib.request
from pathlib import Path

import grpc
import pytest

from kine_py._pb.etcdserverpb import rpc_pb2 as pb
from kine_py._pb.etcdserverpb import rpc_pb2_grpc as rpc
from kine_py._pb.grpc.health.v1 import health_pb2, health_pb2_grpc
from kine_py.testing.certs import make_ca, make_cert
from kine_py.testing.processes import etcdctl, free_port, kine_process

pytestmark = pytest.mark.kine


def tls_channel(endpoint: str, ca: Path, client: tuple[Path, Path] | None) -> grpc.Channel:
    creds = grpc.ssl_channel_credentials(
        root_certificates=ca.read_bytes(),
        private_key=client[1].read_bytes() if client else None,
        certificate_chain=client[0].read_bytes() if client else None,
    )
    return grpc.secure_channel(endpoint, creds)


def test_mtls_refuses_strangers_and_picks_up_rotated_certificates(tmp_path: Path) -> None:
    certs = tmp_path / "certs"
    ca = make_ca(certs, "ca")
    other_ca = make_ca(certs, "other-ca")
    server_cert = make_cert(certs, "server", ca, server=True)
    client = make_cert(certs, "client", ca, server=False)
    stranger = make_cert(certs, "stranger", other_ca, server=False)
    live_cert, live_key = certs / "live.crt", certs / "live.key"
    shutil.copy(server_cert[0], live_cert)
    shutil.copy(server_cert[1], live_key)
    tls = ["--server-cert-file", str(live_cert), "--server-key-file", str(live_key)]
    server = kine_process(tmp_path / "kine", *tls, "--trusted-ca-file", str(ca[0])).start(wait=False)
    try:
        ok = rpc.KVStub(tls_channel(server.endpoint, ca[0], client))
        deadline = time.monotonic() + 20
        while True:
            try:
                ok.Put(pb.PutRequest(key=b"k", value=b"v"), timeout=2)
                break
            except grpc.RpcError:
                assert time.monotonic() < deadline, server.log_text()
                time.sleep(0.2)
        for bad in (None, stranger):
            with pytest.raises(grpc.RpcError):
                rpc.KVStub(tls_channel(server.endpoint, ca[0], bad)).Range(
                    pb.RangeRequest(key=b"k"), timeout=3
                )
        with pytest.raises(grpc.RpcError):
            rpc.KVStub(grpc.insecure_channel(server.endpoint)).Range(pb.RangeRequest(key=b"k"), timeout=3)
        args = [f"--cacert={ca[0]}", f"--cert={client[0]}", f"--key={client[1]}"]
        got = etcdctl(f"https://{server.endpoint}", *args, "get", "k", "--print-value-only")
        assert got.returncode == 0 and got.stdout.strip() == "v", got.stderr

        # Rotate: a new CA and server certificate on disk; new connections must use them.
        new_ca = make_ca(certs, "new-ca")
        new_server = make_cert(certs, "new-server", new_ca, server=True)
        shutil.copy(new_server[1], live_key)
        shutil.copy(new_server[0], live_cert)
        os.utime(live_cert)
        rotated = rpc.KVStub(tls_channel(server.endpoint, new_ca[0], client))
        deadline = time.monotonic() + 10
        while True:
            try:
                assert rotated.Range(pb.RangeRequest(key=b"k"), timeout=3).kvs[0].value == b"v"
                break
            except grpc.RpcError:
                assert time.monotonic() < deadline, "rotated certificate not picked up"
                time.sleep(0.3)
    finally:
        server.stop()


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def test_metrics_and_health_endpoints(tmp_path: Path) -> None:
    port = free_port()
    server = kine_process(tmp_path, "--metrics-bind-address", f"127.0.0.1:{port}").start()
    try:
        kv = rpc.KVStub(grpc.insecure_channel(server.endpoint))
        for i in range(7):
            kv.Put(pb.PutRequest(key=b"m/%d" % i, value=b"v"))
        for _ in range(3):
            kv.Range(pb.RangeRequest(key=b"m/", range_end=b"m0"))
        with pytest.raises(grpc.RpcError):
            kv.Range(pb.RangeRequest(key=b""))
        base = f"http://127.0.0.1:{port}"
        assert get(f"{base}/healthz") == (200, "ok\n")
        assert get(f"{base}/readyz") == (200, "ok\n")
        status, text = get(f"{base}/metrics")
        assert status == 200
        lines = set(text.splitlines())
        assert 'kine_grpc_requests_total{code="OK",method="KV/Put"} 7.0' in lines
        assert 'kine_grpc_requests_total{code="OK",method="KV/Range"} 3.0' in lines
        assert 'kine_grpc_requests_total{code="INVALID_ARGUMENT",method="KV/Range"} 1.0' in lines
        assert "kine_revision 8.0" in lines
        assert "kine_keys 7.0" in lines
        assert any(line.startswith('kine_sql_total{error_code="",name="append"}') for line in lines)
        assert any(line.startswith("kine_commit_duration_seconds_count") for line in lines)
        assert any(line.startswith("kine_db_size_bytes ") and float(line.split()[1]) > 0 for line in lines)
        health = health_pb2_grpc.HealthStub(grpc.insecure_channel(server.endpoint))
        assert health.Check(health_pb2.HealthCheckRequest()).status == health_pb2.HealthCheckResponse.SERVING
        assert get(f"{base}/nope")[0] == 404
    finally:
        assert server.stop() == 0


def test_unix_socket_is_private_and_plaintext_warning_and_slow_sql_log(tmp_path: Path) -> None:
    sock = tmp_path / "kine.sock"
    server = kine_process(
        tmp_path / "kine", "--listen-address", f"unix://{sock}", "--slow-sql-threshold", "0s"
    ).start(wait=False)
    try:
        deadline = time.monotonic() + 20
        while not sock.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.3)
        assert oct(sock.stat().st_mode & 0o777) == "0o600"
        kv = rpc.KVStub(grpc.insecure_channel(f"unix://{sock}"))
        kv.Put(pb.PutRequest(key=b"u", value=b"1"))
        assert kv.Range(pb.RangeRequest(key=b"u")).kvs[0].value == b"1"
        assert "slow SQL append took" in server.log_text()
    finally:
        server.stop()
    public = kine_process(tmp_path / "public", "--listen-address", f"0.0.0.0:{free_port()}").start(wait=False)
    try:
        deadline = time.monotonic() + 20
        while "serving etcd v3 API" not in public.log_text() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert "serving plaintext without client authentication on 0.0.0.0" in public.log_text()
    finally:
        public.stop()
