"""The peer transport of Raft mode: Raft messages between replicas over gRPC on the peer URLs.

No protobuf: requests are raw bytes in ``kine_py.raft.codec``'s format, through gRPC's
generic handlers. Methods of the service ``kinepy.raft.v1.Peer``:

- ``Send`` (client streaming): each frame is a batch of messages (``encode_messages``). One
  long-lived stream per peer; a frame carries everything queued for that peer, so messages
  of one Ready go out together. A broken stream drops what it held (Raft retransmits) and
  reports the peer unreachable; the sender reconnects after a short pause. A member removed
  from the cluster is refused (FAILED_PRECONDITION ``REMOVED``) and stops on reading that.
- ``Snapshot`` (client streaming): the first frame is the MsgSnap (``encode_message``), the
  rest the state machine's database in chunks. The receiver stores the file, fsyncs it and
  only then steps the message into its node.
- ``Members`` (unary): the cluster id and members, for a replica joining an existing cluster.
- ``Admin`` (unary): a JSON request that only the leader can serve (promote a learner), which
  followers forward.

Owned by the node's event loop; ``send`` never blocks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import grpc

from kine_py.raft import codec
from kine_py.raft.types import Message, MessageType
from kine_py.replication.members import host_port

log = logging.getLogger(__name__)

SERVICE = "kinepy.raft.v1.Peer"
CHUNK = 1 << 20
MAX_QUEUE = 8192
MAX_FRAME_MESSAGES = 1024
RECONNECT_PAUSE = 0.1
# What a member answers a removed member's stream with (etcd: HTTP 410 from rafthttp); the
# removed member stops when it reads it.
REMOVED = "the member has been permanently removed from the cluster"
# Servers must accept the clients' keepalive pings, or grpc-core answers GOAWAY
# "too_many_pings" and drops the peer stream (votes and acks lost until it reconnects).
_SERVER_OPTIONS = [
    ("grpc.max_receive_message_length", 64 << 20),
    ("grpc.max_send_message_length", 64 << 20),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_recv_ping_interval_without_data_ms", 1000),
    ("grpc.http2.min_ping_interval_without_data_ms", 1000),
    ("grpc.http2.max_ping_strikes", 0),
]
_OPTIONS = [
    ("grpc.max_receive_message_length", 64 << 20),
    ("grpc.max_send_message_length", 64 << 20),
    ("grpc.keepalive_time_ms", 2000),
    ("grpc.keepalive_timeout_ms", 2000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
]


@dataclass(frozen=True, slots=True)
class PeerTLS:
    """Files for mutual TLS between replicas (etcd's --peer-* flags)."""

    cert_file: str
    key_file: str
    trusted_ca_file: str

    def _read(self) -> tuple[bytes, bytes, bytes | None]:
        ca = Path(self.trusted_ca_file).read_bytes() if self.trusted_ca_file else None
        return Path(self.key_file).read_bytes(), Path(self.cert_file).read_bytes(), ca

    def server(self) -> grpc.ServerCredentials:
        key, cert, ca = self._read()
        return grpc.ssl_server_credentials(
            [(key, cert)], root_certificates=ca, require_client_auth=ca is not None
        )

    def channel(self) -> grpc.ChannelCredentials:
        key, cert, ca = self._read()
        return grpc.ssl_channel_credentials(root_certificates=ca, private_key=key, certificate_chain=cert)


class PeerHandler(Protocol):
    """What the transport calls on its node (on the event loop)."""

    def receive(self, messages: list[Message]) -> None: ...

    async def receive_snapshot(self, message: Message, path: Path) -> None: ...

    async def snapshot_file(self) -> Path: ...

    def members_json(self) -> bytes: ...

    async def admin(self, request: bytes) -> bytes: ...

    def report_unreachable(self, node_id: int) -> None: ...

    def is_removed(self, node_id: int) -> bool: ...

    def removed_by_peer(self, node_id: int) -> None: ...

    def report_snapshot(self, node_id: int, failed: bool) -> None: ...


class _Peer:
    """The sending side towards one peer: a queue and a task keeping one stream open."""

    def __init__(self, node_id: int, urls: tuple[str, ...], transport: PeerTransport) -> None:
        self.id, self.urls, self._t = node_id, urls, transport
        self.queue: asyncio.Queue[Message] = asyncio.Queue(MAX_QUEUE)
        self.channel = transport.channel(urls[0])
        self.task = asyncio.create_task(self._run(), name=f"raft-peer-{node_id:x}")

    def send(self, msg: Message) -> None:
        try:
            self.queue.put_nowait(msg)
        except asyncio.QueueFull:
            self._t.handler.report_unreachable(self.id)

    async def _frames(self) -> AsyncIterator[bytes]:
        while True:
            batch = [await self.queue.get()]
            while not self.queue.empty() and len(batch) < MAX_FRAME_MESSAGES:
                batch.append(self.queue.get_nowait())
            yield codec.encode_messages(batch)

    async def _run(self) -> None:
        call = self.channel.stream_unary(f"/{SERVICE}/Send", None, None)
        while True:
            try:
                await call(self._frames())
            except grpc.aio.AioRpcError as exc:
                log.debug("stream to peer %x broke: %s", self.id, exc.code())
                if exc.code() is grpc.StatusCode.FAILED_PRECONDITION and exc.details() == REMOVED:
                    self._t.handler.removed_by_peer(self.id)
            while not self.queue.empty():
                self.queue.get_nowait()
            self._t.handler.report_unreachable(self.id)
            await asyncio.sleep(RECONNECT_PAUSE)

    async def close(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task
        await self.channel.close(None)


class PeerTransport:
    def __init__(self, node_id: int, handler: PeerHandler, spool: Path, tls: PeerTLS | None = None) -> None:
        self.id = node_id
        self.handler = handler
        self._spool = spool
        self._tls = tls
        self._peers: dict[int, _Peer] = {}
        self._server: grpc.aio.Server | None = None
        self._snapshots: set[asyncio.Task[None]] = set()

    # ---- server ----

    async def start(self, listen_urls: tuple[str, ...]) -> None:
        server = grpc.aio.server(options=_SERVER_OPTIONS)
        server.add_generic_rpc_handlers((self._handlers(),))
        for url in listen_urls:
            address = host_port(url)
            bound = (
                server.add_secure_port(address, self._tls.server())
                if self._tls
                else server.add_insecure_port(address)
            )
            if bound == 0:
                raise OSError(f"cannot listen for peers on {url}")
        self._spool.mkdir(parents=True, exist_ok=True)
        await server.start()
        self._server = server

    def _handlers(self) -> grpc.GenericRpcHandler[Any, Any]:
        return grpc.method_handlers_generic_handler(
            SERVICE,
            {
                "Send": grpc.stream_unary_rpc_method_handler(self._on_send),
                "Snapshot": grpc.stream_unary_rpc_method_handler(self._on_snapshot),
                "Members": grpc.unary_unary_rpc_method_handler(self._on_members),
                "Admin": grpc.unary_unary_rpc_method_handler(self._on_admin),
            },
        )

    async def _on_send(self, frames: AsyncIterator[bytes], context: Any) -> bytes:
        async for frame in frames:
            try:
                messages = codec.decode_messages(frame)
            except codec.CodecError as exc:
                log.warning("dropping a malformed frame from a peer: %s", exc)
                continue
            if messages and self.handler.is_removed(messages[0].from_):
                await context.abort(grpc.StatusCode.FAILED_PRECONDITION, REMOVED)
            self.handler.receive(messages)
        return b""

    async def _on_snapshot(self, frames: AsyncIterator[bytes], context: Any) -> bytes:
        path = self._spool / f"recv-{uuid.uuid4().hex}.db"
        message: Message | None = None
        with path.open("wb") as out:
            async for frame in frames:
                if message is None:
                    message = codec.decode_message(frame)
                else:
                    out.write(frame)
            out.flush()
            os.fsync(out.fileno())
        if message is None or message.type is not MessageType.SNAP:
            path.unlink(missing_ok=True)
            raise ValueError("snapshot stream without a MsgSnap")
        await self.handler.receive_snapshot(message, path)
        return b""

    async def _on_members(self, request: bytes, context: Any) -> bytes:
        return self.handler.members_json()

    async def _on_admin(self, request: bytes, context: Any) -> bytes:
        return await self.handler.admin(request)

    # ---- client ----

    def channel(self, url: str) -> grpc.aio.Channel:
        target = host_port(url)
        if self._tls:
            return grpc.aio.secure_channel(target, self._tls.channel(), options=_OPTIONS)
        return grpc.aio.insecure_channel(target, options=_OPTIONS)

    def set_peers(self, peers: dict[int, tuple[str, ...]]) -> None:
        """The members to talk to (self excluded); starts and stops senders to match."""
        for node_id in [i for i in self._peers if i not in peers]:
            peer = self._peers.pop(node_id)
            asyncio.create_task(peer.close())  # noqa: RUF006 - closing in the background is fine
        for node_id, urls in peers.items():
            if node_id != self.id and node_id not in self._peers and urls:
                self._peers[node_id] = _Peer(node_id, urls, self)

    def send(self, messages: tuple[Message, ...]) -> None:
        for msg in messages:
            peer = self._peers.get(msg.to)
            if peer is None:
                continue
            if msg.type is MessageType.SNAP:
                task = asyncio.create_task(self._send_snapshot(peer, msg))
                self._snapshots.add(task)
                task.add_done_callback(self._snapshots.discard)
            else:
                peer.send(msg)

    async def _send_snapshot(self, peer: _Peer, msg: Message) -> None:
        path: Path | None = None
        try:
            path = await self.handler.snapshot_file()
            call = peer.channel.stream_unary(f"/{SERVICE}/Snapshot", None, None)
            await call(_snapshot_frames(msg, path), timeout=600)
            log.info(
                "sent a snapshot at index %d to %x",
                msg.snapshot.metadata.index if msg.snapshot else 0,
                peer.id,
            )
            self.handler.report_snapshot(peer.id, failed=False)
        except Exception as exc:
            log.warning("sending a snapshot to %x failed: %s", peer.id, exc)
            self.handler.report_snapshot(peer.id, failed=True)
        finally:
            if path is not None:
                path.unlink(missing_ok=True)

    async def unary(self, url: str, method: str, request: bytes) -> bytes:
        """Call ``Members`` or ``Admin`` on the replica at ``url`` (5 s deadline)."""
        async with self.channel(url) as channel:
            call: Callable[..., Awaitable[bytes]] = channel.unary_unary(f"/{SERVICE}/{method}", None, None)
            return await call(request, timeout=5.0)

    async def close(self) -> None:
        for task in list(self._snapshots):
            task.cancel()
        for peer in list(self._peers.values()):
            await peer.close()
        self._peers.clear()
        if self._server is not None:
            await self._server.stop(grace=0.5)


async def _snapshot_frames(msg: Message, path: Path) -> AsyncIterator[bytes]:
    yield codec.encode_message(msg)
    with path.open("rb") as data:
        while chunk := await asyncio.to_thread(data.read, CHUNK):
            yield chunk
