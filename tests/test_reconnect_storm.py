"""A reconnect storm: every recorder comes back at once after a restart, each hello needing its
stream's highest archived seq. The lookups that arrive together are answered by one query."""

from __future__ import annotations

import asyncio

from streamdom.testing import InProcessServer
from tests.helpers import Recorder, record, run_async, session_events


def test_hellos_after_a_restart_share_their_archive_lookups(app: InProcessServer) -> None:
    sids = [f"storm-{i}" for i in range(30)]
    resumes = {sid: record(app.ws, sid, session_events(3 + i)) for i, sid in enumerate(sids)}
    app.stop()  # everything flushed to Parquet; the stream table starts empty
    app.start()
    assert app.services is not None
    archive = app.services.archive
    queries: list[int] = []
    lookup = archive.stream_high_seqs

    async def counted(keys: list) -> dict:
        queries.append(len(keys))
        return await lookup(keys)

    archive.stream_high_seqs = counted  # type: ignore[method-assign]  # the real query, counted

    async def go() -> list[int]:
        recs = [Recorder(app.ws, sid, resume=resumes[sid]) for sid in sids]
        welcomes = await asyncio.gather(*(r.connect() for r in recs))
        for r in recs:
            r.close()
        return [w["ackedSeq"] for w in welcomes]

    assert run_async(go()) == [3 + i for i in range(len(sids))]
    assert sum(queries) == len(sids) and len(queries) <= 5, queries
