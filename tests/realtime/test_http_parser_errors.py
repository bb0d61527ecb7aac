"""Requests aiohttp's own HTTP parser refuses, sent as raw bytes over a real socket.

These never reach the app: aiohttp answers them from ``RequestHandler.handle_error``, which the
server builds directly (no class or factory hook, no middleware, no ``on_response_prepare``
signal: the request has no route), so they stay aiohttp's ``text/plain`` 400s rather than Timbre's
JSON errors (docs/security.md). What is checked here is what matters to a client and to the
server: a 400 whose body says what was wrong (no traceback), the connection closed, and the server
serving everyone else, also while a connection whose chunked body broke mid-way is held open.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator

import psutil
import pytest

from tests.security.conftest import on_server
from tests.server import RunningServer, ServerThread

LONG = b"a" * 9000  # over aiohttp's 8,190-byte limit on the request line and on a header


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    thread = ServerThread(tmp_path_factory.mktemp("parser-errors"))
    yield thread.start()
    thread.stop()


def address(server: RunningServer) -> tuple[str, int]:
    return "127.0.0.1", int(server.url.rsplit(":", 1)[1])


def exchange(server: RunningServer, data: bytes) -> tuple[int, dict[str, str], str]:
    """Send ``data``, read until the server closes: (status, headers, body)."""
    with socket.create_connection(address(server), timeout=30) as conn:
        conn.sendall(data)
        raw = b""
        while chunk := conn.recv(65536):
            raw += chunk
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    return int(status_line.split()[1]), headers, body.decode("utf-8", "replace")


def healthy(server: RunningServer) -> bool:
    status, _, body = exchange(server, b"GET /healthz HTTP/1.1\r\nHost: x\r\n"
                                       b"Connection: close\r\n\r\n")
    return status == 200 and '"ok"' in body


def server_tasks(server: RunningServer) -> int:
    async def count() -> int:
        return len(asyncio.all_tasks())

    return on_server(server, count())


CASES = {
    "a malformed request line": (b"GARBAGE\r\n\r\n", "method"),
    "a request line over 8 KiB": (b"GET /" + LONG + b" HTTP/1.1\r\nHost: x\r\n\r\n",
                                  "8190 bytes"),
    "a header over 8 KiB": (b"GET /v1/voices HTTP/1.1\r\nHost: x\r\nX-Big: " + LONG
                            + b"\r\n\r\n", "8190 bytes"),
    "a header line without a colon": (b"GET /healthz HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n",
                                      "header"),
    "too many headers": (b"GET /healthz HTTP/1.1\r\nHost: x\r\n"
                         + b"".join(b"X-%d: a\r\n" % i for i in range(200)) + b"\r\n",
                         "headers"),
    "a NUL in the path": (b"GET /\x00 HTTP/1.1\r\nHost: x\r\n\r\n", "url"),
    "a bad chunk size": (
        b"POST /v1/tokens HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        + b"zz\r\nhello\r\n0\r\n\r\n", "chunk size"),
    "both Content-Length and chunked": (
        b"POST /v1/tokens HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
        + b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", "content-length"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_request_the_parser_refuses_is_a_readable_400(server: RunningServer,
                                                        case: str) -> None:
    data, reason = CASES[case]
    status, headers, body = exchange(server, data)
    assert status == 400
    assert headers["content-type"].startswith("text/plain")
    assert reason in body.lower(), body
    assert "Traceback" not in body and len(body) < 1000
    assert healthy(server)


def test_a_chunked_body_that_breaks_mid_way_does_not_stop_the_server(
        server: RunningServer) -> None:
    """The headers are parsed and the handler is already reading when the broken chunk comes:
    aiohttp (C parser, 3.14) queues its 400 behind the request instead of failing the body, so
    the read waits until the client goes or the body's idle deadline passes (a 408,
    tests/realtime/test_body_deadlines.py); the server serves everyone else meanwhile and frees
    the request once the client has gone."""
    healthy(server)
    before = server_tasks(server)
    fds = psutil.Process().num_fds()
    conn = socket.create_connection(address(server), timeout=30)
    try:
        conn.sendall(b"POST /v1/tokens HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
                     + server.key.encode() + b"\r\nTransfer-Encoding: chunked\r\n\r\n"
                     b"2\r\n{\"\r\n")
        time.sleep(0.3)  # the handler is reading the body now
        conn.sendall(b"zz\r\nhello\r\n0\r\n\r\n")
        for _ in range(5):
            assert healthy(server)
    finally:
        conn.close()
    deadline = time.monotonic() + 10
    while server_tasks(server) > before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server_tasks(server) <= before
    assert psutil.Process().num_fds() <= fds + 2
