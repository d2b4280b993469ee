"""Rate and count limits for the public ingest endpoint."""

from __future__ import annotations

import time
from collections import Counter


class TokenBucket:
    """Allows `rate` events per second on average with bursts of up to `burst`."""

    __slots__ = ("rate", "burst", "tokens", "stamp")

    def __init__(self, rate: float, burst: float) -> None:
        self.rate, self.burst = rate, burst
        self.tokens = burst
        self.stamp = time.monotonic()

    def take(self, n: int) -> bool:
        """Spend n tokens if available."""
        now = time.monotonic()
        tokens = self.tokens + (now - self.stamp) * self.rate
        if tokens > self.burst:  # (a comparison, not min(): this runs for every frame, twice)
            tokens = self.burst
        self.stamp = now
        if tokens < n:
            self.tokens = tokens
            return False
        self.tokens = tokens - n
        return True


class IngestLimits:
    """Per-IP state shared by every ingest connection: event buckets and open sessions."""

    def __init__(self, events_per_second_per_ip: float, max_sessions_per_ip: int) -> None:
        self.rate = events_per_second_per_ip
        self.max_sessions = max_sessions_per_ip
        self.buckets: dict[str, TokenBucket] = {}
        self.sessions: dict[str, Counter[str]] = {}

    def bucket(self, ip: str) -> TokenBucket:
        """The shared event bucket of one IP."""
        b = self.buckets.get(ip)
        if b is None:
            b = self.buckets[ip] = TokenBucket(self.rate, self.rate * 2)
        return b

    def open_session(self, ip: str, session_id: str) -> bool:
        """Count a connection of `ip` to a session; False if that would exceed the per-IP cap."""
        c = self.sessions.setdefault(ip, Counter())
        if session_id not in c and len(c) >= self.max_sessions:
            return False
        c[session_id] += 1
        return True

    def close_session(self, ip: str, session_id: str) -> None:
        """Forget one connection of `ip` to a session."""
        c = self.sessions.get(ip)
        if c is None:
            return
        c[session_id] -= 1
        if c[session_id] <= 0:
            del c[session_id]
        if not c:
            del self.sessions[ip]
            self.buckets.pop(ip, None)
