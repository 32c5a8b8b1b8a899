"""DiskStorage on real files: what Raft reads after a reopen is what it read before."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from kine_py.raft import Config, RawNode, codec
from kine_py.raft.storage import MemoryStorage
from kine_py.raft.types import (
    ConfState,
    Entry,
    HardState,
    Ready,
    Snapshot,
    SnapshotMetadata,
    SnapshotOutOfDateError,
    StateType,
)
from kine_py.replication.raft_storage import DiskStorage
from kine_py.replication.wal import WalError

VOTERS = ConfState((1, 2, 3))


def ents(term: int, lo: int, hi: int) -> tuple[Entry, ...]:
    return tuple(Entry(term, i, data=b"%d/%d" % (term, i)) for i in range(lo, hi + 1))


def view(memory: MemoryStorage, *, from_index: int | None = None) -> dict[str, Any]:
    """Everything Raft can read from a storage (entries from ``from_index`` if given)."""
    first = memory.first_index() if from_index is None else from_index
    last = memory.last_index()
    return {
        "initial_state": memory.initial_state(),
        "snapshot": memory.snapshot().metadata,
        "last_index": last,
        "term_before_first": memory.term(first - 1),
        "entries": memory.entries(first, last + 1) if last >= first else [],
    }


def reopened(directory: Path, **kwargs: Any) -> DiskStorage:
    return DiskStorage.open(directory, initial=VOTERS, **kwargs)


def test_a_new_storage_starts_from_the_initial_configuration(tmp_path: Path) -> None:
    storage = DiskStorage.open(tmp_path / "wal", initial=VOTERS)
    assert storage.is_new
    assert storage.torn_tail is None
    assert storage.memory.initial_state() == (HardState(), VOTERS)
    assert (storage.memory.first_index(), storage.memory.last_index()) == (1, 0)
    storage.close()
    again = reopened(tmp_path / "wal")
    assert again.is_new  # nothing was ever saved: a crash before bootstrap is still "new"
    again.close()


def test_entries_and_hard_state_survive_a_reopen(tmp_path: Path) -> None:
    storage = reopened(tmp_path)
    storage.save(Ready(hard_state=HardState(1, 1, 0), entries=ents(1, 1, 3), must_sync=True))
    storage.save(Ready(hard_state=HardState(1, 1, 3), must_sync=False))
    storage.save(Ready(entries=ents(1, 4, 6), must_sync=True))
    assert not storage.is_new
    before = view(storage.memory)
    storage.close()
    after = reopened(tmp_path)
    assert not after.is_new
    assert view(after.memory) == before
    assert before["entries"] == list(ents(1, 1, 6))
    assert before["initial_state"] == (HardState(1, 1, 3), VOTERS)
    after.close()


def test_only_a_commit_index_update_is_a_quick_save(tmp_path: Path) -> None:
    """The node writes these on the event loop: no fsync, no segment cut."""
    storage = reopened(tmp_path, segment_size=8192)
    assert storage.quick_save(Ready(hard_state=HardState(1, 1, 3)))
    assert not storage.quick_save(Ready(entries=ents(1, 1, 1), must_sync=True))
    assert not storage.quick_save(Ready(hard_state=HardState(2, 1, 3), must_sync=True))  # a new term
    storage.save(Ready(entries=ents(1, 1, 1), must_sync=True))
    storage.save(Ready(entries=(Entry(1, 2, data=b"x" * 5000),), must_sync=True))  # near the end
    assert not storage.quick_save(Ready(hard_state=HardState(1, 1, 2)))
    storage.close()


def test_conflicting_entries_replace_the_tail_in_memory_and_on_disk(tmp_path: Path) -> None:
    storage = reopened(tmp_path)
    storage.save(Ready(hard_state=HardState(1, 1, 2), entries=ents(1, 1, 8), must_sync=True))
    storage.save(Ready(hard_state=HardState(2, 2, 2), entries=ents(2, 4, 5), must_sync=True))
    before = view(storage.memory)
    assert before["entries"] == list(ents(1, 1, 3) + ents(2, 4, 5))
    storage.close()
    after = reopened(tmp_path)
    assert view(after.memory) == before
    after.close()


def test_a_received_snapshot_replaces_the_log_across_a_reopen(tmp_path: Path) -> None:
    storage = reopened(tmp_path)
    storage.save(Ready(hard_state=HardState(1, 1, 2), entries=ents(1, 1, 10), must_sync=True))
    meta = SnapshotMetadata(ConfState((1, 2, 3, 4)), 7, 2)
    storage.save(Ready(hard_state=HardState(3, 0, 7), snapshot=Snapshot(meta, b"descriptor"), must_sync=True))
    assert storage.memory.snapshot() == Snapshot(meta, b"descriptor")
    assert (storage.memory.first_index(), storage.memory.last_index()) == (8, 7)
    before = view(storage.memory)
    storage.close()

    after = reopened(tmp_path)
    # The old entries 8..10 (of a diverging log) must not come back.
    assert view(after.memory) == before
    assert after.memory.snapshot() == Snapshot(meta)  # the data is the driver's to keep
    after.save(Ready(hard_state=HardState(3, 0, 9), entries=ents(3, 8, 9), must_sync=True))
    after.close()
    again = reopened(tmp_path)
    assert view(again.memory)["entries"] == list(ents(3, 8, 9))
    again.close()


def test_a_snapshot_and_entries_in_one_ready(tmp_path: Path) -> None:
    """The driver's bootstrap shape, plus entries after the snapshot in the same Ready."""
    storage = reopened(tmp_path)
    meta = SnapshotMetadata(VOTERS, 1, 1)
    storage.save(
        Ready(hard_state=HardState(1, 0, 1), snapshot=Snapshot(meta), entries=ents(1, 2, 4), must_sync=True)
    )
    before = view(storage.memory)
    assert before["entries"] == list(ents(1, 2, 4))
    storage.close()
    after = reopened(tmp_path)
    assert not after.is_new
    assert view(after.memory) == before
    after.close()


def test_compact_keeps_catch_up_entries_in_memory_and_survives_a_reopen(tmp_path: Path) -> None:
    storage = reopened(tmp_path)
    storage.save(Ready(hard_state=HardState(1, 1, 100), entries=ents(1, 1, 100), must_sync=True))
    snap = storage.compact(60, ConfState((1, 2)), b"db", keep=10)
    assert snap == Snapshot(SnapshotMetadata(ConfState((1, 2)), 60, 1), b"db")
    assert storage.memory.snapshot() == snap
    assert storage.memory.first_index() == 51  # 10 catch-up entries below the snapshot
    before = view(storage.memory, from_index=61)
    storage.close()

    after = reopened(tmp_path)
    # After a restart the log starts right after the snapshot (etcd does the same).
    assert after.memory.first_index() == 61
    assert view(after.memory) == before
    assert after.memory.initial_state() == (HardState(1, 1, 100), ConfState((1, 2)))
    with pytest.raises(SnapshotOutOfDateError):
        after.compact(60, ConfState((1, 2)), b"db")
    after.close()


def test_repeated_compaction_bounds_the_wal_on_disk(tmp_path: Path) -> None:
    storage = reopened(tmp_path, segment_size=8192)
    index = 0
    for _ in range(40):
        storage.save(
            Ready(
                hard_state=HardState(1, 1, index + 50), entries=ents(1, index + 1, index + 50), must_sync=True
            )
        )
        index += 50
        storage.compact(index - 5, VOTERS, b"", keep=20)
        wal_bytes = sum(p.stat().st_size for p in tmp_path.glob("*.wal"))
        assert wal_bytes < 3 * 8192
    assert len(storage.memory.entries(storage.memory.first_index(), index + 1)) == 25
    before = view(storage.memory, from_index=index - 4)
    storage.close()
    after = reopened(tmp_path, segment_size=8192)
    assert view(after.memory) == before
    after.close()


def test_a_torn_tail_is_reported_and_only_durable_state_is_rebuilt(tmp_path: Path) -> None:
    storage = reopened(tmp_path)
    storage.save(Ready(hard_state=HardState(1, 1, 3), entries=ents(1, 1, 3), must_sync=True))
    durable = view(storage.memory)
    segment = storage.wal.segments[-1]
    size = segment.stat().st_size
    storage.save(Ready(hard_state=HardState(1, 1, 5), entries=ents(1, 4, 5), must_sync=True))
    storage.close()
    os.truncate(segment, size + 20)  # inside the record of entry 4
    after = reopened(tmp_path)
    assert after.torn_tail is not None
    assert (after.torn_tail.segment, after.torn_tail.offset) == (segment, size)
    assert view(after.memory) == durable
    after.close()


def test_memory_is_not_touched_when_the_wal_write_fails(tmp_path: Path) -> None:
    storage = reopened(tmp_path)
    storage.save(Ready(hard_state=HardState(1, 1, 0), entries=ents(1, 1, 2), must_sync=True))
    before = view(storage.memory)
    storage.wal.close()  # any later WAL call fails
    with pytest.raises(WalError):
        storage.save(Ready(hard_state=HardState(1, 1, 2), entries=ents(1, 3, 4), must_sync=True))
    with pytest.raises(WalError):
        storage.compact(2, VOTERS, b"")
    assert view(storage.memory) == before
    storage.close()


def test_an_older_snapshot_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    storage = reopened(tmp_path)
    storage.save(Ready(hard_state=HardState(1, 1, 10), entries=ents(1, 1, 10), must_sync=True))
    storage.compact(8, VOTERS, b"")
    before = view(storage.memory, from_index=9)
    old = Snapshot(SnapshotMetadata(VOTERS, 5, 1))
    with pytest.raises(SnapshotOutOfDateError):
        storage.save(Ready(hard_state=HardState(2, 0, 5), snapshot=old, must_sync=True))
    assert view(storage.memory, from_index=9) == before
    storage.close()
    after = reopened(tmp_path)
    assert view(after.memory) == before
    after.close()


class _Cluster:
    """Three real RawNodes on DiskStorage, messages delivered through the codec."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.storages: dict[int, DiskStorage] = {}
        self.nodes: dict[int, RawNode] = {}
        self.applied: dict[int, dict[int, bytes]] = {}
        self.wire: list[bytes] = []
        for node_id in VOTERS.voters:
            self.start(node_id)

    def start(self, node_id: int) -> None:
        storage = DiskStorage.open(self.root / str(node_id), initial=VOTERS)
        applied = storage.memory.snapshot().metadata.index
        self.storages[node_id] = storage
        self.nodes[node_id] = RawNode(Config(id=node_id, applied=applied), storage.memory)
        self.applied[node_id] = {i: v for i, v in self.applied.get(node_id, {}).items() if i <= applied}

    def run(self) -> None:
        for _ in range(1000):
            busy = False
            for node_id, node in self.nodes.items():
                if node.has_ready():
                    busy = True
                    self._handle(node_id, node.ready())
            for frame in self.wire:
                busy = True
                for msg in codec.decode_messages(frame):
                    self.nodes[msg.to].step(msg)
            self.wire = []
            if not busy:
                return
        raise AssertionError("the cluster did not settle")

    def _handle(self, node_id: int, rd: Ready) -> None:
        if rd.messages:
            self.wire.append(codec.encode_messages(rd.messages))
        self.storages[node_id].save(rd)
        if rd.persisted_messages:
            self.wire.append(codec.encode_messages(rd.persisted_messages))
        for e in rd.committed_entries:
            if e.data:
                assert self.applied[node_id].setdefault(e.index, e.data) == e.data
        self.nodes[node_id].advance()


def test_a_cluster_on_disk_storage_survives_a_member_restart(tmp_path: Path) -> None:
    cluster = _Cluster(tmp_path)
    cluster.nodes[1].campaign()
    cluster.run()
    assert cluster.nodes[1].state == StateType.LEADER
    for i in range(30):
        cluster.nodes[1].propose(b"put %d" % i)
        cluster.run()
    commit = cluster.nodes[1].status().hard_state.commit
    storage = cluster.storages[2]
    storage.compact(commit - 5, VOTERS, b"", keep=3)
    before = view(storage.memory, from_index=commit - 4)
    storage.close()

    cluster.start(2)  # from disk only
    assert view(cluster.storages[2].memory) == before
    for i in range(30, 40):
        cluster.nodes[1].propose(b"put %d" % i)
        cluster.run()
    writes = set(cluster.applied[1].values())
    assert writes == {b"put %d" % i for i in range(40)}
    # Node 2 kept its state machine up to the snapshot and re-applied the rest from its log.
    assert cluster.applied[2] == cluster.applied[1]
    assert cluster.applied[3] == cluster.applied[1]
    for s in cluster.storages.values():
        s.close()
