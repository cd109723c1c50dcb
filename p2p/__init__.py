"""libp2p host, gossipsub topics with validators, block sync: moves bytes, knows no blocks."""
