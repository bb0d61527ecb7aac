"""Request bodies that stop arriving, over raw sockets against a real server with tiny deadlines.

A client can send its headers and then trickle or stop its body; a chunked body whose framing
breaks after the handler started reading is never failed by aiohttp (3.14, C parser, #10596).
Without a deadline each holds its handler for ever. Here the server's deadlines are one second
idle, two seconds per body plus its size at 100 kB/s (``[server] body_*``), and every stalled
body -- a JSON endpoint (``read_body``), both multipart uploads (watermark detection and the voice
form), a trickle and a broken chunked body -- gets a JSON 408 ``body_timeout`` while the server
keeps serving; an upload that pauses between pieces but keeps coming is answered as usual.
"""

from __future__ import annotations

import io
import json
import select
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile

from realtime.config import load_config
from realtime.guards import BodyDeadlines
from tests.server import RunningServer, ServerThread

IDLE_S = 1.0
FLOOR_S = 2.0
RATE = 100_000.0
BOUNDARY = "deadline-test-boundary"
WAIT_S = 20.0
"""How long a test waits for an answer before failing (a bound, never a measurement)."""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    thread = ServerThread(tmp_path_factory.mktemp("body-deadlines"),
                          server={"body_idle_timeout_s": IDLE_S, "body_timeout_s": FLOOR_S,
                                  "body_min_bytes_per_s": RATE},
                          scheduler={"admission_utilization": None})
    yield thread.start()
    thread.stop()


def connect(server: RunningServer) -> socket.socket:
    port = int(server.url.rsplit(":", 1)[1])
    return socket.create_connection(("127.0.0.1", port), timeout=WAIT_S)


def head(server: RunningServer, path: str, content_type: str, length: int | None) -> bytes:
    framing = (f"Content-Length: {length}" if length is not None
               else "Transfer-Encoding: chunked")
    return (f"POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {server.key}\r\n"
            f"Content-Type: {content_type}\r\n{framing}\r\n\r\n").encode()


def read_response(conn: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One response (status, headers, body by its Content-Length); the server may keep the
    connection open afterwards (aiohttp lingers over an unread body), so never read to EOF."""
    raw = b""
    while b"\r\n\r\n" not in raw:
        chunk = conn.recv(65536)
        assert chunk, f"the server closed the connection without an answer: {raw!r}"
        raw += chunk
    top, _, body = raw.partition(b"\r\n\r\n")
    status_line, *lines = top.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    while len(body) < int(headers.get("content-length", "0")):
        chunk = conn.recv(65536)
        assert chunk, "the server closed the connection mid-answer"
        body += chunk
    return int(status_line.split()[1]), headers, body


def answered(conn: socket.socket) -> bool:
    return bool(select.select([conn], [], [], 0)[0])


def error_code(body: bytes) -> str:
    return str(json.loads(body)["error"]["code"])


def healthy(server: RunningServer) -> bool:
    with connect(server) as conn:
        conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        status, _, body = read_response(conn)
    return status == 200 and b'"ok"' in body


def multipart(fields: dict[str, str], file_name: str, data: bytes) -> bytes:
    out = b""
    for name, value in fields.items():
        out += (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n"
                f"{value}\r\n").encode()
    out += (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; "
            f"filename=\"{file_name}\"\r\nContent-Type: audio/wav\r\n\r\n").encode()
    return out + data + f"\r\n--{BOUNDARY}--\r\n".encode()


def noise_wav(seconds: float, rate: int = 16000) -> bytes:
    samples = np.random.default_rng(7).normal(0, 0.1, int(seconds * rate)).astype(np.float32)
    buffer = io.BytesIO()
    soundfile.write(buffer, samples, rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def stall(server: RunningServer, path: str, content_type: str, body: bytes,
          sent: int) -> tuple[int, bytes]:
    """Declare ``body`` but send only its first ``sent`` bytes, then wait for the answer."""
    with connect(server) as conn:
        conn.sendall(head(server, path, content_type, len(body)) + body[:sent])
        status, _, answer = read_response(conn)
    return status, answer


MULTIPART = f"multipart/form-data; boundary={BOUNDARY}"


def test_a_stalled_json_body_is_a_408_and_the_server_goes_on(server: RunningServer) -> None:
    body = json.dumps({"ttl_s": 60}).encode()
    status, answer = stall(server, "/v1/tokens", "application/json", body, 5)
    assert status == 408
    assert error_code(answer) == "body_timeout"
    assert "no part of the request body arrived" in json.loads(answer)["error"]["message"]
    assert healthy(server)


@pytest.mark.parametrize("path", ["/v1/synthesize", "/v1/voices/mix"])
def test_the_long_text_json_bodies_have_the_same_deadlines(server: RunningServer,
                                                           path: str) -> None:
    body = json.dumps({"text": "Hello there. " * 50, "voice": "joe"}).encode()
    status, answer = stall(server, path, "application/json", body, 40)
    assert status == 408
    assert error_code(answer) == "body_timeout"
    assert healthy(server)


def test_a_stalled_watermark_upload_is_a_408(server: RunningServer) -> None:
    body = multipart({}, "clip.wav", noise_wav(2.0))
    status, answer = stall(server, "/v1/watermark/detect", MULTIPART, body, len(body) // 2)
    assert status == 408
    assert error_code(answer) == "body_timeout"
    assert healthy(server)


def test_a_stalled_voice_upload_is_a_408(server: RunningServer) -> None:
    body = multipart({"name": "stalled", "consent_accepted": "true"}, "ref.wav", noise_wav(2.0))
    status, answer = stall(server, "/v1/voices", MULTIPART, body, len(body) // 2)
    assert status == 408
    assert error_code(answer) == "body_timeout"
    assert healthy(server)


def test_a_trickled_body_hits_the_whole_body_deadline(server: RunningServer) -> None:
    """One byte every 0.2 s never trips the idle deadline; the whole-body deadline (two
    seconds plus 1,000 bytes at 100 kB/s) ends it long before the 1,000 bytes could arrive."""
    body = b'{"ttl_s": 60' + b" " * 987 + b"}"
    with connect(server) as conn:
        conn.sendall(head(server, "/v1/tokens", "application/json", len(body)))
        sent = 0
        while not answered(conn) and sent < len(body):
            conn.sendall(body[sent:sent + 1])
            sent += 1
            time.sleep(0.2)
        status, _, answer = read_response(conn)
    assert sent < len(body)
    assert status == 408
    assert "was not complete within" in json.loads(answer)["error"]["message"]
    assert healthy(server)


def test_a_chunked_body_whose_framing_breaks_is_a_408(server: RunningServer) -> None:
    """aiohttp #10596: the broken chunk never fails the handler's read; the deadline does."""
    with connect(server) as conn:
        conn.sendall(head(server, "/v1/tokens", "application/json", None) + b"2\r\n{\"\r\n")
        time.sleep(0.3)  # the handler is reading the body now
        conn.sendall(b"zz\r\nhello\r\n0\r\n\r\n")
        status, _, answer = read_response(conn)
    assert status == 408
    assert error_code(answer) == "body_timeout"
    assert healthy(server)


def test_an_upload_that_keeps_coming_is_answered(server: RunningServer) -> None:
    """320 kB in eight pieces 0.4 s apart (3.2 s): longer than the two-second floor, but within its
    size's allowance, and no pause reaches the idle deadline."""
    body = multipart({}, "clip.wav", noise_wav(10.0))
    step = len(body) // 8 + 1
    with connect(server) as conn:
        conn.sendall(head(server, "/v1/watermark/detect", MULTIPART, len(body)))
        for start in range(0, len(body), step):
            assert not answered(conn)
            conn.sendall(body[start:start + step])
            time.sleep(0.4)
        status, _, answer = read_response(conn)
    assert status == 200, answer
    assert json.loads(answer)["detected"] is False


def test_the_whole_body_deadline_follows_the_declared_size() -> None:
    deadlines = BodyDeadlines(idle_s=15.0, floor_s=60.0, min_bytes_per_s=64 * 1024)
    assert deadlines.total_s(0) == 60.0
    assert deadlines.total_s(50 * 1024 * 1024) == 60.0 + 800.0


def test_the_deadlines_come_from_the_server_table(tmp_path: Path) -> None:
    toml = tmp_path / "timbre.toml"
    toml.write_text("[server]\nbody_idle_timeout_s = 5.0\nbody_timeout_s = 30.0\n"
                    "body_min_bytes_per_s = 1000.0\n")
    server = load_config(env={}, toml_path=toml).server
    assert (server.body_idle_timeout_s, server.body_timeout_s,
            server.body_min_bytes_per_s) == (5.0, 30.0, 1000.0)
