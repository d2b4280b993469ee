"""The application factory: `make_app(config)` wires services and routes into a Tornado app."""

from __future__ import annotations

import logging
import secrets
from typing import Any

from tornado import httputil
from tornado.web import Application, RequestHandler

from streamdom.config import Config
from streamdom.web.built import STATIC_DIR
from streamdom.web.connections import GuardedHTTPServer
from streamdom.web.handlers.api import EventsHandler, SessionHandler, SessionsHandler
from streamdom.web.handlers.base import Misdirected, host_allowed, request_summary
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


access_log = logging.getLogger("tornado.access")


class StreamDOMApp(Application):
    """The Tornado application, with its services at `.services`."""

    services: Services

    def listen(self, port: int, address: str | None = None, *,  # type: ignore[override]
               reuse_port: bool = False, **_: Any) -> GuardedHTTPServer:
        """Serve on `port` with the config's deadlines and connection caps."""
        cfg = self.services.config
        server = GuardedHTTPServer(
            self, guard=self.services.connections, xheaders=False,
            idle_connection_timeout=cfg.header_timeout, body_timeout=cfg.body_timeout,
            max_body_size=cfg.max_body_bytes)
        server.listen(port, address, reuse_port=reuse_port)
        return server

    def find_handler(self, request: httputil.HTTPServerRequest, **kwargs: Any
                     ) -> httputil.HTTPMessageDelegate:
        """Route the request, unless its Host is one this server does not answer to."""
        if not host_allowed(self.services.config, request.host_name):
            return self.get_handler_delegate(request, Misdirected)
        return super().find_handler(request, **kwargs)

    def log_request(self, handler: RequestHandler) -> None:
        """Log a finished request by its path: a query string may hold a key."""
        status = handler.get_status()
        level = logging.INFO if status < 400 else logging.WARNING if status < 500 else logging.ERROR
        access_log.log(level, "%d %s %.2fms", status, request_summary(handler.request),
                       1000.0 * handler.request.request_time())


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
