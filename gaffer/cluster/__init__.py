"""gafferd nodes on etcd: a registry of nodes and of their jobs, one view across them.

Optional: nothing here is imported unless gafferd's ``cluster`` setting is set (or an
embedding program imports it). The etcd client speaks etcd's JSON gateway through
tornado's HTTP client, so the feature needs no package beyond gaffer's own (see
docs/cluster.md and docs/design.md).

* ``etcd``: the etcd v3 client (KV, transactions, leases, watches);
* ``records``: the key layout and the records stored under it;
* ``registry``: ``ClusterRegistry``, the Manager application that registers a node;
* ``placement``: cluster jobs, whose instances the nodes claim.
"""
