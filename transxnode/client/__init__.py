"""Client-side tools that talk to a node over its API: the API client, wallet, bid profiles, the devnet."""
