"""The write-ahead log on real files: replay, overwrites, segments, torn tails, corruption,
and a real ``kill -9`` of a writing process."""

from __future__ import annotations

import logging
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kine_py.raft.types import ConfState, Entry, HardState, SnapshotMetadata
from kine_py.replication.wal import WAL, WalCorruptError, WalError, WalState

SMALL = 4096


def ents(term: int, lo: int, hi: int, size: int = 40) -> list[Entry]:
    """Entries lo..hi inclusive, with data naming term and index."""
    return [Entry(term, i, data=f"{term}:{i}:".encode().ljust(size, b".")) for i in range(lo, hi + 1)]


def save_in_batches(wal: WAL, entries: list[Entry], hard_state: HardState, batch: int = 5) -> None:
    for i in range(0, len(entries), batch):
        wal.save(hard_state, entries[i : i + batch], sync=True)


def reopen(directory: Path, segment_size: int = SMALL) -> WalState:
    wal, state = WAL.open(directory, segment_size=segment_size)
    wal.close()
    return state


def last_segment(directory: Path) -> Path:
    return sorted(directory.glob("*.wal"))[-1]


def test_a_new_directory_gets_one_empty_segment(tmp_path: Path) -> None:
    directory = tmp_path / "a" / "wal"
    wal, state = WAL.open(directory)
    wal.close()
    assert state == WalState(HardState(), None, [], None)
    assert [p.name for p in directory.iterdir()] == ["0000000000000000-0000000000000001.wal"]
    assert reopen(directory) == state


def test_round_trip_across_reopen(tmp_path: Path) -> None:
    wal, _ = WAL.open(tmp_path)
    wal.save(HardState(1, 1, 0), ents(1, 1, 5), sync=True)
    wal.save(HardState(1, 1, 3), [], sync=False)
    wal.save(None, ents(1, 6, 9), sync=True)
    wal.save(HardState(2, 3, 9), [], sync=True)
    wal.close()
    state = reopen(tmp_path)
    assert state.hard_state == HardState(2, 3, 9)
    assert state.entries == ents(1, 1, 9)
    assert state.snapshot is None
    assert state.torn_tail is None


def test_a_later_write_of_an_index_replaces_it_and_everything_after(tmp_path: Path) -> None:
    wal, _ = WAL.open(tmp_path, segment_size=SMALL)
    wal.save(HardState(1, 1, 2), ents(1, 1, 10), sync=True)
    wal.save(HardState(2, 2, 2), ents(2, 6, 7), sync=True)  # conflict at 6: 8..10 are gone
    wal.save(None, ents(2, 8, 8), sync=True)
    wal.save(HardState(3, 3, 2), ents(3, 3, 3), sync=True)  # conflict at 3
    wal.close()
    assert reopen(tmp_path).entries == ents(1, 1, 2) + ents(3, 3, 3)


def test_overwrites_across_segments(tmp_path: Path) -> None:
    wal, _ = WAL.open(tmp_path, segment_size=1024)
    save_in_batches(wal, ents(1, 1, 60), HardState(1, 1, 0))
    wal.save(HardState(2, 2, 0), ents(2, 10, 20), sync=True)
    save_in_batches(wal, ents(2, 21, 70), HardState(2, 2, 0))
    assert len(wal.segments) > 3
    wal.close()
    state = reopen(tmp_path, 1024)
    assert state.entries == ents(1, 1, 9) + ents(2, 10, 70)
    assert state.hard_state == HardState(2, 2, 0)


def test_a_compaction_marker_keeps_later_entries_and_a_received_snapshot_drops_them(tmp_path: Path) -> None:
    wal, _ = WAL.open(tmp_path)
    wal.save(HardState(1, 1, 8), ents(1, 1, 10), sync=True)
    wal.save_snapshot(SnapshotMetadata(ConfState((1, 2)), 6, 1))
    wal.close()
    state = reopen(tmp_path)
    assert state.snapshot == SnapshotMetadata(ConfState((1, 2)), 6, 1)
    assert state.entries == ents(1, 7, 10)

    wal, _ = WAL.open(tmp_path)
    wal.save_snapshot(SnapshotMetadata(ConfState((1, 2, 3)), 50, 4), replaces_log=True)
    wal.save(HardState(4, 0, 50), [], sync=True)
    wal.close()
    state = reopen(tmp_path)
    assert state.snapshot == SnapshotMetadata(ConfState((1, 2, 3)), 50, 4)
    assert state.entries == []
    assert state.hard_state == HardState(4, 0, 50)

    wal, _ = WAL.open(tmp_path)
    wal.save(None, ents(4, 51, 52), sync=True)
    wal.close()
    assert reopen(tmp_path).entries == ents(4, 51, 52)


def test_segments_roll_over_with_ordered_names(tmp_path: Path) -> None:
    wal, _ = WAL.open(tmp_path, segment_size=SMALL)
    for i in range(1, 201, 10):
        wal.save(HardState(1, 1, i), ents(1, i, i + 9), sync=False)
    wal.close()
    names = sorted(p.name for p in tmp_path.glob("*.wal"))
    assert len(names) > 3
    seqs = [int(n[:16], 16) for n in names]
    firsts = [int(n[17:33], 16) for n in names]
    assert seqs == list(range(len(names)))
    assert firsts[0] == 1
    assert firsts == sorted(firsts)
    assert all(os.path.getsize(tmp_path / n) < SMALL + 1024 for n in names)
    state = reopen(tmp_path)
    assert state.entries == ents(1, 1, 200)
    assert state.hard_state == HardState(1, 1, 191)


def test_release_deletes_whole_segments_below_the_snapshot_and_disk_use_stays_bounded(
    tmp_path: Path,
) -> None:
    wal, _ = WAL.open(tmp_path, segment_size=SMALL)
    index = 0
    for _ in range(30):
        wal.save(HardState(1, 1, index + 50), ents(1, index + 1, index + 50), sync=False)
        index += 50
        wal.save_snapshot(SnapshotMetadata(ConfState((1,)), index - 20, 1))
        wal.release_to(index - 20)
        size = sum(p.stat().st_size for p in tmp_path.glob("*.wal"))
        assert size < 4 * SMALL
    kept = wal.segments
    wal.close()
    assert kept[0].name != "0000000000000000-0000000000000001.wal"
    state = reopen(tmp_path)
    assert state.snapshot == SnapshotMetadata(ConfState((1,)), index - 20, 1)
    assert state.entries == ents(1, index - 19, index)
    assert state.hard_state == HardState(1, 1, index)


def test_release_keeps_entries_above_the_latest_snapshot(tmp_path: Path) -> None:
    wal, _ = WAL.open(tmp_path, segment_size=1024)
    wal.release_to(10**6)  # no snapshot marker yet: nothing may go
    save_in_batches(wal, ents(1, 1, 100), HardState(1, 1, 100))
    wal.release_to(10**6)
    before = len(wal.segments)
    assert before > 5
    wal.save_snapshot(SnapshotMetadata(ConfState((1,)), 40, 1))
    wal.release_to(10**6)  # clamped to the snapshot: entries 41.. stay
    assert 1 < len(wal.segments) < before
    wal.close()
    state = reopen(tmp_path, 1024)
    assert state.entries == ents(1, 41, 100)


def test_save_without_anything_is_harmless(tmp_path: Path) -> None:
    wal, _ = WAL.open(tmp_path)
    wal.save(None, [], sync=True)
    wal.close()
    assert reopen(tmp_path) == WalState(HardState(), None, [], None)


# -- torn tails --------------------------------------------------------------------------------


def _base_then_last_record(tmp_path: Path) -> tuple[Path, int, int]:
    """A WAL with 20 entries, then one more entry (100 B) as the last record. Returns the
    template directory and the last segment's size before and after that record."""
    template = tmp_path / "template"
    wal, _ = WAL.open(template, segment_size=1 << 20)
    wal.save(HardState(1, 1, 20), ents(1, 1, 20), sync=True)
    before = last_segment(template).stat().st_size
    wal.save(None, ents(1, 21, 21, size=100), sync=True)
    after = last_segment(template).stat().st_size
    wal.close()
    return template, before, after


def test_a_torn_last_record_is_truncated_at_every_byte_offset(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    template, before, after = _base_then_last_record(tmp_path)
    assert after - before == 8 + 128  # frame header + payload (1 + 2 + 21 + 100) + padding
    for cut in range(before, after + 1):
        directory = tmp_path / f"cut{cut}"
        shutil.copytree(template, directory)
        os.truncate(last_segment(directory), cut)
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="kine_py.replication.wal"):
            wal, state = WAL.open(directory)
        if cut in (before, after):
            assert state.torn_tail is None
            assert caplog.records == []
        else:
            assert state.torn_tail is not None
            assert (state.torn_tail.segment, state.torn_tail.offset) == (last_segment(directory), before)
            assert state.torn_tail.dropped == cut - before
            assert "torn tail" in caplog.text
            assert last_segment(directory).stat().st_size == before
        expected = ents(1, 1, 20) + (ents(1, 21, 21, size=100) if cut == after else [])
        assert state.entries == expected
        # Still appendable, and the appended entry survives a reopen.
        wal.save(HardState(2, 1, 20), ents(2, 21, 21), sync=True)
        wal.close()
        again = reopen(directory)
        assert again.torn_tail is None
        assert again.entries == ents(1, 1, 20) + ents(2, 21, 21)
        shutil.rmtree(directory)


@pytest.mark.parametrize("where", ["length", "crc", "payload", "padding"])
def test_a_damaged_final_record_with_nothing_after_it_is_a_torn_tail(tmp_path: Path, where: str) -> None:
    template, before, after = _base_then_last_record(tmp_path)
    offset = {"length": before, "crc": before + 5, "payload": before + 40, "padding": after - 1}[where]
    segment = last_segment(template)
    data = bytearray(segment.read_bytes())
    data[offset] ^= 0x10
    segment.write_bytes(bytes(data))
    wal, state = WAL.open(template)
    wal.close()
    assert state.torn_tail is not None
    assert state.torn_tail.offset == before
    assert state.entries == ents(1, 1, 20)


def test_a_zero_filled_tail_is_a_torn_tail(tmp_path: Path) -> None:
    """A crash may leave the file longer than the data, the rest reading as zeros."""
    template, _, after = _base_then_last_record(tmp_path)
    with last_segment(template).open("ab") as f:
        f.write(bytes(3000))
    wal, state = WAL.open(template)
    wal.close()
    assert state.torn_tail is not None
    assert (state.torn_tail.offset, state.torn_tail.dropped) == (after, 3000)
    assert state.entries == ents(1, 1, 20) + ents(1, 21, 21, size=100)


# -- corruption --------------------------------------------------------------------------------


def test_a_flipped_bit_in_a_middle_record_is_corruption(tmp_path: Path) -> None:
    wal, _ = WAL.open(tmp_path)
    wal.save(HardState(1, 1, 0), ents(1, 1, 10), sync=True)
    wal.close()
    segment = last_segment(tmp_path)
    data = bytearray(segment.read_bytes())
    target = data.index(b"1:5:")  # inside the 5th entry's payload
    data[target] ^= 0x01
    segment.write_bytes(bytes(data))
    with pytest.raises(WalCorruptError) as info:
        WAL.open(tmp_path)
    message = str(info.value)
    assert str(segment) in message
    offset = int(message.split("invalid record at offset ")[1].split()[0])
    assert offset <= target < offset + 8 + 64
    assert offset % 8 == 0
    assert "followed by a valid record" in message


def test_a_damaged_tail_of_a_closed_segment_is_corruption(tmp_path: Path) -> None:
    wal, _ = WAL.open(tmp_path, segment_size=1024)
    save_in_batches(wal, ents(1, 1, 40), HardState(1, 1, 0))
    segments = wal.segments
    wal.close()
    assert len(segments) > 2
    os.truncate(segments[0], segments[0].stat().st_size - 3)
    with pytest.raises(WalCorruptError, match=f"{segments[0].name}: invalid record at offset"):
        WAL.open(tmp_path)


def test_a_missing_middle_segment_is_corruption(tmp_path: Path) -> None:
    wal, _ = WAL.open(tmp_path, segment_size=1024)
    save_in_batches(wal, ents(1, 1, 40), HardState(1, 1, 0))
    segments = wal.segments
    wal.close()
    segments[1].unlink()
    with pytest.raises(WalCorruptError, match="missing between"):
        WAL.open(tmp_path)


def test_a_missing_first_segment_is_corruption_without_a_snapshot(tmp_path: Path) -> None:
    wal, _ = WAL.open(tmp_path, segment_size=1024)
    save_in_batches(wal, ents(1, 1, 40), HardState(1, 1, 0))
    segments = wal.segments
    wal.close()
    segments[0].unlink()
    with pytest.raises(WalCorruptError, match="a segment is missing"):
        WAL.open(tmp_path)


def test_a_renamed_segment_is_corruption(tmp_path: Path) -> None:
    wal, _ = WAL.open(tmp_path, segment_size=1024)
    save_in_batches(wal, ents(1, 1, 40), HardState(1, 1, 0))
    last = wal.segments[-1]
    wal.close()
    last.rename(last.with_name(last.name[:17] + "00000000000000ff.wal"))
    with pytest.raises(WalCorruptError, match="header says"):
        WAL.open(tmp_path)


def test_a_valid_frame_with_an_undecodable_record_is_corruption(tmp_path: Path) -> None:
    """A CRC-valid record that does not decode is never a torn write, even at the end."""
    import zlib

    wal, _ = WAL.open(tmp_path)
    wal.save(HardState(1, 1, 0), ents(1, 1, 3), sync=True)
    wal.close()
    payload = bytes([9]) + b"junk!!!"
    length = len(payload).to_bytes(4, "little")
    crc = zlib.crc32(payload, zlib.crc32(length)).to_bytes(4, "little")
    with last_segment(tmp_path).open("ab") as f:
        f.write(length + crc + payload)
    with pytest.raises(WalCorruptError, match="undecodable record at offset"):
        WAL.open(tmp_path)


# -- use -------------------------------------------------------------------------------------------


def test_the_directory_is_locked_while_open(tmp_path: Path) -> None:
    wal, _ = WAL.open(tmp_path)
    with pytest.raises(WalError, match="already open"):
        WAL.open(tmp_path)
    wal.close()
    wal, _ = WAL.open(tmp_path)
    wal.close()


def test_a_closed_wal_refuses_writes(tmp_path: Path) -> None:
    wal, _ = WAL.open(tmp_path)
    wal.close()
    wal.close()
    with pytest.raises(WalError, match="unusable"):
        wal.save(None, ents(1, 1, 1), sync=True)


def test_a_leftover_temporary_segment_is_removed(tmp_path: Path) -> None:
    wal, _ = WAL.open(tmp_path)
    wal.save(HardState(1, 1, 0), ents(1, 1, 3), sync=True)
    wal.close()
    (tmp_path / "0000000000000001-0000000000000004.wal.tmp").write_bytes(b"half a preamble")
    state = reopen(tmp_path)
    assert state.entries == ents(1, 1, 3)
    assert not list(tmp_path.glob("*.tmp"))


WRITER = """
import sys
from pathlib import Path
from kine_py.raft.types import Entry, HardState
from kine_py.replication.wal import WAL

wal, state = WAL.open(Path(sys.argv[1]), segment_size=16384)
index = state.entries[-1].index if state.entries else 0
term = int(sys.argv[2])
print("ready", index, flush=True)
while True:
    batch = [Entry(term, index + k, data=b"%d" % (index + k) * 20) for k in range(1, 9)]
    wal.save(HardState(term, 1, index), batch, sync=True)
    index += 8
    print(index, flush=True)
"""


def test_kill_9_keeps_every_synced_entry(tmp_path: Path) -> None:
    rng = random.Random(6)
    synced = 0
    for cycle in range(1, 5):
        with subprocess.Popen(
            [sys.executable, "-c", WRITER, str(tmp_path), str(cycle)],
            stdout=subprocess.PIPE,
            text=True,
        ) as proc:
            assert proc.stdout is not None
            ready = proc.stdout.readline().split()
            assert ready == ["ready", str(synced)]
            for _ in range(rng.randrange(20, 120)):
                synced = int(proc.stdout.readline())
            time.sleep(rng.random() / 100)
            os.kill(proc.pid, signal.SIGKILL)
            assert proc.wait() == -signal.SIGKILL
            for line in proc.stdout:  # printed after its fsync, before the kill
                synced = int(line)
        state = reopen(tmp_path, 16384)
        assert len(state.entries) >= synced
        assert [e.index for e in state.entries] == list(range(1, len(state.entries) + 1))
        assert all(e.data == b"%d" % e.index * 20 for e in state.entries)
        synced = len(state.entries)
    assert len(list(tmp_path.glob("*.wal"))) > 1


def test_group_commit_benchmark(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Printed, not asserted: save() of 64 entries x 300 B with one fdatasync per call."""
    wal, _ = WAL.open(tmp_path)
    calls, per_call = 100, 64
    start = time.perf_counter()
    for c in range(calls):
        base = c * per_call
        batch = [Entry(1, base + k, data=bytes(300)) for k in range(1, per_call + 1)]
        wal.save(HardState(1, 1, base), batch, sync=True)
    elapsed = time.perf_counter() - start
    wal.close()
    assert len(reopen(tmp_path, 64 << 20).entries) == calls * per_call
    with capsys.disabled():
        print(
            f"\nWAL save 64 x 300 B + fdatasync: {calls * per_call / elapsed:,.0f} entries/s, "
            f"{calls / elapsed:,.0f} fsyncs/s"
        )
