"""Budgets for open sockets, checked at accept: per client address and in all.

A socket counts from the moment it is accepted, whether or not it ever sends a request or an
ingest hello. One that has not (yet) — a half-sent header, a WebSocket before its hello, a
keep-alive connection between requests — is *idle*, and idle sockets are what gets shed: when
an address (or the whole server) is at its cap, a new connection takes the place of the
address's (or the server's) oldest idle socket. Only when none is idle is the newcomer refused
(429 for one address, 503 for the server), before file descriptors run out. A recorder that said
hello or a viewer that is watching is never shed for a newcomer. Deadlines close idle sockets
anyway (header/body timeouts, the ingest hello deadline); this bounds what they can hold meanwhile.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

from tornado import httputil
from tornado.httpserver import HTTPServer
from tornado.iostream import IOStream

log = logging.getLogger(__name__)


def _refusal(status: int, reason: str, retry_after: int) -> bytes:
    body = f"{status} {reason}\n".encode()
    return (f"HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\n"
            f"Content-Length: {len(body)}\r\nRetry-After: {retry_after}\r\n"
            f"Connection: close\r\n\r\n").encode() + body


TOO_MANY_FROM_ADDRESS = _refusal(429, "Too Many Requests: too many connections from this address", 5)
SERVER_FULL = _refusal(503, "Service Unavailable: too many connections", 5)


class Socket(Protocol):
    """What the guard counts: Tornado's IOStream until a WebSocket handshake, then the
    WebSocket's `transport.Connection`."""

    def close(self) -> None:
        """Close it now."""

    def closed(self) -> bool:
        """Whether it is closed."""


class ConnectionGuard:
    """The open sockets of one server process, by address, idle or busy (the one owner)."""

    def __init__(self, max_total: int, max_per_address: int) -> None:
        self.max_total = max_total
        self.max_per_address = max_per_address
        self._idle: dict[Socket, str] = {}  # insertion order: the oldest idle first
        self._busy: dict[Socket, str] = {}
        self._by_address: dict[str, set[Socket]] = {}
        self.shed = 0  # idle sockets closed to make room (for tests and logs)

    def __len__(self) -> int:
        return len(self._idle) + len(self._busy)

    def __contains__(self, stream: Socket) -> bool:
        return stream in self._idle or stream in self._busy

    def admit(self, stream: Socket, address: str) -> bytes | None:
        """Count a newly accepted socket; return the refusal to send instead when over a cap."""
        mine = self._by_address.get(address)
        if mine is not None and len(mine) >= self.max_per_address and not self._shed(address):
            self._prune(mine)
            if len(mine) >= self.max_per_address:
                return TOO_MANY_FROM_ADDRESS
        if len(self) >= self.max_total and not self._shed(None):
            self._prune(set(self._busy))
            if len(self) >= self.max_total:
                return SERVER_FULL
        self._idle[stream] = address
        self._by_address.setdefault(address, set()).add(stream)
        return None

    def busy(self, stream: Socket) -> None:
        """The socket does work now (a request is in, a recorder said hello): never shed."""
        address = self._idle.pop(stream, None)
        if address is not None:
            self._busy[stream] = address

    def idle(self, stream: Socket) -> None:
        """The socket waits for its client (between requests, before an ingest hello)."""
        address = self._busy.pop(stream, None)
        if address is not None:
            self._idle[stream] = address

    def moved(self, stream: Socket, to: Socket) -> None:
        """The socket is now served by `to` (a WebSocket after its handshake), busy as it was
        (its handshake request made it busy)."""
        address = self._idle.pop(stream, None) or self._busy.pop(stream, None)
        if address is not None:
            self._busy[to] = address
            mine = self._by_address[address]
            mine.discard(stream)
            mine.add(to)

    def forget(self, stream: Socket) -> None:
        """The socket closed."""
        address = self._idle.pop(stream, None) or self._busy.pop(stream, None)
        if address is not None:
            mine = self._by_address.get(address)
            if mine is not None:
                mine.discard(stream)
                if not mine:
                    del self._by_address[address]

    def _prune(self, streams: set[Socket]) -> None:
        # In case a close notice was missed (a socket closed mid-handshake): look.
        for s in [s for s in streams if s.closed()]:
            self.forget(s)

    def _shed(self, address: str | None) -> bool:
        victim = next((s for s, a in self._idle.items() if address is None or a == address), None)
        if victim is None:
            return False
        self.forget(victim)
        victim.close()
        self.shed += 1
        return True


class _Tracked(httputil.HTTPMessageDelegate):
    """Marks a connection busy once a request's headers are in."""

    def __init__(self, inner: httputil.HTTPMessageDelegate, guard: ConnectionGuard,
                 stream: IOStream) -> None:
        self.inner, self.guard, self.stream = inner, guard, stream

    def headers_received(self, start_line: Any, headers: httputil.HTTPHeaders) -> Any:
        self.guard.busy(self.stream)
        return self.inner.headers_received(start_line, headers)

    def data_received(self, chunk: bytes) -> Any:
        return self.inner.data_received(chunk)

    def finish(self) -> None:
        self.inner.finish()

    def on_connection_close(self) -> None:
        self.inner.on_connection_close()


class GuardedHTTPServer(HTTPServer):
    """Tornado's HTTPServer with a ConnectionGuard at accept."""

    guard: ConnectionGuard

    def initialize(self, *args: Any, guard: ConnectionGuard, **kwargs: Any) -> None:  # type: ignore[override]
        """HTTPServer's options, plus the guard."""
        super().initialize(*args, **kwargs)
        self.guard = guard

    def handle_stream(self, stream: IOStream, address: tuple) -> None:
        """Serve the socket, or answer 429/503 and close it at once."""
        refusal = self.guard.admit(stream, str(address[0]))
        if refusal is not None:
            stream.write(refusal).add_done_callback(lambda f: (f.exception(), stream.close()))
            return
        super().handle_stream(stream, address)

    def start_request(self, server_conn: object, request_conn: httputil.HTTPConnection
                      ) -> httputil.HTTPMessageDelegate:
        """Between requests a keep-alive connection is idle; its next request's headers make it
        busy."""
        stream = request_conn.stream  # type: ignore[attr-defined]
        self.guard.idle(stream)
        return _Tracked(super().start_request(server_conn, request_conn), self.guard, stream)

    def on_close(self, server_conn: object) -> None:
        """The HTTP side is done: forget the socket unless a WebSocket took it over."""
        stream = server_conn.stream  # type: ignore[attr-defined]
        if stream.closed():
            self.guard.forget(stream)
        super().on_close(server_conn)
