"""Test helpers: real WebSocket clients, event factories, the tests' server configuration."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

from tornado.httpclient import HTTPRequest
from tornado.websocket import WebSocketClientConnection, websocket_connect

from streamdom.config import Config
from streamdom.ingest.frames import clean_str

# Short waits for test servers: flushes, the grace period after a recorder leaves, the WAL's
# group commit and acks (each wait for an ack costs about one of each of the last two). The
# flusher at nice 10, not SCHED_IDLE: on a machine busy with other tests an idle-class flusher
# gets almost no CPU, and tests waiting for the archive waited minutes (the production default
# favours the live relay over flushes; no test measures that).
TEST_SETTINGS: dict[str, Any] = {"flush_interval": 0.5, "grace_seconds": 0.5,
                                 "wal_sync_interval": 0.005, "ack_interval": 0.02,
                                 "flusher_priority": "low"}
TEST_SERVER_ARGS = tuple(arg for name, value in TEST_SETTINGS.items()
                         for arg in (f"--{name.replace('_', '-')}", str(value)))


def server_config(data_dir: Path, **changes: Any) -> Config:
    """The Config of an in-process test server: TEST_SETTINGS, plus `changes`."""
    return Config(data_dir=data_dir, **{**TEST_SETTINGS, **changes})


def event(t: int, ts: int, **data: Any) -> dict[str, Any]:
    """A minimal rrweb-shaped event."""
    return {"type": t, "data": data, "timestamp": ts}


def session_events(n: int, t0: int = 1_700_000_000_000, href: str = "http://app.test/") -> list[dict]:
    """Meta + full snapshot + n-2 incremental events, the shape rrweb emits."""
    evs = [event(4, t0, href=href, width=800, height=600),
           event(2, t0 + 1, node={"type": 0, "childNodes": [], "id": 1}, initialOffset={"left": 0, "top": 0})]
    for i in range(max(0, n - 2)):
        evs.append(event(3, t0 + 2 + i, source=2, type=2, id=i, x=i, y=i))
    return evs


class Recorder:
    """A real WebSocket client speaking the ingest protocol."""

    def __init__(self, ws_url: str, session_id: str, stream_id: str = "s1", resume: str | None = None,
                 token: str | None = None, source: str | None = None) -> None:
        self.url = ws_url + "/ingest"
        self.source = source  # the client address to connect from (127.0.0.x), None: any
        self.session_id, self.stream_id = session_id, stream_id
        self.resume = resume  # the stream's resume secret: from the first welcome, kept after
        self.token = token
        self.conn: WebSocketClientConnection | None = None
        self.acked = 0
        self.welcome: dict[str, Any] = {}

    async def connect(self, url_suffix: str = "") -> dict[str, Any]:
        """Open and say hello (resuming the stream once it has a secret); return the welcome."""
        self.conn = await websocket_connect(HTTPRequest(self.url + url_suffix,
                                                        network_interface=self.source))
        hello = {"type": "hello", "protocol": 2, "sessionId": self.session_id,
                 "streamId": self.stream_id, "url": "http://app.test/", "userAgent": "pytest"}
        if self.resume:
            hello["resume"] = self.resume
        if self.token:
            hello["token"] = self.token
        await self.send(hello)
        self.welcome = await self.recv()
        self.resume = self.welcome.get("resume") or self.resume
        self.acked = max(self.acked, self.welcome.get("ackedSeq", 0))
        return self.welcome

    async def send(self, msg: dict[str, Any] | str) -> None:
        """Send one frame."""
        assert self.conn is not None
        await self.conn.write_message(msg if isinstance(msg, str) else json.dumps(msg))

    async def recv(self, timeout: float = 10) -> dict[str, Any]:
        """Receive one frame (None → closed)."""
        assert self.conn is not None
        raw = await asyncio.wait_for(self.conn.read_message(), timeout)
        return json.loads(raw) if raw is not None else {"type": "__closed__"}

    async def send_events(self, seq: int, events: list[dict]) -> None:
        """Send an events frame."""
        await self.send({"type": "events", "seq": seq, "events": events})

    async def wait_ack(self, seq: int, timeout: float = 10) -> None:
        """Read frames until an ack covering seq arrives."""
        deadline = time.monotonic() + timeout
        while self.acked < seq:
            msg = await self.recv(max(0.01, deadline - time.monotonic()))
            if msg["type"] == "ack":
                self.acked = max(self.acked, msg["seq"])
            elif msg["type"] == "__closed__":
                raise ConnectionError(f"closed: {self.close_code()}")

    def close_code(self) -> tuple[int | None, str | None]:
        """Close code and reason given by the server."""
        assert self.conn is not None
        return self.conn.close_code, self.conn.close_reason

    def close(self) -> None:
        """Close the socket."""
        if self.conn is not None:
            self.conn.close()


def record(ws_url: str, session_id: str, events: list[dict], stream_id: str = "s1") -> str:
    """Record `events` as one stream (seqs 1..n); once all are acknowledged, return its resume secret."""
    async def go() -> str:
        rec = Recorder(ws_url, session_id, stream_id)
        await rec.connect()
        await rec.send_events(1, events)
        await rec.wait_ack(len(events))
        rec.close()
        assert rec.resume
        return rec.resume

    return run_async(go())


def watched(frames: list[dict]) -> list[dict]:
    """The rrweb events carried by /watch frames: one per `event` frame, several per `events`."""
    out: list[dict] = []
    for f in frames:
        if f.get("type") == "event":
            out.append(f["event"])
        elif f.get("type") == "events":
            out.extend(f["events"])
    return out


def last_seq(frame: dict) -> int | None:
    """The seq of the last event a /watch frame carries (None for other frames)."""
    if frame.get("type") == "event":
        return frame["seq"]
    if frame.get("type") == "events":
        return frame["seq"] + len(frame["events"]) - 1
    return None


async def read_until(conn: WebSocketClientConnection, pred, timeout: float = 10) -> list[dict]:
    """Read frames until pred(frame) is true; return all read (last one matching)."""
    out = []
    deadline = time.monotonic() + timeout
    while True:
        raw = await asyncio.wait_for(conn.read_message(), max(0.01, deadline - time.monotonic()))
        if raw is None:
            out.append({"type": "__closed__", "code": conn.close_code, "reason": conn.close_reason})
            return out
        msg = json.loads(raw)
        out.append(msg)
        if pred(msg):
            return out
        if len(out) > 50_000:
            raise AssertionError(f"no matching frame in 50,000 (last: {str(msg)[:200]})")


def wait_for(pred, timeout: float = 10, interval: float = 0.1, what: str = "condition") -> Any:
    """Poll until pred() is truthy (asked once more at the deadline).

    Every 0.1 s: a browser test's pred is a round trip through Playwright's driver and
    Chromium, and polling every 0.05 s cost its test ~10 % more CPU (test_viewer_list).
    """
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(min(interval, left))


def run_async(coro: Any) -> Any:
    """asyncio.run in a fresh thread: Playwright's sync API keeps a loop running in this one."""
    import threading

    result: dict[str, Any] = {}

    def target() -> None:
        try:
            result["value"] = asyncio.run(coro)
        except BaseException as exc:  # re-raised in the caller's thread
            result["error"] = exc

    t = threading.Thread(target=target)
    t.start()
    t.join()
    if "error" in result:
        raise result["error"]
    return result.get("value")


def well_formed(value: object) -> object:
    """What a strict JSON reader gets back of `value` from StreamDOM: lone surrogates as U+FFFD."""
    if isinstance(value, str):
        return clean_str(value)
    if isinstance(value, list):
        return [well_formed(v) for v in value]
    if isinstance(value, dict):
        return {clean_str(k): well_formed(v) for k, v in value.items()}
    return value


def strict_loads(raw: str) -> Any:
    """json.loads that refuses NaN and Infinity, and text that UTF-8 cannot carry."""
    def refuse(name: str) -> None:
        raise ValueError(f"{name} in {raw[:80]!r}")
    value = json.loads(raw, parse_constant=refuse)
    json.dumps(value, ensure_ascii=False).encode()  # raises on a lone surrogate
    return value
