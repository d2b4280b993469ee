"""A lease in the `sd_lease` key-value bucket: at most one holder at a time, for maintenance.

`create` succeeds for one contender only; the holder renews with `update` at the revision it
last wrote, which fails once anyone else has written; the bucket's max age deletes an entry
nobody renews, after which the next `create` wins. The holder also counts its lease as lost
once it has not renewed for most of the TTL, so a holder cut off from NATS stops working
before another can take over.
"""

from __future__ import annotations

import logging
import time

import nats.errors
from nats.js.errors import KeyWrongLastSequenceError
from nats.js.kv import KeyValue

log = logging.getLogger(__name__)


class Lease:
    """One named lease, as seen by one contender."""

    def __init__(self, kv: KeyValue, name: str, holder: str, ttl: float) -> None:
        self.kv = kv
        self.name = name
        self.holder = holder
        self.ttl = ttl
        self._revision = 0
        self._renewed = 0.0  # monotonic time of the last successful write

    def held(self) -> bool:
        """Whether this contender holds the lease now (renewed within 2/3 of the TTL)."""
        return bool(self._revision) and time.monotonic() - self._renewed < self.ttl * 2 / 3

    async def acquire(self) -> bool:
        """Take the lease if free, renew it if held; return whether it is held now."""
        started = time.monotonic()
        try:
            if self._revision:
                self._revision = await self.kv.update(self.name, self.holder.encode(),
                                                      last=self._revision)
            else:
                self._revision = await self.kv.create(self.name, self.holder.encode())
                log.info("lease %s taken by %s", self.name, self.holder)
            self._renewed = started
        except KeyWrongLastSequenceError:
            if self._revision:
                log.warning("lease %s lost by %s", self.name, self.holder)
            self._revision = 0
        except (nats.errors.Error, OSError) as exc:
            log.warning("lease %s: %s", self.name, exc)
        return self.held()

    async def release(self) -> None:
        """Give the lease up (on shutdown), so another contender need not wait for the TTL."""
        if self._revision:
            try:
                await self.kv.delete(self.name, last=self._revision)
            except (KeyWrongLastSequenceError, nats.errors.Error, OSError):
                pass
            self._revision = 0
