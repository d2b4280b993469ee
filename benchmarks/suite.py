"""What the test suite costs: `make test`'s pytest run, timed, with the CPU of everything it starts.

    .venv/bin/python benchmarks/suite.py [--baseline CHECKOUT] [--top 15] [-- PYTEST ARGS]

Runs the suite as `make test` does (its virtualenv, `-n 4 --dist loadscope`) in the baseline
checkout (if given), then in this one, one after the other, and prints for each: pytest's wall
time and outcome; CPU seconds by kind of process (pytest workers, servers, their flushers,
Chromium's processes, Playwright's driver, NATS, SeaweedFS, PostgreSQL), sampled from /proc
every 0.2 s; CPU per test module and the most expensive tests (the `suite_cpu` plugin: each
test's whole process tree). On a shared machine wall time follows the load; CPU seconds much
less so, and the suite is CPU-bound (on 2 cores its wall time is at least CPU / 2). Run it under
`flock /work/team/suite.lock` so no other suite runs beside it.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

from suite_cpu import descendants, processes

ROOT = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve().parent
KINDS = (("--type=renderer", "chromium renderer"), ("--type=gpu-process", "chromium gpu"),
         ("--type=utility", "chromium utility"), ("--type=zygote", "chromium zygote"),
         ("chromium", "chromium browser"), ("playwright", "playwright driver"),
         ("-m streamdom archive", "cluster archivers"), ("-m streamdom", "servers"),
         ("multiprocessing.spawn", "flushers (spawned)"), ("resource_tracker", "flushers (spawned)"),
         ("nats-server", "nats-server"), ("weed", "seaweedfs"), ("postgres", "postgresql"),
         ("pytest", "pytest and its workers"), ("-c import sys;exec(eval(", "pytest and its workers"))


def kind_of(cmdline: str) -> str:
    """A process's kind, from its command line."""
    return next((kind for needle, kind in KINDS if needle in cmdline), "other")


class Sampler:
    """Every 0.2 s, the CPU so far of each process below `root` (the last sample of one that ended)."""

    def __init__(self, root: int) -> None:
        self.root = root
        self.seen: dict[int, tuple[str, float]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            self.sample()

    def sample(self) -> None:
        """Take one sample of the tree."""
        cpu, children = processes(with_children=False)  # each process counted once, by itself
        for pid in descendants(self.root, children):
            if pid not in cpu:
                continue
            kind = self.seen[pid][0] if pid in self.seen else None
            if kind is None:
                try:
                    with open(f"/proc/{pid}/cmdline", "rb") as f:
                        kind = kind_of(f.read().replace(b"\0", b" ").decode(errors="replace"))
                except OSError:
                    continue
            self.seen[pid] = (kind, cpu[pid])

    def stop(self) -> dict[str, float]:
        """CPU seconds by kind."""
        self._stop.set()
        self._thread.join()
        by_kind: Counter[str] = Counter()
        for kind, cpu in self.seen.values():
            by_kind[kind] += cpu
        return dict(by_kind)


def run(checkout: Path, pytest_args: list[str]) -> dict:
    """Build the checkout, run its suite; return the figures."""
    subprocess.run(["make", "build"], cwd=checkout, check=True, stdout=subprocess.DEVNULL)
    rows_dir = tempfile.mkdtemp(prefix="suite-cpu-")
    env = {**os.environ, "SUITE_CPU_DIR": rows_dir,
           "PYTHONPATH": os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")]))}
    cmd = [str(checkout / ".venv/bin/python"), "-m", "pytest", "-n", "4", "--dist", "loadscope",
           "-p", "suite_cpu", "-p", "no:cacheprovider", "-q", *pytest_args]
    load = os.getloadavg()[0]
    started = time.monotonic()
    before = os.times()
    proc = subprocess.Popen(cmd, cwd=checkout, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    sampler = Sampler(proc.pid)
    out, _ = proc.communicate()
    wall = time.monotonic() - started
    after = os.times()
    by_kind = sampler.stop()
    rows = [r for p in Path(rows_dir).glob("*.json") for r in json.loads(p.read_text())]
    summary = next((line for line in reversed(out.splitlines()) if re.search(r" in [\d.]+s", line)), "")
    return {"checkout": str(checkout), "wall": wall, "summary": summary.strip("= "),
            "returncode": proc.returncode, "load_before": load, "load_after": os.getloadavg()[0],
            "cpu_reaped": (after.children_user + after.children_system)
            - (before.children_user + before.children_system),
            "cpu_by_kind": by_kind, "tests": rows,
            "failures": [line for line in out.splitlines() if line.startswith(("FAILED", "ERROR"))]}


def modules(result: dict) -> dict[str, tuple[float, float, int]]:
    """Per test module: (CPU, wall, tests)."""
    out: dict[str, list[float]] = {}
    for r in result["tests"]:
        m = out.setdefault(r["id"].split("::")[0], [0.0, 0.0, 0])
        m[0] += r["cpu"]
        m[1] += r["wall"]
        m[2] += 1
    return {k: (v[0], v[1], int(v[2])) for k, v in out.items()}


def report(results: list[dict], top: int) -> None:
    """Print each run, then the modules side by side."""
    for res in results:
        print(f"\n== {res['checkout']}: {res['summary']} (pytest wall {res['wall']:.0f} s; "
              f"load average {res['load_before']:.1f} before, {res['load_after']:.1f} after)")
        for line in res["failures"]:
            print("  " + line)
        kinds = res["cpu_by_kind"]
        print(f"  CPU: {sum(kinds.values()):.0f} s sampled, {res['cpu_reaped']:.0f} s reaped "
              f"(processes orphaned by kill -9 are missing from the latter)")
        for kind, cpu in sorted(kinds.items(), key=lambda kv: -kv[1]):
            print(f"  {cpu:8.1f} s  {kind}")
        print("  most expensive tests (CPU of the test's process tree, wall):")
        for r in sorted(res["tests"], key=lambda r: -r["cpu"])[:top]:
            print(f"  {r['cpu']:8.1f} s {r['wall']:6.1f} s  {r['id']}")
    mods = [modules(r) for r in results]
    names = sorted(set().union(*mods), key=lambda n: -mods[-1].get(n, (0,))[0])
    print("\nCPU per test module (s)" + ("; baseline, this, this / baseline" if len(results) > 1 else ""))
    for name in names:
        cells = [mod.get(name, (0.0, 0.0, 0))[0] for mod in mods]
        ratio = f"  {cells[-1] / cells[0]:.2f}" if len(cells) > 1 and cells[0] > 0.5 else ""
        print("  " + " ".join(f"{c:7.1f}" for c in cells) + ratio + f"  {name}")
    totals = [sum(r["cpu_by_kind"].values()) for r in results]
    if len(results) > 1:
        print(f"\nside by side: pytest wall {results[0]['wall']:.0f} -> {results[-1]['wall']:.0f} s "
              f"({results[-1]['wall'] / results[0]['wall']:.2f}), CPU {totals[0]:.0f} -> "
              f"{totals[-1]:.0f} s ({totals[-1] / totals[0]:.2f})")


def main() -> None:
    """Run and print."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--baseline", metavar="CHECKOUT", type=Path,
                    help="another checkout (built with `make build`) to run first, same way")
    ap.add_argument("--top", type=int, default=15, help="tests to list per run (default 15)")
    ap.add_argument("--json", metavar="PATH", type=Path, help="also write the figures as JSON")
    ap.add_argument("pytest_args", nargs="*", help="passed to pytest (after --)")
    args = ap.parse_args()
    results = [run(c.resolve(), args.pytest_args) for c in ([args.baseline] if args.baseline else []) + [ROOT]]
    report(results, args.top)
    if args.json:
        args.json.write_text(json.dumps(results))
    sys.exit(max(r["returncode"] for r in results))


if __name__ == "__main__":
    main()
