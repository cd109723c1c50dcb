"""The node's HTTP API and explorer page."""
