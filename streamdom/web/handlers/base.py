"""What every handler shares: access to the services, viewer login checks, bounded frame queues."""

from __future__ import annotations

import json
from html import escape
from typing import TYPE_CHECKING, Any

from tornado.httputil import responses
from tornado.iostream import StreamClosedError
from tornado.web import HTTPError, RequestHandler
from tornado.websocket import WebSocketHandler

from streamdom.web.built import error_page
from streamdom.wire import valid_id, ws_text_frame

if TYPE_CHECKING:
    from streamdom.web.services import Services

COOKIE = "streamdom_user"


class PageError(HTTPError):
    """An HTTP error of a viewer page, with what the styled error page tells the PM."""

    def __init__(self, status: int, reason: str, title: str, message_html: str) -> None:
        super().__init__(status, reason=reason)
        self.title = title
        self.message_html = message_html


class ServicesMixin:
    """Gives a handler `self.services` from the application settings."""

    application: Any

    @property
    def services(self) -> Services:
        """The running server's services (config, bus, sessions, ...)."""
        return self.application.settings["services"]


class ViewerHandler(ServicesMixin, RequestHandler):
    """An HTTP handler of the viewer: needs a login when a password is configured."""

    def get_current_user(self) -> str | None:
        """The logged-in viewer, or 'local' when no login is configured."""
        if not self.services.config.requires_login:
            return "local"
        value = self.get_signed_cookie(COOKIE, max_age_days=7)
        return value.decode() if value else None

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

    def int_arg(self, name: str, default: int | None) -> int | None:
        """An integer query argument, or 400."""
        raw = self.get_query_argument(name, None)
        if raw is None or raw == "":
            return default
        try:
            return int(raw)
        except ValueError:
            raise HTTPError(400, reason=f"{name} must be an integer") from None

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
    """Any WebSocket of the server: registered so shutdown can close it with 1001."""

    def prepare(self) -> None:
        """Register this socket."""
        self.services.sockets.add(self)


class FrameSocket(ServerSocket):
    """A server-to-viewer socket with a bounded send queue.

    Frames are pre-encoded strings shared by every viewer. Tornado buffers what the peer has
    not read yet; once that exceeds the configured bound the socket stops queueing and calls
    `on_lagging`, so one stalled viewer costs a bounded amount of memory and delays nobody.
    """

    pending = 0
    lagging = False

    def send_frame(self, frame: str | bytes, backlog: bool = False) -> None:
        """Queue one frame (text, or a frame prebuilt by ws_text_frame) unless too far behind.

        Backlog frames are always queued: a backlog is bounded by the ring buffer, and cutting
        it short would leave the viewer with an unplayable start (and resync it forever).
        """
        conn = self.ws_connection
        if self.lagging or conn is None or conn.is_closing():
            return
        if not backlog and self.pending > self.services.config.viewer_queue_max_bytes:
            self.lagging = True
            self.on_lagging()
            return
        data = frame if isinstance(frame, bytes) else ws_text_frame(frame)
        size = len(data)
        self.pending += size
        try:
            # Straight to the stream: the frame is complete (we negotiate no compression).
            fut = conn.stream.write(data)  # type: ignore[attr-defined]
        except StreamClosedError:
            return
        fut.add_done_callback(lambda f: self._sent(size, f))

    def _sent(self, size: int, fut: Any) -> None:
        if not fut.cancelled():
            fut.exception()  # a write to a stream that closed meanwhile: nothing to report
        self.pending -= size
        if self.lagging and self.pending == 0:
            self.lagging = False
            self.on_drained()

    def on_lagging(self) -> None:
        """Called once when the queue bound is hit."""

    def on_drained(self) -> None:
        """Called when a lagging viewer has read everything queued."""

    def viewer_allowed(self) -> bool:
        """The same login rule as ViewerHandler, for the WebSocket handshake."""
        if not self.services.config.requires_login:
            return True
        return bool(self.get_signed_cookie(COOKIE, max_age_days=7))

    def prepare(self) -> None:
        """Refuse the handshake without a login."""
        super().prepare()
        if not self.viewer_allowed():
            raise HTTPError(401, reason="login required")


def _quote(s: str) -> str:
    from urllib.parse import quote

    return quote(s, safe="")
