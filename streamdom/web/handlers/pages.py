"""HTML pages of the viewer, the demo page, login/logout and the health check."""

from __future__ import annotations

from html import escape
from typing import Any

from tornado.web import HTTPError, RequestHandler, StaticFileHandler

from streamdom.web.built import error_page, page
from streamdom.web.handlers.base import COOKIE, PageError, ServicesMixin, ViewerHandler
from streamdom.wire import valid_id


class ListPage(ViewerHandler):
    """GET /: the session list."""

    def get(self) -> None:
        """Serve the list page."""
        self.finish(page("index.html"))


class PlayerPage(ViewerHandler):
    """GET /sessions/<id>: the player; the styled error page for a malformed (400) or unknown
    (404) id."""

    async def get(self, session_id: str) -> None:
        """Serve the player page."""
        shown = f"<code>{escape(session_id[:200])}</code>"
        if not valid_id(session_id):
            raise PageError(400, "malformed session id", "Not a session id",
                            f"{shown} is not a session id: ids are 1 to 128 letters, digits "
                            "and <code>. _ : @ -</code>.")
        if await self.services.sessions.get(session_id) is None:
            raise PageError(404, "unknown session", "Session not found",
                            f"No session {shown} on this server. Its id may be mistyped, or it "
                            "may be older than the archive keeps.")
        self.finish(page("player.html"))


class NotFoundPage(ViewerHandler):
    """Any path no route matches: the styled 404 page (a JSON 404 under /api/)."""

    def prepare(self) -> None:
        """Check the login first (no page list for strangers), then refuse."""
        super().prepare()
        if self._finished:
            return
        raise HTTPError(404, reason="not found")


class DemoPage(ServicesMixin, RequestHandler):
    """GET /demo: a page that records itself (never needs a login)."""

    def get(self) -> None:
        """Serve the demo page."""
        self.finish(page("demo.html"))


class HealthHandler(ServicesMixin, RequestHandler):
    """GET /healthz: 200 once ready, with the state of storage."""

    def get(self) -> None:
        """Answer health."""
        bus = self.services.bus
        self.set_header("Content-Type", "application/json")
        self.finish({"ok": True, "live_sessions": len(bus.presence()),
                     "storage_writable": bus.failure is None, "storage_error": bus.failure})


class LoginPage(ServicesMixin, RequestHandler):
    """GET/POST /login: password form; sets an HttpOnly, SameSite=Strict signed cookie."""

    def get(self) -> None:
        """Serve the login form (and make sure the XSRF cookie is set)."""
        self.xsrf_token  # noqa: B018 - reading it sets the _xsrf cookie the form posts back
        self.finish(page("login.html"))

    def post(self) -> None:
        """Check the password; on success set the cookie and go to `next`."""
        svc = self.services
        nxt = self.get_body_argument("next", "/") or "/"
        if not nxt.startswith("/") or nxt.startswith("//"):
            nxt = "/"  # never redirect off-site
        check = svc.password_check
        if check is None or not check.verify(self.get_body_argument("password", "")):
            self.set_status(401)
            self.finish(page("login.html").replace("<!--error-->", '<p class="error">Wrong password</p>'))
            return
        self.set_signed_cookie(COOKIE, "viewer", expires_days=7, httponly=True, samesite="Strict",
                               secure=self.request.protocol == "https")
        self.redirect(nxt)


class LogoutHandler(ServicesMixin, RequestHandler):
    """POST /logout: forget the login cookie."""

    def post(self) -> None:
        """Clear the cookie."""
        self.clear_cookie(COOKIE)
        self.redirect("/login")


class StaticFiles(StaticFileHandler):
    """/static/* and /streamdom.js; a missing file gets the styled 404 page."""

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """The styled error page instead of Tornado's bare one."""
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.finish(error_page(status_code, None, "There is no such file." if status_code == 404 else ""))
