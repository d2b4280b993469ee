"""The hub's global ring-buffer budget: the sessions idle longest lose their rings first."""

from __future__ import annotations

from streamdom.config import Config
from streamdom.ingest.validate import batch_of, make_record
from streamdom.live.hub import Hub
from tests.helpers import run_async, session_events


def test_global_ring_budget_evicts_the_longest_idle_sessions_first() -> None:
    async def go() -> None:
        hub = Hub(Config(ring_max_bytes=10**9, ring_total_max_bytes=60_000))
        for n, sid in enumerate(["old", "mid", "new"]):  # ~25 KB each; "old" spoke first
            s = hub.recorder_joined(sid, "", "")
            evs = session_events(20)
            for e in evs:
                e["data"]["blob"] = "x" * 1000
            for i, e in enumerate(evs):  # one batch per event, as a one-event-per-frame recorder
                hub.relay(s, batch_of([make_record(sid, "a", i + 1, e, 1000 * n + i)]))
        assert hub.ring_bytes <= 60_000
        assert len(hub.sessions["old"].ring) == 0, "the longest idle session lost its ring"
        assert len(hub.sessions["mid"].ring) == 20 and len(hub.sessions["new"].ring) == 20
        assert hub.ring_bytes == sum(s.ring.nbytes for s in hub.sessions.values())
        # An evicted session keeps relaying: its next snapshot makes it playable again.
        s = hub.sessions["old"]
        hub.relay(s, batch_of([make_record("old", "a", 21, session_events(2)[0], 5000)]))
        assert len(s.ring) == 1

    run_async(go())
