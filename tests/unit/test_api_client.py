"""The CLI's API client against a node that dies mid-reply (issue 17, item 5): a real socket server on
127.0.0.1 that reads the request, answers part of it and closes (or resets), and the client says so in one
line (no http.client traceback), with whether the request may have been received."""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Callable

import pytest
from click.testing import CliRunner

from consensus.rules.codec import digest
from transx_cli.main import main
from transxnode.client.node_api import ApiClient, ClientError

Reply = Callable[[socket.socket], None]


def _read_request(conn: socket.socket) -> bytes:
    """The whole request: its headers and as much body as its Content-Length says."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                   if line.lower().startswith(b"content-length:")), 0)
    while len(body) < length:
        chunk = conn.recv(65536)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body


def _reset(conn: socket.socket) -> None:
    """Close with a TCP reset (SO_LINGER 0), as a killed process's socket may."""
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


class DyingNode:
    """Accepts one connection at a time on 127.0.0.1, reads the request, and hands it to `reply`, which
    writes what a dying node would; then closes."""

    def __init__(self, reply: Reply) -> None:
        self.reply = reply
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.requests: list[bytes] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                self.requests.append(_read_request(conn))
                self.reply(conn)

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def dying():
    servers: list[DyingNode] = []

    def start(reply: Reply) -> DyingNode:
        servers.append(DyingNode(reply))
        return servers[-1]

    yield start
    for s in servers:
        s.close()


def half_body(conn):
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 200\r\n\r\n{\"height\": 4")


def no_reply(conn):
    pass


def reset_before_reply(conn):
    _reset(conn)


def half_body_then_reset(conn):
    half_body(conn)
    _reset(conn)


def half_headers(conn):
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Ty")


def half_error_body(conn):
    conn.sendall(b"HTTP/1.1 422 Unprocessable Entity\r\nContent-Type: application/json\r\nContent-Length: 300\r\n\r\n"
                 b"{\"error\": \"nonce")


CUTS = [half_body, no_reply, reset_before_reply, half_body_then_reset, half_headers]


@pytest.mark.parametrize("reply", CUTS, ids=lambda f: f.__name__)
def test_a_read_cut_mid_reply_is_one_line_that_says_nothing_changed(dying, reply):
    node = dying(reply)
    with pytest.raises(ClientError) as e:
        ApiClient(node.url, timeout=5).get("/api/node")
    msg = str(e.value)
    assert "\n" not in msg and node.url in msg, msg
    assert "stopped answering mid-reply" in msg and "a read: nothing changed" in msg, msg
    assert e.value.status is None and e.value.may_be_received
    assert node.requests and node.requests[0].startswith(b"GET /api/node ")


@pytest.mark.parametrize("reply", CUTS, ids=lambda f: f.__name__)
def test_a_transaction_cut_mid_reply_may_have_been_sent_and_names_its_hash(dying, reply):
    node = dying(reply)
    raw = bytes(range(40))
    tx_hash = digest(raw, b"transx-tx").hex()
    with pytest.raises(ClientError) as e:
        ApiClient(node.url, timeout=5).submit(raw)
    msg = str(e.value)
    assert "\n" not in msg and "stopped answering mid-reply" in msg, msg
    assert "may have been sent" in msg and f"transx explorer tx {tx_hash}" in msg, msg
    assert raw.hex().encode() in node.requests[0]  # it was received indeed


def test_an_error_reply_cut_mid_body_keeps_its_status(dying):
    node = dying(half_error_body)
    with pytest.raises(ClientError) as e:
        ApiClient(node.url, timeout=5).get("/api/node")
    assert e.value.status == 422 and str(e.value) == "HTTP 422"


def test_a_node_that_is_not_there_received_nothing():
    sock = socket.create_server(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    sock.close()
    with pytest.raises(ClientError) as e:
        ApiClient(url, timeout=5).submit(b"\x01\x02")
    assert "no node answers" in str(e.value) and not e.value.may_be_received


def test_a_reply_that_never_comes_times_out_in_one_line(dying):
    done = threading.Event()
    node = dying(lambda conn: done.wait(5))
    try:
        with pytest.raises(ClientError) as e:
            ApiClient(node.url, timeout=0.3).submit(b"\x01\x02")
    finally:
        done.set()
    msg = str(e.value)
    assert "\n" not in msg and "did not answer within 0.3 s" in msg and "may have been sent" in msg, msg


@pytest.mark.parametrize("reply", [half_body, reset_before_reply], ids=lambda f: f.__name__)
def test_the_cli_says_one_line_and_exits_non_zero(dying, reply):
    node = dying(reply)
    r = CliRunner().invoke(main, ["explorer", "head", "--api", node.url],
                           env={"TRANSX_DATADIR": None, "TRANSX_PASSWORD": None})
    assert r.exit_code == 1, (r.output, r.exception)
    assert r.stderr.startswith("error: ") and r.stderr.count("\n") == 1, r.stderr
    assert "stopped answering mid-reply" in r.stderr and "Traceback" not in r.output
