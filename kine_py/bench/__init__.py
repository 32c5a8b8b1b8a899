"""``python -m kine_py.bench``: load an etcd v3 endpoint (kine-py or a real etcd) and report.

Workloads, after etcd's own ``benchmark`` tool and what kube-apiserver sends:

- ``put``: Puts of ``--key-size``/``--val-size`` byte keys and values over ``--key-space`` keys;
- ``range``: single-key Ranges, linearizable or ``--serializable``;
- ``range-prefix``: a page of ``--limit`` keys from a prefix of ``--prefix-keys`` keys, each
  written ``--revisions-per-key`` times by the setup, ``--at current`` or ``old`` (the
  revision after the first round of writes); ``--paginate`` walks every page, each starting
  after the last key of the one before, pinned to the first page's revision;
- ``txn-put``: kube-apiserver's update, a Get then ``MOD(key) == rev ? Put : Range``;
- ``txn-create``: create-if-absent of a new key, ``CREATE(key) == 0 ? Put : Range``;
- ``watch-latency``: ``--watchers`` watches on one key, over several streams, connections
  and ``--procs`` processes; time from a Put's acknowledgement to each watcher's event;
- ``mixed``: a kube-apiserver-like blend (see ``kine_py.bench.mixed``) with watchers.

Load comes from ``--procs`` processes x ``--clients`` asyncio clients over ``--conns`` gRPC
connections each; a run is ``--total`` operations or ``--duration`` seconds. ``--compare
ENDPOINT`` runs the same workload against both endpoints, alternating ``--rounds`` times,
and prints the ratios (first / second). Other commands: ``memory`` (resident size before and
after loading keys), ``etcdctl-check-perf`` (etcd's own check, parsed) and ``report`` (fresh
etcd and kine-py servers, everything, written to ``benchmarks/RESULTS.md``).

Modules: ``spec`` (what a run is), ``setup`` (data written before timing), ``workloads`` and
``mixed`` (one operation), ``load`` (processes and clients), ``watchers`` and ``watch``
(watch latency), ``stats`` (percentiles, ratios), ``compare`` (alternation), ``memory``,
``checkperf``, ``scenarios``, ``machine``, ``render`` and ``report``, ``cli``.
"""
