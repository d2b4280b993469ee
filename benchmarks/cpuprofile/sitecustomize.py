"""CPU profile for `benchmarks/cluster.py --profile`: loaded into a StreamDOM node through
PYTHONPATH when $SD_PROFILE names a directory; without it, this file does nothing.

A statistical profiler of the process's CPU time, not of wall time: ITIMER_PROF fires every
2 ms of CPU the process uses, and the handler (run by the main thread, the IOLoop) counts the
Python stack it interrupted. Time in C code (a socket send, json.loads) is counted in the
Python function that called it. Writes `<pid>.json` ({stack: samples}, frames as
`file:function`, outermost first) at exit. Cost: one short handler per 2 ms of CPU.
"""

from __future__ import annotations

import os

OUT = os.environ.get("SD_PROFILE")


def _install(out_dir: str) -> None:
    import atexit
    import collections
    import json
    import signal
    from types import FrameType

    counts: collections.Counter[str] = collections.Counter()

    def sample(signum: int, frame: FrameType | None) -> None:
        stack = []
        while frame is not None and len(stack) < 80:
            code = frame.f_code
            stack.append(f"{os.path.basename(code.co_filename)}:{code.co_name}")
            frame = frame.f_back
        counts[";".join(reversed(stack))] += 1

    def dump() -> None:
        signal.setitimer(signal.ITIMER_PROF, 0, 0)
        with open(os.path.join(out_dir, f"{os.getpid()}.json"), "w") as f:
            json.dump(counts, f)

    signal.signal(signal.SIGPROF, sample)
    signal.setitimer(signal.ITIMER_PROF, 0.002, 0.002)
    atexit.register(dump)


if OUT:
    _install(OUT)
