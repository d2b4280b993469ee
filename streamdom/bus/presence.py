"""Presence: which sessions are live on which node, in the `sd_live` key-value bucket.

Each node writes one entry per session it has recorders for, key `<session>.<node>`, value a
JSON summary with `seen_at` (server ms). It rewrites it when the session starts or ends and
every heartbeat (`--presence-heartbeat`, 5 s) while live. An entry counts as live only while it
was refreshed less than three heartbeats ago, so a node killed with -9 loses its sessions' live
flag within that.
Ended entries stay for the bucket's max age, long enough for the archivers to catch up, so a
session never disappears from the list in between.

Every node watches the whole bucket into memory: the list, /api/sessions and /updates read the
same entries on every node.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable

from nats.js.kv import KV_DEL, KV_PURGE, KeyValue

from streamdom.bus import jetstream as J
from streamdom.wire import now_ms

log = logging.getLogger(__name__)

STALE_HEARTBEATS = 3  # heartbeats missed after which an entry no longer counts as live

Summary = dict[str, object]
ChangeCallback = Callable[[str, bool], None]  # (session id, started or ended)


def fresh(entry: Summary, now: int, stale_ms: int) -> bool:
    """Whether an entry says live and was refreshed recently enough to believe it."""
    return bool(entry.get("live")) and now - int(entry.get("seen_at", 0)) < stale_ms  # type: ignore[call-overload]


def merge(entries: list[Summary], now: int, stale_ms: int) -> Summary:
    """One session's summary from its entries on several nodes (tabs recorded on different nodes)."""
    live = [e for e in entries if fresh(e, now, stale_ms)]
    first = min(entries, key=lambda e: int(e["started_at"]))  # type: ignore[arg-type]
    return {
        "id": first["id"], "live": bool(live),
        "started_at": int(first["started_at"]),  # type: ignore[arg-type]
        "last_event_at": max(int(e["last_event_at"]) for e in entries),  # type: ignore[arg-type]
        "event_count": sum(int(e.get("event_count", 0)) for e in entries),  # type: ignore[arg-type]
        "bytes": sum(int(e.get("bytes", 0)) for e in entries),  # type: ignore[arg-type]
        "url": first.get("url", ""), "user_agent": first.get("user_agent", ""),
        "nodes": sorted(str(e["node"]) for e in live),
    }


class PresenceBoard:
    """This node's entries in the bucket, and a live copy of everyone's."""

    def __init__(self, kv: KeyValue, node_id: str, on_change: ChangeCallback,
                 heartbeat: float = 5.0) -> None:
        self.kv = kv
        self.heartbeat = heartbeat  # s between this node's refreshes
        self.stale_ms = int(STALE_HEARTBEATS * heartbeat * 1000)
        self.node_id = node_id
        self.on_change = on_change
        self.entries: dict[str, dict[str, Summary]] = {}  # session id -> node -> entry
        self._watch_task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self._writes: dict[str, Summary] = {}  # latest entry per session, not yet written
        self._writer: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Load every entry, then follow changes."""
        self._watch_task = asyncio.ensure_future(self._watch())
        await asyncio.wait_for(self._ready.wait(), 10)

    async def _watch(self) -> None:
        while True:
            try:
                watcher = await self.kv.watchall()
                async for entry in watcher:
                    if entry is None:  # the initial values are in
                        self._ready.set()
                        continue
                    self._apply(entry.key, entry.operation, entry.value)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - reconnects, leader changes: watch again
                log.warning("presence watch: %s; watching again", exc)
                await asyncio.sleep(1.0)

    def _apply(self, key: str, op: str | None, value: bytes | None) -> None:
        sid_tok, _, node = key.rpartition(".")
        sid = J.untoken(sid_tok)
        nodes = self.entries.setdefault(sid, {})
        was = self.live(sid)
        if op in (KV_DEL, KV_PURGE) or not value:
            nodes.pop(node, None)
            if not nodes:
                del self.entries[sid]
        else:
            try:
                nodes[node] = json.loads(value)
            except ValueError:
                return
        self.on_change(sid, self.live(sid) != was)

    async def lookup(self, session_id: str, timeout: float = 2.0) -> None:
        """Read a session's entries from the bucket now, not waiting for the watch to bring
        them (a watcher may ask for a session another node started a moment ago)."""
        async def read() -> None:
            watcher = await self.kv.watch(f"{J.token(session_id)}.*")
            try:
                async for entry in watcher:
                    if entry is None:  # the current values are in
                        return
                    self._apply(entry.key, entry.operation, entry.value)
            finally:
                await watcher.stop()

        try:
            await asyncio.wait_for(read(), timeout)
        except Exception as exc:  # noqa: BLE001 - NATS trouble: answer from what the watch has
            log.warning("presence lookup of %s: %s", session_id, exc)

    def live(self, session_id: str) -> bool:
        """Whether some node has a recorder of the session (and refreshed it lately)."""
        nodes = self.entries.get(session_id)
        if not nodes:
            return False
        now = now_ms()
        return any(fresh(e, now, self.stale_ms) for e in nodes.values())

    def summary(self, session_id: str) -> Summary | None:
        """The merged summary of a session, if any node has an entry for it."""
        nodes = self.entries.get(session_id)
        return merge(list(nodes.values()), now_ms(), self.stale_ms) if nodes else None

    def summaries(self) -> dict[str, Summary]:
        """Every session with an entry, merged."""
        now = now_ms()
        return {sid: merge(list(nodes.values()), now, self.stale_ms)
                for sid, nodes in self.entries.items() if nodes}

    def put(self, session_id: str, summary: Summary) -> None:
        """Write this node's entry for a session soon (writes coalesce; never blocks)."""
        self._writes[session_id] = {**summary, "node": self.node_id}
        if self._writer is None or self._writer.done():
            self._writer = asyncio.ensure_future(self._write())

    async def _write(self) -> None:
        # Everything put meanwhile goes out at once (a burst of new sessions must not queue
        # behind one round trip each), then whatever was put while those were in flight.
        while self._writes:
            batch, self._writes = self._writes, {}
            now = now_ms()
            results = await asyncio.gather(*(
                self.kv.put(f"{J.token(sid)}.{self.node_id}",
                            json.dumps({**summary, "seen_at": now}).encode())
                for sid, summary in batch.items()), return_exceptions=True)
            for sid, result in zip(batch, results, strict=True):
                if isinstance(result, BaseException):  # the next heartbeat writes it again
                    log.warning("presence of %s not written: %s", sid, result)

    async def flush(self) -> None:
        """Wait until every entry put so far is written."""
        if self._writer is not None:
            await asyncio.shield(self._writer)

    async def stop(self) -> None:
        """Stop watching."""
        if self._watch_task is not None:
            self._watch_task.cancel()
