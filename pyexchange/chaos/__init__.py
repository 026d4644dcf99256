"""Fault injection and load for the chaos drills: seeded, replayable, checked afterwards."""
