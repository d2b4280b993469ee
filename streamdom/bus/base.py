"""The `Bus`: the one interface between ingest and everything downstream of it.

Ingest validates a recorder's frame into a `Batch` and hands it to `Bus.publish`. From there
the bus relays it to the session's watchers, makes it durable and acknowledges it to the
recorder, and keeps it readable until the archive holds it. Watchers subscribe through the bus,
the sessions read model asks it what is live and what is not archived yet, and nothing
downstream knows how the bus does any of it.

Two implementations fit behind it: `LocalBus` (the embedded default: ring buffers, a local
write-ahead log, Parquet flushes in a child process) and a cluster bus (a JetStream stream as the
durable log, an archiver consuming it, presence in a key-value bucket). What only one of them
has (the WAL, the flusher, the ring buffers) stays inside it.

Calls come from the IOLoop thread. `publish` and the other plain methods must not block; the
async ones may wait on I/O but must not hold the IOLoop while they do.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from streamdom.bus.streams import AckListener, StreamMarks
from streamdom.records import Batch, Row
from streamdom.signals import Signals
from streamdom.wire import FrameSink


class BusUnavailable(Exception):
    """The bus cannot take events now (disk full, log failing); the batch was not taken at all."""


class Presence(Protocol):
    """What the bus knows of a session live (or still watched) here; read it, don't keep it."""

    id: str
    live: bool  # a recorder is connected, or left less than the grace period ago
    started_at: int  # server time (ms) the session became live here
    last_event_at: int  # server time (ms) of its latest event (of its start, before any)
    url: str  # page URL from its first recorder's hello
    user_agent: str


@dataclass(slots=True)
class PendingSummary:
    """A session's events that the bus holds durably but the archive does not have yet."""

    started_at: int  # server time of the first such event
    last_event_at: int  # and of the last
    event_count: int
    bytes: int  # of `data` JSON, as the archive's index counts them
    url: str
    user_agent: str
    streams: list[str] = field(default_factory=list)  # the streams these events are of
    signals: Signals = field(default_factory=Signals)  # what they say (streamdom/signals.py)


class Producer:
    """One recorder connection's handle on its stream, from `Bus.open_stream`.

    Ingest reads the stream's marks through it (to drop resends) and passes it back to
    `publish`, `set_clock` and `close_stream`. The marks belong to the bus: shared by every
    connection of the stream, moved only by the bus.
    """

    __slots__ = ("session_id", "stream_id", "_marks", "on_ack")

    def __init__(self, session_id: str, stream_id: str, marks: StreamMarks,
                 on_ack: AckListener) -> None:
        self.session_id = session_id
        self.stream_id = stream_id
        self._marks = marks
        self.on_ack = on_ack

    @property
    def received(self) -> int:
        """Highest seq of the stream the bus has taken: anything at or below is a resend."""
        return self._marks.received

    @property
    def durable(self) -> int:
        """Highest seq of the stream the bus has made durable: what an ack says."""
        return self._marks.durable


class Subscription:
    """One watcher's subscription to one session, from `Bus.watch`."""

    __slots__ = ("session_id", "sink")

    def __init__(self, session_id: str, sink: FrameSink) -> None:
        self.session_id = session_id
        self.sink = sink


SessionChange = Callable[[str, bool], None]  # (session id, urgent: it started or ended)


class Bus(ABC):
    """Relays, makes durable and acknowledges what ingest publishes; serves watchers and reads."""

    # --- life cycle --------------------------------------------------------------------------
    @abstractmethod
    async def start(self) -> None:
        """Recover what the last run left and start background work; before any other call."""

    @abstractmethod
    async def close(self) -> None:
        """Make everything taken durable and archived as far as this bus archives; stop."""

    async def shared_key(self, name: str) -> bytes | None:
        """A random secret every process of the deployment shares (made once, kept), for keys
        such as the ingest's resume secrets; None when this process is the whole server."""
        return None

    @property
    @abstractmethod
    def failure(self) -> str | None:
        """Why the bus refuses events now (disk full, log failing), or None while it takes them."""

    # --- ingest side ---------------------------------------------------------------------------
    @abstractmethod
    async def open_stream(self, session_id: str, stream_id: str, url: str, user_agent: str,
                          on_ack: AckListener) -> Producer:
        """A recorder connected to a stream: the session is live from now.

        The returned producer's `durable` is what the welcome reports. `on_ack(seq)` is called
        with the stream's durable seq each time the bus makes more of it durable, until
        `close_stream`. The caller must call `close_stream` even if it lost its connection
        while this was awaited.
        """

    @abstractmethod
    def publish(self, producer: Producer, batch: Batch) -> None:
        """Take a batch of new events of the producer's stream (none at or below `received`).

        Relays it to the session's watchers before anything else, then makes it durable
        (acknowledged later through `on_ack`). Raises BusUnavailable, having taken nothing,
        when `failure` is set.
        """

    @abstractmethod
    def set_clock(self, producer: Producer, offset: float, rtt: float) -> None:
        """The recorder's clock offset to the server and its round trip (ms), for watchers."""

    @abstractmethod
    def close_stream(self, producer: Producer, goodbye: bool = False) -> None:
        """The recorder's connection closed; the session ends after the grace period, or at
        once if that was its last stream and the recorder said goodbye (its page went away)."""

    # --- watchers ------------------------------------------------------------------------------
    @abstractmethod
    async def watch(self, session_id: str, sink: FrameSink) -> Subscription | None:
        """Subscribe a watcher to a session that is live here; None if it is not.

        The sink gets a hello, the clock estimates, the session's recent history from its
        latest full snapshot, `caughtup`, then every event as it is published, and `ended` /
        `live` when the session ends or comes back (docs/PROTOCOL.md, WS /watch).
        """

    @abstractmethod
    def resync(self, sub: Subscription) -> None:
        """Send a watcher that fell behind `resync` and the history again from the latest snapshot."""

    @abstractmethod
    def unwatch(self, sub: Subscription) -> None:
        """End a subscription."""

    # --- reads (the sessions read model) -------------------------------------------------------
    @abstractmethod
    def presence(self) -> Mapping[str, Presence]:
        """The sessions live (or still watched) now, by id."""

    @abstractmethod
    async def unarchived_summaries(self, ids: Collection[str] | None = None
                                   ) -> dict[str, PendingSummary]:
        """Per session (all, or those in `ids`): its events durable here but not yet archived.

        A snapshot, consistent with the archive's catalog at the moment it is taken: an
        event is counted here or there, never in both (`LocalBus` answers without suspending,
        so a caller that snapshots the catalog next, before awaiting anything, sees the same
        moment).
        """

    @abstractmethod
    async def unarchived(self, session_id: str) -> list[Row]:
        """A session's events durable here but not yet archived, in arrival order (a copy).

        Archives hold a prefix of each stream (flushes and archivers take the log in order),
        so a reader that takes this first and the archive after keeps, per stream, the rows
        above the archive's highest seq: nothing missed, nothing twice.
        """

    @abstractmethod
    def on_session_change(self, callback: SessionChange) -> None:
        """Call `callback(session_id, urgent)` when a session starts or ends (urgent) or gains
        events. One listener (the sessions feed); a later call replaces it. The callback runs on
        the relay's path: it must only note the change."""
