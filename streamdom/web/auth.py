"""Viewer logins: password checks off the IOLoop, per-address backoff, revocable cookies.

The password is kept only as a PBKDF2 hash (config.PasswordHash). Checking an attempt costs
~0.1 s of CPU, so it runs on one thread of its own: the IOLoop (the live relay) never waits for
it, and however many attempts arrive they take one core at most. Each address gets a few
attempts, then waits twice as long after every further failure (429 with Retry-After).

A login cookie carries the generation it was issued under. Logging out moves the generation on
(kept in the data dir, 0600), so every cookie issued before, copied or not, stops working.
"""

from __future__ import annotations

import asyncio
import math
import os
import secrets
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from streamdom.config import PasswordHash

FREE_ATTEMPTS = 5  # failures per address before the backoff starts
FIRST_WAIT = 1.0  # seconds after the first failure past the free ones; doubles each time
MAX_WAIT = 300.0
MAX_PENDING = 8  # checks queued for the hashing thread, all addresses together
MAX_ADDRESSES = 10_000  # addresses remembered; the oldest is forgotten first
GENERATION_FILE = "viewer-login-generation"


class TooManyAttempts(Exception):
    """Refused before hashing: this address (or everyone) must wait `retry_after` seconds."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"too many login attempts: retry in {math.ceil(retry_after)} s")
        self.retry_after = max(1, math.ceil(retry_after))


class CheckerClosed(Exception):
    """The server is shutting down: the attempt was not (or not fully) checked."""


@dataclass
class _Attempts:
    failures: int = 0
    not_before: float = 0.0  # monotonic time of the next allowed attempt
    checking: bool = False  # one check at a time per address


class PasswordChecker:
    """Checks login attempts against the hash on one thread, with per-address backoff."""

    def __init__(self, password_hash: PasswordHash) -> None:
        self._hash = password_hash
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="streamdom-login")
        self._pending = 0
        self._by_address: OrderedDict[str, _Attempts] = OrderedDict()
        self._checks: set[asyncio.Future[bool]] = set()  # hashes in flight, abandoned by close()
        self._closed = False
        self._idle = asyncio.Event()  # no check in flight (close waits for it)
        self._idle.set()

    async def check(self, address: str, password: str) -> bool:
        """Whether `password` is right; raises TooManyAttempts instead of checking when this
        address must wait (or too many checks are queued), CheckerClosed once closed."""
        if self._closed:
            raise CheckerClosed
        now = time.monotonic()
        state = self._by_address.get(address)
        if state is None:
            state = self._by_address[address] = _Attempts()
            while len(self._by_address) > MAX_ADDRESSES:
                self._by_address.popitem(last=False)
        self._by_address.move_to_end(address)
        if state.checking:
            raise TooManyAttempts(FIRST_WAIT)
        if now < state.not_before:
            raise TooManyAttempts(state.not_before - now)
        if self._pending >= MAX_PENDING:
            raise TooManyAttempts(FIRST_WAIT)
        state.checking = True
        self._pending += 1
        self._idle.clear()
        verify = asyncio.get_running_loop().run_in_executor(self._pool, self._hash.verify, password)
        self._checks.add(verify)
        try:
            ok = await verify
        except asyncio.CancelledError:
            if self._closed:  # close() abandoned it: the caller still answers the request
                raise CheckerClosed from None
            raise
        finally:
            self._checks.discard(verify)
            state.checking = False
            self._pending -= 1
            if not self._pending:
                self._idle.set()
        if ok:
            self._by_address.pop(address, None)
        else:
            state.failures += 1
            extra = state.failures - FREE_ATTEMPTS
            if extra >= 0:
                state.not_before = time.monotonic() + min(MAX_WAIT, FIRST_WAIT * 2 ** extra)
        return ok

    async def close(self) -> None:
        """Abandon the checks in flight (their requests are answered: CheckerClosed), then stop
        the hashing thread. Returns once every waiting caller has been resumed, so the server
        answers them before it closes their connections."""
        self._closed = True
        for verify in list(self._checks):
            verify.cancel()  # the hash itself runs to its end in the thread; nobody waits for it
        self._pool.shutdown(wait=False, cancel_futures=True)
        await self._idle.wait()


class LoginGenerations:
    """The server side of login cookies: the current generation, moved on by a logout.

    Kept in a file of the data dir so that a restart with a fixed --cookie-secret does not
    bring revoked cookies back, and so that `--workers` processes sharing the dir agree (each
    notices another's logout by the file's mtime).
    """

    def __init__(self, data_dir: Path) -> None:
        self._path = Path(data_dir) / GENERATION_FILE
        self._stamp: tuple[int, int] | None = None
        self._current = ""
        if not self._path.exists():
            self._write(secrets.token_hex(16))
        self._load()

    @property
    def current(self) -> str:
        """The generation new login cookies carry."""
        self._load()
        return self._current

    def valid(self, value: str) -> bool:
        """Whether a cookie of generation `value` is still good."""
        return secrets.compare_digest(value, self.current)

    def revoke(self) -> None:
        """Log every browser out: cookies issued until now stop working."""
        self._write(secrets.token_hex(16))
        self._load()

    def _load(self) -> None:
        try:
            st = self._path.stat()
        except FileNotFoundError:  # deleted under us: a fresh generation logs everyone out
            self._write(secrets.token_hex(16))
            st = self._path.stat()
        stamp = (st.st_ino, st.st_mtime_ns)  # each write is a new file (os.replace)
        if stamp != self._stamp:
            self._current = self._path.read_text().strip()
            self._stamp = stamp

    def _write(self, generation: str) -> None:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self._path.with_name(f"{self._path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(generation)
        os.replace(tmp, self._path)
