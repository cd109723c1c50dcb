"""The TransX node: types, encoding, keys, ledger, store, mempool, chain, API, wallet, daemon."""
