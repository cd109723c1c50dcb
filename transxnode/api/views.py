"""JSON views of chain objects: what the HTTP API returns and the CLI prints.

Amounts stay integers (micro-units, Wh, micro-units per kWh); addresses are
Bech32, hashes hex.  Market views rebuild a slot's instance from the bid
records, so a cleared slot shows the same participants its block cleared.
"""

from __future__ import annotations

from itertools import islice
from typing import Any

from solver.instance import preferred
from solver.report import outcomes

from consensus.rules import schema
from consensus.rules.blocks import HEADER, Block, Header
from consensus.chain.chain import Chain
from consensus.rules.keys import address_of, encode_address
from consensus.rules.ledger import slot_market
from consensus.rules.settlement import settled_slot
from consensus.rules.finality import Checkpoint, decode_vote
from consensus.rules.state import CANCELLED, CLEARED, OPEN, SETTLEMENT, STATUS_NAMES, BidRecord, Settlement
from consensus.rules.transactions import BUY, SELL, SIDE_NAMES, Bid, CancelBid, Commit, Evidence, MeterReading, RegisterMeter, RegisterSolver, Reveal, SessionClose, SessionOpen, Transfer, Tx, VoteEvidence, VoteKey


def header_json(h: Header) -> dict[str, Any]:
    return {
        "height": h.height,
        "hash": h.hash.hex(),
        "parent": h.parent.hex(),
        "timestamp": h.timestamp,
        "proposer": encode_address(address_of(h.proposer)) if any(h.proposer) else None,
        "state_hash": h.state_hash.hex(),
        "tx_root": h.tx_root.hex(),
        "clearing_hash": h.clearing_hash.hex(),
    }


def tx_json(tx: Tx) -> dict[str, Any]:
    out: dict[str, Any] = {"hash": tx.hash.hex(), "kind": tx.kind, "from": encode_address(tx.sender),
                           "nonce": tx.nonce, "fee": tx.fee}
    b = tx.body
    if isinstance(b, Transfer):
        out.update(to=encode_address(b.to), amount=b.amount)
    elif isinstance(b, Bid):
        out.update(side=SIDE_NAMES[b.side], slot=b.slot, wh=b.wh, price=b.price, zone=b.zone, expiry=b.expiry,
                   **b.preferences.to_json(b.side))
    elif isinstance(b, CancelBid):
        out.update(bid=b.bid.hex())
    elif isinstance(b, RegisterSolver):
        out.update(deposit=b.deposit)
    elif isinstance(b, Commit):
        out.update(target_height=b.height, commitment=b.commitment.hex())
    elif isinstance(b, MeterReading):
        out.update(slot=b.slot, imported_wh=b.imported_wh, exported_wh=b.exported_wh)
    elif isinstance(b, Reveal):
        out.update(target_height=b.height, clearing_hash=b.clearing_hash.hex())
    elif isinstance(b, Evidence):
        h = HEADER.decode(b.first)
        out.update(height=h.height, solver=encode_address(address_of(h.proposer)))
    elif isinstance(b, SessionOpen):
        a = b.auth
        out.update(session=a.session_id.hex(), owner=encode_address(a.owner_address), ev_id=a.ev_id, max_wh=a.max_wh,
                   price=b.price, soc_start=b.soc_start)
    elif isinstance(b, SessionClose):
        out.update(session=b.session.hex(), delivered_wh=b.delivered_wh, soc_end=b.soc_end)
    elif isinstance(b, RegisterMeter):
        out.update(meter=b.meter.hex())
    elif isinstance(b, VoteKey):
        out.update(vote_key=b.registration.bls_key.hex())
    elif isinstance(b, VoteEvidence):
        try:
            v = decode_vote(b.first)
            out.update(vote_key=v.voter.hex(), target_height=v.target.height)
        except ValueError:
            pass
    return out


def checkpoint_json(cp) -> dict[str, Any]:
    return {"height": cp.height, "hash": cp.hash.hex()}


def finality_json(chain: Chain, final: Checkpoint | None = None) -> dict[str, Any]:
    """The head's justified checkpoint and the final one (`final`: the node's, which votes seen in gossip
    may have moved past the chain's own; consensus/rules/checkpoints.py), and the voter set in force: its
    voters, their total vote weight (their deposits, or their seats once there are more keyed solvers
    than `voting_seats`), and their deposit, which a final block's reversal would cost a third of."""
    vs = chain.voters()
    final = final or chain.finalized()
    state = chain.state()
    deposit = sum(rec.deposit for v in vs.voters if (rec := state.solver(v.address)) is not None) if vs else 0
    return {"justified": checkpoint_json(chain.justified()), "finalized": checkpoint_json(final),
            "voters": len(vs) if vs is not None else 0, "voter_weight": vs.total if vs is not None else 0,
            "voter_deposit": deposit}


def block_json(chain: Chain, block: Block, final: Checkpoint | None = None) -> dict[str, Any]:
    out = header_json(block.header)
    canonical = chain.hash_at(block.height) == block.hash
    # final: on this node's chain at or below its final checkpoint (never reverted); else it may still be
    out["final"] = canonical and block.height <= (final or chain.finalized()).height
    out["justified"] = canonical and block.height <= chain.justified().height
    out["votes"] = [{"source": checkpoint_json(c.source), "target": checkpoint_json(c.target),
                     "signers": bin(int.from_bytes(c.signers, "little")).count("1")} for c in block.votes]
    out["txs"] = [tx_json(t) for t in block.txs]
    c = block.clearing
    market = slot_view(chain, block.height) if block.height else None
    out["clearing"] = {
        "slot": block.height,
        "void": c.void,
        # the chain takes a trading clearing without multipliers only as the uncertified fallback
        # (solver/fallback.py); one with them passed the verifier's certificate.  None: nothing traded
        "certified": bool(c.lam or c.mu) if c.trades else None,
        "trades": market["trades"] if market else [],
        "traded_wh": sum(t.wh for t in c.trades),
        "value": sum(t.payment for t in c.trades),
    }
    return out


def bid_status(r: BidRecord) -> str:
    """open, cancelled, cleared (it traded) or not matched (its slot cleared without it: refunded)."""
    return "not matched" if r.status == CLEARED and not r.traded_wh else STATUS_NAMES[r.status]


def bid_json(bid_id: bytes, r: BidRecord) -> dict[str, Any]:
    return {"id": bid_id.hex(), "owner": encode_address(r.owner), "side": SIDE_NAMES[r.side], "slot": r.slot,
            "wh": r.wh, "price": r.price, "zone": r.zone, "escrow": r.escrow, "included": r.included,
            "status": bid_status(r), "traded_wh": r.traded_wh, "amount": r.amount, **r.preferences.to_json(r.side)}


def settlement_json(s: Settlement) -> dict[str, Any]:
    return {"sold_wh": s.sold_wh, "bought_wh": s.bought_wh, "exported_wh": s.exported_wh,
            "imported_wh": s.imported_wh, "reading": "on time" if s.read else "missing (default applied)",
            "shortfall_wh": s.shortfall_wh, "unused_wh": s.unused_wh, "released": s.released, "charge": s.charge,
            "credit": s.credit, "unpaid": s.unpaid}


def delivery_view(chain: Chain, slot: int) -> dict[str, Any]:
    """Where a slot's delivery settlement stands: the readings so far, or how each account settled."""
    g, state = chain.genesis, chain.state()
    at = slot + g.meter_window + 1
    if settled_slot(chain.height, g) >= slot:
        rows = [{"address": encode_address(a), **settlement_json(s)} for a, s in state.settlements_of_slot(slot)]
        return {"status": "settled", "settled_at": at, "accounts": rows}
    readings = [{"address": encode_address(a), "imported_wh": r.imported_wh, "exported_wh": r.exported_wh,
                 "included": r.included} for a, r in state.readings_of_slot(slot)]
    return {"status": "awaiting readings" if slot <= chain.height else "not delivered", "readings_until": at - 1,
            "settles_at": at, "readings": readings}


def slot_view(chain: Chain, slot: int) -> dict[str, Any]:
    """A slot's market: its bids, and once cleared its trades, prices, surpluses and returns against the grid."""
    state = chain.state()
    bids = [(i, r) for i, r in state.slot_bids(slot) if r.status != CANCELLED]
    cleared = slot <= chain.height
    block = chain.block_at(slot) if cleared else None
    out: dict[str, Any] = {
        "slot": slot,
        "status": "cleared" if cleared else ("open" if slot >= chain.height + 1 + chain.genesis.gate_closure
                                             else "closed"),
        "starts": chain.genesis.slot_start_ms(slot),
        "grid": {"feed_in": chain.genesis.feed_in, "retail": chain.genesis.retail},
        "bids": [bid_json(i, r) for i, r in bids],
        "trades": [],
        "participants": [],
    }
    if block is None or not bids:
        return out
    out["delivery"] = delivery_view(chain, slot)
    inst = slot_market(state, slot, chain.genesis).instance
    c = block.clearing
    out["void"] = c.void
    out["trades"] = [
        {"seller": inst.sellers[t.seller].id, "buyer": inst.buyers[t.buyer].id, "wh": t.wh, "payment": t.payment,
         "price": t.payment * 1000 // t.wh, "preferred": preferred(inst.sellers[t.seller], inst.buyers[t.buyer])}
        for t in c.trades
    ]
    wh = sum(t.wh for t in c.trades)
    out["traded_wh"] = wh
    out["value"] = sum(t.payment for t in c.trades)
    out["average_price"] = out["value"] * 1000 // wh if wh else None
    owners = {i.hex(): encode_address(r.owner) for i, r in bids}
    if c.trades:
        rows = outcomes(inst, c.to_clearing(inst))
        out["participants"] = [
            {"bid": o.id, "owner": owners[o.id], "side": o.side, "wh": o.wh, "amount": o.paid, "grid": o.grid,
             "surplus": o.surplus_nano // 1000, "return_vs_grid": o.return_vs_grid}
            for o in rows
        ]
    return out


def address_view(chain: Chain, addr: bytes, pending_nonce: int, history: int = 50,
                 before: tuple[int, int] | None = None, consensus: bool = True) -> dict[str, Any]:
    """An account, and a page of its history (`address_history`)."""
    state = chain.state()
    acct = state.account(addr)
    open_bids = []
    for k, _ in state.items(schema.owner_bids(addr)):
        bid_id = k[-32:]
        rec = state.bid(bid_id)
        if rec is not None and rec.status == OPEN:
            open_bids.append(bid_json(bid_id, rec))
    solver = state.solver(addr)
    meter = state.meter_key(addr)
    settlements = [{"slot": slot, **settlement_json(s)} for slot, s in state.settlements_of(addr, last=20)]
    entries, after = address_history(chain, addr, history, before, consensus)
    return {
        "address": encode_address(addr),
        "balance": acct.balance,
        "escrowed": acct.escrowed,
        "nonce": acct.nonce,
        "pending_nonce": pending_nonce,
        "solver_deposit": solver.deposit if solver else 0,
        "meter": meter.hex() if meter else None,
        "settlements": settlements[::-1],  # newest first
        "open_bids": open_bids,
        "history": entries,
        "next": after,
    }


def session_json(session_id: bytes, rec) -> dict[str, Any]:
    from consensus.rules.state import SESSION_STATUS

    return {"session": session_id.hex(), "owner": encode_address(rec.owner), "station": encode_address(rec.station),
            "ev_id": rec.ev_id, "status": SESSION_STATUS[rec.status],
            "max_wh": rec.max_wh, "price": rec.price, "escrow": rec.escrow, "opened": rec.opened,
            "closed": rec.closed or None, "delivered_wh": rec.delivered_wh, "amount": rec.amount,
            "soc_start": rec.soc_start, "soc_end": rec.soc_end if rec.closed else None}


def sessions_view(chain: Chain, addr: bytes, limit: int = 500,
                  before: tuple[int, str] | None = None) -> dict[str, Any]:
    """A page of an address's charging sessions, as EV owner or as station, newest first (by the height
    that opened them, then id, both descending); `before` (opened, id hex) starts below a page's last,
    `next` is its cursor.  Read from the index's newest end, one past the page: a page costs its size."""
    cursor = None if before is None else (before[0], bytes.fromhex(before[1]))
    page = list(islice(chain.sessions_of(addr, before=cursor), limit + 1))
    rows = [session_json(i, rec) for i, rec in page[:limit]]
    out: dict[str, Any] = {"address": encode_address(addr), "sessions": rows}
    if len(page) > limit:
        out["next"] = f"{rows[-1]['opened']}.{rows[-1]['session']}"
    return out


def settlements_view(chain: Chain, addr: bytes, limit: int, before: int | None = None) -> dict[str, Any]:
    """A page of an account's delivery settlements, newest slot first; `next` is the page's last slot.
    The account's index is read from `before` down, one row past the page: a page costs its size, not
    the account's years of history."""
    state = chain.state()
    page = state.settled_slots(addr, limit + 1, before)  # one past the page: is there a next?
    more = len(page) > limit
    page = page[:limit]
    rows = []
    for slot in page:
        raw = state.get(schema.settlement(slot, addr))
        if raw is not None:
            rows.append({"slot": slot, **settlement_json(SETTLEMENT.decode(raw))})
    out: dict[str, Any] = {"address": encode_address(addr), "settlements": rows}
    if more:
        out["next"] = str(page[-1])
    return out


def blocks_view(chain: Chain, limit: int, before: int | None = None) -> dict[str, Any]:
    """A page of block headers of this chain, newest first, below height `before` (default: from the head)."""
    top = chain.height if before is None else min(chain.height, before - 1)
    heights = range(top, max(-1, top - limit), -1)
    rows = []
    for h in heights:
        b = chain.block_at(h)
        if b is not None:
            rows.append({**header_json(b.header), "txs": len(b.txs), "trades": len(b.clearing.trades),
                         "traded_wh": sum(t.wh for t in b.clearing.trades), "void": b.clearing.void})
    out: dict[str, Any] = {"height": chain.height, "blocks": rows}
    if rows and rows[-1]["height"] > 0:
        out["next"] = str(rows[-1]["height"])
    return out


def markets_view(chain: Chain, first_open: int, limit: int = 24, before: int | None = None) -> dict[str, Any]:
    """A page of cleared slots, oldest first within the page, ending below slot `before` (default: at the
    head's): what a quote for a new bid is based on.  `next` is the page's oldest slot."""
    g, state = chain.genesis, chain.state()
    top = chain.height if before is None else min(chain.height, before - 1)
    rows = []
    wh = value = 0
    for s in range(max(1, top - limit + 1), top + 1):
        b = chain.block_at(s)
        if b is None:
            continue
        t_wh = sum(t.wh for t in b.clearing.trades)
        t_val = sum(t.payment for t in b.clearing.trades)
        wh += t_wh
        value += t_val
        offered = [0, 0]  # buy, sell: what the slot's bids asked for
        for _, rec in state.slot_bids(s):
            if rec.status != CANCELLED:
                offered[rec.side] += rec.wh
        rows.append({"slot": s, "trades": len(b.clearing.trades), "traded_wh": t_wh, "value": t_val,
                     "average_price": t_val * 1000 // t_wh if t_wh else None, "void": b.clearing.void,
                     "supply_wh": offered[SELL], "demand_wh": offered[BUY]})
    out: dict[str, Any] = {"height": chain.height, "first_open_slot": first_open,
                           "grid": {"feed_in": g.feed_in, "retail": g.retail},
                           "average_price": value * 1000 // wh if wh else None, "recent": rows}
    if rows and rows[0]["slot"] > 1:
        out["next"] = str(rows[0]["slot"])
    return out


HISTORY_SCAN = 20_000  # history entries one page passes over at most while it leaves out consensus transactions


def address_history(chain: Chain, addr: bytes, limit: int, before: tuple[int, int] | None = None,
                    consensus: bool = True) -> tuple[list[dict[str, Any]], str | None]:
    """A page of what happened to the address, newest first: the transactions it sent or received (an
    EV owner's charging sessions too, which its station sends), its bids' trades, its delivery
    settlements, its expired sessions; without `consensus`, no commits and reveals.

    `before` (height, seq) starts the page below that entry ((h, 0): below block h).  Returns the page
    and the cursor of the next one, "height.seq", or None after the oldest entry.  A page that left out
    HISTORY_SCAN consensus entries ends early, with a cursor: it may hold fewer than `limit`."""
    prefix = schema.address_txs(addr)
    stop = schema.address_tx(addr, *before) if before is not None else None
    state = chain.state()
    out: list[dict[str, Any]] = []
    last = None
    skipped = 0
    for key, value in chain.store.items(prefix, reverse=True, stop=stop):
        at = schema.read_location(key[len(prefix):])
        if not consensus and value[0] == schema.HISTORY_CONSENSUS_TX:
            skipped += 1
            if skipped >= HISTORY_SCAN:
                return out, f"{at[0]}.{at[1]}"
            continue
        if len(out) >= limit:
            return out, f"{last[0]}.{last[1]}"  # type: ignore[index]
        entry = history_entry(chain, state, addr, at[0], value)
        if entry is not None:
            out.append(entry)
            last = at
    return out, None


def history_entry(chain: Chain, state, addr: bytes, height: int, value: bytes) -> dict[str, Any] | None:
    """One entry of an address's history (schema.address_tx's value) as JSON; None if what it names is gone."""
    kind, ref = value[0], value[1:]
    if kind in (schema.HISTORY_TX, schema.HISTORY_CONSENSUS_TX):
        found = chain.tx(ref)
        if found is None:
            return None
        tx = found[0]
        out = {**tx_json(tx), "height": found[1]}
        if isinstance(tx.body, SessionClose):  # what the owner paid the station
            rec = state.session(tx.body.session)
            if rec is not None:
                out.update(owner=encode_address(rec.owner), amount=rec.amount)
        return out
    if kind == schema.HISTORY_TRADE:
        rec = state.bid(ref)
        if rec is None:
            return None
        return {"kind": "trade", "height": height, "bid": ref.hex(), "side": SIDE_NAMES[rec.side], "slot": rec.slot,
                "wh": rec.wh, "price": rec.price, "zone": rec.zone, "status": bid_status(rec),
                "traded_wh": rec.traded_wh, "amount": rec.amount}
    if kind == schema.HISTORY_SETTLEMENT:
        slot = schema.read_u64(ref)
        raw = state.get(schema.settlement(slot, addr))
        if raw is None:
            return None
        return {"kind": "settlement", "height": height, "slot": slot, **settlement_json(SETTLEMENT.decode(raw))}
    if kind == schema.HISTORY_SESSION_END:
        rec = state.session(ref)
        return None if rec is None else {"kind": "session_expired", "height": height, **session_json(ref, rec)}
    return None
