"""The API for integrators on a real node process: the event stream (/api/events) of new heads and cleared
slots, read through the CLI's client (transxnode/client/node_api.py), each event as /api/openapi.json
describes it, and a client that reconnects with Last-Event-ID gets the events it missed, in order; keyset
paging that stays put while blocks arrive, also through the CLI; health; CORS for the configured origin."""

from __future__ import annotations

import time

import pytest
from jsonschema import Draft202012Validator

from node_support import NodeProcess, transx_many, wait_for
from transxnode.client.node_api import ApiClient, ClientError


APP = "https://app.example"  # a web app's origin, let in by the node's config


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    n = NodeProcess.init_dev(tmp_path_factory.mktemp("api") / "data")
    config = n.datadir / "config.toml"
    config.write_text(config.read_text().replace("[api]\n", f'[api]\ncors_origins = ["{APP}"]\n', 1))
    n.start()
    n.wait_height(1)
    yield n
    n.stop()


def _take(stream, n_heads: int) -> list[dict]:
    out = []
    for ev in stream:
        out.append(ev)
        if sum(e["event"] == "head" for e in out) >= n_heads:
            return out
    raise AssertionError("the stream ended")


def _heights(events: list[dict], kind: str) -> list[int]:
    return [e["data"]["height"] for e in events if e["event"] == kind]


def test_the_event_stream_tells_new_heads_and_cleared_slots_and_a_reconnect_gets_what_it_missed(node):
    doc = node.get("/api/openapi.json")
    schemas = {k: Draft202012Validator({**doc["components"]["schemas"][k], "components": doc["components"]})
               for k in ("HeadEvent", "ClearedEvent", "FinalEvent", "ResetEvent")}
    client = ApiClient(node.api)
    first = _take(client.events(timeout=20), 2)
    for e in first:
        schemas[e["event"].capitalize() + "Event"].validate(e["data"])
    heads = _heights(first, "head")
    assert heads[1] == heads[0] + 1  # one head per block, in order
    # Each new block's slot is told cleared before its head (block h clears slot h).
    assert [e["event"] for e in first if e["event"] != "final"][-2:] == ["cleared", "head"]
    assert first[-2]["data"]["slot"] == heads[1] and first[-2]["data"]["hash"] == first[-1]["data"]["hash"]
    # Away for a few blocks; back with the last id: the missed events first, none twice, none left out.
    last_id, seen = first[-1]["id"], heads[1]
    wait_for(lambda: node.height >= seen + 3, 30, "three more blocks")
    back = _take(client.events(last_id, timeout=20), 4)
    assert _heights(back, "head")[:3] == [seen + 1, seen + 2, seen + 3]
    assert _heights(back, "cleared")[:3] == [seen + 1, seen + 2, seen + 3]
    # An id the node does not hold (another run's): a reset, then the live stream.
    stale = next(client.events("0000-5", timeout=20))
    assert stale["event"] == "reset"
    schemas["ResetEvent"].validate(stale["data"])


def test_a_block_list_walked_by_next_stays_put_while_blocks_arrive(node):
    node.wait_height(4)
    page = node.get("/api/blocks?limit=2")
    top = page["blocks"][0]["height"]
    wait_for(lambda: node.height >= top + 2, 30, "two more blocks")
    walked = page["blocks"]
    while "next" in page:
        page = node.get(f"/api/blocks?limit=2&before={page['next']}")
        walked += page["blocks"]
    assert [b["height"] for b in walked] == list(range(top, -1, -1))  # no block twice or missing: keyset paging
    status, err = node.request("GET", "/api/blocks?before=3.x")
    assert status == 400 and err["reason"] == "malformed" and "before" in err["error"]


def test_the_cli_pages_blocks_and_slots_by_the_next_line(node):
    """`transx explorer blocks` ends a page with the command for the next one, `explorer market --before`
    shows the slots below; a malformed cursor is one line and a non-zero exit."""
    node.wait_height(5)
    top = node.get("/api/blocks?limit=1")["blocks"][0]["height"]
    first, slots, bad = transx_many([("explorer", "blocks", "--limit", "2", "--before", str(top + 1), *node.dd),
                                     ("explorer", "market", "--before", "3", *node.dd),
                                     ("explorer", "blocks", "--before", "3.x", *node.dd)])
    assert first.returncode == 0, first.stderr
    lines = first.stdout.splitlines()
    assert [ln.split()[0] for ln in lines[2:4]] == [str(top), str(top - 1)]  # under the table's header and rule
    assert lines[-1] == f"next page: transx explorer blocks --before {top - 1} --limit 2"
    assert slots.returncode == 0 and [ln.split()[0] for ln in slots.stdout.splitlines()[4:]] == ["2", "1"]
    assert "next page" not in slots.stdout  # slot 1 is the oldest: the last page
    assert bad.returncode != 0 and len(bad.stderr.strip().splitlines()) == 1 and "before" in bad.stderr


def test_health_and_cors_for_the_configured_origin_only(node):
    import urllib.request

    # A devnet of one, keeping up, needs no peers (a stall on a loaded machine is "syncing" for a moment).
    status, doc = wait_for(lambda: (r := node.request("GET", "/api/health"))[0] == 200 and r, 30, "a healthy node")
    assert doc["ok"] and doc["problems"] == []
    for path in ("/api/head", "/api/events"):
        for origin, allowed in ((APP, APP), ("https://other.example", None)):
            req = urllib.request.Request(node.api + path, headers={"Origin": origin})
            with urllib.request.urlopen(req, timeout=10) as r:
                assert r.headers.get("access-control-allow-origin") == allowed, (path, origin)


def test_a_node_without_the_stream_is_polled(node):
    """The agent's wait (ApiClient.new_heads): head events from the stream; on a URL with no stream (an old
    node's, here a wrong path), None after the poll interval instead of an error."""
    heads = ApiClient(node.api).new_heads(0.2)
    ev = next(heads)
    assert ev["event"] == "head"
    with pytest.raises(ClientError) as e:
        next(ApiClient(node.api + "/nothing").events(timeout=5))
    assert e.value.status == 404
    t0 = time.monotonic()
    assert next(ApiClient(node.api + "/nothing").new_heads(0.2)) is None and time.monotonic() - t0 < 5
