"""The chain's rules: what every node must agree on (types, encoding, keys, transactions, state, the
ledger's state transition, settlement, ranking).  Pure: no I/O, nothing that runs a node."""
