"""A small TCP proxy for outage tests: put it between the app and MySQL or Redis, then cut the line.

It runs in the test's event loop. `cut()` is a real outage as a client sees it: every open connection
is reset and the listening socket is closed, so new connections are refused until `restore()` listens
again on the same port. Nothing is faked: bytes go to the real server while the line is up.

`delay`, if set, is called for every chunk forwarded (either direction) and the chunk is held back
that many seconds: random values give each connection its own latency, so commands sent on different
connections reach the server in another order than they were sent, as between replicas on a network.
Order within one connection is kept.

`hold_responses()` lets requests through to the server but keeps its answers until
`release_responses()`: a statement has run on the server while the client has not seen the result
yet, i.e. a slow reader, deterministically. `held` counts the chunks kept back.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit, urlunsplit


class TcpProxy:
    def __init__(
        self,
        target_host: str,
        target_port: int,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        delay: Callable[[], float] | None = None,
    ) -> None:
        self.target_host = target_host
        self.target_port = target_port
        self.host = host
        self.port = port
        self.delay = delay
        self._server: asyncio.Server | None = None
        self._transports: set[asyncio.WriteTransport] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._up = False
        self.accepted = 0
        self.held = 0
        self._responses = asyncio.Event()
        self._responses.set()
        self._holding = asyncio.Event()

    @property
    def is_up(self) -> bool:
        return self._up

    async def start(self) -> int:
        """Listen (on a free port unless one was given) and return the port."""
        await self._listen()
        return self.port

    async def _listen(self) -> None:
        # reuse_address: restore() binds the same port again while old connections sit in TIME_WAIT.
        self._server = await asyncio.start_server(self._accept, self.host, self.port, reuse_address=True)
        sock: socket.socket = self._server.sockets[0]
        self.port = int(sock.getsockname()[1])
        self._up = True

    async def cut(self) -> None:
        """Outage: stop listening (new connections are refused) and reset every open connection."""
        self._up = False
        if self._server is not None:
            self._server.close()  # closes the listening socket at once; accepted connections are ours to end
            self._server = None
        for transport in list(self._transports):
            transport.abort()
        self._transports.clear()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def restore(self) -> None:
        """End the outage: listen again on the same port."""
        if not self._up:
            await self._listen()

    def hold_responses(self) -> None:
        self._holding.clear()
        self._responses.clear()

    async def wait_held(self) -> None:
        """Until an answer is being kept back (since hold_responses)."""
        await self._holding.wait()

    def release_responses(self) -> None:
        self._responses.set()

    async def stop(self) -> None:
        await self.cut()

    async def __aenter__(self) -> TcpProxy:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- plumbing ------------------------------------------------------------------------------
    async def _accept(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        client = client_writer.transport
        self._transports.add(client)
        try:
            if not self._up:
                client.abort()
                return
            self.accepted += 1
            try:
                upstream_reader, upstream_writer = await asyncio.open_connection(self.target_host, self.target_port)
            except OSError:
                client.abort()
                return
            upstream = upstream_writer.transport
            self._transports.add(upstream)
            if not self._up:  # cut while we were connecting upstream
                upstream.abort()
                client.abort()
                return
            try:
                await asyncio.gather(
                    self._pump(client_reader, upstream_writer),
                    self._pump(upstream_reader, client_writer, response=True),
                )
            finally:
                upstream.abort()
                self._transports.discard(upstream)
        except asyncio.CancelledError:
            pass
        finally:
            client.abort()
            self._transports.discard(client)
            self._tasks.discard(task)

    async def _pump(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, response: bool = False
    ) -> None:
        """Copy one direction until EOF, then pass the EOF on (half-close), as a real hop would."""
        try:
            while data := await reader.read(65536):
                if response and not self._responses.is_set():
                    self.held += 1
                    self._holding.set()
                    await self._responses.wait()
                if self.delay is not None:
                    await asyncio.sleep(self.delay())
                writer.write(data)
                await writer.drain()
            if writer.can_write_eof():
                writer.write_eof()
        except (ConnectionError, OSError):
            with contextlib.suppress(Exception):
                writer.transport.abort()


def url_via(url: str, port: int, host: str = "127.0.0.1") -> str:
    """The same URL or DSN (scheme, credentials, database) pointed at host:port, e.g. at a proxy."""
    parts = urlsplit(url)
    userinfo, _, _ = parts.netloc.rpartition("@")
    netloc = f"{userinfo}@{host}:{port}" if userinfo else f"{host}:{port}"
    return urlunsplit(parts._replace(netloc=netloc))


def target_of(url: str, default_port: int) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or default_port
