"""``timbre watermark detect FILE``: is this audio file Timbre's?

Without ``--url`` the file is decoded and tested here (no server needed) and the verdict printed as
JSON: ``{"detected", "confidence", "score", "seconds"}``, under the watermark key the server would
use (``[watermark] key`` of ``$TIMBRE_CONFIG``, or ``$TIMBRE_WATERMARK_KEY``). With ``--url`` the file is uploaded to that
server's ``POST /v1/watermark/detect`` instead, whose answer adds ``provenance`` (generation time,
voice, API version) when the stream belongs to the key's tenant. Exit status: 0 when the watermark
is detected, 1 when it is not, 2 on a usage error or an unreadable file, 3 when the server refused.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import aiohttp

from realtime.client import resolve_api_key
from realtime.config import load_config
from realtime.watermark_api import PATH, detect_bytes
from session.errors import TimbreError


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``watermark`` (with its ``detect`` command) on an ``argparse`` subparsers object."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "watermark", help="detect Timbre's audio watermark in a file")
    commands = parser.add_subparsers(dest="watermark_command", required=True)
    detect = commands.add_parser(
        "detect", help="test an audio file for the watermark",
        description="Test an audio file (wav, mp3, flac, ogg/opus, webm) for Timbre's watermark; "
                    "with --url, ask a server, which also reports the stream's provenance when "
                    "it belongs to your tenant.")
    detect.add_argument("file", type=Path, help="audio file")
    detect.add_argument("--url", default=None,
                        help="server base URL (http://...); default: detect locally")
    detect.add_argument("--api-key", default=None,
                        help="API key for --url (default: $TIMBRE_API_KEY, else the demo key)")
    detect.set_defaults(func=main)
    return parser


def main(args: argparse.Namespace) -> int:
    try:
        data = args.file.read_bytes()
    except OSError as exc:
        print(f"timbre: cannot read {args.file}: {exc.strerror}", file=sys.stderr)
        return 2
    if args.url is None:
        try:
            # the server's key: [watermark] key of $TIMBRE_CONFIG, or $TIMBRE_WATERMARK_KEY
            found = detect_bytes(data, load_config().watermark.key_bytes)
        except TimbreError as err:
            print(f"timbre: {err.message}", file=sys.stderr)
            return 2
        answer: dict[str, Any] = {
            "detected": found.detected, "confidence": round(found.confidence, 6),
            "score": round(found.analysis.z, 3), "seconds": round(found.analysis.seconds, 2)}
    else:
        status, answer = asyncio.run(_ask(args.url, resolve_api_key(args.api_key), args.file.name,
                                          data))
        if status != 200:
            print(f"timbre: the server answered {status}: {json.dumps(answer)}", file=sys.stderr)
            return 3
    print(json.dumps(answer, indent=2))
    return 0 if answer.get("detected") else 1


async def _ask(url: str, key: str | None, name: str, data: bytes) -> tuple[int, dict[str, Any]]:
    form = aiohttp.FormData()
    form.add_field("file", data, filename=name, content_type="application/octet-stream")
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    async with aiohttp.ClientSession() as http, http.post(
            url.rstrip("/") + PATH, data=form, headers=headers) as response:
        try:
            body = await response.json(content_type=None)
        except (json.JSONDecodeError, aiohttp.ContentTypeError):
            body = {"error": await response.text()}
        return response.status, body if isinstance(body, dict) else {"answer": body}
