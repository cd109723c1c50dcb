"""A party's charging sessions by the height that opened them (schema.party_session_opened): read newest
first at the cost of a page, not a station's years; undone and redone with the blocks that opened them;
built in place for a store written before the index (format 6); the owner app lists the newest."""

from __future__ import annotations

from itertools import islice

import pytest

from chain_support import Net, addr, counting_scans
from consensus.chain import store as store_module
from consensus.chain.store import Store, StoreError
from consensus.rules import schema
from consensus.rules.charging import authorise
from consensus.rules.transactions import SessionOpen
from transxnode.api.owner import views as owner_views

PRICE = 600_000  # micro-units per kWh


def open_sessions(net: Net, blocks: int, per_block: int, owner: int = 0, station: int = 1,
                  first_nonce: int = 1) -> list[tuple[int, bytes]]:
    """`per_block` sessions of users[owner]'s car at users[station]'s station in each of `blocks` blocks:
    (opened, id) of each, newest first as the index orders them."""
    car, at = net.users[owner], net.users[station]
    opened = []
    for b in range(blocks):
        for i in range(per_block):
            auth = authorise(car, chain_id=net.g.chain_id, ev_id=f"EV-{b}-{i}", max_wh=1_000, max_price=700_000,
                             expiry=net.now(net.height + 100), nonce=first_nonce + b * per_block + i)
            net.submit(at, SessionOpen(auth, PRICE, 20))
            opened.append((net.next_height, auth.session_id))
        net.produce()
    return sorted(opened, reverse=True)


def listed(net: Net, party: bytes, before=None, last=None, **kw) -> list[tuple[int, bytes]]:
    return [(rec.opened, sid) for sid, rec in islice(net.chain.sessions_of(party, before=before, **kw), last)]


def test_a_stations_sessions_page_newest_first_and_a_page_reads_only_itself(net, monkeypatch):
    expected = open_sessions(net, blocks=5, per_block=4)
    owner, station = addr(net.users[0]), addr(net.users[1])
    assert listed(net, station) == expected and listed(net, owner) == expected
    walked, cursor = [], None  # pages of 3, each after the last one's (opened, id)
    while page := listed(net, station, cursor, 3):
        walked += page
        cursor = page[-1]
    assert walked == expected
    read = counting_scans(net.store, monkeypatch)
    assert listed(net, station, expected[9], 3) == expected[10:13]
    assert len(read) == 3  # the index from the cursor down: not the station's 20 sessions


def test_a_reorg_takes_a_blocks_sessions_out_of_the_index_and_reconnecting_puts_them_back(net):
    expected = open_sessions(net, blocks=2, per_block=3)
    station = addr(net.users[1])
    block = net.chain.revert_head()
    assert listed(net, station) == expected[3:]  # the older block's three
    net.chain.connect(block, net.now(block.height) + 1_000)
    assert listed(net, station) == expected


def test_a_format_6_store_is_indexed_when_a_node_opens_it_not_when_checked_and_an_older_one_is_refused(
        tmp_path, monkeypatch):
    monkeypatch.setattr(store_module, "UPGRADE_BATCH", 4)  # six sessions: the keys go in two batches
    path = str(tmp_path / "db")
    net = Net(path)
    expected = open_sessions(net, blocks=3, per_block=2)
    station = addr(net.users[1])
    old = [k for k, _ in net.store.items(b"io")]  # every party's, both roles
    assert len(old) == 2 * len(expected)
    for k in old:  # as a store written by a format 6 node: no index
        net.store.db.delete(k)
    net.store.db.put(schema.FORMAT, b"6")
    net.close()
    checked = Store(path, upgrade=False)  # as `transx check` opens it: nothing written
    try:
        assert checked.get(schema.FORMAT) == b"6" and "format 6" in checked.format_behind
        assert list(checked.items(b"io")) == []
    finally:
        checked.close()
    again = Net(path)
    try:
        assert again.store.get(schema.FORMAT) == b"7"
        assert listed(again, station) == expected
        assert [k for k, _ in again.store.items(b"io")] == old
    finally:
        again.close()
    store = Store(path)
    store.db.put(schema.FORMAT, b"5")
    store.close()
    with pytest.raises(StoreError, match="holds store format 5, this node reads 7"):
        Store(path)


def test_index_entries_a_reorg_left_behind_are_not_listed(net):
    """An upgraded format 6 store's blocks above finality have undo records without the index, so a
    revert leaves their entries: a session gone, or opened again at another height, is listed once, right."""
    (opened, sid), *_ = expected = open_sessions(net, blocks=2, per_block=2)
    owner, station = addr(net.users[0]), addr(net.users[1])
    stale = {schema.party_session_opened(station, schema.AS_STATION, opened - 1, sid),  # reopened elsewhere
             schema.party_session_opened(station, schema.AS_STATION, opened + 3, bytes(32)),  # gone
             schema.party_session_opened(station, schema.AS_OWNER, opened, sid)}  # not the station's car
    for k in stale:
        net.store.db.put(k, b"")
    assert listed(net, station) == expected and listed(net, owner) == expected
    assert listed(net, station, roles=(schema.AS_OWNER,)) == []


def test_a_party_that_is_its_own_station_lists_each_session_once(net):
    expected = open_sessions(net, blocks=2, per_block=2, owner=1, station=1)
    assert listed(net, addr(net.users[1])) == expected
    assert listed(net, addr(net.users[1]), roles=(schema.AS_STATION,)) == expected


def test_the_owner_app_lists_a_stations_and_a_cars_newest_sessions_apart_and_counts_all_of_todays(net, monkeypatch,
                                                                                                  tmp_path):
    car = open_sessions(net, blocks=1, per_block=1, owner=1, station=2)  # users[1]'s car, before its station's
    expected = open_sessions(net, blocks=3, per_block=2)
    monkeypatch.setattr(owner_views, "SESSIONS_SHOWN", 4)
    issued = owner_views.IssuedAuthorisations(tmp_path / "issued")
    station = addr(net.users[1])
    now = net.now(net.height)
    today = owner_views.ev_view(net.chain, station, issued, 0, now)  # every session opened today
    assert [r["session"] for r in today["station"]] == [sid.hex() for _, sid in expected[:4]]
    assert [r["session"] for r in today["car"]] == [car[0][1].hex()]  # not crowded out by the station's
    assert (today["more_station"], today["more_car"]) == (True, False)
    assert today["station_today"]["sessions"] == 6
    tomorrow = owner_views.ev_view(net.chain, station, issued, 0, now + owner_views.DAY_MS)
    assert [r["session"] for r in tomorrow["station"]] == [sid.hex() for _, sid in expected[:4]]
    assert tomorrow["more_station"] is True and tomorrow["station_today"]["sessions"] == 0
