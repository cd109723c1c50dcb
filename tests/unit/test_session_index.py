"""A party's charging sessions by the height that opened them (schema.party_session_opened): read newest
first at the cost of a page, not a station's years; undone and redone with the blocks that opened them;
built in place for a store written before the index (format 6); the owner app lists the newest."""

from __future__ import annotations

from itertools import islice

import pytest

from chain_support import Net, addr
from consensus.chain.store import Store, StoreError
from consensus.rules import schema
from consensus.rules.charging import authorise
from consensus.rules.transactions import SessionOpen
from transxnode.api.owner import views as owner_views

PRICE = 600_000  # micro-units per kWh


def open_sessions(net: Net, blocks: int, per_block: int) -> list[tuple[int, bytes]]:
    """`per_block` sessions of users[0]'s car at users[1]'s station in each of `blocks` blocks:
    (opened, id) of each, newest first as the index orders them."""
    owner, station = net.users[0], net.users[1]
    opened = []
    for b in range(blocks):
        for i in range(per_block):
            auth = authorise(owner, chain_id=net.g.chain_id, ev_id=f"EV-{b}-{i}", max_wh=1_000, max_price=700_000,
                             expiry=net.now(net.height + 100), nonce=b * per_block + i + 1)
            net.submit(station, SessionOpen(auth, PRICE, 20))
            opened.append((net.next_height, auth.session_id))
        net.produce()
    return sorted(opened, reverse=True)


def listed(net: Net, party: bytes, before=None, last=None) -> list[tuple[int, bytes]]:
    return [(rec.opened, sid) for sid, rec in islice(net.chain.sessions_of(party, before), last)]


def test_a_stations_sessions_page_newest_first_and_a_page_reads_only_itself(net, monkeypatch):
    expected = open_sessions(net, blocks=5, per_block=4)
    owner, station = addr(net.users[0]), addr(net.users[1])
    assert listed(net, station) == expected and listed(net, owner) == expected
    walked, cursor = [], None  # pages of 3, each after the last one's (opened, id)
    while page := listed(net, station, cursor, 3):
        walked += page
        cursor = page[-1]
    assert walked == expected
    read = []
    items = net.store.items

    def counting(prefix, reverse=False, stop=None):
        for kv in items(prefix, reverse=reverse, stop=stop):
            read.append(kv[0])
            yield kv
    monkeypatch.setattr(net.store, "items", counting)
    assert listed(net, station, expected[9], 3) == expected[10:13]
    assert len(read) == 3  # the index from the cursor down: not the station's 20 sessions


def test_a_reorg_takes_a_blocks_sessions_out_of_the_index_and_reconnecting_puts_them_back(net):
    expected = open_sessions(net, blocks=2, per_block=3)
    station = addr(net.users[1])
    block = net.chain.revert_head()
    assert listed(net, station) == expected[3:]  # the older block's three
    net.chain.connect(block, net.now(block.height) + 1_000)
    assert listed(net, station) == expected


def test_a_format_6_store_is_indexed_when_opened_and_an_older_one_is_refused(tmp_path):
    path = str(tmp_path / "db")
    net = Net(path)
    expected = open_sessions(net, blocks=3, per_block=2)
    station = addr(net.users[1])
    old = [k for k, _ in net.store.items(schema.party_sessions_opened(b""))]
    assert len(old) == 2 * len(expected)
    for k in old:  # as a store written by a format 6 node: no index
        net.store.db.delete(k)
    net.store.db.put(schema.FORMAT, b"6")
    net.close()
    again = Net(path)
    try:
        assert again.store.get(schema.FORMAT) == b"7"
        assert listed(again, station) == expected
        assert [k for k, _ in again.store.items(schema.party_sessions_opened(b""))] == old
    finally:
        again.close()
    store = Store(path)
    store.db.put(schema.FORMAT, b"5")
    store.close()
    with pytest.raises(StoreError, match="holds store format 5, this node reads 7"):
        Store(path)


def test_the_owner_app_lists_a_stations_newest_sessions_and_counts_all_of_todays(net, monkeypatch, tmp_path):
    expected = open_sessions(net, blocks=3, per_block=2)
    monkeypatch.setattr(owner_views, "SESSIONS_SHOWN", 4)
    issued = owner_views.IssuedAuthorisations(tmp_path / "issued")
    station = addr(net.users[1])
    now = net.now(net.height)
    today = owner_views.ev_view(net.chain, station, issued, 0, now)  # every session opened today
    assert [r["session"] for r in today["station"]] == [sid.hex() for _, sid in expected[:4]]
    assert today["more"] is True and today["station_today"]["sessions"] == 6
    tomorrow = owner_views.ev_view(net.chain, station, issued, 0, now + owner_views.DAY_MS)
    assert [r["session"] for r in tomorrow["station"]] == [sid.hex() for _, sid in expected[:4]]
    assert tomorrow["more"] is True and tomorrow["station_today"]["sessions"] == 0
