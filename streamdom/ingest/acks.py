"""Acknowledgements to recorders: the latest durable seq of each connection, sent in batches."""

from __future__ import annotations

from typing import Protocol

from tornado.ioloop import PeriodicCallback


class AckSink(Protocol):
    """A recorder connection that can send its latest ack."""

    def send_ack(self) -> None:
        """Send the highest durable seq of its stream now."""


class AckBatcher:
    """Sends every recorder's latest ack once per interval, from one timer for all of them.

    Acks only let a recorder free its buffer, so one per WAL fsync per connection would be CPU
    spent for nothing: at a thousand recorders, sending acks cost the IOLoop about as much as
    relaying the events did. One shared timer also spares a timer per connection.
    """

    def __init__(self, interval: float) -> None:
        self.pending: set[AckSink] = set()
        self._timer = PeriodicCallback(self.flush, interval * 1000)

    def start(self) -> None:
        """Start sending."""
        self._timer.start()

    def stop(self) -> None:
        """Stop sending."""
        self._timer.stop()

    def due(self, sink: AckSink) -> None:
        """Send `sink`'s ack with the next batch."""
        self.pending.add(sink)

    def forget(self, sink: AckSink) -> None:
        """Drop `sink` (its connection closed)."""
        self.pending.discard(sink)

    def flush(self) -> None:
        """Send every pending ack now."""
        pending, self.pending = self.pending, set()
        for sink in pending:
            sink.send_ack()
