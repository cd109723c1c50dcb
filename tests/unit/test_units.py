"""Money and energy for people (issue 14, item 5): one formatting in the CLI, the refusal messages and the
explorer page; a quantity without a unit is refused, not taken as Wh."""

from __future__ import annotations

import pytest

from page_support import run_page, text_of
from transx_cli import plugin_api as cli
from transxnode.client.wallet import InputError, parse_energy

AMOUNTS = [0, 1, 10, 999_999, 1_000_000, 1_001_000, 12_500_000, 100_000_000, 123_456_789_012, -1, -2_500_000, 4_999]
ENERGIES = [0, 1, 800, 1000, 1234, 3000, 12_345, 1_500_000, -250]


def test_people_read_tokens_and_kwh_exactly_with_sensible_decimals():
    assert [cli.tokens(m) for m in (100_000_000, 1_001_000, 12_500_000, 1, 0, -2_500_000, 123_456_789_012)] == [
        "100.00", "1.001", "12.50", "0.000001", "0.00", "-2.50", "123,456.789012"]
    assert cli.format_tokens(None) == cli.format_price(None) == "-"
    assert [cli.format_price(p) for p in (500_000, 323_912, 570_000)] == ["0.50", "0.323912", "0.57"]
    assert [cli.kwh(w) for w in (3000, 800, 1234, 1_500_000, 1)] == ["3.000", "0.800", "1.234", "1,500.000", "0.001"]


def test_a_quantity_without_a_unit_is_refused_with_the_accepted_forms():
    assert parse_energy("3kWh") == 3000 and parse_energy("800Wh") == 800 and parse_energy("2.5 kwh") == 2500
    for bare, forms in (("3", "3kWh or 3000Wh"), ("0.5", "0.5kWh or 500Wh"), ("800", "800kWh or 800000Wh")):
        with pytest.raises(InputError, match=f"^quantity '{bare}' has no unit: write {forms}$"):
            parse_energy(bare)


def test_the_explorer_page_formats_money_and_energy_as_the_cli_does():
    out = run_page(f"[{AMOUNTS}.map(tok), {AMOUNTS}.map(price), {ENERGIES}.map(kwh), price(null)]")
    assert out == [[cli.tokens(m) for m in AMOUNTS], [cli.format_price(m) for m in AMOUNTS],
                   [cli.kwh(w) for w in ENERGIES], "-"]


def test_the_pages_transaction_view_shows_tokens_and_kwh_not_micro_units():
    transfer = {"hash": "ab" * 32, "kind": "transfer", "from": "trx1from", "nonce": 0, "fee": 1000, "to": "trx1to",
                "amount": 100_000_000, "status": "included", "height": 7, "position": 0}
    bid = {"hash": "cd" * 32, "kind": "bid", "from": "trx1from", "nonce": 1, "fee": 1000, "side": "buy", "slot": 9,
           "wh": 3000, "price": 500_000, "zone": 0, "expiry": 6, "status": "pending"}
    pages = run_page(f'Promise.all([tx("{"ab" * 32}"), tx("{"cd" * 32}")])',
                     docs={f"tx/{t['hash']}": t for t in (transfer, bid)})
    seen = [text_of(p) for p in pages]
    assert "amount 100.00 tokens" in seen[0] and "fee 0.001 tokens" in seen[0], seen[0]
    assert "wh 3.000 kWh" in seen[1] and "price 0.50 tokens per kWh" in seen[1], seen[1]
    for raw in ("100000000", "1000", "3000", "500000"):
        assert raw not in " ".join(seen).split(), raw
    assert "nonce 1" in seen[1] and "slot 9" in seen[1]  # counts stay counts
