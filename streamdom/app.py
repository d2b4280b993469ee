"""The application factory: `make_app(config)` wires services and routes into a Tornado app."""

from __future__ import annotations

import secrets
import weakref

from tornado.web import Application, StaticFileHandler
from tornado.websocket import WebSocketHandler

from streamdom.auth import PasswordCheck
from streamdom.config import Config
from streamdom.handlers.api import EventsHandler, SessionHandler, SessionsHandler
from streamdom.handlers.ingest import AckBatcher, IngestHandler
from streamdom.handlers.pages import (
    STATIC_DIR,
    DemoPage,
    HealthHandler,
    ListPage,
    LoginPage,
    LogoutHandler,
    PlayerPage,
)
from streamdom.handlers.watch import UpdatesHandler, WatchHandler
from streamdom.hub import Hub
from streamdom.limits import IngestLimits
from streamdom.storage import Storage

ID = r"([^/]+)"


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
        """Say goodbye to every socket (1001: reconnect later), then flush storage."""
        for sock in list(self.sockets):
            sock.close(1001, "server shutting down")
        self.acks.stop()
        await self.storage.close()


class StreamDOMApp(Application):
    """The Tornado application, with its services at `.services`."""

    services: Services


def make_app(config: Config) -> StreamDOMApp:
    """Build the application for `config` (call `await app.services.start()` before serving)."""
    services = Services(config)
    static = {"path": str(STATIC_DIR)}
    app = StreamDOMApp(
        [
            (r"/", ListPage),
            (rf"/sessions/{ID}", PlayerPage),
            (r"/demo", DemoPage),
            (r"/healthz", HealthHandler),
            (r"/login", LoginPage),
            (r"/logout", LogoutHandler),
            (r"/api/sessions", SessionsHandler),
            (rf"/api/sessions/{ID}", SessionHandler),
            (rf"/api/sessions/{ID}/events", EventsHandler),
            (r"/ingest", IngestHandler),
            (rf"/watch/{ID}", WatchHandler),
            (r"/updates", UpdatesHandler),
            (r"/(streamdom\.js)", StaticFileHandler, static),
            (r"/static/(.*)", StaticFileHandler, static),
        ],
        services=services,
        cookie_secret=config.cookie_secret or secrets.token_hex(32),
        login_url="/login",
        xsrf_cookies=True,
        websocket_max_message_size=config.max_message_bytes,
        websocket_ping_interval=20,
        websocket_ping_timeout=60,
    )
    app.services = services
    return app
