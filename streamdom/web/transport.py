"""A WebSocket's socket after the handshake, on an asyncio Protocol instead of Tornado's IOStream.

Tornado reads and writes through an IOStream: each read is a Future and a coroutine step, each
write a Future too, and a frame took three or four awaited reads. At 200 recorders that was
most of what separated the server from a bare asyncio relay (README, "relay capacity"). Here,
once Tornado has answered the handshake, `Connection` takes the socket over: every read is one
`data_received` call that parses the frames the bytes hold (`FramesProtocol.received`), and
every write one `transport.write`. Tornado's WebSocket protocol object stays in charge of what
the frames mean (messages, pings, pongs, the close handshake, timeouts): `Connection` offers
it the few IOStream calls it makes (`write`, `close`, `closed`, `set_nodelay`, `io_loop`).

The server negotiates no compression and serves no TLS (a proxy terminates it: SECURITY.md),
so every WebSocket takes this path.
"""

from __future__ import annotations

import asyncio
import socket
import sys
from collections.abc import Callable
from typing import Any

from tornado.ioloop import IOLoop
from tornado.iostream import IOStream, StreamClosedError
from tornado.util import _websocket_mask
from tornado.websocket import WebSocketProtocol13

INHERITED_READ = 1 << 30  # take whatever the stream had read past the handshake, however much


class Connection(asyncio.Protocol):
    """One WebSocket's socket after the handshake: bytes in to its frame parser, frames out.

    Reading pauses until the handler's `open` has finished and while an async `on_message` (the
    ingest hello) runs, as Tornado's read loop did, so no frame overtakes another. `unsent` is
    what the socket has not taken yet; `on_drained` is called each time it is all sent.
    """

    def __init__(self, stream: IOStream) -> None:
        self.io_loop = IOLoop.current()  # Tornado's protocol sets its close timeout on it
        self.on_drained: Callable[[], None] | None = None
        # Something written is not sent yet (`unsent` > 0), without asking the transport: set
        # by pause_writing, cleared by resume_writing (the write buffer's limits are 0).
        self.pending = False
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._sock: socket.socket | None = None  # once taken from the stream
        self._nodelay: bool | None = None
        self._transport: asyncio.Transport | None = None
        self._closed = False
        self._early: list[bytes] = []  # written before the transport exists (one loop turn)
        self._early_size = 0
        self._inbox = bytearray()  # received, not yet parsed (a partial frame, or held back)
        self._frames: FramesProtocol | None = None  # set once the handler is open
        self._waiting = False  # a frame's handler is still running: the next frame waits
        self._flushing: list[asyncio.Future[None]] = []  # writes that return when all is sent
        self._attaching = asyncio.ensure_future(self._attach(stream))

    async def _attach(self, stream: IOStream) -> None:
        try:
            if stream.writing():
                await stream.write(b"")  # the handshake's answer leaves first
            read = stream.read_bytes(INHERITED_READ, partial=True)
            if read.done():  # frames that came in the handshake's last packet
                self._inbox += read.result()
            # The stream lets go of the descriptor (no second one: a server at its file limit
            # has none to spare), then closes (a pending read fails quietly).
            stream.io_loop.remove_handler(stream.socket)
            self._sock = socket.socket(fileno=stream.socket.detach())
            stream.close()
            if self._closed:
                raise StreamClosedError()
            await asyncio.get_running_loop().connect_accepted_socket(lambda: self, self._sock)
        except (StreamClosedError, OSError):
            stream.close()
            if self._sock is not None:
                self._sock.close()
            self._gone()

    # --- asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Send what was written meanwhile; read only when frames may be handled."""
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        if self._closed:
            transport.abort()
            return
        # pause_writing when anything is left unsent, resume_writing when it is all sent
        transport.set_write_buffer_limits(high=0)
        if self._nodelay is not None:  # asyncio turned it on; the handler asked otherwise
            self.set_nodelay(self._nodelay)
        if self._early:
            transport.write(b"".join(self._early))
            self._early.clear()
            self._early_size = 0
            if not transport.get_write_buffer_size():
                self.resume_writing()
        if self._frames is None:
            transport.pause_reading()
        elif self._inbox:
            self._parse()

    def data_received(self, data: bytes) -> None:
        """Handle the whole frames received; keep the rest for the next read."""
        if self._inbox or self._frames is None or self._waiting:
            self._inbox += data
            self._parse()
            return
        used, waiting = self._frames.received(data)
        if used < len(data) and not self._closed:
            self._inbox += memoryview(data)[used:]
        if waiting is not None:
            self._wait(waiting)

    def eof_received(self) -> bool:
        """The peer is gone: close at once (what was not sent is dropped, as IOStream did)."""
        self.close()
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        """Writes waiting to be sent fail; the frame loop ends."""
        self._closed = True
        self._inbox.clear()
        self._fail_flushing()
        self._gone()

    def pause_writing(self) -> None:
        """Something is left unsent: `unsent` says how much."""
        self.pending = True

    def resume_writing(self) -> None:
        """Everything written was sent."""
        self.pending = False
        flushing, self._flushing = self._flushing, []
        for fut in flushing:
            if not fut.done():
                fut.set_result(None)
        if self.on_drained is not None:
            self.on_drained()

    # --- frames in

    def serve(self, frames: FramesProtocol) -> asyncio.Future[None]:
        """Start handing frames to `frames` (the handler is open); done when the socket closes."""
        self._frames = frames
        if self._transport is not None and not self._closed:
            self._parse()
        return self.lost

    def _parse(self) -> None:
        frames, transport = self._frames, self._transport
        if frames is None or self._waiting or self._closed:
            if transport is not None and not self._closed:
                transport.pause_reading()
            return
        inbox = self._inbox
        used, waiting = frames.received(inbox)
        if self._closed:
            return
        del inbox[:used]
        if waiting is not None:
            self._wait(waiting)
        elif transport is not None:
            transport.resume_reading()

    def _wait(self, handled: asyncio.Future[Any]) -> None:
        self._waiting = True
        if self._transport is not None:
            self._transport.pause_reading()
        handled.add_done_callback(self._handled)

    def _handled(self, _: asyncio.Future[Any]) -> None:
        self._waiting = False
        self._parse()

    # --- frames out, and the IOStream calls Tornado's WebSocket protocol makes

    @property
    def unsent(self) -> int:
        """Bytes written and not yet taken by the socket."""
        transport = self._transport
        return transport.get_write_buffer_size() if transport is not None else self._early_size

    def send(self, data: bytes) -> None:
        """Write a complete frame; dropped once the socket is closing (never raises)."""
        transport = self._transport
        if transport is not None:
            if not self._closed and not transport.is_closing():
                transport.write(data)
        elif not self._closed:
            self._early.append(data)
            self._early_size += len(data)
            self.pending = True

    def write(self, data: bytes) -> asyncio.Future[None]:
        """IOStream.write: a Future done when everything written so far is sent."""
        if self.closed():
            raise StreamClosedError()
        self.send(data)
        fut = self.lost.get_loop().create_future()
        if self.unsent:
            self._flushing.append(fut)  # Tornado's pong pacing relies on this
        else:
            fut.set_result(None)
        return fut

    def closed(self) -> bool:
        """Whether the socket is closed or closing."""
        transport = self._transport
        return self._closed or (transport is not None and transport.is_closing())

    def close(self) -> None:
        """Close now, dropping what was not sent (as IOStream.close does)."""
        if self._closed:
            return
        self._closed = True
        if self._transport is not None:
            self._transport.abort()  # out of the selector now; connection_lost follows
            assert self._sock is not None
            # The descriptor goes now, not a loop turn later: a socket shed by the connection
            # guard makes room at once (accepting goes on in the same turn).
            self._sock.close()
        # else _attach closes the socket

    def set_nodelay(self, value: bool) -> None:
        """IOStream.set_nodelay."""
        self._nodelay = value
        if self._sock is not None and not self._closed:
            self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1 if value else 0)

    def _fail_flushing(self) -> None:
        flushing, self._flushing = self._flushing, []
        for fut in flushing:
            if not fut.done():
                fut.set_exception(StreamClosedError())
                fut.exception()  # nobody needs to hear it: the loop ends anyway

    def _gone(self) -> None:
        self._closed = True
        self._early.clear()
        if not self.lost.done():
            self.lost.set_result(None)


class FramesProtocol(WebSocketProtocol13):
    """Tornado's RFC 6455 protocol, fed the frames `Connection` receives (same rules as Tornado's
    own read loop: reserved bits, control frames, fragments, the size limit)."""

    stream: Connection  # type: ignore[assignment]

    async def _receive_frame_loop(self) -> None:
        try:
            await self.stream.serve(self)
            if not self.client_terminated:
                self._abort()
        finally:
            self.handler.on_ws_connection_close(self.close_code, self.close_reason)

    def received(self, data: bytes | bytearray) -> tuple[int, Any]:
        """Handle the whole frames at the start of `data`: (bytes used, the Future of a message
        handler still running, which the next frame must wait for, or None)."""
        max_size = self.params.max_message_size
        pos, size = 0, len(data)
        while size - pos >= 2 and not self.client_terminated:
            b0, b1 = data[pos], data[pos + 1]
            opcode, plen, head = b0 & 0x0F, b1 & 0x7F, pos + 2
            if b0 & 0x70 or (opcode & 0x8 and (plen >= 126 or not b0 & 0x80)):
                # reserved bits (no extension negotiated), or a long or fragmented control frame
                self._abort()
                return pos, None
            if plen == 126:
                if size - head < 2:
                    break
                plen, head = int.from_bytes(data[head:head + 2], "big"), head + 2
            elif plen == 127:
                if size - head < 8:
                    break
                plen, head = int.from_bytes(data[head:head + 8], "big"), head + 8
            fragments = self._fragmented_message_buffer
            if plen + (len(fragments) if fragments is not None else 0) > max_size:
                self.close(1009, "message too big")  # refused before its payload arrives
                self._abort()
                return pos, None
            mask = None
            if b1 & 0x80:
                if size - head < 4:
                    break
                mask, head = bytes(data[head:head + 4]), head + 4
            end = head + plen
            if end > size:
                break
            payload = bytes(data[head:end])
            pos = end
            if mask is not None:
                payload = _websocket_mask(mask, payload)
            if opcode == 0x1 and b0 & 0x80 and fragments is None:  # most frames: a whole text
                handled = self._text(payload)
            else:
                handled = self._frame(b0 & 0x80, opcode, payload)
            if handled is not None:
                return pos, handled
        return pos, None

    def _frame(self, fin: int, opcode: int, payload: bytes) -> Any:
        """One frame: a whole message is handled (returns on_message's Future, if any)."""
        if opcode & 0x8:
            return self._handle_message(opcode, payload)  # control frames: Tornado's own
        fragments = self._fragmented_message_buffer
        if opcode == 0:  # continuation
            if fragments is None:
                self._abort()
                return None
            fragments.extend(payload)
            if not fin:
                return None
            opcode, payload = self._fragmented_message_opcode, bytes(fragments)
            self._fragmented_message_buffer = None
        elif fragments is not None:  # a new message before the fragmented one ended
            self._abort()
            return None
        elif not fin:
            self._fragmented_message_opcode = opcode
            self._fragmented_message_buffer = bytearray(payload)
            return None
        if opcode == 0x1:
            return self._text(payload)
        return self._handle_message(opcode, payload)  # binary (or an unknown opcode: abort)

    def _text(self, payload: bytes) -> Any:
        """A whole text message to the handler's `on_message`: what Tornado's `_handle_message`
        and `_run_callback` do for one, in one call (most frames are a recorder's text messages).

        Not UTF-8: the connection is aborted. An exception from `on_message` is logged and the
        connection aborted. An awaitable it returns is waited for (Tornado's `_run_callback`
        wraps it: logged and aborted if it fails) before the next frame is handled.
        """
        if self.client_terminated:
            return None
        self._message_bytes_in += len(payload)
        try:
            text = payload.decode()
        except UnicodeDecodeError:
            self._abort()
            return None
        try:
            result = self.handler.on_message(text)
        except (Exception, asyncio.CancelledError):
            self.handler.log_exception(*sys.exc_info())
            self._abort()
            return None
        return None if result is None else self._run_callback(_returned, result)


def _returned(result: Any) -> Any:
    return result
