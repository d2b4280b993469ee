"""Unit tests of the write-ahead log: round trip, corrupt and truncated tails."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from streamdom.archive.wal import WriteAheadLog, read_segments
from streamdom.ingest.validate import make_record


def records(start: int, n: int):
    return [make_record("s", "a", i, {"type": 3, "data": {"i": i}, "timestamp": i}, 1000 + i).row()
            for i in range(start, start + n)]


def test_round_trip_and_rotation(tmp_path: Path) -> None:
    wal = WriteAheadLog(tmp_path)
    wal.write_and_sync(records(1, 5))
    done = wal.rotate()
    wal.write_and_sync(records(6, 5))
    wal.close()
    assert len(done) == 1
    rows = read_segments(sorted(tmp_path.glob("*.wal")))
    assert [r[2] for r in rows] == list(range(1, 11))
    assert rows[0][6] == '{"i":1}'


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_damaged_tail_is_skipped_with_a_warning(tmp_path: Path, damage: str,
                                                caplog: pytest.LogCaptureFixture) -> None:
    wal = WriteAheadLog(tmp_path)
    wal.write_and_sync(records(1, 5))
    wal.write_and_sync(records(6, 5))
    wal.close()
    seg = sorted(tmp_path.glob("*.wal"))[0]
    data = bytearray(seg.read_bytes())
    if damage == "truncate":
        data = data[:-7]
    else:
        data[-3] ^= 0xFF
    seg.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING):
        rows = read_segments([seg])
    assert [r[2] for r in rows] == [1, 2, 3, 4, 5]  # nothing before the damage is lost
    assert "skipping the tail" in caplog.text
