"""The API's OpenAPI description (/api/openapi.json) against the real answers of make_app over a real chain
(trades, a settlement, charging sessions): every route of make_app is described, and every answer, errors
included, has a status the description lists and a body its JSON Schema accepts."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
from jsonschema import Draft202012Validator
from starlette.routing import Mount, Route

from chain_support import Net, addr
from consensus.rules import keys
from consensus.rules.charging import authorise
from consensus.rules.transactions import BUY, SELL, SessionClose, SessionOpen, Transfer
from transxnode.api.app import make_app
from transxnode.health import health
from transxnode.metrics import NodeMetrics

PRICE = 600_000


class InProcess:
    """make_app called in-process through httpx's ASGI transport (whole answers: not for the event stream)."""

    def __init__(self, app, raise_server_exceptions: bool = True) -> None:
        self.app = app

    def request(self, method: str, url: str, **kw) -> httpx.Response:
        async def go():
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url="http://node") as c:
                return await c.request(method, url, **kw)

        return asyncio.run(go())

    def get(self, url: str, **kw) -> httpx.Response:
        return self.request("GET", url, **kw)

    def post(self, url: str, **kw) -> httpx.Response:
        return self.request("POST", url, **kw)


def busy_chain(path: str) -> tuple[Net, dict]:
    """A chain with trades in two slots, both settled, and two charging sessions (one closed)."""
    net = Net(path)
    seller, buyer, owner, station = net.users[:4]
    net.register_meter(seller)
    net.produce()
    slot = net.next_height + net.g.gate_closure
    sell = net.bid(seller, SELL, slot, 2_000, 100_000)
    for s in (slot, slot + 1):
        net.bid(buyer, BUY, s, 1_500, 300_000)
    net.bid(seller, SELL, slot + 1, 2_000, 100_000)
    auths = [authorise(owner, chain_id=net.g.chain_id, ev_id="WXY-1234", max_wh=30_000, max_price=700_000,
                       expiry=net.now(net.height + 100), nonce=n) for n in (1, 2)]
    for a in auths:
        net.submit(station, SessionOpen(a, PRICE, 20))
    net.produce()
    net.submit(station, SessionClose(auths[0].session_id, 1_000, 30))
    net.produce_until(slot + net.g.meter_window + 2)
    assert net.state().settlements_of_slot(slot + 1), "the slots traded and settled"
    return net, {"slot": slot, "seller": keys.encode_address(addr(seller)),
                 "owner": keys.encode_address(addr(owner)), "session": auths[0].session_id.hex(),
                 "tx": sell.hash.hex()}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    net, facts = busy_chain(str(tmp_path_factory.mktemp("api") / "db"))
    yield net, facts
    net.close()


def check(doc: dict, r, template: str, method: str = "get") -> None:
    """`r` is an answer the description lists for `template`, and its body fits the schema."""
    responses = doc["paths"][template][method]["responses"]
    assert str(r.status_code) in responses, f"{method.upper()} {template}: status {r.status_code} is not described"
    content = responses[str(r.status_code)]["content"]
    media = r.headers["content-type"].split(";")[0]
    assert media in content, f"{template}: {media} is not described for {r.status_code}"
    if media == "application/json":
        schema = {**content[media]["schema"], "components": doc["components"]}
        errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
                  for e in Draft202012Validator(schema).iter_errors(r.json())]
        assert not errors, f"{method.upper()} {r.url}: {errors[:5]}"


def test_every_route_answers_as_described_errors_included(world):
    net, f = world
    app = make_app(net.node, NodeMetrics())
    client = InProcess(app, raise_server_exceptions=False)
    doc = client.get("/api/openapi.json").json()
    Draft202012Validator.check_schema({"components": doc["components"]})
    chain, head = net.chain, net.chain.head.hash.hex()
    user = net.users[5]
    gets = [
        ("/api/node", "/api/node"), ("/api/head", "/api/head"),
        ("/api/blocks", "/api/blocks?limit=3"), ("/api/blocks", "/api/blocks?before=x"),
        ("/api/block/{ref}", f"/api/block/{f['slot']}"), ("/api/block/{ref}", f"/api/block/{head}"),
        ("/api/block/{ref}", "/api/block/99999"), ("/api/block/{ref}", "/api/block/-1"),
        ("/api/tx/{hash}", f"/api/tx/{f['tx']}"),
        ("/api/tx/{hash}", "/api/tx/" + "0" * 64), ("/api/tx/{hash}", "/api/tx/zz"),
        ("/api/address/{addr}", f"/api/address/{f['seller']}?limit=2"),
        ("/api/address/{addr}", f"/api/address/{f['owner']}?consensus=0"),
        ("/api/address/{addr}", "/api/address/trx1nope"), ("/api/address/{addr}", f"/api/address/{f['seller']}?limit=0"),
        ("/api/sessions/{addr}", f"/api/sessions/{f['owner']}?limit=1"),
        ("/api/sessions/{addr}", f"/api/sessions/{f['owner']}?before=12"),
        ("/api/settlements/{addr}", f"/api/settlements/{f['seller']}"),
        ("/api/settlements/{addr}", f"/api/settlements/{f['seller']}?before=1.5"),
        ("/api/session/{id}", f"/api/session/{f['session']}"), ("/api/session/{id}", "/api/session/" + "1" * 64),
        ("/api/session/{id}", "/api/session/12"),
        ("/api/market", "/api/market"), ("/api/market", "/api/market?limit=2&before=5"),
        ("/api/market", "/api/market?limit=1000"),
        ("/api/market/{slot}", f"/api/market/{f['slot']}"), ("/api/market/{slot}", f"/api/market/{net.height + 2}"),
        ("/api/market/{slot}", "/api/market/999999"), ("/api/market/{slot}", "/api/market/x"),
        ("/api/peers", "/api/peers"), ("/api/health", "/api/health"),
        ("/api/openapi.json", "/api/openapi.json"), ("/api/docs", "/api/docs"), ("/metrics", "/metrics"), ("/", "/"),
    ]
    statuses = set()
    for template, url in gets:
        r = client.get(url)
        check(doc, r, template)
        statuses.add((template, r.status_code))
    # The health check's two answers (a clock at the head's slot: healthy; the real clock, years on: syncing).
    on_time = make_app(net.node, NodeMetrics(), health=lambda: health(chain, now_ms=lambda: net.now(chain.height)))
    r = InProcess(on_time).get("/api/health")
    check(doc, r, "/api/health")
    statuses.add(("/api/health", r.status_code))
    # POST /api/tx: taken, refused by the rules (a nonce from the past), malformed, too large.
    taken = net.tx(user, Transfer(addr(net.users[4]), 5))
    stale = net.tx(user, Transfer(addr(net.users[4]), 5), nonce=0)
    for body in (json.dumps({"raw": taken.encoded.hex()}), json.dumps({"raw": stale.encoded.hex()}), "{nope",
                 json.dumps({"raw": "00" * 70_000})):
        r = client.post("/api/tx", content=body)
        check(doc, r, "/api/tx", "post")
        statuses.add(("/api/tx", r.status_code))
    assert {("/api/health", 200), ("/api/health", 503), ("/api/tx", 202), ("/api/tx", 422), ("/api/tx", 400),
            ("/api/tx", 413), ("/api/blocks", 400), ("/api/block/{ref}", 404), ("/api/sessions/{addr}", 400),
            ("/api/settlements/{addr}", 400), ("/api/market", 400)} <= statuses
    # Every operation the description lists was called here (the event stream: tests/functional/feature_api.py).
    called = {t for t, _ in gets} | {"/api/tx"}
    assert set(doc["paths"]) - called == {"/api/events"}


def test_every_route_of_make_app_is_described(world):
    net, _ = world
    app = make_app(net.node, NodeMetrics())
    doc = InProcess(app).get("/api/openapi.json").json()
    for route in app.routes:
        if isinstance(route, Mount):  # a page mounted beside the API (the owner's app): described as a page
            assert any(p.startswith(route.path) for p in doc["paths"]), f"{route.path} is not described"
            continue
        assert isinstance(route, Route)
        methods = {m.lower() for m in route.methods or ()} - {"head"}
        assert route.path in doc["paths"], f"{route.path} is not in /api/openapi.json"
        assert methods == set(doc["paths"][route.path]), f"{route.path}: {methods} against the description"


def test_the_docs_page_renders_the_description(world):
    """/api/docs is a page of its own (no CDN) that reads /api/openapi.json: every path shows, in Node.js."""
    import re
    import shutil
    import subprocess
    from pathlib import Path

    node = shutil.which("node") or shutil.which("nodejs")
    if node is None:
        pytest.skip("Node.js is not installed")
    net, _ = world
    client = InProcess(make_app(net.node, NodeMetrics()))
    page, doc = client.get("/api/docs").text, client.get("/api/openapi.json").json()
    assert "<script src" not in page and "http" not in re.sub(r'href="[^"]*"', "", page.split("<script>")[1])
    script = page.split("<script>")[1].split("</script>")[0]
    stubs = ("const view = {innerHTML: ''};\nconst document = {querySelector: (s) => s === '#view' ? view : null, "
             "addEventListener() {}};\nconst location = {hash: ''};\n"
             f"const fetch = async () => ({{json: async () => ({json.dumps(doc)})}});\n")
    program = stubs + script + "\nsetTimeout(() => process.stdout.write(view.innerHTML), 50);\n"
    out = subprocess.run([node, "-"], input=program, capture_output=True, text=True, timeout=30, cwd=Path.cwd())
    assert out.returncode == 0, out.stderr
    for path in doc["paths"]:
        assert f"<code>{path}</code>" in out.stdout
    assert 'id="schema-Block"' in out.stdout and "could not read" not in out.stdout
