"""Numbers a person types on the `transx` command line, read by the real command group in-process (no node):
a negative amount, quantity or price is named as such, not taken for an unknown option (issue 14, item 6)."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from nacl.signing import SigningKey

from consensus.rules.keys import address_of_key, encode_address
from transx_cli.main import main

PAYEE = encode_address(address_of_key(SigningKey(bytes(range(32)))))


def run(*args: str):
    return CliRunner().invoke(main, list(args), env={"TRANSX_DATADIR": None, "TRANSX_PASSWORD": None})


@pytest.mark.parametrize("args, message", [
    (("wallet", "send", PAYEE, "-5"), "amount must be positive, got -5"),
    (("wallet", "send", PAYEE, "-0.5", "--fee", "0.001"), "amount must be positive, got -0.5"),
    (("wallet", "send", "--fee", "0.001", PAYEE, "-5", "--json"), "amount must be positive, got -5"),
    (("wallet", "send", PAYEE, "5", "--fee", "-1"), "fee must not be negative, got -1"),
    (("bid", "buy", "-5kWh", "0.5", "-y"), "quantity must be positive, got -5kWh"),
    (("bid", "sell", "5kWh", "-0.3", "--slot", "7", "-y"), "price must not be negative, got -0.3"),
    (("bid", "sell", "-2", "0.3"), "quantity must be positive, got -2"),
])
def test_a_negative_number_is_named_not_taken_for_an_option(args, message):
    r = run(*args)
    assert (r.exit_code, r.stderr) == (2, f"error: {message}\n"), r.output


def test_unknown_options_and_double_dash_still_read_as_before():
    r = run("wallet", "send", PAYEE, "5", "--frm", "x")
    assert r.exit_code == 2 and "No such option '--frm'" in r.stderr, r.stderr
    r = run("wallet", "send", "--", PAYEE, "-5")
    assert (r.exit_code, r.stderr) == (2, "error: amount must be positive, got -5\n"), r.stderr
    r = run("wallet", "send", PAYEE, "-5", "extra")
    assert r.exit_code == 2 and "unexpected extra argument" in r.stderr, r.stderr


def test_a_settlement_reads_on_time_as_on_the_explorer_page():
    """The CLI's settlement table words a reading as the API and the explorer page do ("on time", "missing
    (default applied)"), not cut to its first word (issue 14, item 10)."""
    from pathlib import Path

    from transx_cli.tables import settlements_table

    row = dict(slot=5, sold_wh=3000, bought_wh=0, exported_wh=2000, imported_wh=0, shortfall_wh=1000, unused_wh=0,
               charge=570_000, credit=0, unpaid=0)
    rows = [{**row, "reading": "on time"}, {**row, "slot": 6, "reading": "missing (default applied)"}]
    text = settlements_table(rows, "slot")
    assert " on time " in text and " missing (default applied) " in text, text
    page = (Path(__file__).parents[2] / "transxnode/api/static/explorer.html").read_text()
    assert "esc(r.reading)" in page  # the page shows the API's words as they are
