"""The home agent: forecasts, a battery, and a bidding strategy that trade for a home hands-free.

A client of the node (it signs transactions and reads the chain's state); the node never imports it.
"""
