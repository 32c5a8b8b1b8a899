"""The write-ahead log: Raft entries, hard state and snapshot markers in segment files.

The durable copy of a node's Raft log, in etcd's WAL style (``server/storage/wal``). The
driver owns one ``WAL`` and calls it from one thread at a time (it is not thread-safe):
``WAL.open`` replays what is on disk, ``save`` appends each Ready's entries and hard state,
``save_snapshot`` appends a snapshot marker, ``release_to`` deletes old segments.

Files. A directory holds segments ``{seq:016x}-{index:016x}.wal``: ``seq`` counts up from 0
without gaps, ``index`` is the Raft index the segment was expected to start at (last index
written + 1 when it was cut; overwrites may later append lower indexes to it). Only the last
segment is ever written. A new segment is cut when the current one reaches ``segment_size``
after a ``save``: the old one is fsynced, the new one is written as ``*.tmp``, fsynced,
renamed, and the directory fsynced, so a segment file always starts with a complete
preamble. The preamble is a header record (magic, seq, index), the current hard state and
the latest snapshot marker, so that every segment is self-contained and older segments can be
deleted without losing state. The directory is locked (``flock``) while a ``WAL`` is open.

Records. Each record is framed as ``length:u32 crc:u32 payload padding``: the payload is a
type byte followed by a ``kine_py.raft.codec`` encoding, and zero padding makes every frame
a multiple of 8 bytes long (so frames start at 8-byte aligned offsets, like etcd's). The CRC
is CRC-32 (zlib) of the length field and the payload. It is per record, not chained as in
etcd: a record can be checked on its own, which makes the torn-tail rule below local and
lets whole segments be deleted without re-seeding a chain; what a chain would add (detecting
a lost segment) comes from the gap-free ``seq`` numbers, the header record naming its own
seq, and the rule that the surviving entries must continue the latest snapshot without gaps.

Replay. Records are read in order over all segments. The latest hard state and the latest
snapshot marker win. An entry with index ``i`` replaces any entry ``>= i`` seen before it
(Raft's conflict rule); a marker flagged ``replaces_log`` (a snapshot received from the
leader) discards every entry before it. The result is the entries above the latest marker's
index, which must start right after it (or at 1 without a marker).

Torn tail. Let ``off`` be the first offset in the LAST segment where no valid frame starts
(fewer than 8 header bytes left, a zero length, a frame running past the end of the file,
a CRC mismatch or non-zero padding). If no valid frame starts at any 8-byte aligned offset
after ``off``, the bytes from ``off`` to the end are a torn tail: an append that did not
finish before a crash. They are truncated away on open, logged at WARNING and reported in
``WalState.torn_tail``. Anything else is ``WalCorruptError`` and the node must not start: an
invalid frame in any other segment, an invalid frame followed by a valid one, a CRC-valid
record that does not decode, a bad or missing header, a gap in the segment numbers or in
the entries. (Limitation: a power loss that persisted pages of the last, unsynced append out
of order, leaving a hole followed by valid frames, is reported as corruption, not torn.)

Failure. An ``OSError`` from writing or syncing is raised to the caller and leaves the WAL
unusable (``WalError`` on every later call): after a failed fsync the page cache cannot be
trusted, and the only safe recovery is to stop and replay from disk.
"""

from __future__ import annotations

import contextlib
import enum
import fcntl
import itertools
import logging
import os
import re
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from kine_py.raft import codec
from kine_py.raft.types import Entry, HardState, SnapshotMetadata

__all__ = ["DEFAULT_SEGMENT_SIZE", "WAL", "TornTail", "WalCorruptError", "WalError", "WalState"]

log = logging.getLogger(__name__)

DEFAULT_SEGMENT_SIZE: Final = 64 << 20

_MAGIC: Final = b"kpywal\x00\x01"
_FRAME = struct.Struct("<II")
_HEADER_BODY = struct.Struct("<8sQQ")
_U32 = struct.Struct("<I")
_SEGMENT_NAME = re.compile(r"^([0-9a-f]{16})-([0-9a-f]{16})\.wal$")
_PADDING = tuple(b"\x00" * n for n in range(8))
_FLAG_REPLACES_LOG: Final = 1


class RecordType(enum.IntEnum):
    HEADER = 1
    ENTRY = 2
    HARD_STATE = 3
    SNAPSHOT = 4


class WalError(Exception):
    """The WAL cannot be used: locked by another process, or failed earlier."""


class WalCorruptError(WalError):
    """The files on disk are damaged beyond a torn tail; the message names file and offset."""


@dataclass(frozen=True, slots=True)
class TornTail:
    """An incomplete append at the end of the last segment, truncated away on open."""

    segment: Path
    offset: int
    dropped: int
    """Number of bytes removed (from ``offset`` to the old end of the file)."""


@dataclass(frozen=True, slots=True)
class WalState:
    """What ``WAL.open`` found on disk."""

    hard_state: HardState
    snapshot: SnapshotMetadata | None
    """The latest snapshot marker, if any."""
    entries: list[Entry]
    """The entries above ``snapshot.index`` (or from 1), contiguous, after overwrites."""
    torn_tail: TornTail | None


@dataclass(slots=True)
class _Segment:
    seq: int
    index: int
    path: Path
    max_entry_index: int = 0
    """The highest entry index written to this segment (0: none)."""


def _segment_name(seq: int, index: int) -> str:
    return f"{seq:016x}-{index:016x}.wal"


# -- frames ----------------------------------------------------------------------------------


def _frame(rtype: RecordType, body: bytes) -> bytes:
    payload = bytes((rtype,)) + body
    length = _U32.pack(len(payload))
    crc = zlib.crc32(payload, zlib.crc32(length))
    return b"".join((length, _U32.pack(crc), payload, _PADDING[-(8 + len(payload)) % 8]))


def _frame_entries(entries: Sequence[Entry], out: list[bytes]) -> None:
    """``_frame(ENTRY, encode_entry(e))`` for each entry, with fewer copies (the hot path)."""
    prefix = bytes((RecordType.ENTRY,))
    for e in entries:
        payload = prefix + codec.encode_entry(e)
        length = _U32.pack(len(payload))
        out.append(length)
        out.append(_U32.pack(zlib.crc32(payload, zlib.crc32(length))))
        out.append(payload)
        out.append(_PADDING[-(8 + len(payload)) % 8])


def _frame_at(data: bytes, off: int) -> tuple[int, int] | None:
    """(payload end, frame end) of a valid frame starting at ``off``, else None."""
    if off + 8 > len(data):
        return None
    length, crc = _FRAME.unpack_from(data, off)
    end = off + 8 + length
    frame_end = end + (-(8 + length) % 8)
    if length == 0 or frame_end > len(data):
        return None
    if zlib.crc32(data[off + 8 : end], zlib.crc32(data[off : off + 4])) != crc:
        return None
    if data[end:frame_end].count(0) != frame_end - end:
        return None
    return end, frame_end


def _next_valid_frame(data: bytes, off: int) -> int | None:
    for candidate in range(off + 8, len(data) - 7, 8):
        if _frame_at(data, candidate) is not None:
            return candidate
    return None


# -- replay ----------------------------------------------------------------------------------


class _Replay:
    """Folds the records of all segments, in order, into a ``WalState``."""

    def __init__(self) -> None:
        self.hard_state = HardState()
        self.snapshot: SnapshotMetadata | None = None
        self.entries: list[Entry] = []
        self.torn_tail: TornTail | None = None

    def segment(self, seg: _Segment, *, last: bool) -> None:
        data = seg.path.read_bytes()
        off = 0
        while off < len(data):
            found = _frame_at(data, off)
            if found is None:
                self._invalid_frame(seg, data, off, last=last)
                return
            end, frame_end = found
            if off == 0 and data[8] != RecordType.HEADER:
                raise WalCorruptError(f"{seg.path}: the first record is not a header")
            self._record(seg, data[off + 8 : end], off)
            off = frame_end
        if off == 0:
            raise WalCorruptError(f"{seg.path}: empty segment (no header record)")

    def _invalid_frame(self, seg: _Segment, data: bytes, off: int, *, last: bool) -> None:
        if off == 0:
            raise WalCorruptError(f"{seg.path}: invalid header record at offset 0")
        if not last:
            raise WalCorruptError(f"{seg.path}: invalid record at offset {off} in a closed segment")
        later = _next_valid_frame(data, off)
        if later is not None:
            raise WalCorruptError(
                f"{seg.path}: invalid record at offset {off} followed by a valid record at offset {later}"
            )
        self.torn_tail = TornTail(seg.path, off, len(data) - off)

    def _record(self, seg: _Segment, payload: bytes, off: int) -> None:
        rtype, body = payload[0], payload[1:]
        try:
            if rtype == RecordType.ENTRY:
                self._entry(seg, codec.decode_entry(body), off)
            elif rtype == RecordType.HARD_STATE:
                self.hard_state = codec.decode_hard_state(body)
            elif rtype == RecordType.SNAPSHOT:
                self._snapshot(body)
            elif rtype == RecordType.HEADER:
                self._header(seg, body, off)
            else:
                raise codec.CodecError(f"unknown record type {rtype}")
        except codec.CodecError as exc:
            raise WalCorruptError(f"{seg.path}: undecodable record at offset {off}: {exc}") from None

    def _header(self, seg: _Segment, body: bytes, off: int) -> None:
        if off != 0 or len(body) != _HEADER_BODY.size:
            raise codec.CodecError("misplaced or malformed header record")
        magic, seq, index = _HEADER_BODY.unpack(body)
        if magic != _MAGIC or (seq, index) != (seg.seq, seg.index):
            raise codec.CodecError(
                f"header says magic {magic!r} seq {seq} index {index}, not the file name's"
            )

    def _snapshot(self, body: bytes) -> None:
        if not body:
            raise codec.CodecError("empty snapshot marker")
        meta = codec.decode_snapshot_metadata(body[1:])
        if body[0] & _FLAG_REPLACES_LOG:
            self.entries = []
        self.snapshot = meta

    def _entry(self, seg: _Segment, e: Entry, off: int) -> None:
        seg.max_entry_index = max(seg.max_entry_index, e.index)
        ents = self.entries
        if not ents:
            ents.append(e)
            return
        first = ents[0].index
        pos = e.index - first
        if pos == len(ents):
            ents.append(e)
        elif 0 <= pos < len(ents):
            del ents[pos:]
            ents.append(e)
        elif pos < 0:
            self.entries = [e]
        else:
            raise WalCorruptError(
                f"{seg.path}: entry {e.index} at offset {off} does not follow entry {ents[-1].index}"
            )

    def result(self, first_segment: _Segment) -> WalState:
        base = self.snapshot.index if self.snapshot is not None else 0
        entries = [e for e in self.entries if e.index > base]
        if entries and entries[0].index != base + 1:
            raise WalCorruptError(
                f"{first_segment.path.parent}: entries start at {entries[0].index}, "
                f"but the latest snapshot is at {base}: a segment is missing"
            )
        return WalState(self.hard_state, self.snapshot, entries, self.torn_tail)


def _list_segments(directory: Path) -> list[_Segment]:
    segments = []
    for path in directory.iterdir():
        m = _SEGMENT_NAME.match(path.name)
        if m is not None:
            segments.append(_Segment(int(m.group(1), 16), int(m.group(2), 16), path))
    segments.sort(key=lambda s: s.seq)
    for prev, cur in itertools.pairwise(segments):
        if cur.seq != prev.seq + 1:
            raise WalCorruptError(
                f"{directory}: segment(s) missing between {prev.path.name} and {cur.path.name}"
            )
    return segments


# -- the log ---------------------------------------------------------------------------------


class WAL:
    """An open write-ahead log; see the module docstring for the format and the rules."""

    def __init__(
        self, directory: Path, dir_fd: int, segments: list[_Segment], state: WalState, segment_size: int
    ) -> None:
        self._directory = directory
        self._dir_fd = dir_fd
        self._segments = segments
        self._segment_size = segment_size
        self._hard_state = state.hard_state
        self._snapshot = state.snapshot
        self._last_index = state.entries[-1].index if state.entries else self._base_index()
        self._fd = os.open(segments[-1].path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
        self._size = os.fstat(self._fd).st_size
        self._failed: str | None = None

    @classmethod
    def open(cls, directory: Path, *, segment_size: int = DEFAULT_SEGMENT_SIZE) -> tuple[WAL, WalState]:
        """Open (creating if absent) and replay the log in ``directory``.

        Raises ``WalCorruptError`` (damage other than a torn tail), ``WalError`` (locked by
        another ``WAL``, in this or another process) or ``OSError``.
        """
        if segment_size <= 0:
            raise ValueError(f"segment_size must be positive, not {segment_size}")
        if not directory.is_dir():
            directory.mkdir(parents=True)
            _fsync_dir(directory.parent)
        dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            _lock(directory, dir_fd)
            segments, state = _load(directory, dir_fd)
            return cls(directory, dir_fd, segments, state, segment_size), state
        except BaseException:
            os.close(dir_fd)
            raise

    @property
    def directory(self) -> Path:
        return self._directory

    @property
    def segments(self) -> list[Path]:
        """The segment files, oldest first."""
        return [s.path for s in self._segments]

    def save(self, hard_state: HardState | None, entries: Sequence[Entry], *, sync: bool) -> None:
        """Append ``entries`` then ``hard_state`` in one write; with ``sync``, one fdatasync.

        An entry whose index is at or below the last one written replaces it and everything
        after it (on replay). May cut a new segment afterwards. Raises ``OSError`` (and the
        WAL becomes unusable) or ``WalError``.
        """
        self._check_usable()
        out: list[bytes] = []
        _frame_entries(entries, out)
        if hard_state is not None:
            out.append(_frame(RecordType.HARD_STATE, codec.encode_hard_state(hard_state)))
        if out:
            self._write(b"".join(out))
        if entries:
            seg = self._segments[-1]
            seg.max_entry_index = max(seg.max_entry_index, max(e.index for e in entries))
            self._last_index = entries[-1].index
        if hard_state is not None:
            self._hard_state = hard_state
        if sync:
            self._sync()
        if self._size >= self._segment_size:
            self._cut()

    @property
    def near_cut(self) -> bool:
        """Whether a small write now could fill the segment (and so cut a new one, with fsyncs)."""
        return self._size + 4096 >= self._segment_size

    def save_snapshot(self, meta: SnapshotMetadata, *, replaces_log: bool = False) -> None:
        """Append a snapshot marker and fdatasync.

        ``replaces_log=False`` (a local compaction): entries above ``meta.index`` written
        before the marker stay. ``replaces_log=True`` (a snapshot received from the leader,
        which replaces the whole log): every entry written before the marker is dropped.
        """
        self._check_usable()
        flags = _FLAG_REPLACES_LOG if replaces_log else 0
        self._write(_frame(RecordType.SNAPSHOT, bytes((flags,)) + codec.encode_snapshot_metadata(meta)))
        self._sync()
        self._snapshot = meta
        if replaces_log or meta.index > self._last_index:
            self._last_index = meta.index

    def release_to(self, index: int) -> None:
        """Delete the oldest segments while every entry in them is below ``index`` and below
        the latest snapshot marker's index + 1. The last segment is never deleted."""
        self._check_usable()
        if self._snapshot is None:
            return
        bound = min(index, self._snapshot.index + 1)
        removed = 0
        while len(self._segments) > 1 and self._segments[0].max_entry_index < bound:
            self._segments.pop(0).path.unlink()
            removed += 1
        if removed:
            os.fsync(self._dir_fd)

    def close(self) -> None:
        """Close the files and release the directory lock. Unsynced appends are not synced."""
        if self._fd >= 0:
            os.close(self._fd)
            os.close(self._dir_fd)  # closing the descriptor releases the flock
            self._fd = -1
            self._failed = self._failed or "closed"

    # -- internals --

    def _base_index(self) -> int:
        return self._snapshot.index if self._snapshot is not None else 0

    def _check_usable(self) -> None:
        if self._failed is not None:
            raise WalError(f"{self._directory}: WAL is unusable ({self._failed})")

    def _write(self, data: bytes) -> None:
        before = self._size
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(self._fd, view) :]
        except OSError as exc:
            self._failed = f"write failed: {exc}"
            # Do not leave half a record in the middle of the log if more is ever appended.
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, before)
            raise
        self._size = before + len(data)

    def _sync(self) -> None:
        try:
            os.fdatasync(self._fd)
        except OSError as exc:
            self._failed = f"fdatasync failed: {exc}"
            raise

    def _cut(self) -> None:
        """Seal the current segment (fsync) and start the next one with a full preamble."""
        self._sync()
        seq = self._segments[-1].seq + 1
        seg = _Segment(seq, self._last_index + 1, self._directory / _segment_name(seq, self._last_index + 1))
        try:
            _create_segment(self._dir_fd, seg, self._hard_state, self._snapshot)
            fd = os.open(seg.path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
        except OSError as exc:
            self._failed = f"cutting a segment failed: {exc}"
            raise
        os.close(self._fd)
        self._fd = fd
        self._size = os.fstat(fd).st_size
        self._segments.append(seg)


def _preamble(seg: _Segment, hard_state: HardState, snapshot: SnapshotMetadata | None) -> bytes:
    parts = [
        _frame(RecordType.HEADER, _HEADER_BODY.pack(_MAGIC, seg.seq, seg.index)),
        _frame(RecordType.HARD_STATE, codec.encode_hard_state(hard_state)),
    ]
    if snapshot is not None:
        parts.append(_frame(RecordType.SNAPSHOT, b"\x00" + codec.encode_snapshot_metadata(snapshot)))
    return b"".join(parts)


def _create_segment(
    dir_fd: int, seg: _Segment, hard_state: HardState, snapshot: SnapshotMetadata | None
) -> None:
    """Write ``seg`` atomically: preamble into ``*.tmp``, fsync, rename, fsync the directory."""
    tmp = seg.path.with_name(seg.path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, _preamble(seg, hard_state, snapshot))
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(tmp, seg.path)
    os.fsync(dir_fd)


def _load(directory: Path, dir_fd: int) -> tuple[list[_Segment], WalState]:
    for leftover in directory.glob("*.wal.tmp"):
        leftover.unlink()
    segments = _list_segments(directory)
    if not segments:
        seg = _Segment(0, 1, directory / _segment_name(0, 1))
        _create_segment(dir_fd, seg, HardState(), None)
        return [seg], WalState(HardState(), None, [], None)
    replay = _Replay()
    for i, seg in enumerate(segments):
        replay.segment(seg, last=i == len(segments) - 1)
    state = replay.result(segments[0])
    if state.torn_tail is not None:
        _truncate(state.torn_tail)
    return segments, state


def _truncate(torn: TornTail) -> None:
    log.warning(
        "WAL: dropping a torn tail of %d bytes at offset %d of %s", torn.dropped, torn.offset, torn.segment
    )
    fd = os.open(torn.segment, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.ftruncate(fd, torn.offset)
        os.fsync(fd)
    finally:
        os.close(fd)


def _lock(directory: Path, dir_fd: int) -> None:
    try:
        fcntl.flock(dir_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise WalError(f"{directory}: the WAL is already open (locked)") from None


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
