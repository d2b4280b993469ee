"""HTML pages of the viewer, the demo page, login/logout and the health check."""

from __future__ import annotations

from html import escape
from typing import Any

from tornado.web import HTTPError, RequestHandler, StaticFileHandler

from streamdom.web.auth import CheckerClosed, TooManyAttempts
from streamdom.web.built import error_page, page
from streamdom.web.handlers.base import (
    COOKIE,
    COOKIE_DAYS,
    PageError,
    PageHeaders,
    RedactedLogs,
    ServicesMixin,
    ViewerHandler,
    safe_next,
)
from streamdom.wire import CloseCode, valid_id

LOGOUT_SLOT = "<!--logout-->"


class ListPage(ViewerHandler):
    """GET /: the session list."""

    def get(self) -> None:
        """Serve the list page."""
        self.finish(self.with_logout(page("index.html")))

    def with_logout(self, html: str) -> str:
        """The page with a sign-out control in its header when logins are on."""
        if not self.services.config.requires_login:
            return html
        form = ('<form class="logout" method="post" action="/logout">'
                f'{self.xsrf_form_html()}<button class="btn btn-quiet" type="submit" '
                'data-testid="logout" title="Sign out every browser logged in to this viewer">'
                'Sign out</button></form>')
        return html.replace(LOGOUT_SLOT, form)


class PlayerPage(ListPage):
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
        self.finish(self.with_logout(page("player.html")))


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


class LoginPage(PageHeaders, ServicesMixin, RequestHandler):
    """GET/POST /login: password form; sets an HttpOnly, SameSite=Strict signed cookie."""

    def get(self) -> None:
        """Serve the login form (and make sure the XSRF cookie is set)."""
        self.xsrf_token  # noqa: B018 - reading it sets the _xsrf cookie the form posts back
        self.finish(page("login.html"))

    async def post(self) -> None:
        """Check the password (off the IOLoop, throttled per address); on success set the cookie
        of the current login generation and go to `next` (a local path only)."""
        svc = self.services
        nxt = safe_next(self.get_body_argument("next", "/") or "/")
        if svc.password_checker is None or svc.logins is None:
            raise HTTPError(404, reason="no viewer password is configured")
        try:
            ok = await svc.password_checker.check(self.request.remote_ip or "?",
                                                  self.get_body_argument("password", ""))
        except TooManyAttempts as exc:
            self.set_status(429)
            self.set_header("Retry-After", str(exc.retry_after))
            self.finish(page("login.html").replace(
                "<!--error-->", f'<p class="error">Too many attempts: wait {exc.retry_after} s</p>'))
            return
        except CheckerClosed:  # shutting down: say so rather than drop the connection
            self.set_status(503)
            self.set_header("Retry-After", "1")
            self.finish(page("login.html").replace(
                "<!--error-->", '<p class="error">The server is restarting: try again</p>'))
            return
        if not ok:
            self.set_status(401)
            self.finish(page("login.html").replace("<!--error-->", '<p class="error">Wrong password</p>'))
            return
        self.set_signed_cookie(COOKIE, svc.logins.current, expires_days=COOKIE_DAYS, httponly=True,
                               samesite="Strict", secure=self.request.protocol == "https")
        self.redirect(nxt)


class LogoutHandler(ServicesMixin, RequestHandler):
    """POST /logout: revoke every login cookie issued so far, and close viewer sockets."""

    def post(self) -> None:
        """Move the login generation on (when logged in), clear the cookie, go to /login."""
        svc = self.services
        if svc.logins is not None and self.logged_in():
            svc.logins.revoke()
            for sock in list(svc.sockets):
                if sock.request.path != "/ingest":
                    sock.close(CloseCode.LOGGED_OUT, "logged out")
        self.clear_cookie(COOKIE)
        self.redirect("/login")


class StaticFiles(RedactedLogs, StaticFileHandler):
    """/static/* and /streamdom.js; a missing file gets the styled 404 page."""

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """The styled error page instead of Tornado's bare one."""
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.finish(error_page(status_code, None, "There is no such file." if status_code == 404 else ""))
