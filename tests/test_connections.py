"""Every connection has a deadline and a budget (issue 12, reproductions 4, 6 and 9's /events).

Slow headers, sockets that never say hello, hundreds of idle sockets under a low file limit,
viewers that never read and unpaged /events requests each get a clear refusal or a bound, and a
well-behaved recorder on the same server keeps every event meanwhile.
"""

from __future__ import annotations

import asyncio
import json
import resource
import socket
import time
import tracemalloc
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tornado.websocket import websocket_connect

from streamdom.testing import InProcessServer, ServerProcess
from tests.helpers import (
    TEST_SERVER_ARGS,
    Recorder,
    event,
    read_until,
    record,
    run_async,
    server_config,
    session_events,
    wait_for,
    watched,
)
from tests.test_limits import with_bystander

WS_KEY = "dGhlIHNhbXBsZSBub25jZQ=="


def connect_from(source: str, port: int, rcvbuf: int | None = None) -> socket.socket:
    """A raw TCP connection to the server from a loopback address of our choice."""
    s = socket.socket()
    if rcvbuf is not None:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.bind((source, 0))
    s.settimeout(10)
    s.connect(("127.0.0.1", port))
    return s


def upgrade(s: socket.socket, port: int, path: str) -> str:
    """Send a WebSocket handshake; return the status line answered."""
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
              f"Connection: Upgrade\r\nSec-WebSocket-Key: {WS_KEY}\r\n"
              "Sec-WebSocket-Version: 13\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = s.recv(1)
        if not chunk:
            break
        head += chunk
    return head.decode(errors="replace").split("\r\n")[0]


def closed_by_server(s: socket.socket, timeout: float, trickle: bytes = b"") -> bool:
    """Whether the server closes `s` within `timeout` s (sending `trickle` every 0.2 s meanwhile)."""
    s.settimeout(0.2)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if trickle:
                s.sendall(trickle)
            if s.recv(65536) == b"":
                return True
        except TimeoutError:
            continue
        except (ConnectionResetError, BrokenPipeError):
            return True
    return False


def status_of(s: socket.socket) -> str:
    """The status line the server sends on `s` unasked (a refusal at accept), '' if none."""
    s.settimeout(10)
    try:
        return s.recv(4096).decode(errors="replace").split("\r\n")[0]
    except (ConnectionResetError, TimeoutError):
        return ""


@pytest.fixture(scope="module")
def strict(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessServer]:
    srv = InProcessServer(server_config(tmp_path_factory.mktemp("deadlines") / "data",
                                        header_timeout=1.0, body_timeout=1.0, hello_timeout=1.0)
                          ).start()
    yield srv
    srv.stop()


@pytest.fixture
def capped(tmp_path: Path) -> Iterator[InProcessServer]:
    srv = InProcessServer(server_config(tmp_path / "data", max_connections_per_ip=8)).start()
    yield srv
    srv.stop()


def test_a_slow_header_is_cut_off(strict: InProcessServer) -> None:
    # Reproduction 4: a partial HTTP header stayed open for 75 s and more (slowloris).
    async def attack() -> None:
        s = connect_from("127.0.0.2", strict.port)
        s.sendall(b"GET /api/sessions HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        assert closed_by_server(s, 10, trickle=b"X")
        s.close()

    with_bystander(strict, "slowloris-bystander", attack)


def test_a_slow_body_is_cut_off(strict: InProcessServer) -> None:
    s = connect_from("127.0.0.2", strict.port)
    s.sendall(b"POST /login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000\r\n\r\npassword=")
    assert closed_by_server(s, 10, trickle=b"x")
    s.close()


def test_an_ingest_socket_that_never_says_hello_is_closed(strict: InProcessServer) -> None:
    # Reproduction 4: /ingest sockets that never sent a hello stayed open past 25 s.
    async def attack() -> None:
        conn = await websocket_connect(strict.ws + "/ingest")
        assert await asyncio.wait_for(conn.read_message(), 10) is None
        assert conn.close_code == 4400 and "no hello within 1 s" in (conn.close_reason or "")

    with_bystander(strict, "hello-bystander", attack)


def test_sockets_count_against_their_address_from_accept(capped: InProcessServer) -> None:
    # Reproduction 4: --max-sessions-per-ip did not count sockets that never said hello. Now
    # each address has a budget of sockets: a newcomer takes the place of the address's oldest
    # socket that has not said hello; when all of them work, the newcomer gets 429.
    assert capped.services is not None
    guard = capped.services.connections
    evs = session_events(30)

    async def go() -> None:
        silent = [connect_from("127.0.0.2", capped.port) for _ in range(8)]
        for s in silent:
            assert upgrade(s, capped.port, "/ingest") == "HTTP/1.1 101 Switching Protocols"
        shed = guard.shed
        rec = Recorder(capped.ws, "same-address", source="127.0.0.2")
        assert (await rec.connect())["type"] == "welcome"
        assert guard.shed == shed + 1
        assert closed_by_server(silent[0], 5)  # the oldest silent one made room
        await rec.send_events(1, evs)
        await rec.wait_ack(30)
        # An address whose sockets all work gets 429 for one more, at accept.
        busy = [Recorder(capped.ws, f"busy-{i}", source="127.0.0.3") for i in range(8)]
        for r in busy:
            assert (await r.connect())["type"] == "welcome"
        extra = connect_from("127.0.0.3", capped.port)
        assert status_of(extra).startswith("HTTP/1.1 429")
        extra.close()
        for r in [rec, *busy]:
            r.close()
        for s in silent:
            s.close()

    run_async(go())
    assert capped.get_json("/api/sessions/same-address/events") == evs


def test_past_the_global_cap_a_newcomer_gets_503(tmp_path: Path) -> None:
    srv = InProcessServer(server_config(tmp_path / "data", max_connections=4)).start()
    try:
        async def go() -> None:
            viewers = [await websocket_connect(srv.ws + "/updates") for _ in range(4)]
            for v in viewers:
                assert await v.read_message() is not None
            s = connect_from("127.0.0.1", srv.port)
            assert status_of(s).startswith("HTTP/1.1 503")
            s.close()
            viewers.pop().close()
            for _ in range(50):  # until the server noticed the close
                s = connect_from("127.0.0.1", srv.port)
                s.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
                if status_of(s).startswith("HTTP/1.1 200"):
                    break
                await asyncio.sleep(0.1)
            else:
                raise AssertionError("a slot never freed up")
            for v in viewers:
                v.close()

        run_async(go())
    finally:
        srv.stop()


def low_fd_limit() -> None:
    """preexec for the server: a file limit that 500 sockets would blow through."""
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))


def test_500_idle_sockets_leave_healthz_and_a_recorder_unharmed_under_a_low_fd_limit(tmp_path: Path) -> None:
    # Reproduction 4: under a 160-fd limit, 150 idle sockets made /healthz and a real recorder
    # time out (accept() failed with EMFILE). Here: 500 sockets from ten addresses, half with a
    # partial header, half WebSockets on /ingest that never say hello, all left open.
    srv = ServerProcess(tmp_path / "data", *TEST_SERVER_ARGS, preexec=low_fd_limit).start()
    idle: list[socket.socket] = []
    try:
        for i in range(500):
            try:
                s = connect_from(f"127.0.0.{2 + i % 10}", srv.port)
                if i % 2:
                    s.sendall(b"GET /api/sessions HTTP/1.1\r\nHost: 127.0.0.1\r\n")
                else:
                    s.sendall(f"GET /ingest HTTP/1.1\r\nHost: 127.0.0.1:{srv.port}\r\nUpgrade: websocket\r\n"
                              f"Connection: Upgrade\r\nSec-WebSocket-Key: {WS_KEY}\r\n"
                              "Sec-WebSocket-Version: 13\r\n\r\n".encode())
            except OSError:  # shed or refused before we got to write: fine, it is closed
                continue
            idle.append(s)
        with urllib.request.urlopen(srv.http + "/healthz", timeout=10) as r:
            assert r.status == 200 and json.loads(r.read())["ok"] is True
        evs = session_events(200)

        async def record() -> None:
            rec = Recorder(srv.ws, "neighbour")
            assert (await rec.connect())["type"] == "welcome"
            for seq in range(1, 201, 20):
                await rec.send_events(seq, evs[seq - 1:seq + 19])
            await rec.wait_ack(200)
            rec.close()

        run_async(record())
        assert srv.get_json("/api/sessions/neighbour/events") == evs
        assert srv.proc is not None and srv.proc.poll() is None
    finally:
        for s in idle:
            s.close()
        srv.stop()
    assert "Too many open files" not in srv.logs()


@pytest.fixture(scope="module")
def roomy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server whose rings hold tens of MB, and whose rate limits let a test fill them fast."""
    srv = ServerProcess(tmp_path_factory.mktemp("roomy") / "data", *TEST_SERVER_ARGS,
                        "--ring-max-bytes", str(64 * 2**20), "--viewer-queue-max-bytes", str(2**20),
                        "--max-events-per-second", "100000", "--max-events-per-second-per-ip", "200000"
                        ).start()
    yield srv
    srv.stop()


def status(pid: int, field: str) -> int:
    """A figure (kB) from /proc/<pid>/status."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def settled_rss(pid: int) -> int:
    """RSS (kB) once it stops moving."""
    last = status(pid, "VmRSS")
    for _ in range(50):
        time.sleep(0.2)
        now = status(pid, "VmRSS")
        if abs(now - last) < 512:
            return now
        last = now
    return last


def test_viewers_that_never_read_hold_at_most_their_queue_each(roomy: ServerProcess) -> None:
    # Reproduction 6: the backlog a new watcher gets was exempt from --viewer-queue-max-bytes:
    # ten /watch sockets that never read took RSS from 226 to 423 MB on a 16 MB session.
    pad = "x" * 1500
    evs = session_events(2) + [event(3, 1_700_000_000_100 + i, source=5, id=i, text=pad)
                               for i in range(10_000)]  # 16 MB, in frames of one event
    assert roomy.proc is not None
    pid = roomy.proc.pid

    async def go() -> None:
        rec = Recorder(roomy.ws, "big-live")
        await rec.connect()
        for seq, ev in enumerate(evs, 1):
            await rec.send_events(seq, [ev])
        await rec.wait_ack(len(evs), timeout=60)
        before = settled_rss(pid)
        stalled = []
        for _ in range(10):
            s = connect_from("127.0.0.2", roomy.port, rcvbuf=4096)
            assert upgrade(s, roomy.port, "/watch/big-live") == "HTTP/1.1 101 Switching Protocols"
            stalled.append(s)
        grown_mb = (settled_rss(pid) - before) / 1024
        assert grown_mb < 80, f"ten stalled viewers took {grown_mb:.0f} MB"
        # A viewer that reads gets the whole backlog meanwhile, then live events.
        viewer = await websocket_connect(roomy.ws + "/watch/big-live")
        frames = await read_until(viewer, lambda m: m["type"] == "caughtup", timeout=60)
        more = session_events(3, t0=1_700_000_100_000)[2:]
        await rec.send_events(len(evs) + 1, more)
        frames += await read_until(viewer, lambda m: m.get("seq") == len(evs) + 1)
        assert watched(frames) == evs + more
        await rec.wait_ack(len(evs) + 1)
        viewer.close()
        rec.close()
        for s in stalled:
            s.close()

    run_async(go())


@pytest.fixture(scope="module")
def big_archived(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[InProcessServer, list[dict]]]:
    """A 20 MB session (2,502 events of 8 KB), flushed to the archive."""
    srv = InProcessServer(server_config(tmp_path_factory.mktemp("big") / "data",
                                        max_events_per_second=100_000,
                                        max_events_per_second_per_ip=200_000)).start()
    pad = "y" * 8000
    evs = session_events(2) + [event(5, 1_700_000_000_100 + i, tag="blob", payload=pad)
                               for i in range(2500)]

    async def go() -> None:
        rec = Recorder(srv.ws, "big-archived")
        await rec.connect()
        for seq in range(1, len(evs) + 1, 250):
            await rec.send_events(seq, evs[seq - 1:seq + 249])
        await rec.wait_ack(len(evs), timeout=60)
        rec.close()

    run_async(go())
    assert srv.services is not None
    bus = srv.services.bus
    wait_for(lambda: run_in(srv, bus.unarchived("big-archived")) == [], timeout=60,
             what="the session flushed to the archive")
    yield srv, evs
    srv.stop()


def run_in(srv: InProcessServer, coro: Any) -> Any:
    """Run a coroutine on the in-process server's loop and return its result."""
    assert srv._loop is not None
    return asyncio.run_coroutine_threadsafe(coro, srv._loop).result(30)


def test_events_pages_are_bounded_by_bytes(big_archived: tuple[InProcessServer, list[dict]]) -> None:
    # Reproduction 6: /events pages were capped by event count only.
    srv, evs = big_archived
    url = srv.http + "/api/sessions/big-archived/events"
    got: list[dict] = []
    offset: int | None = 0
    pages = 0
    while offset is not None:
        with urllib.request.urlopen(f"{url}?limit=5000&offset={offset}", timeout=30) as r:
            body = r.read()
            nxt = r.headers.get("X-Next-Offset")
        assert len(body) <= 4 * 2**20 + 9000  # the bound, plus the event that crossed it
        got += json.loads(body)
        offset = int(nxt) if nxt is not None else None
        pages += 1
    assert got == evs and pages == 5  # 20 MB in pages of about 4 MB, in order, nothing lost


def test_an_unpaged_answer_is_whole_and_streamed_in_bounded_pieces(
        big_archived: tuple[InProcessServer, list[dict]]) -> None:
    # Reproduction 6: one unpaged request for a 20 MB session peaked at +160 MB (the rows, their
    # join, the body and Tornado's copy of it, all at once). Python's allocations on the server
    # while it answers are measured here (the client only counts the bytes it reads).
    srv, evs = big_archived
    url = srv.http + "/api/sessions/big-archived/events"
    with urllib.request.urlopen(url, timeout=60) as r:
        assert r.headers.get("X-Next-Offset") is None
        assert r.headers.get("Transfer-Encoding") == "chunked"
        whole = r.read()
    assert json.loads(whole) == evs
    tracemalloc.start()
    try:
        received = 0
        with urllib.request.urlopen(url, timeout=60) as r:
            while chunk := r.read(65536):
                received += len(chunk)
        peak_mb = tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()
    assert received == len(whole)
    assert peak_mb < 40, f"answering took {peak_mb:.0f} MB of Python memory at its peak"


@pytest.mark.parametrize("query", ["limit=-1", "limit=0", "limit=5001", "offset=-1", "limit=x",
                                   "offset=1e3"])
def test_events_limit_and_offset_are_validated(strict: InProcessServer, query: str) -> None:
    # Reproduction 9: limit=-1 answered 500 (on /api/sessions; here the same for /events).
    sid = f"params-{abs(hash(query)) % 10**6}"
    record(strict.ws, sid, session_events(3))
    with pytest.raises(urllib.error.HTTPError) as exc:
        urllib.request.urlopen(f"{strict.http}/api/sessions/{sid}/events?{query}", timeout=10)
    assert exc.value.code == 400
    assert "error" in json.loads(exc.value.read())


def test_events_pages_keep_their_contract(strict: InProcessServer) -> None:
    evs = session_events(7)
    record(strict.ws, "paged", evs)
    with urllib.request.urlopen(f"{strict.http}/api/sessions/paged/events?limit=3&offset=2", timeout=10) as r:
        assert json.loads(r.read()) == evs[2:5] and r.headers["X-Next-Offset"] == "5"
    with urllib.request.urlopen(f"{strict.http}/api/sessions/paged/events?limit=3&offset=5", timeout=10) as r:
        assert json.loads(r.read()) == evs[5:] and r.headers.get("X-Next-Offset") is None
