"""Write-ahead log: zstd-compressed, checksummed frames of event records, fsynced before acks.

`GroupCommit` is the log as the IOLoop uses it (rows queued, written and fsynced together,
durable seqs reported); `WriteAheadLog` is the file format, used from its I/O thread.

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

import asyncio
import logging
import os
import shutil
import struct
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pyarrow as pa
import zstandard

from streamdom.archive.layout import ROWS_SCHEMA, rows_table
from streamdom.records import ROW_SEQ, ROW_SESSION, ROW_STREAM, Row, StreamKey

log = logging.getLogger(__name__)

MAGIC = b"SDW2"
HEADER = struct.Struct("<4sII")


class GroupCommit:
    """The log as the IOLoop uses it: rows submitted meanwhile are written and fsynced together.

    One fsync every `interval` covers everything submitted since the last one (group commit),
    which bounds both the fsync rate and how long a recorder keeps an event before it may drop
    it. The IOLoop makes each group's lines; compressing, writing and fsyncing run in order in
    one I/O thread. After each fsync, `on_durable` gets the highest
    seq made durable per stream. A failed write keeps its rows, sets `failure` (the bus refuses
    events meanwhile) and is retried after a second; a disk with less than `min_free_bytes` free
    sets `failure` too, until space comes back.
    """

    def __init__(self, directory: Path, interval: float, min_free_bytes: int,
                 on_durable: Callable[[dict[StreamKey, int]], None]) -> None:
        self.dir = directory
        self.interval = interval
        self.min_free_bytes = min_free_bytes
        self.on_durable = on_durable
        self.failure: str | None = None
        self._io = ThreadPoolExecutor(1, thread_name_prefix="streamdom-io")  # serial: log order
        self._wal: WriteAheadLog | None = None
        self._pending: list[Row] = []
        self._highs: dict[StreamKey, int] = {}  # per stream, the highest seq in _pending
        self._task: asyncio.Future[None] | None = None

    async def open(self) -> None:
        """Open a new segment after the existing ones (recovery has archived and removed them)."""
        self._wal = await asyncio.get_running_loop().run_in_executor(self._io, WriteAheadLog, self.dir)
        self.check_disk()

    def submit(self, rows: list[Row]) -> None:
        """Queue one stream's next rows (a Batch's: consecutive seqs) for the next grouped fsync."""
        self._pending += rows
        # The stream's durable mark after that fsync: its last row's seq (a stream's batches
        # come in seq order), kept per batch here rather than found again row by row.
        self._highs[(rows[0][ROW_SESSION], rows[0][ROW_STREAM])] = rows[-1][ROW_SEQ]
        if self._task is None:
            self._task = asyncio.ensure_future(self._sync_soon())

    async def _sync_soon(self) -> None:
        try:
            await asyncio.sleep(self.interval)
            await self.sync()
        finally:
            self._task = None
            if self._pending and self.failure is None:
                self._task = asyncio.ensure_future(self._sync_soon())

    async def sync(self, rotate: bool = False) -> list[Path] | None:
        """Write and fsync what is queued (with `rotate`, then close the segment).

        Returns the closed segments (with `rotate`; else []), or None if the write failed.
        The I/O thread is serial, so closed segments hold exactly every row submitted before
        this call: those taken by earlier calls and those taken here.
        """
        batch, self._pending = self._pending, []
        highs, self._highs = self._highs, {}
        if not batch and not rotate:
            return []
        assert self._wal is not None
        # The lines are made here, on the IOLoop, in one pass: in the I/O thread the same
        # Python work ran beside the IOLoop's, each taking the GIL from the other, and cost
        # twice to three times as much CPU. The I/O thread now only compresses, writes and
        # fsyncs, with the GIL released.
        text = lines(batch).encode() if batch else b""
        try:
            segments = await asyncio.get_running_loop().run_in_executor(
                self._io, self._write, self._wal, text, rotate)
        except OSError as exc:
            self._pending = batch + self._pending
            for key, seq in highs.items():
                self._highs[key] = max(seq, self._highs.get(key, 0))
            self.failure = f"write-ahead log failed: {exc}"
            log.error("WAL write failed, refusing events until it works again: %s", exc)
            asyncio.get_running_loop().call_later(1.0, self._retry)
            return None
        if highs:
            self.on_durable(highs)
        return segments

    @staticmethod
    def _write(wal: WriteAheadLog, text: bytes, rotate: bool) -> list[Path]:
        if text:
            wal.write_lines_and_sync(text)
        return wal.rotate() if rotate else []

    def _retry(self) -> None:
        if self.failure and self.failure.startswith("write-ahead log"):
            self.failure = None
        if self._pending:
            asyncio.ensure_future(self.sync())

    def check_disk(self) -> None:
        """Refuse events while the log's disk is (nearly) full; accept them again after."""
        try:
            free = shutil.disk_usage(self.dir).free
        except OSError as exc:
            self.failure = f"data dir unusable: {exc}"
            return
        if free < self.min_free_bytes:
            if self.failure is None:
                log.error("disk nearly full (%d bytes free): refusing new events", free)
            self.failure = f"disk full ({free} bytes free)"
        elif self.failure and self.failure.startswith(("disk full", "data dir unusable")):
            log.warning("disk space back (%d bytes free): accepting events again", free)
            self.failure = None

    async def delete(self, segments: list[Path]) -> None:
        """Delete closed segments (everything in them is archived)."""
        await asyncio.get_running_loop().run_in_executor(self._io, _unlink_all, segments)

    async def close(self, drop_segments: bool) -> None:
        """Close the log; with `drop_segments` (everything is archived) delete every segment."""
        if self._wal is not None:
            await asyncio.get_running_loop().run_in_executor(self._io, _close, self._wal,
                                                             drop_segments)
        self._io.shutdown(wait=True)


def _close(wal: WriteAheadLog, drop_segments: bool) -> None:
    if drop_segments:
        _unlink_all(wal.rotate())
    wal.close()


def _unlink_all(paths: list[Path]) -> None:
    for p in paths:
        p.unlink(missing_ok=True)


class WriteAheadLog:
    """Appends and fsyncs frames; used from the log's single I/O thread only."""

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

    def write_and_sync(self, rows: list[Row]) -> None:
        """Write one frame holding `rows` and fsync it: after this they survive a crash."""
        self.write_lines_and_sync(lines(rows).encode())

    def write_lines_and_sync(self, text: bytes) -> None:
        """Write one frame holding rows made into `lines` (UTF-8) and fsync it."""
        payload = self._cctx.compress(text)
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
        for pos, body, damage in _frames(path.read_bytes()):
            if body is None:
                log.warning("WAL %s: %s at byte %d; skipping the tail", path, damage, pos)
                break
            try:
                text = dctx.decompress(body).decode()
                out.extend(_row(line) for line in text.split("\n") if line)
            except (zstandard.ZstdError, ValueError) as exc:
                log.warning("WAL %s: undecodable frame at byte %d (%s); skipping the tail", path, pos, exc)
                break
    return out


def read_segments_table(paths: list[Path]) -> pa.Table:
    """What read_segments returns, as one Arrow table (layout.ROWS_SCHEMA: records.Row's fields).

    The flusher's way: the frames' lines are parsed by Arrow's CSV reader (tab-separated, no
    quoting), in C, instead of a tuple and four ints per event in Python. Segments that reader
    does not take exactly as read_segments would (a damaged frame, a line it would refuse) are
    read by read_segments instead, which also logs what it skips.
    """
    import pyarrow.csv as pcsv  # only the flusher process reads segments

    dctx = zstandard.ZstdDecompressor()
    texts: list[bytes] = []
    lines = 0
    try:
        for path in paths:
            for _, body, _ in _frames(path.read_bytes()):
                if body is None:
                    return rows_table(read_segments(paths))
                texts.append(dctx.decompress(body))
                lines += texts[-1].count(b"\n") + 1
        if not texts:
            return ROWS_SCHEMA.empty_table()
        table = pcsv.read_csv(
            pa.py_buffer(b"\n".join(texts)),
            read_options=pcsv.ReadOptions(column_names=ROWS_SCHEMA.names, use_threads=False),
            parse_options=pcsv.ParseOptions(delimiter="\t", quote_char=False, escape_char=False,
                                            newlines_in_values=False, ignore_empty_lines=False),
            convert_options=pcsv.ConvertOptions(column_types=ROWS_SCHEMA, null_values=[""],
                                                strings_can_be_null=True))
    except (zstandard.ZstdError, pa.ArrowInvalid):
        return rows_table(read_segments(paths))
    if table.num_rows != lines:  # (a CR alone ends a line for Arrow, not for read_segments)
        return rows_table(read_segments(paths))
    return table.cast(ROWS_SCHEMA)


def lines(rows: list[Row]) -> str:
    """Rows as a frame's text: one line per row, its fields separated by tabs (see above)."""
    return "\n".join(f"{sid}\t{stream}\t{seq}\t{typ}\t{ts}\t{st}\t{data}\t{extra or ''}"
                     for sid, stream, seq, typ, ts, st, data, extra in rows)


def _frames(data: bytes) -> Iterator[tuple[int, bytes | None, str]]:
    """(offset, compressed payload, "") of each frame of a segment's bytes, in order; the first
    frame that is not whole and intact comes as (offset, None, what is wrong) and ends them."""
    pos = 0
    while pos < len(data):
        if len(data) - pos < HEADER.size:
            yield pos, None, "truncated frame header"
            return
        magic, length, crc = HEADER.unpack_from(data, pos)
        body = data[pos + HEADER.size: pos + HEADER.size + length]
        if magic != MAGIC or len(body) != length or zlib.crc32(body) != crc:
            yield pos, None, "corrupt or truncated frame"
            return
        yield pos, body, ""
        pos += HEADER.size + length


def _row(line: str) -> Row:
    sid, stream, seq, typ, ts, st, data, extra = line.split("\t")
    return sid, stream, int(seq), int(typ), int(ts), int(st), data, extra or None


def _seg_number(p: Path) -> int:
    try:
        return int(p.stem)
    except ValueError:
        return 0
