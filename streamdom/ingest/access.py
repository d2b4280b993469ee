"""Who may write to a session, and to a stream of it: ingest tokens, resume secrets, holders.

Ingest token (only with --ingest-secret): the app's own backend, which knows who the user is,
mints `<expiry>.<signature>` for one session id and hands it to the page, which passes it to
`StreamDOM.init({sessionId, token})`. The signature is HMAC-SHA256 over `<session id>.<expiry>`
(expiry in Unix seconds), base64url without padding, so any language mints one in three lines
(README). A hello without a valid, unexpired token for its session id is refused.

Resume secret (always): a stream belongs to the connection that opened it. Its first hello gets
a secret in the welcome; a later hello for the same stream (the recorder reconnecting) must
bring it back. The secret is an HMAC of the session and stream ids under a server key, so the
server keeps no table of secrets and they survive a restart: the key comes from the ingest
secret when there is one, else from one the cluster shares (kept in JetStream), else from a random
key file in the data directory. `StreamHolders`
knows which connection of this process holds each stream: a resume takes a stream over from a
connection that went stale, anything else finds it taken.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import time
from pathlib import Path
from typing import Generic, TypeVar

from streamdom.records import StreamKey

H = TypeVar("H")

DEFAULT_TTL = 24 * 3600
KEY_FILE = "resume.key"


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _sign(secret: bytes, message: str) -> str:
    return _b64(hmac.new(secret, message.encode(), hashlib.sha256).digest())


def mint(secret: str, session_id: str, ttl: int = DEFAULT_TTL, now: float | None = None) -> str:
    """An ingest token for `session_id`, valid for `ttl` seconds."""
    expiry = int(time.time() if now is None else now) + ttl
    return f"{expiry}.{_sign(secret.encode(), f'{session_id}.{expiry}')}"


def verify(secret: str, session_id: str, token: object, now: float | None = None) -> bool:
    """Whether `token` was minted from `secret` for `session_id` and has not expired."""
    if not isinstance(token, str) or len(token) > 128:
        return False
    expiry, _, signature = token.partition(".")
    if not expiry.isdigit() or int(expiry) < (time.time() if now is None else now):
        return False
    expected = _sign(secret.encode(), f"{session_id}.{expiry}")
    return hmac.compare_digest(signature.encode(), expected.encode())


class ResumeSecrets:
    """Hands out and checks the secret that lets a recorder resume its own stream."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    @classmethod
    def load(cls, ingest_secret: str | None, data_dir: Path, shared: bytes | None = None) -> ResumeSecrets:
        """Keyed by the ingest secret, else by a key the cluster shares, else by
        `<data dir>/resume.key` (made once, mode 600): whatever every node that may see the
        stream's recorder again knows."""
        if ingest_secret:
            return cls(hmac.new(ingest_secret.encode(), b"streamdom resume", hashlib.sha256).digest())
        if shared:
            return cls(shared)
        path = data_dir / KEY_FILE
        try:
            return cls(path.read_bytes())
        except FileNotFoundError:
            pass
        data_dir.mkdir(parents=True, exist_ok=True)
        key = secrets.token_bytes(32)
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(key)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        return cls(key)

    def secret(self, session_id: str, stream_id: str) -> str:
        """The resume secret of one stream (128 bits, base64url)."""
        return _sign(self._key, f"{session_id}\n{stream_id}")[:22]

    def check(self, session_id: str, stream_id: str, presented: object) -> bool:
        """Whether `presented` is that stream's resume secret."""
        return isinstance(presented, str) and hmac.compare_digest(
            presented.encode(), self.secret(session_id, stream_id).encode())


class StreamHolders(Generic[H]):
    """Which connection of this process holds each open stream (ingest's own state)."""

    def __init__(self) -> None:
        self._by_key: dict[StreamKey, H] = {}

    def holder(self, key: StreamKey) -> H | None:
        """The connection holding `key`, if any."""
        return self._by_key.get(key)

    def hold(self, key: StreamKey, conn: H) -> None:
        """`conn` holds `key` from now on."""
        self._by_key[key] = conn

    def release(self, key: StreamKey, conn: H) -> None:
        """`conn` closed: it no longer holds `key` (unless another took it over already)."""
        if self._by_key.get(key) is conn:
            del self._by_key[key]
