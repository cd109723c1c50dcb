"""Block sync's progress as an operator reads it (issue 14, item 10): the count never passes the total (the
total grows when blocks land beyond the first target), and a sync that stops short never says it is done.
The sync runs against stand-ins for the network and the consensus engine; no processes."""

from __future__ import annotations

import logging
import re
from types import SimpleNamespace

import trio

from consensus.engine import ACCEPT
from p2p import framing, sync
from transxnode.net.blocksync import BlockSync


class Chain:
    def __init__(self) -> None:
        self.height = 0
        self.genesis = SimpleNamespace(finality_depth=8)


class Engine:
    """Takes every block; `gossip_at`: when the chain reaches that height, a block gossiped meanwhile lands too."""

    def __init__(self, chain: Chain, gossip_at: int | None = None) -> None:
        self.chain, self.gossip_at = chain, gossip_at

    def judge(self, kind, item, now, peer):
        self.chain.height += 1
        if self.chain.height == self.gossip_at:
            self.chain.height += 1
        return ACCEPT, []


class Network:
    """Answers block ranges; `fails_from`: a request from that height on fails (the peer went away)."""

    def __init__(self, fails_from: int | None = None) -> None:
        self.fails_from = fails_from

    async def request(self, peer, req, timeout):
        if self.fails_from is not None and req.start >= self.fails_from:
            raise sync.SyncError("the peer closed the stream")
        return framing.pack([b"block"] * req.count)

    def peers(self):
        return ["peer"]

    def penalise(self, peer, amount=1.0):
        pass


def _sync(engine: Engine, network: Network, target: int, interactive: bool) -> int:
    peering = SimpleNamespace(engine=engine, chain=engine.chain, syncing=False, on_behind=None, send=lambda out: None,
                              judge=lambda kind, item, peer: engine.judge(kind, item, 0, peer))
    bs = BlockSync(network, peering, interactive=interactive)
    return trio.run(bs.catch_up, "peer", target)


def _counts(text: str) -> list[tuple[int, int]]:
    return [(int(a), int(b)) for a, b in re.findall(r"(\d+)/(\d+) blocks", text)]


def test_the_count_never_passes_the_total_when_blocks_land_past_the_target(capsys, caplog):
    chain = Chain()
    _sync(Engine(chain, gossip_at=275), Network(), 275, interactive=True)
    assert chain.height == 276  # a block gossiped during the sync extended the chain past the target
    bar = capsys.readouterr().err
    assert _counts(bar) and all(n <= total for n, total in _counts(bar)), bar
    assert _counts(bar)[-1] == (276, 276) and bar.endswith("\n")
    chain = Chain()
    with caplog.at_level(logging.INFO, "transx.sync"):
        _sync(Engine(chain, gossip_at=275), Network(), 275, interactive=False)
    assert caplog.messages[-1].startswith("sync: 276/276 blocks") and caplog.messages[-1].endswith(", done")


def test_a_sync_that_stops_short_does_not_say_done(capsys, caplog):
    chain = Chain()
    with caplog.at_level(logging.INFO, "transx.sync"):
        taken = _sync(Engine(chain), Network(fails_from=257), 600, interactive=False)
    assert taken == chain.height == 256
    last = caplog.messages[-1]
    assert last.startswith("sync: 256/600 blocks") and "done" not in last and "interrupted" in last, caplog.messages
    chain = Chain()
    _sync(Engine(chain), Network(fails_from=257), 600, interactive=True)
    bar = capsys.readouterr().err.rsplit("\r", 1)[-1]
    assert "256/600 blocks" in bar and "interrupted" in bar and bar.endswith("\n"), bar
