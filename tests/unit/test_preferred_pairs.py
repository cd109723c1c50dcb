"""The candidate rule with bid preferences (issue 19, item 4; solver/pairs.py): preferred counterparts are
candidates first within the usual limits, a buyer that takes only one kind of energy is paired with no other
kind, the pairs do not depend on the order bids arrive in, and an instance without preferences keeps the pairs
it had.  The verifier derives the same pairs (it calls candidate_pairs)."""

from __future__ import annotations

import random
import warnings
from dataclasses import replace

import numpy as np
import pytest

from solver import ENERGY_KINDS, Instance, InstanceError, Participant, candidate_pairs, clear, instance_from_json, verify
from solver.generator import extreme, generate
from solver.pairs import COVER_EXTRA, MIN_PAIR_GAIN, MIN_TRADE_WH, PREFER_BIDS

SOLAR, WIND = ENERGY_KINDS.index("solar") + 1, ENERGY_KINDS.index("wind") + 1
GRID = dict(slot=3, feed_in=170_000, retail=570_000, network_charge=((0,),))


def ids(inst: Instance, cap: int = 16) -> set[tuple[str, str]]:
    p = candidate_pairs(inst, cap)
    return {(inst.sellers[s].id, inst.buyers[b].id) for s, b in zip(p.seller.tolist(), p.buyer.tolist())}


def two_by_two(**prefs) -> Instance:
    """A cheap seller s1 (owner o-s1) that the band gives the top buyer b1, a dearer one s2 it gives b2;
    `prefs` sets fields of a participant by id (s1, s2, b1, b2)."""
    people = {"s1": Participant("s1", 5_000, 200_000, owner="o-s1"), "s2": Participant("s2", 5_000, 300_000, owner="o-s2"),
              "b1": Participant("b1", 3_000, 500_000, owner="o-b1"), "b2": Participant("b2", 3_000, 400_000, owner="o-b2")}
    for pid, fields in prefs.items():
        people[pid] = replace(people[pid], **fields)
    return Instance(**GRID, sellers=(people["s1"], people["s2"]), buyers=(people["b1"], people["b2"]))


@pytest.mark.parametrize("who, fields", [("b2", {"prefer": ("o-s1",)}), ("s1", {"prefer": ("o-b2",)})])
def test_a_preferred_pair_the_band_left_out_becomes_a_candidate(who, fields):
    """With one counterpart a buyer (cap 1) the band pairs b1-s1 and b2-s2; b2 naming s1's owner, or s1 naming
    b2's, makes s1-b2 a candidate first: it displaces b2's band pair (s2 is covered by b1 instead)."""
    assert ids(two_by_two(), cap=1) == {("s1", "b1"), ("s2", "b2")}
    assert ids(two_by_two(**{who: fields}), cap=1) == {("s1", "b1"), ("s1", "b2"), ("s2", "b1")}


def test_a_preference_for_an_owner_without_bids_or_without_margin_changes_nothing():
    assert ids(two_by_two(b2={"prefer": ("o-nobody",)}), cap=1) == ids(two_by_two(), cap=1)
    # s2 at 0.45 tokens is above b2's limit: no margin, no pair, preferred or not.
    dear = two_by_two(s2={"price": 450_000}, b2={"prefer": ("o-s2",)})
    assert ("s2", "b2") not in ids(dear, cap=1)


def test_a_preferred_pair_needs_the_minimum_gain_as_every_pair():
    """0.0001 token on its first 100 Wh: a 1 Wh buyer at a margin of 50,000 micro-units per kWh gains less."""
    tiny = two_by_two(b2={"wh": 1, "price": 250_000, "prefer": ("o-s1",)})
    assert 50_000 * 1 < MIN_PAIR_GAIN and ("s1", "b2") not in ids(tiny, cap=1)


def test_a_buyer_that_takes_only_solar_gets_a_solar_seller_and_no_other():
    """Five cheap wind and unstated sellers fill every window of the band; the solar-only buyer's band runs over
    the solar sellers alone, so it still gets the dear solar seller, and nothing else."""
    sellers = [Participant(f"s{k}", 5_000, 200_000 + k, kind=WIND if k % 2 else 0) for k in range(5)]
    sellers.append(Participant("sun", 2_000, 350_000, kind=SOLAR))
    buyers = [Participant(f"b{k}", 3_000, 560_000) for k in range(3)] + [Participant("green", 2_000, 500_000, kind=SOLAR)]
    inst = Instance(**GRID, sellers=tuple(sellers), buyers=tuple(buyers))
    got = ids(inst, cap=2)
    assert {s for s, b in got if b == "green"} == {"sun"}
    named = Instance(**GRID, sellers=tuple(replace(s, owner=f"o-{s.id}") for s in sellers),
                     buyers=tuple(buyers[:3]) + (replace(buyers[3], prefer=("o-s1", "o-s2")),))
    assert {s for s, b in ids(named, cap=2) if b == "green"} == {"sun"}  # a preference reaches no other kind


def preferences(inst: Instance, seed: int, share: float = 0.3, kinds: bool = True) -> Instance:
    """`inst` with owners (some owning several bids), a `share` of participants naming 1-3 owners, and
    sellers' kinds and buyers' only-kinds at random."""
    rng = random.Random(seed)
    n = len(inst.sellers) + len(inst.buyers)
    owners = [f"owner{k:04d}" for k in range(max(1, n * 2 // 3))]

    def dress(p: Participant, buyer: bool) -> Participant:
        owner = rng.choice(owners)
        prefer = tuple(sorted(set(rng.sample(owners, rng.randint(1, 3))) - {owner})) if rng.random() < share else ()
        kind = rng.choice([0, 0, SOLAR, WIND]) if kinds and (not buyer or rng.random() < 0.2) else 0
        return replace(p, owner=owner, prefer=prefer, kind=kind)

    return replace(inst, sellers=tuple(dress(p, False) for p in inst.sellers),
                   buyers=tuple(dress(p, True) for p in inst.buyers))


def eligible(inst: Instance, s: int, b: int) -> bool:
    """The tests every candidate pair passes: the kind, a positive margin, the minimum gain."""
    seller, buyer = inst.sellers[s], inst.buyers[b]
    margin = int(inst.net_limit(np.array([s]), np.array([b]))[0] - inst.seller_limit[s])
    ok_kind = buyer.kind == 0 or seller.kind == buyer.kind
    return ok_kind and margin > 0 and margin * min(seller.wh, buyer.wh, MIN_TRADE_WH) >= MIN_PAIR_GAIN


@pytest.mark.parametrize("participants, seed", [(60, 1), (300, 2), (1000, 3)])
def test_every_pair_passes_the_tests_and_no_limit_moves(participants, seed):
    inst = preferences(generate(participants, seed), seed)
    cap = 4
    p = candidate_pairs(inst, cap)
    assert all(eligible(inst, s, b) for s, b in zip(p.seller.tolist(), p.buyer.tolist()))
    per_buyer = np.bincount(p.buyer, minlength=len(inst.buyers))
    per_seller = np.bincount(p.seller, minlength=len(inst.sellers))
    assert (per_buyer <= np.minimum(np.maximum(inst.buyer_wh // MIN_TRADE_WH, 1), cap + COVER_EXTRA)).all()
    assert (per_seller <= np.maximum(inst.seller_wh // MIN_TRADE_WH, 1)).all()
    only = inst.buyer_kind[p.buyer]
    assert ((only == 0) | (inst.seller_kind[p.seller] == only)).all()
    assert (only > 0).any()  # the property saw buyers that take one kind


def preferred_reach(inst: Instance) -> set[tuple[int, int]]:
    """By brute force: every pair a preference reaches (module doc of pairs.py) that passes the tests."""
    out = set()
    for naming, others, best in ((inst.buyers, inst.sellers, lambda k: (int(inst.seller_limit[k]), k)),
                                 (inst.sellers, inst.buyers, lambda k: (-int(inst.buyer_limit[k]), k))):
        for i, p in enumerate(naming):
            for owner in p.prefer:
                theirs = sorted((k for k, q in enumerate(others) if q.owner == owner), key=best)[:PREFER_BIDS]
                out |= {(k, i) if naming is inst.buyers else (i, k) for k in theirs}
    return {(s, b) for s, b in out if eligible(inst, s, b)}


@pytest.mark.parametrize("seed", [4, 5, 6])
def test_preferred_pairs_are_candidates_first_within_the_limits(seed):
    """Every reached pair is a candidate when its buyer has no more reached pairs than its limit (cap, one per
    100 Wh) and its seller no more than one per 100 Wh: preferred pairs go first."""
    cap = 3
    inst = preferences(generate(400, seed), seed, share=0.15)
    reached = preferred_reach(inst)
    assert len(reached) > 20
    p = candidate_pairs(inst, cap)
    got = set(zip(p.seller.tolist(), p.buyer.tolist()))
    by_buyer = np.bincount([b for _, b in reached], minlength=len(inst.buyers))
    by_seller = np.bincount([s for s, _ in reached], minlength=len(inst.sellers))
    room = [(s, b) for s, b in reached if by_buyer[b] <= min(cap, max(inst.buyer_wh[b] // MIN_TRADE_WH, 1))
            and by_seller[s] <= max(inst.seller_wh[s] // MIN_TRADE_WH, 1)]
    assert len(room) > 20 and set(room) <= got
    plain = candidate_pairs(replace(inst, sellers=tuple(replace(q, prefer=()) for q in inst.sellers),
                                    buyers=tuple(replace(q, prefer=()) for q in inst.buyers)), cap)
    assert set(room) - set(zip(plain.seller.tolist(), plain.buyer.tolist()))  # some only the preference made


@pytest.mark.parametrize("seed", [7, 8])
def test_the_pairs_do_not_depend_on_the_order_bids_arrive_in(seed):
    inst = preferences(generate(300, seed), seed)
    want = ids(inst)
    rng = random.Random(seed)
    for _ in range(3):
        sellers, buyers = list(inst.sellers), list(inst.buyers)
        rng.shuffle(sellers)
        rng.shuffle(buyers)
        doc = replace(inst, sellers=tuple(sellers), buyers=tuple(buyers)).to_json()
        rng.shuffle(doc["sellers"])
        assert ids(instance_from_json(doc)) == want


@pytest.mark.parametrize("make", [lambda: generate(300, 11), lambda: generate(2000, 12), lambda: extreme(13),
                                  lambda: extreme(14), lambda: generate(500, 15)])
def test_owners_and_sellers_kinds_without_preferences_change_no_pair(make):
    """What nodes derived before preferences existed: bids that name no owner and take any kind get the
    same pairs when every bid has an owner and sellers state kinds."""
    inst = make()
    dressed = preferences(inst, 0, share=0.0)
    dressed = replace(dressed, buyers=tuple(replace(q, kind=0) for q in dressed.buyers))
    for cap in (1, 4, 16):
        a, b = candidate_pairs(inst, cap), candidate_pairs(dressed, cap)
        assert (a.seller.tolist(), a.buyer.tolist(), a.margin.tolist()) == (
            b.seller.tolist(), b.buyer.tolist(), b.margin.tolist())


def test_the_verifier_derives_the_preferred_pairs():
    """A clearing that trades on a pair only a preference made a candidate verifies on the instance with the
    preference and is refused on the same instance without it."""
    inst = two_by_two(b2={"prefer": ("o-s1",)})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = clear(inst, cap=1)
    assert verify(inst, result.clearing, cap=1).ok
    assert any((t.seller, t.buyer) == ("s1", "b2") for t in result.clearing.trades)
    refused = verify(two_by_two(), result.clearing, cap=1)
    assert not refused.ok and "not a tradable candidate pair" in refused.reason


def test_an_instance_with_preferences_clears_and_verifies():
    inst = preferences(generate(40, 21), 21)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = clear(inst)
    assert result.verdict.ok and verify(inst, result.clearing).ok


def test_the_instance_file_carries_preferences_by_name():
    inst = two_by_two(s1={"kind": SOLAR, "prefer": ("o-b2",)}, b2={"kind": SOLAR, "prefer": ("o-s1", "o-s2")})
    doc = inst.to_json()
    assert doc["sellers"][0] == {"id": "s1", "wh": 5_000, "price": 200_000, "zone": 0, "owner": "o-s1",
                                 "prefer": ["o-b2"], "kind": "solar"}
    assert doc["buyers"][1]["only"] == "solar" and "kind" not in doc["buyers"][1]
    assert instance_from_json(doc) == inst
    assert "owner" not in Instance(**GRID, sellers=(Participant("s", 1, 1),), buyers=()).to_json()["sellers"][0]


@pytest.mark.parametrize("side, edit, field", [
    ("sellers", {"only": "solar"}, "sellers[0].only: unknown field"),
    ("buyers", {"kind": "solar"}, "buyers[0].kind: unknown field"),
    ("sellers", {"kind": "coal"}, "sellers[0].kind: expected one of solar, wind, hydro"),
    ("buyers", {"prefer": ["a", "b", "c", "d"]}, "buyers[0].prefer: expected a list of at most 3"),
    ("buyers", {"prefer": ["b", "a"]}, "buyers[0].prefer: expected distinct owner ids in increasing order"),
    ("buyers", {"prefer": ["a", "a"]}, "buyers[0].prefer: expected distinct"),
    ("buyers", {"owner": "me", "prefer": ["me"]}, "buyers[0].prefer: expected distinct"),
    ("sellers", {"owner": "has space"}, "sellers[0].owner: expected 1..64 printable"),
])
def test_a_malformed_preference_names_its_field(side, edit, field):
    doc = {"grid": {"feed_in": 1, "retail": 2}, "sellers": [{"id": "s", "wh": 1, "price": 1}],
           "buyers": [{"id": "b", "wh": 1, "price": 1}]}
    doc[side][0].update(edit)
    with pytest.raises(InstanceError, match=f"^{field}".replace("[", r"\[").replace("]", r"\]").replace(".", r"\.")):
        instance_from_json(doc)


def test_an_instance_built_in_code_is_checked_too():
    for bad in ({"prefer": ("b", "a")}, {"prefer": ("x",) * 4}, {"owner": "o", "prefer": ("o",)}, {"kind": 9},
                {"prefer": ["a"]}):
        with pytest.raises(InstanceError):
            Instance(**GRID, sellers=(replace(Participant("s", 1, 1), **bad),), buyers=())
