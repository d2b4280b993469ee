"""WS /ingest: recorders stream rrweb events in; validated here, then handed to the bus."""

from __future__ import annotations

import logging
from typing import Any

from tornado.ioloop import IOLoop
from tornado.web import HTTPError
from tornado.websocket import WebSocketClosedError

from streamdom import wire
from streamdom.bus.base import Bus, BusUnavailable, Producer
from streamdom.ingest import access, frames, validate
from streamdom.ingest.acks import AckBatcher
from streamdom.ingest.frames import EventsSpan
from streamdom.ingest.limits import TokenBucket
from streamdom.web.handlers.base import ServerSocket
from streamdom.web.transport import Connection
from streamdom.wire import CloseCode, ProtocolError

log = logging.getLogger(__name__)

PROTOCOL = 2  # docs/PROTOCOL.md: batches, resume secrets, ingest tokens


class IngestHandler(ServerSocket):
    """One recorder connection (one page load of one session)."""

    bus: Bus
    acks: AckBatcher
    bucket: TokenBucket  # this connection's events
    ip_bucket: TokenBucket  # its address's, once welcomed
    producer: Producer | None = None  # this connection's stream on the bus, once welcomed
    key: tuple[str, str] | None = None
    closing = False
    _acked_seq = 0
    _hello_deadline: object | None = None

    def check_origin(self, origin: str) -> bool:
        """Any page may record unless an allowed-origins list is configured."""
        allowed = self.services.config.allowed_origins
        return not allowed or origin.rstrip("/") in allowed

    def prepare(self) -> None:
        """Check the write key (when keys are configured) before the upgrade."""
        super().prepare()
        keys = self.services.config.write_keys
        if keys and self.get_query_argument("key", "") not in keys:
            raise HTTPError(401, reason="missing or wrong write key")

    def open(self) -> None:
        """Start the per-connection rate limit and the hello deadline.

        Until its hello is welcomed the socket is idle to the connection guard: the first to be
        shed when its address or the server is at its cap.
        """
        svc = self.services
        cfg = svc.config
        self.bus, self.acks = svc.bus, svc.acks  # on every frame's (and ack's) path: looked up once
        self.ip = self.request.remote_ip or "?"
        self.bucket = TokenBucket(cfg.max_events_per_second, cfg.max_events_per_second * 2)
        self.set_nodelay(True)  # acks and pongs are tiny; Nagle would delay them
        if self.stream is not None:
            self.services.connections.idle(self.stream)
        self._hello_deadline = IOLoop.current().call_later(cfg.hello_timeout, self._no_hello)

    def _no_hello(self) -> None:
        self._hello_deadline = None
        if self.producer is None and not self.closing:
            self._refuse(CloseCode.MALFORMED,
                         f"no hello within {self.services.config.hello_timeout:g} s")

    def on_message(self, message: str | bytes) -> Any:
        """Dispatch one frame; a protocol breach closes this connection and nothing else."""
        if self.closing:
            return None
        try:
            if self.producer is not None and isinstance(message, str):
                one = frames.one_event(message)
                if one is not None:  # most frames: one event, as our recorder writes it
                    self._events(validate.first_seq(one[0]), one[1])
                    return None
                msg = frames.parse_other(message)
            else:  # the hello, and binary messages (parse_frame decodes them as UTF-8)
                msg = frames.parse_frame(message)
            if self.producer is None:
                return self._hello(msg)
            kind = msg["type"]
            if kind == "events":
                self._events(*validate.parse_events(msg))
            elif kind == "ping":
                self.write_message(wire.pong(msg, wire.now_ms()))
            elif kind == "clock":
                self._clock(msg)
            elif kind == "goodbye":  # the page went away: end the session now, not after the grace
                self._detach(goodbye=True)
                self.closing = True
                self.close(1000, "goodbye")
            else:
                raise ProtocolError(f"unknown frame type {kind[:32]!r}")
        except ProtocolError as exc:
            self._refuse(exc.code, exc.reason)
        except WebSocketClosedError:
            pass
        return None

    async def _hello(self, msg: dict[str, Any]) -> None:
        self._cancel_deadline()  # it said hello in time (looking its stream up may take longer)
        try:
            hello = validate.parse_hello(msg)
        except ProtocolError as exc:
            self._refuse(exc.code, exc.reason)
            return
        svc = self.services
        sid, stream = key = (hello.session_id, hello.stream_id)
        secret = svc.config.ingest_secret
        if secret and not access.verify(secret, sid, hello.token):
            self._refuse(CloseCode.BAD_TOKEN, "missing, expired or wrong ingest token for this session")
            return
        # A stream belongs to the connection that opened it: only its resume secret reopens it.
        resuming = hello.resume is not None
        secrets = svc.resume_secrets
        assert secrets is not None  # keyed before the server accepts connections
        if resuming and not secrets.check(sid, stream, hello.resume):
            self._refuse(CloseCode.STREAM_TAKEN, "wrong resume secret for this stream")
            return
        if not resuming and svc.stream_holders.holder(key) is not None:
            self._refuse(CloseCode.STREAM_TAKEN, "stream belongs to another connection")
            return
        if not svc.limits.open_session(self.ip, sid):
            self._refuse(CloseCode.TOO_MANY_SESSIONS, "too many sessions from this address")
            return
        # The address's shared bucket, kept while this connection counts as one of its sessions
        # (the limits forget it only once the address has none).
        self.ip_bucket = svc.limits.bucket(self.ip)
        self.key = key
        producer = await svc.bus.open_stream(sid, stream, hello.url, hello.user_agent, self._ack)
        if self.ws_connection is None:  # left while the bus looked up its stream
            svc.bus.close_stream(producer)
            return
        self.producer = producer  # from now on on_close closes it (also when refused below)
        holder = svc.stream_holders.holder(key)
        if not resuming and (producer.received > 0 or holder is not None):
            self._refuse(CloseCode.STREAM_TAKEN, "stream belongs to another connection")
            return
        if holder is not None and holder is not self:  # its recorder came back on a new socket
            holder._refuse(CloseCode.STREAM_TAKEN, "stream resumed by another connection")  # type: ignore[attr-defined]
        svc.stream_holders.hold(key, self)
        if self.stream is not None:
            svc.connections.busy(self.stream)
        self.write_message(wire.dumps({
            "type": "welcome", "protocol": PROTOCOL, "ackedSeq": producer.durable,
            "resume": secrets.secret(sid, stream), "serverTime": wire.now_ms()}))

    def _events(self, seq: int, span: EventsSpan) -> None:
        bus, producer = self.bus, self.producer
        assert producer is not None
        failure = bus.failure
        if failure is not None:
            self._refuse(CloseCode.STORAGE, failure)
            return
        count = len(span.events)
        if not (self.bucket.take(count) and self.ip_bucket.take(count)):
            self._refuse(CloseCode.RATE_LIMIT, "event rate limit exceeded")
            return
        received = producer.received
        if seq > received + validate.MAX_SEQ_JUMP:  # would make the stream drop what follows
            self._refuse(CloseCode.STREAM_TAKEN, f"seq {seq} jumps too far past {received}")
            return
        held = received - seq + 1  # how many of these the bus has already (a resend)
        if held >= count:
            self._ack(producer.durable)  # nothing new: re-ack what is durable
            return
        try:
            for batch in validate.make_batches(producer.session_id, producer.stream_id, seq, span,
                                               max(0, held), wire.now_ms()):
                bus.publish(producer, batch)
        except BusUnavailable as exc:
            self._refuse(CloseCode.STORAGE, str(exc))

    def _clock(self, msg: dict[str, Any]) -> None:
        offset, rtt = msg.get("offset"), msg.get("rtt")
        if not all(isinstance(v, int | float) and not isinstance(v, bool) and abs(v) < 1e12
                   for v in (offset, rtt)):
            raise ProtocolError("clock.offset and clock.rtt must be numbers")
        assert self.producer is not None
        self.services.bus.set_clock(self.producer, offset, rtt)  # type: ignore[arg-type]

    def _ack(self, seq: int) -> None:
        self._acked_seq = seq
        self.acks.due(self)

    def send_ack(self) -> None:
        """Send the latest ack (called by the AckBatcher)."""
        conn, sock = self.ws_connection, self.stream
        if conn is None or self.closing or conn.is_closing() or not isinstance(sock, Connection):
            return
        # A prebuilt frame straight to the socket, as for viewers: no per-ack framing work.
        sock.send(wire.ws_text_frame(f'{{"type":"ack","seq":{self._acked_seq}}}'))

    def _refuse(self, code: int, reason: str) -> None:
        log.info("ingest %s %s: closing %d (%s)", self.ip, self.key, code, reason)
        self.closing = True
        self.close(code, reason[:120])

    def _cancel_deadline(self) -> None:
        if self._hello_deadline is not None:
            IOLoop.current().remove_timeout(self._hello_deadline)  # type: ignore[arg-type]
            self._hello_deadline = None

    def on_close(self) -> None:
        """Detach from the session; it stays live for the grace period."""
        self._detach(goodbye=False)

    def _detach(self, goodbye: bool) -> None:
        svc = self.services
        self._cancel_deadline()
        svc.acks.forget(self)
        if self.key is not None:
            svc.limits.close_session(self.ip, self.key[0])
            svc.stream_holders.release(self.key, self)
        if self.producer is not None:
            svc.bus.close_stream(self.producer, goodbye)
            self.producer = None
        self.key = None
