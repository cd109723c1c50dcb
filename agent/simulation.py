"""A market day of simulated homes on a real chain, in one process, on a virtual clock.

Every home runs the agent (forecasts, battery, strategy.py) and posts its day-ahead bids; the
chain (LevelDB in a temporary directory, the real solver, the real ledger) clears each half-hour
slot; a physical model then decides what each home really produced and used (clouds the
forecast did not see, a load off its profile), the home's battery steers towards what it
committed, and its meter reports the result, which the chain settles.  At the end every home's
money is compared with what the same flows would have earned under net metering (imports at the
retail tariff, exports at the feed-in tariff): that is the figure the market must beat.

The site, weather, homes and tariffs come from a Scenario (agent/scenario.py; by default the shipped
scenarios/kuala_lumpur.toml).  `tables()` gives the day as `transx export` writes a chain range
(transxnode/client/export.py) and `plot_day` draws it.  Used by tests/unit/test_agent.py (20 homes) and
bench/market_day.py (100 and 1,000).
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
from .scenario import ROLES, Scenario
from .strategy import Battery, PlannedBid, Strategy, expected_gain, price_band

LEAD = 4  # slots before the day starts: the day-ahead bids' block, then gate closure


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
    pv_wh: dict[int, int] = field(default_factory=dict)  # slot -> what really happened, for plots
    load_wh: dict[int, int] = field(default_factory=dict)
    soc_wh: dict[int, int] = field(default_factory=dict)  # the battery's charge at the slot's end

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
    def __init__(self, homes: int | None = None, seed: int = 0, datadir: str | None = None,
                 cloudiness: float | None = None, progress=None, scenario: Scenario | None = None) -> None:
        """`homes` and `cloudiness` override the scenario's (default: Scenario(), the shipped default)."""
        self.sc = sc = scenario or Scenario()
        self.rng = random.Random(seed)
        self.seed = seed
        self.progress = progress or (lambda msg: None)
        self.slot_seconds, self.day_slots = sc.slot_seconds, sc.slots
        # The day starts at local midnight; genesis LEAD slots earlier.
        day0 = sc.day_start(seed)
        self.day_start_slot = LEAD + 1
        self.homes = [self._home(k) for k in range(sc.homes if homes is None else homes)]
        self._by_address = {h.address: h for h in self.homes}
        solver = _key(seed, "solver")
        doc = G.dev_genesis([h.address for h in self.homes] + [address_of_key(solver)], [address_of_key(solver)],
                            slot_seconds=self.slot_seconds, chain_id="transx-day",
                            start=day0 - self.day_start_slot * self.slot_seconds)
        doc["balances"] = {k: sc.funds for k in doc["balances"]}
        doc["grid"] = {"feed_in": sc.feed_in, "retail": sc.retail}
        self.g = G.genesis_from_json(doc)
        self._tmp = tempfile.TemporaryDirectory() if datadir is None else None
        self.store = Store(str(Path(datadir or self._tmp.name) / "db"))
        self.chain = Chain(self.store, self.g)
        self.node = Node(self.chain, solver)
        self.solver_address = address_of_key(solver)
        # The weather: the day's cloud cover, which the forecast sees with an error.
        if cloudiness is None:
            cloudiness = self.rng.uniform(*sc.cloudiness) if sc.cloudiness is not None else sc.cloud
        self.cloud = cloudiness
        self.cloud_forecast = min(1.0, max(0.0, self.cloud + self.rng.gauss(0, sc.forecast_error)))
        self.solve_seconds = 0.0
        self._welfare: list[tuple[float, float]] = []

    def close(self) -> None:
        self.store.close()
        if self._tmp is not None:
            self._tmp.cleanup()

    # ------------------------------------------------------------------ setup
    def _home(self, k: int) -> Home:
        """Home `k`, drawn from the scenario's mix (the draws in the order the simulation always made them,
        so a scenario with the old constants gives the old homes)."""
        rng, sc = self.rng, self.sc
        role = rng.choices(ROLES, [sc.roles[r].share for r in ROLES])[0]
        r = sc.roles[role]
        site = Site(sc.latitude, sc.longitude, kwp=rng.choice(r.kwp), tilt=rng.uniform(*r.tilt),
                    azimuth=rng.uniform(*r.azimuth), altitude=sc.altitude) if r.kwp else None
        battery = Battery(capacity_wh=rng.choice(r.battery_wh), soc_wh=0) \
            if r.battery_share and rng.random() < r.battery_share else None
        if battery is not None:
            battery.soc_wh = int(battery.capacity_wh * r.battery_soc)
        daily = {n: rng.uniform(*sc.roles[n].daily_kwh) for n in ROLES}[role]
        return Home(_key(self.seed, f"home{k}"), _key(self.seed, f"meter{k}"), role, rng.randrange(sc.zones), site,
                    daily, battery, load_scale=rng.uniform(*sc.load_scale))

    def _load_profile(self, h: Home, start_ms: int, slots: int) -> list[int]:
        if h.role == "station":  # EV charging: evenings most, nights, a little by day
            out = []
            for k in range(slots):
                hour = ((start_ms / 1000 + (k + 0.5) * self.slot_seconds) / 3600 + self.sc.utc_offset) % 24
                out.append(int(h.daily_kwh * 1000 * _station_share(hour) * self.slot_seconds / 3600))
            return out
        return typical_load_wh(h.daily_kwh, start_ms, self.slot_seconds, slots, tz_hours=self.sc.utc_offset)

    def _pv_sky(self, site: Site, start_ms: int) -> list[float]:
        """The day's PV Wh per slot before clouds: clear sky, or the scenario's TMY-like weather file."""
        if self.sc.tmy_csv:
            from .scenario import tmy_pv_wh

            return tmy_pv_wh(self.sc, site, start_ms, self.day_slots)
        return clear_sky_pv_wh(site, start_ms, self.slot_seconds, self.day_slots)

    def tables(self) -> dict[str, list[dict]]:
        """The day's chain as `transx export` writes it: bids, trades, clearings, settlements, sessions."""
        from transxnode.client.export import build_tables

        return build_tables(chain_reader(self.chain), 1, self.chain.height)

    def _submit(self, h: Home, body) -> None:
        tx = sign_tx(h.key, chain_id=self.g.chain_id, nonce=h.nonce, fee=self.g.min_fee, body=body)
        self.node.submit_tx(tx)
        h.nonce += 1

    # -------------------------------------------------------------------- run
    def run(self) -> DayResult:
        g = self.g
        first, last = self.day_start_slot, self.day_start_slot + self.day_slots - 1
        start_ms = g.slot_start_ms(first)
        ref, sell_at, buy_at = price_band(g.feed_in, g.retail)
        self._pv_clear = {}
        planned = 0
        for h in self.homes:
            self._submit(h, RegisterMeter(public_key(h.meter)))
            load = self._load_profile(h, start_ms, self.day_slots)
            pv = [0] * self.day_slots
            if h.site is not None:
                clear = self._pv_sky(h.site, start_ms)
                self._pv_clear[h.address] = clear
                pv = [int(w * cloud_factor(self.cloud_forecast)) for w in clear]
            h.bids = h.strategy.plan(first, pv, load, h.battery or Battery(0, 0, 0), self.slot_seconds,
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
            load = self._load_profile(h, start_ms, 1)[0] * h.load_scale * \
                math.exp(self.rng.gauss(0, self.sc.load_variation))
            pv = 0.0
            if h.site is not None:
                cover = min(1.0, max(0.0, self.cloud + self.rng.gauss(0, self.sc.local_variation)))
                pv = self._pv_clear[h.address][k] * cloud_factor(cover)
            target = cleared.get(h.address, 0)
            net = pv - load
            if h.battery is not None:
                net = target + h.battery.step(net - target, self.slot_seconds)
                h.soc_wh[slot] = int(h.battery.soc_wh)
            wh = int(round(net))
            h.pv_wh[slot], h.load_wh[slot] = int(pv), int(load)
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


def chain_reader(chain: Chain):
    """A GET over `chain` in-process, answering the API paths transxnode/client/export.py reads with the
    API's own views, so the simulation's tables are the ones `transx export` writes from a node."""
    from transxnode.api import views

    def get(path: str):
        kind, ref = path.removeprefix("/api/").split("/", 1)
        if kind == "block":
            return views.block_json(chain, chain.block_at(int(ref)))
        if kind == "market":
            return views.slot_view(chain, int(ref))
        if kind == "session":
            sid = bytes.fromhex(ref)
            return views.session_json(sid, chain.state().session(sid))
        raise KeyError(path)

    return get


def plot_day(sim: DaySimulation, day: DayResult, out: str | Path, home: int | None = None) -> list[Path]:
    """home.png (one home's PV, load, battery and trades over the day; by default the PV home with a
    battery that traded most) and savings.png (each home's saving against net metering), with matplotlib."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from transxnode.client.export import prepare_dir

    path = prepare_dir(out)
    state = sim.chain.state()
    slots = list(range(sim.day_start_slot, sim.day_start_slot + sim.day_slots))
    if home is None:
        ranked = sorted(range(len(sim.homes)), key=lambda k: (sim.homes[k].battery is not None,
                                                              day.homes[k].sold_wh + day.homes[k].bought_wh))
        home = ranked[-1]
    h = sim.homes[home]
    traded = {slot: 0 for slot in slots}
    for slot in slots:
        for _, rec in state.slot_bids(slot):
            if rec.owner == h.address and rec.traded_wh:
                traded[slot] += rec.traded_wh if rec.side == SELL else -rec.traded_wh
    hours = [(k + 0.5) * sim.slot_seconds / 3600 for k in range(len(slots))]
    fig, ax = plt.subplots(figsize=(9, 4))
    ax.plot(hours, [h.pv_wh.get(s, 0) / 1000 for s in slots], label="PV", color="tab:orange")
    ax.plot(hours, [h.load_wh.get(s, 0) / 1000 for s in slots], label="load", color="tab:blue")
    ax.bar(hours, [traded[s] / 1000 for s in slots], width=sim.slot_seconds / 3600 * 0.8, alpha=0.5,
           color="tab:green", label="traded (+ sold, - bought)")
    if h.battery is not None:
        ax.plot(hours, [h.soc_wh.get(s, 0) / 1000 for s in slots], label="battery charge", color="tab:purple",
                linestyle="--")
    ax.set_xlabel("hour of the day (local)")
    ax.set_ylabel("kWh per slot (battery: kWh held)")
    ax.set_title(f"Home {home} ({h.role}), {sim.sc.name}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path / "home.png", dpi=100)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(9, 4))
    colors = {"pv": "tab:orange", "home": "tab:blue", "station": "tab:red"}
    ax.bar(range(len(day.homes)), [r.savings / 1e6 for r in day.homes], color=[colors[r.role] for r in day.homes])
    ax.axhline(0, color="black", linewidth=0.5)
    ax.set_xlabel("home (orange: PV, blue: no panels, red: EV station)")
    ax.set_ylabel("saving vs net metering (tokens)")
    ax.set_title("Each home's saving against net metering")
    fig.tight_layout()
    fig.savefig(path / "savings.png", dpi=100)
    plt.close(fig)
    return [path / "home.png", path / "savings.png"]


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


__all__ = ["DayResult", "DaySimulation", "HomeResult", "chain_reader", "plot_day"]
