"""Keyset paging of the API's lists over a real chain (a walk by `next` stays the same while blocks arrive;
a malformed cursor or limit is a 400 with the reason), CORS on and off, and the event hub behind
/api/events (its ring, resets, slow and surplus subscribers, and the feed of a real chain through a reorg)."""

from __future__ import annotations

import pytest

from chain_support import Net, addr
from consensus.rules.transactions import Transfer
from test_api_openapi import InProcess, busy_chain
from transxnode.api.app import make_app
from transxnode.events import ChainFeed, EventHub
from transxnode.metrics import NodeMetrics


@pytest.fixture
def world(tmp_path):
    net, facts = busy_chain(str(tmp_path / "db"))
    yield net, facts, InProcess(make_app(net.node, NodeMetrics()))
    net.close()


def walk(api: InProcess, url: str, key: str, limit: int, net: Net | None = None) -> list:
    """Every page of a list by `next`, producing a block between pages when given `net`."""
    sep = "&" if "?" in url else "?"
    page = api.get(f"{url}{sep}limit={limit}").json()
    rows = list(page[key])
    while "next" in page:
        if net is not None:
            net.produce()
        page = api.get(f"{url}{sep}limit={limit}&before={page['next']}").json()
        assert len(page[key]) <= limit
        rows += page[key]
    return rows


def test_walking_a_list_by_next_sees_each_entry_once_while_blocks_arrive(world):
    net, f, api = world
    lists = {"/api/blocks": "blocks", "/api/market": "recent", f"/api/sessions/{f['owner']}": "sessions",
             f"/api/settlements/{f['seller']}": "settlements"}
    assert len(api.get("/api/blocks?limit=200").json()["blocks"]) == net.height + 1
    assert [r["slot"] for r in api.get(f"/api/settlements/{f['seller']}").json()["settlements"]] == [f["slot"] + 1, f["slot"]]
    for url, key in lists.items():
        whole = api.get(f"{url}?limit=200").json()[key]  # one page, before the walk
        got = walk(api, url, key, 2, net)
        if key == "recent":  # oldest first within a page, pages newest first
            got = sorted(got, key=lambda r: r["slot"])
        assert got == whole and len(whole) >= 2, url
    sold = f"/api/settlements/{f['seller']}"
    assert walk(api, sold, "settlements", 1) == api.get(sold).json()["settlements"]  # pages of one, by cursor
    assert api.get(f"{sold}?before={10**18 - 1}").json()["settlements"] == api.get(sold).json()["settlements"]


def test_a_malformed_cursor_or_limit_is_a_400_that_says_what_is_expected(world):
    net, f, api = world
    for url, wants in [("/api/blocks?before=12.3", "before"), ("/api/blocks?limit=201", "1 to 200"),
                       ("/api/market?before=abc", "before"), ("/api/market?limit=0", "limit"),
                       (f"/api/sessions/{f['owner']}?before=5", "OPENED.SESSION_ID"),
                       (f"/api/settlements/{f['seller']}?before=-1", "before"),
                       (f"/api/address/{f['seller']}?before=x.y", "before"), ("/api/blocks?limit=", "limit")]:
        r = api.get(url)
        assert r.status_code == 400 and r.json()["reason"] == "malformed" and wants in r.json()["error"], url


def test_cors_is_off_by_default_and_allows_only_the_listed_origins(world):
    net, _, off = world
    listed, other = "https://app.example", "https://evil.example"
    assert "access-control-allow-origin" not in off.get("/api/head", headers={"Origin": listed}).headers
    on = InProcess(make_app(net.node, NodeMetrics(), cors_origins=[listed]))
    assert on.get("/api/head", headers={"Origin": listed}).headers["access-control-allow-origin"] == listed
    assert "access-control-allow-origin" not in on.get("/api/head", headers={"Origin": other}).headers
    preflight = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"}
    ok = on.request("OPTIONS", "/api/tx", headers={"Origin": listed, **preflight})
    assert ok.status_code == 200 and "POST" in ok.headers["access-control-allow-methods"]
    assert on.request("OPTIONS", "/api/tx", headers={"Origin": other, **preflight}).status_code == 400
    stream = {"Access-Control-Request-Method": "GET", "Access-Control-Request-Headers": "last-event-id"}
    assert on.request("OPTIONS", "/api/events", headers={"Origin": listed, **stream}).status_code == 200


def test_the_hub_holds_a_bounded_ring_drops_slow_readers_and_refuses_surplus_streams(tmp_path):
    hub = EventHub(ring=4, queue=3, max_subscribers=2, run="r1")
    woken = []
    fast = hub.subscribe(lambda: woken.append("fast"))
    for i in range(3):
        hub.publish("head", {"height": i})
    assert [e.data["height"] for e in hub.since("r1-1")] == [1, 2] and hub.since("r1-3") == []
    slow = hub.subscribe(lambda: None)
    fast.pending.clear()  # a reader that keeps up
    for i in range(3, 7):
        hub.publish("head", {"height": i})
        fast.pending.clear()
    assert slow.dropped and not fast.dropped and woken.count("fast") == 7  # 4 behind a queue of 3: dropped
    assert hub.since("r1-2") is None and [e.seq for e in hub.since("r1-3")] == [4, 5, 6, 7]  # the ring holds 4
    for stale in ("r1-2", "r0-6", "r1-99", "nonsense"):
        [reset] = hub.subscribe(lambda: None, stale).pending
        assert reset.kind == "reset" and reset.seq == 7
        hub.unsubscribe(next(s for s in hub.subscribers if s is not fast))
    hub.subscribe(lambda: None)
    from transxnode.events import Full

    with pytest.raises(Full):
        hub.subscribe(lambda: None)
    r = InProcess(make_app(Net(str(tmp_path / "db")).node, NodeMetrics(), events=hub)).get("/api/events")
    assert r.status_code == 503 and r.json()["reason"] == "unavailable"


def test_the_feed_tells_cleared_slots_heads_and_a_reorgs_new_branch(tmp_path):
    net = Net(str(tmp_path / "db"))
    hub = EventHub(run="r")
    feed = ChainFeed(hub, net.chain)
    net.produce_until(3)
    feed.update()
    assert [(e.kind, e.data["height"]) for e in hub.ring] == [("cleared", 1), ("cleared", 2), ("cleared", 3),
                                                              ("head", 3)]
    feed.update()
    assert hub.seq == 4  # nothing new: nothing told
    old = net.chain.head.hash
    net.chain.revert_head()
    net.submit(net.users[0], Transfer(addr(net.users[1]), 5))
    net.produce()  # another block 3: with a transfer
    feed.update()
    assert net.chain.head.hash != old
    assert [(e.kind, e.data["height"]) for e in list(hub.ring)[4:]] == [("cleared", 3), ("head", 3)]
    assert hub.ring[-1].data["hash"] == net.chain.head.hash.hex()
    net.close()


def test_the_explorer_pages_blocks_and_slots_by_next(world):
    """The explorer page (run in Node.js on the API's real answers): the head page lists the latest blocks from
    /api/blocks with a link to the older page, which follows `next`; the market page likewise."""
    from page_support import run_page, text_of

    net, _, api = world
    net.produce_until(30)  # more than a page of each
    first = api.get("/api/blocks?limit=15").json()
    older = api.get(f"/api/blocks?limit=50&before={first['next']}").json()
    market = api.get("/api/market").json()
    docs = {"node": api.get("/api/node").json(), "market": market, "blocks?limit=15": first,
            f"blocks?limit=50&before={first['next']}": older, f"market?before={market['next']}":
            api.get(f"/api/market?before={market['next']}").json()}
    home, below, slots, older_slots = run_page(
        f'Promise.all([home(), blocks("before={first["next"]}"), markets(), markets("before={market["next"]}")])',
        docs=docs)
    assert f'href="#/blocks?before={first["next"]}"' in home and f"#/block/{net.height}" in home
    assert text_of(below).startswith(f"Blocks below {first['next']}") and "#/block/0" in below
    assert "older blocks" not in below  # the oldest page
    assert f'href="#/market?before={market["next"]}"' in slots and f"Slots below {market['next']}" in older_slots


def test_after_a_long_catch_up_the_feed_tells_only_the_latest_slots(tmp_path):
    net = Net(str(tmp_path / "db"))
    hub = EventHub(run="r")
    feed = ChainFeed(hub, net.chain)
    feed.KEEP = 5
    net.produce_until(12)
    feed.update()
    assert [e.data["height"] for e in hub.ring if e.kind == "cleared"] == [8, 9, 10, 11, 12]
    assert hub.ring[-1].kind == "head" and hub.ring[-1].data["height"] == 12
    net.close()
