"""The session list: live sessions from the hub merged with archived ones from storage."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from streamdom.web.services import Services


async def session_list(svc: Services, since: int, before: int | None, q: str | None,
                       limit: int) -> list[dict[str, object]]:
    """Live sessions first, then archived ones: the body of /api/sessions and of /updates."""
    archived = await svc.storage.list_sessions(since, before, q, limit)
    by_id = {s["id"]: {**s, "live": False} for s in archived}
    if before is None:
        for ls in svc.hub.sessions.values():
            if q and q.lower() not in ls.id.lower() and q.lower() not in ls.url.lower():
                continue
            mem = ls.summary()
            arch = by_id.get(ls.id)
            if arch is not None:
                mem["started_at"] = min(int(arch["started_at"]), ls.started_at)
                # The archive's figures include unflushed events and events from before a restart.
                mem["event_count"] = arch["event_count"]
                mem["bytes"] = arch["bytes"]
                mem["url"] = arch.get("url") or ls.url
                mem["user_agent"] = arch.get("user_agent") or ls.user_agent
            by_id[ls.id] = mem
    return sorted(by_id.values(), key=lambda s: (not s["live"], -int(s["last_event_at"])))[:limit]
