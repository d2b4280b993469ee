"""WebSocket frames as the server reads them a buffer at a time (web/sockets.py): however the bytes
are cut or packed on the wire, every frame is taken once, and RFC 6455's rules still hold.

A raw TCP client writes the frames byte by byte where it matters; every wait is on a frame from
the server (a socket timeout is only a safety net against a hang).
"""

from __future__ import annotations

import base64
import json
import os
import random
import socket
import struct

import pytest

from streamdom.testing import InProcessServer
from streamdom.wire import CloseCode
from tests.helpers import server_config, session_events, wait_for

MAX_MESSAGE = 300_000
TEXT, CONT, CLOSE, PING, PONG = 0x1, 0x0, 0x8, 0x9, 0xA


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory):
    s = InProcessServer(server_config(tmp_path_factory.mktemp("sockets") / "data",
                                      max_message_bytes=MAX_MESSAGE)).start()
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

    def __init__(self, srv: InProcessServer, path: str = "/ingest") -> None:
        self.sock = socket.create_connection(("127.0.0.1", srv.port), timeout=60)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{srv.port}\r\n"
                           f"Origin: http://127.0.0.1:{srv.port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                           f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
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


def hello(sid: str) -> bytes:
    return json.dumps({"type": "hello", "protocol": 2, "sessionId": sid, "streamId": "s1",
                       "url": "http://app.test/", "userAgent": "pytest"}).encode()


def events_frame(seq: int, events: list[dict]) -> bytes:
    return frame(TEXT, json.dumps({"type": "events", "seq": seq, "events": events}).encode())


def test_frames_packed_together_or_cut_anywhere_are_each_taken_once(srv: InProcessServer) -> None:
    evs = session_events(60)
    c = RawClient(srv)
    c.sock.sendall(frame(TEXT, hello("packed")))
    c.read_json("welcome")
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
    c = RawClient(srv)
    c.sock.sendall(frame(TEXT, hello("big")))
    c.read_json("welcome")
    data = events_frame(1, big)
    assert 65536 * 3 < len(data) < MAX_MESSAGE
    for i in range(0, len(data), 50_000):
        c.sock.sendall(data[i:i + 50_000])
    c.wait_ack(2)
    c.close()
    assert wait_for(lambda: srv.get_json("/api/sessions/big/events") == big, what="events stored")


def test_fragmented_message_with_a_ping_between_its_fragments(srv: InProcessServer) -> None:
    c = RawClient(srv)
    msg = hello("fragments")
    c.sock.sendall(frame(TEXT, msg[:10], fin=False) + frame(PING, b"p1") + frame(CONT, msg[10:30], fin=False))
    c.sock.sendall(frame(CONT, msg[30:]))
    assert c.read() == (PONG, b"p1")  # the control frame is answered in between
    assert c.read_json("welcome")["protocol"] == 2
    c.close()


def test_frame_over_the_size_limit_is_refused_from_its_header(srv: InProcessServer) -> None:
    c = RawClient(srv)
    c.sock.sendall(frame(TEXT, hello("toobig")))
    c.read_json("welcome")
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
    c = RawClient(srv)
    c.sock.sendall(frame(TEXT, hello("rfc")))
    c.read_json("welcome")
    c.sock.sendall(bad)
    assert c.closed()
    c.close()


def test_watcher_gets_every_frame_written_straight_to_its_socket(srv: InProcessServer) -> None:
    evs = session_events(40)
    rec = RawClient(srv)
    rec.sock.sendall(frame(TEXT, hello("watched")))
    rec.read_json("welcome")
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
