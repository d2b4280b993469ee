"""The viewer's side of issue 12: logins that cannot stall the relay, a logout that revokes, no
redirect off-site, loopback mode served to loopback names only, no secret in logs or `ps`, and
viewer pages that send a CSP and no Referer.

Each test replays a reproduction of the adversarial review (3, 5, 7, 8, 10, 11) on a real server.
"""

from __future__ import annotations

import asyncio
import dataclasses
import http.cookiejar
import os
import socket
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser
from tornado.httpclient import HTTPClientError, HTTPRequest
from tornado.websocket import websocket_connect

from streamdom.cli import parse_args
from streamdom.config import PasswordHash
from streamdom.testing import InProcessServer, ServerProcess
from streamdom.web.auth import FREE_ATTEMPTS
from tests.browser import AppServer, recorded_page, replayer_text
from tests.helpers import (
    TEST_SERVER_ARGS,
    Recorder,
    record,
    run_async,
    server_config,
    session_events,
    wait_for,
)

PASSWORD = "correct horse"


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *a, **k):  # noqa: ANN002, ANN003
        return None


class Browserish:
    """A cookie-keeping HTTP client that does not follow redirects (from a given address)."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar), NoRedirect)

    def request(self, path: str, form: dict[str, str] | None = None, timeout: float = 30
                ) -> tuple[int, dict[str, str], str]:
        data = urllib.parse.urlencode(form).encode() if form is not None else None
        try:
            with self.opener.open(urllib.request.Request(self.base + path, data=data), timeout=timeout) as r:
                return r.status, dict(r.headers), r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers), e.read().decode()

    @property
    def xsrf(self) -> str:
        if not any(c.name == "_xsrf" for c in self.jar):
            self.request("/login")
        return next(c.value for c in self.jar if c.name == "_xsrf")

    def login(self, password: str, nxt: str = "/", timeout: float = 30) -> tuple[int, dict[str, str], str]:
        return self.request("/login", {"password": password, "_xsrf": self.xsrf, "next": nxt}, timeout)

    def cookie_header(self) -> str:
        return "; ".join(f"{c.name}={c.value}" for c in self.jar)


@pytest.fixture
def locked(tmp_path: Path) -> Iterator[InProcessServer]:
    srv = InProcessServer(server_config(tmp_path / "data", password=PASSWORD)).start()
    yield srv
    srv.stop()


def test_a_login_check_never_stalls_the_server_and_one_address_checks_one_at_a_time(tmp_path: Path) -> None:
    # Reproduction 3: the hash ran on the IOLoop, so login attempts stalled the live relay. A
    # hash that takes as long as the test wants (real PBKDF2, started only once the gate opens)
    # makes it plain: while one attempt is being checked, the server answers everything else at
    # once, and a second attempt from the same address is refused.
    gate = threading.Event()

    class GatedHash(PasswordHash):
        def verify(self, password: str) -> bool:
            gate.wait(120)
            return super().verify(password)

    srv = InProcessServer(server_config(tmp_path / "data", password_hash=GatedHash(b"salt", b"\0" * 32))).start()
    answers: list[tuple[int, dict[str, str], str] | BaseException] = []

    def first_login() -> None:
        try:
            answers.append(first.login("guess", timeout=60))
        except BaseException as exc:  # noqa: BLE001 - the test asserts what the server did
            answers.append(exc)

    first = Browserish(srv.http)
    first.xsrf  # noqa: B018 - fetches the form's cookie before the check starts
    attempt = threading.Thread(target=first_login, daemon=True)
    attempt.start()
    try:
        assert srv.services is not None
        checker = srv.services.password_checker
        wait_for(lambda: checker is not None and checker._pending == 1, what="a check in flight")
        with urllib.request.urlopen(srv.http + "/healthz", timeout=10) as r:
            assert r.status == 200
        second = Browserish(srv.http)
        code, headers, _ = second.login("another guess", timeout=10)
        assert code == 429 and int(headers["Retry-After"]) >= 1
        record(srv.ws, "during-login", session_events(20))  # recorded and acked meanwhile
        assert answers == []  # still being checked
    finally:
        # A shutdown while the check is in flight answers it (503), never drops its connection
        # (it did: RemoteDisconnected in the login's thread).
        srv.stop()
        gate.set()
        attempt.join(60)
    assert len(answers) == 1 and not isinstance(answers[0], BaseException), answers
    code, headers, body = answers[0]
    assert code == 503 and headers["Retry-After"] == "1" and "try again" in body


def test_failed_logins_back_off_per_address_with_429(locked: InProcessServer) -> None:
    client = Browserish(locked.http)
    for _ in range(FREE_ATTEMPTS):
        assert client.login("wrong")[0] == 401
    code, headers, body = client.login(PASSWORD)  # even the right one waits now
    assert code == 429 and "Too many attempts" in body
    wait = int(headers["Retry-After"])
    assert 1 <= wait <= 2
    # The wait doubles with each further failure.
    wait_for(lambda: client.login("wrong")[0] == 401, timeout=wait + 5, interval=0.25)
    code, headers, _ = client.login(PASSWORD)
    assert code == 429 and int(headers["Retry-After"]) >= 2
    wait_for(lambda: client.login(PASSWORD)[0] == 302, timeout=10, interval=0.5)


def test_logout_revokes_the_cookie_and_closes_viewer_sockets(locked: InProcessServer) -> None:
    # Reproduction 8: every login got the same signed value, still good after /logout, and the
    # viewer had no logout control.
    pm, other = Browserish(locked.http), Browserish(locked.http)
    assert pm.login(PASSWORD)[0] == 302 and other.login(PASSWORD)[0] == 302
    copied = pm.cookie_header()
    record(locked.ws, "shown", session_events(3))
    for path in ("/", "/sessions/shown"):
        code, _, html = pm.request(path)
        assert code == 200
        assert 'data-testid="logout"' in html and 'action="/logout"' in html and 'name="_xsrf"' in html

    async def go() -> None:
        conns = []
        for cookie in (copied, other.cookie_header()):
            conn = await websocket_connect(HTTPRequest(locked.ws + "/updates", headers={"Cookie": cookie}))
            assert '"sessions"' in (await conn.read_message() or "")
            conns.append(conn)
        code, headers, _ = await asyncio.to_thread(pm.request, "/logout", {"_xsrf": pm.xsrf})
        assert code == 302 and headers["Location"] == "/login"
        for conn in conns:
            while (await conn.read_message()) is not None:
                pass
            assert conn.close_code == 4403
        with pytest.raises(HTTPClientError) as exc:
            await websocket_connect(HTTPRequest(locked.ws + "/updates", headers={"Cookie": copied}))
        assert exc.value.code == 401

    run_async(go())
    # The copied cookie, and every other browser's, stop working: one password, one login.
    stale = urllib.request.build_opener(NoRedirect)
    for cookie in (copied, other.cookie_header()):
        with pytest.raises(urllib.error.HTTPError) as exc:
            stale.open(urllib.request.Request(locked.http + "/api/sessions", headers={"Cookie": cookie}),
                       timeout=10)
        assert exc.value.code == 401
    assert pm.login(PASSWORD)[0] == 302 and pm.request("/api/sessions")[0] == 200


def test_a_logout_survives_a_restart_with_a_fixed_cookie_secret(tmp_path: Path) -> None:
    cfg = server_config(tmp_path / "data", password=PASSWORD, cookie_secret="fixed")
    srv = InProcessServer(cfg).start()
    try:
        pm = Browserish(srv.http)
        pm.login(PASSWORD)
        kept = pm.cookie_header()
        pm.request("/logout", {"_xsrf": pm.xsrf})
        srv.stop()
        srv.start()
        req = urllib.request.Request(srv.http + "/api/sessions", headers={"Cookie": kept})
        with pytest.raises(urllib.error.HTTPError) as exc:
            urllib.request.build_opener(NoRedirect).open(req, timeout=10)
        assert exc.value.code == 401
    finally:
        srv.stop()


@pytest.mark.parametrize("nxt", [
    "/%5Cevil.example/x", "/%09/evil.example/x", "/\\evil.example", "//evil.example", "/\t/evil.example",
    "/%2F%2Fevil.example", "/%252F%252Fevil.example", "https://evil.example/", "/\nevil",
])
def test_login_never_redirects_off_site(locked: InProcessServer, nxt: str) -> None:
    # Reproduction 5: next=/%5C<host>/x and next=/%09/<host>/x sent the browser to another host.
    code, headers, _ = Browserish(locked.http).login(PASSWORD, nxt)
    assert code == 302 and headers["Location"] == "/"


def test_login_keeps_a_local_next(locked: InProcessServer) -> None:
    code, headers, _ = Browserish(locked.http).login(PASSWORD, "/sessions/a%20b?t=5")
    assert code == 302 and headers["Location"] == "/sessions/a%20b?t=5"


def raw_get(port: int, path: str, host: str, extra: str = "") -> tuple[int, str]:
    """A GET with a chosen Host header (as a browser sends it after DNS rebinding)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n{extra}Connection: close\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.decode(errors="replace").partition("\r\n\r\n")
    return int(head.split()[1]), body


def test_loopback_mode_serves_loopback_names_only(tmp_path: Path) -> None:
    # Reproduction 7: with no password, a request with Host: rebind.attacker.example got the
    # session's events, and /updates took a foreign Host and Origin: DNS rebinding's setup.
    srv = InProcessServer(server_config(tmp_path / "data", public_url="https://replay.example.com")).start()
    try:
        evs = session_events(5)
        record(srv.ws, "private", evs)
        path = "/api/sessions/private/events"
        for host in ("rebind.attacker.example", f"rebind.attacker.example:{srv.port}", "10.0.0.8",
                     "localhost.attacker.example"):
            code, body = raw_get(srv.port, path, host)
            assert code == 421 and "localhost" in body and "--public-url" in body, host
            assert "private" not in body
        for host in (f"localhost:{srv.port}", f"127.0.0.1:{srv.port}", f"[::1]:{srv.port}",
                     "app.localhost", "replay.example.com"):
            assert raw_get(srv.port, path, host)[0] == 200, host

        async def sockets() -> None:
            for path in ("/updates", "/watch/private"):
                for headers, status in (({"Host": "rebind.attacker.example"}, 421),
                                        ({"Origin": "http://rebind.attacker.example"}, 403),
                                        ({"Origin": f"http://localhost:{srv.port + 1}"}, 403)):
                    with pytest.raises(HTTPClientError) as exc:
                        await websocket_connect(HTTPRequest(srv.ws + path, headers=headers))
                    assert exc.value.code == status, (path, headers)
                conn = await websocket_connect(HTTPRequest(
                    srv.ws + path, headers={"Origin": f"http://127.0.0.1:{srv.port}"}))
                assert await conn.read_message() is not None
                conn.close()
            ok = Recorder(srv.ws, "private", "s2")  # recorders on this machine go on recording
            assert (await ok.connect())["type"] == "welcome"
            ok.close()

        run_async(sockets())
        assert srv.get_json(path) == evs
    finally:
        srv.stop()


def test_no_secret_reaches_the_logs_ps_or_memory(tmp_path: Path) -> None:
    # Reproduction 10: the write key was logged at INFO (GET /ingest?key=...), --password was in
    # `ps`, and the plain password stayed in services.config.password.
    pw_file = tmp_path / "password"
    pw_file.write_text("pw-in-a-file-0xC0FFEE\n")
    srv = ServerProcess(tmp_path / "data", *TEST_SERVER_ARGS, "--password-file", str(pw_file),
                        "--write-key", "wk-0xSECRET", "--log-level", "DEBUG").start()
    try:
        rec = Recorder(srv.ws, "keyed")

        async def go() -> None:
            assert (await rec.connect("?key=wk-0xSECRET"))["type"] == "welcome"
            await rec.send_events(1, session_events(3))
            await rec.wait_ack(3)
            rec.close()
            with pytest.raises(HTTPClientError):
                await websocket_connect(srv.ws + "/ingest?key=wk-0xWRONG")

        run_async(go())
        assert raw_get(srv.port, "/api/sessions?key=wk-0xSECRET", f"127.0.0.1:{srv.port}")[0] == 401
        assert srv.proc is not None
        cmdline = Path(f"/proc/{srv.proc.pid}/cmdline").read_bytes()
        client = Browserish(srv.http)
        assert client.login("pw-in-a-file-0xC0FFEE")[0] == 302  # the file's first line, no newline
        wait_for(lambda: "GET /ingest" in srv.logs(), what="the ingest request logged")
    finally:
        srv.stop()
    logs = srv.logs()
    assert "/api/sessions" in logs and "GET /ingest" in logs
    for secret in ("wk-0xSECRET", "wk-0xWRONG", "pw-in-a-file"):
        assert secret not in logs, secret
    assert b"pw-in-a-file" not in cmdline


def test_the_password_is_hashed_at_once_and_taken_out_of_the_environment(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("STREAMDOM_PASSWORD", PASSWORD)
    cfg = parse_args([])
    assert "STREAMDOM_PASSWORD" not in os.environ  # the flusher and other children never see it
    assert cfg.password_hash is not None and cfg.password_hash.verify(PASSWORD)
    kept = repr(dataclasses.asdict(cfg)) + repr(cfg) + repr(vars(cfg))
    assert PASSWORD not in kept and PASSWORD.encode() not in cfg.password_hash.digest
    assert not cfg.password_hash.verify("other")
    monkeypatch.delenv("STREAMDOM_PASSWORD", raising=False)
    assert parse_args([]).password_hash is None
    other = parse_args(["--password", "other"]).password_hash
    assert other is not None and other.verify("other")
    (tmp_path / "pw").write_text("from file\r\nsecond line ignored\n")
    from_file = parse_args(["--password-file", str(tmp_path / "pw")]).password_hash
    assert from_file is not None and from_file.verify("from file")
    (tmp_path / "empty").write_text("")
    with pytest.raises(SystemExit):
        parse_args(["--password-file", str(tmp_path / "empty")])


def test_viewer_pages_send_a_csp_and_no_referer(locked: InProcessServer) -> None:
    pm = Browserish(locked.http)
    pm.login(PASSWORD)
    for path in ("/", "/sessions/abc", "/login"):
        code, headers, _ = pm.request(path)
        assert code in (200, 404), path
        csp = headers["Content-Security-Policy"]
        assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp and "object-src 'none'" in csp
        assert headers["Referrer-Policy"] == "no-referrer"


def test_replay_under_the_csp_fetches_the_recorded_images_without_a_referer(
        tmp_path: Path, browser: Browser, app_server: AppServer) -> None:
    # Reproduction 11: replaying fetched the recorded page's images and CSS with Referer set to
    # the viewer's URL (/sessions/<id>: which session a PM is looking at), and no CSP was sent.
    srv = ServerProcess(tmp_path / "data", *TEST_SERVER_ARGS).start()
    try:
        app_server.add("/pixel.svg", '<svg xmlns="http://www.w3.org/2000/svg" width="4" height="4"/>',
                       "image/svg+xml")
        beacon = f"{app_server.origin}/beacon"
        # The recorded page also carries script the replay must never run (it runs here, once).
        page = recorded_page(browser, app_server, srv.http, "referer-check",
                             f'<h1 id="title">Checkout</h1><img id="logo" src="{app_server.origin}/pixel.svg">'
                             f'<img src="/missing.png" onerror="fetch(\'{beacon}?onerror\')">'
                             f'<script>fetch("{beacon}?inline")</script>')
        page.wait_for_function("document.getElementById('logo').complete")
        wait_for(lambda: {"/beacon?onerror", "/beacon?inline"} <= set(app_server.referers),
                 what="the page's own scripts ran while recording")
        wait_for(lambda: any(s["id"] == "referer-check" and s["event_count"] >= 2
                             for s in srv.get_json("/api/sessions")["sessions"]),
                 timeout=30, what="the snapshot recorded")
        page.context.close()  # live or ended by now: the player renders it either way
        for path in ("/pixel.svg", "/beacon?onerror", "/beacon?inline"):
            app_server.referers.pop(path, None)
        viewer = browser.new_page()
        violations: list[str] = []
        viewer.on("console", lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None)
        viewer.goto(f"{srv.http}/sessions/referer-check")
        wait_for(lambda: replayer_text(viewer, "#title") == "Checkout", timeout=30, what="the replay")
        wait_for(lambda: "/pixel.svg" in app_server.referers, timeout=30, what="the replayed image")
        assert app_server.referers["/pixel.svg"] is None
        assert violations == []
        assert not {"/beacon?onerror", "/beacon?inline"} & set(app_server.referers)  # no script ran
        viewer.close()
    finally:
        srv.stop()
