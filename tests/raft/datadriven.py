"""A small reader, runner and rewriter for etcd-raft's datadriven test files.

The format (cockroachdb/datadriven, as used by etcd-io/raft's ``testdata/*.txt``) is a
sequence of stanzas separated by blank lines::

    # comments and blank lines between stanzas are kept verbatim
    command arg1 key=value key=(v1,v2,v3)
    optional input lines
    ----
    expected output
    (one or more lines, no blank line)

When the expected output itself contains blank lines, the stanza uses a doubled separator
and ends with one::

    command
    ----
    ----
    output with

    a blank line
    ----
    ----

Who does what: ``parse`` turns text into ``Stanza`` objects; ``run`` hands each stanza, in
order, to a handler that returns the actual output (the handler owns all state, so a file is
a script); ``run`` compares, and in rewrite mode returns the file text with every expected
output replaced by the actual one (comments, commands and spacing are kept). A handler raising
an exception aborts the run: there is no output to compare for a crashed step.

The second half holds the one-line descriptions of Raft values (messages, entries, Readys, ...)
that the interaction scripts print and the simulator's traces use, in etcd-raft's style, e.g.
``1->2 MsgApp Term:1 Log:1/3 Commit:3 Entries:[1/4 EntryNormal "x"]``.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass, field

from kine_py.raft.codec import decode_conf_change
from kine_py.raft.types import (
    ConfChange,
    ConfChangeType,
    ConfState,
    Entry,
    EntryType,
    HardState,
    Message,
    MessageType,
    Ready,
    Snapshot,
    StateType,
)

SEPARATOR = "----"


class DataDrivenError(Exception):
    """The file is malformed, or a handler rejected a command's arguments."""


@dataclass(frozen=True, slots=True)
class Arg:
    """One command argument: ``key`` alone (``vals`` empty), ``key=v`` or ``key=(v1,v2)``."""

    key: str
    vals: tuple[str, ...] = ()


@dataclass(slots=True)
class Stanza:
    """One ``command ---- output`` block. ``line`` is 1-based (the command line)."""

    line: int
    command: str
    args: list[Arg]
    command_line: str
    input_lines: list[str]
    expected: str
    leading: list[str] = field(default_factory=list)
    """Comment and blank lines that came before this stanza (kept on rewrite)."""

    def positional(self) -> list[str]:
        """The arguments given without ``=``, in order."""
        return [a.key for a in self.args if not a.vals]

    def keyed(self) -> dict[str, tuple[str, ...]]:
        """The ``key=...`` arguments; a repeated key keeps its last value."""
        return {a.key: a.vals for a in self.args if a.vals}

    def where(self, path: str) -> str:
        return f"{path}:{self.line}: {self.command_line}"


def split_args(text: str) -> list[Arg]:
    """Split ``a b=c d=(1,2, 3) e="x y"`` into arguments; parentheses and double quotes group."""
    tokens: list[str] = []
    cur: list[str] = []
    depth = 0
    quoted = False
    for ch in text:
        if ch == '"':
            quoted = not quoted
            cur.append(ch)
        elif quoted:
            cur.append(ch)
        elif ch == "(":
            depth += 1
            cur.append(ch)
        elif ch == ")":
            depth -= 1
            cur.append(ch)
        elif ch.isspace() and depth == 0:
            if cur:
                tokens.append("".join(cur))
                cur = []
        else:
            cur.append(ch)
    if quoted or depth != 0:
        raise DataDrivenError(f"unbalanced quotes or parentheses in {text!r}")
    if cur:
        tokens.append("".join(cur))
    return [_to_arg(t) for t in tokens]


def _to_arg(token: str) -> Arg:
    if "=" not in token or token.startswith('"'):
        return Arg(_unquote(token))
    key, _, value = token.partition("=")
    if value.startswith("(") and value.endswith(")"):
        inner = value[1:-1].strip()
        vals = tuple(_unquote(v.strip()) for v in inner.split(",")) if inner else ()
        return Arg(key, vals if vals else ("",))
    return Arg(key, (_unquote(value),))


def _unquote(s: str) -> str:
    if len(s) >= 2 and s[0] == s[-1] == '"':
        return s[1:-1]
    return s


def parse(text: str) -> tuple[list[Stanza], list[str]]:
    """Parse a whole file. Returns the stanzas and the trailing comment/blank lines.

    Raises DataDrivenError for a command without a ``----`` line."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    stanzas: list[Stanza] = []
    leading: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.strip() or line.lstrip().startswith("#"):
            leading.append(line)
            i += 1
            continue
        stanza, i = _parse_stanza(lines, i, leading)
        stanzas.append(stanza)
        leading = []
    return stanzas, leading


def _parse_stanza(lines: list[str], start: int, leading: list[str]) -> tuple[Stanza, int]:
    command_line = lines[start]
    i = start + 1
    input_lines: list[str] = []
    while i < len(lines) and lines[i] != SEPARATOR:
        if not lines[i].strip():
            raise DataDrivenError(f"line {start + 1}: {command_line!r} has no {SEPARATOR} line")
        input_lines.append(lines[i])
        i += 1
    if i == len(lines):
        raise DataDrivenError(f"line {start + 1}: {command_line!r} has no {SEPARATOR} line")
    i += 1
    out: list[str] = []
    if i < len(lines) and lines[i] == SEPARATOR:  # doubled separator: blank lines allowed
        i += 1
        while i + 1 < len(lines) and not (lines[i] == SEPARATOR and lines[i + 1] == SEPARATOR):
            out.append(lines[i])
            i += 1
        if i + 1 >= len(lines):
            raise DataDrivenError(f"line {start + 1}: unterminated {SEPARATOR}/{SEPARATOR} block")
        i += 2
    else:
        while i < len(lines) and lines[i].strip():
            out.append(lines[i])
            i += 1
    words = command_line.strip().split(None, 1)
    args = split_args(words[1]) if len(words) > 1 else []
    stanza = Stanza(
        line=start + 1,
        command=words[0],
        args=args,
        command_line=command_line,
        input_lines=input_lines,
        expected="\n".join(out),
        leading=list(leading),
    )
    return stanza, i


def render(stanzas: list[Stanza], trailing: list[str], outputs: list[str]) -> str:
    """The file text with ``outputs[k]`` as the expected output of ``stanzas[k]``."""
    parts: list[str] = []
    for stanza, output in zip(stanzas, outputs, strict=True):
        parts.extend(stanza.leading)
        parts.append(stanza.command_line)
        parts.extend(stanza.input_lines)
        parts.append(SEPARATOR)
        body = output.rstrip("\n")
        if any(not ln.strip() for ln in body.split("\n")) and body:
            parts.extend([SEPARATOR, body, SEPARATOR, SEPARATOR])
        elif body:
            parts.append(body)
    parts.extend(trailing)
    return "\n".join(parts) + "\n"


@dataclass(frozen=True, slots=True)
class Mismatch:
    where: str
    expected: str
    actual: str

    def describe(self) -> str:
        diff = difflib.unified_diff(
            self.expected.split("\n"), self.actual.split("\n"), "expected", "actual", lineterm=""
        )
        return f"{self.where}\n" + "\n".join(diff)


def run(
    path: str, text: str, handler: Callable[[Stanza], str], rewrite: bool = False
) -> tuple[Mismatch | None, str]:
    """Run every stanza of ``text`` through ``handler`` in order.

    Without ``rewrite`` it stops at the first stanza whose output differs and returns that
    mismatch (later stanzas depend on earlier state, so their diffs would only be noise).
    With ``rewrite`` it runs everything and returns (None, new file text). Handler exceptions
    propagate, with the stanza's location added as a note."""
    stanzas, trailing = parse(text)
    outputs: list[str] = []
    for stanza in stanzas:
        try:
            actual = handler(stanza).rstrip("\n")
        except Exception as exc:
            exc.add_note(f"while running {stanza.where(path)}")
            raise
        outputs.append(actual)
        if not rewrite and actual != stanza.expected:
            return Mismatch(stanza.where(path), stanza.expected, actual), text
    return None, render(stanzas, trailing, outputs) if rewrite else text


# -- describing Raft values (shared by the interaction harness and the simulator's traces) ---


def _camel(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_"))


def message_type_name(t: MessageType) -> str:
    """``MessageType.APP_RESP`` -> ``"MsgAppResp"`` (etcd-raft's spelling)."""
    return "Msg" + _camel(t.name)


def parse_message_type(name: str) -> MessageType:
    """The reverse of ``message_type_name``; raises DataDrivenError for an unknown name."""
    for t in MessageType:
        if message_type_name(t) == name:
            return t
    raise DataDrivenError(f"unknown message type {name!r}")


def state_name(s: StateType) -> str:
    """``StateType.PRE_CANDIDATE`` -> ``"StatePreCandidate"``."""
    return "State" + _camel(s.name)


def quote(data: bytes) -> str:
    """Bytes as a double-quoted string; printable ASCII as is, everything else as \\xNN."""
    out = []
    for b in data:
        ch = chr(b)
        if ch in '"\\':
            out.append("\\" + ch)
        elif 0x20 <= b < 0x7F:
            out.append(ch)
        else:
            out.append(f"\\x{b:02x}")
    return '"' + "".join(out) + '"'


_CC_LETTER = {
    ConfChangeType.ADD_NODE: "v",
    ConfChangeType.ADD_LEARNER_NODE: "l",
    ConfChangeType.REMOVE_NODE: "r",
    ConfChangeType.UPDATE_NODE: "u",
}


def describe_conf_change(cc: ConfChange) -> str:
    """``v4`` (add voter or promote), ``l4`` (add learner), ``r4`` (remove), ``u4`` (update)."""
    return f"{_CC_LETTER[cc.type]}{cc.node_id}"


def parse_conf_change(token: str) -> ConfChange:
    """The reverse of ``describe_conf_change``."""
    for t, letter in _CC_LETTER.items():
        if token.startswith(letter) and token[1:].isdigit():
            return ConfChange(t, int(token[1:]))
    raise DataDrivenError(f"bad conf change {token!r}: want v<ID>, l<ID>, r<ID> or u<ID>")


def describe_entry(e: Entry) -> str:
    """``1/4 EntryNormal "x"`` (term/index type data)."""
    if e.type == EntryType.CONF_CHANGE:
        try:
            body = describe_conf_change(decode_conf_change(e.data))
        except ValueError:
            body = quote(e.data)
        return f"{e.term}/{e.index} EntryConfChange {body}"
    return f"{e.term}/{e.index} EntryNormal {quote(e.data)}"


def describe_conf_state(cs: ConfState) -> str:
    voters = " ".join(str(v) for v in cs.voters)
    learners = " ".join(str(v) for v in cs.learners)
    return f"Voters:[{voters}] Learners:[{learners}]"


def describe_snapshot(s: Snapshot) -> str:
    md = s.metadata
    text = f"Index:{md.index} Term:{md.term} {describe_conf_state(md.conf_state)}"
    return text + (f" Data:{quote(s.data)}" if s.data else "")


def describe_message(m: Message) -> str:
    """One line: ``1->2 MsgApp Term:1 Log:1/3 Commit:3 Entries:[1/4 EntryNormal "x"]``."""
    parts = [f"{m.from_}->{m.to} {message_type_name(m.type)} Term:{m.term} Log:{m.log_term}/{m.index}"]
    if m.reject:
        parts.append(f"Rejected (Hint: {m.reject_hint})")
    if m.commit:
        parts.append(f"Commit:{m.commit}")
    if m.entries:
        parts.append("Entries:[" + ", ".join(describe_entry(e) for e in m.entries) + "]")
    if m.snapshot is not None and not m.snapshot.is_empty():
        parts.append(f"Snapshot:[{describe_snapshot(m.snapshot)}]")
    if m.context:
        parts.append(f"Context:{quote(m.context)}")
    return " ".join(parts)


def describe_hard_state(hs: HardState) -> str:
    return f"HardState Term:{hs.term} Vote:{hs.vote} Commit:{hs.commit}"


def describe_ready(rd: Ready) -> list[str]:
    """The Ready as lines, etcd-raft style; ``["<empty Ready>"]`` when there is nothing."""
    lines: list[str] = []
    if rd.soft_state is not None:
        lines.append(f"Lead:{rd.soft_state.lead} State:{state_name(rd.soft_state.raft_state)}")
    if rd.hard_state is not None:
        lines.append(describe_hard_state(rd.hard_state))
    if rd.read_states:
        lines.append("ReadStates:")
        lines.extend(f"Index:{r.index} Ctx:{quote(r.request_ctx)}" for r in rd.read_states)
    if rd.entries:
        lines.append("Entries:")
        lines.extend(describe_entry(e) for e in rd.entries)
    if rd.snapshot is not None and not rd.snapshot.is_empty():
        lines.append(f"Snapshot {describe_snapshot(rd.snapshot)}")
    if rd.committed_entries:
        lines.append("CommittedEntries:")
        lines.extend(describe_entry(e) for e in rd.committed_entries)
    if rd.messages:
        lines.append("Messages:")
        lines.extend(describe_message(m) for m in rd.messages)
    if rd.persisted_messages:
        lines.append("PersistedMessages:")
        lines.extend(describe_message(m) for m in rd.persisted_messages)
    if not lines:
        return ["<empty Ready>"]
    return [f"Ready MustSync={str(rd.must_sync).lower()}:", *lines]
