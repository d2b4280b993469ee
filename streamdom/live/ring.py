"""Per-session in-memory ring of recent events: always the latest full snapshot and all after it."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator

from streamdom.records import ROW_SEQ, ROW_SERVER_TIME, ROW_STREAM, ROW_TYPE, Batch
from streamdom.rrweb import EventType

# Module constants, not attribute lookups on the enum, on the relay's path.
META, FULL_SNAPSHOT = EventType.Meta, EventType.FullSnapshot

# An entry is one relayed batch (its frame) as a plain tuple of atoms: CPython's cyclic GC stops
# tracking such tuples, so a few hundred thousand buffered events do not make every full
# collection (a relay stall) longer. ENTRY_TYPE is the type of the batch's last event.
Entry = tuple[int, str, int, int, bytes]
ENTRY_TYPE, ENTRY_STREAM, ENTRY_SEQ, ENTRY_SERVER_TIME, ENTRY_FRAME = range(5)


class RingBuffer:
    """Events of one session split into segments, each starting at a Meta/FullSnapshot pair.

    The newest segment that contains a full snapshot is never dropped, so a viewer who joins
    late always gets a playable start; older segments are kept while the ring is under its
    byte budget and they are younger than `max_age_ms` (so memory levels off at a session's
    rate times that age instead of growing to the budget).
    """

    def __init__(self, max_bytes: int, max_age_ms: int) -> None:
        self.max_bytes = max_bytes
        self.max_age_ms = max_age_ms
        self.segments: deque[list[Entry]] = deque([[]])
        self._has_snapshot: deque[bool] = deque([False])
        self.nbytes = 0

    def keep(self, batch: Batch) -> None:
        """Keep one relayed batch for late joiners and trim old segments.

        A batch opens a new segment when it starts at a snapshot: a Meta event, or a
        FullSnapshot not right after its stream's Meta (ingest cuts batches there).
        """
        current = self.segments[-1]
        rows = batch.rows
        first, last = rows[0], rows[-1]
        first_type, stream = first[ROW_TYPE], first[ROW_STREAM]
        starts_segment = first_type == META or (
            first_type == FULL_SNAPSHOT and not (current and current[-1][ENTRY_TYPE] == META
                                                 and current[-1][ENTRY_STREAM] == stream))
        if starts_segment and current:
            self.segments.append([])
            self._has_snapshot.append(False)
            current = self.segments[-1]
        frame = batch.frame
        current.append((last[ROW_TYPE], stream, first[ROW_SEQ], last[ROW_SERVER_TIME], frame))
        if first_type == FULL_SNAPSHOT or (len(rows) > 1 and any(r[ROW_TYPE] == FULL_SNAPSHOT for r in rows)):
            self._has_snapshot[-1] = True
        self.nbytes += len(frame)
        too_old = last[ROW_SERVER_TIME] - self.max_age_ms
        segments = self.segments
        # Nothing to drop (the common case, checked here without a scan or a call): a single
        # segment, or an oldest one that is young enough while the ring is within its budget.
        if len(segments) > 1 and (self.nbytes > self.max_bytes
                                  or segments[0][-1][ENTRY_SERVER_TIME] < too_old):
            self._trim(too_old)

    def _trim(self, too_old: int) -> None:
        keep_from = self._latest_playable()
        while keep_from > 0 and (self.nbytes > self.max_bytes
                                 or self.segments[0][-1][ENTRY_SERVER_TIME] < too_old):
            dropped = self.segments.popleft()
            self._has_snapshot.popleft()
            self.nbytes -= sum(len(e[ENTRY_FRAME]) for e in dropped)
            keep_from -= 1

    def _latest_playable(self) -> int:
        for i in range(len(self.segments) - 1, -1, -1):
            if self._has_snapshot[i]:
                return i
        return 0

    def backlog(self) -> list[Entry]:
        """Events from the latest full snapshot (with its Meta event) to the newest."""
        start = self._latest_playable()
        out: list[Entry] = []
        for i in range(start, len(self.segments)):
            out.extend(self.segments[i])
        return out

    def __iter__(self) -> Iterator[Entry]:
        for seg in self.segments:
            yield from seg

    def __len__(self) -> int:
        return sum(len(s) for s in self.segments)
