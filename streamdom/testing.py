"""Running a real StreamDOM server for tests and benchmarks: in a subprocess or in this process.

`ServerProcess` runs `python -m streamdom` as a user would (for crash, restart and browser
tests, and benchmarks); `InProcessServer` runs `make_app(config)` on a real loopback socket from
a thread of the calling process (for tests of the API, limits, auth and pages: no interpreter
to start). Both answer the same `http`, `ws`, `get_json`.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from streamdom.config import Config
from streamdom.web.app import StreamDOMApp, make_app
from streamdom.web.services import Services

ROOT = Path(__file__).resolve().parent.parent  # the checkout (cwd of server subprocesses)


class Endpoints:
    """The URLs of a server listening on loopback at `port`."""

    port = 0

    @property
    def http(self) -> str:
        """Base HTTP URL."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        """Base WebSocket URL."""
        return f"ws://127.0.0.1:{self.port}"

    def get_json(self, path: str) -> Any:
        """GET a JSON document."""
        with urllib.request.urlopen(self.http + path, timeout=10) as r:
            return json.loads(r.read())


class ServerProcess(Endpoints):
    """`python -m streamdom` on a free loopback port, as a user would run it.

    Its output goes to a log file next to the data dir (kept across restarts): a pipe that
    nobody reads during a long run would fill up and stall the server on its next log line.
    """

    def __init__(self, data_dir: Path, *args: str, env: dict[str, str] | None = None,
                 root: Path = ROOT, preexec: Callable[[], None] | None = None) -> None:
        self.root = root  # the checkout whose code runs (benchmarks compare two side by side)
        self.preexec = preexec  # run in the child before exec (e.g. resource.setrlimit)
        self.data_dir = Path(data_dir)
        self.args = list(args)
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None
        self.python_args: list[str] = []  # interpreter options before `-m streamdom` (a profiler)
        self.port = 0
        self.log_path = self.data_dir.parent / (self.data_dir.name + ".log")
        self._log: Any = None

    def start(self, port: int = 0, timeout: float = 120) -> ServerProcess:
        """Start (on `port`, else the last one, else a free one) and wait for the 'listening' line."""
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, *self.python_args, "-m", "streamdom", "--port", str(port or self.port),
               "--data-dir", str(self.data_dir), *self.args]
        self._close_log()
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed when the process ends
        since = self._log.tell()  # this start's 'listening' line, not an earlier one's
        self.proc = subprocess.Popen(cmd, cwd=self.root, env=self.env, stdout=self._log,
                                     stderr=subprocess.STDOUT, preexec_fn=self.preexec)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with open(self.log_path, "rb") as f:
                f.seek(since)
                m = re.search(rb"StreamDOM listening on http://[^:]+:(\d+)", f.read())
            if m:
                self.port = int(m.group(1))
                return self
            if self.proc.poll() is not None:
                raise RuntimeError("server exited:\n" + self.logs())
            time.sleep(0.02)
        raise RuntimeError("server did not start:\n" + self.logs())

    def logs(self) -> str:
        """Everything the server printed so far, over all its starts."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def stop(self, timeout: float = 60) -> int:
        """SIGTERM and wait: the clean shutdown path. Returns the exit code."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._close_log()
        return self.proc.returncode

    def kill(self) -> None:
        """kill -9: the crash path."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)
        self._close_log()

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None


class InProcessServer(Endpoints):
    """`make_app(config)` on a real loopback socket, served by its own IOLoop in a thread.

    Started and stopped the way `python -m streamdom` does it (services started before the
    socket listens; on stop, no new connections, then services closed: sockets told 1001,
    everything flushed), minus the process. `start` again after `stop` reuses the port and
    the data dir: a clean restart.
    """

    def __init__(self, config: Config) -> None:
        self.config = config
        self.data_dir = config.data_dir
        self.services: Services | None = None  # of the running app
        self.app: StreamDOMApp | None = None  # (tests add per-behaviour handlers to it)
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None

    def start(self, timeout: float = 120) -> InProcessServer:
        """Serve from a new thread; return once the socket accepts connections."""
        ready = threading.Event()
        failed: list[BaseException] = []
        self._thread = threading.Thread(target=lambda: asyncio.run(self._serve(ready, failed)),
                                        name="streamdom-in-process", daemon=True)
        self._thread.start()
        if not ready.wait(timeout):
            raise RuntimeError("in-process server did not start")
        if failed:
            raise failed[0]
        return self

    async def _serve(self, ready: threading.Event, failed: list[BaseException]) -> None:
        try:
            app = make_app(self.config)
            await app.services.start()
            server = app.listen(self.port, "127.0.0.1")
            self.port = next(iter(server._sockets.values())).getsockname()[1]
        except BaseException as exc:  # noqa: BLE001 - handed to the starting thread
            failed.append(exc)
            ready.set()
            return
        self.services, self.app = app.services, app
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        ready.set()
        await self._stop.wait()
        server.stop()
        await app.services.close()
        await server.close_all_connections()

    @property
    def running(self) -> bool:
        """Whether the server's thread is still serving."""
        return self._thread is not None and self._thread.is_alive()

    def stop(self, timeout: float = 60) -> None:
        """Stop accepting, close the services (flushing everything), wait for the thread."""
        if self._loop is None or self._stop is None or self._thread is None:
            return
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise RuntimeError("in-process server did not stop")
        self._loop = self._stop = self._thread = None
        self.services = None
