"""Cluster mode side by side with the embedded default, in one run, on this machine.

1. Relay: --n recorders (synthetic, the sample session's event shapes at --rate events/s, one
   event per frame) with one watcher each. Cluster: a NATS server (JetStream, R1) and two
   StreamDOM nodes; the recorders are spread over the two nodes and every watcher sits on the
   *other* node, so every event crosses JetStream. Embedded: one `python -m streamdom`, the
   same recorders and watchers on it. Both runs use the same two client processes, so the load
   generator costs the same. Prints relay (recorder send -> watcher receive) p50/p99/max for
   both and their ratio, send -> ack for both, the stream's bytes per event, and where the CPU
   went over the measured window: CPU seconds per 1,000 events per process kind (each
   StreamDOM node's IOLoop thread and its other threads, nats-server, the load generator), the
   cores each kept busy against the machine's, and how long the servers' main threads waited
   for a core (the shared cores' contention). A watcher
   counts every event of a frame and times each recorder frame it completes (a node relaying
   another node's events sends consecutive recorder frames as one). `--baseline CHECKOUT` runs
   the cluster relay with another checkout's server code too (before/after in one run);
   `--rounds R` runs every variant R times, taking turns, and prints the medians.
2. Throughput: one cluster node with --workers 1, then --workers 2, driven by --tp-n recorders
   at --tp-rate events/s each, watchers on the same port (so on either worker). Prints events/s
   in and delivered, and events/s per core of StreamDOM CPU (all workers) and NATS CPU.

The load generator runs on the same two cores as the servers: a second worker competes with it
for CPU, so --workers 2 vs 1 is a lower bound of what two cores give a real deployment.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from support import (
    CLK_TCK,
    CPU_PROFILE_HOOK,
    ROOT,
    SAMPLE,
    ClientPlan,
    ClientStats,
    ServerProcess,
    fmt_pct,
    machine_note,
    median,
    percentiles,
    proc_cpu_seconds,
    proc_schedstat,
    proc_thread_cpu,
    proc_tree_cpu_seconds,
    profile_report,
    run_plans,
    write_json,
)

from streamdom.testing_nats import NatsCluster

# What --stages and --profile load into the nodes: a sitecustomize each (so one at a time), the
# variable that tells it where to write.
HOOKS = {"stages": ("SD_STAGES", Path(__file__).resolve().parent / "stagehook"),
         "profile": ("SD_PROFILE", CPU_PROFILE_HOOK)}


def hook_env(tmp: Path, tag: str, args: argparse.Namespace
             ) -> tuple[dict[str, str] | None, Path | None, Path | None]:
    """Environment that loads the hook asked for into a node; where --stages and --profile write."""
    for name, (var, hook) in HOOKS.items():
        if getattr(args, name):
            out = tmp / f"{name}-{tag}"
            out.mkdir(parents=True, exist_ok=True)
            env = {var: str(out), "PYTHONPATH": str(hook)}
            return (env, out, None) if name == "stages" else (env, None, out)
    return None, None, None


def stage_report(out: Path, skip_s: float) -> dict[str, dict[str, float]]:
    """Where an event's time goes inside the nodes, per stage (ms), from stagehook's stamps.

    Per ingest batch (its last event: what the ack waits for): waiting behind its stream's
    message in flight; the publish task's wait for its first turn; -> in nats-py's buffer; -> JetStream's ack back in the
    publisher; -> the ack frame written to the recorder; and across nodes: in nats-py's buffer
    -> the other node's follower has it; -> relayed to its watchers; ingest -> the other node's
    live subscription has the batch, and the % of batches taken from it (the rest, after a lost
    live message, come from the stream); ingest -> relayed on the other node by whichever path
    was first. Batches of the first
    `skip_s` seconds (ramp and warmup) and the last second are left out.
    """
    import bisect
    import json

    pub: list[Any] = []
    msgs: dict[tuple[str, str], list[Any]] = {}
    acks: dict[tuple[str, str], list[Any]] = {}
    recv: dict[tuple[str, str, int, int], Any] = {}
    live: dict[tuple[str, str], list[Any]] = {}
    lag: list[float] = []
    for f in out.glob("*.json"):
        d = json.loads(f.read_text())
        pub += d["pub"]
        for m in d["msg"]:
            msgs.setdefault((m[0], m[1]), []).append(m)
        for a in d["ack"]:
            acks.setdefault((a[0], a[1]), []).append(a)
        for r in d["recv"]:
            recv[(r[0], r[1], r[2], r[3])] = r
        for r in d.get("live", []):
            live.setdefault((r[0], r[1]), []).append(r)
        lag += d["lag"]
    for v in msgs.values():
        v.sort(key=lambda m: m[2])
    for v in acks.values():
        v.sort(key=lambda a: a[3])
    for v in live.values():
        v.sort(key=lambda r: r[2])
    live_firsts = {k: [r[2] for r in v] for k, v in live.items()}
    firsts = {k: [m[2] for m in v] for k, v in msgs.items()}
    ack_times = {k: [a[3] for a in v] for k, v in acks.items()}
    if not pub:
        return {}
    t0, t1 = min(p[4] for p in pub) + skip_s, max(p[4] for p in pub) - 1.0
    st: dict[str, list[float]] = {k: [] for k in (
        "wait_in_flight", "task_turn", "task_to_buffer", "buffer_to_js_ack", "js_ack_to_ack_sent",
        "ingest_to_ack_sent", "buffer_to_follower", "follower_to_relayed",
        "ingest_to_live_follower", "live_taken", "ingest_to_remote_relay")}
    for sid, stream, _first, last, t in pub:
        if not t0 <= t <= t1:
            continue
        lvs = live.get((sid, stream), [])  # the live message that carried the batch's last event
        j = bisect.bisect_right(live_firsts.get((sid, stream), []), last) - 1
        lv = lvs[j] if j >= 0 and lvs[j][3] >= last else None
        if lv is not None:
            st["ingest_to_live_follower"].append(1000 * (lv[4] - t))
            st["live_taken"].append(100.0 if lv[6] else 0.0)
        ms = msgs.get((sid, stream), [])
        i = bisect.bisect_right(firsts.get((sid, stream), []), last) - 1
        if i < 0 or ms[i][3] < last or not ms[i][6]:
            continue
        m = ms[i]
        sent = m[7] if len(m) > 7 and m[7] else m[4]  # no task: sent from the callback
        st["wait_in_flight"].append(1000 * (sent - t))
        st["task_turn"].append(1000 * (m[4] - sent))
        st["task_to_buffer"].append(1000 * (m[5] - m[4]))
        st["buffer_to_js_ack"].append(1000 * (m[6] - m[5]))
        out_acks = acks.get((sid, stream), [])
        for a in out_acks[bisect.bisect_left(ack_times.get((sid, stream), []), m[6]):]:
            if a[2] >= last:
                st["js_ack_to_ack_sent"].append(1000 * (a[3] - m[6]))
                st["ingest_to_ack_sent"].append(1000 * (a[3] - t))
                break
        r = recv.get((sid, stream, m[2], m[3]))
        if r is not None:
            st["buffer_to_follower"].append(1000 * (r[4] - m[5]))
            st["follower_to_relayed"].append(1000 * (r[5] - r[4]))
        # relayed on the other node by whichever path got there first
        relayed = [x[5] for x in (r, lv) if x is not None and (x is r or x[6])]
        if relayed:
            st["ingest_to_remote_relay"].append(1000 * (min(relayed) - t))
    taken = st.pop("live_taken")
    res = {k: percentiles(v) for k, v in st.items()}
    if taken:  # a share, not a time: the same figure in every column
        share = sum(taken) / len(taken)
        res["live_taken_pct"] = {"n": len(taken), "p50": share, "p90": share, "p99": share,
                                 "max": share}
    res["ioloop_timer_lateness"] = percentiles(lag)
    return res


def print_stages(stages: dict[str, dict[str, float]]) -> None:
    """One line per stage."""
    if not stages:
        return
    print("  inside the nodes (stagehook, ms; per ingest batch):")
    for k, v in stages.items():
        if k == "live_taken_pct":
            print(f"    {k:24s} {v['p50']:.1f} % of {v['n']} live batches")
        else:
            print(f"    {k:24s} {fmt_pct(v)}")


def stream_state(urls: list[str]) -> tuple[int, int]:
    """(bytes, messages) of the events stream."""
    async def go() -> tuple[int, int]:
        import nats

        nc = await nats.connect(urls)
        info = await nc.jetstream().stream_info("SD_EVENTS")
        await nc.close()
        return info.state.bytes, info.state.messages

    return asyncio.run(go())


def plans(rec_urls: list[str], watch_urls: list[str], n: int, args: argparse.Namespace,
          tag: str) -> list[ClientPlan]:
    """Two client processes; process k records on rec_urls[k] and watches on watch_urls[k]."""
    sids = [f"{tag}-{i:04d}" for i in range(n)]
    out = []
    for k in range(2):
        mine = sids[k::2]
        out.append(ClientPlan(ws_url=rec_urls[k], watch_url=watch_urls[k], sessions=mine,
                              watchers=list(mine), rate=args.rate, warmup=args.warmup,
                              duration=args.duration, checkout_s=args.checkout, seed=k))
    return out


def figures(stats: ClientStats) -> dict[str, Any]:
    """The figures one run prints."""
    wall = stats.wall_s or 1.0
    return {"relay_ms": percentiles(stats.relay_ms), "ack_ms": percentiles(stats.ack_ms),
            "up_ms": percentiles(stats.up_ms), "down_ms": percentiles(stats.down_ms),
            "sent_per_s": stats.window_counts.get("sent", 0) / wall,
            "delivered_per_s": stats.window_counts.get("delivered", 0) / wall,
            "errors": stats.errors[:5], "n_errors": len(stats.errors), "sent_total": stats.sent}


def server_args(n: int) -> list[str]:
    """Arguments every StreamDOM process gets here."""
    return ["--max-sessions-per-ip", str(max(1000, 2 * n)), "--log-level", "WARNING"]


def _proc_sample(pid: int) -> tuple[float, float, float, float]:
    """(main thread CPU s, other threads' CPU s, children's CPU s, main thread's wait for a core
    s) of a live process; zeros once it is gone."""
    try:
        threads = proc_thread_cpu(pid)
        tree = proc_tree_cpu_seconds(pid)
    except OSError:
        return 0.0, 0.0, 0.0, 0.0
    main = threads.get(pid, 0.0)
    own = sum(threads.values())
    return main, own - main, max(0.0, tree - own), proc_schedstat(pid)[1]


def _system_busy() -> tuple[float, float]:
    """(busy, idle) CPU seconds of the whole machine so far (/proc/stat)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / CLK_TCK, idle / CLK_TCK


class CpuMeter:
    """CPU of every process of a run, by kind, over the clients' measured window.

    A thread samples /proc every 0.2 s; `figures` takes the samples at the edges of the window
    the load generator measures (warmup and ramp left out), so CPU per event divides the CPU of
    the same seconds as the events. Per StreamDOM process: the main thread (the IOLoop), its
    other threads (executors: archive reads) and its children (the embedded WAL flusher).
    """

    def __init__(self, procs: dict[str, int]) -> None:
        self.procs = procs  # kind -> pid (kinds: "node A", "nats-server", ...)
        self.samples: list[tuple[float, tuple[float, float], dict[str, tuple[float, ...]]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        self.samples.append((time.perf_counter(), _system_busy(),
                             {k: _proc_sample(p) for k, p in self.procs.items()}))

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(0.2)

    def _at(self, t: float) -> tuple[float, tuple[float, float], dict[str, tuple[float, ...]]]:
        return min(self.samples, key=lambda s: abs(s[0] - t))

    def figures(self, stats: ClientStats, window: tuple[float, float]) -> dict[str, Any]:
        """CPU per 1,000 events sent in the window, per process kind, and the machine's load."""
        self._stop.set()
        self._thread.join()
        a, b = self._at(window[0]), self._at(window[1])
        wall = max(1e-9, b[0] - a[0])
        events = max(1, stats.window_counts.get("sent", 0))
        kinds: dict[str, dict[str, float]] = {}
        for k in self.procs:
            main, other, children, wait = (y - x for x, y in zip(a[2][k], b[2][k], strict=True))
            kinds[k] = {"main_s_per_1k": 1000 * main / events, "other_s_per_1k": 1000 * other / events,
                        "children_s_per_1k": 1000 * children / events,
                        "cores": (main + other + children) / wall, "main_wait_pct": 100 * wait / wall}
        kinds["load generator"] = {"main_s_per_1k": 1000 * stats.cpu_s / events, "other_s_per_1k": 0.0,
                                   "children_s_per_1k": 0.0, "cores": stats.cpu_s / wall,
                                   "main_wait_pct": 0.0}
        busy = b[1][0] - a[1][0]
        total = sum(v["cores"] for v in kinds.values())
        nodes = [k for k in self.procs if k.startswith("node") or k == "embedded"]
        srv = sum(kinds[k]["cores"] for k in nodes) * wall
        nats = sum(kinds[k]["cores"] for k in self.procs if k.startswith("nats")) * wall
        return {"kinds": kinds, "window_s": wall, "events": events,
                "ours_cores": total, "machine_busy_cores": busy / wall,
                "others_cores": busy / wall - total, "cores_available": os.cpu_count() or 2,
                "server_us_per_event": 1e6 * srv / events, "nats_us_per_event": 1e6 * nats / events,
                "client_us_per_event": 1e6 * stats.cpu_s / events,
                "server_cpu_pct": 100 * srv / wall, "nats_cpu_pct": 100 * nats / wall,
                "client_cpu_pct": 100 * stats.cpu_s / wall,
                "main_wait_pct": median([kinds[k]["main_wait_pct"] for k in nodes])}


def measured_window(ps: list[ClientPlan], args: argparse.Namespace) -> tuple[float, float]:
    """The perf_counter span the clients measured (run_plans set their common start)."""
    start = ps[0].start_at + args.warmup
    return start, start + args.duration


def print_cpu(c: dict[str, Any]) -> None:
    """CPU seconds per 1,000 events by process kind, and the demand against the cores."""
    print(f"  CPU s per 1,000 events sent ({c['events']} events in {c['window_s']:.1f} s), "
          f"cores busy (of {c['cores_available']}):")
    for k, v in c["kinds"].items():
        parts = f"IOLoop {v['main_s_per_1k']:.3f} + other threads {v['other_s_per_1k']:.3f}"
        if v["children_s_per_1k"] > 0.0005:
            parts += f" + children {v['children_s_per_1k']:.3f}"
        total = v["main_s_per_1k"] + v["other_s_per_1k"] + v["children_s_per_1k"]
        if not k.startswith(("node", "embedded")):
            parts = "all threads"
        wait = f", main thread waited for a core {v['main_wait_pct']:.0f}%" if v["main_wait_pct"] else ""
        print(f"    {k:15s} {total:.3f} s ({parts}); {v['cores']:.2f} cores{wait}")
    print(f"    this run's processes {c['ours_cores']:.2f} cores; whole machine busy "
          f"{c['machine_busy_cores']:.2f} of {c['cores_available']} (others: {c['others_cores']:.2f})")


def relay_embedded(tmp: Path, args: argparse.Namespace, tag: str = "emb") -> dict[str, Any]:
    """The embedded default, same clients."""
    env, _, profile = hook_env(tmp, tag, args)
    srv = ServerProcess(tmp / tag, *server_args(args.n), env=env).start()
    try:
        meter = CpuMeter({"embedded": srv.pid})
        ps = plans([srv.ws] * 2, [srv.ws] * 2, args.n, args, tag)
        stats = run_plans(ps, args.sample)
        out = {**figures(stats), "cpu": meter.figures(stats, measured_window(ps, args))}
    finally:
        srv.stop()
    if profile is not None:
        out["profile"] = profile_report(profile)
    return out


def relay_cluster(tmp: Path, args: argparse.Namespace, root: Path = ROOT, tag: str = "clu"
                  ) -> dict[str, Any]:
    """Two nodes (running the code of checkout `root`), recorders spread over them, every
    watcher on the other node."""
    nats = NatsCluster(tmp / f"nats-{tag}").start()
    archive = tmp / f"archive-{tag}"
    env, stages, profile = hook_env(tmp, tag, args)
    a = ServerProcess(archive, "--bus", nats.bus, *server_args(args.n), root=root, env=env).start()
    b = ServerProcess(archive, "--bus", nats.bus, *server_args(args.n), root=root, env=env).start()
    try:
        meter = CpuMeter({"node A": a.pid, "node B": b.pid,
                          "nats-server": nats.nodes[0].proc.pid})  # type: ignore[union-attr]
        ps = plans([a.ws, b.ws], [b.ws, a.ws], args.n, args, tag)
        stats = run_plans(ps, args.sample)
        out = {**figures(stats), "cpu": meter.figures(stats, measured_window(ps, args))}
        nbytes, msgs = stream_state(nats.urls)
        out["stream_bytes_per_event"] = nbytes / max(1, stats.sent)
        out["events_per_message"] = stats.sent / max(1, msgs)
    finally:
        a.stop()
        b.stop()
        nats.stop()
    if stages is not None:
        out["stages"] = stage_report(stages, args.warmup + 1.0)
    if profile is not None:
        out["profile"] = profile_report(profile)
    return out


def throughput(tmp: Path, workers: int, args: argparse.Namespace, k: int = 0) -> dict[str, Any]:
    """One node with `workers` workers at a high event rate; CPU per event."""
    nats = NatsCluster(tmp / f"nats-w{workers}-{k}").start()
    srv = ServerProcess(tmp / f"w{workers}-{k}", "--bus", nats.bus, "--workers", str(workers),
                        *server_args(args.tp_n)).start()
    nats_pid = nats.nodes[0].proc.pid  # type: ignore[union-attr]
    try:
        ps = plans([srv.ws] * 2, [srv.ws] * 2, args.tp_n, argparse.Namespace(
            **{**vars(args), "rate": args.tp_rate}), f"tp{workers}-{k}")
        cpu0, ncpu0, t0 = proc_tree_cpu_seconds(srv.pid), proc_cpu_seconds(nats_pid), time.monotonic()
        stats = run_plans(ps, args.sample)
        wall = time.monotonic() - t0
        cpu, ncpu = proc_tree_cpu_seconds(srv.pid) - cpu0, proc_cpu_seconds(nats_pid) - ncpu0
        out = figures(stats)
        total_events = stats.acked  # taken, relayed and made durable (not merely sent)
        out.update(workers=workers, streamdom_cpu_pct=100 * cpu / wall, nats_cpu_pct=100 * ncpu / wall,
                   events_per_core_s=total_events / max(cpu, 1e-9),
                   events_per_core_s_incl_nats=total_events / max(cpu + ncpu, 1e-9))
        return out
    finally:
        srv.stop()
        nats.stop()


def med(rs: list[dict[str, Any]], *path: str) -> float:
    """The median over runs of one figure (a path of keys into each run's result)."""
    vals = []
    for r in rs:
        v: Any = r
        for key in path:
            v = v.get(key, {}) if isinstance(v, dict) else {}
        if isinstance(v, int | float):
            vals.append(float(v))
    return median(vals) if vals else float("nan")


def print_run(name: str, r: dict[str, Any], emb: dict[str, Any] | None) -> None:
    """One relay run's figures."""
    c = r["cpu"]
    print(f"\n{name}: sent {r['sent_per_s']:.0f} ev/s, delivered {r['delivered_per_s']:.0f} ev/s")
    print(f"  relay send->watch  {fmt_pct(r['relay_ms'])}")
    print(f"  ack   send->ack    {fmt_pct(r['ack_ms'])}")
    print(f"  of the relay: recorder->server p50 {r['up_ms']['p50']:.1f} ms, server->watcher "
          f"p50 {r['down_ms']['p50']:.1f} ms (wall clocks, ms resolution)")
    print(f"  CPU per event: StreamDOM {c['server_us_per_event']:.0f} us, NATS "
          f"{c['nats_us_per_event']:.0f} us, load generator {c['client_us_per_event']:.0f} us; "
          f"StreamDOM {c['server_cpu_pct']:.0f}%, NATS {c['nats_cpu_pct']:.0f}%, load generator "
          f"{c['client_cpu_pct']:.0f}% of a core; server main threads waited for a core "
          f"{c['main_wait_pct']:.0f}% of the time")
    print_cpu(c)
    if "stream_bytes_per_event" in r:
        print(f"  stream: {r['stream_bytes_per_event']:.0f} bytes per event "
              f"({r['events_per_message']:.2f} events per message)")
    print_stages(r.get("stages", {}))
    if r.get("profile"):
        print("  the servers' CPU by function (benchmarks/cpuprofile, the whole run; % of the "
              "samples outside the poll and imports with it on the stack / on top):")
        for fn, incl, own in r["profile"]:
            print(f"    {incl:5.1f} {own:5.1f}  {fn}")
    if r["n_errors"]:
        print(f"  {r['n_errors']} errors, e.g. {r['errors'][:2]}")
    if emb is not None:
        r["relay_p50_ratio"] = r["relay_ms"]["p50"] / emb["relay_ms"]["p50"]
        print(f"  /embedded of the same round: relay p50 x{r['relay_p50_ratio']:.2f}, "
              f"p99 x{r['relay_ms']['p99'] / emb['relay_ms']['p99']:.2f}")


def print_medians(name: str, rs: list[dict[str, Any]], emb: list[dict[str, Any]]) -> None:
    """The median over rounds of a variant's main figures."""
    line = (f"  {name:17s} relay p50 {med(rs, 'relay_ms', 'p50'):8.2f} p99 "
            f"{med(rs, 'relay_ms', 'p99'):8.1f} ms; ack p50 {med(rs, 'ack_ms', 'p50'):8.2f} p99 "
            f"{med(rs, 'ack_ms', 'p99'):8.1f} ms; delivered {med(rs, 'delivered_per_s'):.0f} of "
            f"{med(rs, 'sent_per_s'):.0f} ev/s; main threads waiting {med(rs, 'cpu', 'main_wait_pct'):.0f}%")
    if rs is not emb:
        line += f"; relay p50 / embedded's x{med(rs, 'relay_p50_ratio'):.2f}"
    print(line)
    def per_1k(k: str, *parts: str) -> float:
        return sum(med(rs, "cpu", "kinds", k, f"{part}_s_per_1k") for part in parts)

    kinds = rs[0]["cpu"]["kinds"]
    print("    CPU s per 1,000 events: " + ", ".join(
        f"{k} {per_1k(k, 'main', 'other', 'children'):.3f}"
        + (f" (IOLoop {per_1k(k, 'main'):.3f})" if k.startswith(("node", "embedded")) else "")
        for k in kinds)
          + f"; this run's processes {med(rs, 'cpu', 'ours_cores'):.2f} cores, machine busy "
          f"{med(rs, 'cpu', 'machine_busy_cores'):.2f}")
    stages = rs[0].get("stages")
    if stages:
        print("    " + ", ".join(f"{k} p50 {med(rs, 'stages', k, 'p50'):.2f} / p99 "
                                  f"{med(rs, 'stages', k, 'p99'):.1f}" for k in stages))


def main() -> None:
    """Run everything once, print, optionally save JSON."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=200, help="recorders in the relay runs (default %(default)s)")
    ap.add_argument("--rate", type=float, default=25.0, help="events/s per recorder (default %(default)s)")
    ap.add_argument("--duration", type=float, default=20.0, help="measured seconds (default %(default)s)")
    ap.add_argument("--warmup", type=float, default=3.0, help="unmeasured seconds first")
    ap.add_argument("--checkout", type=float, default=60.0, help="seconds between full snapshots")
    ap.add_argument("--tp-n", type=int, default=200, help="recorders in the throughput runs")
    ap.add_argument("--tp-rate", type=float, default=25.0,
                    help="events/s per recorder there (below saturation: CPU per event is the point)")
    ap.add_argument("--rounds", type=int, default=1,
                    help="run every variant this many times, taking turns, and print the medians "
                         "(the load of a shared machine changes from minute to minute)")
    ap.add_argument("--skip-throughput", action="store_true")
    ap.add_argument("--stages", action="store_true",
                    help="stamp each stage inside the cluster nodes (benchmarks/stagehook) and "
                         "print where an event's ack and cross-node relay time goes")
    ap.add_argument("--profile", action="store_true",
                    help="sample where the StreamDOM processes' CPU goes (benchmarks/cpuprofile) "
                         "and print the top functions; not with --stages")
    ap.add_argument("--sample", type=Path, default=SAMPLE)
    ap.add_argument("--json", metavar="PATH")
    ap.add_argument("--baseline", type=Path, metavar="CHECKOUT",
                    help="also run the cluster relay with the server code of another checkout "
                         "(e.g. a `git worktree` of main), first, in the same run")
    args = ap.parse_args()
    if args.profile and args.stages:
        ap.error("--profile and --stages each load their own sitecustomize: choose one")
    print(f"machine: {machine_note()}")
    print(f"{args.n} recorders at {args.rate:g} events/s, one watcher each; {args.warmup:g} s warmup "
          f"+ {args.duration:g} s measured; 2 client processes on the same 2 cores")
    with tempfile.TemporaryDirectory(prefix="streamdom-cluster-") as tmp:
        root = Path(tmp)
        variants: list[tuple[str, Callable[[int], dict[str, Any]]]] = [
            ("embedded", lambda k: relay_embedded(root, args, f"emb{k}"))]
        if args.baseline:
            variants.append(("baseline cluster",
                             lambda k: relay_cluster(root, args, args.baseline, f"base{k}")))
        variants.append(("cluster", lambda k: relay_cluster(root, args, ROOT, f"clu{k}")))
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name, _ in variants}
        for k in range(args.rounds):  # variants take turns: each round sees the same load
            for name, run in variants:
                r = run(k)
                r["load_avg"] = os.getloadavg()[0]
                runs[name].append(r)
                print_run(f"{name} (round {k + 1}, load avg {r['load_avg']:.1f})", r,
                          runs["embedded"][k] if name != "embedded" else None)
        res: dict[str, Any] = dict(runs)
        if args.rounds > 1:
            print(f"\nmedians over {args.rounds} rounds (each figure's median over the rounds):")
            for name, rs in runs.items():
                print_medians(name, rs, runs["embedded"])
        if not args.skip_throughput:
            print(f"\nthroughput: {args.tp_n} recorders at {args.tp_rate:g} events/s, watchers on the "
                  "same port (either worker)")
            res["throughput"] = []
            for k in range(args.rounds):
                for workers in (1, 2):
                    r = throughput(root, workers, args, k)
                    r["load_avg"] = os.getloadavg()[0]
                    res["throughput"].append(r)
                    print(f"  --workers {workers} (round {k + 1}, load avg {r['load_avg']:.1f}): in "
                          f"{r['sent_per_s']:.0f} ev/s, delivered {r['delivered_per_s']:.0f} ev/s; "
                          f"StreamDOM CPU {r['streamdom_cpu_pct']:.0f}%, NATS {r['nats_cpu_pct']:.0f}% "
                          f"of a core; {r['events_per_core_s']:.0f} events/s per StreamDOM core "
                          f"({r['events_per_core_s_incl_nats']:.0f} counting NATS); relay "
                          f"{fmt_pct(r['relay_ms'])}; ack p50 {r['ack_ms']['p50']:.1f} ms")
            if args.rounds > 1:
                for workers in (1, 2):
                    rs = [r for r in res["throughput"] if r["workers"] == workers]
                    print(f"  --workers {workers}, medians: {med(rs, 'events_per_core_s'):.0f} events/s "
                          f"per StreamDOM core, delivered {med(rs, 'delivered_per_s'):.0f} ev/s, relay "
                          f"p50 {med(rs, 'relay_ms', 'p50'):.2f} / p99 {med(rs, 'relay_ms', 'p99'):.1f} ms")
        write_json(args.json, res)


if __name__ == "__main__":
    sys.exit(main())
