"""etcd's MVCC semantics over a durable log: the index, txn evaluation, the writer, compaction."""
