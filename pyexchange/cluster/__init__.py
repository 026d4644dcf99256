"""Zones of a cluster: the zone process, local clusters for development and drills, and the
orchestration of failover."""

# The faults of the drills (`pyexchange.cluster.drill`).
FAULTS = ("kill-leader", "wipe-leader", "kill-follower", "pause-leader", "partition-leader", "transfer")
