"""HTML pages of the viewer, the demo page, login/logout and the health check."""

from __future__ import annotations

from pathlib import Path

from tornado.web import HTTPError, RequestHandler

from streamdom.web.handlers.base import COOKIE, ServicesMixin, ViewerHandler

STATIC_DIR = Path(__file__).resolve().parent.parent.parent / "static"


def page(name: str) -> str:
    """The text of a built page in streamdom/static (read per request: pages are small)."""
    path = STATIC_DIR / name
    if not path.exists():
        raise HTTPError(500, reason=f"{name} is not built: run `make build`")
    return path.read_text()


class ListPage(ViewerHandler):
    """GET /: the session list."""

    def get(self) -> None:
        """Serve the list page."""
        self.finish(page("index.html"))


class PlayerPage(ViewerHandler):
    """GET /sessions/<id>: the player; 404 status (same page, which says so) for unknown ids."""

    async def get(self, session_id: str) -> None:
        """Serve the player page."""
        try:
            await self.session_or_404(session_id)
        except HTTPError as exc:
            if exc.status_code != 404:
                raise
            self.set_status(404)
        self.finish(page("player.html"))


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
