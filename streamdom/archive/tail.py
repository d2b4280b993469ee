"""The log's tail: rows logged but not yet in Parquet, kept in memory per session for reads.

Between two flushes an event is in the write-ahead log (for durability) and here (so the
session list and the events API see it before it reaches Parquet). A flush takes what is here,
writes the log's closed segments to Parquet and then drops exactly what it took.
"""

from __future__ import annotations

from collections.abc import Iterator

from streamdom.records import ROW_DATA, ROW_SERVER_TIME, ROW_SESSION, ROW_STREAM, Row, StreamKey
from streamdom.signals import Signals, SignalTracker


class PendingRows:
    """One session's rows in the tail, with running figures for its summary."""

    __slots__ = ("started_at", "last_event_at", "bytes", "rows", "streams", "found", "base")

    def __init__(self, started_at: int) -> None:
        self.started_at = started_at
        self.last_event_at = started_at
        self.bytes = 0
        self.rows: list[Row] = []  # plain tuples: invisible to the cyclic GC (see records.Row)
        self.streams: dict[str, int] = {}  # stream id -> rows here
        # What rows said (streamdom/signals.py), by the row's position since the tail began
        # holding the session (`base` = rows dropped since): few rows say anything.
        self.found: list[tuple[int, str, Signals]] = []
        self.base = 0

    def signals(self) -> Signals:
        """What the session's rows here say, all streams folded in order."""
        total = Signals()
        for _, _, sig in self.found:
            total.add(sig)
        return total

    def first_stream(self) -> StreamKey:
        """The stream of the session's first pending row."""
        return self.rows[0][ROW_SESSION], self.rows[0][ROW_STREAM]


class LogTail:
    """Rows logged and not yet archived, by session."""

    def __init__(self) -> None:
        self._sessions: dict[str, PendingRows] = {}
        self.count = 0  # rows held, all sessions
        self.tracker = SignalTracker()  # fed every row once, in each stream's order

    def hold(self, rows: list[Row]) -> None:
        """Keep rows just submitted to the log until a flush archives them."""
        sessions = self._sessions
        feed = self.tracker.feed
        for row in rows:
            sid = row[ROW_SESSION]
            st = sessions.get(sid)
            if st is None:
                st = sessions[sid] = PendingRows(row[ROW_SERVER_TIME])
            st.last_event_at = row[ROW_SERVER_TIME]
            st.bytes += len(row[ROW_DATA])
            stream = row[ROW_STREAM]
            st.streams[stream] = st.streams.get(stream, 0) + 1
            found = feed(sid, row)
            if found is not None:
                st.found.append((st.base + len(st.rows), stream, found))
            st.rows.append(row)
        self.count += len(rows)

    def holds(self, session_id: str) -> bool:
        """Whether a session has rows here."""
        return session_id in self._sessions

    def get(self, session_id: str) -> PendingRows | None:
        """A session's pending rows and figures (live: copy what you keep)."""
        return self._sessions.get(session_id)

    def items(self) -> Iterator[tuple[str, PendingRows]]:
        """(session id, pending rows) of every session here."""
        return iter(self._sessions.items())

    def mark(self) -> dict[str, int]:
        """How many rows each session has now: what a flush that starts now will archive."""
        return {sid: len(st.rows) for sid, st in self._sessions.items()}

    def signals(self, mark: dict[str, int]) -> dict[StreamKey, Signals]:
        """What the rows counted by `mark` say, per stream (for the index rows of their flush)."""
        out: dict[StreamKey, Signals] = {}
        for sid, n in mark.items():
            st = self._sessions[sid]
            for pos, stream, sig in st.found:
                if pos >= st.base + n:
                    break
                key = (sid, stream)
                if key in out:
                    out[key].add(sig)
                else:
                    out[key] = Signals()
                    out[key].add(sig)
        return out

    def drop(self, mark: dict[str, int]) -> None:
        """Forget the rows counted by `mark` (they are in Parquet now); keep what came after."""
        for sid, n in mark.items():
            st = self._sessions[sid]
            for row in st.rows[:n]:
                left = st.streams[row[ROW_STREAM]] - 1
                if left:
                    st.streams[row[ROW_STREAM]] = left
                else:
                    del st.streams[row[ROW_STREAM]]
            st.base += n
            st.found = [f for f in st.found if f[0] >= st.base]
            del st.rows[:n]
            self.count -= n
            if not st.rows:
                del self._sessions[sid]
            else:
                st.started_at = st.rows[0][ROW_SERVER_TIME]
                st.bytes = sum(len(r[ROW_DATA]) for r in st.rows)
