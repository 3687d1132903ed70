"""The parser process: RowSource runs in a child process and hands its messages over a pipe.

The child is forked from multiprocessing's fork server (started once per worker process, with the
parser's modules already imported), so a job pays a fork, not an interpreter start. Messages are
pickled and framed with their length; the worker reads them through an asyncio stream whose buffer
is bounded (the transport stops reading past it, the pipe fills and the child blocks), so the child
runs at most a couple of batches ahead and memory stays bounded at any file size.

The child never outlives its job: it holds the read end of a "lifeline" pipe whose only write end
is the worker's, and exits as soon as that end closes, which the kernel does when the worker dies,
even by SIGKILL (the fork server, not the worker, is the child's parent, so PR_SET_PDEATHSIG would
not do). A job that stops early (lease lost, SIGTERM, an error) kills its child.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import pickle
import struct
import threading
import traceback
from multiprocessing.connection import Connection
from typing import IO, Any

from shared.imports.options import OptionError
from shared.spreadsheet.readers import WorkbookError
from shared.spreadsheet.rules import HeaderError
from worker.pipeline.messages import SourceFailed, SourceMessage
from worker.pipeline.source import RowSource, SourceParams

_FRAME = struct.Struct("!Q")
# The stream's buffer limit: reading pauses past twice this (about two batches of 2,000 rows).
BUFFER_LIMIT = 1 << 20
_PRELOAD = ["__main__", "worker.pipeline.child"]


class ParserDied(RuntimeError):
    """The parser process ended without finishing (killed, out of memory): the job is retried."""


def _context() -> Any:
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(_PRELOAD)  # no effect once the fork server runs
    return ctx


class SourceProcess:
    """`async with SourceProcess(params) as source:` then `await source.receive()` until None."""

    def __init__(self, params: SourceParams) -> None:
        self.params = params
        self._process: Any = None
        self._lifeline: Connection | None = None
        self._reader: asyncio.StreamReader | None = None
        self._transport: asyncio.ReadTransport | None = None
        self._finished = False

    async def __aenter__(self) -> SourceProcess:
        try:
            await self._start()
        except BaseException:  # cancelled while starting, say: no child left behind
            await asyncio.shield(self.close())
            raise
        return self

    async def _start(self) -> None:
        ctx = _context()
        data_r, data_w = ctx.Pipe(duplex=False)
        life_r, life_w = ctx.Pipe(duplex=False)
        self._lifeline = life_w
        self._process = ctx.Process(
            target=child_main, args=(self.params, data_w, life_r), name="import-parser", daemon=True
        )
        try:
            # The first start boots the fork server (an interpreter and the parser's imports):
            # off the event loop, so the lease's heartbeat keeps going.
            await asyncio.to_thread(self._process.start)
        finally:
            data_w.close()
            life_r.close()
        loop = asyncio.get_running_loop()
        self._reader = asyncio.StreamReader(limit=BUFFER_LIMIT, loop=loop)
        protocol = asyncio.StreamReaderProtocol(self._reader, loop=loop)
        pipe = os.fdopen(os.dup(data_r.fileno()), "rb", buffering=0)
        data_r.close()
        transport, _ = await loop.connect_read_pipe(lambda: protocol, pipe)
        self._transport = transport

    async def receive(self) -> SourceMessage | None:
        """The next message; None once the sheet was read to its end."""
        assert self._reader is not None
        try:
            (size,) = _FRAME.unpack(await self._reader.readexactly(_FRAME.size))
            payload = await self._reader.readexactly(size)
        except asyncio.IncompleteReadError:
            code = await asyncio.to_thread(self._join, 5.0)
            raise ParserDied(f"the parser process ended unexpectedly (exit code {code})") from None
        message: SourceMessage | None = pickle.loads(payload)
        if message is None:
            self._finished = True
        return message

    def _join(self, timeout: float) -> int | None:
        self._process.join(timeout)
        code: int | None = self._process.exitcode
        return code

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.shield(self.close())

    async def close(self) -> None:
        if self._lifeline is not None:
            self._lifeline.close()
            self._lifeline = None
        if self._transport is not None:
            self._transport.close()
            self._transport = None
        process = self._process
        if process is None or process.pid is None:
            return
        if not self._finished and process.exitcode is None:
            process.kill()
        await asyncio.to_thread(process.join, 10.0)
        if process.exitcode is None:
            process.kill()
            await asyncio.to_thread(process.join, 5.0)
        with contextlib.suppress(ValueError):
            process.close()


# -- the child's side ---------------------------------------------------------------------------------


def _watch(lifeline: Connection) -> None:
    """Exit the moment the worker is gone (its end of the lifeline closed)."""
    with contextlib.suppress(EOFError, OSError):
        lifeline.recv_bytes()
    os._exit(0)


def _send(out: IO[bytes], message: SourceMessage | None) -> None:
    payload = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    out.write(_FRAME.pack(len(payload)))
    out.write(payload)
    out.flush()


def child_main(params: SourceParams, data: Connection, lifeline: Connection) -> None:
    """The parser process's body: every message of RowSource, then None (or a SourceFailed)."""
    threading.Thread(target=_watch, args=(lifeline,), name="lifeline", daemon=True).start()
    out = os.fdopen(os.dup(data.fileno()), "wb")
    data.close()
    try:
        try:
            for message in RowSource(params).messages():
                _send(out, message)
            _send(out, None)
        except (WorkbookError, HeaderError, OptionError) as exc:
            _send(out, SourceFailed(str(exc)))
        except Exception as exc:
            # A damaged file surfaces as zlib, zipfile, XML or value errors from deep in a reader:
            # the job fails with the reason rather than being retried as if the worker had crashed.
            _send(
                out,
                SourceFailed(f"the file could not be read: {type(exc).__name__}: {exc}", detail=traceback.format_exc()),
            )
        out.close()
    except BrokenPipeError:  # the worker stopped reading: the job was stopped
        os._exit(0)
