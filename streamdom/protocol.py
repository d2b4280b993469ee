"""The wire protocol of /ingest and /watch (docs/PROTOCOL.md): frame parsing, validation, close codes."""

from __future__ import annotations

import json
import re
import struct
import time
from dataclasses import dataclass
from typing import Any

# WebSocket close codes (documented in docs/PROTOCOL.md).
CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_TOO_BIG = 1009
CLOSE_MALFORMED = 4400
CLOSE_BAD_KEY = 4401
CLOSE_ORIGIN = 4403
CLOSE_TOO_MANY_SESSIONS = 4408
CLOSE_RATE_LIMIT = 4429
CLOSE_STORAGE = 4507

ID_RE = re.compile(r"^[A-Za-z0-9._:@-]{1,128}$")
MAX_URL = 2048
MAX_UA = 512


class ProtocolError(Exception):
    """A frame that breaks the protocol; `code` is the WebSocket close code to answer with."""

    def __init__(self, reason: str, code: int = CLOSE_MALFORMED) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def now_ms() -> int:
    """Server wall clock in ms since the epoch."""
    return time.time_ns() // 1_000_000


def valid_id(value: object) -> bool:
    """Whether a session or stream id has the allowed format."""
    return isinstance(value, str) and ID_RE.match(value) is not None


# A record as a plain tuple of atoms, in the WAL's field order: how storage holds events between
# flushes. CPython's cyclic GC stops tracking such tuples, so tens of thousands of buffered
# events add nothing to a full collection (a pause of the IOLoop, i.e. of the relay).
Row = tuple[str, str, int, int, int, int, str, str | None]
SID, STREAM, SEQ, TYPE, TS, SERVER_TIME, DATA, EXTRA = range(8)


def event_json(type_: int, data: str, timestamp: int, extra: str | None) -> str:
    """An event as recorded, re-assembled from its stored parts."""
    head = f'{{"type":{type_},"data":{data},"timestamp":{timestamp}'
    # extra is a JSON object's text: splice its members in after the three known keys.
    return head + ("," + extra[1:-1] if extra else "") + "}"


@dataclass(slots=True)
class EventRecord:
    """One accepted rrweb event with where and when it arrived; the unit of relay and archive."""

    session_id: str
    stream_id: str
    seq: int
    type: int
    timestamp: int
    server_time: int
    data: str  # JSON text of event["data"]
    extra: str | None  # JSON text of any other top-level keys, else None
    frame: bytes  # the whole /watch WebSocket frame, built once and written to every viewer

    def event_json(self) -> str:
        """The event as recorded, re-assembled from its stored parts."""
        return event_json(self.type, self.data, self.timestamp, self.extra)

    def row(self) -> Row:
        """The record without its frame, as a plain tuple (see Row)."""
        return (self.session_id, self.stream_id, self.seq, self.type, self.timestamp,
                self.server_time, self.data, self.extra)


def parse_frame(text: str | bytes) -> dict[str, Any]:
    """Decode one client frame into a dict, refusing non-JSON, non-objects and absurd nesting."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ProtocolError("frame is not UTF-8") from exc
    try:
        msg = json.loads(text)
    except RecursionError as exc:
        # The C decoder stops at the interpreter's recursion limit (about 1000 levels); rrweb
        # events nest far less, and a pre-scan in Python would cost more than the whole parse.
        raise ProtocolError("frame nested deeper than the server allows") from exc
    except ValueError as exc:
        raise ProtocolError("frame is not valid JSON") from exc
    if not isinstance(msg, dict) or not isinstance(msg.get("type"), str):
        raise ProtocolError("frame must be a JSON object with a string 'type'")
    return msg


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
    rec.frame = ws_text_frame(
        f'{{"type":"event","streamId":"{stream_id}","seq":{seq},"recvAt":{server_time},'
        f'"event":{rec.event_json()}}}'
    )
    return rec


def ws_text_frame(text: str) -> bytes:
    """A complete unmasked WebSocket text frame (server to client) carrying `text`.

    Built once per message and written as-is to every viewer's stream, so fan-out costs one
    socket write per viewer: no per-viewer UTF-8 encoding or framing (RFC 6455, section 5.2).
    """
    payload = text.encode()
    n = len(payload)
    if n < 126:
        return bytes((0x81, n)) + payload
    if n < 65536:
        return struct.pack("!BBH", 0x81, 126, n) + payload
    return struct.pack("!BBQ", 0x81, 127, n) + payload


def frame_text(frame: bytes) -> str:
    """The text carried by a frame built by ws_text_frame."""
    n = frame[1]
    return frame[2 + (2 if n == 126 else 8 if n == 127 else 0):].decode()


def pong(msg: dict[str, Any], t1: int) -> str:
    """The server's half of the NTP-style exchange: echo t0, add receive and send times."""
    t0 = msg.get("t0")
    if not isinstance(t0, int | float) or isinstance(t0, bool):
        raise ProtocolError("ping.t0 must be a number")
    return json.dumps({"type": "pong", "t0": t0, "t1": t1, "t2": now_ms()})


def dumps(obj: object) -> str:
    """Compact JSON for frames and API bodies."""
    return _dumps(obj)
