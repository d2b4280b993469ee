"""`Services`: everything a handler may use, built from one Config and closed in order."""

from __future__ import annotations

import weakref

from tornado.websocket import WebSocketHandler

from streamdom.archive.storage import Storage
from streamdom.config import Config
from streamdom.ingest.acks import AckBatcher
from streamdom.ingest.limits import IngestLimits
from streamdom.live.hub import Hub
from streamdom.web.auth import PasswordCheck
from streamdom.wire import CloseCode


class Services:
    """Everything a handler may use, built from one Config."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.hub = Hub(config)
        self.storage = Storage(config)
        self.limits = IngestLimits(config.max_events_per_second_per_ip, config.max_sessions_per_ip)
        self.password_check = PasswordCheck(config.password) if config.password else None
        self.sockets: weakref.WeakSet[WebSocketHandler] = weakref.WeakSet()  # closed on shutdown
        self.acks = AckBatcher(config.ack_interval)

    async def start(self) -> None:
        """Recover storage and start background work; call before accepting connections."""
        await self.storage.start()
        self.acks.start()

    async def close(self) -> None:
        """Say goodbye to every socket (reconnect later), then flush storage."""
        for sock in list(self.sockets):
            sock.close(CloseCode.GOING_AWAY, "server shutting down")
        self.acks.stop()
        await self.storage.close()
