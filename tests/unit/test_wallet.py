"""The wallet's `send` against a scripted node API: what it signs, when it signs again, what it reports."""

from __future__ import annotations

import pytest
from chain_support import key

from transxnode.client import wallet
from transxnode.client.node_api import ClientError
from consensus.rules.keys import address_of_key
from consensus.rules.transactions import Transfer, decode_tx

KEY = key("wallet-sender")


class ScriptedApi:
    """Answers /api/node and /api/address like a node; each submit takes the next scripted answer (a
    ClientError is raised), and every signed transaction is kept."""

    def __init__(self, answers: list, pending_nonces: list[int]) -> None:
        self.answers, self.pending_nonces, self.submitted = list(answers), list(pending_nonces), []

    def get(self, path: str):
        if path == "/api/node":
            return {"chain_id": "transx-dev", "min_fee": 1_000}
        return {"pending_nonce": self.pending_nonces.pop(0) if len(self.pending_nonces) > 1 else self.pending_nonces[0]}

    def submit(self, raw: bytes):
        self.submitted.append(decode_tx(raw))
        answer = self.answers.pop(0)
        if isinstance(answer, ClientError):
            raise answer
        return answer


def _nonce_refused() -> ClientError:
    return ClientError("a transaction with nonce 3 is already pending; replace it with a higher fee", 422, "nonce")


@pytest.fixture(autouse=True)
def no_sleep(monkeypatch):
    monkeypatch.setattr(wallet.time, "sleep", lambda s: None)


def test_a_nonce_refusal_is_signed_again_at_the_nodes_next_nonce_and_sent():
    api = ScriptedApi([_nonce_refused(), {"accepted": True, "hash": "ab" * 32}], [3, 4])
    out = wallet.send(api, KEY, Transfer(address_of_key(key("payee")), 5))
    assert [t.nonce for t in api.submitted] == [3, 4]
    assert out["nonce"] == 4 and out["hash"] == "ab" * 32


def test_a_nonce_refusal_that_persists_is_reported_never_taken_for_sent():
    api = ScriptedApi([_nonce_refused()] * wallet.SEND_ATTEMPTS, [3])
    with pytest.raises(ClientError) as refused:
        wallet.send(api, KEY, Transfer(address_of_key(key("payee")), 5))
    assert refused.value.reason == "nonce" and len(api.submitted) == wallet.SEND_ATTEMPTS


def test_any_other_refusal_is_reported_at_once():
    api = ScriptedApi([ClientError("slot 9 closed for bids", 422, "gate_closed")], [0])
    with pytest.raises(ClientError, match="closed"):
        wallet.send(api, KEY, Transfer(address_of_key(key("payee")), 5))
    assert len(api.submitted) == 1
