"""Test helpers: a real StreamDOM server in a subprocess and real WebSocket clients."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from tornado.websocket import WebSocketClientConnection, websocket_connect

ROOT = Path(__file__).resolve().parent.parent


class ServerProcess:
    """`python -m streamdom` on a free loopback port, as a user would run it.

    Its output goes to a log file next to the data dir (kept across restarts): a pipe that
    nobody reads during a long run would fill up and stall the server on its next log line.
    """

    def __init__(self, data_dir: Path, *args: str, env: dict[str, str] | None = None) -> None:
        self.data_dir = Path(data_dir)
        self.args = list(args)
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.log_path = self.data_dir.parent / (self.data_dir.name + ".log")
        self._log: Any = None

    def start(self, port: int = 0, timeout: float = 60) -> ServerProcess:
        """Start (on `port`, else the last one, else a free one) and wait for the 'listening' line."""
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "streamdom", "--port", str(port or self.port),
               "--data-dir", str(self.data_dir), *self.args]
        self._close_log()
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed when the process ends
        since = self._log.tell()  # this start's 'listening' line, not an earlier one's
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=self.env, stdout=self._log,
                                     stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with open(self.log_path, "rb") as f:
                f.seek(since)
                m = re.search(rb"StreamDOM listening on http://[^:]+:(\d+)", f.read())
            if m:
                self.port = int(m.group(1))
                return self
            if self.proc.poll() is not None:
                raise RuntimeError("server exited:\n" + self.logs())
            time.sleep(0.02)
        raise RuntimeError("server did not start:\n" + self.logs())

    def logs(self) -> str:
        """Everything the server printed so far, over all its starts."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def stop(self, timeout: float = 60) -> int:
        """SIGTERM and wait: the clean shutdown path. Returns the exit code."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._close_log()
        return self.proc.returncode

    def kill(self) -> None:
        """kill -9: the crash path."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)
        self._close_log()

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    @property
    def http(self) -> str:
        """Base HTTP URL."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        """Base WebSocket URL."""
        return f"ws://127.0.0.1:{self.port}"

    def get_json(self, path: str) -> Any:
        """GET a JSON document."""
        with urllib.request.urlopen(self.http + path, timeout=10) as r:
            return json.loads(r.read())


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

    def __init__(self, ws_url: str, session_id: str, stream_id: str = "s1") -> None:
        self.url = ws_url + "/ingest"
        self.session_id, self.stream_id = session_id, stream_id
        self.conn: WebSocketClientConnection | None = None
        self.acked = 0
        self.welcome: dict[str, Any] = {}

    async def connect(self, url_suffix: str = "") -> dict[str, Any]:
        """Open and say hello; return the welcome."""
        self.conn = await websocket_connect(self.url + url_suffix)
        await self.send({"type": "hello", "sessionId": self.session_id, "streamId": self.stream_id,
                         "url": "http://app.test/", "userAgent": "pytest"})
        self.welcome = await self.recv()
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


def record(ws_url: str, session_id: str, events: list[dict]) -> None:
    """Record `events` as one stream (seqs 1..n) and return once all are acknowledged."""
    async def go() -> None:
        rec = Recorder(ws_url, session_id)
        await rec.connect()
        await rec.send_events(1, events)
        await rec.wait_ack(len(events))
        rec.close()

    run_async(go())


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


def wait_for(pred, timeout: float = 10, interval: float = 0.05, what: str = "condition") -> Any:
    """Poll until pred() is truthy."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}")


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
