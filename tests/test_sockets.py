"""WebSocket I/O as the server does it after the handshake (web/transport.py): however the bytes
are cut or packed on the wire, every frame is taken once, and RFC 6455's rules still hold; a slow
watcher is held to its bound and drained; a reset peer or a shutdown closes sockets cleanly.

A raw TCP client writes the frames byte by byte where it matters; every wait is on a frame from
the server (a socket timeout is only a safety net against a hang).
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import random
import socket
import struct
from collections.abc import Awaitable

import pytest

from streamdom.testing import InProcessServer
from streamdom.web.handlers.base import FrameSocket, ServerSocket
from streamdom.web.handlers.ingest import IngestHandler
from streamdom.wire import CloseCode
from tests.helpers import event, server_config, session_events, wait_for, watched

MAX_MESSAGE = 300_000
QUEUE = 64 * 1024  # a watcher's send queue bound
TEXT, BINARY, CONT, CLOSE, PING, PONG = 0x1, 0x2, 0x0, 0x8, 0x9, 0xA


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory):
    s = InProcessServer(server_config(tmp_path_factory.mktemp("sockets") / "data",
                                      max_message_bytes=MAX_MESSAGE,
                                      viewer_queue_max_bytes=QUEUE)).start()
    yield s
    s.stop()


def frame(opcode: int, payload: bytes, fin: bool = True, rsv: int = 0) -> bytes:
    """A masked client frame (RFC 6455 5.2)."""
    n = len(payload)
    head = bytes([(0x80 if fin else 0) | rsv | opcode])
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += struct.pack("!BH", 0x80 | 126, n)
    else:
        head += struct.pack("!BQ", 0x80 | 127, n)
    mask = os.urandom(4)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


class RawClient:
    """A WebSocket client on a plain socket: what goes on the wire is exactly what a test writes."""

    def __init__(self, srv: InProcessServer, path: str = "/ingest", then: bytes = b"",
                 rcvbuf: int | None = None) -> None:
        """Connect and upgrade; `then` goes in the same write as the handshake request."""
        self.sock = socket.socket()
        if rcvbuf is not None:  # before connecting: the window it advertises stays small
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(60)
        self.sock.connect(("127.0.0.1", srv.port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{srv.port}\r\n"
                           f"Origin: http://127.0.0.1:{srv.port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                           f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode() + then)
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            self.buf += self._recv()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 101"), head

    def _recv(self) -> bytes:
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("closed by the server")
        return data

    def _exactly(self, n: int) -> bytes:
        while len(self.buf) < n:
            self.buf += self._recv()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read(self) -> tuple[int, bytes]:
        """The next server frame (unmasked, unfragmented) but the server's keep-alive pings,
        which are answered: (opcode, payload)."""
        while True:
            b0, b1 = self._exactly(2)
            n = b1 & 0x7F
            if n == 126:
                n = struct.unpack("!H", self._exactly(2))[0]
            elif n == 127:
                n = struct.unpack("!Q", self._exactly(8))[0]
            op, payload = b0 & 0x0F, self._exactly(n)
            if op != PING:
                return op, payload
            self.sock.sendall(frame(PONG, payload))  # a slow test may outlive the ping interval

    def read_json(self, kind: str) -> dict:
        """Server frames until one of type `kind`."""
        while True:
            op, payload = self.read()
            assert op == TEXT, (op, payload)
            msg = json.loads(payload)
            if msg["type"] == kind:
                return msg

    def wait_ack(self, seq: int) -> None:
        """Server frames until an ack covering `seq`."""
        while self.read_json("ack")["seq"] < seq:
            pass

    def closed(self) -> bool:
        """Whether the server ends the connection (reads until it does)."""
        try:
            while True:
                self.buf = b""
                self._recv()
        except (ConnectionError, OSError):
            return True

    def close(self) -> None:
        """Close the socket."""
        self.sock.close()


def welcomed(srv: InProcessServer, session: str) -> RawClient:
    """A recorder connected to `session` and welcomed."""
    c = RawClient(srv)
    c.sock.sendall(frame(TEXT, hello(session)))
    c.read_json("welcome")
    return c


def hello(sid: str) -> bytes:
    return json.dumps({"type": "hello", "protocol": 2, "sessionId": sid, "streamId": "s1",
                       "url": "http://app.test/", "userAgent": "pytest"}).encode()


def events_frame(seq: int, events: list[dict]) -> bytes:
    return frame(TEXT, json.dumps({"type": "events", "seq": seq, "events": events}).encode())


def test_frames_packed_together_or_cut_anywhere_are_each_taken_once(srv: InProcessServer) -> None:
    evs = session_events(60)
    c = welcomed(srv, "packed")
    wire = [events_frame(i + 1, [e]) for i, e in enumerate(evs)]
    c.sock.sendall(b"".join(wire[:30]))  # thirty frames in one write
    rest = b"".join(wire[30:])
    rng = random.Random(15)
    i = 0
    while i < len(rest):  # the other thirty cut at random places, down to single bytes
        k = rng.choice((1, 1, 2, 3, 7, 50, 300))
        c.sock.sendall(rest[i:i + k])
        i += k
    c.wait_ack(len(evs))
    c.close()
    assert wait_for(lambda: srv.get_json("/api/sessions/packed/events") == evs, what="events stored")


def test_a_frame_larger_than_a_read_arrives_whole(srv: InProcessServer) -> None:
    big = session_events(2)
    big[1]["data"]["node"]["childNodes"] = [{"type": 3, "textContent": "x" * 1000, "id": i + 2}
                                            for i in range(200)]  # ~220 KB, over 3 reads of 64 KB
    c = welcomed(srv, "big")
    data = events_frame(1, big)
    assert 65536 * 3 < len(data) < MAX_MESSAGE
    for i in range(0, len(data), 50_000):
        c.sock.sendall(data[i:i + 50_000])
    c.wait_ack(2)
    c.close()
    assert wait_for(lambda: srv.get_json("/api/sessions/big/events") == big, what="events stored")


def test_binary_frames_are_taken_as_text_frames_are(srv: InProcessServer) -> None:
    """A recorder frame in a binary message is decoded as UTF-8 and taken like a text one: a
    one-event frame (the handler's fast path) and a two-event frame, both stored and acked."""
    evs = session_events(3)
    c = welcomed(srv, "binary")
    c.sock.sendall(frame(BINARY, json.dumps({"type": "events", "seq": 1, "events": evs[:1]}).encode()))
    c.sock.sendall(frame(BINARY, json.dumps({"type": "events", "seq": 2, "events": evs[1:]}).encode()))
    c.wait_ack(3)
    c.close()
    assert wait_for(lambda: srv.get_json("/api/sessions/binary/events") == evs, what="events stored")


def test_fragmented_message_with_a_ping_between_its_fragments(srv: InProcessServer) -> None:
    c = RawClient(srv)
    msg = hello("fragments")
    c.sock.sendall(frame(TEXT, msg[:10], fin=False) + frame(PING, b"p1") + frame(CONT, msg[10:30], fin=False))
    c.sock.sendall(frame(CONT, msg[30:]))
    assert c.read() == (PONG, b"p1")  # the control frame is answered in between
    assert c.read_json("welcome")["protocol"] == 2
    c.close()


def test_frame_over_the_size_limit_is_refused_from_its_header(srv: InProcessServer) -> None:
    c = welcomed(srv, "toobig")
    c.sock.sendall(struct.pack("!BBQ", 0x81, 0x80 | 127, MAX_MESSAGE + 1) + os.urandom(4))  # no payload follows
    op, payload = c.read()
    while op != CLOSE:
        op, payload = c.read()
    assert struct.unpack("!H", payload[:2])[0] == CloseCode.TOO_BIG
    c.close()


@pytest.mark.parametrize("bad", [
    frame(TEXT, b"{}", rsv=0x40),  # a reserved bit: no extension was negotiated
    frame(PING, b"x", fin=False),  # a fragmented control frame
    frame(CONT, b"x"),  # a continuation of nothing
], ids=["reserved-bit", "fragmented-ping", "stray-continuation"])
def test_frames_breaking_rfc_6455_end_the_connection(srv: InProcessServer, bad: bytes) -> None:
    c = welcomed(srv, "rfc")
    c.sock.sendall(bad)
    assert c.closed()
    c.close()


def test_watcher_gets_every_frame_written_straight_to_its_socket(srv: InProcessServer) -> None:
    evs = session_events(40)
    rec = welcomed(srv, "watched")
    rec.sock.sendall(events_frame(1, evs[:2]))
    rec.wait_ack(2)
    w = RawClient(srv, "/watch/watched")
    w.read_json("caughtup")
    rec.sock.sendall(b"".join(events_frame(i + 3, [e]) for i, e in enumerate(evs[2:])))
    got: list[dict] = []
    while len(got) < len(evs) - 2:
        msg = w.read_json("event")
        got.append(msg["event"])
    assert got == evs[2:]
    rec.close()
    w.close()


def on_server(srv: InProcessServer, fn):  # noqa: ANN001, ANN201 - any callable, its result
    """Call `fn()` on the server's loop (its state is the loop's alone) and return what it gives."""
    assert srv._loop is not None

    async def call():  # noqa: ANN202
        return fn()

    return asyncio.run_coroutine_threadsafe(call(), srv._loop).result(30)


def handlers(srv: InProcessServer, kind: type) -> list:
    """The server's open WebSocket handlers of `kind`."""
    assert srv.services is not None
    sockets = srv.services.sockets
    return on_server(srv, lambda: [h for h in list(sockets) if isinstance(h, kind)])


class Echo(ServerSocket):
    """A per-behaviour handler: echoes each text message; `boom` raises; `later...` is answered by
    a coroutine that lets the loop run first (and raises for `later boom`)."""

    def on_message(self, message: str | bytes) -> Awaitable[None] | None:
        """Echo, raise, or answer later."""
        assert isinstance(message, str)
        if message == "boom":
            raise RuntimeError("boom")
        if message.startswith("later"):
            return self._later(message)
        self.write_message(message)
        return None

    async def _later(self, message: str) -> None:
        for _ in range(3):
            await asyncio.sleep(0)
        if message == "later boom":
            raise RuntimeError(message)
        self.write_message(message)


@pytest.fixture(scope="module")
def echo(srv: InProcessServer) -> str:
    """The path of an Echo handler on the module's server."""
    assert srv.app is not None
    app = srv.app
    on_server(srv, lambda: app.wildcard_router.add_rules([(r"/test/echo", Echo)]))
    return "/test/echo"


def rest(c: RawClient) -> list[tuple[int, bytes]]:
    """Every frame the server sends until it ends the connection."""
    out = []
    try:
        while True:
            out.append(c.read())
    except ConnectionError:  # the end: closed or reset (a timeout is a failure, not the end)
        return out


def test_text_messages_are_handled_in_order_an_async_handler_finishing_first(
        srv: InProcessServer, echo: str) -> None:
    c = RawClient(srv, echo)
    c.sock.sendall(frame(TEXT, b"later 1") + frame(TEXT, b"2") + frame(TEXT, "\u00e93".encode()))
    assert [c.read() for _ in range(3)] == [(TEXT, b"later 1"), (TEXT, b"2"), (TEXT, "\u00e93".encode())]
    c.close()


@pytest.mark.parametrize("bad", [b"\xff{}", b"boom", b"later boom"],
                         ids=["not-utf8", "handler-raises", "async-handler-raises"])
def test_a_text_message_not_utf8_or_failing_in_its_handler_drops_the_connection(
        srv: InProcessServer, echo: str, bad: bytes, caplog: pytest.LogCaptureFixture) -> None:
    # Tornado's rules: the socket is closed at once, with no close frame; nothing after that
    # message is handled; a handler's exception is logged as an error (not a bad UTF-8).
    caplog.set_level(logging.ERROR)
    c = RawClient(srv, echo)
    c.sock.sendall(frame(TEXT, b"first") + frame(TEXT, bad) + frame(TEXT, b"after"))
    assert c.read() == (TEXT, b"first")
    assert rest(c) == []
    c.close()
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == ([] if bad == b"\xff{}" else [f"Uncaught exception GET {echo} (127.0.0.1)"])


def test_frames_in_the_handshakes_packet_are_handled_after_the_async_hello(srv: InProcessServer) -> None:
    # The hello, and events behind it, in the same write as the upgrade request: Tornado has
    # read them with the request's headers. The events need the stream the hello opens (an
    # await on the bus): taken before it, they would be refused as a bad hello (4400).
    evs = session_events(5)
    c = RawClient(srv, then=frame(TEXT, hello("early")) + events_frame(1, evs[:3]) + events_frame(4, evs[3:]))
    assert c.read_json("welcome")["ackedSeq"] == 0
    c.wait_ack(5)
    c.close()
    assert wait_for(lambda: srv.get_json("/api/sessions/early/events") == evs, what="events stored")


def test_a_long_frame_header_and_payload_arriving_a_byte_at_a_time(srv: InProcessServer) -> None:
    evs = session_events(3)
    evs[2]["data"]["text"] = "z" * 70_000  # a 64-bit payload length (over 65,535 bytes)
    c = welcomed(srv, "bytewise")
    data = events_frame(1, evs)
    assert data[1] & 0x7F == 127
    for i in range(20):  # header, mask and the payload's start: one byte per read
        c.sock.sendall(data[i:i + 1])
        on_server(srv, lambda: None)  # a loop turn or two: the server has read that byte
    c.sock.sendall(data[20:])
    c.wait_ack(3)
    c.close()
    assert wait_for(lambda: srv.get_json("/api/sessions/bytewise/events") == evs, what="events stored")


def test_a_slow_watcher_is_held_at_its_bound_then_drained_in_order(srv: InProcessServer) -> None:
    # A watcher that does not read: its socket takes what the kernel buffers, then QUEUE bytes
    # wait in the server's write buffer and the rest of the backlog is held (whole: a backlog is
    # never cut). Once it reads, everything follows in order: the backlog, caughtup, live
    # events queued meanwhile; no resync.
    pad = "p" * 10_000
    evs = session_events(2) + [event(3, 1_700_000_000_100 + i, source=5, id=i, text=pad)
                               for i in range(600)]  # 6 MB: twice what the kernel took here
    rec = welcomed(srv, "slowpoke")
    for seq in range(1, len(evs) + 1, 20):  # 200 KB frames, under MAX_MESSAGE
        rec.sock.sendall(events_frame(seq, evs[seq - 1:seq + 19]))
    rec.wait_ack(len(evs))
    w = RawClient(srv, "/watch/slowpoke", rcvbuf=4096)
    assert wait_for(lambda: any(h.held for h in handlers(srv, FrameSocket)), what="backlog held past the bound")
    held = [h for h in handlers(srv, FrameSocket) if h.held]
    assert on_server(srv, lambda: held[0].stream.unsent) > QUEUE
    live = session_events(4, t0=1_700_000_100_000)[2:]
    rec.sock.sendall(events_frame(len(evs) + 1, live))  # while the backlog is still held
    rec.wait_ack(len(evs) + len(live))
    got: list[dict] = []
    kinds: list[str] = []
    while len(got) < len(evs) + len(live):
        msg = json.loads(w.read()[1])
        kinds.append(msg["type"])
        got += watched([msg])
    assert "resync" not in kinds
    assert kinds.index("caughtup") < len(kinds) - 1, "live events came after the backlog"
    assert got == evs + live
    assert not held[0].held and not held[0].lagging
    rec.close()
    w.close()


def test_a_peer_reset_mid_frame_closes_that_connection_and_writes_to_it_are_dropped(
        srv: InProcessServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    evs = session_events(40)
    rec = welcomed(srv, "reset")
    rec.sock.sendall(events_frame(1, evs[:2]))
    rec.wait_ack(2)
    others = set(handlers(srv, FrameSocket))
    watchers = [RawClient(srv, "/watch/reset")]
    watchers[0].read_json("caughtup")
    gone = next(h for h in handlers(srv, FrameSocket) if h not in others)
    watchers.append(RawClient(srv, "/watch/reset"))
    watchers[1].read_json("caughtup")
    rst = struct.pack("ii", 1, 0)  # SO_LINGER 0: close sends a reset
    watchers[0].sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, rst)
    watchers[0].sock.close()  # reset while events flow to it
    for i in range(2, 30):
        rec.sock.sendall(events_frame(i + 1, [evs[i]]))
    got: list[dict] = []
    while len(got) < 28:
        got.append(watchers[1].read_json("event")["event"])
    assert got == evs[2:30]
    assert wait_for(lambda: on_server(srv, lambda: gone.stream.closed()), what="the reset noticed")
    frame_out = b"\x81\x02{}"
    on_server(srv, lambda: (gone.send_frame(frame_out), gone.stream.send(frame_out)))  # no raise
    ingest = [h for h in handlers(srv, IngestHandler) if h.key == ("reset", "s1")]
    assert len(ingest) == 1
    conn = ingest[0].stream
    half = events_frame(31, evs[30:])
    rec.sock.sendall(half[:len(half) // 2])
    rec.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, rst)
    rec.sock.close()  # reset in the middle of a frame
    assert srv.services is not None
    svc = srv.services
    assert wait_for(lambda: on_server(srv, lambda: svc.stream_holders.holder(("reset", "s1")) is None
                                      and conn not in svc.connections and conn.closed()),
                    what="the recorder's connection closed and forgotten")
    assert wait_for(lambda: srv.get_json("/api/sessions/reset/events") == evs[:30], what="events stored")
    watchers[1].close()
    # asyncio warns of writes to a lost connection; errors are exceptions logged anywhere
    problems = [r for r in caplog.records if r.levelno >= logging.ERROR
                or (r.name == "asyncio" and r.levelno >= logging.WARNING)]
    assert not problems, [r.getMessage() for r in problems]


def test_shutdown_tells_every_socket_1001(tmp_path) -> None:
    s = InProcessServer(server_config(tmp_path / "data")).start()
    try:
        rec = RawClient(s)
        rec.sock.sendall(frame(TEXT, hello("bye")) + events_frame(1, session_events(2)))
        rec.wait_ack(2)
        w = RawClient(s, "/watch/bye")
        w.read_json("caughtup")
    finally:
        s.stop()
    for c in (rec, w):
        op, payload = c.read()
        while op != CLOSE:
            op, payload = c.read()
        assert struct.unpack("!H", payload[:2])[0] == CloseCode.GOING_AWAY
        assert payload[2:] == b"server shutting down"
        c.close()
