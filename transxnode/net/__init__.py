"""The node's side of the peer-to-peer network: gossip of transactions and blocks, block sync."""
