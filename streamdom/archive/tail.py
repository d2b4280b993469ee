"""The log's tail: rows logged but not yet in Parquet, kept in memory per session for reads.

Between two flushes an event is in the write-ahead log (for durability) and here (so the
session list and the events API see it before it reaches Parquet). A flush takes what is here,
writes the log's closed segments to Parquet and then drops exactly what it took.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from operator import itemgetter

from streamdom.records import ROW_DATA, ROW_SERVER_TIME, ROW_SESSION, ROW_STREAM, Row, StreamKey
from streamdom.signals import Signals, SignalTracker

# A session's rows are read for its figures (bytes, streams, signals) once this many wait, or
# when anyone asks: in a loop over many rows rather than at every publish, and in bounded steps
# (a flush's mark reads at most this many rows per session on the IOLoop).
CATCH_UP = 32


class PendingRows:
    """One session's rows in the tail, with running figures for its summary.

    `bytes`, `streams` and `found` cover `rows[:read]`; LogTail brings them up to date before
    anyone sees them (`get`, `items`, `mark`).
    """

    __slots__ = ("bytes", "rows", "streams", "found", "base", "read")

    def __init__(self) -> None:
        self.bytes = 0
        self.rows: list[Row] = []  # plain tuples: invisible to the cyclic GC (see records.Row)
        self.streams: Counter[str] = Counter()  # stream id -> rows here
        # What rows said (streamdom/signals.py), by the row's position since the tail began
        # holding the session (`base` = rows dropped since): few rows say anything.
        self.found: list[tuple[int, str, Signals]] = []
        self.base = 0
        self.read = 0  # rows[:read] are counted in the figures above

    @property
    def started_at(self) -> int:
        """Server time of the session's first pending row."""
        return self.rows[0][ROW_SERVER_TIME]

    @property
    def last_event_at(self) -> int:
        """Server time of the session's last pending row."""
        return self.rows[-1][ROW_SERVER_TIME]

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
        """Keep one stream's rows just submitted to the log (a Batch's) until a flush archives them."""
        sid = rows[0][ROW_SESSION]
        st = self._sessions.get(sid)
        if st is None:
            st = self._sessions[sid] = PendingRows()
        st.rows += rows
        self.count += len(rows)
        if len(st.rows) - st.read >= CATCH_UP:
            self._read(sid, st)

    def _read(self, sid: str, st: PendingRows) -> PendingRows:
        """Bring a session's figures up to its last row (each row is read once, in order)."""
        start = st.read
        if start == len(st.rows):
            return st
        new = st.rows[start:]
        st.read += len(new)
        st.bytes += sum(map(len, map(itemgetter(ROW_DATA), new)))
        st.streams.update(map(itemgetter(ROW_STREAM), new))  # counted in C
        at = st.base + start
        st.found += [(at + i, new[i][ROW_STREAM], sig) for i, sig in self.tracker.feed_rows(sid, new)]
        return st

    def holds(self, session_id: str) -> bool:
        """Whether a session has rows here."""
        return session_id in self._sessions

    def get(self, session_id: str) -> PendingRows | None:
        """A session's pending rows and figures (live: copy what you keep)."""
        st = self._sessions.get(session_id)
        return self._read(session_id, st) if st is not None else None

    def items(self) -> Iterator[tuple[str, PendingRows]]:
        """(session id, pending rows) of every session here."""
        return ((sid, self._read(sid, st)) for sid, st in list(self._sessions.items()))

    def mark(self) -> dict[str, int]:
        """How many rows each session has now: what a flush that starts now will archive."""
        return {sid: len(self._read(sid, st).rows) for sid, st in self._sessions.items()}

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
            gone = st.rows[:n]  # all read: `mark` read them
            st.bytes -= sum(map(len, map(itemgetter(ROW_DATA), gone)))
            for stream, k in Counter(map(itemgetter(ROW_STREAM), gone)).items():
                if st.streams[stream] > k:
                    st.streams[stream] -= k
                else:
                    del st.streams[stream]
            st.base += n
            st.read -= n
            st.found = [f for f in st.found if f[0] >= st.base]
            del st.rows[:n]
            self.count -= n
            if not st.rows:
                del self._sessions[sid]
