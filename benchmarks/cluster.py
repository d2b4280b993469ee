"""Cluster mode side by side with the embedded default, in one run, on this machine.

1. Relay: --n recorders (synthetic, the sample session's event shapes at --rate events/s, one
   event per frame) with one watcher each. Cluster: a NATS server (JetStream, R1) and two
   StreamDOM nodes; the recorders are spread over the two nodes and every watcher sits on the
   *other* node, so every event crosses JetStream. Embedded: one `python -m streamdom`, the
   same recorders and watchers on it. Both runs use the same two client processes, so the load
   generator costs the same. Prints relay (recorder send -> watcher receive) p50/p99/max for
   both and their ratio, send -> ack for both, the stream's bytes per event, and where the CPU
   went: microseconds per event of StreamDOM (all nodes), NATS and the load generator, and how
   long the servers' main threads waited for a core (the shared cores' contention). A watcher
   counts every event of a frame and times each recorder frame it completes (a node relaying
   another node's events sends consecutive recorder frames as one). `--baseline CHECKOUT` runs
   the cluster relay first with another checkout's server code (before/after in one run).
2. Throughput: one cluster node with --workers 1, then --workers 2, driven by --tp-n recorders
   at --tp-rate events/s each, watchers on the same port (so on either worker). Prints events/s
   in and delivered, and events/s per core of StreamDOM CPU (all workers) and NATS CPU.

The load generator runs on the same two cores as the servers: a second worker competes with it
for CPU, so --workers 2 vs 1 is a lower bound of what two cores give a real deployment.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from support import (
    ROOT,
    SAMPLE,
    ClientPlan,
    ClientStats,
    ServerProcess,
    fmt_pct,
    machine_note,
    percentiles,
    proc_cpu_seconds,
    proc_schedstat,
    run_plans,
    write_json,
)

from streamdom.testing_nats import NatsCluster


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds of a process and its live children (workers)."""
    total = proc_cpu_seconds(pid)
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        children = []
    for child in children:
        try:
            total += proc_cpu_seconds(int(child))
        except OSError:
            pass
    return total


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


class CpuMeter:
    """CPU seconds of the servers (with their workers), of NATS, and the servers' main threads'
    time runnable but waiting for a core, over a stretch of the run."""

    def __init__(self, servers: list[int], nats_pid: int | None = None) -> None:
        self.servers, self.nats_pid = servers, nats_pid
        self.start = self._now()

    def _now(self) -> tuple[float, float, float, float]:
        return (sum(tree_cpu_seconds(p) for p in self.servers),
                proc_cpu_seconds(self.nats_pid) if self.nats_pid else 0.0,
                sum(proc_schedstat(p)[1] for p in self.servers), time.monotonic())

    def figures(self, stats: ClientStats) -> dict[str, float]:
        """Per event sent (warmup and ramp included: the same for every variant), and shares."""
        end = self._now()
        srv, nats, wait, wall = (b - a for a, b in zip(self.start, end, strict=True))
        events = max(1, stats.sent)
        return {"server_us_per_event": 1e6 * srv / events, "nats_us_per_event": 1e6 * nats / events,
                "client_us_per_event": 1e6 * stats.cpu_s / max(1, stats.window_counts.get("sent", 0)),
                "server_cpu_pct": 100 * srv / wall, "nats_cpu_pct": 100 * nats / wall,
                "client_cpu_pct": 100 * stats.cpu_s / max(stats.wall_s, 1e-9),
                "main_wait_pct": 100 * wait / wall / len(self.servers)}


def relay_embedded(tmp: Path, args: argparse.Namespace) -> dict[str, Any]:
    """The embedded default, same clients."""
    srv = ServerProcess(tmp / "embedded", *server_args(args.n)).start()
    try:
        meter = CpuMeter([srv.pid])
        stats = run_plans(plans([srv.ws] * 2, [srv.ws] * 2, args.n, args, "emb"), args.sample)
        return {**figures(stats), "cpu": meter.figures(stats)}
    finally:
        srv.stop()


def relay_cluster(tmp: Path, args: argparse.Namespace, root: Path = ROOT, tag: str = "clu"
                  ) -> dict[str, Any]:
    """Two nodes (running the code of checkout `root`), recorders spread over them, every
    watcher on the other node."""
    nats = NatsCluster(tmp / f"nats-{tag}").start()
    archive = tmp / f"archive-{tag}"
    a = ServerProcess(archive, "--bus", nats.bus, *server_args(args.n), root=root).start()
    b = ServerProcess(archive, "--bus", nats.bus, *server_args(args.n), root=root).start()
    try:
        meter = CpuMeter([a.pid, b.pid], nats.nodes[0].proc.pid)  # type: ignore[union-attr]
        stats = run_plans(plans([a.ws, b.ws], [b.ws, a.ws], args.n, args, tag), args.sample)
        out = {**figures(stats), "cpu": meter.figures(stats)}
        nbytes, msgs = stream_state(nats.urls)
        out["stream_bytes_per_event"] = nbytes / max(1, stats.sent)
        out["events_per_message"] = stats.sent / max(1, msgs)
        return out
    finally:
        a.stop()
        b.stop()
        nats.stop()


def throughput(tmp: Path, workers: int, args: argparse.Namespace) -> dict[str, Any]:
    """One node with `workers` workers at a high event rate; CPU per event."""
    nats = NatsCluster(tmp / f"nats-w{workers}").start()
    srv = ServerProcess(tmp / f"w{workers}", "--bus", nats.bus, "--workers", str(workers),
                        *server_args(args.tp_n)).start()
    nats_pid = nats.nodes[0].proc.pid  # type: ignore[union-attr]
    try:
        ps = plans([srv.ws] * 2, [srv.ws] * 2, args.tp_n, argparse.Namespace(
            **{**vars(args), "rate": args.tp_rate}), f"tp{workers}")
        cpu0, ncpu0, t0 = tree_cpu_seconds(srv.pid), proc_cpu_seconds(nats_pid), time.monotonic()
        stats = run_plans(ps, args.sample)
        wall = time.monotonic() - t0
        cpu, ncpu = tree_cpu_seconds(srv.pid) - cpu0, proc_cpu_seconds(nats_pid) - ncpu0
        out = figures(stats)
        total_events = stats.acked  # taken, relayed and made durable (not merely sent)
        out.update(workers=workers, streamdom_cpu_pct=100 * cpu / wall, nats_cpu_pct=100 * ncpu / wall,
                   events_per_core_s=total_events / max(cpu, 1e-9),
                   events_per_core_s_incl_nats=total_events / max(cpu + ncpu, 1e-9))
        return out
    finally:
        srv.stop()
        nats.stop()


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
    ap.add_argument("--skip-throughput", action="store_true")
    ap.add_argument("--sample", type=Path, default=SAMPLE)
    ap.add_argument("--json", metavar="PATH")
    ap.add_argument("--baseline", type=Path, metavar="CHECKOUT",
                    help="also run the cluster relay with the server code of another checkout "
                         "(e.g. a `git worktree` of main), first, in the same run")
    args = ap.parse_args()
    print(f"machine: {machine_note()}")
    print(f"{args.n} recorders at {args.rate:g} events/s, one watcher each; {args.warmup:g} s warmup "
          f"+ {args.duration:g} s measured; 2 client processes on the same 2 cores")
    with tempfile.TemporaryDirectory(prefix="streamdom-cluster-") as tmp:
        root = Path(tmp)
        runs: dict[str, dict[str, Any]] = {}
        if args.baseline:
            runs["baseline cluster"] = relay_cluster(root, args, args.baseline, "base")
        runs["embedded"] = relay_embedded(root, args)
        runs["cluster"] = relay_cluster(root, args)
        res: dict[str, Any] = dict(runs)
        emb = runs["embedded"]
        for name, r in runs.items():
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
            if "stream_bytes_per_event" in r:
                print(f"  stream: {r['stream_bytes_per_event']:.0f} bytes per event "
                      f"({r['events_per_message']:.2f} events per message)")
            if r["n_errors"]:
                print(f"  {r['n_errors']} errors, e.g. {r['errors'][:2]}")
            if name != "embedded":
                print(f"  {name}/embedded: relay p50 x{r['relay_ms']['p50'] / emb['relay_ms']['p50']:.2f}, "
                      f"p99 x{r['relay_ms']['p99'] / emb['relay_ms']['p99']:.2f}")
        if not args.skip_throughput:
            print(f"\nthroughput: {args.tp_n} recorders at {args.tp_rate:g} events/s, watchers on the "
                  "same port (either worker)")
            res["throughput"] = []
            for workers in (1, 2):
                r = throughput(root, workers, args)
                res["throughput"].append(r)
                print(f"  --workers {workers}: in {r['sent_per_s']:.0f} ev/s, delivered "
                      f"{r['delivered_per_s']:.0f} ev/s; StreamDOM CPU {r['streamdom_cpu_pct']:.0f}%, "
                      f"NATS {r['nats_cpu_pct']:.0f}% of a core; {r['events_per_core_s']:.0f} events/s "
                      f"per StreamDOM core ({r['events_per_core_s_incl_nats']:.0f} counting NATS); "
                      f"relay {fmt_pct(r['relay_ms'])}")
        write_json(args.json, res)


if __name__ == "__main__":
    sys.exit(main())
