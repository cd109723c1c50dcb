"""Fuzz target: a transaction's way into a node: `decode_tx`, `check_stateless`, and admission to the
mempool (`Node.submit`) on the world's real chain over LevelDB.  Only `TxError` may escape.

The first byte picks how the rest is used (mode = byte % 4):
  0  raw bytes from a peer or a client: decoded, checked, submitted as they are (a mutation breaks the
     signature, so this explores parsing and the checks before it);
  1  decoded, then signed again by the world's key of its signer (the solver's if unknown), at its nonce:
     a well-signed transaction of any content reaches the ledger's trial of it;
  2  the same at the signer's next nonce (so it is in line, not refused for its nonce);
  3  the same by the world's key number byte >> 2 (mod 7) at its next nonce.
The mempool is emptied before each input, so an input's outcome does not depend on those before it.
"""

from __future__ import annotations

from fuzz import harness


def seeds(world) -> list[bytes]:
    txs = world.samples.by_kind["tx"]
    return [bytes([mode]) + raw for mode in (0, 2) for raw in txs] + [bytes([1]) + txs[0], bytes([3 + 4 * 5]) + txs[1]]


def setup(world):
    from consensus.mempool import Mempool
    from consensus.rules import keys
    from consensus.rules.transactions import TxError, check_stateless, decode_tx, sign_tx

    node, g = world.node, world.g
    signers = [world.solver, *world.users]

    def one_input(data: bytes) -> None:
        if not data:
            return
        mode, payload = data[0] % 4, data[1:]
        node.mempool = Mempool()
        try:
            tx = decode_tx(payload)
            if mode == 0:
                check_stateless(tx, g.chain_id, g.zones, g.min_fee)
                node.submit(payload)
                return
            k = world.keys.get(tx.signer, world.solver) if mode < 3 else signers[(data[0] >> 2) % len(signers)]
            nonce = tx.nonce if mode == 1 else node.chain_nonce(keys.address_of_key(k), tx.space)
            again = sign_tx(k, chain_id=tx.chain_id, nonce=nonce, fee=tx.fee, body=tx.body)
            admitted = node.submit_tx(again)
        except TxError:
            return
        if admitted.tx.hash not in node.mempool:
            raise harness.Finding("an admitted transaction is not in the mempool")

    return one_input


if __name__ == "__main__":
    harness.main("tx")
