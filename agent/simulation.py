"""A market day of simulated homes on a real chain, in one process, on a virtual clock.

Every home runs the agent (forecasts, battery, strategy.py) and posts its day-ahead bids; the
chain (LevelDB in a temporary directory, the real solver, the real ledger) clears each half-hour
slot; a physical model then decides what each home really produced and used (clouds the
forecast did not see, a load off its profile), the home's battery steers towards what it
committed, and its meter reports the result, which the chain settles.  At the end every home's
money is compared with what the same flows would have earned under net metering (imports at the
retail tariff, exports at the feed-in tariff): that is the figure the market must beat.

Used by tests/unit/test_agent.py (20 homes) and bench/market_day.py (100 and 1,000).
"""

from __future__ import annotations

import hashlib
import math
import random
import tempfile
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from nacl.signing import SigningKey

from consensus.proposer import solve_slot
from consensus.rules import genesis as G
from consensus.chain.chain import Chain
from consensus.rules.keys import address_of_key, public_key
from consensus.rules.metering import sign_reading
from consensus.node import Node
from consensus.chain.store import Store
from consensus.rules.transactions import SELL, RegisterMeter, sign_tx

from .forecast import Site, clear_sky_pv_wh, cloud_factor, typical_load_wh
from .strategy import Battery, PlannedBid, Strategy, expected_gain, price_band

SLOT_SECONDS = 1800
DAY = 24 * 3600 // SLOT_SECONDS
LEAD = 4  # slots before the day starts: the day-ahead bids' block, then gate closure
FUNDS = 1_000_000_000  # 1,000 tokens a home
ROLES = (("pv", 0.55), ("home", 0.35), ("station", 0.10))
UTC_OFFSET = 8  # Kuala Lumpur


@dataclass
class Home:
    key: SigningKey
    meter: SigningKey
    role: str
    zone: int
    site: Site | None  # None: no panels
    daily_kwh: float
    battery: Battery | None
    strategy: Strategy = field(default_factory=Strategy)
    load_scale: float = 1.0  # this home's load against its typical profile, unknown to the agent
    nonce: int = 0
    exported: dict[int, int] = field(default_factory=dict)  # slot -> Wh, metered
    imported: dict[int, int] = field(default_factory=dict)
    bids: list[PlannedBid] = field(default_factory=list)

    @cached_property
    def address(self) -> bytes:
        return address_of_key(self.key)


@dataclass(frozen=True)
class HomeResult:
    role: str
    market: int  # micro-units: the chain balance change plus the grid outside the chain
    net_metering: int  # micro-units the same flows earn with the grid alone
    sold_wh: int
    bought_wh: int
    shortfall_wh: int
    unused_wh: int
    fees: int

    @property
    def savings(self) -> int:
        return self.market - self.net_metering


@dataclass
class DayResult:
    homes: list[HomeResult]
    traded_wh: int
    welfare_ratio: float | None  # Nash-bargaining welfare / maximum welfare, over the day's cleared slots
    expected_gain: int  # what the agents' plans expected against net metering
    solve_seconds: float

    @property
    def mean_savings(self) -> float:
        return sum(h.savings for h in self.homes) / len(self.homes)


def _station_hour(hour: float) -> float:
    return 3.0 if 18 <= hour < 23 else 1.5 if hour >= 23 or hour < 6 else 1.0


_STATION_DAY = 5 * 3.0 + 7 * 1.5 + 12 * 1.0


def _station_share(hour: float) -> float:
    """A charging station's share of its daily energy per hour at local `hour`."""
    return _station_hour(hour) / _STATION_DAY


def _key(seed: int, label: str) -> SigningKey:
    return SigningKey(hashlib.blake2b(f"transx-day/{seed}/{label}".encode(), digest_size=32).digest())


class DaySimulation:
    def __init__(self, homes: int = 20, seed: int = 0, datadir: str | None = None, cloudiness: float | None = None,
                 progress=None) -> None:
        self.rng = random.Random(seed)
        self.seed = seed
        self.progress = progress or (lambda msg: None)
        # The day starts at local midnight; genesis LEAD slots earlier.
        day0 = 1_767_225_600 - UTC_OFFSET * 3600 + 86_400 * (seed % 300)  # 2026-01-01 00:00 in Kuala Lumpur
        self.day_start_slot = LEAD + 1
        self.homes = [self._home(k) for k in range(homes)]
        self._by_address = {h.address: h for h in self.homes}
        solver = _key(seed, "solver")
        doc = G.dev_genesis([h.address for h in self.homes] + [address_of_key(solver)], [address_of_key(solver)],
                            slot_seconds=SLOT_SECONDS, chain_id="transx-day",
                            start=day0 - self.day_start_slot * SLOT_SECONDS)
        doc["balances"] = {k: FUNDS for k in doc["balances"]}
        self.g = G.genesis_from_json(doc)
        self._tmp = tempfile.TemporaryDirectory() if datadir is None else None
        self.store = Store(str(Path(datadir or self._tmp.name) / "db"))
        self.chain = Chain(self.store, self.g)
        self.node = Node(self.chain, solver)
        self.solver_address = address_of_key(solver)
        # The weather: the day's cloud cover, which the forecast sees with an error.
        self.cloud = self.rng.uniform(0.1, 0.6) if cloudiness is None else cloudiness
        self.cloud_forecast = min(1.0, max(0.0, self.cloud + self.rng.gauss(0, 0.1)))
        self.solve_seconds = 0.0
        self._welfare: list[tuple[float, float]] = []

    def close(self) -> None:
        self.store.close()
        if self._tmp is not None:
            self._tmp.cleanup()

    # ------------------------------------------------------------------ setup
    def _home(self, k: int) -> Home:
        rng = self.rng
        role = rng.choices([r for r, _ in ROLES], [w for _, w in ROLES])[0]
        site = Site(kwp=rng.choice([3.0, 4.0, 5.0, 6.0, 8.0]), tilt=rng.uniform(5, 25),
                    azimuth=rng.uniform(90, 270)) if role == "pv" else None
        battery = Battery(capacity_wh=rng.choice([5_000, 10_000, 13_500]), soc_wh=0) \
            if role == "pv" and rng.random() < 0.5 else None
        if battery is not None:
            battery.soc_wh = int(battery.capacity_wh * 0.3)
        daily = {"pv": rng.uniform(8, 16), "home": rng.uniform(8, 20), "station": rng.uniform(60, 160)}[role]
        return Home(_key(self.seed, f"home{k}"), _key(self.seed, f"meter{k}"), role, rng.randrange(3), site, daily,
                    battery, load_scale=rng.uniform(0.9, 1.1))

    def _load_profile(self, h: Home, start_ms: int, slots: int) -> list[int]:
        if h.role == "station":  # EV charging: evenings most, nights, a little by day
            out = []
            for k in range(slots):
                hour = ((start_ms / 1000 + (k + 0.5) * SLOT_SECONDS) / 3600 + UTC_OFFSET) % 24
                out.append(int(h.daily_kwh * 1000 * _station_share(hour) * SLOT_SECONDS / 3600))
            return out
        return typical_load_wh(h.daily_kwh, start_ms, SLOT_SECONDS, slots, tz_hours=UTC_OFFSET)

    def _submit(self, h: Home, body) -> None:
        tx = sign_tx(h.key, chain_id=self.g.chain_id, nonce=h.nonce, fee=self.g.min_fee, body=body)
        self.node.submit_tx(tx)
        h.nonce += 1

    # -------------------------------------------------------------------- run
    def run(self) -> DayResult:
        g = self.g
        first, last = self.day_start_slot, self.day_start_slot + DAY - 1
        start_ms = g.slot_start_ms(first)
        ref, sell_at, buy_at = price_band(g.feed_in, g.retail)
        self._pv_clear = {}
        planned = 0
        for h in self.homes:
            self._submit(h, RegisterMeter(public_key(h.meter)))
            load = self._load_profile(h, start_ms, DAY)
            pv = [0] * DAY
            if h.site is not None:
                clear = clear_sky_pv_wh(h.site, start_ms, SLOT_SECONDS, DAY)
                self._pv_clear[h.address] = clear
                pv = [int(w * cloud_factor(self.cloud_forecast)) for w in clear]
            h.bids = h.strategy.plan(first, pv, load, h.battery or Battery(0, 0, 0), SLOT_SECONDS,
                                     (ref, sell_at, buy_at))
            planned += expected_gain(h.bids, g.feed_in, g.retail)
        self.progress(f"{len(self.homes)} homes planned {sum(len(h.bids) for h in self.homes):,} day-ahead bids")
        balances = {h.address: self.chain.state().account(h.address).balance for h in self.homes}
        by_slot: dict[int, list[tuple[Home, PlannedBid]]] = {}
        for h in self.homes:
            for b in h.bids:
                by_slot.setdefault(b.slot, []).append((h, b))
        traded = 0
        for height in range(1, last + g.meter_window + 2):
            # The plan was made a day ahead; each bid goes out in the last block before its slot's gate
            # closes, so a day of 1,000 homes' bids never crowds one block or the mempool.
            for h, b in by_slot.get(height + g.gate_closure, []):
                self._submit(h, b.to_bid(h.zone, g.gate_closure))
            traded += self._produce(height)
            if first <= height <= last:
                self._deliver(height)
            if height % 8 == 0:
                self.progress(f"block {height}/{last + g.meter_window + 1}, {traded / 1000:,.0f} kWh traded")
        return self._results(balances, traded, planned)

    def _produce(self, height: int) -> int:
        import time

        market, pairs = self.chain.market(height)
        t0 = time.perf_counter()
        solution = solve_slot(market, pairs, self.g)
        self.solve_seconds += time.perf_counter() - t0
        done = self.node.propose(solution, self.g.slot_start_ms(height))
        wh = sum(t.wh for t in done.block.clearing.trades)
        if wh:
            self._welfare.append(_welfare(market.instance, pairs, done.block.clearing))
        return wh

    def _deliver(self, slot: int) -> None:
        """Slot `slot` happens: true PV and load, the battery steering towards what was cleared, the meter."""
        state = self.chain.state()
        cleared: dict[bytes, int] = {}  # address -> Wh (+ sold, - bought)
        for _, rec in state.slot_bids(slot):
            if rec.traded_wh:
                cleared[rec.owner] = cleared.get(rec.owner, 0) + (rec.traded_wh if rec.side == SELL else -rec.traded_wh)
        k = slot - self.day_start_slot
        start_ms = self.g.slot_start_ms(slot)
        for h in self.homes:
            load = self._load_profile(h, start_ms, 1)[0] * h.load_scale * math.exp(self.rng.gauss(0, 0.15))
            pv = 0.0
            if h.site is not None:
                cover = min(1.0, max(0.0, self.cloud + self.rng.gauss(0, 0.15)))
                pv = self._pv_clear[h.address][k] * cloud_factor(cover)
            target = cleared.get(h.address, 0)
            net = pv - load
            if h.battery is not None:
                net = target + h.battery.step(net - target, SLOT_SECONDS)
            wh = int(round(net))
            h.exported[slot], h.imported[slot] = max(0, wh), max(0, -wh)
            if target:
                self._submit(h, sign_reading(h.meter, chain_id=self.g.chain_id, account=h.address, slot=slot,
                                             imported_wh=h.imported[slot], exported_wh=h.exported[slot]))
        # The agents learn from the slot that settles with the next block.
        settled = slot - self.g.meter_window - 1
        if settled >= self.day_start_slot:
            for addr, s in state.settlements_of_slot(settled):
                home = self._by_address.get(addr)
                if home is not None:
                    home.strategy.learn(s.sold_wh or s.bought_wh, s.shortfall_wh or s.unused_wh)

    # ---------------------------------------------------------------- results
    def _results(self, balances: dict[bytes, int], traded: int, planned: int) -> DayResult:
        g, state = self.g, self.chain.state()
        out = []
        for h in self.homes:
            by_slot = dict(state.settlements_of(h.address))
            rows = list(by_slot.values())
            sold = sum(s.sold_wh for s in rows)
            bought = sum(s.bought_wh for s in rows)
            outside = 0
            for slot in h.exported:
                s = by_slot.get(slot)
                e, i = h.exported[slot], h.imported[slot]
                outside += g.feed_in * max(0, e - (s.sold_wh if s else 0)) // 1000
                outside -= -(-g.retail * max(0, i - (s.bought_wh if s else 0)) // 1000)
            baseline = sum(g.feed_in * e // 1000 for e in h.exported.values()) - \
                sum(-(-g.retail * i // 1000) for i in h.imported.values())
            change = state.account(h.address).balance - balances[h.address]
            out.append(HomeResult(h.role, change + outside, baseline, sold, bought,
                                  sum(s.shortfall_wh for s in rows), sum(s.unused_wh for s in rows),
                                  h.nonce * g.min_fee))
        ratios = [n / m for n, m in self._welfare if m > 0]
        return DayResult(out, traded, sum(ratios) / len(ratios) if ratios else None, planned, self.solve_seconds)


def _welfare(inst, pairs, clearing) -> tuple[float, float]:
    """(the clearing's welfare, the most any clearing over the same candidate pairs could reach), in
    micro-units: gains from trade against the grid, net of network charges.  Their ratio is the price
    of fairness: what splitting the gains fairly (Nash bargaining) costs against maximising them."""
    import numpy as np
    from scipy.optimize import linprog
    from scipy.sparse import coo_matrix

    margin = {(int(s), int(b)): int(m) for s, b, m in zip(pairs.seller, pairs.buyer, pairs.margin)}
    got = sum(margin.get((t.seller, t.buyer), 0) * t.wh for t in clearing.trades) / 1000
    n, n_s = len(pairs), len(inst.sellers)
    rows = np.concatenate([pairs.seller, n_s + pairs.buyer])
    a = coo_matrix((np.ones(2 * n), (rows, np.tile(np.arange(n), 2))), shape=(n_s + len(inst.buyers), n))
    caps = [p.wh for p in inst.sellers] + [p.wh for p in inst.buyers]
    best = linprog(-pairs.margin.astype(float) / 1000, A_ub=a.tocsr(), b_ub=caps, bounds=(0, None), method="highs")
    return got, -best.fun if best.status == 0 else float("nan")


__all__ = ["DayResult", "DaySimulation", "HomeResult"]
