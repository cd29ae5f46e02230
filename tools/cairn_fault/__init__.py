"""The fault kit (issue 7): scripts/cairn-fault's implementation.

  cli.py       subcommands, member names and roles, the JSON event line
  targets.py   local processes (scripts/run-local.sh's data directory) and compose containers
  net.py       partitions (iptables), slow links (tc netem or the NFQUEUE delayer), heal
  nfqdelay.py  the NFQUEUE packet delayer (for kernels without sch_netem)
  admin.py     hello / replSetGetStatus / replSetStepDown on one member, the set's view
"""
