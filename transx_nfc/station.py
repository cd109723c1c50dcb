"""A charging station: what a tap does, checked against the chain through the node's API.

Idle, a tap with a valid authorisation opens a session on chain and enables the charger; the same
card tapped again (after `min_seconds`), `transx station stop`, or the charger's unplug signal
(SIGUSR1) stops it: the session is closed on chain with the energy delivered, and a signed receipt
goes back onto the card (at once for a tap, else at the owner's next tap).  Anything wrong is one
line on the console, a counter in the metrics, and the charger stays off.

The charger and the EV battery are simulated (power, capacity, `speed` to compress time for demos).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from consensus.rules import keys
from consensus.rules.charging import Authorisation, Receipt, session_cost, sign_receipt
from transxnode.client.node_api import ApiClient, ClientError
from consensus.rules.transactions import SessionClose, SessionOpen, escrow_for
from transxnode.client.wallet import send

from .metrics import StationMetrics
from .records import CardContents, card_records

MAX_BEHIND_SLOTS = 2


class Refused(Exception):
    """The charger stays off; `outcome` names the reason for the metrics."""

    def __init__(self, outcome: str, message: str) -> None:
        super().__init__(message)
        self.outcome = outcome


@dataclass
class Charge:
    auth: Authorisation
    soc_start: int
    started: float  # monotonic seconds

    @property
    def session(self) -> bytes:
        return self.auth.session_id


class Station:
    def __init__(self, client: ApiClient, key, *, price: int, power_w: int = 7_400, battery_wh: int = 60_000,
                 min_seconds: float = 2.0, speed: float = 1.0, say: Callable[[str], None] = print,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.client, self.key, self.price = client, key, price
        self.power_w, self.battery_wh, self.min_seconds, self.speed = power_w, battery_wh, min_seconds, speed
        self.say, self.clock = say, clock
        self.metrics = StationMetrics()
        self.charge: Charge | None = None
        self.waiting_receipts: dict[bytes, Receipt] = {}  # owner public key -> receipt not known to be on the card

    # ------------------------------------------------------------- taps
    def on_card(self, card: CardContents) -> list | None:
        """Handle a tap of a valid card; returns the NDEF records to write back, or None."""
        auth = card.auth
        if self.charge is not None:
            if auth.session_id != self.charge.session:
                return self._refuse("busy", "this charger is in use by another EV")
            if self.clock() - self.charge.started < self.min_seconds:
                self.say("already charging: tap again to stop")
                return None
            receipt = self.stop("tap")
            return card_records(auth, card.soc, card.receipts + [receipt]) if receipt is not None else None
        waiting = self.waiting_receipts.get(auth.owner)
        if waiting is not None and waiting in card.receipts:  # written at an earlier tap after all
            self.written_to_card(auth.owner)
        elif waiting is not None:
            self.say(f"writing the receipt of session {waiting.session.hex()[:16]} to your card; tap again to charge")
            return card_records(auth, card.soc, card.receipts + [waiting])
        try:
            self._open(card)
        except Refused as e:
            return self._refuse(e.outcome, str(e))
        except ClientError as e:
            return self._refuse("node_unreachable", f"cannot check the card with the node ({e})")
        return None

    def written_to_card(self, owner: bytes) -> None:
        """The card of `owner` now holds its receipt: stop offering it at the next tap."""
        self.waiting_receipts.pop(owner, None)

    def on_bad_card(self, outcome: str, message: str) -> None:
        self._refuse(outcome, message)

    def _refuse(self, outcome: str, message: str) -> None:
        self.metrics.tap_refused(outcome)
        self.say(f"charger stays off: {message}")
        return None

    def _open(self, card: CardContents) -> None:
        auth = card.auth
        try:
            info = self.client.get("/api/node")
        except ClientError as e:
            raise Refused("node_unreachable", f"cannot reach the node ({e})") from None
        if info.get("behind_slots", 0) > MAX_BEHIND_SLOTS:
            raise Refused("not_synced", f"the node is not synced ({info['behind_slots']} slots behind); try again soon")
        if auth.chain_id != info["chain_id"]:
            raise Refused("foreign_network", f"the card is for network {auth.chain_id!r}, this station is on "
                                             f"{info['chain_id']!r}")
        if auth.expiry < time.time_ns() // 1_000_000:
            raise Refused("expired", "the authorisation on this card has expired: renew it in your wallet")
        try:
            self.client.get(f"/api/session/{auth.session_id.hex()}")
            raise Refused("replayed", "this authorisation was already used: a new one is needed for each session")
        except ClientError as e:
            if e.status != 404:
                raise Refused("node_unreachable", f"cannot check the authorisation with the node ({e})") from None
        if self.price > auth.max_price:
            raise Refused("price", f"this station charges {self.price / 1e6:g}/kWh, above the card's limit of "
                                   f"{auth.max_price / 1e6:g}/kWh")
        owner = keys.encode_address(auth.owner_address)
        need = escrow_for(auth.max_wh, self.price)
        balance = self.client.get(f"/api/address/{owner}?limit=1")["balance"]
        if balance < need:
            raise Refused("insufficient_balance", f"the balance {balance / 1e6:,.2f} does not cover "
                                                  f"{auth.max_wh / 1000:g} kWh at {self.price / 1e6:g}/kWh "
                                                  f"({need / 1e6:,.2f})")
        soc = card.soc if card.soc is not None else 0
        try:
            send(self.client, self.key, SessionOpen(auth, self.price, soc))
        except ClientError as e:
            raise Refused("refused_by_chain", f"the node refused the session: {e}") from None
        self.charge = Charge(auth, soc, self.clock())
        self.metrics.session_opened()
        self.say(f"charger ENABLED for {auth.ev_id} ({owner[:14]}...): up to {auth.max_wh / 1000:g} kWh at "
                 f"{self.price / 1e6:g}/kWh, session {auth.session_id.hex()[:16]}")

    # ------------------------------------------------------------- stop
    def stop(self, reason: str) -> Receipt | None:
        """Close the running session on chain; the signed receipt, or None if nothing was charging."""
        c = self.charge
        if c is None:
            return None
        hours = (self.clock() - c.started) * self.speed / 3600
        delivered = min(c.auth.max_wh, int(self.power_w * hours))
        soc_end = min(100, c.soc_start + delivered * 100 // self.battery_wh)
        try:
            info = self.client.get("/api/node")
            send(self.client, self.key, SessionClose(c.session, delivered, soc_end))
        except ClientError as e:
            if e.reason == "ended":  # closed before, or expired: the chain has settled it, nothing to retry
                self.charge = None
                self.metrics.charging.set(0)
                self.say(f"charger stopped ({reason}); the chain had already ended the session: {e}")
                return None
            self.say(f"charger stopped ({reason}), but closing the session failed: {e}; will retry")
            return None
        self.charge = None
        self.metrics.session_closed(delivered)
        amount = session_cost(delivered, self.price)
        receipt = sign_receipt(self.key, Receipt(info["chain_id"], bytes(32), c.session, delivered, amount,
                                                 c.soc_start, soc_end, time.time_ns() // 1_000_000))
        self.say(f"charger stopped ({reason}): {delivered / 1000:.3f} kWh, {amount / 1e6:,.4f} paid, state of "
                 f"charge {c.soc_start}% -> {soc_end}%, session {c.session.hex()[:16]}")
        self.waiting_receipts[c.auth.owner] = receipt  # until the card is known to hold it
        return receipt
