"""Load test: many concurrent recorders and some watchers against one server, for a bounded time.

A fresh `python -m streamdom` (temp data dir, per-IP limits raised) takes --recorders synthetic
recorders (hello, Meta + FullSnapshot, then the sample session's incremental events at --rate
events/s each, what rrweb emitted in one task as one frame, a new snapshot pair every 60 s;
--workload react,vue replays real TodoMVC sessions frame by frame as their recorder sent them,
--framing event sends one event per frame as the recorder before protocol v2 did, --framing task
merges the frames a workload's recorder sent from one task) spread over
--source-ips loopback
addresses (127.0.0.2, ...; a real fleet comes from many IPs) and --watchers viewers on random
sessions, driven by --procs client processes. Every 5 s it prints events sent / acknowledged
(durable) / relayed per second, the relay latency of that window and the server's VmRSS. At the
end: sustained rates, relay and ack latency percentiles, hello->welcome latency, CPU of server
and clients, and how long the server took to shut down (its final flush).
"""

from __future__ import annotations

import argparse
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from support import (
    ROOT,
    SAMPLE,
    ClientPlan,
    ServerProcess,
    fmt_pct,
    frames_per_task,
    load_frames,
    machine_note,
    percentiles,
    run_plans,
    workload_paths,
    write_json,
)


def server_supports(flag: str) -> bool:
    """Whether this checkout's `python -m streamdom --help` lists a flag."""
    out = subprocess.run([sys.executable, "-m", "streamdom", "--help"], cwd=ROOT,
                         capture_output=True, text=True, timeout=60).stdout
    return flag in out


def make_plans(ws_url: str, args: argparse.Namespace, server_pid: int) -> list[ClientPlan]:
    """Sessions round-robin over client processes; each watcher lives with its session's recorder."""
    rng = random.Random(args.seed)
    sids = [f"load-{i:05d}" for i in range(args.recorders)]
    watched = [rng.choice(sids) for _ in range(args.watchers)]
    ips = [f"127.0.0.{2 + k}" for k in range(args.source_ips)] if args.source_ips else []
    procs = max(1, min(args.procs, args.recorders))
    plans = []
    for k in range(procs):
        mine = sids[k::procs]
        mine_set = set(mine)
        plans.append(ClientPlan(
            ws_url=ws_url, sessions=mine, watchers=[s for s in watched if s in mine_set],
            rate=args.rate, warmup=args.warmup, duration=args.duration,
            connect_rate=args.connect_rate / procs, source_ips=ips, checkout_s=60.0,
            window_s=args.window, seed=args.seed * 100 + k,
            server_pid=server_pid if k == 0 else 0, framing=args.framing))
    return plans


def main() -> None:
    """Run the load, print the time series and the totals, optionally save JSON."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recorders", type=int, default=1000, help="default %(default)s")
    ap.add_argument("--watchers", type=int, default=50, help="default %(default)s")
    ap.add_argument("--rate", type=float, default=3.0,
                    help="mean events/s per recorder (default %(default)s: a typical session's "
                         "average; an active user is ~25)")
    ap.add_argument("--duration", type=float, default=60.0, help="measured seconds (default %(default)s)")
    ap.add_argument("--warmup", type=float, default=5.0,
                    help="seconds of sending before measuring (default %(default)s)")
    ap.add_argument("--window", type=float, default=5.0, help="report interval, s (default %(default)s)")
    ap.add_argument("--procs", type=int, default=2, help="client processes (default %(default)s)")
    ap.add_argument("--source-ips", type=int, default=10,
                    help="spread recorders over this many loopback addresses, 0 = 127.0.0.1 only "
                         "(default %(default)s)")
    ap.add_argument("--connect-rate", type=float, default=250.0,
                    help="new connections per second while ramping up (default %(default)s)")
    ap.add_argument("--nice", type=int, default=0,
                    help="nice value for the server and clients, e.g. -10 on a shared machine")
    ap.add_argument("--server-arg", action="append", default=[],
                    help="extra argument for `python -m streamdom` (repeatable)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--sample", type=Path, default=SAMPLE)
    ap.add_argument("--workload", metavar="NAMES",
                    help="replay real sessions frame by frame instead: react, vue "
                         "(data/workloads/<NAME>-todomvc.json) or paths, comma-separated")
    ap.add_argument("--framing", choices=("frame", "event", "task"), default="frame",
                    help="frame: the recorded frames as the recorder sent them (default); event: "
                         "one event per frame (the recorder before protocol v2); task: a "
                         "workload's frames sent from one task merged")
    ap.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    args = ap.parse_args()

    print(f"machine: {machine_note()}")
    if args.workload:
        args.sample = workload_paths(args.workload)
    for p in str(args.sample).split(","):
        print(f"session {Path(p).name}: {frames_per_task(load_frames(Path(p)))}")
    srv_args = ["--max-sessions-per-ip", str(max(200, 2 * args.recorders)), "--log-level", "WARNING"]
    per_ip_flag = "--max-events-per-second-per-ip"
    if server_supports(per_ip_flag):
        srv_args += [per_ip_flag, str(max(10_000.0, 4 * args.rate * args.recorders))]
    elif not args.source_ips:
        print(f"note: the server has no {per_ip_flag} flag; with one source IP its default "
              "(10,000 events/s per IP) may close recorders with 4429")
    srv_args += args.server_arg
    print(f"{args.recorders} recorders x {args.rate:g} ev/s (= {args.recorders * args.rate:,.0f} ev/s "
          f"offered), {args.watchers} watchers, {args.procs} client procs, "
          f"{args.source_ips or 1} source IP(s); {args.warmup:g} s warmup + {args.duration:g} s measured")
    t_all = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="streamdom-load-") as tmp:
        server = ServerProcess(Path(tmp) / "data", *srv_args, nice=args.nice).start()
        rss_start = server.rss_mb()
        try:
            stats = run_plans(make_plans(server.ws, args, server.pid), args.sample, args.nice)
            rss_end = server.rss_mb()
        finally:
            t_stop = time.monotonic()
            rc = server.stop(timeout=300)
            stop_s = time.monotonic() - t_stop
            logs = server.logs()
        disk = sum(p.stat().st_size for p in (Path(tmp) / "data").rglob("*.parquet"))

    print(f"\n{'t (s)':>6} {'sent/s':>9} {'acked/s':>9} {'relayed/s':>10} {'relay p50':>10} "
          f"{'p99 ms':>9} {'RSS MB':>8}")
    prev = (0.0, 0, 0, 0)
    rss = dict(stats.server_rss_mb)
    rows: list[dict[str, Any]] = []
    for (t, sent, delivered, acked), lat in zip(stats.timeline, stats.lat_by_window, strict=False):
        dt = t - prev[0] or 1.0
        p = percentiles(lat)
        row = {"t": t, "sent_per_s": (sent - prev[1]) / dt, "acked_per_s": (acked - prev[3]) / dt,
               "relayed_per_s": (delivered - prev[2]) / dt, "relay_p50_ms": p["p50"],
               "relay_p99_ms": p["p99"], "rss_mb": rss.get(t)}
        rows.append(row)
        print(f"{t:6.0f} {row['sent_per_s']:9,.0f} {row['acked_per_s']:9,.0f} "
              f"{row['relayed_per_s']:10,.0f} {p['p50']:10.1f} {p['p99']:9.1f} "
              f"{row['rss_mb'] or 0:8.0f}")
        prev = (t, sent, delivered, acked)
    wall = stats.wall_s or 1.0
    wc = stats.window_counts
    relay, ack, welcome = (percentiles(x) for x in (stats.relay_ms, stats.ack_ms, stats.welcome_ms))
    rss_series = [m for _, m in stats.server_rss_mb]
    print(f"\nsustained over {wall:.0f} s: sent {wc.get('sent', 0) / wall:,.0f} ev/s, acknowledged (in the "
          f"fsynced WAL) {wc.get('acked', 0) / wall:,.0f} ev/s, relayed to watchers "
          f"{wc.get('delivered', 0) / wall:,.0f} ev/s")
    print(f"relay send->watch   {fmt_pct(relay)}")
    print(f"ack   send->ack     {fmt_pct(ack)}")
    print(f"hello->welcome      {fmt_pct(welcome)}")
    print(f"server RSS: {rss_start:.0f} MB idle, {min(rss_series, default=0):.0f}-"
          f"{max(rss_series, default=0):.0f} MB while measured, {rss_end:.0f} MB at the end")
    print(f"CPU (% of one core): server {100 * stats.server_cpu_s / wall:.0f}% (IOLoop thread "
          f"{100 * stats.server_main_cpu_s / wall:.0f}%, + {100 * stats.server_main_wait_s / wall:.0f}% "
          f"runnable but waiting for a CPU), clients {100 * stats.cpu_s / wall:.0f}% over {args.procs} procs")
    print(f"shutdown (final flush) took {stop_s:.1f} s, exit code {rc}; Parquet written: {disk / 1e6:.1f} MB")
    if stats.errors:
        print(f"{len(stats.errors)} client errors, e.g. {stats.errors[:3]}")
    closes = [ln for ln in logs.splitlines() if "closing" in ln or "ERROR" in ln]
    if closes:
        print(f"server log: {len(closes)} close/error lines, e.g. {closes[:2]}")
    print(f"total {time.monotonic() - t_all:.0f} s")
    write_json(args.json, {
        "machine": machine_note(), "args": vars(args) | {"sample": str(args.sample)},
        "sustained": {"sent_per_s": wc.get("sent", 0) / wall, "acked_per_s": wc.get("acked", 0) / wall,
                      "relayed_per_s": wc.get("delivered", 0) / wall},
        "relay_ms": relay, "ack_ms": ack, "welcome_ms": welcome, "timeline": rows,
        "server_rss_mb": {"idle": rss_start, "series": stats.server_rss_mb, "end": rss_end},
        "server_cpu_pct": 100 * stats.server_cpu_s / wall,
        "server_ioloop_cpu_pct": 100 * stats.server_main_cpu_s / wall,
        "client_cpu_pct": 100 * stats.cpu_s / wall, "shutdown_s": stop_s, "exit_code": rc,
        "errors": stats.errors[:50], "n_errors": len(stats.errors), "parquet_bytes": disk,
    })


if __name__ == "__main__":
    main()
