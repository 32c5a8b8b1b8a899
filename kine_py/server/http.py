"""The HTTP side port (``--metrics-bind-address``): ``/metrics``, ``/healthz``, ``/readyz``.

``/healthz``: the process is alive (always 200 while it answers). ``/readyz``: the
backend answers and the index is loaded (200, else 503). ``/metrics``: Prometheus
text format from the registry given. A tiny asyncio HTTP/1.0 responder: one request
per connection, GET only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

log = logging.getLogger(__name__)
Ready = Callable[[], Awaitable[bool]]


class HttpEndpoints:
    def __init__(
        self, registry: CollectorRegistry, ready: Ready, before_scrape: Callable[[], Awaitable[None]]
    ) -> None:
        self._registry = registry
        self._ready = ready
        self._before_scrape = before_scrape
        self._server: asyncio.Server | None = None

    async def start(self, host: str, port: int) -> int:
        """Listen; return the port (useful with port 0)."""
        self._server = await asyncio.start_server(self._serve, host, port)
        return int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            method, path, *_ = request.split(b"\r\n", 1)[0].decode("latin-1").split(" ")
            status, content_type, body = await self._route(method, path.split("?", 1)[0])
            head = f"HTTP/1.0 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n"
            writer.write(head.encode() + body)
            await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ValueError, OSError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def _route(self, method: str, path: str) -> tuple[str, str, bytes]:
        if method != "GET":
            return "405 Method Not Allowed", "text/plain", b"GET only\n"
        if path == "/healthz":
            return "200 OK", "text/plain", b"ok\n"
        if path == "/readyz":
            if await self._ready():
                return "200 OK", "text/plain", b"ok\n"
            return "503 Service Unavailable", "text/plain", b"backend unavailable\n"
        if path == "/metrics":
            await self._before_scrape()
            return "200 OK", CONTENT_TYPE_LATEST, generate_latest(self._registry)
        return "404 Not Found", "text/plain", b"not found\n"
