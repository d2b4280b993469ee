"""Acknowledgements to recorders: the latest durable seq of each connection, at most about one
per interval, the first of a quiet connection at once."""

from __future__ import annotations

from typing import Protocol

from tornado.ioloop import PeriodicCallback


class AckSink(Protocol):
    """A recorder connection that can send its latest ack."""

    def send_ack(self) -> None:
        """Send the highest durable seq of its stream now."""


class AckBatcher:
    """Sends a recorder's ack at once if it got none since the last tick, else with the next.

    Acks only let a recorder free its buffer, so one per WAL fsync or JetStream ack per
    connection would be CPU spent for nothing: at a thousand recorders, sending acks cost the
    IOLoop about as much as relaying the events did. So a connection gets at most one ack per
    interval from the shared timer, plus one at once when it is due and has had none since the
    timer's last tick. A busy connection is acked once per tick as before; a quiet one is acked
    as soon as its events are durable, not up to an interval later (with --bus the interval
    was most of an ack's latency: p50 27 of 30 ms at 20 recorders, benchmarks/cluster.py).
    """

    def __init__(self, interval: float) -> None:
        self.pending: set[AckSink] = set()  # due, waiting for the next tick
        self._acked: set[AckSink] = set()  # acked since the last tick
        self._timer = PeriodicCallback(self.flush, interval * 1000)

    def start(self) -> None:
        """Start sending."""
        self._timer.start()

    def stop(self) -> None:
        """Stop sending."""
        self._timer.stop()

    def due(self, sink: AckSink) -> None:
        """Send `sink`'s ack now if it had none since the last tick, else with the next."""
        if sink in self._acked:
            self.pending.add(sink)
        else:
            self._acked.add(sink)
            sink.send_ack()

    def forget(self, sink: AckSink) -> None:
        """Drop `sink` (its connection closed)."""
        self.pending.discard(sink)
        self._acked.discard(sink)

    def flush(self) -> None:
        """Send every pending ack now (the tick); those sinks wait for the next tick again."""
        pending, self.pending = self.pending, set()
        self._acked = pending
        for sink in pending:
            sink.send_ack()
