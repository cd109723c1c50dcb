"""TransX's peer-to-peer layer on py-libp2p: it moves bytes between nodes and knows nothing of blocks.

`network.Network` is the public surface: gossip topics with a validation callback, a request/response
protocol for block sync, peer scoring and bans, reconnects.  `scoring` and `framing` are sans-IO.
"""
