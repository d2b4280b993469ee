"""Where an event is validated: a recorder's hello and events frames, checked and turned into records.

Everything a recorder sends is hostile until it passes here; what passes is an `EventRecord`
whose /watch frame is encoded once, here, for every viewer.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from streamdom.records import Batch, EventRecord, Row
from streamdom.wire import ProtocolError, valid_id, ws_text_frame

MAX_URL = 2048
MAX_UA = 512


@dataclass(slots=True)
class Hello:
    """The first frame of a recorder connection."""

    session_id: str
    stream_id: str
    url: str
    user_agent: str


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
    return Hello(sid, stream, url[:MAX_URL], ua[:MAX_UA])  # type: ignore[arg-type]


def parse_events(msg: dict[str, Any]) -> tuple[int, list[dict[str, Any]]]:
    """Validate an events frame: a first seq ≥ 1 and a non-empty list of well-shaped rrweb events."""
    seq, events = msg.get("seq"), msg.get("events")
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 1 or seq > 2**53:
        raise ProtocolError("events.seq must be an integer >= 1")
    if not isinstance(events, list) or not events:
        raise ProtocolError("events.events must be a non-empty array")
    for ev in events:
        check_event(ev)
    return seq, events


def check_event(ev: object) -> None:
    """Raise ProtocolError unless `ev` looks like an rrweb event: int type, numeric timestamp, data."""
    if not isinstance(ev, dict):
        raise ProtocolError("each event must be an object")
    t, ts = ev.get("type"), ev.get("timestamp")
    if not isinstance(t, int) or isinstance(t, bool) or not 0 <= t <= 100:
        raise ProtocolError("event.type must be an integer 0-100")
    if not isinstance(ts, int | float) or isinstance(ts, bool) or not 0 <= ts < 2**53:
        raise ProtocolError("event.timestamp must be a non-negative number")
    if "data" not in ev or not isinstance(ev["data"], dict | list):
        raise ProtocolError("event.data must be an object")


_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
_dumps_ascii = json.JSONEncoder(separators=(",", ":")).encode


def make_record(session_id: str, stream_id: str, seq: int, ev: dict[str, Any], server_time: int) -> EventRecord:
    """Build the record of an accepted event; its watch frame is encoded here, once."""
    try:
        return _record(session_id, stream_id, seq, ev, server_time, _dumps)
    except UnicodeEncodeError:
        # A lone surrogate (a text cut inside an emoji, as pages do) has no UTF-8 form: keep it
        # as a \u escape, which browsers and Parquet take and which decodes to the same string.
        return _record(session_id, stream_id, seq, ev, server_time, _dumps_ascii)
    except RecursionError as exc:  # decodable just below the limit, not re-encodable
        raise ProtocolError("event nested deeper than the server allows") from exc


def _record(session_id: str, stream_id: str, seq: int, ev: dict[str, Any], server_time: int,
            dumps: Any) -> EventRecord:
    data = dumps(ev["data"])
    rest = {k: v for k, v in ev.items() if k not in ("type", "data", "timestamp")}
    extra = dumps(rest) if rest else None
    rec = EventRecord(session_id, stream_id, seq, ev["type"], int(ev["timestamp"]), server_time,
                      data, extra, b"")
    rec.frame = watch_frame(rec)
    return rec


def watch_frame(rec: EventRecord) -> bytes:
    """The /watch frame of a record, built once and written to every watcher."""
    return ws_text_frame(
        f'{{"type":"event","streamId":"{rec.stream_id}","seq":{rec.seq},"recvAt":{rec.server_time},'
        f'"event":{rec.event_json()}}}'
    )


def record_from_row(row: Row) -> EventRecord:
    """The record of a row read back from a log (another node's events, in cluster mode)."""
    rec = EventRecord(*row, b"")
    rec.frame = watch_frame(rec)
    return rec


def make_batch(session_id: str, stream_id: str, seq: int, events: list[dict[str, Any]],
               server_time: int) -> Batch:
    """The batch of records of validated events numbered from `seq`."""
    return Batch([make_record(session_id, stream_id, seq + i, ev, server_time)
                  for i, ev in enumerate(events)])
