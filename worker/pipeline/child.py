"""The parser process: RowSource runs in a child process and hands its messages over a pipe.

The child is a fresh interpreter (`python -m worker.pipeline.child`), the worker's own child: no fork
server and no multiprocessing resource tracker stay resident beside the worker (~55 MB between them).
Its ~0.2 s of interpreter start and imports are paid ahead: ParserSpares keeps one started, waiting for
its parameters, and starts the next once a job's parser has ended (so an import holds one parser).
The job's parameters go in, pickled and framed with their length, on the child's stdin; messages come
back the same way on its stdout, which the worker reads through an asyncio stream whose buffer is
bounded (the transport stops reading past it, the pipe fills and the child blocks), so the child runs
at most a couple of batches ahead and memory stays bounded at any file size.

The child never outlives its job: the worker keeps the child's stdin open and never writes to it
again, and the child exits as soon as it reads its end, which the kernel gives it when the worker
dies, even by SIGKILL. A job that stops early (lease lost, SIGTERM, an error) kills its child.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import pickle
import signal
import struct
import sys
import threading
import traceback
from pathlib import Path
from typing import IO

from shared.imports.options import OptionError
from shared.spreadsheet.readers import WorkbookError
from shared.spreadsheet.rules import HeaderError
from worker.pipeline.messages import SourceFailed, SourceMessage
from worker.pipeline.source import RowSource, SourceParams

log = logging.getLogger("worker.importer")
_FRAME = struct.Struct("!Q")
# The stream's buffer limit: reading pauses past twice this (about two batches of 2,000 rows).
BUFFER_LIMIT = 1 << 20
# Where `worker` is importable from, whatever the worker's working directory.
_PROJECT_ROOT = str(Path(__file__).resolve().parents[2])


class ParserDied(RuntimeError):
    """The parser process ended without finishing (killed, out of memory): the job is retried."""


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (_PROJECT_ROOT, env.get("PYTHONPATH", "")) if p)
    return env


async def _spawn() -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        __name__,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        env=_child_env(),
        limit=BUFFER_LIMIT,
    )


class ParserSpares:
    """One parser process started ahead (a worker's, from its start to its shutdown): a job takes it
    rather than waiting ~0.2 s for one to start (a 50-row import: 0.4 s → 0.2 s, upload to completed).
    The next is started when a job's parser has ended, never while one runs, so an import's memory
    holds one parser; jobs at once beyond the first start their own. A spare waits on its stdin: when
    the worker goes, even killed, it reads the end and exits."""

    def __init__(self) -> None:
        self._spare: asyncio.subprocess.Process | None = None
        self._starting: asyncio.Task[None] | None = None
        self._closed = False

    async def take(self) -> asyncio.subprocess.Process:
        """The spare (the one being started, when it is: it is ready sooner than a new one), or a new one."""
        await self.started()
        spare, self._spare = self._spare, None
        if spare is not None and spare.returncode is None:
            return spare
        return await _spawn()

    def refill(self) -> None:
        """Start the next spare, unless one is there or starting (or the worker is stopping)."""
        if not (self._closed or self._spare is not None or self._starting is not None):
            self._starting = asyncio.create_task(self._start())

    async def started(self) -> int | None:
        """The spare's pid once the one being started is there (None: there is none)."""
        if self._starting is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(self._starting)
        return None if self._spare is None else self._spare.pid

    async def _start(self) -> None:
        try:
            process = await _spawn()
        except OSError as exc:  # the next job starts its own, and meets the trouble, or not
            log.warning("could not start a spare parser process", extra={"error": str(exc)})
            return
        finally:
            self._starting = None
        if self._closed or self._spare is not None:
            await _stop(process, kill=False)
        else:
            self._spare = process

    async def close(self) -> None:
        self._closed = True
        if self._starting is not None:
            self._starting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._starting
        spare, self._spare = self._spare, None
        if spare is not None:
            await _stop(spare, kill=False)


async def _stop(process: asyncio.subprocess.Process, *, kill: bool) -> None:
    """End a parser process: its stdin (the lifeline) closed, so a spare or a finished child exits;
    with `kill`, killed too unless it ended already; killed anyway if it lingers."""
    if process.stdin is not None:
        process.stdin.close()
    if kill and process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
    await _drain(process, 10.0)
    if await _wait(process, 10.0) is None:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await _wait(process, 5.0)


async def _wait(process: asyncio.subprocess.Process, seconds: float) -> int | None:
    """The exit code, or None if the process is still running after `seconds`."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await process.wait()
    return process.returncode


async def _drain(process: asyncio.subprocess.Process, seconds: float) -> None:
    """Read the process's stdout to its end: wait() ends only once the pipe has, and a stream that
    stopped reading at its buffer's limit (the job stopped while the child was ahead) never gets
    there. At most the buffer and the pipe's contents, the child being gone or done."""
    assert process.stdout is not None
    with contextlib.suppress(TimeoutError, OSError):
        async with asyncio.timeout(seconds):
            while await process.stdout.read(BUFFER_LIMIT):
                pass


class SourceProcess:
    """`async with SourceProcess(params) as source:` then `await source.receive()` until None; with
    `spares`, the process is taken from them and the next spare started when it has ended."""

    def __init__(self, params: SourceParams, spares: ParserSpares | None = None) -> None:
        self.params = params
        self.spares = spares
        self._process: asyncio.subprocess.Process | None = None
        self._finished = False

    async def __aenter__(self) -> SourceProcess:
        try:
            await self._start()
        except BaseException:  # cancelled while starting, say: no child left behind
            await asyncio.shield(self.close())
            raise
        return self

    async def _start(self) -> None:
        self._process = await (_spawn() if self.spares is None else self.spares.take())
        assert self._process.stdin is not None
        payload = pickle.dumps(self.params, protocol=pickle.HIGHEST_PROTOCOL)
        self._process.stdin.write(_FRAME.pack(len(payload)) + payload)
        # stdin stays open from here on: it is the child's lifeline.
        await self._process.stdin.drain()

    async def receive(self) -> SourceMessage | None:
        """The next message; None once the sheet was read to its end."""
        assert self._process is not None and self._process.stdout is not None
        reader = self._process.stdout
        try:
            (size,) = _FRAME.unpack(await reader.readexactly(_FRAME.size))
            payload = await reader.readexactly(size)
        except asyncio.IncompleteReadError:
            code = await _wait(self._process, 5.0)
            raise ParserDied(f"the parser process ended unexpectedly (exit code {code})") from None
        message: SourceMessage | None = pickle.loads(payload)
        if message is None:
            self._finished = True
        return message

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.shield(self.close())

    async def close(self) -> None:
        if self._process is None:
            return
        await _stop(self._process, kill=not self._finished)
        if self.spares is not None:
            self.spares.refill()


# -- the child's side ---------------------------------------------------------------------------------


def _watch(lifeline: IO[bytes]) -> None:
    """Exit the moment the worker is gone (its end of stdin closed)."""
    with contextlib.suppress(OSError):
        while lifeline.read(4096):
            pass
    os._exit(0)


def _send(out: IO[bytes], message: SourceMessage | None) -> None:
    payload = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    out.write(_FRAME.pack(len(payload)))
    out.write(payload)
    out.flush()


def _read_exactly(source: IO[bytes], size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        chunk = source.read(size - len(data))
        if not chunk:  # the worker went away before it said what to parse
            os._exit(0)
        data += chunk
    return bytes(data)


def _read_params(source: IO[bytes]) -> SourceParams:
    (size,) = _FRAME.unpack(_read_exactly(source, _FRAME.size))
    params: SourceParams = pickle.loads(_read_exactly(source, size))
    return params


def child_main(params: SourceParams, out: IO[bytes]) -> None:
    """The parser process's body: every message of RowSource, then None (or a SourceFailed)."""
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


def main() -> None:
    # Ctrl-C in a terminal reaches the whole process group: the worker decides when its parser stops.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    lifeline = os.fdopen(os.dup(0), "rb", buffering=0)
    # The messages get stdout's pipe to themselves; anything a library prints goes to stderr.
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    params = _read_params(lifeline)
    threading.Thread(target=_watch, args=(lifeline,), name="lifeline", daemon=True).start()
    child_main(params, out)


if __name__ == "__main__":
    main()
