"""How the API is served: hypercorn's settings for the node's listening socket."""

from __future__ import annotations

import os
import socket

from hypercorn.config import Config as HypercornConfig


def hypercorn_config(sock: socket.socket) -> HypercornConfig:
    hc = HypercornConfig()
    hc.bind = [f"fd://{os.dup(sock.fileno())}"]  # hypercorn closes its own copy on the way out
    hc.loglevel = "WARNING"
    hc.accesslog = None
    return hc
