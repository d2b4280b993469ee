"""A stand-in archiver process for the archive tests: commits batches through streamdom.lake.

It does what the cluster archiver does with a batch it pulled from the bus: commit, then ack.
Rows are deterministic (a redelivered batch is identical, as a JetStream redelivery is), and it
prints `committed <first>-<last> <new rows>` after each commit and `acked ...` after the ack, so
a test can kill -9 it in between.

    python -m tests.lake_writer --data-path P --catalog C [--s3-endpoint URL]
        --sessions s1,s2 --first 1 --last 500 --batch 37 [--reverse] [--hold-before-ack]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from streamdom.archive import commits, lake
from streamdom.config import S3Credentials
from streamdom.ingest.validate import make_record
from streamdom.records import Row

T0 = 1_764_000_000_000  # 2025-11-24 16:00 UTC; events run into the next day with --day-ms


def rows_for(session_id: str, seqs: range, day_ms: int = 0) -> list[Row]:
    """The same rows every time for the same (session, seqs): server time is a function of seq."""
    out = []
    for seq in seqs:
        ev = ({"type": 4, "data": {"href": f"http://app.test/{session_id}", "width": 800, "height": 600},
               "timestamp": T0 + seq} if seq == 1 else
              {"type": 3, "data": {"source": 2, "type": 2, "id": seq, "x": seq % 97, "y": 1},
               "timestamp": T0 + seq})
        out.append(make_record(session_id, "tab-1", seq, ev, T0 + seq * 10 + (seq * day_ms) // 1000).row())
    return out


def main() -> None:
    """Commit the batches, printing progress lines for the test."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-path", required=True)
    ap.add_argument("--catalog", required=True)
    ap.add_argument("--s3-endpoint")
    ap.add_argument("--sessions", required=True)
    ap.add_argument("--first", type=int, default=1)
    ap.add_argument("--last", type=int, required=True)
    ap.add_argument("--batch", type=int, default=50)
    ap.add_argument("--day-ms", type=int, default=0, help="extra server-time ms per 1000 seqs")
    ap.add_argument("--reverse", action="store_true", help="commit the batches last first")
    ap.add_argument("--hold-before-ack", action="store_true",
                    help="after each commit wait for a line on stdin before acking")
    args = ap.parse_args()
    creds = S3Credentials.from_environment(os.environ) if args.s3_endpoint else None
    con = lake.connect(lake.Location(args.data_path, args.catalog, args.s3_endpoint, creds))
    starts = list(range(args.first, args.last + 1, args.batch))
    for start in reversed(starts) if args.reverse else starts:
        seqs = range(start, min(start + args.batch, args.last + 1))
        rows = [r for sid in args.sessions.split(",") for r in rows_for(sid, seqs, args.day_ms)]
        n = commits.commit(con, rows, {})
        print(f"committed {seqs.start}-{seqs.stop - 1} {n}", flush=True)
        if args.hold_before_ack:
            sys.stdin.readline()
        print(f"acked {seqs.start}-{seqs.stop - 1}", flush=True)
    time.sleep(0)
    print("done", flush=True)


if __name__ == "__main__":
    main()
