"""``timbre clone``: make a voice profile from reference audio on a running server and wait for it.

    timbre clone --url http://127.0.0.1:8080 --name Narrator --audio take1.wav [--audio take2.mp3] \\
        [--transcript "What take one says"] --owner "Ada Lovelace" --purpose "audiobook narration" \\
        [--statement "..."] [--expires 2027-12-31] [--api-key KEY] [--timeout 600]

The command uploads the files as ``POST /v1/voices`` does from a form (docs/rest.md): ``--owner``,
``--purpose`` and the statement become the consent record, and running the command *is* accepting
that statement (``consent_accepted=true``), so it prints the statement it accepts on stderr. The
default statement names the owner, the voice and the purpose. The i-th ``--transcript`` belongs to
the i-th ``--audio``. Then it polls ``GET /v1/jobs/{id}`` and draws a progress bar on stderr (redrawn
in place on a terminal; one plain line per change otherwise, for logs and CI), and once the job
succeeded and ``GET /v1/voices/{id}`` reports ``ready`` it prints the voice id as the last line of
stdout, so ``VOICE=$(timbre clone ... | tail -n1)`` works.

It relies only on the job's ``status``/``progress``/``error`` and the profile's ``voice_id``/
``status``: what a clone job computes is the server's business.

Exit status: 0 the profile is ready; 1 the server refused the upload (the HTTP status, the server's
error code and message are printed: 401 key, 402 profile limit, 413 too large, 422 consent or
audio), the job or the profile failed, or the server could not be reached; 2 usage error (argparse)
or a local file that cannot be read; 3 ``--timeout`` passed while the job was still running (it goes
on on the server; its voice and job ids are printed on stderr); 130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import aiohttp

from realtime.client import resolve_api_key

PROG = "timbre clone"
POLL_INTERVAL_S = 0.25
BAR_WIDTH = 30
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_TIMEOUT, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
_HINTS = {
    401: "pass --api-key or set TIMBRE_API_KEY to a valid key",
    403: "the key needs the voices:write and voices:read scopes",
    413: "send less reference audio (fewer or shorter files)",
}


class CloneFailed(Exception):
    """The voice was not made: ``message`` says why in the server's words where it gave any."""

    def __init__(self, message: str, exit_status: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.message = message
        self.exit_status = exit_status


# -- what is sent (pure) ---------------------------------------------------------------------------


def default_statement(owner: str, name: str, purpose: str) -> str:
    """The consent statement accepted when ``--statement`` is not given."""
    return (f"I, {owner}, am the owner of the voice in the reference recordings and agree that it "
            f"is cloned into the voice profile \"{name}\" to be used for: {purpose}.")


@dataclass(frozen=True)
class CloneRequest:
    """One ``POST /v1/voices`` form: ``files`` are (file name, bytes); the i-th transcript belongs
    to the i-th file (fewer transcripts than files is fine)."""

    name: str
    files: tuple[tuple[str, bytes], ...]
    transcripts: tuple[str, ...]
    owner: str
    purpose: str
    statement: str
    expires: str | None = None

    def fields(self) -> list[tuple[str, str]]:
        """The text fields, in the order they are sent."""
        fields = [("name", self.name), ("consent_owner_name", self.owner),
                  ("consent_statement", self.statement), ("consent_accepted", "true"),
                  ("consent_purpose", self.purpose)]
        if self.expires:
            fields.append(("consent_expires_at", self.expires))
        return fields + [("transcript", text) for text in self.transcripts]

    def form(self) -> aiohttp.FormData:
        form = aiohttp.FormData()
        for key, value in self.fields():
            form.add_field(key, value)
        for filename, data in self.files:
            form.add_field("file", data, filename=filename,
                           content_type="application/octet-stream")
        return form


def http_base(url: str) -> str:
    """``url`` as the HTTP base the REST API lives under (``ws://`` and ``wss://``, as ``timbre
    say`` takes them, become ``http://`` and ``https://``). Raises ValueError for other schemes."""
    parts = urllib.parse.urlsplit(url)
    scheme = {"ws": "http", "wss": "https"}.get(parts.scheme, parts.scheme)
    if scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"not a server URL: {url!r} (expected http://host:port)")
    return urllib.parse.urlunsplit((scheme, parts.netloc, parts.path.rstrip("/"), "", ""))


def refusal_message(status: int, body: Any, action: str) -> str:
    """One line for an HTTP error answer: status, the server's code and message, and a hint."""
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        detail = f"{error.get('code', 'error')}: {error.get('message', '')}"
    else:
        detail = str(body)[:300] or "no details"
    hint = _HINTS.get(status)
    return f"{action}: HTTP {status} {detail}" + (f" ({hint})" if hint else "")


# -- the progress bar (writes to a stream; no network) ---------------------------------------------


def render_bar(progress: float, status: str, elapsed_s: float, width: int = BAR_WIDTH) -> str:
    """``[#######.......]  45% running   3.1 s``: progress clamped to 0..1."""
    fraction = min(1.0, max(0.0, progress))
    filled = round(fraction * width)
    return (f"[{'#' * filled}{'.' * (width - filled)}] {fraction * 100:3.0f}% "
            f"{status:<9} {elapsed_s:5.1f} s")


class ProgressBar:
    """The clone job's progress on ``stream``. On a terminal one line is redrawn in place (every
    update, so the clock moves); elsewhere (a pipe, a log file) a plain line is written each time
    the status or the progress changes, never carriage returns."""

    def __init__(self, stream: TextIO, label: str) -> None:
        self.stream = stream
        self.label = label
        self.tty = stream.isatty()
        self._last: tuple[str, float] | None = None
        self._width = 0

    def update(self, status: str, progress: float, elapsed_s: float) -> None:
        if self.tty:
            line = f"{self.label} {render_bar(progress, status, elapsed_s)}"
            self.stream.write("\r" + line.ljust(self._width))
            self._width = max(self._width, len(line))
        elif self._last != (status, progress):
            self.stream.write(f"{PROG}: {self.label} {status} {progress * 100:.0f}% "
                              f"({elapsed_s:.1f} s)\n")
        self._last = (status, progress)
        self.stream.flush()

    def finish(self) -> None:
        """End the redrawn line so that later messages start on their own line."""
        if self.tty and self._last is not None:
            self.stream.write("\n")
            self.stream.flush()


# -- talking to the server -------------------------------------------------------------------------


class Cloner:
    """Upload, then poll until the profile is ready. ``voice_id`` and ``job_id`` are known once the
    server accepted the upload (for the messages of a timeout or an interrupt)."""

    def __init__(self, base_url: str, api_key: str | None, bar: ProgressBar,
                 poll_interval_s: float = POLL_INTERVAL_S) -> None:
        self.base_url = base_url
        self.headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.bar = bar
        self.poll_interval_s = poll_interval_s
        self.voice_id: str | None = None
        self.job_id: str | None = None

    async def run(self, request: CloneRequest) -> str:
        """The ready profile's voice id. Raises CloneFailed."""
        started = time.monotonic()
        async with aiohttp.ClientSession(headers=self.headers) as http:
            status, body = await self._call(http, "POST", "/v1/voices", data=request.form())
            if status != 202:
                raise CloneFailed(refusal_message(status, body, "the server refused the voice"))
            self.voice_id = str(body["voice"]["voice_id"])
            self.job_id = str(body["job"]["job_id"])
            try:
                job = await self._wait_job(http, body["job"], started)
            finally:
                self.bar.finish()
            if job["status"] != "succeeded":
                raise CloneFailed(_job_failure(job))
            return await self._wait_ready(http)

    async def _wait_job(self, http: aiohttp.ClientSession, job: dict[str, Any],
                        started: float) -> dict[str, Any]:
        while True:
            self.bar.update(str(job["status"]), float(job.get("progress") or 0.0),
                            time.monotonic() - started)
            if job["status"] in ("succeeded", "failed"):
                return job
            await asyncio.sleep(self.poll_interval_s)
            status, job = await self._call(http, "GET", f"/v1/jobs/{self.job_id}")
            if status != 200:
                raise CloneFailed(refusal_message(status, job, f"reading job {self.job_id}"))

    async def _wait_ready(self, http: aiohttp.ClientSession) -> str:
        """After the job succeeded: the profile's own status decides (it may have been revoked
        meanwhile)."""
        while True:
            status, voice = await self._call(http, "GET", f"/v1/voices/{self.voice_id}")
            if status != 200:
                raise CloneFailed(refusal_message(status, voice, f"reading voice {self.voice_id}"))
            if voice["status"] == "ready":
                return str(voice["voice_id"])
            if voice["status"] != "pending":
                raise CloneFailed(f"voice {self.voice_id} is {voice['status']}"
                                  + (f": {voice['error']}" if voice.get("error") else ""))
            await asyncio.sleep(self.poll_interval_s)

    async def _call(self, http: aiohttp.ClientSession, method: str, path: str,
                    **kwargs: Any) -> tuple[int, Any]:
        try:
            async with http.request(method, self.base_url + path, **kwargs) as response:
                text = await response.text()
                try:
                    return response.status, json.loads(text)
                except ValueError:
                    return response.status, text
        except aiohttp.ClientError as exc:
            raise CloneFailed(f"no answer from {self.base_url} to {method} {path}: "
                              f"{exc or type(exc).__name__}") from None


def _job_failure(job: dict[str, Any]) -> str:
    error = job.get("error") or {}
    return (f"the clone job {job.get('job_id')} failed: {error.get('code', 'unknown')}: "
            f"{error.get('message', 'no message')}")


# -- the command -----------------------------------------------------------------------------------


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``clone`` on an ``argparse`` subparsers object; ``args.func(args)`` returns the
    exit status."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "clone", help="create a voice profile from reference audio and wait until it is ready",
        description="Upload reference audio with the owner's consent to a Timbre server, show the "
                    "clone job's progress and print the new voice id as the last line. Running "
                    "this command accepts the consent statement on the owner's behalf.")
    parser.add_argument("--url", default="http://127.0.0.1:8080", help="server base URL")
    parser.add_argument("--name", required=True, help="the profile's name")
    parser.add_argument("--audio", type=Path, action="append", required=True,
                        help="reference recording (wav, mp3, flac, ogg, webm); repeat for more")
    parser.add_argument("--transcript", action="append", default=[],
                        help="what the i-th --audio says (optional; repeat in the same order)")
    parser.add_argument("--owner", required=True, help="full name of the voice's owner")
    parser.add_argument("--purpose", required=True, help="what the voice will be used for")
    parser.add_argument("--statement", default=None,
                        help="the consent statement accepted (default: one naming the owner, "
                             "the voice and the purpose)")
    parser.add_argument("--expires", default=None,
                        help="consent expiry: ISO date (valid through that day, UTC) or date-time")
    parser.add_argument("--api-key", "--key", dest="api_key", default=None,
                        help="API key (default: $TIMBRE_API_KEY, else $DATA_DIR/demo-api-key)")
    parser.add_argument("--timeout", type=float, default=600.0,
                        help="seconds to wait for the profile before giving up (default: 600)")
    parser.set_defaults(func=main, parser=parser)
    return parser


def main(args: argparse.Namespace) -> int:
    """Run ``timbre clone`` for parsed ``args``; returns the exit status."""
    if len(args.transcript) > len(args.audio):
        args.parser.error("more --transcript than --audio: the i-th transcript belongs to the "
                          "i-th --audio")
    try:
        base_url = http_base(args.url)
        request = _request(args)
    except (ValueError, OSError) as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(f"{PROG}: accepting this consent statement on behalf of {request.owner}:\n"
          f"  {request.statement}", file=sys.stderr)
    cloner = Cloner(base_url, resolve_api_key(args.api_key),
                    ProgressBar(sys.stderr, f"voice {request.name!r}"))
    try:
        voice_id = asyncio.run(asyncio.wait_for(cloner.run(request), args.timeout))
    except CloneFailed as err:
        print(f"{PROG}: {err.message}", file=sys.stderr)
        return err.exit_status
    except TimeoutError:
        return _left_running(cloner, f"gave up after {args.timeout:g} s", EXIT_TIMEOUT)
    except KeyboardInterrupt:
        return _left_running(cloner, "interrupted", EXIT_INTERRUPTED)
    print(f"{PROG}: voice {voice_id} ({request.name!r}) is ready", file=sys.stderr)
    print(voice_id, flush=True)
    return EXIT_OK


def _request(args: argparse.Namespace) -> CloneRequest:
    files = []
    for path in args.audio:
        try:
            files.append((path.name, path.read_bytes()))
        except OSError as exc:
            raise OSError(f"cannot read {path}: {exc.strerror}") from None
    for label, value in (("--name", args.name), ("--owner", args.owner),
                         ("--purpose", args.purpose)):
        if not value.strip():
            raise ValueError(f"{label} is empty")
    statement = args.statement or default_statement(args.owner, args.name, args.purpose)
    return CloneRequest(args.name, tuple(files), tuple(args.transcript), args.owner,
                        args.purpose, statement, args.expires)


def _left_running(cloner: Cloner, why: str, exit_status: int) -> int:
    if cloner.job_id is None:
        print(f"{PROG}: {why} before the server answered the upload", file=sys.stderr)
    else:
        print(f"{PROG}: {why}; the clone job goes on on the server: voice {cloner.voice_id}, "
              f"job {cloner.job_id} (GET /v1/jobs/{cloner.job_id})", file=sys.stderr)
    return exit_status
