"""The running TransX node: the daemon (its one composition root), HTTP API, peering and block sync, metrics, plugins; and beside it the data directory and client-side tools."""
