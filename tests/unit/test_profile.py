"""Bid profiles (`transx bid profile FILE`): what a file may say, and the one-line errors when it is wrong."""

from __future__ import annotations

import pytest

from transxnode.client.profile import ProfileBid, parse_profile
from consensus.rules.transactions import BUY, SELL
from transxnode.client.wallet import InputError

OPEN = dict(first_open=100, last_allowed=148, zones=3)


def test_csv_and_json_profiles_say_the_same_day():
    csv_text = "Slot,Side,Quantity,Price\n+0,sell,2.5kWh,0.30\n101,buy,800Wh,0.5\n+2,SELL,3 kwh,0.281\n"
    json_text = ('{"bids": [{"slot": "+0", "side": "sell", "quantity": "2.5kWh", "price": "0.30"},'
                 ' {"slot": 101, "side": "buy", "quantity": "800Wh", "price": 0.5},'
                 ' {"slot": "+2", "side": "sell", "quantity": "3kWh", "price": "0.281"}]}')
    want = [ProfileBid(100, SELL, 2_500, 300_000, 1), ProfileBid(101, BUY, 800, 500_000, 1),
            ProfileBid(102, SELL, 3_000, 281_000, 1)]
    assert parse_profile(csv_text, default_zone=1, **OPEN) == want
    assert parse_profile(json_text, default_zone=1, **OPEN) == want


@pytest.mark.parametrize("text, words", [
    ("slot,side,quantity\n+0,sell,1kWh\n", "the CSV header must name slot, side, quantity, price"),
    ("slot,side,quantity,price\n", "no bids in it"),
    ("slot,side,quantity,price\n+0,sell,1kWh,0.3\n99,buy,1kWh,0.5\n", "line 3: slot 99 is closed for bids"),
    ("slot,side,quantity,price\n+49,sell,1kWh,0.3\n", "line 2: slot 149 is beyond the bidding horizon"),
    ("slot,side,quantity,price\n+0,sell,1kWh,0.3\n+0,buy,1kWh,0.5\n", "line 3: slot 100 has both a buy and a sell"),
    ("slot,side,quantity,price\nsoon,sell,1kWh,0.3\n", "slot 'soon' is not a slot number or +N"),
    ("slot,side,quantity,price\n+0,lend,1kWh,0.3\n", "side 'lend' is not buy or sell"),
    ("slot,side,quantity,price\n+0,sell,,0.3\n", "line 2: missing quantity"),
    ("slot,side,quantity,price,zone\n+0,sell,1kWh,0.3,7\n", "zone 7 does not exist"),
    ("slot,side,quantity,price\n+0,sell,1kWh,0.1234567\n", "more than 6 decimals"),
    ("slot,side,quantity,price\n+0,sell,1kWh,99999\n", "above the most a bid may name"),
    ("[{\"slot\": 1", "not valid JSON"),
    ('{"bids": 3}', "JSON must be a list of bids"),
    ('[{"slot": "+0", "side": "buy", "price": "0.5"}]', "bid 1: missing quantity"),
])
def test_a_bad_profile_is_refused_whole_with_the_row_named(text, words):
    with pytest.raises(InputError) as e:
        parse_profile(text, name="day.csv", **OPEN)
    assert words in str(e.value) and str(e.value).startswith("day.csv") and "\n" not in str(e.value)
