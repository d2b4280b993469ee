"""Shared pieces of the benchmarks: a server subprocess, the sample session, synthetic clients, stats.

The scripts import this as `support` (Python puts the script's folder, benchmarks/, on the
path); the server itself comes from the installed package (`streamdom.testing`).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import resource
import subprocess
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tornado.websocket import WebSocketClosedError

from streamdom import testing
from streamdom.rrweb import EventType

ROOT = Path(__file__).resolve().parent.parent
# benchmarks/cpuprofile: a sampling profiler a server loads with PYTHONPATH and $SD_PROFILE
CPU_PROFILE_HOOK = Path(__file__).resolve().parent / "cpuprofile"
# Stack frames of the interpreter's and the event loop's plumbing, left out of profile reports
GENERIC_FRAMES = ("runpy", "__main__.py:", "cli.py:", "base_events.py:", "runners.py:", "events.py:_run")
SAMPLE = ROOT / "data" / "sample" / "todomvc-session.json"
WORKLOADS = ROOT / "data" / "workloads"
PAGES = Path(__file__).resolve().parent / "pages"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
CLK_TCK = os.sysconf("SC_CLK_TCK")


# --- the server --------------------------------------------------------------------------------
def _quiet(future: Any) -> None:
    """Retrieve a write's outcome: a socket closed under it is counted where it is noticed."""
    if not future.cancelled():
        future.exception()


class ServerProcess(testing.ServerProcess):
    """The tests' server subprocess, plus a nice value and its CPU and memory figures."""

    def __init__(self, data_dir: Path, *args: str, nice: int = 0, root: Path = ROOT,
                 env: dict[str, str] | None = None) -> None:
        super().__init__(data_dir, *args, root=root, env=env)
        self.nice = nice

    def start(self, port: int = 0, timeout: float = 120) -> ServerProcess:
        """Start it, wait for the 'listening' line, then apply the nice value."""
        super().start(port, timeout)
        if self.nice:
            set_nice(self.nice, self.pid)
        return self

    @property
    def pid(self) -> int:
        """The server's process id."""
        assert self.proc is not None
        return self.proc.pid

    def cpu_seconds(self) -> float:
        """User + system CPU seconds used by the server so far."""
        return proc_cpu_seconds(self.pid)

    def rss_mb(self) -> float:
        """Resident set size of the server, MB."""
        return proc_rss_mb(self.pid)


class BareRelay:
    """latency_browser.py's bare relay in a subprocess (no validation, no storage).

    The browser benchmarks' floor (text on /r/<channel> to the channel's other sockets), and
    latency.py's --floor (the least of /ingest and /watch; see latency_browser.relay_server).
    kind="asyncio" is the same /ingest and /watch relay on asyncio Protocols, without Tornado
    (latency_browser.protocol_relay_server).
    """

    def __init__(self, nice: int = 0, kind: str = "tornado") -> None:
        self.nice = nice
        self.kind = kind
        self.proc: subprocess.Popen[str] | None = None
        self.ws = ""

    def start(self) -> BareRelay:
        """Start it and read its port."""
        self.proc = subprocess.Popen([sys.executable, str(ROOT / "benchmarks" / "latency_browser.py"),
                                      f"--relay-server={self.kind}"], stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        self.ws = f"ws://127.0.0.1:{int(self.proc.stdout.readline().split()[1])}"
        if self.nice:
            set_nice(self.nice, self.proc.pid)
        return self

    @property
    def pid(self) -> int:
        """Its process id."""
        assert self.proc is not None
        return self.proc.pid

    def stop(self) -> int:
        """Stop it; its exit code."""
        assert self.proc is not None
        self.proc.terminate()
        return self.proc.wait(10)


def set_nice(value: int, pid: int = 0) -> None:
    """Set a process's nice value (negative needs root); warn instead of failing."""
    try:
        os.setpriority(os.PRIO_PROCESS, pid, value)
    except OSError as exc:
        print(f"warning: could not set nice {value} on pid {pid or os.getpid()}: {exc}")


def proc_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (from /proc/<pid>/stat)."""
    return sum(proc_cpu_split(pid))


def proc_cpu_split(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of a process (from /proc/<pid>/stat)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK


def proc_tree_cpu_seconds(pid: int) -> float:
    """CPU seconds of a process and its live descendants (the server's flusher child)."""
    return sum(proc_tree_cpu_split(pid))


def proc_tree_cpu_split(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of a process and its live descendants (the server's flusher)."""
    user = system = 0.0
    todo = [pid]
    while todo:
        p = todo.pop()
        try:
            u, s = proc_cpu_split(p)
            user, system = user + u, system + s
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, ValueError, IndexError):
            pass  # gone meanwhile
    return user, system


def proc_thread_cpu(pid: int) -> dict[int, float]:
    """CPU seconds per thread of a process (tid -> seconds); the main thread's tid is the pid."""
    out: dict[int, float] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            out[int(task.name)] = proc_cpu_seconds_path(task / "stat")
        except (OSError, ValueError, IndexError):
            pass
    return out


def proc_cpu_seconds_path(stat: Path) -> float:
    """User + system CPU seconds from a /proc stat file."""
    fields = stat.read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def proc_schedstat(pid: int, tid: int | None = None) -> tuple[float, float]:
    """(seconds on CPU, seconds runnable but waiting for a CPU) of a thread (default: main)."""
    try:
        run_ns, wait_ns, _ = Path(f"/proc/{pid}/task/{tid or pid}/schedstat").read_text().split()
    except (OSError, ValueError):
        return 0.0, 0.0
    return int(run_ns) / 1e9, int(wait_ns) / 1e9


def proc_rss_mb(pid: int) -> float:
    """VmRSS of a process in MB (from /proc/<pid>/status)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def self_cpu_seconds() -> float:
    """CPU seconds used by this process (user + system)."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def machine_note(root: Path | None = None) -> str:
    """One line about the machine and the server code measured (`root`'s; default this checkout)."""
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg()
    return (f"{os.cpu_count()} CPUs ({model or 'unknown'}), load avg {load[0]:.2f}, "
            f"Python {sys.version.split()[0]}, server code {code_state(root or ROOT)}")


def code_state(root: Path) -> str:
    """A checkout's server code: HEAD commit, plus a hash of uncommitted changes under streamdom/."""
    import hashlib

    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True,
                              text=True, timeout=10).stdout.strip()
        diff = subprocess.run(["git", "diff", "HEAD", "--", "streamdom"], cwd=root,
                              capture_output=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + (f"+dirty:{hashlib.sha1(diff).hexdigest()[:8]}" if diff else "")


# --- statistics --------------------------------------------------------------------------------
def percentiles(values: list[float]) -> dict[str, float]:
    """n, p50, p90, p99, max (nearest-rank) of a list of numbers."""
    if not values:
        return {"n": 0, "p50": float("nan"), "p90": float("nan"), "p99": float("nan"),
                "max": float("nan")}
    v = sorted(values)

    def rank(q: float) -> float:
        return v[min(len(v) - 1, max(0, int(round(q * len(v) + 0.5)) - 1))]

    return {"n": len(v), "p50": rank(0.50), "p90": rank(0.90), "p99": rank(0.99), "max": v[-1]}


def fmt_pct(p: dict[str, float], unit: str = "ms") -> str:
    """A one-line rendering of percentiles()."""
    return (f"p50 {p['p50']:7.2f} {unit}  p90 {p['p90']:7.2f}  p99 {p['p99']:7.2f}  "
            f"max {p['max']:8.2f}  (n={p['n']})")


def median(values: list[float]) -> float:
    """The median of a non-empty list."""
    v = sorted(values)
    n = len(v)
    return v[n // 2] if n % 2 else (v[n // 2 - 1] + v[n // 2]) / 2


def write_json(path: str | None, obj: object) -> None:
    """Write results as JSON when a path was given."""
    if path:
        Path(path).write_text(json.dumps(obj, indent=2, default=str) + "\n")
        print(f"wrote {path}")


# --- the sample session ------------------------------------------------------------------------
def load_sample(path: Path = SAMPLE) -> list[dict[str, Any]]:
    """The recorded rrweb session (run benchmarks/record_sample.py to regenerate it)."""
    if not path.exists():
        sys.exit(f"{path} is missing: run `python benchmarks/record_sample.py` first")
    events = json.loads(path.read_text())
    if isinstance(events, dict):
        events = events["events"]
    return events


def _enc(obj: object) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def load_frames(path: Path = SAMPLE, by_task: bool = False) -> list[list[dict[str, Any]]]:
    """A recorded session's events grouped into frames as its recorder sent them.

    A workload (record_sample.py --workload) keeps the recorder's frames; with `by_task`, the
    frames sent from one task are merged (the task numbers the page's probe recorded). The
    sample session was fetched back from the archive, which does not keep frames: there,
    consecutive events stamped in the same millisecond make a frame, at most 50.
    """
    if not path.exists():
        sys.exit(f"{path} is missing: run `python benchmarks/record_sample.py` first")
    obj = json.loads(path.read_text())
    if isinstance(obj, dict) and "frames" in obj:
        if not by_task:
            return [list(f) for f in obj["frames"] if f]
        if "tasks" not in obj:
            sys.exit(f"{path} has no task numbers: record it again with record_sample.py --workload")
        merged: list[list[dict[str, Any]]] = []
        last = None
        for task, f in zip(obj["tasks"], obj["frames"], strict=True):
            if merged and task == last:
                merged[-1] += f
            else:
                merged.append(list(f))
            last = task
        return merged
    return same_task_frames(obj["events"] if isinstance(obj, dict) else obj)


def workload_paths(spec: str) -> str:
    """`--workload` names (react, vue: data/workloads/<NAME>-todomvc.json) or paths, comma-separated."""
    out = []
    for name in (x.strip() for x in spec.split(",") if x.strip()):
        path = WORKLOADS / f"{name}-todomvc.json" if "/" not in name and "." not in name else Path(name)
        if not path.exists():
            sys.exit(f"no workload {path}: record one with `python benchmarks/record_sample.py --workload NAME`")
        out.append(str(path))
    return ",".join(out)


def same_task_frames(events: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Frames of a flat event list: consecutive events stamped in the same millisecond (up to 50)."""
    frames: list[list[dict[str, Any]]] = []
    for e in events:
        if frames and frames[-1][-1]["timestamp"] == e["timestamp"] and len(frames[-1]) < 50:
            frames[-1].append(e)
        else:
            frames.append([e])
    return frames


def frames_per_task(frames: list[list[dict[str, Any]]]) -> str:
    """How many events a recorder's frames held: mean, share of frames with several, histogram."""
    sizes = [len(f) for f in frames] or [0]
    hist: dict[str, int] = {}
    for n in sizes:
        k = str(n) if n < 5 else "5-9" if n < 10 else "10+"
        hist[k] = hist.get(k, 0) + 1
    multi = sum(n for n in sizes if n > 1)
    return (f"{sum(sizes) / len(sizes):.2f} events per frame ({len(sizes)} frames, "
            f"{sum(sizes)} events; {100 * multi / max(1, sum(sizes)):.0f}% of events share their "
            f"frame); frames by size: " + ", ".join(f"{k}: {v}" for k, v in sorted(
                hist.items(), key=lambda kv: int(kv[0].split("-")[0].rstrip("+")))))


@dataclass
class EventShapes:
    """A recorded session split into a snapshot pair and a replayable stream of frames.

    `frames` holds (gap_ms, [(type, data JSON), ...]) in recorded order: one entry per frame
    the recorder sent (what rrweb emitted in one task: a click brings a mouse interaction, a
    mutation and an input together), with the time since the previous frame. Replaying it at
    a scaled pace keeps the real burstiness. `incremental` is the same events one by one
    (gap 0 within a frame), for clients that pace events singly.
    """

    meta: str
    snapshot: str
    frames: list[tuple[float, list[tuple[int, str]]]]
    mean_rate: float  # events per second in the incremental part

    @classmethod
    def from_sample(cls, events: list[dict[str, Any]]) -> EventShapes:
        """Split a recorded session given as a flat list of events (same-millisecond frames)."""
        return cls.from_frames(same_task_frames(events))

    @classmethod
    def load(cls, path: Path = SAMPLE, by_task: bool = False) -> EventShapes:
        """The sample session or a workload file, as frames (see load_frames)."""
        return cls.from_frames(load_frames(path, by_task))

    @classmethod
    def from_frames(cls, frames: list[list[dict[str, Any]]]) -> EventShapes:
        """Split recorded frames."""
        events = [e for f in frames for e in f]
        meta = next(e for e in events if e["type"] == EventType.Meta)
        snap = next(e for e in events if e["type"] == EventType.FullSnapshot)
        kept = (EventType.IncrementalSnapshot, EventType.Custom)  # 0/1 (DOM loaded) belong to a page load
        out: list[tuple[float, list[tuple[int, str]]]] = []
        prev: float | None = None
        for f in frames:
            inc = [e for e in f if e["type"] in kept]
            if not inc:
                continue
            # Cap idle gaps at 2 s: a benchmark wants activity, not the session's pauses.
            gap = min(2000.0, max(0.0, inc[0]["timestamp"] - prev)) if prev is not None else 0.0
            prev = inc[-1]["timestamp"]
            out.append((gap, [(e["type"], _enc(e["data"])) for e in inc]))
        span = sum(g for g, _ in out) / 1000 or 1.0
        return cls(_enc(meta["data"]), _enc(snap["data"]), out, sum(len(b) for _, b in out) / span)

    @property
    def incremental(self) -> list[tuple[float, int, str]]:
        """The incremental events one by one: (gap_ms, type, data JSON)."""
        return [(gap if k == 0 else 0.0, typ, data)
                for gap, body in self.frames for k, (typ, data) in enumerate(body)]

    def index_at(self, fraction: float) -> int:
        """The index of the incremental event at `fraction` of the session's duration."""
        k = self.frame_at(fraction)
        return sum(len(b) for _, b in self.frames[:k])

    def frame_at(self, fraction: float) -> int:
        """The index of the frame at `fraction` of the session's duration."""
        target, t = fraction * sum(g for g, _ in self.frames), 0.0
        for k, (gap, _) in enumerate(self.frames):
            t += gap
            if t >= target:
                return k
        return 0


def event_json(typ: int, data: str, ts: int) -> str:
    """An rrweb event's JSON from pre-encoded data."""
    return f'{{"type":{typ},"data":{data},"timestamp":{ts}}}'


# --- synthetic clients -------------------------------------------------------------------------
@dataclass
class ClientStats:
    """What one client process measured."""

    relay_ms: list[float] = field(default_factory=list)  # recorder send -> watcher receive
    relay_at: list[float] = field(default_factory=list)  # wall time (s) of each relay_ms sample
    up_ms: list[float] = field(default_factory=list)  # recorder send -> server recvAt (wall clock, ms)
    down_ms: list[float] = field(default_factory=list)  # server recvAt -> watcher receive (wall clock)
    ack_ms: list[float] = field(default_factory=list)  # recorder send -> cumulative ack
    welcome_ms: list[float] = field(default_factory=list)  # hello sent -> welcome received
    sent: int = 0
    frames: int = 0  # recorder frames sent (several events each when rrweb emitted them together)
    frames_in: int = 0  # watcher frames received
    sent_bytes: int = 0
    delivered: int = 0
    relayed: int = 0  # events delivered to the first watcher of each session: what the server relayed
    acked: int = 0
    errors: list[str] = field(default_factory=list)
    cpu_s: float = 0.0
    wall_s: float = 0.0
    # (t since start, events sent, events delivered, events acked) samples for throughput over time
    timeline: list[tuple[float, int, int, int]] = field(default_factory=list)
    lat_by_window: list[list[float]] = field(default_factory=list)
    server_cpu_s: float = 0.0  # server CPU over the measured window (first client process only)
    server_tree_cpu_s: float = 0.0  # the same with its child processes (the flusher)
    server_tree_sys_s: float = 0.0  # of which in the kernel (system time)
    server_main_cpu_s: float = 0.0  # of which the main (IOLoop) thread
    server_main_wait_s: float = 0.0  # time the main thread was runnable but had no CPU
    ack_frames: int = 0  # ack frames received
    window_counts: dict[str, int] = field(default_factory=dict)  # counters over the measured window
    server_rss_mb: list[tuple[float, float]] = field(default_factory=list)  # (t, VmRSS MB)


class SynthRecorder:
    """A WebSocket client that speaks /ingest like the real recorder.

    Hello (with the stream's resume secret once it has one), then the sample's events at the
    configured pace, those rrweb emitted in the same task (no gap in the sample) in one frame,
    as the recorder sends them (a workload: the frames its recorder sent). With
    framing="event" each event goes in a frame of its own, back to back, as the recorder before
    protocol v2 sent them (framing="task" merges a workload's frames when its shapes are loaded:
    see run_plan_in_process). Each recorder starts at a random moment of the session (uniform
    in time, not in events: the dense stretches would otherwise line everybody up) and plays it
    at its own pace (within 20 % of the mean), so a fleet never bursts in step.
    """

    def __init__(self, ws_url: str, session_id: str, shapes: EventShapes, rate: float,
                 stats: ClientStats, sent_at: dict[tuple[str, int], tuple[float, float, int]],
                 source_ip: str | None = None, checkout_s: float = 60.0, seed: int = 0,
                 framing: str = "frame") -> None:
        self.url = ws_url + "/ingest"
        self.session_id = session_id
        self.stream_id = f"{session_id}-tab"
        self.shapes = shapes
        self.rng = random.Random(seed)
        self.scale = (shapes.mean_rate / rate if rate > 0 else 1.0) * self.rng.uniform(0.8, 1.2)
        self.stats = stats
        self.sent_at = sent_at
        self.source_ip = source_ip
        self.checkout_s = checkout_s
        self.per_event = framing == "event"
        self.seq = 0
        self.resume: str | None = None  # the stream's resume secret, from the first welcome
        self.conn: Any = None
        self.unacked: deque[tuple[int, float]] = deque()
        self.welcomed = asyncio.Event()
        self.record_latency = False
        self.closed = False

    async def connect(self) -> None:
        """Open the socket and say hello (returns once welcomed)."""
        from tornado.httpclient import HTTPRequest
        from tornado.websocket import websocket_connect

        req = HTTPRequest(self.url, network_interface=self.source_ip, connect_timeout=60,
                          request_timeout=60)
        self.conn = await websocket_connect(req, on_message_callback=self._on_message,
                                            max_message_size=64 * 1024 * 1024)
        self.conn.protocol.set_nodelay(True)  # browsers disable Nagle on WebSockets; so do we
        self._t_hello = time.perf_counter()
        hello = {"type": "hello", "protocol": 2, "sessionId": self.session_id,
                 "streamId": self.stream_id, "url": f"https://app.example/todos?u={self.session_id}",
                 "userAgent": "Mozilla/5.0 (X11; Linux x86_64) StreamDOM-bench"}
        if self.resume:
            hello["resume"] = self.resume
        await self.conn.write_message(_enc(hello))
        await asyncio.wait_for(self.welcomed.wait(), 120)

    def _on_message(self, msg: str | bytes | None) -> None:
        if msg is None:
            if not self.closed:
                code = self.conn.close_code if self.conn else None
                self.stats.errors.append(f"recorder {self.session_id} closed: {code}")
            self.closed = True
            self.welcomed.set()
            return
        if isinstance(msg, bytes):
            msg = msg.decode()
        if msg.startswith('{"type":"ack"'):
            self.stats.ack_frames += 1
            seq = int(msg[msg.index('"seq":') + 6:msg.index("}")])
            now = time.perf_counter()
            q = self.unacked
            while q and q[0][0] <= seq:
                s, t = q.popleft()
                self.stats.acked += 1
                if self.record_latency:
                    self.stats.ack_ms.append((now - t) * 1000)
        else:
            m = json.loads(msg)
            if m.get("type") == "welcome":
                self.stats.welcome_ms.append((time.perf_counter() - self._t_hello) * 1000)
                self.resume = m.get("resume") or self.resume
                self.welcomed.set()

    def _send(self, events: list[tuple[int, str]]) -> None:
        """One frame of (type, data JSON) events, numbered on from the last seq."""
        first = self.seq + 1
        ts = int(time.time() * 1000)
        body = ",".join(event_json(typ, data, ts) for typ, data in events)
        frame = f'{{"type":"events","seq":{first},"events":[{body}]}}'
        t = time.perf_counter()
        self.sent_at[(self.session_id, first)] = (t, time.time() * 1000, len(events))
        self.seq += len(events)
        self.unacked.append((self.seq, t))
        try:
            self.conn.write_message(frame).add_done_callback(_quiet)
        except WebSocketClosedError:  # refused (e.g. 4507) before its close frame was read
            if not self.closed:
                self.stats.errors.append(f"recorder {self.session_id} closed: {self.conn.close_code}")
            self.closed = True
            return
        self.stats.sent += len(events)
        self.stats.frames += 1
        self.stats.sent_bytes += len(frame)

    def send_task(self, events: list[tuple[int, str]]) -> None:
        """Send one recorded frame's events: as one frame, or one frame each (framing="event")."""
        if self.per_event:
            for ev in events:
                self._send([ev])
        else:
            self._send(events)

    def send_snapshot(self) -> None:
        """Send a Meta + FullSnapshot pair (what rrweb emits at start and at each checkout)."""
        self.send_task([(4, self.shapes.meta), (2, self.shapes.snapshot)])

    async def run(self, until: float) -> None:
        """Send the session's frames at the configured pace until `until` (perf_counter)."""
        frames = self.shapes.frames
        i = self.shapes.frame_at(self.rng.random())
        next_t = time.perf_counter() + self.rng.random() * 0.2
        next_checkout = time.perf_counter() + self.checkout_s * (0.5 + self.rng.random())
        while not self.closed:
            gap, burst = frames[i]
            i = (i + 1) % len(frames)
            next_t += gap * self.scale / 1000
            if next_t >= until:
                break
            delay = next_t - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            if self.closed:
                break
            if self.checkout_s and time.perf_counter() >= next_checkout:
                next_checkout += self.checkout_s
                self.send_snapshot()
            self.send_task(burst)

    def close(self) -> None:
        """Close the socket."""
        self.closed = True
        if self.conn is not None:
            self.conn.close()


class Watcher:
    """A /watch client that timestamps every live event frame against the recorders' send table."""

    def __init__(self, ws_url: str, session_id: str, stats: ClientStats,
                 sent_at: dict[tuple[str, int], tuple[float, float, int]]) -> None:
        self.url = f"{ws_url}/watch/{session_id}"
        self.session_id = session_id
        self.stats = stats
        self.sent_at = sent_at
        self.caught_up = asyncio.Event()
        self.primary = False  # the first watcher of its session: counts what the server relayed
        self.record_latency = False
        self.window: list[float] | None = None
        self.conn: Any = None
        self.closed = False

    async def connect(self) -> None:
        """Open the socket; returns once the backlog has been received."""
        from tornado.websocket import websocket_connect

        self.conn = await websocket_connect(self.url, on_message_callback=self._on_message,
                                            max_message_size=256 * 1024 * 1024)
        self.conn.protocol.set_nodelay(True)  # pings only, but like a browser
        await asyncio.wait_for(self.caught_up.wait(), 120)

    def _on_message(self, msg: str | bytes | None) -> None:
        now = time.perf_counter()
        if msg is None:
            if not self.closed:
                code = self.conn.close_code if self.conn else None
                self.stats.errors.append(f"watcher {self.session_id} closed: {code}")
            self.closed = True
            self.caught_up.set()
            return
        if isinstance(msg, bytes):
            msg = msg.decode()
        if msg.startswith('{"type":"event'):  # one event, or a batch (protocol v2)
            if not self.caught_up.is_set():
                return  # backlog
            i = msg.index('"seq":') + 6
            seq = int(msg[i:msg.index(",", i)])
            # A batch holds what one recorder frame held, or (a cluster node relaying another
            # node's events) several consecutive recorder frames, or part of one (cut before a
            # snapshot); a v1 server relays each event in a frame of its own. Count its events
            # and take one latency sample per recorder frame it completes (per user action).
            n = len(json.loads(msg)["events"]) if msg.startswith('{"type":"events"') else 1
            self.stats.delivered += n
            if self.primary:
                self.stats.relayed += n
            self.stats.frames_in += 1
            k, end = seq, seq + n
            while k < end:
                sent = self.sent_at.get((self.session_id, k))
                if sent is None:
                    break  # the rest of a frame cut before a snapshot: counted, not timed
                if self.record_latency:
                    self._sample(msg, i, now, sent, first=k == seq)
                k += sent[2]
        elif msg.startswith('{"type":"caughtup"'):
            self.caught_up.set()
        elif msg.startswith('{"type":"resync"'):
            self.stats.errors.append(f"watcher {self.session_id} resynced")

    def _sample(self, msg: str, i: int, now: float, sent: tuple[float, float, int],
                first: bool) -> None:
        ms = (now - sent[0]) * 1000
        self.stats.relay_ms.append(ms)
        if self.window is not None:
            self.window.append(ms)
        if first:  # recvAt is the server time of the frame's first event (a bare relay has none)
            wall = time.time()
            self.stats.relay_at.append(wall)
            j = msg.find('"recvAt":', i)
            if j < 0:
                return
            j += 9
            recv_at = int(msg[j:msg.index(",", j)])
            self.stats.up_ms.append(recv_at - sent[1])
            self.stats.down_ms.append(wall * 1000 - recv_at)

    def close(self) -> None:
        """Close the socket."""
        self.closed = True
        if self.conn is not None:
            self.conn.close()


@dataclass
class ClientPlan:
    """What one client process does: its sessions, their watchers and the pace."""

    ws_url: str
    sessions: list[str]
    watchers: list[str]  # one entry per watcher: the session it watches
    rate: float
    warmup: float
    duration: float
    connect_rate: float = 500.0  # new connections per second while ramping up
    source_ips: list[str] = field(default_factory=list)  # round-robin over recorders
    checkout_s: float = 60.0
    window_s: float = 5.0
    seed: int = 0
    start_at: float = 0.0  # perf_counter time at which sending begins (0: when connected)
    server_pid: int = 0  # when set, this process samples the server's CPU and RSS
    watch_url: str = ""  # where the watchers connect, when not to ws_url (another cluster node)
    # "frame": each recorded frame as the recorder sent it; "event": one frame per event (the
    # recorder before protocol v2); "task": a workload's frames sent from one task merged (what
    # a recorder flushing at the end of each task would send)
    framing: str = "frame"


async def run_clients(plan: ClientPlan, shapes: list[EventShapes]) -> ClientStats:
    """Connect recorders (the k-th replays shapes[k % len]), then watchers, send for warmup +
    duration, and measure."""
    stats = ClientStats()
    sent_at: dict[tuple[str, int], tuple[float, float, int]] = {}
    recs: list[SynthRecorder] = []
    gap = 1.0 / plan.connect_rate
    for k, sid in enumerate(plan.sessions):
        ip = plan.source_ips[k % len(plan.source_ips)] if plan.source_ips else None
        recs.append(SynthRecorder(plan.ws_url, sid, shapes[k % len(shapes)], plan.rate, stats,
                                  sent_at, ip, plan.checkout_s, seed=plan.seed * 1_000_003 + k,
                                  framing=plan.framing))

    async def open_rec(r: SynthRecorder, delay: float) -> None:
        await asyncio.sleep(delay)
        try:
            await r.connect()
            r.send_snapshot()
        except Exception as exc:  # noqa: BLE001 - a benchmark reports failures, it does not stop
            r.closed = True
            stats.errors.append(f"recorder {r.session_id} connect: {exc!r}")

    await asyncio.gather(*(open_rec(r, k * gap) for k, r in enumerate(recs)))
    watchers = [Watcher(plan.watch_url or plan.ws_url, sid, stats, sent_at) for sid in plan.watchers]
    firsts: set[str] = set()
    for w in watchers:
        w.primary = w.session_id not in firsts
        firsts.add(w.session_id)

    async def open_w(w: Watcher, delay: float) -> None:
        await asyncio.sleep(delay)
        try:
            await w.connect()
        except Exception as exc:  # noqa: BLE001
            w.closed = True
            stats.errors.append(f"watcher {w.session_id} connect: {exc!r}")

    await asyncio.gather(*(open_w(w, k * gap) for k, w in enumerate(watchers)))
    if plan.start_at:
        await asyncio.sleep(max(0.0, plan.start_at - time.perf_counter()))
    t0 = time.perf_counter()
    until = t0 + plan.warmup + plan.duration
    tasks = [asyncio.ensure_future(r.run(until)) for r in recs if not r.closed]

    async def measure() -> None:
        await asyncio.sleep(plan.warmup)
        for x in (*recs, *watchers):
            x.record_latency = True
        cpu0, wall0 = self_cpu_seconds(), time.perf_counter()
        base = (stats.sent, stats.delivered, stats.acked)
        relayed0, frames0 = stats.relayed, stats.frames
        pid = plan.server_pid
        scpu0 = proc_cpu_seconds(pid) if pid else 0.0
        tuser0, tsys0 = proc_tree_cpu_split(pid) if pid else (0.0, 0.0)
        smain0 = proc_thread_cpu(pid).get(pid, 0.0) if pid else 0.0
        swait0 = proc_schedstat(pid)[1] if pid else 0.0
        acks0 = stats.ack_frames
        if pid:
            stats.server_rss_mb.append((0.0, proc_rss_mb(pid)))
        end = wall0 + plan.duration
        while True:
            window: list[float] = []
            for w in watchers:
                w.window = window
            step = min(plan.window_s, end - time.perf_counter())
            if step <= 0.01:
                break
            await asyncio.sleep(step)
            stats.lat_by_window.append(window)
            tnow = time.perf_counter() - wall0
            stats.timeline.append((tnow, stats.sent - base[0], stats.delivered - base[1],
                                   stats.acked - base[2]))
            if pid:
                stats.server_rss_mb.append((tnow, proc_rss_mb(pid)))
        for x in (*recs, *watchers):
            x.record_latency = False
        stats.cpu_s = self_cpu_seconds() - cpu0
        stats.wall_s = time.perf_counter() - wall0
        if pid:
            stats.server_cpu_s = proc_cpu_seconds(pid) - scpu0
            tuser, tsys = proc_tree_cpu_split(pid)
            stats.server_tree_cpu_s = tuser + tsys - tuser0 - tsys0
            stats.server_tree_sys_s = tsys - tsys0
            stats.server_main_cpu_s = proc_thread_cpu(pid).get(pid, 0.0) - smain0
            stats.server_main_wait_s = proc_schedstat(pid)[1] - swait0
        stats.window_counts = {"ack_frames": stats.ack_frames - acks0, "sent": stats.sent - base[0],
                               "delivered": stats.delivered - base[1], "acked": stats.acked - base[2],
                               "relayed": stats.relayed - relayed0, "frames": stats.frames - frames0}

    await asyncio.gather(measure(), *tasks)
    await asyncio.sleep(0.3)  # let the last frames and acks arrive
    for w in watchers:
        w.close()
    for r in recs:
        r.close()
    await asyncio.sleep(0.1)
    return stats


def run_plan_in_process(plan: ClientPlan, sample_path: str, nice: int = 0) -> ClientStats:
    """Entry point of a client worker process (`sample_path`: one recorded session or workload
    file, or several separated by commas, shared out over the recorders)."""
    if nice:
        set_nice(nice)
    shapes = [EventShapes.load(Path(p), by_task=plan.framing == "task") for p in sample_path.split(",")]
    return asyncio.run(run_clients(plan, shapes))


def merge_stats(parts: list[ClientStats]) -> ClientStats:
    """Combine the stats of several client processes."""
    out = ClientStats()
    for p in parts:
        out.relay_ms += p.relay_ms
        out.relay_at += p.relay_at
        out.up_ms += p.up_ms
        out.down_ms += p.down_ms
        out.ack_ms += p.ack_ms
        out.welcome_ms += p.welcome_ms
        out.sent += p.sent
        out.frames += p.frames
        out.frames_in += p.frames_in
        out.sent_bytes += p.sent_bytes
        out.delivered += p.delivered
        out.relayed += p.relayed
        out.acked += p.acked
        out.errors += p.errors
        out.cpu_s += p.cpu_s
        out.wall_s = max(out.wall_s, p.wall_s)
        out.server_cpu_s = max(out.server_cpu_s, p.server_cpu_s)
        out.server_tree_cpu_s = max(out.server_tree_cpu_s, p.server_tree_cpu_s)
        out.server_tree_sys_s = max(out.server_tree_sys_s, p.server_tree_sys_s)
        out.server_main_cpu_s = max(out.server_main_cpu_s, p.server_main_cpu_s)
        out.server_main_wait_s = max(out.server_main_wait_s, p.server_main_wait_s)
        out.ack_frames += p.ack_frames
        for k, v in p.window_counts.items():
            out.window_counts[k] = out.window_counts.get(k, 0) + v
        out.server_rss_mb = out.server_rss_mb or p.server_rss_mb
    if parts:
        n = min(len(p.timeline) for p in parts)
        out.timeline = [(parts[0].timeline[i][0], *(sum(p.timeline[i][j] for p in parts)
                         for j in (1, 2, 3))) for i in range(n)]  # type: ignore[misc]
        out.lat_by_window = [[x for p in parts for x in p.lat_by_window[i]] for i in range(n)]
    return out


def run_plans(plans: list[ClientPlan], sample_path: Path | str = SAMPLE, nice: int = 0) -> ClientStats:
    """Run client plans: inline when there is one, else one worker process each."""
    if len(plans) == 1:
        return run_plan_in_process(plans[0], str(sample_path), nice)
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    # Every process starts sending at the same moment, once all have connected (with margin).
    ramp = max((len(p.sessions) + len(p.watchers)) / p.connect_rate for p in plans)
    start = time.perf_counter() + 4.0 + 1.5 * ramp
    for p in plans:
        p.start_at = start
    with ProcessPoolExecutor(len(plans), mp_context=mp.get_context("spawn")) as ex:
        futs = [ex.submit(run_plan_in_process, p, str(sample_path), nice) for p in plans]
        return merge_stats([f.result() for f in futs])


# --- serving benchmark pages -------------------------------------------------------------------
class PageServer:
    """A tiny threaded HTTP server on loopback serving fixed pages and files by path.

    A path with a suffix (`/build/app.js`) is served with that suffix's type, any other as HTML.

    Pages must come from a real loopback origin: Chromium's Local Network Access checks block
    a page of unknown origin (e.g. one fulfilled by Playwright's router) from opening a
    WebSocket to 127.0.0.1.
    """

    def __init__(self, pages: dict[str, str | bytes]) -> None:
        import mimetypes
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        table = {k: v.encode() if isinstance(v, str) else v for k, v in pages.items()}

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                path = self.path.split("?", 1)[0]
                body = table.get(path)
                if body is None:
                    self.send_error(404)
                    return
                kind = mimetypes.guess_type(path)[0] or "text/html"  # pages have no suffix
                self.send_response(200)
                self.send_header("Content-Type", kind + "; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def http(self) -> str:
        """Base URL."""
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        """Stop serving."""
        self.httpd.shutdown()
        self.httpd.server_close()


def flush_times(data_dir: Path) -> list[float]:
    """Wall times (s) at which the server wrote the archive's events files (their mtimes: flushes,
    and merges, which run every --compaction-interval)."""
    return sorted(f.stat().st_mtime for f in (data_dir / "main" / "events").rglob("*.parquet"))


def near_flush_split(lat: list[float], at: list[float], flushes: list[float],
                     before: float = 0.5, after: float = 1.0) -> dict[str, dict[str, float]]:
    """Latency percentiles of samples received within [flush - before, flush + after] vs the rest."""
    import bisect

    near, far = [], []
    for ms, t in zip(lat, at, strict=True):
        k = bisect.bisect_left(flushes, t - after)
        (near if k < len(flushes) and flushes[k] <= t + before else far).append(ms)
    return {"near_flush": percentiles(near), "elsewhere": percentiles(far)}


def profile_report(out: Path, top: int = 30, pattern: str = "*.json") -> list[tuple[str, float, float]]:
    """The functions the profiled processes' CPU went to (benchmarks/cpuprofile's files in `out`
    matching `pattern`): (file:function, % of samples with it on the stack, % with it on top),
    the largest inclusive shares first. Samples in the IOLoop's poll and in
    imports (startup) are left out, and so is the event loop's plumbing from the list."""
    incl: dict[str, int] = {}
    own: dict[str, int] = {}
    total = 0
    for f in out.glob(pattern):
        for stack, n in json.loads(f.read_text()).items():
            frames = stack.split(";")
            if frames[-1] == "selectors.py:select" or any(fr.startswith("<frozen importlib")
                                                          for fr in frames):
                continue
            total += n
            own[frames[-1]] = own.get(frames[-1], 0) + n
            for fr in set(frames):
                incl[fr] = incl.get(fr, 0) + n
    rows = [(k, 100 * v / total, 100 * own.get(k, 0) / total) for k, v in incl.items()
            if not k.startswith(GENERIC_FRAMES) and not k.startswith("<frozen")]
    return sorted(rows, key=lambda r: -r[1])[:top] if total else []
