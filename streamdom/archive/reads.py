"""Reads of the archive: DuckDB queries in a thread pool, each at one snapshot of the archive.

`version` is the snapshot reads use: the one the server's flusher last committed, set on the
IOLoop in the same step as the flushed rows leave the log's tail, so an event is read from
one of them, never both and never neither (None: the latest, e.g. a cluster node's view).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor

import pyarrow as pa

from streamdom.archive import queries, summaries
from streamdom.archive.lake import Location
from streamdom.archive.queries import ArchivedPage, EventRow, SessionQuery
from streamdom.records import StreamKey

__all__ = ["ArchiveReader", "ArchivedPage", "EventRow", "SessionQuery"]

log = logging.getLogger(__name__)


class ArchiveReader:
    """Answers questions about archived sessions without blocking the IOLoop."""

    def __init__(self, location: Location, threads: int) -> None:
        self.location = location
        self.version: int | None = None
        self._threads = threads
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="streamdom-query")
        self._high_waiting: dict[StreamKey, list[asyncio.Future[int]]] = {}
        self._high_running = False

    async def run(self, fn: Callable[..., object], *args: object) -> object:
        """Run a query function (from `queries`) on the reader thread's connection."""
        return await asyncio.get_running_loop().run_in_executor(self._pool, self._job, fn, *args)

    def _job(self, fn: Callable[..., object], *args: object) -> object:
        return fn(queries.cursor(self.location), *args)

    def advance(self, version: int, added: summaries.Added | None = None) -> None:
        """Point reads at snapshot `version` (on the IOLoop, in the step that makes it theirs).

        `added`: what the server's own commit or maintenance pass did to reach it, so the
        search's per-session table advances without asking the catalog; it advances now, in a
        reader thread, if one is kept (the next search then finds it ready).
        """
        if added is not None:
            summaries.record(self.location, added)
        self.version = version
        if summaries.keeps(self.location):  # else the first search builds it (or warm_up does)
            self._background(queries.keep_summaries, version, self.location)

    def warm_up(self) -> None:
        """Build the search's per-session table now, in a reader thread, not at the first list
        after a start (seconds at 70k sessions). Searches that come first wait for it; searches
        by id do not (queries.search_sessions). Meanwhile the pool's other threads open their
        DuckDB connections (~0.4 s each); each thread then searches once (queries.warm_up)."""
        for i in range(self._threads):
            self._background(queries.warm_up, self.version, self.location, i == 0)

    def _background(self, fn: Callable[..., object], *args: object) -> Future[object]:
        fut = self._pool.submit(self._job, fn, *args)
        fut.add_done_callback(_log_failure)
        return fut

    async def search(self, query: SessionQuery, extra: pa.Table | None
                     ) -> tuple[list[dict[str, object]], int]:
        """A page of matching sessions and their total (see queries.search_sessions)."""
        return await self.run(queries.search_sessions, query, extra, self.version,
                              self.location)  # type: ignore[return-value]

    async def events(self, session_id: str, offset: int, limit: int | None,
                     max_bytes: int | None = None) -> ArchivedPage:
        """Archived events of a session from `offset`, at most `limit` (None: all) and about
        `max_bytes` (see queries.session_page)."""
        return await self.run(queries.session_page, session_id, offset, limit, self.version,  # type: ignore[return-value]
                              max_bytes)

    async def stream_high_seqs(self, keys: Sequence[StreamKey]) -> dict[StreamKey, int]:
        """Highest archived seq of each of these streams (absent: none archived)."""
        return await self.run(queries.stream_high_seqs, keys, self.version)  # type: ignore[return-value]

    async def stream_high_seq(self, key: StreamKey) -> int:
        """The highest archived seq of one stream (0: none), for a recorder's hello.

        Lookups that arrive while a query runs wait for the next one, which answers them all:
        when a restart sends every recorder back at once, a thousand hellos cost a few queries
        (each a scan of the index's files) instead of a thousand queued one after another.
        """
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._high_waiting.setdefault(key, []).append(fut)
        if not self._high_running:
            self._high_running = True
            asyncio.ensure_future(self._answer_high_seqs())
        return await fut

    async def _answer_high_seqs(self) -> None:
        try:
            while self._high_waiting:
                waiting, self._high_waiting = self._high_waiting, {}
                try:
                    highs = await self.stream_high_seqs(list(waiting))
                except Exception as exc:  # noqa: BLE001 - every hello waiting on it gets the error
                    for futs in waiting.values():
                        for f in futs:
                            if not f.done():
                                f.set_exception(exc)
                    continue
                for key, futs in waiting.items():
                    for f in futs:
                        if not f.done():
                            f.set_result(highs.get(key, 0))
        finally:
            self._high_running = False

    def close(self) -> None:
        """Wait for running queries and stop the pool (blocking); drop what is kept for the
        archive (a server started again on the same directory starts afresh)."""
        self._pool.shutdown(wait=True)
        summaries.forget(self.location)


def _log_failure(fut: Future[object]) -> None:
    # Work nobody awaits: a failure only costs the next search the work (it retries it).
    if not fut.cancelled() and fut.exception() is not None:
        log.warning("keeping the session search's table failed: %s", fut.exception())
