"""Per-session in-memory ring of recent events: always the latest full snapshot and all after it."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator

from streamdom.protocol import EventRecord

META, FULL_SNAPSHOT = 4, 2


class RingBuffer:
    """Events of one session split into segments, each starting at a Meta/FullSnapshot pair.

    The newest segment that contains a full snapshot is never dropped, so a viewer who joins
    late always gets a playable start; older segments are kept while the ring is under its
    byte budget, for rewinds that need no disk.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.segments: deque[list[EventRecord]] = deque([[]])
        self._has_snapshot: deque[bool] = deque([False])
        self.nbytes = 0

    def append(self, rec: EventRecord) -> None:
        """Add one event, opening a new segment at a snapshot boundary and trimming old segments."""
        current = self.segments[-1]
        starts_segment = rec.type == META or (
            rec.type == FULL_SNAPSHOT and not (current and current[-1].type == META
                                                and current[-1].stream_id == rec.stream_id)
        )
        if starts_segment and current:
            self.segments.append([])
            self._has_snapshot.append(False)
            current = self.segments[-1]
        current.append(rec)
        if rec.type == FULL_SNAPSHOT:
            self._has_snapshot[-1] = True
        self.nbytes += rec.nbytes
        self._trim()

    def _trim(self) -> None:
        keep_from = self._latest_playable()
        while self.nbytes > self.max_bytes and keep_from > 0:
            dropped = self.segments.popleft()
            self._has_snapshot.popleft()
            self.nbytes -= sum(r.nbytes for r in dropped)
            keep_from -= 1

    def _latest_playable(self) -> int:
        for i in range(len(self.segments) - 1, -1, -1):
            if self._has_snapshot[i]:
                return i
        return 0

    def backlog(self) -> list[EventRecord]:
        """Events from the latest full snapshot (with its Meta event) to the newest."""
        start = self._latest_playable()
        out: list[EventRecord] = []
        for i in range(start, len(self.segments)):
            out.extend(self.segments[i])
        return out

    def __iter__(self) -> Iterator[EventRecord]:
        for seg in self.segments:
            yield from seg

    def __len__(self) -> int:
        return sum(len(s) for s in self.segments)
