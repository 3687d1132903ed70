"""The parser process (worker.pipeline.child): a real `python -m worker.pipeline.child` over a real file."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from shared.imports.options import ImportOptions
from tests.support.workbooks import csv_bytes, customers
from worker.pipeline.child import ParserSpares, SourceProcess
from worker.pipeline.messages import ParsedBatch
from worker.pipeline.source import SourceParams


def _gone(pid: int | None) -> bool:
    """Ended and reaped (a zombie still has its /proc entry)."""
    return pid is not None and not os.path.exists(f"/proc/{pid}/status")


def _params(path: Path) -> SourceParams:
    return SourceParams(path, "csv", ImportOptions(), memory_budget_bytes=64 << 20, batch_size=500, resume_after_row=0)


async def test_every_batch_comes_through_then_the_end(tmp_path: Path) -> None:
    path = tmp_path / "people.csv"
    path.write_bytes(csv_bytes(customers(1200)))
    rows = 0
    async with SourceProcess(_params(path)) as source:
        while (message := await source.receive()) is not None:
            if isinstance(message, ParsedBatch):
                rows += message.rows_read
        pid = source.pid
    assert rows == 1200
    assert _gone(pid)


async def test_a_job_that_stops_early_ends_its_parser_at_once(tmp_path: Path) -> None:
    """The job stops (lease lost, SIGTERM, split into parts) while the parser is batches ahead and
    blocked on a full pipe: the child is killed and closing does not wait out its 10 s bound for a
    pipe nobody reads any more (it did, before the pipe was read to its end)."""
    path = tmp_path / "long.csv"
    path.write_bytes(csv_bytes(customers(60000)))
    async with SourceProcess(_params(path)) as source:
        assert await source.receive() is not None
        await asyncio.sleep(1.0)  # the child fills the pipe and the stream's buffer, then blocks
        pid = source.pid
        async with asyncio.timeout(5):
            await source.close()
    assert _gone(pid)


async def test_a_job_takes_the_spare_parser_and_the_next_one_starts_when_it_has_ended(tmp_path: Path) -> None:
    """ParserSpares: a parser started ahead serves the next job (it does not pay the interpreter's
    start); the next spare is started only once that job's parser has ended; closing ends it."""
    path = tmp_path / "people.csv"
    path.write_bytes(csv_bytes(customers(600)))
    spares = ParserSpares()
    spares.refill()
    ready = await spares.started()
    assert ready is not None and not _gone(ready)
    async with SourceProcess(_params(path), spares) as source:
        assert source.pid == ready and await spares.started() is None  # taken; none started beside it
        while await source.receive() is not None:
            pass
    following = await spares.started()
    assert following is not None and following != ready and not _gone(following)
    await spares.close()
    assert _gone(following) and _gone(ready)
