"""Relay latency, recorder send to watcher receive, through a real server on loopback.

For each N in --n, a fresh `python -m streamdom` subprocess (temp data dir) gets N synthetic
recorders: real WebSocket clients that send hello, a Meta + FullSnapshot pair and then the sample
session's incremental events at --rate events/s each, with its recorded burstiness, what rrweb
emitted in one task as one frame (and a new snapshot pair every --checkout seconds, as rrweb's
checkout does). --workload react,vue replays real TodoMVC sessions frame by frame as their
recorder sent them (data/workloads/, record_sample.py --workload) instead. Every
session has one watcher on /watch/<id>, and --extra-watchers more watchers sit on random
sessions. Latency is the time from write_message on the recorder socket to the watcher's
message callback for the same (session, seq), both in the same client process and clock.
Also reported: send-to-ack (WAL fsync) latency, client and server CPU, and the server's
capacity: events in per second per core of its CPU (events/s in / server CPU cores used).
--baseline CHECKOUT runs another checkout's server on the same load, taking turns (baseline,
this, baseline, this...) so both see the same machine, and prints the ratios (given twice, e.g.
an old main and the current one: baseline, baseline2, this); a checkout from before protocol v2
gets the same events one per frame, as its recorder sent them. --floor also
runs a bare Tornado relay (no validation, no storage) on the same load. --profile DIR
samples where each server process's CPU goes (benchmarks/cpuprofile) and prints it by function.
--browser runs latency_browser.py (browser to browser, with a bare-relay floor) afterwards.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from support import (
    CPU_PROFILE_HOOK,
    SAMPLE,
    BareRelay,
    ClientPlan,
    ClientStats,
    ServerProcess,
    code_state,
    flush_times,
    fmt_pct,
    frames_per_task,
    load_frames,
    machine_note,
    median,
    near_flush_split,
    percentiles,
    profile_report,
    run_plans,
    workload_paths,
    write_json,
)

TARGET_P50_MS = 10.0
TARGET_P99_MS = 30.0


def checkout_framing(root: Path) -> str:
    """How that checkout's recorder framed live events: "event" before protocol v2, else "frame"."""
    try:
        head = (root / "docs" / "PROTOCOL.md").read_text().split("\n", 1)[0]
    except OSError:
        return "frame"
    return "event" if "(v1)" in head else "frame"


def plans_for(ws_url: str, n: int, extra: int, procs: int, args: argparse.Namespace,
              server_pid: int, framing: str = "frame") -> list[ClientPlan]:
    """Split N sessions over client processes, each session's recorder and watchers together."""
    rng = random.Random(n)
    sids = [f"lat{n}-{i:04d}" for i in range(n)]
    watch = {sid: 1 for sid in sids}
    for _ in range(extra):
        watch[rng.choice(sids)] += 1
    procs = max(1, min(procs, n))
    plans = []
    for k in range(procs):
        mine = sids[k::procs]
        plans.append(ClientPlan(
            ws_url=ws_url, sessions=mine,
            watchers=[sid for sid in mine for _ in range(watch[sid])],
            rate=args.rate, warmup=args.warmup, duration=args.duration,
            checkout_s=args.checkout, seed=k, server_pid=server_pid if k == 0 else 0,
            framing=framing))
    return plans


def run_one(n: int, args: argparse.Namespace, root: Path | None = None,
            profile: Path | None = None, framing: str = "frame", floor: str = "") -> dict[str, Any]:
    """Run one N against a fresh server (of checkout `root`, default this one; with `floor`, the
    bare relay of that kind) whose recorders frame events as `framing` says, and return its figures."""
    extra = args.extra_watchers if args.extra_watchers >= 0 else max(1, n // 10)
    with tempfile.TemporaryDirectory(prefix="streamdom-lat-") as tmp:
        server: ServerProcess | BareRelay
        if floor:
            server = BareRelay(args.nice, floor)
        else:
            server = ServerProcess(Path(tmp) / "data", "--max-sessions-per-ip", str(max(1000, 2 * n)),
                                   "--log-level", "WARNING", *args.server_arg, nice=args.nice,
                                   **({"root": root.resolve()} if root else {}))
            if profile is not None:
                profile.mkdir(parents=True, exist_ok=True)
                server.env.update({"SD_PROFILE": str(profile), "PYTHONPATH": str(CPU_PROFILE_HOOK)})
        server.start()
        try:
            plans = plans_for(server.ws, n, extra, args.procs, args, server.pid, framing)
            stats: ClientStats = run_plans(plans, args.sample, args.nice)
            flushes = flush_times(server.data_dir) if isinstance(server, ServerProcess) else []
        finally:
            pid, rc = server.pid, server.stop()
    relay = percentiles(stats.relay_ms)
    ack = percentiles(stats.ack_ms)
    wall = stats.wall_s or 1.0
    return {
        "n_recorders": n, "n_watchers": n + extra, "rate_per_recorder": args.rate,
        "framing": framing, "events_per_frame": stats.sent / max(1, stats.frames),
        "client_procs": len(plans), "relay_ms": relay, "ack_ms": ack,
        "up_ms": percentiles(stats.up_ms), "down_ms": percentiles(stats.down_ms),
        "welcome_ms": percentiles(stats.welcome_ms),
        "sent_per_s": stats.window_counts.get("sent", 0) / wall,
        "delivered_per_s": stats.window_counts.get("delivered", 0) / wall,
        "ack_frames_per_s": stats.window_counts.get("ack_frames", 0) / wall,
        "sent_mb_per_s": stats.sent_bytes / (args.warmup + args.duration) / 1e6,
        "client_cpu_pct": 100 * stats.cpu_s / wall,
        "server_cpu_pct": 100 * stats.server_cpu_s / wall,
        "server_tree_cpu_pct": 100 * stats.server_tree_cpu_s / wall,
        "server_kernel_share": (stats.server_tree_sys_s / stats.server_tree_cpu_s
                                if stats.server_tree_cpu_s else float("nan")),
        "acked_per_s": stats.window_counts.get("acked", 0) / wall,
        "relayed_per_s": stats.window_counts.get("relayed", 0) / wall,
        # capacity: events the server took in and relayed (counted at each session's first
        # watcher) per second per core of server CPU, i.e. 1e6 / µs of CPU per event, its
        # flusher process included. Acks lag far behind on a saturated machine; relays do not.
        "events_per_core_s": (stats.window_counts.get("relayed", 0) / stats.server_tree_cpu_s
                              if stats.server_tree_cpu_s else float("nan")),
        "frames_in_per_s": stats.window_counts.get("frames", 0) / wall,
        # µs of CPU per event relayed, by part: the IOLoop thread, the server's other threads
        # (the log's I/O thread, query threads) and its child processes (the flusher)
        "us_per_event": {part: 1e6 * cpu / max(1, stats.window_counts.get("relayed", 0)) for part, cpu in (
            ("ioloop", stats.server_main_cpu_s),
            ("threads", stats.server_cpu_s - stats.server_main_cpu_s),
            ("flusher", stats.server_tree_cpu_s - stats.server_cpu_s))},
        "server_main_thread_cpu_pct": 100 * stats.server_main_cpu_s / wall,
        "server_main_thread_cpu_wait_pct": 100 * stats.server_main_wait_s / wall,
        "server_rss_mb": stats.server_rss_mb[-1][1] if stats.server_rss_mb else None,
        "window_p99_ms": [percentiles(w)["p99"] for w in stats.lat_by_window],
        "flushes": len(flushes),
        "by_flush": near_flush_split(stats.relay_ms, stats.relay_at, flushes),
        "errors": stats.errors[:20], "n_errors": len(stats.errors), "server_exit": rc,
        "server_pid": pid,
    }


def server_cpu_per_event(sample: str) -> dict[str, float]:
    """µs per event the server spends parsing and recording the session's frames (no network):
    one event per frame, and in the frames as the recorder sent them."""
    import json

    from streamdom.ingest import frames as ingest_frames
    from streamdom.ingest import validate

    tasks = [f for p in sample.split(",") for f in load_frames(Path(p))]

    def encode(groups: list[list[dict[str, Any]]]) -> list[str]:
        out, seq = [], 1
        for g in groups:
            out.append(json.dumps({"type": "events", "seq": seq, "events": g}, separators=(",", ":")))
            seq += len(g)
        return out

    single = encode([[e] for f in tasks for e in f])
    grouped = encode(tasks)
    n_events = len(single)

    def per_event(fn: object, frames: list[str]) -> float:
        runs = []
        for _ in range(5):
            t = time.perf_counter()
            for f in frames:
                fn(f)  # type: ignore[operator]
            runs.append(time.perf_counter() - t)
        return median(runs) / n_events * 1e6

    def ingest(f: str) -> None:  # what the server does with an events frame, sockets aside
        seq, span = validate.parse_events(ingest_frames.parse_frame(f))
        validate.make_batches("s", "t", seq, span, 0, 1)

    return {"parse_and_make_record_us": per_event(ingest, single),
            "json_loads_us": per_event(json.loads, single),
            "task_frames_parse_and_make_record_us": per_event(ingest, grouped),
            "frames": len(single), "task_frames": len(grouped), "events_per_task_frame": n_events / len(grouped),
            "mean_frame_bytes": sum(map(len, single)) / len(single)}


def print_profile(out: Path, pid: int, top: int = 25) -> None:
    """Where a profiled server process's CPU went (its flusher process left out), by function."""
    rows = profile_report(out, top, f"{pid}.json")
    print("  the server's CPU by function (benchmarks/cpuprofile; % of the samples outside the "
          "poll and imports with it on the stack / on top):")
    for fn, incl, own in rows:
        print(f"    {incl:5.1f} {own:5.1f}  {fn}")


def print_run(r: dict[str, Any], took: float, rep: int | None) -> None:
    """Print one run's figures."""
    tag = f" (repeat {rep + 1})" if rep is not None else ""
    tag += (f" [{r['code']}, framing {r['framing']}: {r['events_per_frame']:.2f} events per frame]"
            if r.get("code") else "")
    print(f"\nN={r['n_recorders']:<4} recorders, {r['n_watchers']} watchers{tag}  ({took:.0f} s)")
    print(f"  relay send->watch  {fmt_pct(r['relay_ms'])}")
    print(f"  ack   send->ack    {fmt_pct(r['ack_ms'])}")
    print(f"  split (wall clock, 1 ms resolution): send->server recvAt p50 {r['up_ms']['p50']:.0f} "
          f"p99 {r['up_ms']['p99']:.0f} ms; recvAt->watcher p50 {r['down_ms']['p50']:.0f} "
          f"p99 {r['down_ms']['p99']:.0f} ms")
    print(f"  sent {r['sent_per_s']:.0f} ev/s in {r['frames_in_per_s']:.0f} frames/s "
          f"({r['sent_mb_per_s']:.2f} MB/s), delivered "
          f"{r['delivered_per_s']:.0f} ev/s, {r['ack_frames_per_s']:.0f} acks/s; server RSS "
          f"{r['server_rss_mb'] or 0:.0f} MB")
    behind = "" if r["relayed_per_s"] >= 0.95 * r["sent_per_s"] else " (the server fell BEHIND the load)"
    print(f"  relayed {r['relayed_per_s']:,.0f} ev/s{behind}; capacity: {r['events_per_core_s']:,.0f} "
          f"events relayed per second per core of server CPU "
          f"({1e6 / r['events_per_core_s']:.0f} µs per event, {100 * r['server_kernel_share']:.0f}% of it "
          f"in the kernel; server {r['server_tree_cpu_pct']:.0f}% of a core with its flusher process)")
    print("  server CPU per event: " + ", ".join(f"{k} {v:.1f} µs" for k, v in r["us_per_event"].items()))
    print(f"  CPU (% of one core): client {r['client_cpu_pct']:.0f}%, server "
          f"{r['server_cpu_pct']:.0f}% (IOLoop thread {r['server_main_thread_cpu_pct']:.0f}% "
          f"on CPU + {r['server_main_thread_cpu_wait_pct']:.0f}% runnable but waiting for a CPU)")
    print("  p99 per 5-s window: " + " ".join(f"{x:.1f}" for x in r["window_p99_ms"]))
    nf, el = r["by_flush"]["near_flush"], r["by_flush"]["elsewhere"]
    if nf["n"]:
        print(f"  within -0.5/+1 s of one of {r['flushes']} Parquet flushes: p50 {nf['p50']:.1f} p99 "
              f"{nf['p99']:.1f} ms (n={nf['n']}); elsewhere: p50 {el['p50']:.1f} p99 {el['p99']:.1f} ms")
    if r["n_errors"]:
        print(f"  {r['n_errors']} errors, e.g. {r['errors'][:3]}")
    if r["client_cpu_pct"] > 80:
        print("  note: the client process was near a full core; try --procs 2")


def main() -> None:
    """Parse options, run every N side by side in one run, print and optionally save."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", default="1,50,200", help="comma-separated recorder counts (default %(default)s)")
    ap.add_argument("--rate", type=float, default=25.0,
                    help="events/s per recorder (default %(default)s; the sample's own pace is ~25)")
    ap.add_argument("--duration", type=float, default=20.0, help="measured seconds per N (default %(default)s)")
    ap.add_argument("--warmup", type=float, default=3.0, help="unmeasured seconds first (default %(default)s)")
    ap.add_argument("--extra-watchers", type=int, default=-1,
                    help="watchers beyond one per session, on random sessions (default N/10, at least 1)")
    ap.add_argument("--checkout", type=float, default=60.0,
                    help="seconds between full snapshots per recorder, 0 = never (default %(default)s)")
    ap.add_argument("--procs", type=int, default=1, help="client processes (default %(default)s)")
    ap.add_argument("--repeat", type=int, default=1,
                    help="run the whole N sweep this many times, interleaved; the summary gives "
                         "medians (default %(default)s)")
    ap.add_argument("--nice", type=int, default=0,
                    help="nice value for the server and client processes, e.g. -10 on a shared "
                         "machine (needs root; default %(default)s)")
    ap.add_argument("--server-arg", action="append", default=[],
                    help="extra argument for `python -m streamdom` (repeatable), e.g. "
                         "--server-arg=--flush-interval=3600")
    ap.add_argument("--sample", type=Path, default=SAMPLE, help="recorded session to take event shapes from")
    ap.add_argument("--workload", metavar="NAMES",
                    help="replay real sessions frame by frame as their recorder sent them instead: "
                         "react, vue (data/workloads/<NAME>-todomvc.json) or paths, comma-separated, "
                         "shared out over the recorders")
    ap.add_argument("--root", type=Path, help="the checkout whose server runs (default: this one)")
    ap.add_argument("--baseline", type=Path, metavar="CHECKOUT", action="append", default=[],
                    help="also run this checkout's server on the same load, taking turns, and "
                         "print the ratios (e.g. a `git worktree` of main); repeatable: "
                         "baseline, baseline2, ... in the order given")
    ap.add_argument("--baseline-framing", choices=("auto", "frame", "event", "task"), default="auto",
                    help="how the baseline's recorders frame events: auto = one event per frame "
                         "(event) when its docs/PROTOCOL.md is v1 (its recorder sent them so), "
                         "else as recorded (frame) (default %(default)s)")
    ap.add_argument("--task-frames", action="store_true",
                    help="also run this checkout's server with a workload's frames sent from one "
                         "task merged (this-tasks: what a recorder flushing at the end of each "
                         "task would send)")
    ap.add_argument("--floor", nargs="?", const="tornado", metavar="KINDS",
                    help="also run a bare relay (latency_browser.py's, no validation, no storage, "
                         "no acks) on the same load, each turn: tornado (the default: Tornado's "
                         "WebSocket handlers, the stack's ceiling), asyncio (asyncio Protocols, "
                         "no Tornado), or both comma-separated")
    ap.add_argument("--profile", type=Path, metavar="DIR",
                    help="run each server under cProfile, write DIR/<code>-n<N>-r<repeat>.prof "
                         "and print its IOLoop thread's top functions")
    ap.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    ap.add_argument("--browser", action="store_true",
                    help="afterwards run latency_browser.py (browser to browser, with its floor)")
    args = ap.parse_args()

    print(f"machine: {machine_note(args.root)}")
    if args.workload:
        args.sample = workload_paths(args.workload)
    for p in str(args.sample).split(","):
        print(f"session {Path(p).name}: {frames_per_task(load_frames(Path(p)))}")
    if args.task_frames:
        for p in str(args.sample).split(","):
            print(f"session {Path(p).name}, frames sent from one task merged: "
                  f"{frames_per_task(load_frames(Path(p), by_task=True))}")
    # (label, checkout, framing, bare relay kind or ""): the baselines first in every turn, so
    # "this / baseline" reads as a change; the floors (bare relays) last.
    bases: list[tuple[str, Path | None, str, str]] = []
    for i, checkout in enumerate(args.baseline):
        base_framing = (checkout_framing(checkout) if args.baseline_framing == "auto"
                        else args.baseline_framing)
        label = "baseline" if i == 0 else f"baseline{i + 1}"
        bases.append((label, checkout, base_framing, ""))
        print(f"{label}: server code {code_state(checkout.resolve())}, recorders send "
              f"{'one event per frame' if base_framing == 'event' else base_framing + ' frames'}")
    micro = server_cpu_per_event(str(args.sample))
    print(f"server CPU per event before relaying (this checkout, in-process, mean event frame "
          f"{micro['mean_frame_bytes']:.0f} B): parse_frame+parse_events+make_record "
          f"{micro['parse_and_make_record_us']:.1f} µs one event per frame (json.loads alone "
          f"{micro['json_loads_us']:.1f} µs), {micro['task_frames_parse_and_make_record_us']:.1f} µs "
          f"in the frames as recorded ({micro['events_per_task_frame']:.2f} events each)")
    print(f"{args.rate:g} events/s per recorder, {args.warmup:g} s warmup + "
          f"{args.duration:g} s measured per N, {args.procs} client process(es)")
    ns = [int(x) for x in args.n.split(",") if x.strip()]
    codes: list[tuple[str, Path | None, str, str]] = [*bases, ("this", args.root, "frame", "")]
    if args.task_frames:
        codes.append(("this-tasks", args.root, "task", ""))
    for kind in (k.strip() for k in (args.floor or "").split(",") if k.strip()):
        codes.append(("floor" if kind == "tornado" else f"floor-{kind}", None, "frame", kind))
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
    results: list[dict[str, Any]] = []
    for rep in range(args.repeat):
        for n in ns:
            for code, root, framing, floor in codes:
                t = time.monotonic()
                prof = args.profile / f"{code}-n{n}-r{rep + 1}" if args.profile and not floor else None
                r = run_one(n, args, root, prof, framing, floor)
                r["repeat"], r["code"] = rep, code if len(codes) > 1 else ""
                results.append(r)
                print_run(r, time.monotonic() - t, rep if args.repeat > 1 else None)
                if prof is not None:
                    print_profile(prof, r["server_pid"])
    summary = []
    print(f"\nsummary (median over {args.repeat} repeat(s) of each figure), relay send->watch:")
    for n in ns:
        for code, _, _, _ in codes:
            runs = [r for r in results if r["n_recorders"] == n and r["code"] in (code, "")]
            med = {q: median([r["relay_ms"][q] for r in runs]) for q in ("p50", "p90", "p99", "max")}
            ack = {q: median([r["ack_ms"][q] for r in runs]) for q in ("p50", "p99")}
            cap = median([r["events_per_core_s"] for r in runs])
            kernel = median([r["server_kernel_share"] for r in runs])
            sent = median([r["sent_per_s"] for r in runs])
            parts = {k: median([r["us_per_event"][k] for r in runs]) for k in runs[0]["us_per_event"]}
            summary.append({"n_recorders": n, "code": code, "relay_ms": med, "ack_ms": ack,
                            "sent_per_s": sent, "events_per_core_s": cap, "kernel_share": kernel,
                            "us_per_event": parts})
            tag = f" {code:<13}" if len(codes) > 1 else ""
            print(f"  N={n:<4}{tag} p50 {med['p50']:8.2f} ms  p90 {med['p90']:8.2f}  p99 {med['p99']:8.2f}  "
                  f"max {med['max']:8.2f}   (ack p50 {ack['p50']:.1f}, p99 {ack['p99']:.1f} ms); "
                  f"{sent:,.0f} events/s in, {cap:,.0f} per core of server CPU ({1e6 / cap:.0f} µs "
                  f"per event, {100 * kernel:.0f}% in the kernel: "
                  + ", ".join(f"{k} {v:.1f}" for k, v in parts.items()) + ")")
        mine = {x["code"]: x for x in summary[-len(codes):]}
        later = [b[0] for b in bases[1:]]
        pairs = [(b, "baseline") for b in later]
        for a in ("this", "this-tasks", "floor", "floor-asyncio"):
            pairs += [(a, b) for b in ("baseline", *later)]
        pairs += [("this-tasks", "this"), ("floor", "this"), ("floor-asyncio", "this"),
                  ("floor-asyncio", "floor")]
        for a, b in pairs:
            if a in mine and b in mine:
                x, y = mine[a], mine[b]
                print(f"  N={n:<4} {a} / {b}: events per core {x['events_per_core_s'] / y['events_per_core_s']:.2f}x, "
                      f"p50 {x['relay_ms']['p50'] / y['relay_ms']['p50']:.2f}x, "
                      f"p99 {x['relay_ms']['p99'] / y['relay_ms']['p99']:.2f}x")
    big = next(x for x in reversed(summary) if x["n_recorders"] == max(ns)
               and x["code"] in ("this", ""))["relay_ms"]
    ok50, ok99 = big["p50"] <= TARGET_P50_MS, big["p99"] <= TARGET_P99_MS
    print(f"targets at N={max(ns)}: p50 {big['p50']:.2f} ms (<= {TARGET_P50_MS:g}: "
          f"{'ok' if ok50 else 'MISSED'}), p99 {big['p99']:.2f} ms (<= {TARGET_P99_MS:g}: "
          f"{'ok' if ok99 else 'MISSED'})")
    out: dict[str, object] = {"machine": machine_note(args.root),
                              "args": vars(args) | {"sample": str(args.sample), "base_framing": {b[0]: b[2] for b in bases}},
                              "server_cpu_per_event": micro, "summary": summary,
                              "results": results}
    if args.browser:
        import latency_browser

        out["browser"] = latency_browser.run(latency_browser.default_args())
    write_json(args.json, out)
    sys.exit(0)


if __name__ == "__main__":
    main()
