"""Write-ahead log: zstd-compressed, checksummed frames of event records, fsynced before acks.

A frame is `b"SDW2"`, payload length (u32 LE), CRC32 of the payload (u32 LE), then the payload:
zstd-compressed lines, one record per line, its fields (records.Row order) separated by tabs,
an `extra` of None as an empty field (a JSON object's text is never empty). `data` and `extra`
are compact JSON, which never holds a raw tab or newline, and ids cannot, so nothing needs
escaping: logging costs a join, not a JSON encoding of text that already is JSON.

The log is split into numbered segments; a segment is deleted once every record in it is in a
Parquet file. Recovery reads frames until the first bad or truncated one, logs a warning for it,
and keeps everything before.
"""

from __future__ import annotations

import logging
import os
import struct
import zlib
from pathlib import Path

import zstandard

from streamdom.records import Row

log = logging.getLogger(__name__)

MAGIC = b"SDW2"
HEADER = struct.Struct("<4sII")


class WriteAheadLog:
    """Appends and fsyncs frames; used from the storage's single I/O thread only."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self._cctx = zstandard.ZstdCompressor(level=1)
        self._number = max((_seg_number(p) for p in self.segments()), default=0) + 1
        self._file = open(self._path(self._number), "ab")  # noqa: SIM115 - lives as long as the log

    def _path(self, n: int) -> Path:
        return self.dir / f"{n:012d}.wal"

    def segments(self) -> list[Path]:
        """Every segment file, oldest first."""
        return sorted(self.dir.glob("*.wal"), key=_seg_number)

    def append(self, rows: list[Row]) -> None:
        """Write one frame holding `rows` and fsync it: after this they survive a crash."""
        text = "\n".join(f"{sid}\t{stream}\t{seq}\t{typ}\t{ts}\t{st}\t{data}\t{extra or ''}"
                         for sid, stream, seq, typ, ts, st, data, extra in rows)
        payload = self._cctx.compress(text.encode())
        self._file.write(HEADER.pack(MAGIC, len(payload), zlib.crc32(payload)) + payload)
        self._file.flush()
        os.fsync(self._file.fileno())

    def rotate(self) -> list[Path]:
        """Start a new segment; return the finished ones (all segments before the new one)."""
        self._file.close()
        done = self.segments()
        self._number += 1
        self._file = open(self._path(self._number), "ab")  # noqa: SIM115
        return done

    def close(self) -> None:
        """Close the current segment."""
        self._file.close()


def read_segments(paths: list[Path]) -> list[Row]:
    """Every record (as a Row; an empty `extra` field is None) in the given segments, in order."""
    dctx = zstandard.ZstdDecompressor()
    out: list[Row] = []
    for path in paths:
        data = path.read_bytes()
        pos = 0
        while pos < len(data):
            if len(data) - pos < HEADER.size:
                log.warning("WAL %s: truncated frame header at byte %d; skipping the tail", path, pos)
                break
            magic, length, crc = HEADER.unpack_from(data, pos)
            body = data[pos + HEADER.size: pos + HEADER.size + length]
            if magic != MAGIC or len(body) != length or zlib.crc32(body) != crc:
                log.warning("WAL %s: corrupt or truncated frame at byte %d; skipping the tail", path, pos)
                break
            try:
                text = dctx.decompress(body).decode()
                out.extend(_row(line) for line in text.split("\n") if line)
            except (zstandard.ZstdError, ValueError) as exc:
                log.warning("WAL %s: undecodable frame at byte %d (%s); skipping the tail", path, pos, exc)
                break
            pos += HEADER.size + length
    return out


def _row(line: str) -> Row:
    sid, stream, seq, typ, ts, st, data, extra = line.split("\t")
    return sid, stream, int(seq), int(typ), int(ts), int(st), data, extra or None


def _seg_number(p: Path) -> int:
    try:
        return int(p.stem)
    except ValueError:
        return 0
