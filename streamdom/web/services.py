"""`Services`: everything a handler may use, built from one Config and closed in order."""

from __future__ import annotations

import asyncio
import weakref

from tornado.websocket import WebSocketHandler

from streamdom.archive.archiver import Archiver, LakeArchive
from streamdom.archive.lake import Location
from streamdom.archive.reads import ArchiveReader
from streamdom.bus.base import Bus
from streamdom.bus.local import LocalBus
from streamdom.bus.natsbus import NatsBus
from streamdom.config import Config
from streamdom.ingest.access import ResumeSecrets, StreamHolders
from streamdom.ingest.acks import AckBatcher
from streamdom.ingest.limits import IngestLimits
from streamdom.sessions.feed import SessionFeed
from streamdom.sessions.model import Sessions
from streamdom.web.auth import LoginGenerations, PasswordChecker
from streamdom.web.connections import ConnectionGuard
from streamdom.wire import CloseCode


class Services:
    """Everything a handler may use, built from one Config.

    Ingest hands events to `bus`; watchers subscribe through it; `sessions` is the one read
    model of sessions (over the bus and `archive`), and `feed` pushes its changes.
    """

    def __init__(self, config: Config) -> None:
        self.config = config
        location = Location.of(config)
        self.archive = ArchiveReader(location, config.query_threads)
        self.bus: Bus = (NatsBus(config, self.archive) if config.clustered
                         else LocalBus(config, location, self.archive))
        self.sessions = Sessions(self.bus, self.archive)
        self.feed = SessionFeed(self.sessions)
        self.bus.on_session_change(self.feed.changed)
        self.limits = IngestLimits(config.max_events_per_second_per_ip, config.max_sessions_per_ip)
        self.acks = AckBatcher(config.ack_interval)
        self.resume_secrets: ResumeSecrets | None = None  # keyed in start(): the bus may share a key
        self.stream_holders: StreamHolders[WebSocketHandler] = StreamHolders()
        hashed = config.password_hash
        self.password_checker = PasswordChecker(hashed) if hashed else None
        self.logins = LoginGenerations(config.data_dir) if hashed else None
        self.connections = ConnectionGuard(config.connection_cap, config.connection_cap_per_ip)
        self.sockets: weakref.WeakSet[WebSocketHandler] = weakref.WeakSet()  # closed on shutdown
        self.archiver: Archiver | None = None  # --archiver: the cluster archiver, in-process
        self._archiving: asyncio.Future[None] | None = None

    async def start(self) -> None:
        """Recover and start the bus and background work; call before accepting connections."""
        await self.bus.start()
        if self.config.clustered and self.config.archiver:
            await self._start_archiver()
        self.resume_secrets = ResumeSecrets.load(self.config.ingest_secret, self.config.data_dir,
                                                 None if self.config.ingest_secret else
                                                 await self.bus.shared_key("resume"))
        self.acks.start()

    async def close(self) -> None:
        """Say goodbye to every socket (reconnect later), then make everything durable."""
        for sock in list(self.sockets):
            sock.close(CloseCode.GOING_AWAY, "server shutting down")
        self.acks.stop()
        if self.password_checker is not None:
            await self.password_checker.close()  # logins in flight get 503, not a dropped socket
        await self.bus.close()
        if self.archiver is not None and self._archiving is not None:
            self.archiver.stop.set()  # it finishes the batch in hand: commit, then ack
            await self._archiving
        await asyncio.to_thread(self.archive.close)

    async def _start_archiver(self) -> None:
        """Run the archiver `python -m streamdom archive` runs, with this node's settings; its
        commits run in its own thread, so the IOLoop only fetches, decodes and acks."""
        c = self.config
        assert isinstance(self.bus, NatsBus)
        self.archiver = Archiver(self.bus.settings, LakeArchive(Location.of(c), c.retention_days),
                                 maintenance_interval=c.compaction_interval)
        self._archiving = asyncio.ensure_future(self.archiver.run())
        started = asyncio.ensure_future(self.archiver.started.wait())
        await asyncio.wait([self._archiving, started], return_when=asyncio.FIRST_COMPLETED)
        if not started.done():
            started.cancel()
            self._archiving.result()  # raises why it stopped (e.g. J.BusUnreachable)

