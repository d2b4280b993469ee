"""An accepted event as the pipeline holds it: `EventRecord` (relay and log) and `Row` (storage).

These are the stored types; how a frame from a recorder becomes one is ingest's business
(`streamdom.ingest.validate`), kept apart so either can change without the other.
"""

from __future__ import annotations

from dataclasses import dataclass

# A record as a plain tuple of atoms, in the WAL's and the Parquet table's field order: how
# events are held between the log and the archive. CPython's cyclic GC stops tracking such
# tuples (not tuple subclasses such as NamedTuple), so tens of thousands of buffered events add
# nothing to a full collection, which pauses the IOLoop, i.e. the relay.
Row = tuple[str, str, int, int, int, int, str, str | None]
ROW_SESSION, ROW_STREAM, ROW_SEQ, ROW_TYPE, ROW_TIMESTAMP, ROW_SERVER_TIME, ROW_DATA, ROW_EXTRA = range(8)
StreamKey = tuple[str, str]  # (session id, stream id): a recorder stream, numbered from seq 1


def event_json(type_: int, data: str, timestamp: int, extra: str | None) -> str:
    """An event as recorded, re-assembled from its stored parts."""
    head = f'{{"type":{type_},"data":{data},"timestamp":{timestamp}'
    # extra is a JSON object's text: splice its members in after the three known keys.
    return head + ("," + extra[1:-1] if extra else "") + "}"


def row_event_json(row: Row) -> str:
    """The event a stored row holds, as recorded."""
    return event_json(row[ROW_TYPE], row[ROW_DATA], row[ROW_TIMESTAMP], row[ROW_EXTRA])


@dataclass(slots=True)
class EventRecord:
    """One accepted rrweb event with where and when it arrived; the unit of the log and archive."""

    session_id: str
    stream_id: str
    seq: int
    type: int
    timestamp: int
    server_time: int
    data: str  # JSON text of event["data"], strict (as received, lone surrogates as U+FFFD)
    extra: str | None  # JSON text of any other top-level keys, else None

    def event_json(self) -> str:
        """The event as recorded, re-assembled from its stored parts."""
        return event_json(self.type, self.data, self.timestamp, self.extra)

    def row(self) -> Row:
        """The record as a plain tuple (see Row)."""
        return (self.session_id, self.stream_id, self.seq, self.type, self.timestamp,
                self.server_time, self.data, self.extra)


@dataclass(slots=True)
class Batch:
    """The new events of one frame of one recorder stream, validated: the unit of `Bus.publish`.

    Relayed as one frame, logged and acknowledged together. `frame` is the /watch WebSocket
    frame carrying all of them, built once (by ingest) and written as-is to every viewer.
    The events are held as `Row`s, the form the log and the tail keep: built once by ingest,
    with no per-event object on the relay's path (`records` makes EventRecords of them).
    """

    rows: list[Row]  # consecutive seqs of one stream, none already held
    frame: bytes

    @property
    def records(self) -> list[EventRecord]:
        """The batch's events as EventRecords (for tests and tools; the relay reads `rows`)."""
        return [EventRecord(*row) for row in self.rows]
