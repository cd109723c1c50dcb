"""How a home agent turns forecasts into bids: battery first, then the market, within a price band.

Per slot the home covers its own load from its PV, then from its battery; a surplus charges the
battery, and what is left over is offered; a deficit the battery cannot cover is bid for.  It
offers only what it expects to deliver less a safety margin, and bids for what it expects to
need less the same margin (what it does not buy it takes from the grid as before, at no loss
against net metering).  The margin widens after a settlement shows a shortfall or unused energy
and narrows slowly while deliveries are on target.

Prices (TransX's prototype band): a reference at the mid-market rate of recent slots (the
midpoint of feed-in and retail without one), moved by up to +/-20% by the recent ratio of demand
to supply; a seller asks 20% below it, a buyer offers 20% above, clamped to the grid tariffs, so
any trade beats the grid for both sides.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from consensus.rules.transactions import BUY, SELL, Bid, bid_lock, lock_rate

MIN_BID_WH = 100  # smaller quantities are not worth a transaction fee
BAND = 0.2


@dataclass
class Battery:
    capacity_wh: int = 10_000
    power_w: int = 5_000
    soc_wh: int = 5_000
    efficiency: float = 0.92  # round trip, taken on charging
    reserve: float = 0.1  # never planned below this share of capacity

    def step(self, net_wh: float, slot_seconds: int) -> float:
        """Run one slot: absorb a surplus (net > 0) or cover a deficit (net < 0) as far as power and
        charge allow; returns what is left for the grid or the market (same sign convention)."""
        limit = self.power_w * slot_seconds / 3600
        if net_wh > 0:
            room = (self.capacity_wh - self.soc_wh) / self.efficiency
            into = min(net_wh, limit, max(0.0, room))
            self.soc_wh += int(into * self.efficiency)
            return net_wh - into
        floor = self.capacity_wh * self.reserve
        out = min(-net_wh, limit, max(0.0, self.soc_wh - floor))
        self.soc_wh -= int(out)
        return net_wh + out

    def copy(self) -> "Battery":
        return Battery(self.capacity_wh, self.power_w, self.soc_wh, self.efficiency, self.reserve)


@dataclass(frozen=True)
class PlannedBid:
    slot: int
    side: int
    wh: int
    price: int  # micro-units per kWh
    expected_price: int

    def to_bid(self, zone: int, gate_closure: int) -> Bid:
        """The bid transaction's body, valid until its slot's gate closes."""
        return Bid(self.side, self.slot, self.wh, self.price, zone, self.slot - gate_closure)


def affordable(bids: list[PlannedBid], funds: int, retail: int, fee: int) -> list[PlannedBid]:
    """The bids, in order, that `funds` can carry: each locks its escrow or delivery collateral
    (transactions.bid_lock) and pays `fee`; the first that does not fit whole is cut to what does
    (if that is still worth a fee), and the rest are left out."""
    out, left = [], funds
    for b in bids:
        wh = b.wh
        if bid_lock(b.side, wh, b.price, retail) + fee > left:
            per_kwh = lock_rate(b.side, b.price, retail)
            wh = (left - fee) * 1000 // per_kwh if per_kwh and left > fee else 0
        if wh < MIN_BID_WH:
            break
        out.append(replace(b, wh=wh))
        left -= bid_lock(b.side, wh, b.price, retail) + fee
    return out


def price_band(feed_in: int, retail: int, supply_wh: int = 0, demand_wh: int = 0,
               recent_price: int | None = None) -> tuple[int, int, int]:
    """(reference, sell limit, buy limit) in micro-units per kWh."""
    mid = recent_price if recent_price else (feed_in + retail) // 2
    tilt = BAND * (demand_wh - supply_wh) / (demand_wh + supply_wh) if demand_wh + supply_wh else 0.0
    ref = min(retail, max(feed_in, int(mid * (1 + tilt))))
    return ref, max(feed_in, int(ref * (1 - BAND))), min(retail, int(ref * (1 + BAND)))


class Strategy:
    """The home's bidding policy and what it has learnt from settlements."""

    def __init__(self, margin: float = 0.1, lo: float = 0.03, hi: float = 0.5) -> None:
        self.margin, self.lo, self.hi = margin, lo, hi

    def plan(self, first_slot: int, pv_wh: list[int], load_wh: list[int], battery: Battery, slot_seconds: int,
             band: tuple[int, int, int]) -> list[PlannedBid]:
        """Bids for slots first_slot.. (one per forecast value), simulating the battery on a copy."""
        ref, sell_at, buy_at = band
        b = battery.copy()
        bids = []
        for k, (pv, load) in enumerate(zip(pv_wh, load_wh)):
            left = b.step(pv - load, slot_seconds)
            wh = int(abs(left) * (1 - self.margin))
            if wh >= MIN_BID_WH:
                side = SELL if left > 0 else BUY
                bids.append(PlannedBid(first_slot + k, side, wh, sell_at if side == SELL else buy_at, ref))
        return bids

    def learn(self, cleared_wh: int, deviation_wh: int) -> None:
        """After a settlement: `deviation_wh` is the shortfall (seller) or unused energy (buyer) on
        `cleared_wh`; widen the margin by half the miss, or narrow it a little when on target."""
        if cleared_wh <= 0:
            return
        miss = deviation_wh / cleared_wh
        self.margin = min(self.hi, max(self.lo, self.margin + 0.5 * miss if miss > 0.01 else self.margin * 0.95))


def expected_gain(bids: list[PlannedBid], feed_in: int, retail: int) -> int:
    """Micro-units the bids bring against net metering if they clear at the reference price: a sale
    earns it instead of the feed-in tariff, a purchase pays it instead of retail."""
    total = 0
    for b in bids:
        total += (b.expected_price - feed_in) * b.wh // 1000 if b.side == SELL else \
            (retail - b.expected_price) * b.wh // 1000
    return total


__all__ = ["Battery", "MIN_BID_WH", "PlannedBid", "Strategy", "expected_gain", "price_band"]
