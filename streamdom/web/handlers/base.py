"""What every handler shares: access to the services, viewer login checks, bounded frame queues,
safe logs, the Host rule of loopback mode and the headers of viewer pages."""

from __future__ import annotations

import ipaddress
import json
import re
from collections import deque
from html import escape
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from tornado import httputil
from tornado.httputil import responses
from tornado.iostream import IOStream
from tornado.log import app_log
from tornado.web import HTTPError, RequestHandler
from tornado.websocket import WebSocketHandler, WebSocketProtocol, WebSocketProtocol13

from streamdom.config import Config
from streamdom.web.built import error_page
from streamdom.web.transport import Connection, FramesProtocol
from streamdom.wire import valid_id, ws_text_frame

if TYPE_CHECKING:
    from streamdom.web.services import Services

COOKIE = "streamdom_user"
COOKIE_DAYS = 7

# Viewer pages run only their own scripts (the replayer's iframe inherits this, on top of its
# sandbox), cannot be framed, and send no Referer: replay fetches the recorded page's images
# and CSS from their sites, which must not learn the viewer's URL. Images, styles and fonts
# stay open, as the recorded page loaded them from anywhere.
PAGE_HEADERS = {
    "Content-Security-Policy": "script-src 'self'; object-src 'none'; frame-ancestors 'none'; "
                               "base-uri 'self'; form-action 'self'",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}


_INT = re.compile(r"-?[0-9]{1,16}")  # an integer query argument: digits, nothing else

class PageError(HTTPError):
    """An HTTP error of a viewer page, with what the styled error page tells the PM."""

    def __init__(self, status: int, reason: str, title: str, message_html: str) -> None:
        super().__init__(status, reason=reason)
        self.title = title
        self.message_html = message_html


def request_summary(request: httputil.HTTPServerRequest) -> str:
    """Method, path and address of a request for logs: never the query string (it may hold a
    write key)."""
    return f"{request.method} {request.path} ({request.remote_ip})"


def host_allowed(config: Config, host_name: str) -> bool:
    """Whether to serve a request for `host_name` (the Host header without its port).

    Without a password the server is for this machine only, and a page elsewhere could point a
    name of its own at 127.0.0.1 (DNS rebinding) to read the viewer: only loopback names are
    served then, and the host of --public-url. With a password, the login guards everything.
    """
    if config.requires_login:
        return True
    name = host_name.lower().rstrip(".")
    if name == "localhost" or name.endswith(".localhost"):
        return True
    if config.public_url and name == (urlsplit(config.public_url).hostname or "").lower():
        return True
    try:
        return ipaddress.ip_address(name.strip("[]")).is_loopback
    except ValueError:
        return False


_UNSAFE_NEXT = re.compile(r"[\\\x00-\x1f\x7f]")


def safe_next(value: str) -> str:
    """`value` if it is a path on this site, else "/": never another host after login.

    Browsers read `\\` as `/` and drop tabs and newlines, so `/\\evil.example` or `/<TAB>/evil`
    would leave the site; percent-decoding (once or twice) must not make such a path either.
    """
    decoded = value
    for _ in range(3):
        if (not decoded.startswith("/") or decoded.startswith("//")
                or _UNSAFE_NEXT.search(decoded)):
            return "/"
        decoded, before = unquote(decoded), decoded
        if decoded == before:
            break
    return value


class RedactedLogs:
    """Error logs name a request by its path (Tornado's default logs the query string)."""

    request: httputil.HTTPServerRequest

    def _request_summary(self) -> str:
        return request_summary(self.request)

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        """Log an uncaught exception without the request's URI or headers."""
        if isinstance(value, HTTPError):
            return RequestHandler.log_exception(self, typ, value, tb)  # type: ignore[arg-type]
        app_log.error("Uncaught exception %s", self._request_summary(), exc_info=(typ, value, tb))
        return None


class ServicesMixin(RedactedLogs):
    """Gives a handler `self.services` from the application settings."""

    application: Any

    @property
    def services(self) -> Services:
        """The running server's services (config, bus, sessions, ...)."""
        return self.application.settings["services"]

    def logged_in(self) -> bool:
        """Whether the request carries a login cookie of the current generation (or no login is
        configured)."""
        svc = self.services
        if not svc.config.requires_login:
            return True
        value = self.get_signed_cookie(COOKIE, max_age_days=COOKIE_DAYS)  # type: ignore[attr-defined]
        return value is not None and svc.logins is not None and svc.logins.valid(value.decode())


class Misdirected(RedactedLogs, RequestHandler):
    """421 for a Host name this server does not answer to (loopback mode)."""

    def prepare(self) -> None:
        """Refuse, saying what to do."""
        self.set_status(421)
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        self.finish(f"421: this StreamDOM server answers to localhost only, not to "
                    f"{self.request.host_name!r}. Open it as http://localhost:<port>/, or start "
                    f"it with --public-url (and a password) to serve it under another name.\n")


class PageHeaders:
    """Sends the viewer pages' security headers (CSP, no Referer)."""

    def set_default_headers(self) -> None:
        """Add PAGE_HEADERS to every answer."""
        for name, value in PAGE_HEADERS.items():
            self.set_header(name, value)  # type: ignore[attr-defined]


class ViewerHandler(PageHeaders, ServicesMixin, RequestHandler):
    """An HTTP handler of the viewer: needs a login when a password is configured."""

    def get_current_user(self) -> str | None:
        """The logged-in viewer, or 'local' when no login is configured."""
        return "viewer" if self.logged_in() else None

    def prepare(self) -> None:
        """Refuse anonymous requests: pages redirect to /login, the API answers 401."""
        if self.current_user:
            return
        if self.request.path.startswith("/api/") or self.request.method != "GET":
            raise HTTPError(401, reason="login required")
        self.redirect(self.get_login_url() + "?next=" + _quote(self.request.uri or "/"))

    def write_json(self, obj: object, status: int = 200) -> None:
        """Send a JSON body."""
        self.set_status(status)
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.set_header("Cache-Control", "no-store")
        self.finish(json.dumps(obj, separators=(",", ":")))

    async def session_or_404(self, session_id: str) -> dict[str, object]:
        """The session's summary from the read model, or HTTP 404."""
        found = await self.services.sessions.get(session_id) if valid_id(session_id) else None
        if found is None:
            raise HTTPError(404, reason="unknown session")
        return found

    def int_arg(self, name: str, default: int | None, low: int, high: int = 2**53) -> int | None:
        """An integer query argument in [low, high] (plain digits only), or 400."""
        raw = self.get_query_argument(name, None)
        if raw is None or raw == "":
            return default
        # int() would also take " 5", "+5" and "1_000": a query string holds digits or is wrong.
        if not _INT.fullmatch(raw) or not low <= int(raw) <= high:
            bound = f"{low}..{high}" if high < 2**53 else f">= {low}"
            raise HTTPError(400, reason=f"{name} must be an integer {bound}")
        return int(raw)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """Errors of /api/* as JSON, of pages as the styled error page."""
        reason = self._reason
        if self.request.path.startswith("/api/"):
            self.set_header("Content-Type", "application/json; charset=utf-8")
            self.finish(json.dumps({"error": reason, "status": status_code}))
            return
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.set_header("Cache-Control", "no-store")
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, PageError):
            self.finish(error_page(status_code, exc.title, exc.message_html))
        else:
            self.finish(error_page(status_code, None, self._error_message(status_code)))

    def _error_message(self, status: int) -> str:
        """What the error page says when the handler gave no PageError (HTML, escaped)."""
        if status == 404:
            return f"There is no page at <code>{escape(self.request.path[:300])}</code>."
        if status >= 500:  # the reason may say more than a stranger should read
            return "The server could not answer this page. Try again in a moment."
        reason = self._reason
        if reason == responses.get(status):  # no reason of ours: Tornado's own 400s etc.
            return "The address or its parameters are not valid." if status == 400 else ""
        return escape(reason[:1].upper() + reason[1:]) + "."


class ServerSocket(ServicesMixin, WebSocketHandler):
    """Any WebSocket of the server: registered so shutdown can close it with 1001, and counted
    by the connection guard until it closes. After the handshake its socket is a `Connection`
    (web/transport.py): frames are read and written on an asyncio Protocol."""

    stream: IOStream | Connection | None = None  # what the connection guard counts

    def prepare(self) -> None:
        """Register this socket."""
        self.services.sockets.add(self)
        self.stream = self.request.connection.stream  # type: ignore[attr-defined]

    def get_websocket_protocol(self) -> WebSocketProtocol | None:
        """Tornado's protocol (its params), fed frames by the Connection (web/transport.py)."""
        proto = super().get_websocket_protocol()
        if type(proto) is WebSocketProtocol13:
            proto.__class__ = FramesProtocol
        return proto

    def _detach_stream(self) -> IOStream:
        """The handshake is answered: the socket leaves Tornado's stream for a Connection."""
        stream = super()._detach_stream()
        conn = Connection(stream)
        if self.stream is not None:
            self.services.connections.moved(self.stream, conn)
        self.stream = conn
        return conn  # type: ignore[return-value]  # what Tornado's protocol calls as its stream

    def on_connection_close(self) -> None:
        """The socket is gone: it no longer counts against any cap."""
        if self.stream is not None:
            self.services.connections.forget(self.stream)
        super().on_connection_close()


class FrameSocket(ServerSocket):
    """A server-to-viewer socket with a bounded send queue.

    Frames are pre-encoded strings shared by every viewer. At most `viewer_queue_max_bytes`
    of them sit in the socket's write buffer (a copy per viewer); frames beyond that wait in
    `held`, by reference (a backlog's frames are the ring's own). A backlog is held in full
    (cutting it short would leave the viewer an unplayable start), but live frames held past the
    bound mean the viewer is too far behind: the socket drops them and calls `on_lagging`, so a
    stalled viewer costs a bounded amount of memory and delays nobody.
    """

    held_live = 0  # bytes of live (not backlog) frames in `held`
    held: deque[tuple[bytes, bool]] | None = None
    lagging = False
    bound = 0  # viewer_queue_max_bytes, from the config

    def send_frame(self, frame: str | bytes, backlog: bool = False) -> None:
        """Queue one frame (text, or a frame prebuilt by ws_text_frame) unless too far behind."""
        conn = self.ws_connection
        # Closing: Tornado's is_closing() but for the socket's own state, which send checks.
        if self.lagging or conn is None or conn.client_terminated or conn.server_terminated:
            return
        data = frame if isinstance(frame, bytes) else ws_text_frame(frame)
        sock: Connection = self.stream  # type: ignore[assignment]  # the handshake is done
        bound = self.bound
        if self.held or (sock.pending and sock.unsent > bound):
            if sock.closed():  # nothing more will be sent
                return
            if self.held is None:
                self.held = deque()
                sock.on_drained = self._drained
            if not backlog:
                self.held_live += len(data)
                if self.held_live > bound:
                    self.lagging = True
                    self.held.clear()
                    self.held_live = 0
                    self.on_lagging()
                    return
            self.held.append((data, backlog))
            return
        # Straight to the socket: the frame is complete (we negotiate no compression).
        sock.send(data)

    def _drained(self) -> None:
        """Everything written was sent: held frames follow, up to the bound."""
        sock, held = self.stream, self.held
        assert isinstance(sock, Connection)
        bound = self.bound
        while held and sock.unsent <= bound and not self.lagging:
            data, backlog = held.popleft()
            if not backlog:
                self.held_live -= len(data)
            sock.send(data)
        if self.lagging and sock.unsent == 0:
            self.lagging = False
            self.on_drained()

    def on_lagging(self) -> None:
        """Called once when the queue bound is hit."""

    def on_drained(self) -> None:
        """Called when a lagging viewer has read everything queued."""

    def check_origin(self, origin: str) -> bool:
        """Only the viewer's own pages may open a viewer socket (with a password or without):
        the Origin must be the Host asked for, which loopback mode only serves for its names."""
        return urlsplit(origin).netloc.lower() == (self.request.host or "").lower()

    def prepare(self) -> None:
        """Refuse the handshake without a login."""
        super().prepare()
        self.bound = self.services.config.viewer_queue_max_bytes
        if not self.logged_in():
            raise HTTPError(401, reason="login required")


def _quote(s: str) -> str:
    from urllib.parse import quote

    return quote(s, safe="")
