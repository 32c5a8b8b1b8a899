"""``memory``: a server's resident size before and after loading many keys.

Order: read ``/proc/PID/status`` (VmRSS, RssAnon, RssFile), write ``keys`` keys of
``val_size`` bytes under a fresh prefix (``setup.write_all``: Txns of ``batch`` Puts), wait
``settle`` seconds, check with a count-only Range that every key is there, read the status
again. The server must run on this machine (``pid``); a missing process raises
``FileNotFoundError``, a short count ``RuntimeError``.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path

import grpc

from kine_py._pb.etcdserverpb import rpc_pb2 as pb
from kine_py._pb.etcdserverpb import rpc_pb2_grpc as rpc
from kine_py.bench.setup import fixed_key, write_all
from kine_py.bench.spec import prefix_end, token

FIELDS = ("VmRSS", "RssAnon", "RssFile", "VmHWM")


def status_kib(pid: int) -> dict[str, int]:
    """The memory lines of ``/proc/PID/status``, in KiB."""
    found: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in FIELDS:
            found[name] = int(rest.split()[0])
    return found


@dataclass(frozen=True)
class Memory:
    endpoint: str
    keys: int
    val_size: int
    before: dict[str, int]
    after: dict[str, int]
    load_seconds: float

    @property
    def rss_mib(self) -> float:
        return self.after["VmRSS"] / 1024

    @property
    def growth_mib(self) -> float:
        return (self.after["VmRSS"] - self.before["VmRSS"]) / 1024

    def line(self) -> str:
        mib = {k: v / 1024 for k, v in self.after.items()}
        per_key = self.growth_mib * 1024 * 1024 / max(1, self.keys)
        return (
            f"{self.endpoint}: VmRSS {self.before['VmRSS'] / 1024:.1f} MiB -> {self.rss_mib:.1f} MiB "
            f"(+{self.growth_mib:.1f} MiB, {per_key:,.0f} B/key; anon {mib.get('RssAnon', 0):.1f} MiB, "
            f"file {mib.get('RssFile', 0):.1f} MiB, peak {mib.get('VmHWM', 0):.1f} MiB) "
            f"after {self.keys:,} keys of {self.val_size} B loaded in {self.load_seconds:.1f}s"
        )


async def _load(endpoint: str, keys: int, val_size: int, key_size: int, batch: int) -> None:
    prefix = b"bench/memory/" + token() + b"/"
    value = b"m" * val_size
    async with grpc.aio.insecure_channel(endpoint) as channel:
        stub = rpc.KVStub(channel)
        await write_all(stub, [(fixed_key(prefix, i, key_size), value) for i in range(keys)], batch)
        got = await stub.Range(pb.RangeRequest(key=prefix, range_end=prefix_end(prefix), count_only=True))
        if got.count != keys:
            raise RuntimeError(f"{endpoint} holds {got.count} of the {keys} keys written")


def measure_memory(
    endpoint: str,
    pid: int,
    *,
    keys: int,
    val_size: int,
    key_size: int = 32,
    batch: int = 100,
    settle: float = 2.0,
) -> Memory:
    before = status_kib(pid)
    started = time.monotonic()
    asyncio.run(_load(endpoint, keys, val_size, key_size, batch))
    seconds = time.monotonic() - started
    time.sleep(settle)
    return Memory(endpoint, keys, val_size, before, status_kib(pid), seconds)
