"""The live path between nodes: ingest batches sent on core NATS to the nodes that follow them.

The stream alone makes a cross-node event wait for its stream's message in flight, for
JetStream to store it, and for one consumer delivery per message. Here a recording node also
sends what it relays to its own watchers straight to the nodes watching elsewhere, not waiting
for the store:
- a node following a session says so, `sd.want.<session>` with its node id as payload, when it
  starts following and every heartbeat after (`--presence-heartbeat`); a want counts for three
  heartbeats. Sessions nobody watches elsewhere cost nothing here;
- a recording node sends each ingest batch of a wanted session, as it relays it to its own
  watchers, to every node that wants it: `sd.live.<node>`, lines of session and stream tokens
  then the stream row as in the stream's payload. The first batch of an IOLoop turn leaves at
  once (nats-py writes it in the next turn); the turn's later ones leave together, one message
  per node, at the start of the next turn. An idle node sends each event at once; a busy one
  sends a message per turn, not per event: a message per event doubled what a node's NATS
  connection carries at 200 recorders and pushed saturated nodes over (docs/SCALING.md);
- every node has one subscription, its own `sd.live.<node>`, and hands each session's rows on;
- about every second a recording node reports to each node following its sessions how far
  each of their streams is durable (`sd.high.<node>`: lines of session and stream tokens, the
  highest seq JetStream acked, the stream sequence of the message holding it).
Core NATS is at most once: a reconnect or a slow consumer loses messages. The stream stays the
complete source: `follower.Relayed` takes a live row only when it continues its stream without
a gap, and `follower.Following` repairs a gap from the stream, seen either by the next live row
or by the next report (the last messages before a pause were lost).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from streamdom.bus import jetstream as J
from streamdom.bus.publisher import start_now
from streamdom.records import Row

log = logging.getLogger(__name__)

WANT_ROOT = "sd.want"
REPORT_ROOT = "sd.high"
REPORT_EVERY = 1.0  # s between reports of how far the streams of followed sessions are durable
STALE_HEARTBEATS = 3  # heartbeats without a want after which a session is no longer sent
MAX_LIVE_MESSAGE = 512 * 1024  # characters per message (NATS's max_payload is 1 MB by default)

SessionRows = Callable[[str, list[Row]], None]  # (session id, its rows in this message)
# (session id, stream id, highest seq durable, stream sequence of the message holding it)
Report = Callable[[str, str, int, int], None]
Durable = Callable[[str], dict[str, tuple[int, int]]]  # session -> stream -> (seq, stream seq)


def live_subject(node_id: str) -> str:
    """The subject a node receives live rows on (node ids are token-safe)."""
    return f"{J.LIVE_ROOT}.{node_id}"


def encode_line(stoken: str, ttoken: str, row: Row) -> str:
    """One live row: session and stream tokens, then the fields of `J.encode_rows`."""
    _, _, seq, typ, ts, st, data, extra = row
    return f"{stoken}\t{ttoken}\t{seq}\t{typ}\t{ts}\t{st}\t{data}\t{extra or ''}"


def decode_message(payload: bytes) -> dict[str, list[Row]]:
    """The rows of a live message, by session id, each session's rows in the order sent."""
    out: dict[str, list[Row]] = {}
    ids: dict[tuple[str, str], tuple[str, str]] = {}
    for line in payload.decode().split("\n"):
        stoken, ttoken, seq, typ, ts, st, data, extra = line.split("\t")
        key = ids.get((stoken, ttoken))
        if key is None:
            key = ids[(stoken, ttoken)] = (J.untoken(stoken), J.untoken(ttoken))
        out.setdefault(key[0], []).append(
            (key[0], key[1], int(seq), int(typ), int(ts), int(st), data, extra or None))
    return out


class LivePath:
    """This node's end of the live path: wants heard and said, rows sent and received."""

    def __init__(self, nc: Client, node_id: str, heartbeat: float, on_rows: SessionRows,
                 on_report: Report | None = None) -> None:
        self.nc = nc
        self.node_id = node_id
        self.on_rows = on_rows
        self.on_report = on_report
        self.ttl = STALE_HEARTBEATS * heartbeat
        self._wants: dict[str, dict[str, float]] = {}  # session -> node -> monotonic expiry
        self._tokens: dict[tuple[str, str], tuple[str, str]] = {}  # stream key -> its tokens
        self._in_turn = False  # a batch left in this IOLoop turn: the next ones wait for its end
        self._held: dict[str, list[str]] = {}  # node -> lines held to the end of the turn
        self._subs: list[Subscription] = []

    async def start(self) -> None:
        """Listen to every node's wants, and to the rows sent to this one."""
        self._subs = [await self.nc.subscribe(f"{WANT_ROOT}.*", cb=self._on_want),
                      await self.nc.subscribe(live_subject(self.node_id), cb=self._on_live),
                      await self.nc.subscribe(f"{REPORT_ROOT}.{self.node_id}", cb=self._on_report)]
        await self.nc.flush()  # the server has them: a want said from now on reaches this node

    async def stop(self) -> None:
        """Stop listening."""
        for sub in self._subs:
            try:
                await sub.unsubscribe()
            except Exception as exc:  # noqa: BLE001 - a dead connection: nothing to release
                log.debug("unsubscribe failed: %s", exc)
        self._subs = []

    # --- wants ---------------------------------------------------------------------------------
    async def want(self, session_ids: list[str]) -> None:
        """Tell every node that this one follows these sessions (at start and each heartbeat)."""
        node = self.node_id.encode()
        for sid in session_ids:
            try:
                await self.nc.publish(f"{WANT_ROOT}.{J.token(sid)}", node)
            except Exception as exc:  # noqa: BLE001 - disconnected: the next heartbeat says it
                log.debug("want of %s not sent: %s", sid, exc)
                return

    def wanted_by(self, session_id: str) -> list[str]:
        """The nodes following the session now (asked per ingest batch: a dict lookup)."""
        nodes = self._wants.get(session_id)
        if not nodes:
            return []
        now = time.monotonic()
        return [n for n, until in nodes.items() if until > now]

    def forget_expired(self) -> None:
        """Drop wants nobody renewed, and the tokens of streams no longer sent."""
        now = time.monotonic()
        for sid in list(self._wants):
            nodes = {n: u for n, u in self._wants[sid].items() if u > now}
            if nodes:
                self._wants[sid] = nodes
            else:
                del self._wants[sid]
        self._tokens = {k: v for k, v in self._tokens.items() if k[0] in self._wants}

    async def _on_want(self, msg: Msg) -> None:
        node = msg.data.decode()
        if node and node != self.node_id:
            sid = J.untoken(msg.subject[len(WANT_ROOT) + 1:])
            self._wants.setdefault(sid, {})[node] = time.monotonic() + self.ttl

    # --- rows ----------------------------------------------------------------------------------
    def send(self, key: tuple[str, str], rows: list[Row]) -> None:
        """Send an ingest batch (one stream, in seq order) to every node following its session."""
        nodes = self.wanted_by(key[0])
        if not nodes or not self.nc.is_connected:
            return  # sent while disconnected it would go out on the reconnect, stale
        tokens = self._tokens.get(key)
        if tokens is None:
            tokens = self._tokens[key] = (J.token(key[0]), J.token(key[1]))
        lines = [encode_line(*tokens, row) for row in rows]
        if self._in_turn:
            for node in nodes:
                self._held.setdefault(node, []).extend(lines)
            return
        self._in_turn = True
        asyncio.get_running_loop().call_soon(self._end_turn)
        for node in nodes:
            self._publish(live_subject(node), lines)

    def _end_turn(self) -> None:
        self._in_turn = False
        held, self._held = self._held, {}
        if not self.nc.is_connected:
            return
        for node, lines in held.items():
            self._publish(live_subject(node), lines)

    def _publish(self, subject: str, lines: list[str]) -> None:
        """Send self-contained `lines` in as few messages as NATS's max_payload allows."""
        chunk: list[str] = []
        size = 0
        for line in lines:
            if size + len(line) > MAX_LIVE_MESSAGE and chunk:
                self._send(subject, chunk)
                chunk, size = [], 0
            if len(line) < MAX_LIVE_MESSAGE:  # (a larger event only takes the stream)
                chunk.append(line)
                size += len(line) + 1
        if chunk:
            self._send(subject, chunk)

    def _send(self, subject: str, lines: list[str]) -> None:
        """Publish `lines` as one core NATS message, at most once (losses are repaired)."""
        sent = start_now(self.nc.publish(subject, "\n".join(lines).encode()))
        if sent.done():
            _sent(sent)
        else:  # nats-py's buffer was full: it went out when there was room
            sent.add_done_callback(_sent)

    async def _on_live(self, msg: Msg) -> None:
        try:
            sessions = decode_message(msg.data)
        except (ValueError, UnicodeDecodeError) as exc:
            log.error("undecodable live message on %s: %s", msg.subject, exc)
            return
        for sid, rows in sessions.items():
            self.on_rows(sid, rows)


    # --- reports -------------------------------------------------------------------------------
    def report(self, durable: Durable) -> None:
        """Tell each node following sessions recorded here how far their streams are durable."""
        if not self.nc.is_connected:
            return
        now = time.monotonic()
        lines: dict[str, list[str]] = {}  # node -> its report's lines
        for sid, nodes in self._wants.items():
            streams = durable(sid)
            if not streams:
                continue
            stoken = J.token(sid)
            these = [f"{stoken}\t{J.token(t)}\t{seq}\t{sseq}" for t, (seq, sseq) in streams.items()]
            for node, until in nodes.items():
                if until > now:
                    lines.setdefault(node, []).extend(these)
        for node, out in lines.items():
            self._publish(f"{REPORT_ROOT}.{node}", out)  # thousands of sessions: several

    async def _on_report(self, msg: Msg) -> None:
        if self.on_report is None:
            return
        try:
            for line in msg.data.decode().split("\n"):
                stoken, ttoken, seq, sseq = line.split("\t")
                self.on_report(J.untoken(stoken), J.untoken(ttoken), int(seq), int(sseq))
        except (ValueError, UnicodeDecodeError) as exc:
            log.error("undecodable report on %s: %s", msg.subject, exc)


def _sent(sent: asyncio.Future[None]) -> None:
    if not sent.cancelled() and (exc := sent.exception()) is not None:
        log.debug("live message not sent (followers get it from the stream): %r", exc)
