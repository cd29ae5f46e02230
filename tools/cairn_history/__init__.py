"""cairn_history: the workload runner and history checker of Cairn's failover tests.

A run drives a replica set through pymongo with concurrent workers (single-document inserts at
w:1 and w:"majority", list-append transactions) while an optional fault schedule runs, and
records every operation, fault and the final state as JSON lines. The checker reads such a
history and reports acknowledged writes that were lost, writes applied twice, w:1 writes lost
without a rollback-file entry, and the Adya anomalies G0, G1a, G1b, G1c and G-single.

Modules: history (file format), outcomes (ok/fail/info), workloads, faults, runner (run side);
graph, listappend, writes, rollback, checker (check side); __main__ (command line).
Usage: python -m tools.cairn_history run|check ... (see docs/history.md).
"""
