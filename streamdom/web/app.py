"""The application factory: `make_app(config)` wires services and routes into a Tornado app."""

from __future__ import annotations

import secrets

from tornado.web import Application

from streamdom.config import Config
from streamdom.web.built import STATIC_DIR
from streamdom.web.handlers.api import EventsHandler, SessionHandler, SessionsHandler
from streamdom.web.handlers.ingest import IngestHandler
from streamdom.web.handlers.pages import (
    DemoPage,
    HealthHandler,
    ListPage,
    LoginPage,
    LogoutHandler,
    NotFoundPage,
    PlayerPage,
    StaticFiles,
)
from streamdom.web.handlers.watch import UpdatesHandler, WatchHandler
from streamdom.web.services import Services

ID = r"([^/]+)"


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
            (r"/(streamdom\.js)", StaticFiles, static),
            (r"/static/(.*)", StaticFiles, static),
        ],
        services=services,
        default_handler_class=NotFoundPage,
        cookie_secret=config.cookie_secret or secrets.token_hex(32),
        login_url="/login",
        xsrf_cookies=True,
        websocket_max_message_size=config.max_message_bytes,
        websocket_ping_interval=20,
        websocket_ping_timeout=60,
    )
    app.services = services
    return app
