"""Viewer access: login required when a password is set; ingest and the recorder stay public."""

from __future__ import annotations

import http.cookiejar
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from tornado.httpclient import HTTPClientError, HTTPRequest
from tornado.websocket import websocket_connect

from streamdom.cli import is_loopback
from streamdom.testing import InProcessServer, ServerProcess
from tests.helpers import Recorder, run_async, server_config


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *a, **k):  # noqa: ANN002, ANN003
        return None


@pytest.fixture(scope="module")
def locked(tmp_path_factory: pytest.TempPathFactory):
    srv = InProcessServer(server_config(tmp_path_factory.mktemp("auth") / "data",
                                      password="correct horse")).start()
    yield srv
    srv.stop()


def status(url: str, opener: urllib.request.OpenerDirector | None = None) -> tuple[int, dict]:
    opener = opener or urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(url, timeout=10) as r:
            return r.status, dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers)


def test_viewer_routes_need_a_login(locked: InProcessServer) -> None:
    for path in ("/api/sessions", "/api/sessions/x/events", "/api/sessions/x"):
        assert status(locked.http + path)[0] == 401, path
    for path in ("/", "/sessions/abc"):
        code, headers = status(locked.http + path)
        assert code == 302 and headers["Location"].startswith("/login?next="), path
    for path in ("/healthz", "/streamdom.js", "/demo", "/login"):
        assert status(locked.http + path)[0] == 200, path

    async def go() -> None:
        for path in ("/watch/abc", "/updates"):
            with pytest.raises(HTTPClientError) as exc:
                await websocket_connect(locked.ws + path)
            assert exc.value.code == 401
        rec = Recorder(locked.ws, "public-ingest")
        assert (await rec.connect())["type"] == "welcome"
        rec.close()

    run_async(go())


def test_login_sets_a_safe_cookie_and_opens_the_viewer(locked: InProcessServer) -> None:
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar), NoRedirect)
    status(locked.http + "/login", opener)
    xsrf = next(c.value for c in jar if c.name == "_xsrf")

    def login(password: str) -> tuple[int, dict]:
        body = urllib.parse.urlencode({"password": password, "_xsrf": xsrf, "next": "/"}).encode()
        try:
            with opener.open(urllib.request.Request(locked.http + "/login", data=body), timeout=10) as r:
                return r.status, dict(r.headers)
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers)

    assert login("wrong")[0] == 401
    code, headers = login("correct horse")
    assert code == 302 and headers["Location"] == "/"
    cookie = headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert status(locked.http + "/api/sessions", opener)[0] == 200
    assert status(locked.http + "/", opener)[0] == 200

    # A login POST without the XSRF token is refused (CSRF).
    body = urllib.parse.urlencode({"password": "correct horse"}).encode()
    fresh = urllib.request.build_opener(NoRedirect)
    with pytest.raises(urllib.error.HTTPError) as exc:
        fresh.open(urllib.request.Request(locked.http + "/login", data=body), timeout=10)
    assert exc.value.code == 403

    async def ws() -> None:
        cookie_header = "; ".join(f"{c.name}={c.value}" for c in jar)
        conn = await websocket_connect(HTTPRequest(locked.ws + "/updates",
                                                   headers={"Cookie": cookie_header}))
        assert '"sessions"' in await conn.read_message()
        conn.close()

    run_async(ws())


def test_refuses_to_bind_beyond_loopback_without_a_password(tmp_path: Path) -> None:
    srv = ServerProcess(tmp_path, "--host", "0.0.0.0")
    with pytest.raises(RuntimeError) as exc:
        srv.start()
    assert "without a viewer password" in str(exc.value)
    assert is_loopback("127.0.0.1") and is_loopback("::1") and not is_loopback("0.0.0.0")
