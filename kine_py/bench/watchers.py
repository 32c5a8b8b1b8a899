"""Many watches on one key or prefix, spread over streams and connections, in one process.

``WatchGroup.open`` creates ``count`` watches, ``per_stream`` of them on each Watch stream,
the streams spread round-robin over ``channels``, and returns once every watch is created.
A reader task per stream then calls ``on_response(response, arrival)`` (``arrival`` is
``time.monotonic()``, comparable across processes on Linux) for every response with events.
``close`` cancels the streams and readers; it never raises.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import grpc

from kine_py._pb.etcdserverpb import rpc_pb2 as pb
from kine_py._pb.etcdserverpb import rpc_pb2_grpc as rpc

Stream = grpc.aio.StreamStreamCall[Any, Any]
OnResponse = Callable[[pb.WatchResponse, float], None]


def streams_for(watchers: int, streams: int) -> int:
    """Streams to use for ``watchers`` watches: ``streams`` if given, else one per 10 watches."""
    return max(1, min(watchers, streams or math.ceil(watchers / 10)))


class WatchGroup:
    def __init__(self, on_response: OnResponse) -> None:
        self._on_response = on_response
        self._streams: list[Stream] = []
        self._readers: list[asyncio.Task[None]] = []

    async def open(
        self, channels: Sequence[grpc.aio.Channel], key: bytes, range_end: bytes, count: int, streams: int
    ) -> None:
        for s in range(streams):
            per_stream = count // streams + (1 if s < count % streams else 0)
            if per_stream:
                stream = rpc.WatchStub(channels[s % len(channels)]).Watch(None)
                await _create(stream, key, range_end, per_stream)
                self._streams.append(stream)
                self._readers.append(asyncio.create_task(self._read(stream)))

    async def _read(self, stream: Stream) -> None:
        while True:
            resp = await stream.read()
            if not isinstance(resp, pb.WatchResponse):  # grpc.aio.EOF
                return
            if resp.events:
                self._on_response(resp, time.monotonic())

    async def close(self) -> None:
        for stream in self._streams:
            stream.cancel()
        for task in self._readers:
            task.cancel()
        for task in self._readers:
            with contextlib.suppress(asyncio.CancelledError, grpc.aio.AioRpcError):
                await task


async def _create(stream: Stream, key: bytes, range_end: bytes, count: int) -> None:
    """Create ``count`` watches on one stream and wait for each ``created`` reply."""
    for _ in range(count):
        await stream.write(
            pb.WatchRequest(create_request=pb.WatchCreateRequest(key=key, range_end=range_end))
        )
    created = 0
    while created < count:
        resp = await stream.read()
        if not isinstance(resp, pb.WatchResponse):
            raise ConnectionError("watch stream ended before every watch was created")
        if resp.canceled:
            raise ConnectionError(f"watch refused: {resp.cancel_reason}")
        created += int(resp.created)
