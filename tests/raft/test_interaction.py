"""Datadriven interaction tests for the Raft core (etcd-raft's ``interaction_test.go``, our way).

Every ``tests/raft/testdata/*.txt`` file is one test: a script of commands run against an
``InteractionEnv`` (N ``RawNode``s, each with its own ``MemoryStorage``, and one list of
in-flight messages), each followed by the output it must produce. The output shows every
Ready, every message delivered and the core's own log lines, so a behaviour change shows up
as a readable diff.

To regenerate the expected outputs after an intended change, run::

    KINE_RAFT_REWRITE=1 python -m pytest tests/raft/test_interaction.py

and then READ the diff (``git diff tests/raft/testdata``): only keep it if you understand what
caused every change and it is right per the Raft paper and etcd-raft.

Commands (ids are node ids, 1-based; ``[...]`` is optional):

* ``add-nodes N [voters=(1,2,3)] [learners=(4)] [index=I] [prevote=B] [checkquorum=B]
  [election=T] [heartbeat=T] [max-inflight=N] [max-size=BYTES] [max-uncommitted=BYTES]
  [step-down-on-removal=B] [disable-forwarding=B] [forwarder-read-ack=B] [seed=S]`` adds N
  nodes with the next ids.
  With ``voters``/``learners`` the storage starts from a snapshot holding that configuration
  at ``index`` (default 0) and term 1 (term 0 when index is 0); without them the node starts
  empty and must get a snapshot from a leader. Defaults follow etcd-raft's test stub:
  election=3, heartbeat=1, pre-vote, check-quorum and forwarder-read-ack OFF, unlimited message size and
  inflights (256). The randomized election timeout is pinned to its minimum (= election) so
  ``tick-election`` on a follower always starts an election; ``seed=S`` uses a seeded
  ``random.Random(S)`` instead.
* ``campaign ID``, ``propose ID DATA``, ``propose-conf-change ID v4|l4|r4|u4``,
  ``transfer-leadership from=ID to=ID``, ``read-index ID CTX``, ``forget-leader ID``,
  ``report-unreachable ID ID``, ``report-snapshot ID ID [failed=B]``: the RawNode calls;
  a raised core error is printed as ``error: <ErrorClass>``.
* ``process-ready ID...``: prints each Ready, persists it (snapshot, entries, hard state),
  queues its ``messages`` and ``persisted_messages``, applies its snapshot and committed
  entries (calling ``apply_conf_change`` for conf changes) and calls ``advance()``.
* ``deliver-msgs [ID...] [drop=(ID,...)] [type=MsgApp]``: steps the queued messages to the
  given recipients (all when none given), or drops those to ``drop``.
* ``stabilize [ID...]``: handles Readys and delivers messages until nothing changes.
* ``tick-election ID``, ``tick-heartbeat ID``, ``tick ID N``: ticks (election/heartbeat tick
  times, or N times).
* ``raft-log ID``, ``raft-state``, ``status ID``: print the stored log, every node's role,
  and the leader's progress map.
* ``compact ID INDEX``: snapshot the node's state at INDEX (<= applied) and compact its log.
* ``restart ID``: replace the node's RawNode by a new one built from its storage, as after a
  crash (all writes in this harness are synchronous, so nothing stored is lost).
* ``log-level debug|info|warning|error|none``: which core log lines appear (default info).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from kine_py.raft import (
    Config,
    ConfState,
    Entry,
    EntryType,
    MemoryStorage,
    Message,
    MessageType,
    RaftError,
    RawNode,
    Ready,
    Snapshot,
    SnapshotMetadata,
    StateType,
)
from kine_py.raft.codec import decode_conf_change, encode_conf_change
from tests.raft import datadriven as dd
from tests.raft.sim import AppliedSnapshotStorage

TESTDATA = Path(__file__).parent / "testdata"
REWRITE = os.environ.get("KINE_RAFT_REWRITE", "") == "1"
MAX_STABILIZE_ROUNDS = 1000


class PinnedRandom(random.Random):
    """A ``random.Random`` whose every draw is the lowest possible value, so the randomized
    election timeout is exactly ``election_tick`` whatever way the core draws it."""

    def random(self) -> float:
        return 0.0

    def getrandbits(self, k: int, /) -> int:
        return 0


class _OutputHandler(logging.Handler):
    """Sends the core's log records into the current command's output."""

    def __init__(self, sink: Callable[[str], None]) -> None:
        super().__init__(logging.DEBUG)
        self._sink = sink

    def emit(self, record: logging.LogRecord) -> None:
        self._sink(f"{record.levelname} {record.getMessage()}")


@dataclass
class Node:
    """One member: its RawNode, its storage and the configurations it applied."""

    config: Config
    storage: AppliedSnapshotStorage
    rn: RawNode
    applied_index: int = 0
    conf_history: list[tuple[int, ConfState]] = field(default_factory=list)
    """(index, configuration from that index on); the first item is the storage's snapshot."""

    def conf_state_at(self, index: int) -> ConfState:
        found = self.conf_history[0][1]
        for at, cs in self.conf_history:
            if at <= index:
                found = cs
        return found


class InteractionEnv:
    """The state one testdata file runs against. ``handle`` runs one stanza."""

    def __init__(self) -> None:
        self.nodes: list[Node] = []
        self.messages: list[Message] = []
        self.out: list[str] = []
        self.indent = ""
        self.logger = logging.getLogger(f"tests.raft.interaction.{id(self)}")
        self.logger.propagate = False
        self.logger.setLevel(logging.INFO)
        self._handler = _OutputHandler(self.write)
        self.logger.addHandler(self._handler)

    def close(self) -> None:
        self.logger.removeHandler(self._handler)

    def write(self, line: str) -> None:
        self.out.append(self.indent + line)

    def node(self, node_id: int) -> Node:
        if not 1 <= node_id <= len(self.nodes):
            raise dd.DataDrivenError(f"no node {node_id}")
        return self.nodes[node_id - 1]

    # -- dispatch -------------------------------------------------------------------------

    def handle(self, st: dd.Stanza) -> str:
        self.out = []
        handler = getattr(self, "cmd_" + st.command.replace("-", "_"), None)
        if handler is None:
            raise dd.DataDrivenError(f"unknown command {st.command!r}")
        handler(st)
        return "\n".join(self.out) if self.out else "ok"

    def call(self, fn: Callable[[], object]) -> None:
        """Run a RawNode call; print a core error's class instead of failing."""
        try:
            fn()
        except RaftError as exc:
            self.write(f"error: {type(exc).__name__}")

    # -- building nodes -------------------------------------------------------------------

    def cmd_add_nodes(self, st: dd.Stanza) -> None:
        (count,) = (int(p) for p in st.positional())
        kw = st.keyed()
        voters = tuple(int(v) for v in kw.get("voters", ()) if v)
        learners = tuple(int(v) for v in kw.get("learners", ()) if v)
        index = int(kw.get("index", ("0",))[0])
        for _ in range(count):
            node_id = len(self.nodes) + 1
            cs = ConfState(voters=voters, learners=learners)
            storage = AppliedSnapshotStorage(cs, lambda node_id=node_id: self._applied_snapshot(node_id))
            if index > 0:
                meta = SnapshotMetadata(conf_state=cs, index=index, term=1)
                storage.apply_snapshot(Snapshot(metadata=meta))
            config = self._config(node_id, kw, applied=index)
            node = Node(config, storage, RawNode(config, storage), index, conf_history=[(index, cs)])
            self.nodes.append(node)
        self.write("ok")

    def _applied_snapshot(self, node_id: int) -> tuple[int, ConfState, bytes] | None:
        """What a leader sends as a snapshot: its state as of its applied index (etcd-raft's
        interaction harness and etcd's server do the same)."""
        node = self.nodes[node_id - 1]
        return (node.applied_index, node.conf_history[-1][1], b"") if node.applied_index else None

    def _config(self, node_id: int, kw: dict[str, tuple[str, ...]], applied: int) -> Config:
        def num(key: str, default: int) -> int:
            return int(kw[key][0]) if key in kw else default

        def flag(key: str, default: bool) -> bool:
            return kw[key][0] == "true" if key in kw else default

        rand = random.Random(num("seed", 0)) if "seed" in kw else PinnedRandom()
        config = Config(
            id=node_id,
            election_tick=num("election", 3),
            heartbeat_tick=num("heartbeat", 1),
            applied=applied,
            max_size_per_msg=num("max-size", 1 << 30),
            max_inflight_msgs=num("max-inflight", 256),
            max_uncommitted_entries_size=num("max-uncommitted", 0),
            check_quorum=flag("checkquorum", False),
            pre_vote=flag("prevote", False),
            disable_proposal_forwarding=flag("disable-forwarding", False),
            step_down_on_removal=flag("step-down-on-removal", True),
            forwarder_read_ack=flag("forwarder-read-ack", False),
            drop_stale_acks=flag("drop-stale-acks", False),
            rand=rand,
            logger=self.logger,
        )
        config.validate()
        return config

    def cmd_restart(self, st: dd.Stanza) -> None:
        for node_id in _ids(st):
            node = self.node(node_id)
            snap = MemoryStorage.snapshot(node.storage)  # the stored one, not the applied one
            node.config = dataclasses.replace(node.config, applied=snap.metadata.index)
            node.rn = RawNode(node.config, node.storage)
            node.applied_index = snap.metadata.index
            node.conf_history = [(snap.metadata.index, snap.metadata.conf_state)]
        self.write("ok")

    # -- RawNode calls --------------------------------------------------------------------

    def cmd_campaign(self, st: dd.Stanza) -> None:
        rn = self.node(_ids(st)[0]).rn
        self.call(rn.campaign)

    def cmd_propose(self, st: dd.Stanza) -> None:
        node_id, data = st.positional()
        rn = self.node(int(node_id)).rn
        self.call(lambda: rn.propose(data.encode()))

    def cmd_propose_conf_change(self, st: dd.Stanza) -> None:
        node_id, token = st.positional()
        rn = self.node(int(node_id)).rn
        cc = dd.parse_conf_change(token)
        self.call(lambda: rn.propose_conf_change(cc))

    def cmd_transfer_leadership(self, st: dd.Stanza) -> None:
        kw = st.keyed()
        rn = self.node(int(kw["from"][0])).rn
        self.call(lambda: rn.transfer_leader(int(kw["to"][0])))

    def cmd_read_index(self, st: dd.Stanza) -> None:
        node_id, ctx = st.positional()
        rn = self.node(int(node_id)).rn
        self.call(lambda: rn.read_index(ctx.encode()))

    def cmd_forget_leader(self, st: dd.Stanza) -> None:
        for node_id in _ids(st):
            self.call(self.node(node_id).rn.forget_leader)

    def cmd_report_unreachable(self, st: dd.Stanza) -> None:
        node_id, peer = _ids(st)
        rn = self.node(node_id).rn
        self.call(lambda: rn.report_unreachable(peer))

    def cmd_report_snapshot(self, st: dd.Stanza) -> None:
        node_id, peer = _ids(st)
        failed = st.keyed().get("failed", ("false",))[0] == "true"
        rn = self.node(node_id).rn
        self.call(lambda: rn.report_snapshot(peer, failed))

    def cmd_tick_election(self, st: dd.Stanza) -> None:
        node = self.node(_ids(st)[0])
        self._tick(node, node.config.election_tick)

    def cmd_tick_heartbeat(self, st: dd.Stanza) -> None:
        node = self.node(_ids(st)[0])
        self._tick(node, node.config.heartbeat_tick)

    def cmd_tick(self, st: dd.Stanza) -> None:
        node_id, n = _ids(st)
        self._tick(self.node(node_id), n)

    def _tick(self, node: Node, n: int) -> None:
        for _ in range(n):
            node.rn.tick()

    # -- Ready handling -------------------------------------------------------------------

    def cmd_process_ready(self, st: dd.Stanza) -> None:
        ids = _ids(st)
        for node_id in ids:
            if len(ids) > 1:
                self.write(f"> {node_id} handling Ready")
                self.indent += "  "
            self.process_ready(node_id)
            if len(ids) > 1:
                self.indent = self.indent[:-2]

    def process_ready(self, node_id: int) -> None:
        node = self.node(node_id)
        rd = node.rn.ready()
        for line in dd.describe_ready(rd):
            self.write(line)
        self._persist(node, rd)
        self.messages.extend(rd.messages)
        self.messages.extend(rd.persisted_messages)
        self._apply(node, rd)
        node.rn.advance()

    def _persist(self, node: Node, rd: Ready) -> None:
        if rd.snapshot is not None and not rd.snapshot.is_empty():
            node.storage.apply_snapshot(rd.snapshot)
        if rd.entries:
            node.storage.append(rd.entries)
        if rd.hard_state is not None:
            node.storage.set_hard_state(rd.hard_state)

    def _apply(self, node: Node, rd: Ready) -> None:
        if rd.snapshot is not None and not rd.snapshot.is_empty():
            md = rd.snapshot.metadata
            node.conf_history = [(md.index, md.conf_state)]
            node.applied_index = md.index
        for e in rd.committed_entries:
            node.applied_index = e.index
            if e.type == EntryType.CONF_CHANGE:
                cs = node.rn.apply_conf_change(decode_conf_change(e.data))
                node.conf_history.append((e.index, cs))

    def cmd_deliver_msgs(self, st: dd.Stanza) -> None:
        kw = st.keyed()
        only_type = dd.parse_message_type(kw["type"][0]) if "type" in kw else None
        drop = [int(v) for v in kw.get("drop", ())]
        deliver = [int(p) for p in st.positional()]
        if not deliver and not drop:
            deliver = sorted({m.to for m in self.messages})
        handled = 0
        for to in deliver:
            handled += self.deliver(to, only_type, drop=False)
        for to in drop:
            handled += self.deliver(to, only_type, drop=True)
        if handled == 0:
            self.write("no messages")

    def deliver(self, to: int, only_type: MessageType | None, drop: bool) -> int:
        """Step (or drop) every queued message to ``to`` (of ``only_type`` if given)."""
        mine = [m for m in self.messages if m.to == to and only_type in (None, m.type)]
        self.messages = [m for m in self.messages if not (m.to == to and only_type in (None, m.type))]
        for m in mine:
            if drop:
                self.write(f"dropped: {dd.describe_message(m)}")
                continue
            self.write(dd.describe_message(m))
            if not 1 <= m.to <= len(self.nodes):
                self.write(f"  (no node {m.to}; message lost)")
                continue
            target = self.node(m.to).rn
            self.call(lambda target=target, m=m: target.step(m))
        return len(mine)

    def cmd_stabilize(self, st: dd.Stanza) -> None:
        ids = _ids(st) or [n.config.id for n in self.nodes]
        for _ in range(MAX_STABILIZE_ROUNDS):
            done = True
            for node_id in ids:
                if self.node(node_id).rn.has_ready():
                    done = False
                    self.write(f"> {node_id} handling Ready")
                    self.indent += "  "
                    self.process_ready(node_id)
                    self.indent = self.indent[:-2]
            for node_id in ids:
                if any(m.to == node_id for m in self.messages):
                    done = False
                    self.write(f"> {node_id} receiving messages")
                    self.indent += "  "
                    self.deliver(node_id, None, drop=False)
                    self.indent = self.indent[:-2]
            if done:
                return
        raise AssertionError(f"stabilize did not settle in {MAX_STABILIZE_ROUNDS} rounds")

    # -- inspection -----------------------------------------------------------------------

    def cmd_raft_log(self, st: dd.Stanza) -> None:
        storage = self.node(_ids(st)[0]).storage
        first, last = storage.first_index(), storage.last_index()
        if last < first:
            self.write(f"log is empty: first index={first}, last index={last}")
            return
        for e in storage.entries(first, last + 1, None):
            self.write(dd.describe_entry(e))

    def cmd_raft_state(self, st: dd.Stanza) -> None:
        for node in self.nodes:
            status = node.rn.status()
            cs = status.conf_state
            nid = node.config.id
            role = "Voter" if nid in cs.voters else "Learner" if nid in cs.learners else "-"
            hs = status.hard_state
            self.write(
                f"{node.config.id}: {dd.state_name(status.soft_state.raft_state)} ({role}) "
                f"Term:{hs.term} Lead:{status.soft_state.lead}"
            )

    def cmd_status(self, st: dd.Stanza) -> None:
        status = self.node(_ids(st)[0]).rn.status()
        if status.soft_state.raft_state != StateType.LEADER:
            self.write(
                f"{dd.state_name(status.soft_state.raft_state)} {dd.describe_hard_state(status.hard_state)}"
                f" Applied:{status.applied}"
            )
            return
        for peer, pr in sorted(status.progress.items()):
            extra = " learner" if pr.is_learner else ""
            extra += "" if pr.recent_active else " inactive"
            self.write(f"{peer}: State{dd._camel(pr.state.name)} match={pr.match} next={pr.next}{extra}")
        if status.lead_transferee:
            self.write(f"transferring leadership to {status.lead_transferee}")

    def cmd_compact(self, st: dd.Stanza) -> None:
        node_id, index = _ids(st)
        node = self.node(node_id)
        applied = node.rn.status().applied
        if index > applied:
            raise dd.DataDrivenError(f"cannot compact node {node_id} to {index}: applied is {applied}")
        node.storage.create_snapshot(index, node.conf_state_at(index), b"")
        node.storage.compact(index)
        self.cmd_raft_log(st)

    def cmd_log_level(self, st: dd.Stanza) -> None:
        (level,) = st.positional()
        self.logger.setLevel(logging.CRITICAL + 1 if level == "none" else level.upper())
        self.write("ok")


def _ids(st: dd.Stanza) -> list[int]:
    return [int(p) for p in st.positional()]


# -- the tests -------------------------------------------------------------------------------


def _scripts() -> list[Path]:
    return sorted(TESTDATA.glob("*.txt"))


@pytest.mark.parametrize("script", _scripts(), ids=lambda p: p.stem)
def test_interaction(script: Path) -> None:
    env = InteractionEnv()
    try:
        text = script.read_text()
        mismatch, new_text = dd.run(str(script), text, env.handle, rewrite=REWRITE)
    finally:
        env.close()
    if REWRITE:
        if new_text != text:
            script.write_text(new_text)
        return
    assert mismatch is None, mismatch.describe()


def test_there_are_scripts() -> None:
    assert len(_scripts()) >= 15


# -- the datadriven runner itself ------------------------------------------------------------

SAMPLE = """\
# a comment
echo a b=c d=(1,2)
----
a|b=c|d=1,2

echo "x y"
----
----
x y

blank above
----
----
"""


def _echo(st: dd.Stanza) -> str:
    if st.command_line.startswith('echo "'):
        return "x y\n\nblank above"
    return "|".join(a.key + ("=" + ",".join(a.vals) if a.vals else "") for a in st.args)


def test_runner_passes_matching_file() -> None:
    mismatch, _ = dd.run("sample", SAMPLE, _echo)
    assert mismatch is None


def test_runner_reports_first_mismatch_with_location() -> None:
    broken = SAMPLE.replace("a|b=c|d=1,2", "a|b=c|d=1,3")
    mismatch, _ = dd.run("sample", broken, _echo)
    assert mismatch is not None
    assert mismatch.where == "sample:2: echo a b=c d=(1,2)"
    assert "-a|b=c|d=1,3" in mismatch.describe()
    assert "+a|b=c|d=1,2" in mismatch.describe()


def test_rewrite_restores_the_expected_outputs_and_keeps_comments() -> None:
    broken = SAMPLE.replace("a|b=c|d=1,2", "stale").replace("blank above", "old")
    _, rewritten = dd.run("sample", broken, _echo, rewrite=True)
    assert rewritten == SAMPLE


def test_stanza_without_separator_is_rejected() -> None:
    with pytest.raises(dd.DataDrivenError):
        dd.parse("cmd\n\nother\n----\n")


def test_message_description_is_one_line() -> None:
    m = Message(
        type=MessageType.APP,
        to=2,
        from_=1,
        term=1,
        log_term=1,
        index=3,
        commit=3,
        entries=(Entry(term=1, index=4, data=b"x"),),
    )
    assert dd.describe_message(m) == '1->2 MsgApp Term:1 Log:1/3 Commit:3 Entries:[1/4 EntryNormal "x"]'
    data = encode_conf_change(dd.parse_conf_change("l4"))
    cc = Entry(term=2, index=5, type=EntryType.CONF_CHANGE, data=data)
    assert dd.describe_entry(cc) == "2/5 EntryConfChange l4"
    assert dd.parse_message_type("MsgPreVoteResp") == MessageType.PRE_VOTE_RESP
