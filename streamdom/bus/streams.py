"""Per recorder stream bookkeeping: high-water marks and who to acknowledge.

A stream is one page load of one session, numbered from seq 1 by its recorder. Two marks per
stream: `received`, the highest seq accepted (relayed; anything at or below is a resend), and
`durable`, the highest seq the log has made durable (what acks report). Every connection of
the same stream shares them. The bus owns this table; ingest reads the marks through its
`Producer` and never writes them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from streamdom.records import StreamKey

AckListener = Callable[[int], None]


class StreamMarks:
    """The marks of one stream, its page URL and user agent, and its connections' ack listeners."""

    __slots__ = ("received", "durable", "url", "user_agent", "listeners")

    def __init__(self, high: int, url: str, user_agent: str) -> None:
        self.received = high  # highest seq accepted (relayed)
        self.durable = high  # highest seq made durable by the log
        self.url = url
        self.user_agent = user_agent
        self.listeners: set[AckListener] = set()


class StreamTable:
    """Every stream this process has seen recently, by (session id, stream id)."""

    def __init__(self) -> None:
        self._marks: dict[StreamKey, StreamMarks] = {}

    def get(self, key: StreamKey) -> StreamMarks | None:
        """The marks of a stream, if known."""
        return self._marks.get(key)

    def open(self, key: StreamKey, url: str, user_agent: str, archived_high: int) -> StreamMarks:
        """The marks of a stream, created at `archived_high` (what the archive holds) if new."""
        marks = self._marks.get(key)
        if marks is None:
            marks = self._marks[key] = StreamMarks(archived_high, url, user_agent)
        else:  # another connection of the stream got here first, or the archive knows more
            marks.received = max(marks.received, archived_high)
            marks.durable = max(marks.durable, archived_high)
            marks.url = marks.url or url
            marks.user_agent = marks.user_agent or user_agent
        return marks

    def made_durable(self, highs: dict[StreamKey, int]) -> None:
        """The log made these seqs durable (highest per stream): move the marks, ack listeners."""
        for key, seq in highs.items():
            marks = self._marks.get(key)
            if marks is None:
                continue
            if seq > marks.durable:
                marks.durable = seq
            for listener in tuple(marks.listeners):
                listener(marks.durable)

    def info(self, session_ids: Iterable[str]) -> dict[StreamKey, tuple[str, str]]:
        """(url, user agent) of every known stream of these sessions, for the index."""
        wanted = set(session_ids)
        return {k: (m.url, m.user_agent) for k, m in self._marks.items() if k[0] in wanted}

    def forget_idle(self, busy: Callable[[str], bool]) -> int:
        """Drop streams with no connection whose session is not `busy`; return how many.

        The table is a cache: a stream that comes back is looked up in the archive again.
        """
        idle = [k for k, m in self._marks.items() if not m.listeners and not busy(k[0])]
        for key in idle:
            del self._marks[key]
        return len(idle)
