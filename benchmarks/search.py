"""Session search at scale: GET /api/sessions' query (queries.search_sessions) over a 70k-session index.

Builds a DuckLake archive whose `sessions` index looks like a busy week's: --sessions-per-day x
--days sessions planned as benchmarks/archive.py plans them (start times over the window,
lognormal durations), each a short stream of events carrying what the index derives: a page
load (one of a few paths), clicks on labelled controls (some in rage bursts, some dead), page
mutations, and for some sessions `identify` (user id, plan and country traits), metadata, errors,
console warnings, failed requests and a second tab. The events are committed in server-time
order through the server's commit (commits.commit, which derives the index's figures with
streamdom/signals.py) in batches of --batch-events, then merged like the server's maintenance.
Payloads are small: the search reads only the index, whose rows are the same for a session
whatever its DOM weighs (archive.py measures the events themselves).

Then it times representative searches (first run and the median of --runs more), on a
read-only connection like the server's readers: list pages (24 h, all days, deep offset), `q`
over ids / URLs / users / browsers, exact user, trait, flags, URL, clicked text, durations, a
combination, the /updates push (20 ids), and the 24-h list with --pending sessions not archived
yet (the bus's rows, passed as the server passes them). The first run of the first search
builds the snapshot's per-session table (streamdom/archive/summaries.py) on that connection.

Then the list as a live server answers it, through the server's ArchiveReader: --start-delay
seconds after a start (the reader warms its table up at a start, if the checkout does), and the
first list after each of --runs + 1 flushes of --flush-sessions new sessions, each flush the
server's own job (commits.flush_segments) handed to the reader as the server's flusher hands
it: listed at once, then 100 ms later. With --live SECONDS, each checkout then runs a live
server (`python -m streamdom`) on the archive, --live-recorders synthetic recorders sending and
flushes every --live-flush s, and GETs /api/sessions every 0.25 s: percentiles and the worst.

--baseline CHECKOUT times another checkout's searches (its streamdom through PYTHONPATH) on the
same archive: each checkout in a fresh process, taking turns twice, then side by side.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from statistics import median
from typing import Any

import pyarrow as pa
from archive import DAY_MS, WORDS, plan_sessions, time_it
from support import (
    ClientStats,
    EventShapes,
    ServerProcess,
    SynthRecorder,
    load_sample,
    machine_note,
    percentiles,
    write_json,
)

from streamdom.archive import commits, lake, maintenance, queries
from streamdom.archive.layout import signal_values
from streamdom.archive.reads import ArchiveReader
from streamdom.archive.wal import WriteAheadLog
from streamdom.records import Row
from streamdom.signals import Signals, SignalTracker, by_stream

ROOT = Path(__file__).resolve().parent.parent  # this checkout
PATHS = ("/todos", "/todos/active", "/projects/42", "/inbox", "/reports", "/settings/billing")
UA = ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
      "Chrome/126.0.0.0 Safari/537.36")
UA_MAC = ("Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) "
          "Version/17.5 Safari/605.1.15")


def _j(obj: object) -> str:
    return json.dumps(obj, separators=(",", ":"))


def session_rows(idx: int, start: int, duration: int, seed: int) -> tuple[str, list[Row], dict]:
    """One session's rows (one or two streams) and its streams' (url, user agent)."""
    rng = random.Random(seed * 1_000_003 + idx)
    sid = f"s-{idx:06d}-{rng.randrange(16**6):06x}"
    ua = UA if rng.random() < 0.8 else UA_MAC
    streams = ["t1"] + (["t2"] if rng.random() < 0.2 else [])
    rows: list[Row] = []
    info = {}
    for n, stream in enumerate(streams):
        seq = 0
        t = start + n * rng.randrange(1000, 20_000)
        end = start + duration
        path = rng.choice(PATHS)
        href = f"https://app.example.com{path}?u={rng.randrange(10**6)}"
        info[(sid, stream)] = (href, ua)

        def add(ev_type: int, data: object, at: int) -> None:
            nonlocal seq
            seq += 1
            rows.append((sid, stream, seq, ev_type, at, at, _j(data), None))  # noqa: B023

        add(4, {"href": href, "width": 1280, "height": 800}, t)
        add(2, {"node": {"type": 0, "childNodes": [], "id": 1}, "initialOffset": {"left": 0, "top": 0}}, t + 1)
        if n == 0 and rng.random() < 0.6:
            add(5, {"tag": "streamdom-identify", "payload": {
                "userId": f"user-{rng.randrange(20_000)}@example.com",
                "traits": {"plan": rng.choice(("free", "pro", "team")),
                           "country": rng.choice(("FR", "DE", "US", "JP", "BR"))}}}, t + 5)
            add(5, {"tag": "streamdom-metadata", "payload": {"fields": {"build": f"1.{rng.randrange(40)}"}}}, t + 6)
        step = max(500, duration // 12)
        t += 100
        while t < end:
            r = rng.random()
            x, y = rng.randrange(1280), rng.randrange(800)
            label = f"{rng.choice(WORDS)} {rng.choice(WORDS)}"
            if r < 0.03:  # a rage burst: four clicks on one spot, nothing happens
                for k in range(4):
                    add(3, {"source": 2, "type": 2, "id": 9, "x": x + k, "y": y, "text": label}, t + 120 * k)
                t += 600
            elif r < 0.55:  # a click the page answers
                add(3, {"source": 2, "type": 2, "id": 9, "x": x, "y": y, "text": label}, t)
                add(3, {"source": 0, "texts": [], "attributes": [], "removes": [], "adds": []},
                    t + rng.randrange(5, 300))
            elif r < 0.62:  # a click on something dead
                add(3, {"source": 2, "type": 2, "id": 9, "x": x, "y": y, "text": label}, t)
            elif r < 0.64:
                add(5, {"tag": "streamdom-error", "payload": {"source": "error", "message": "TypeError: x is undefined", "stack": "at app.js:1:2"}}, t)
            elif r < 0.66:
                add(5, {"tag": "streamdom-console", "payload": {"level": "warn", "message": "slow render", "stack": ""}}, t)
            elif r < 0.69:
                add(5, {"tag": "streamdom-network", "payload": {"method": "GET", "url": "https://api.example.com/items",
                                                                "status": rng.choice((200, 200, 500, 0)), "duration": 80,
                                                                "initiator": "fetch"}}, t)
            else:
                add(3, {"source": 1, "positions": [{"x": x, "y": y, "id": 9, "timeOffset": 0}]}, t)
            t += rng.randrange(step // 2, step * 2)
        add(3, {"source": 1, "positions": [{"x": 1, "y": 1, "id": 9, "timeOffset": 0}]}, end + 1500)
    return sid, rows, info


def build(args: argparse.Namespace, loc: lake.Location) -> dict[str, Any]:
    """Generate the corpus, commit it batch by batch in server-time order, merge; figures."""
    now_ms = int(time.time() * 1000)
    plan = plan_sessions(args, now_ms)
    t0 = time.perf_counter()
    rows: list[Row] = []
    info: dict = {}
    ids: list[str] = []
    for start, duration, idx, _rate in plan:
        sid, r, i = session_rows(idx, start, min(duration, 3_600_000), args.seed)
        rows += r
        info.update(i)
        ids.append(sid)
    rows.sort(key=lambda r: r[5])
    gen_s = time.perf_counter() - t0
    con = lake.connect(loc)
    tracker = SignalTracker(max_streams=200_000)
    t0 = time.perf_counter()
    for i in range(0, len(rows), args.batch_events):
        batch = rows[i:i + args.batch_events]
        keys = {(r[0], r[1]) for r in batch}
        commits.commit(con, batch, {k: info[k] for k in keys}, dedup=False, tracker=tracker)
    commit_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    con.execute("CALL ducklake_merge_adjacent_files('lake')")
    maintenance.expire_snapshots(con)
    maintenance.cleanup(con)
    merge_s = time.perf_counter() - t0
    index_rows = con.execute("SELECT count(*) FROM lake.sessions").fetchone()[0]
    con.close()
    return {"sessions": len(ids), "events": len(rows), "index_rows": int(index_rows),
            "gen_s": gen_s, "commit_s": commit_s, "merge_s": merge_s, "now_ms": now_ms, "ids": ids}


def pending_table(n: int, now_ms: int) -> pa.Table:
    """`n` sessions the archive does not hold yet, as the read model hands them to the search."""
    cols: dict[str, list[object]] = {f.name: [] for f in queries.EXTRA_SCHEMA}
    for i in range(n):
        values = {"session_id": f"live-{i}", "stream_id": "t1", "first_server_time": now_ms - 60_000,
                  "last_server_time": now_ms - i, "event_count": 40, "bytes": 9000,
                  "url": "https://app.example.com/inbox", "user_agent": UA, "browser": "Chrome 126",
                  "os": "Linux", **signal_values(Signals(user_id=f"live-user-{i}", errors=i % 3)),
                  "live": True}
        for k, v in values.items():
            cols[k].append(v)
    return pa.table(cols, schema=queries.EXTRA_SCHEMA)


def measure(loc: lake.Location, w: dict[str, Any], args: argparse.Namespace) -> list[dict[str, Any]]:
    """Time each representative search; returns rows (name, first ms, median ms, total)."""
    con = lake.connect(loc, read_only=True)
    now = w["now_ms"]
    day = now - DAY_MS
    user = "user-123@example.com"
    Q = queries.SessionQuery
    cases: list[tuple[str, queries.SessionQuery, pa.Table | None]] = [
        ("list, last 24 h, first page of 100", Q(since=day), None),
        ("list, last 24 h, 100 at offset 5,000", Q(since=day, offset=5000), None),
        ("list, all 7 days, first page of 100", Q(since=0), None),
        ("list, all 7 days, 100 at offset 50,000", Q(since=0, offset=50_000), None),
        ("list, all 7 days, page of 1,000", Q(since=0, limit=1000), None),
        ("q=projects/42 (URLs), 7 days", Q(since=0, q="projects/42"), None),
        (f"q={user} (a user), 7 days", Q(since=0, q=user), None),
        ("q=chrome (browser: most sessions), 7 days", Q(since=0, q="chrome"), None),
        ("q=budget review (clicked text), 7 days", Q(since=0, q="budget review"), None),
        ("q=nothing-matches, 7 days", Q(since=0, q="zzz-nothing-matches"), None),
        (f"user={user}, 7 days", Q(since=0, user=user), None),
        ("trait=plan:pro, 7 days", Q(since=0, traits=[("plan", "pro")]), None),
        ("has_errors=1, 7 days", Q(since=0, has_errors=True), None),
        ("has_rage=1, last 24 h", Q(since=day, has_rage=True), None),
        ("has_dead=1, last 24 h", Q(since=day, has_dead=True), None),
        ("url=/settings/billing, 7 days", Q(since=0, url="/settings/billing"), None),
        ("clicked=launch, last 24 h", Q(since=day, clicked="launch"), None),
        ("min_duration=10 min, 7 days", Q(since=0, min_duration=600_000), None),
        ("trait=plan:pro & has_errors=1 & q=inbox, 7 days",
         Q(since=0, traits=[("plan", "pro")], has_errors=True, q="inbox"), None),
        ("20 sessions by id (an /updates push)", Q(ids=w["ids"][-20:], limit=20), None),
        (f"list, last 24 h, + {args.pending} unarchived", Q(since=day), pending_table(args.pending, now)),
        (f"q=live-user-7, last 24 h, + {args.pending} unarchived", Q(since=day, q="live-user-7"),
         pending_table(args.pending, now)),
    ]
    out = []
    # The list as it was before issue 16 (plain index aggregates, no derived columns, first
    # 1,000 by activity): the same index, the same run, for a ratio that the machine's load
    # does not move.
    before = """SELECT session_id AS id, min(first_server_time), max(last_server_time) AS last_event_at,
                       sum(event_count)::BIGINT, sum(bytes)::BIGINT, arg_min(url, first_server_time),
                       arg_min(user_agent, first_server_time)
                FROM lake.sessions GROUP BY session_id HAVING max(last_server_time) >= ?
                ORDER BY last_event_at DESC LIMIT 1000"""
    for name, since in (("before issue 16: list, last 24 h, 1,000", day), ("before issue 16: list, all 7 days, 1,000", 0)):
        first, med, rows = time_it(lambda: con.execute(before, [since]).fetchall(), args.runs)  # noqa: B023
        out.append({"search": name, "first_ms": first, "median_ms": med, "rows": len(rows), "total": None})
        print(f"  {name:<52} {med:8.1f} ms median  (first {first:7.1f} ms)")
    for name, query, extra in cases:
        first, med, (rows, total) = time_it(lambda: queries.search_sessions(con, query, extra), args.runs)  # noqa: B023
        out.append({"search": name, "first_ms": first, "median_ms": med, "rows": len(rows), "total": total})
        print(f"  {name:<52} {med:8.1f} ms median  (first {first:7.1f} ms)  total {total:>7,}")
    con.close()
    return out


def measure_server(loc: lake.Location, w: dict[str, Any], args: argparse.Namespace, first_id: int
                   ) -> list[dict[str, Any]]:
    """The list as a live server answers it: through its ArchiveReader (reader threads, the
    archive's shared per-session table), after a start and after each flush. A flush is the
    server's own job (commits.flush_segments on WAL segments), handed to the reader as the
    server's flusher hands it (whatever this checkout's reader takes)."""
    return asyncio.run(_measure_server(loc, w, args, first_id))


async def _measure_server(loc: lake.Location, w: dict[str, Any], args: argparse.Namespace,
                          first_id: int) -> list[dict[str, Any]]:
    day = w["now_ms"] - DAY_MS
    Q = queries.SessionQuery
    out = []

    def row(name: str, times: list[float], total: int) -> None:
        out.append({"search": name, "first_ms": times[0], "median_ms": median(times[1:] or times),
                    "rows": 100, "total": total})
        print(f"  {name:<52} {median(times[1:] or times):8.1f} ms median  (first {times[0]:7.1f} ms)  total {total:>7,}")

    # A start: the reader points at the archive's snapshot (and warms up, if it can); a PM
    # opens the list --start-delay s later.
    reader = ArchiveReader(loc, 2)
    try:
        started = time.perf_counter()
        version = int(await reader.run(queries.latest_version))  # type: ignore[call-overload]
        if hasattr(reader, "advance"):
            reader.advance(version)
            reader.warm_up()
        else:
            reader.version = version
        await asyncio.sleep(max(0.0, args.start_delay - (time.perf_counter() - started)))
        t0 = time.perf_counter()
        _, total = await reader.search(Q(since=day), None)
        row(f"list, last 24 h, {args.start_delay:g} s after a start", [(time.perf_counter() - t0) * 1000], total)
        # Each run flushes --flush-sessions new sessions (5 s of activity each), then lists at
        # once (the worst case: nothing was done ahead) or after a pause.
        wal_dir = Path(tempfile.mkdtemp(prefix="streamdom-search-wal-"))
        wal = WriteAheadLog(wal_dir)
        tracker = SignalTracker()
        next_id = first_id
        for pause in (0.0, 0.1):
            times = []
            for run in range(args.runs + 1):
                rows, info = [], {}
                for _ in range(args.flush_sessions):
                    _, r, i = session_rows(next_id, w["now_ms"] + run * 5000, 5000, args.seed)
                    next_id += 1
                    rows += r
                    info.update(i)
                wal.write_and_sync(rows)
                segments = wal.rotate()
                signals = by_stream(sorted(rows, key=lambda r: (r[0], r[1], r[2])), tracker)
                flushed = commits.flush_segments(loc, segments, info, signals)
                if hasattr(reader, "advance"):
                    reader.advance(*flushed[1:])
                else:
                    reader.version = flushed[1]
                for seg in segments:
                    seg.unlink()
                await asyncio.sleep(pause)
                t0 = time.perf_counter()
                _, total = await reader.search(Q(since=day), None)
                times.append((time.perf_counter() - t0) * 1000)
            when = "right after" if not pause else f"{pause * 1000:.0f} ms after"
            row(f"list, last 24 h, {when} a flush of {args.flush_sessions}", times, total)
        wal.close()
        shutil.rmtree(wal_dir, ignore_errors=True)
    finally:
        reader.close()
    return out


def measure_live(data_dir: Path, w: dict[str, Any], args: argparse.Namespace, root: Path,
                 first_id: int) -> dict[str, Any]:
    """The list over HTTP from a live server: `python -m streamdom` of checkout `root` on the
    archive, flushing every --live-flush s while --live-recorders synthetic recorders send
    (support.SynthRecorder); GET /api/sessions every 0.25 s for --live seconds, after
    --start-delay s (a start's warm-up). Every list is timed, so the ones right after a flush
    are among them: returns the percentiles and the worst."""
    srv = ServerProcess(data_dir, "--flush-interval", str(args.live_flush), "--max-sessions-per-ip",
                        "100000", root=root).start()
    try:
        return asyncio.run(_live(srv, args, first_id))
    finally:
        srv.stop()
        if not args.keep:
            srv.log_path.unlink(missing_ok=True)


async def _live(srv: ServerProcess, args: argparse.Namespace, first_id: int) -> dict[str, Any]:
    from tornado.httpclient import AsyncHTTPClient

    await asyncio.sleep(args.start_delay)
    http = AsyncHTTPClient()
    shapes = EventShapes.from_sample(load_sample())
    stats = ClientStats()
    recs = [SynthRecorder(srv.ws, f"live-{first_id + k}", shapes, 5.0, stats, {}, seed=first_id + k)
            for k in range(args.live_recorders)]
    for r in recs:
        await r.connect()
        r.send_snapshot()
    until = time.perf_counter() + args.live
    senders = [asyncio.ensure_future(r.run(until)) for r in recs]
    times, totals = [], []
    while time.perf_counter() < until:
        t0 = time.perf_counter()
        resp = await http.fetch(srv.http + "/api/sessions", request_timeout=60)
        times.append((time.perf_counter() - t0) * 1000)
        totals.append(json.loads(resp.body)["total"])
        await asyncio.sleep(0.25)
    await asyncio.gather(*senders)
    for r in recs:
        r.close()
    p = percentiles(times)
    name = f"live server, GET /api/sessions, {args.live_recorders} recording"
    print(f"  {name:<52} p50 {p['p50']:6.1f}  p90 {p['p90']:6.1f}  p99 {p['p99']:6.1f}  max {max(times):6.1f} ms"
          f"  ({len(times)} lists, total {totals[0]:,} -> {totals[-1]:,}, {stats.sent:,} events sent, "
          f"{len(stats.errors)} recorder errors)")
    return {"search": name, "first_ms": times[0], "median_ms": p["p50"], "p90_ms": p["p90"],
            "p99_ms": p["p99"], "max_ms": max(times), "lists": len(times), "total": totals[-1]}


def _merge_turns(turns: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Each search's row with the median of the turns' medians (and first runs)."""
    out = []
    for rows in zip(*turns, strict=True):
        out.append(dict(rows[0], median_ms=median(r["median_ms"] for r in rows),
                        first_ms=median(r["first_ms"] for r in rows)))
    return out


def run_measure_job(spec: str) -> None:
    """--measure-job: time the searches on an existing archive with whatever streamdom is
    imported (a baseline checkout's, through PYTHONPATH); print them, then them as JSON."""
    job = json.loads(spec)
    args = argparse.Namespace(**job["args"])
    loc = lake.Location(job["data_path"], job["catalog"])
    w = {"now_ms": job["now_ms"], "ids": job["ids"]}
    print(json.dumps(measure(loc, w, args) + measure_server(loc, w, args, job["first_id"])))


def main() -> None:
    """Build, measure, print, optionally save."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sessions-per-day", type=int, default=10_000, help="default %(default)s")
    ap.add_argument("--days", type=int, default=7, help="default %(default)s")
    ap.add_argument("--batch-events", type=int, default=20_000, help="events per commit (default %(default)s)")
    ap.add_argument("--pending", type=int, default=500, help="unarchived sessions in the last cases (default %(default)s)")
    ap.add_argument("--flush-sessions", type=int, default=50,
                    help="new sessions per flush in the after-a-flush case (default %(default)s)")
    ap.add_argument("--live", type=float, default=0.0, metavar="SECONDS",
                    help="also list over HTTP from a live server for this long (default: not)")
    ap.add_argument("--live-recorders", type=int, default=50, help="default %(default)s")
    ap.add_argument("--live-flush", type=float, default=1.0,
                    help="the live server's --flush-interval (default %(default)s)")
    ap.add_argument("--start-delay", type=float, default=5.0,
                    help="seconds between a start and the first list (default %(default)s)")
    ap.add_argument("--runs", type=int, default=7, help="timed runs after the first (default %(default)s)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--keep", action="store_true", help="keep the archive (its directory is printed)")
    ap.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    ap.add_argument("--baseline", metavar="CHECKOUT",
                    help="also time the searches with another checkout's streamdom, on the same archive")
    ap.add_argument("--measure-job", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.measure_job:
        run_measure_job(args.measure_job)
        return
    args.long_minutes, args.long_rate = 30.0, 5.0  # plan_sessions' one long session
    print(f"machine: {machine_note()}")
    tmp = Path(tempfile.mkdtemp(prefix="streamdom-search-"))
    try:
        loc = lake.Location.local(tmp)
        w = build(args, loc)
        print(f"index: {w['sessions']:,} sessions, {w['events']:,} events, {w['index_rows']:,} index rows "
              f"(generated in {w['gen_s']:.0f} s, committed in {w['commit_s']:.0f} s, merged in {w['merge_s']:.0f} s)")
        base = None
        if args.baseline:
            # Each checkout's searches in a fresh process (its first run builds what it keeps),
            # taking turns (baseline, this, baseline, this) so both see the same machine.
            job = {"data_path": loc.data_path, "catalog": loc.catalog, "now_ms": w["now_ms"],
                   "ids": w["ids"][-20:], "args": {k: getattr(args, k) for k in (
                       "runs", "pending", "flush_sessions", "start_delay", "seed")}}
            turns: dict[str, list[list[dict[str, Any]]]] = {"baseline": [], "this": []}
            for turn in range(2):
                for who, root in (("baseline", Path(args.baseline)), ("this", ROOT)):
                    print(f"searches, turn {turn + 1}, {who} ({root}): first run, then the median of {args.runs}")
                    job["first_id"] = 10_000_000 + 1_000_000 * len(turns["baseline"] + turns["this"])
                    done = subprocess.run([sys.executable, __file__, "--measure-job", json.dumps(job)],
                                          env={**os.environ, "PYTHONPATH": str(root.resolve())},
                                          capture_output=True, text=True, check=True)
                    print(done.stdout.rsplit("\n", 2)[0])
                    turns[who].append(json.loads(done.stdout.strip().splitlines()[-1]))
            base, results = _merge_turns(turns["baseline"]), _merge_turns(turns["this"])
        else:
            print(f"searches (first run, then the median of {args.runs}):")
            results = measure(loc, w, args) + measure_server(loc, w, args, 10_000_000)
        if args.live:
            # A live server per checkout (two turns each when there is a baseline).
            lives: dict[str, list[dict[str, Any]]] = {"baseline": [], "this": []}
            for turn in range(2 if base else 1):
                for who, root in ((("baseline", Path(args.baseline)),) if base else ()) + (("this", ROOT),):
                    print(f"live server, turn {turn + 1}, {who} ({root}), {args.live:g} s:")
                    first_id = 20_000_000 + 1000 * len(lives["baseline"] + lives["this"])  # new sessions each run
                    lives[who].append(measure_live(tmp, w, args, root.resolve(), first_id))
            for who, rows in lives.items():
                if rows:
                    keys = ("first_ms", "median_ms", "p90_ms", "p99_ms", "max_ms")
                    (base if who == "baseline" else results).append(  # type: ignore[union-attr]
                        dict(rows[0], **{k: median(r[k] for r in rows) for k in keys}))
        if base:
            print("side by side (medians of the two turns' medians): baseline, this checkout, this / baseline")
            theirs = {r["search"]: r for r in base}
            for r in results:
                b = theirs.get(r["search"])
                if b:
                    print(f"  {r['search']:<52} {b['median_ms']:8.1f} {r['median_ms']:8.1f} ms  "
                          f"{r['median_ms'] / b['median_ms']:5.2f}x  (first {b['first_ms']:.0f} / {r['first_ms']:.0f} ms)")
                    if "max_ms" in r:
                        print(f"  {'  the same, p90 / p99 / max':<52} {b['p90_ms']:.1f} / {b['p99_ms']:.1f} / "
                              f"{b['max_ms']:.1f} -> {r['p90_ms']:.1f} / {r['p99_ms']:.1f} / {r['max_ms']:.1f} ms")
        write_json(args.json, {"machine": machine_note(), "build": {k: v for k, v in w.items() if k != "ids"},
                               "searches": results, "baseline": base})
    finally:
        if args.keep:
            print(f"kept the archive in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
