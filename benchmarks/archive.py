"""Archive benchmark: size on disk, flush throughput, compaction, and query latency at scale.

Builds a corpus of synthetic sessions from the sample session's real event shapes (node ids
shifted per session, texts, pointer positions, URLs, viewports and timing varied, so it is not
trivially compressible), spread over --days days ending now. Each session starts with a Meta +
FullSnapshot pair and takes a new one every 60 s (rrweb's checkout, as the recorder does), then
replays the sample's incremental events at a per-session pace. One extra session lasts
--long-minutes. Events are turned into EventRecords with streamdom.ingest.validate.make_record and
written in server-time order through the server's own flush path (layout.split_by_day,
records_table, index_table, write_pair) in batches of --batch-events, then compacted with
streamdom.archive.maintenance (compaction_groups + compact). Then it measures the session list
(queries.list_sessions) and loading the long session through Sessions.events (first page of
2000 and everything).
"""

from __future__ import annotations

import argparse
import asyncio
import heapq
import json
import random
import shutil
import string
import tempfile
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import zstandard
from support import SAMPLE, load_sample, machine_note, median, write_json

from streamdom.archive import layout, maintenance, queries
from streamdom.archive.catalog import Catalog
from streamdom.config import Config
from streamdom.ingest.validate import make_record
from streamdom.records import EventRecord, Row
from streamdom.rrweb import EventType
from streamdom.web.services import Services

DAY_MS = 86_400_000
ID_KEYS = frozenset(("id", "parentId", "nextId", "previousId", "rootId"))
TEXT_KEYS = frozenset(("textContent", "value", "text"))
WORDS = ("invoice report budget meeting review draft client launch roadmap sprint ticket release "
         "dentist groceries flight hotel passport garden paint garage laundry birthday dinner "
         "milk bread coffee lemons tomatoes salmon rice beans apples oats cheese pasta wine "
         "call email book plan write fix buy renew cancel schedule prepare update clean water "
         "monday tuesday friday weekend tomorrow tonight urgent later maybe quarterly weekly").split()
VIEWPORTS = ((1280, 800), (1440, 900), (1920, 1080), (1366, 768), (390, 844), (414, 896), (1536, 864))
CHECKOUT_MS = 60_000
FIRST_PAGE = 2000

TARGET_RATIO_RAW = 15.0
TARGET_LIST_MS = 50.0
TARGET_FIRST_PAGE_MS = 100.0
TARGET_FLUSH_EPS = 50_000.0


# --- corpus ------------------------------------------------------------------------------------
class Templates:
    """The sample session's events, parsed once, with the gaps between incremental events."""

    def __init__(self, events: list[dict[str, Any]]) -> None:
        self.meta = next(e for e in events if e["type"] == EventType.Meta)
        self.snapshot = next(e for e in events if e["type"] == EventType.FullSnapshot)
        inc = [e for e in events if e["type"] in (EventType.IncrementalSnapshot, EventType.Custom)]
        self.incremental = inc
        gaps = [max(0, b["timestamp"] - a["timestamp"]) for a, b in zip(inc, inc[1:], strict=False)]
        self.gaps = [min(g, 2000) for g in gaps] + [50]
        self.mean_rate = len(inc) / (sum(self.gaps) / 1000)


class Variation:
    """Per-session rewriting of template events: ids shifted, texts and positions varied."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.id_shift = rng.randrange(0, 400)
        self.dx, self.dy = rng.randrange(-60, 60), rng.randrange(-40, 40)
        self.texts: dict[str, str] = {}

    def text(self, s: str) -> str:
        """A session-stable variant of a text (same input, same output within the session)."""
        out = self.texts.get(s)
        if out is None:
            rng = self.rng
            if not s.strip() or s.isspace():
                out = s
            elif set(s) <= {"*"}:
                out = "*" * max(1, len(s) + rng.randrange(-2, 3))  # masked input stays masked
            else:
                words = s.split(" ")
                out = " ".join(rng.choice(WORDS) if rng.random() < 0.6 and w.isalpha() else
                               (str(rng.randrange(1, 9999)) if w.isdigit() else w) for w in words)
            self.texts[s] = out
        return out

    def apply(self, obj: Any, key: str = "") -> Any:
        """A varied deep copy of a template event's data."""
        if isinstance(obj, dict):
            return {k: self.apply(v, k) for k, v in obj.items()}
        if isinstance(obj, list):
            return [self.apply(v, key) for v in obj]
        if isinstance(obj, bool) or obj is None:
            return obj
        if isinstance(obj, int):
            if key in ID_KEYS and obj > 0:
                return obj + self.id_shift
            if key == "x":
                return max(0, obj + self.dx + self.rng.randrange(-3, 4))
            if key == "y":
                return max(0, obj + self.dy + self.rng.randrange(-3, 4))
            if key == "timeOffset":
                return obj + self.rng.randrange(-8, 9)
            return obj
        if isinstance(obj, str) and key in TEXT_KEYS:
            return self.text(obj)
        return obj


def _uuid(rng: random.Random) -> str:
    h = "".join(rng.choice("0123456789abcdef") for _ in range(32))
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{h[16:20]}-{h[20:]}"


def session_events(tpl: Templates, idx: int, seed: int, start_ms: int, duration_ms: int,
                   rate: float, end_ms: int) -> Iterator[EventRecord]:
    """One session's records in server-time order (deterministic for (seed, idx))."""
    rng = random.Random(seed * 7_000_003 + idx)
    var = Variation(rng)
    sid = ("s-" + "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(20)))
    stream = _uuid(rng)
    skew = rng.randrange(-800, 800)  # recorder clock minus server clock
    w, h = rng.choice(VIEWPORTS)
    path = rng.choice(("/todos", "/todos/active", "/projects/42", "/inbox", "/reports?q=2026"))
    href = f"https://app.example.com{path}?u={rng.randrange(10**6)}"
    scale = tpl.mean_rate / rate
    seq = 0
    t = start_ms
    stop = min(start_ms + duration_ms, end_ms)
    inc = tpl.incremental
    i = rng.randrange(len(inc))
    next_checkout = t

    def rec(ev_type: int, data: Any, server_time: int) -> EventRecord:
        nonlocal seq
        seq += 1
        ev = {"type": ev_type, "data": data, "timestamp": server_time + skew}
        return make_record(sid, stream, seq, ev, server_time)

    while t < stop:
        if t >= next_checkout:
            meta = dict(tpl.meta["data"], href=href, width=w, height=h)
            yield rec(4, meta, t)
            yield rec(2, var.apply(tpl.snapshot["data"]), t + rng.randrange(0, 3))
            next_checkout += CHECKOUT_MS
        e = inc[i]
        yield rec(e["type"], var.apply(e["data"]), t)
        t += max(0, int(tpl.gaps[i] * scale * rng.uniform(0.7, 1.3)))
        i = (i + 1) % len(inc)


def plan_sessions(args: argparse.Namespace, now_ms: int) -> list[tuple[int, int, int, float]]:
    """(start, duration, index, events/s) of every session, the long one last."""
    rng = random.Random(args.seed)
    window = args.days * DAY_MS
    out = []
    for idx in range(args.sessions_per_day * args.days):
        start = now_ms - window + rng.randrange(window)
        duration = int(min(2 * 3600_000, rng.lognormvariate(11.0, 1.0)))  # median ~60 s
        rate = min(25.0, rng.lognormvariate(0.9, 0.5))  # median ~2.5 events/s
        out.append((start, max(2000, duration), idx, rate))
    long_ms = int(args.long_minutes * 60_000)
    out.append((now_ms - long_ms - 60_000, long_ms, len(out), args.long_rate))
    return out


def merged(tpl: Templates, plan: list[tuple[int, int, int, float]], seed: int,
           end_ms: int) -> Iterator[EventRecord]:
    """Every session's records merged into one server-time-ordered stream (as a server sees them)."""
    pending = sorted(plan)
    heap: list[tuple[int, int, EventRecord, Iterator[EventRecord]]] = []
    k = 0
    while k < len(pending) or heap:
        next_start = pending[k][0] if k < len(pending) else None
        if heap and (next_start is None or heap[0][0] <= next_start):
            t, idx, rec, it = heap[0]
            yield rec
            nxt = next(it, None)
            if nxt is None:
                heapq.heappop(heap)
            else:
                heapq.heapreplace(heap, (nxt.server_time, idx, nxt, it))
        else:
            start, dur, idx, rate = pending[k]
            k += 1
            it = session_events(tpl, idx, seed, start, dur, rate, end_ms)
            first = next(it, None)
            if first is not None:
                heapq.heappush(heap, (first.server_time, idx, first, it))


# --- baselines ---------------------------------------------------------------------------------
class Baselines:
    """gzip -9 and zstd (3 and 19) of the same JSON, fed one session document at a time."""

    def __init__(self) -> None:
        self.raw = 0
        self.gz = zlib.compressobj(9, zlib.DEFLATED, 31)
        self.gz_bytes = 0
        self.z3 = zstandard.ZstdCompressor(level=3).compressobj()
        self.z19 = zstandard.ZstdCompressor(level=19).compressobj()
        self.z3_bytes = self.z19_bytes = 0
        self.seconds = 0.0

    def feed(self, doc: bytes) -> None:
        """Compress one session's JSON array."""
        t = time.perf_counter()
        self.raw += len(doc)
        self.gz_bytes += len(self.gz.compress(doc))
        self.z3_bytes += len(self.z3.compress(doc))
        self.z19_bytes += len(self.z19.compress(doc))
        self.seconds += time.perf_counter() - t

    def finish(self) -> None:
        """Flush the compressors."""
        self.gz_bytes += len(self.gz.flush())
        self.z3_bytes += len(self.z3.flush())
        self.z19_bytes += len(self.z19.flush())


# --- the benchmark -----------------------------------------------------------------------------
def dir_bytes(root: Path) -> int:
    """Total size of the Parquet files under a data dir."""
    return sum(p.stat().st_size for p in root.rglob("*.parquet"))


def time_it(fn: Any, runs: int) -> tuple[float, float, Any]:
    """(first run ms, median of the following runs ms, last result)."""
    times = []
    out = None
    for _ in range(runs + 1):
        t = time.perf_counter()
        out = fn()
        times.append((time.perf_counter() - t) * 1000)
    return times[0], median(times[1:]), out


def build(args: argparse.Namespace, data_dir: Path) -> dict[str, Any]:
    """Generate and write the corpus; returns the write-side figures."""
    tpl = Templates(load_sample(args.sample))
    now_ms = int(time.time() * 1000)
    plan = plan_sessions(args, now_ms)
    stream_info: dict[tuple[str, str], tuple[str, str]] = {}
    ua = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36"

    # Sessions whose JSON also goes through gzip/zstd: all of them, or every k-th one.
    est_raw = sum(d / 1000 * r * 420 + (d // CHECKOUT_MS + 1) * 19_000 for _, d, _, r in plan)
    every = max(1, int(est_raw / (args.compare_mb * 1e6)) + 1)
    base = Baselines()
    docs: dict[str, list[bytes]] = {}
    compared: set[str] = set()
    last_seen: dict[str, int] = {}

    events = raw_bytes = 0
    sessions: set[str] = set()
    flush_s = gen_s = 0.0
    batch: list[Row] = []
    batch_rates: list[float] = []
    files: list[layout.DataFile] = []

    stage_s = {"records_table": 0.0, "index_table": 0.0, "write_pair": 0.0}

    def flush() -> None:
        nonlocal flush_s
        t = time.perf_counter()
        for day, recs in layout.split_by_day(batch).items():
            t1 = time.perf_counter()
            table = layout.records_table(recs)
            t2 = time.perf_counter()
            index = layout.index_table(table, stream_info)
            t3 = time.perf_counter()
            files.append(layout.write_pair(data_dir, day, table, index, args.level))
            t4 = time.perf_counter()
            stage_s["records_table"] += t2 - t1
            stage_s["index_table"] += t3 - t2
            stage_s["write_pair"] += t4 - t3
        dt = time.perf_counter() - t
        flush_s += dt
        batch_rates.append(len(batch) / dt)
        batch.clear()

    def close_doc(sid: str) -> None:
        parts = docs.pop(sid, None)
        if parts is not None:
            base.feed(b"[" + b",".join(parts) + b"]")

    t_gen = time.perf_counter()
    it = merged(tpl, plan, args.seed, now_ms)
    progress = time.monotonic()
    for rec in it:
        sid = rec.session_id
        if sid not in sessions:
            sessions.add(sid)
            href = json.loads(rec.data).get("href", "") if rec.type == 4 else ""
            stream_info[(sid, rec.stream_id)] = (href, ua)  # what the hello would have said
            if len(sessions) % every == 0:
                compared.add(sid)
                docs[sid] = []
        ej = rec.event_json().encode()
        raw_bytes += len(ej) + 1
        events += 1
        if sid in docs:
            docs[sid].append(ej)
            last_seen[sid] = events
        batch.append(rec.row())
        if len(batch) >= args.batch_events:
            gen_s += time.perf_counter() - t_gen
            flush()
            # a compared session is complete once it has been quiet for a while
            for s in [s for s, n in last_seen.items() if events - n > 4 * args.batch_events]:
                del last_seen[s]
                close_doc(s)
            t_gen = time.perf_counter()
        if time.monotonic() - progress > 15:
            progress = time.monotonic()
            print(f"  ... {events:,} events, {len(sessions):,} sessions, "
                  f"{raw_bytes / 1e6:,.0f} MB of JSON so far")
    gen_s += time.perf_counter() - t_gen
    if batch:
        flush()
    for s in list(docs):
        close_doc(s)
    base.finish()
    raw_bytes += 2 * len(sessions)  # the brackets of each session's array (minus one comma)
    # The long session's id: regenerate its first record.
    start, dur, idx, rate = plan[-1]
    first = next(session_events(tpl, idx, args.seed, start, dur, rate, now_ms))
    long_sid, long_stream = first.session_id, first.stream_id
    return {"files": files, "events": events, "sessions": len(sessions), "raw_bytes": raw_bytes,
            "flush_s": flush_s, "gen_s": gen_s, "stage_s": stage_s, "batches": len(batch_rates),
            "batch_eps_median": median(batch_rates) if batch_rates else 0.0,
            "baselines": base, "compared_sessions": len(compared), "long_sid": long_sid,
            "long_stream": long_stream,
            "now_ms": now_ms}


def measure_queries(data_dir: Path, long_sid: str, long_stream: str, now_ms: int,
                    runs: int) -> dict[str, Any]:
    """Session list and long-session loads over the files on disk now."""
    files = layout.scan(data_dir)
    out: dict[str, Any] = {"files": len(files)}
    since_24h = now_ms - DAY_MS
    first, med, rows = time_it(lambda: queries.list_sessions(files, since_24h, None, None, 1000), runs)
    out["list_24h"] = {"first_ms": first, "median_ms": med, "rows": len(rows)}
    first, med, rows = time_it(lambda: queries.list_sessions(files, 0, None, None, 1000), runs)
    out["list_all"] = {"first_ms": first, "median_ms": med, "rows": len(rows)}
    first, med, rows = time_it(lambda: queries.list_sessions(files, 0, None, "projects/42", 100), runs)
    out["list_search"] = {"first_ms": first, "median_ms": med, "rows": len(rows)}

    # What every recorder hello costs once files exist (LocalBus.open_stream for a new stream).
    key = [(long_sid, long_stream)]
    first, med, high = time_it(lambda: queries.stream_high_seqs(files, key), runs)
    out["hello_lookup"] = {"first_ms": first, "median_ms": med, "found": bool(high)}

    # The server's read path (the sessions read model over the archive), not started: nothing
    # is live or waiting to be archived, as after a restart.
    svc = Services(Config(data_dir=data_dir))
    svc.archive.catalog.change(add=files)

    async def load(limit: int | None) -> tuple[int, int]:
        rows, more = await svc.sessions.events(long_sid, 0, limit)
        return len(rows), sum(len(r[3]) for r in rows)

    def run_load(limit: int | None) -> tuple[int, int]:
        return asyncio.run(load(limit))

    first, med, (n, nbytes) = time_it(lambda: run_load(FIRST_PAGE), runs)
    out["first_page"] = {"first_ms": first, "median_ms": med, "events": n, "bytes": nbytes}
    first, med, (n, nbytes) = time_it(lambda: run_load(None), max(3, runs // 2))
    out["full_load"] = {"first_ms": first, "median_ms": med, "events": n, "bytes": nbytes}
    svc.archive.close()
    svc.bus.process.shutdown()
    return out


def compact_all(data_dir: Path, level: int) -> dict[str, Any]:
    """Compact every day the way the server's maintenance pass does; returns timings."""
    catalog = Catalog(layout.scan(data_dir))
    groups = maintenance.compaction_groups(catalog.files(), Config().compaction_min_files)
    t = time.perf_counter()
    per_group = []
    for group in groups:
        g0 = time.perf_counter()
        merged_file = maintenance.compact(data_dir, group, level)
        catalog.change(add=[merged_file], remove=group)
        per_group.append(time.perf_counter() - g0)
    return {"groups": len(groups), "files_in": sum(len(g) for g in groups),
            "seconds": time.perf_counter() - t,
            "median_group_s": median(per_group) if per_group else 0.0}


def print_queries(label: str, q: dict[str, Any], args: argparse.Namespace) -> None:
    """Print one measure_queries() result."""
    print(f"queries {label} ({q['files']} file pairs), first run / median of {args.runs}:")
    for key, what in (("list_24h", "list_sessions, last 24 h, limit 1000"),
                      ("list_all", "list_sessions, all sessions, limit 1000"),
                      ("list_search", "list_sessions, q=substring, limit 100"),
                      ("hello_lookup", "stream_high_seqs (each recorder hello)")):
        x = q[key]
        rows = f"  ({x['rows']} rows)" if "rows" in x else ""
        print(f"  {what:42s} {x['first_ms']:8.1f} / {x['median_ms']:8.1f} ms{rows}")
    fp, fl = q["first_page"], q["full_load"]
    first = f"long session, first page ({fp['events']} events)"
    full = f"long session, all {fl['events']} events ({fl['bytes'] / 1e6:.1f} MB)"
    print(f"  {first:42s} {fp['first_ms']:8.1f} / {fp['median_ms']:8.1f} ms")
    print(f"  {full:42s} {fl['first_ms']:8.1f} / {fl['median_ms']:8.1f} ms")


MANIFEST = "benchmark-corpus.json"


def measure_only(args: argparse.Namespace) -> None:
    """Re-run the queries on a corpus kept with --data-dir."""
    data_dir = args.data_dir
    if data_dir is None or not (data_dir / MANIFEST).exists():
        raise SystemExit(f"--measure-only needs --data-dir holding a corpus (with {MANIFEST})")
    m = json.loads((data_dir / MANIFEST).read_text())
    print(f"corpus: {m['sessions']:,} sessions, {m['events']:,} events, {dir_bytes(data_dir) / 1e6:,.1f} MB on disk")
    q = measure_queries(data_dir, m["long_sid"], m["long_stream"], m["now_ms"], args.runs)
    print_queries("on the kept corpus", q, args)
    write_json(args.json, {"machine": machine_note(), "corpus": m, "queries": q})


def main() -> None:
    """Build, measure, print, optionally save."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sessions-per-day", type=int, default=500, help="default %(default)s")
    ap.add_argument("--days", type=int, default=7, help="default %(default)s")
    ap.add_argument("--long-minutes", type=float, default=30.0,
                    help="length of the one long session that is loaded (default %(default)s)")
    ap.add_argument("--long-rate", type=float, default=5.0,
                    help="events/s of the long session (default %(default)s)")
    ap.add_argument("--batch-events", type=int, default=20_000,
                    help="events per flush, i.e. a busy server's 5-s flush (default %(default)s)")
    ap.add_argument("--level", type=int, default=Config().parquet_compression_level,
                    help="Parquet zstd level (default: the server's, %(default)s)")
    ap.add_argument("--compare-mb", type=float, default=60.0,
                    help="feed at most about this much JSON to gzip/zstd (every k-th session) "
                         "(default %(default)s)")
    ap.add_argument("--runs", type=int, default=7, help="timed query runs after the first (default %(default)s)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--data-dir", type=Path, help="write the corpus here and keep it (default: a temp dir)")
    ap.add_argument("--measure-only", action="store_true",
                    help="only re-run the queries on a corpus kept earlier with --data-dir")
    ap.add_argument("--sample", type=Path, default=SAMPLE)
    ap.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    args = ap.parse_args()

    print(f"machine: {machine_note()}")
    if args.measure_only:
        measure_only(args)
        return
    tmp = None
    if args.data_dir is None:
        tmp = tempfile.mkdtemp(prefix="streamdom-archive-")
        data_dir = Path(tmp) / "data"
    else:
        data_dir = args.data_dir
        if data_dir.exists() and any(data_dir.iterdir()):
            raise SystemExit(f"{data_dir} is not empty")
    try:
        t0 = time.monotonic()
        print(f"building {args.sessions_per_day * args.days:,} sessions over {args.days} days "
              f"+ one {args.long_minutes:g}-min session, flushes of {args.batch_events:,} events ...")
        w = build(args, data_dir)
        base: Baselines = w["baselines"]
        disk_before = dir_bytes(data_dir)
        before = measure_queries(data_dir, w["long_sid"], w["long_stream"], w["now_ms"],
                                 args.runs)
        comp = compact_all(data_dir, args.level)
        disk = dir_bytes(data_dir)
        ev_bytes = sum(p.stat().st_size for p in (data_dir / "events").rglob("*.parquet"))
        after = measure_queries(data_dir, w["long_sid"], w["long_stream"], w["now_ms"],
                                 args.runs)
        took = time.monotonic() - t0
        if tmp is None:
            (data_dir / MANIFEST).write_text(json.dumps({
                k: w[k] for k in ("long_sid", "long_stream", "now_ms", "sessions", "events",
                                  "raw_bytes")}))
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)

    raw = w["raw_bytes"]
    flush_eps = w["events"] / w["flush_s"]
    r_disk = raw / disk
    r_gz = base.raw / base.gz_bytes
    r_z3, r_z19 = base.raw / base.z3_bytes, base.raw / base.z19_bytes
    mb = 1e6
    print(f"\ncorpus: {w['sessions']:,} sessions, {w['events']:,} events, raw JSON {raw / mb:,.1f} MB "
          f"(as /api/sessions/<id>/events returns it); built in {took:.0f} s")
    print(f"on disk after compaction: {disk / mb:,.2f} MB ({ev_bytes / mb:,.2f} MB events + "
          f"{(disk - ev_bytes) / mb:,.2f} MB index) = {r_disk:.1f}x smaller than raw JSON "
          f"(before compaction {disk_before / mb:,.2f} MB, {raw / disk_before:.1f}x)")
    print(f"same JSON, {w['compared_sessions']:,} sessions ({base.raw / mb:,.1f} MB) streamed through: "
          f"gzip -9 {r_gz:.1f}x, zstd -3 {r_z3:.1f}x, zstd -19 {r_z19:.1f}x  "
          f"(Parquet is {r_disk / r_gz:.2f}x gzip -9's ratio)")
    print(f"flush (records_table + index_table + write_pair, zstd {args.level}, fsync): "
          f"{w['batches']} batches, {flush_eps:,.0f} events/s overall, median batch "
          f"{w['batch_eps_median']:,.0f} events/s; generating the events took {w['gen_s']:.0f} s")
    st = w["stage_s"]
    print(f"  per event: records_table {st['records_table'] / w['events'] * 1e6:.1f} µs, index_table "
          f"{st['index_table'] / w['events'] * 1e6:.1f} µs, write_pair {st['write_pair'] / w['events'] * 1e6:.1f} µs"
          f" (a {args.batch_events:,}-event flush: {st['records_table'] / w['batches'] * 1000:.0f} ms in "
          f"records_table, pure Python; the server runs it in its flusher process, off the IOLoop's GIL)")
    print(f"compaction: {comp['groups']} group(s), {comp['files_in']} files in, {comp['seconds']:.1f} s")
    for label, q in (("before compaction", before), ("after compaction", after)):
        print_queries(label, q, args)
    checks = [
        (f"disk >= {TARGET_RATIO_RAW:g}x smaller than raw JSON", r_disk >= TARGET_RATIO_RAW, f"{r_disk:.1f}x"),
        ("smaller than gzip -9", r_disk > r_gz, f"{r_disk:.1f}x vs {r_gz:.1f}x"),
        (f"list <= {TARGET_LIST_MS:g} ms (all {w['sessions']:,} sessions)",
         after["list_all"]["median_ms"] <= TARGET_LIST_MS, f"{after['list_all']['median_ms']:.1f} ms"),
        (f"first page <= {TARGET_FIRST_PAGE_MS:g} ms", after["first_page"]["median_ms"] <= TARGET_FIRST_PAGE_MS,
         f"{after['first_page']['median_ms']:.1f} ms"),
        (f"flush >= {TARGET_FLUSH_EPS:,.0f} events/s", flush_eps >= TARGET_FLUSH_EPS, f"{flush_eps:,.0f}/s"),
    ]
    print("targets:")
    for what, ok, val in checks:
        print(f"  {what:45s} {val:>22s}  {'ok' if ok else 'MISSED'}")
    if w["sessions"] < 70_000:
        print("  (the list target is stated for 70,000 sessions: --sessions-per-day 10000 --days 7)")
    write_json(args.json, {
        "machine": machine_note(), "args": vars(args) | {"sample": str(args.sample),
                                                          "data_dir": str(args.data_dir)},
        "sessions": w["sessions"], "events": w["events"], "raw_json_bytes": raw,
        "disk_bytes": disk, "disk_bytes_before_compaction": disk_before, "events_file_bytes": ev_bytes,
        "ratio_raw_to_disk": r_disk,
        "baselines": {"json_bytes": base.raw, "sessions": w["compared_sessions"], "gzip9_ratio": r_gz,
                      "zstd3_ratio": r_z3, "zstd19_ratio": r_z19},
        "flush": {"events_per_s": flush_eps, "batches": w["batches"],
                  "median_batch_events_per_s": w["batch_eps_median"], "seconds": w["flush_s"],
                  "stage_seconds": w["stage_s"]},
        "compaction": comp, "queries_before_compaction": before, "queries_after_compaction": after,
        "targets": {what: ok for what, ok, _ in checks},
    })


if __name__ == "__main__":
    main()
