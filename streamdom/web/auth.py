"""Viewer authentication: a password kept only as a salted PBKDF2 hash, checked in constant time."""

from __future__ import annotations

import hashlib
import hmac
import secrets

ITERATIONS = 200_000


class PasswordCheck:
    """Verifies a viewer password against its hash; the plain text is not kept."""

    def __init__(self, password: str) -> None:
        self._salt = secrets.token_bytes(16)
        self._hash = self._derive(password)

    def _derive(self, password: str) -> bytes:
        return hashlib.pbkdf2_hmac("sha256", password.encode(), self._salt, ITERATIONS)

    def verify(self, password: str) -> bool:
        """Whether `password` is the configured one."""
        return hmac.compare_digest(self._derive(password), self._hash)
