"""Raft mode beside a real 3-member etcd 3.5.1 cluster, on this machine, in one run.

``python -m scripts.bench_raft [--out benchmarks/RAFT.md] [--seconds 10]`` starts a fresh
3-replica kine-py cluster (``--endpoint raft://``) and a fresh 3-member etcd cluster on
loopback, then measures with ``python -m kine_py.bench`` (alternating between the two):

- sustained puts through the leader (2 processes x 16 clients, 256 B values);
- single-key linearizable and serializable ranges on a follower (latency ratio);
- failover: ``kill -9`` of the leader under a writer, time until a write succeeds again
  through another member.

and writes a markdown report. Numbers are noisy on a shared 2-core machine; the ratios
are what to read.
"""

from __future__ import annotations

import argparse
import contextlib
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import grpc

from kine_py._pb.etcdserverpb import rpc_pb2, rpc_pb2_grpc
from kine_py.testing.processes import (
    ServerProcess,
    etcd_bin_dir,
    free_port,
    raft_cluster,
    wait_leader,
    wait_ready,
)


def etcd_cluster(data_dir: Path, size: int = 3) -> list[ServerProcess]:
    names = [f"e{i + 1}" for i in range(size)]
    ports = {n: (free_port(), free_port()) for n in names}
    initial = ",".join(f"{n}=http://127.0.0.1:{ports[n][1]}" for n in names)
    members = []
    for n in names:
        client, peer = ports[n]
        cmd = [
            str(etcd_bin_dir() / "etcd"),
            f"--name={n}",
            f"--data-dir={data_dir / n}",
            f"--listen-client-urls=http://127.0.0.1:{client}",
            f"--advertise-client-urls=http://127.0.0.1:{client}",
            f"--listen-peer-urls=http://127.0.0.1:{peer}",
            f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}",
            f"--initial-cluster={initial}",
            "--initial-cluster-token=bench",
            "--log-level=warn",
        ]
        data_dir.mkdir(parents=True, exist_ok=True)
        members.append(ServerProcess(cmd, client, data_dir / f"{n}.log"))
    return members


def member_id(endpoint: str) -> int:
    with grpc.insecure_channel(endpoint) as ch:
        return int(
            rpc_pb2_grpc.MaintenanceStub(ch).Status(rpc_pb2.StatusRequest(), timeout=5).header.member_id
        )


def split(members: Sequence[ServerProcess]) -> tuple[ServerProcess, list[ServerProcess]]:
    lead = wait_leader(members[0].endpoint)
    leader = next(m for m in members if member_id(m.endpoint) == lead)
    return leader, [m for m in members if m is not leader]


def bench(*args: str) -> str:
    cmd = [sys.executable, "-m", "kine_py.bench", *args]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    return (out.stdout + out.stderr).strip()


def failover(members: Sequence[ServerProcess]) -> float:
    """Seconds from SIGKILL of the leader until a Put succeeds through a surviving member."""
    leader, others = split(members)
    with grpc.insecure_channel(others[0].endpoint) as ch:
        kv = rpc_pb2_grpc.KVStub(ch)
        kv.Put(rpc_pb2.PutRequest(key=b"failover", value=b"before"), timeout=10)
        killed = time.monotonic()
        leader.kill()
        while True:
            try:
                kv.Put(rpc_pb2.PutRequest(key=b"failover", value=b"after"), timeout=1)
                return time.monotonic() - killed
            except grpc.RpcError:
                if time.monotonic() - killed > 60:
                    return float("inf")
                time.sleep(0.02)


@contextlib.contextmanager
def running(members: Sequence[ServerProcess]) -> Iterator[Sequence[ServerProcess]]:
    for m in members:
        m.start(wait=False)
    try:
        for m in members:
            assert m.proc is not None
            wait_ready(m.endpoint, m.proc)
        wait_leader(members[0].endpoint)
        yield members
    finally:
        for m in members:
            m.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="benchmarks/RAFT.md")
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    secs = str(args.seconds)
    with tempfile.TemporaryDirectory() as tmp:
        kine = raft_cluster(Path(tmp) / "kine", 3)
        etcd = etcd_cluster(Path(tmp) / "etcd", 3)
        with running(kine), running(etcd):
            k_leader, k_followers = split(kine)
            e_leader, e_followers = split(etcd)
            common = ["--duration", secs, "--rounds", "2"]
            put = bench(
                "put",
                "--endpoint",
                k_leader.endpoint,
                "--compare",
                e_leader.endpoint,
                "--procs",
                "2",
                "--clients",
                "16",
                "--conns",
                "2",
                *common,
            )
            put1 = bench(
                "put",
                "--endpoint",
                k_leader.endpoint,
                "--compare",
                e_leader.endpoint,
                "--procs",
                "1",
                "--clients",
                "1",
                *common,
            )
            lin = bench(
                "range",
                "--endpoint",
                k_followers[0].endpoint,
                "--compare",
                e_followers[0].endpoint,
                "--procs",
                "1",
                "--clients",
                "1",
                *common,
            )
            ser = bench(
                "range",
                "--serializable",
                "--endpoint",
                k_followers[0].endpoint,
                "--compare",
                e_followers[0].endpoint,
                "--procs",
                "1",
                "--clients",
                "1",
                *common,
            )
            k_fail, e_fail = failover(kine), failover(etcd)
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    report = f"""# Raft mode beside a 3-member etcd 3.5.1 cluster

Generated by `python -m scripts.bench_raft --seconds {secs}` on {stamp}:
three kine-py replicas (`--endpoint raft://`, SQLite state machines, default 100 ms heartbeat /
1 s election timeout) and three etcd 3.5.1 members, all on this 2-core machine together with
the load generator. In each comparison the first endpoint is kine-py, the second etcd;
ratios are kine-py / etcd.

## Puts through the leader, 2 processes x 16 clients

```
{put}
```

## Puts through the leader, 1 client

```
{put1}
```

## Single-key range on a follower, linearizable (ReadIndex), 1 client

```
{lin}
```

## Single-key range on a follower, serializable (local), 1 client

```
{ser}
```

## Failover

Seconds from `kill -9` of the leader until a Put through a surviving member succeeds
(election timeout 1 s in both): kine-py {k_fail:.2f} s, etcd {e_fail:.2f} s.
"""
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(report)
    print(report)


if __name__ == "__main__":
    main()
