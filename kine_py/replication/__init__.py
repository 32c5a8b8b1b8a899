"""kine-py's built-in Raft mode: the durable log (``wal``), Raft's storage on top of it
(``raft_storage``), the peer transport, the state machine and the asyncio driver around the
pure Raft core in ``kine_py.raft``."""
