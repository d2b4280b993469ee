"""Where an event is validated: a recorder's hello and events frames, checked and turned into records.

Everything a recorder sends is hostile until it passes here (decoding: `frames.py`); what
passes is a `Batch` of `EventRecord`s whose /watch frame is encoded once, here, for every viewer.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from streamdom.ingest.frames import EventsSpan, clean_str, parse_frame
from streamdom.records import (
    ROW_SEQ,
    ROW_SERVER_TIME,
    ROW_STREAM,
    ROW_TYPE,
    Batch,
    EventRecord,
    Row,
    row_event_json,
)
from streamdom.rrweb import EventType
from streamdom.wire import ProtocolError, valid_id, ws_text_frame

MAX_URL = 2048
MAX_UA = 512


MAX_SEQ_JUMP = 1_000_000  # how far past the highest seq received a frame may start


@dataclass(slots=True)
class Hello:
    """The first frame of a recorder connection."""

    session_id: str
    stream_id: str
    url: str
    user_agent: str
    token: str | None  # ingest token, when the server has an ingest secret
    resume: str | None  # the stream's resume secret, when the recorder reconnects


def parse_hello(msg: dict[str, Any]) -> Hello:
    """Validate a hello frame."""
    if msg.get("type") != "hello":
        raise ProtocolError("first frame must be hello")
    sid, stream = msg.get("sessionId"), msg.get("streamId")
    if not valid_id(sid):
        raise ProtocolError("sessionId must be 1-128 chars of [A-Za-z0-9._:@-]")
    if not valid_id(stream):
        raise ProtocolError("streamId must be 1-128 chars of [A-Za-z0-9._:@-]")
    url, ua = msg.get("url", ""), msg.get("userAgent", "")
    if not isinstance(url, str) or not isinstance(ua, str):
        raise ProtocolError("url and userAgent must be strings")
    token, resume = msg.get("token"), msg.get("resume")
    if not isinstance(token, str | None) or not isinstance(resume, str | None):
        raise ProtocolError("token and resume must be strings")
    return Hello(sid, stream, url[:MAX_URL], ua[:MAX_UA], token, resume)  # type: ignore[arg-type]


def first_seq(seq: object) -> int:
    """An events frame's first seq, checked: an integer from 1 to 2**53."""
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 1 or seq > 2**53:
        raise ProtocolError("events.seq must be an integer >= 1")
    return seq


def parse_events(msg: dict[str, Any]) -> tuple[int, EventsSpan]:
    """Validate an events frame (decoded by frames.parse_frame): a first seq ≥ 1 and some events."""
    seq, span = first_seq(msg.get("seq")), msg.get("events")
    if not isinstance(span, EventsSpan) or not span.events:
        raise ProtocolError("events.events must be a non-empty array")
    return seq, span


def make_batches(session_id: str, stream_id: str, seq: int, span: EventsSpan, skip: int,
                 server_time: int) -> list[Batch]:
    """The batches of a frame's events numbered from `seq`, but for the first `skip` (held already).

    Usually one, whose watch frame splices the events in as they came when they need no
    rewriting. A frame that holds a checkout after other events (a click, then Meta and
    FullSnapshot) is cut before the snapshot, so a late joiner's backlog starts right at it.
    """
    events = span.events
    if len(events) == 1 and not skip:  # most frames (one event each on real apps): no cut, no loop
        e = events[0]
        row = (session_id, stream_id, seq, e.type, e.timestamp, server_time, e.data, e.extra)
        return [Batch([row], _one_event_frame(row, span.text))]
    raw = events[skip:] if skip else events
    first = seq + skip
    rows = [(session_id, stream_id, first + i, e.type, e.timestamp, server_time, e.data, e.extra)
            for i, e in enumerate(raw)]
    parts = _cut(rows)
    if len(parts) == 1:
        return [Batch(rows, watch_frame(rows, span.text if not skip else None))]
    return [batch_of_rows(part) for part in parts]


def batches_from_rows(rows: list[Row]) -> list[Batch]:
    """Rows read back from a log (another node's events, in cluster mode) as relayable batches:
    runs of consecutive seqs of one stream, cut at snapshots like a frame's."""
    out: list[Batch] = []
    run: list[Row] = []
    for row in rows:
        if run and (row[ROW_STREAM] != run[-1][ROW_STREAM] or row[ROW_SEQ] != run[-1][ROW_SEQ] + 1):
            out += [batch_of_rows(part) for part in _cut(run)]
            run = []
        run.append(row)
    if run:
        out += [batch_of_rows(part) for part in _cut(run)]
    return out


_SNAPSHOT_TYPES = frozenset((int(EventType.Meta), int(EventType.FullSnapshot)))


def _cut(rows: list[Row]) -> list[list[Row]]:
    """Rows cut before every snapshot that does not start them (see make_batches)."""
    if _SNAPSHOT_TYPES.isdisjoint([r[ROW_TYPE] for r in rows[1:]]):  # most frames: no snapshot
        return [rows]
    cuts = [i for i in range(1, len(rows)) if _starts_snapshot(rows, i)]
    if not cuts:
        return [rows]
    bounds = [0, *cuts, len(rows)]
    return [rows[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]


def _starts_snapshot(rows: list[Row], i: int) -> bool:
    t = rows[i][ROW_TYPE]
    return t == EventType.Meta or (t == EventType.FullSnapshot and rows[i - 1][ROW_TYPE] != EventType.Meta)


def _one_event_frame(row: Row, events_text: str | None) -> bytes:
    """The /watch frame of one event (protocol v1's `event` frame); `events_text`: the frame's
    `events` array as received, when it needs no rewriting (then it is `[` + the event as
    row_event_json would write it + `]`, unless blanks surround the event)."""
    if events_text is not None and events_text[1] == "{" and events_text[-2] == "}":
        event = events_text[1:-1]
    else:
        event = row_event_json(row)
    return ws_text_frame(f'{{"type":"event","streamId":"{row[ROW_STREAM]}","seq":{row[ROW_SEQ]},'
                         f'"recvAt":{row[ROW_SERVER_TIME]},"event":{event}}}')


def watch_frame(rows: list[Row], events_text: str | None = None) -> bytes:
    """The /watch frame of consecutive rows of one stream (`events_text`: their JSON array).

    One event goes as an `event` frame (protocol v1), several as one `events` frame (v2).
    """
    if len(rows) == 1:
        return _one_event_frame(rows[0], events_text)
    r = rows[0]
    if events_text is None:
        events_text = "[" + ",".join(map(row_event_json, rows)) + "]"
    return ws_text_frame(f'{{"type":"events","streamId":"{r[ROW_STREAM]}","seq":{r[ROW_SEQ]},'
                         f'"recvAt":{r[ROW_SERVER_TIME]},"events":{events_text}}}')


def batch_of_rows(rows: list[Row]) -> Batch:
    """A batch of consecutive rows of one stream, with its watch frame."""
    return Batch(rows, watch_frame(rows))


def make_record(session_id: str, stream_id: str, seq: int, ev: dict[str, Any], server_time: int) -> EventRecord:
    """The record of one event given as a dict (for tests and benchmarks; ingest decodes frames)."""
    text = clean_str(json.dumps({"type": "events", "seq": seq, "events": [ev]}, separators=(",", ":"),
                                ensure_ascii=False, allow_nan=True))
    _, span = parse_events(parse_frame(text))
    return make_batches(session_id, stream_id, seq, span, 0, server_time)[0].records[0]


def batch_of(records: list[EventRecord]) -> Batch:
    """A batch of records made by make_record (for tests and benchmarks)."""
    return batch_of_rows([r.row() for r in records])
