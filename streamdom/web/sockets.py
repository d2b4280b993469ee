"""WebSocket I/O at a relay's rate: frames parsed from whatever the socket delivered, frames
written straight to the socket when nothing is queued before them.

Tornado reads a frame in three or four awaited reads (header, length, mask, payload), each a
Future and a trip through IOStream's read machinery, and writes each frame through a Future
whose callbacks run on a later loop turn. At 200 recorders that was a third of the IOLoop
thread's time, more than our own per-event work (`benchmarks/latency.py --profile`). Here a
connection reads what is buffered in one await and walks the frames in it; a write that the
socket takes whole needs no Future at all. Everything else (the handshake, closing, pings,
pongs, compression when negotiated) stays Tornado's.
"""

from __future__ import annotations

import asyncio
from typing import Any

from tornado.iostream import IOStream, StreamClosedError
from tornado.util import _websocket_mask
from tornado.websocket import WebSocketProtocol13

READ_CHUNK = 64 * 1024  # what one read takes from the stream's buffer at most (its read chunk)
YIELD_BYTES = 256 * 1024  # let other connections run after about this much work (as Tornado)
FRAME_COST = 1024  # bytes a frame counts for in that budget: per-frame work dominates small frames


class ChunkedFramesProtocol(WebSocketProtocol13):
    """RFC 6455 frames of one connection, parsed a buffer at a time (same rules as Tornado's)."""

    async def _receive_frame_loop(self) -> None:
        if self._decompressor is not None:  # compressed frames: Tornado's own loop handles them
            await super()._receive_frame_loop()
            return
        try:
            await self._read_frames()
        except StreamClosedError:
            self._abort()
        finally:
            self.handler.on_ws_connection_close(self.close_code, self.close_reason)

    async def _read_frames(self) -> None:
        stream = self.stream
        max_size = self.params.max_message_size
        buf = bytearray()
        work = 0
        while not self.client_terminated:
            chunk = await stream.read_bytes(READ_CHUNK, partial=True)
            if buf:
                buf += chunk
                data: bytes | bytearray = buf
            else:
                data = chunk  # the common case: a chunk of whole frames, no copy
            pos, size = 0, len(data)
            while size - pos >= 2:
                b0, b1 = data[pos], data[pos + 1]
                opcode, plen, head = b0 & 0x0F, b1 & 0x7F, pos + 2
                if b0 & 0x70 or (opcode & 0x8 and (plen >= 126 or not b0 & 0x80)):
                    # reserved bits (no extension negotiated), or a long or fragmented control frame
                    self._abort()
                    return
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
                    self.close(1009, "message too big")  # refused before its payload is read
                    self._abort()
                    return
                mask = None
                if b1 & 0x80:
                    if size - head < 4:
                        break
                    mask, head = bytes(data[head:head + 4]), head + 4
                end = head + plen
                if end > size:
                    if plen > READ_CHUNK:  # a big frame: wait for the rest in one read
                        rest = await stream.read_bytes(end - size)
                        data = buf = bytearray(data[pos:]) + rest
                        end, head, size, pos = end - pos, head - pos, len(data), 0
                    else:
                        break
                payload = bytes(data[head:end])
                pos = end
                if mask is not None:
                    payload = _websocket_mask(mask, payload)
                work += FRAME_COST + plen
                handled = self._frame(b0 & 0x80, opcode, payload)
                if handled is not None:
                    await handled  # an async on_message (the hello) ends before the next frame
                if self.client_terminated:
                    return
            buf = bytearray(data[pos:]) if pos < size else bytearray()
            if work >= YIELD_BYTES:
                work = 0
                await asyncio.sleep(0)

    def _frame(self, fin: int, opcode: int, payload: bytes) -> Any:
        """One frame: a whole message is handled (returns on_message's Future, if any)."""
        if opcode & 0x8:
            return self._handle_message(opcode, payload)
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
        return self._handle_message(opcode, payload)


def write_now(stream: IOStream, data: bytes) -> Any:
    """Write a complete frame: straight to the socket when nothing is queued before it.

    Returns None when the socket took it all, else the stream's Future for the rest (Tornado
    then sends it when the socket has room, and reports a closed stream).
    """
    if type(stream) is IOStream and not stream.writing() and not stream.closed():
        try:
            sent = stream.socket.send(data)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            sent = 0  # reset or broken: the stream's own write below finds it and closes
        if sent == len(data):
            return None
        if sent:
            data = data[sent:]
    return stream.write(data)
