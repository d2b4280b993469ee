"""What travels on the WebSockets (docs/PROTOCOL.md): close codes, frame decoding, prebuilt frames.

Shared by both ends of the pipeline: ingest decodes recorders' frames with `parse_frame`, and
the relay writes frames built once by `ws_text_frame` to every viewer. Validation of what a
recorder sends (hello, events) is ingest's job: `streamdom.ingest.validate`.
"""

from __future__ import annotations

import json
import re
import struct
import time
from enum import IntEnum
from typing import Any, Protocol


class CloseCode(IntEnum):
    """Every WebSocket close code the server sends (the table in docs/PROTOCOL.md)."""

    NORMAL = 1000  # /watch of a session that is not live: hello, then this
    GOING_AWAY = 1001  # server shutting down: reconnect with backoff
    TOO_FAR_BEHIND = 1008  # /updates viewer that stopped reading (policy violation)
    TOO_BIG = 1009  # a frame over --max-message-bytes (sent by Tornado itself)
    MALFORMED = 4400  # not strict JSON, wrong shape, hello missing or invalid
    BAD_TOKEN = 4401  # --ingest-secret is set and the hello's token is missing, expired or wrong
    LOGGED_OUT = 4403  # /watch, /updates: the viewer's login was revoked (log in again)
    UNKNOWN_SESSION = 4404  # /watch of a session the server has never seen
    TOO_MANY_SESSIONS = 4408  # sessions per IP
    STREAM_TAKEN = 4409  # the stream is another connection's (resume secret missing or wrong),
    # or its seq jumped too far: the recorder goes on as a new stream
    RATE_LIMIT = 4429  # events per second per connection or per IP
    STORAGE = 4507  # the log cannot take events (disk full, write failing, NATS down): nothing acked


class FrameSink(Protocol):
    """Anything that takes frames for a viewer: a /watch or /updates connection."""

    def send_frame(self, frame: str | bytes, backlog: bool = False) -> None:
        """Queue one frame, text or prebuilt (a backlog is sent in full, never counted as lag);
        never blocks."""


ID_RE = re.compile(r"[A-Za-z0-9._:@-]{1,128}")  # matched whole: `$` would let "id\n" through


class ProtocolError(Exception):
    """A frame that breaks the protocol; `code` is the WebSocket close code to answer with."""

    def __init__(self, reason: str, code: int = CloseCode.MALFORMED) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def now_ms() -> int:
    """Server wall clock in ms since the epoch."""
    return time.time_ns() // 1_000_000


def valid_id(value: object) -> bool:
    """Whether a session or stream id has the allowed format."""
    return isinstance(value, str) and ID_RE.fullmatch(value) is not None


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


def pong(msg: dict[str, Any], t1: int) -> str:
    """The server's half of the NTP-style exchange: echo t0, add receive and send times."""
    t0 = msg.get("t0")
    if not isinstance(t0, int | float) or isinstance(t0, bool):
        raise ProtocolError("ping.t0 must be a number")
    return json.dumps({"type": "pong", "t0": t0, "t1": t1, "t2": now_ms()})


def watch_hello(session_id: str, live: bool) -> str:
    """The first frame of a /watch connection."""
    return dumps({"type": "hello", "sessionId": session_id, "live": live, "serverTime": now_ms()})


def ws_text_frame(text: str) -> bytes:
    """A complete unmasked WebSocket text frame (server to client) carrying `text`.

    Built once per message and written as-is to every viewer's stream, so fan-out costs one
    socket write per viewer: no per-viewer UTF-8 encoding or framing (RFC 6455, section 5.2).
    """
    payload = text.encode()
    n = len(payload)
    if n < 126:
        return _SHORT_HEADS[n] + payload
    if n < 65536:
        return _head16(0x81, 126, n) + payload
    return _head64(0x81, 127, n) + payload


_SHORT_HEADS = [bytes((0x81, n)) for n in range(126)]
_head16, _head64 = struct.Struct("!BBH").pack, struct.Struct("!BBQ").pack


def frame_text(frame: bytes) -> str:
    """The text carried by a frame built by ws_text_frame."""
    n = frame[1]
    return frame[2 + (2 if n == 126 else 8 if n == 127 else 0):].decode()


_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def dumps(obj: object) -> str:
    """Compact JSON for frames and API bodies."""
    return _dumps(obj)
