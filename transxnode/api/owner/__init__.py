"""The owner's web app at /app/: a home's day and bids, a car's and a station's charging, from a browser.

`owner_app(node, cfg)` is the Starlette app the node mounts at /app (transxnode/daemon.py); sessions.py
holds unlocked keys in memory, views.py reads what the pages show.
"""

from .routes import owner_app

__all__ = ["owner_app"]
