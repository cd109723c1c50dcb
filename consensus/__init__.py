"""Proof-of-Solution: round schedule, commit/reveal, ranking, fork choice, rewards."""
