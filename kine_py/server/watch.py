"""etcdserverpb.Watch: the bidirectional stream, over ``kine_py.mvcc.watch.WatchSession``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import grpc

from kine_py._pb.etcdserverpb import rpc_pb2 as pb
from kine_py._pb.etcdserverpb import rpc_pb2_grpc
from kine_py.mvcc.store import Store
from kine_py.mvcc.watch import WatchSession
from kine_py.server import convert
from kine_py.server.identity import Identity

log = logging.getLogger(__name__)
Ctx = grpc.aio.ServicerContext[Any, Any]


class WatchService(rpc_pb2_grpc.WatchServicer):
    def __init__(
        self,
        store: Store,
        identity: Identity,
        *,
        progress_interval: float,
        fragment_bytes: int,
        encoder: convert.Encoder | None = None,
    ) -> None:
        self._store = store
        self._id = identity
        self._interval = progress_interval
        self._max_bytes = fragment_bytes
        self._encoder = encoder or convert.Encoder(identity.fill)

    async def Watch(  # type: ignore[override]  # it may also yield pre-serialized bytes
        self, request_iterator: AsyncIterator[pb.WatchRequest], context: Ctx
    ) -> AsyncIterator[pb.WatchResponse | bytes]:
        """Serve one stream. Yields messages, or already serialized ``bytes`` (sent as they are)."""
        session = WatchSession(self._store.hub, self._store, self._interval)
        reader = asyncio.create_task(_read(request_iterator, session))
        encoder = self._encoder
        try:
            async for reply in session.replies():
                plain = not (reply.created or reply.canceled or reply.compact_revision)
                if reply.events and plain and not session.is_fragmenting(reply.watch_id):
                    # The common case, once per watcher per commit: cached bytes, no messages.
                    yield encoder.events_response(reply)
                    continue
                resp = convert.watch_response(reply)
                self._id.fill(resp.header)
                if session.is_fragmenting(reply.watch_id):
                    for part in fragments(resp, self._max_bytes):
                        yield part
                else:
                    yield resp
        finally:
            session.close()
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader


async def _read(requests: AsyncIterator[pb.WatchRequest], session: WatchSession) -> None:
    """Feed the client's requests to the session. The client closing its side ends nothing:
    as with etcd, the stream stays open (and keeps sending) until the call ends."""
    try:
        async for request in requests:
            which = request.WhichOneof("request_union")
            if which == "create_request":
                session.create(convert.watch_create(request.create_request))
            elif which == "cancel_request":
                session.cancel(request.cancel_request.watch_id)
            elif which == "progress_request":
                session.request_progress()
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        log.debug("watch stream reader ended: %s", exc)
        session.close()


def fragments(resp: pb.WatchResponse, max_bytes: int) -> Iterator[pb.WatchResponse]:
    """Split a large response as etcd's sendFragments does: each part under ``max_bytes``
    (but at least one event), every part but the last flagged ``fragment``."""
    if resp.ByteSize() < max_bytes or len(resp.events) < 2:
        yield resp
        return
    events = list(resp.events)
    idx = 0
    while True:
        part = pb.WatchResponse()
        part.CopyFrom(resp)
        del part.events[:]
        part.fragment = True
        for ev in events[idx:]:
            part.events.append(ev)
            if len(part.events) > 1 and part.ByteSize() >= max_bytes:
                del part.events[-1]
                break
            idx += 1
        if idx == len(events):
            part.fragment = False
        yield part
        if not part.fragment:
            return
