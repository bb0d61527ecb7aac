"""``timbre say``: speak one text through a running server and write the audio to a WAV file.

The text is streamed word by word (``--words-per-s``, like an LLM's tokens; 0 sends it all at once),
the context is closed, and the command waits for ``context_done``. ``--speed``, ``--pitch`` and
``--language`` are the native protocol's voice options (docs/protocol.md); they go in the connect
query, so a value the server refuses (a language the voice does not speak) ends the command at once
with the server's reason. With ``--json`` it prints one JSON object with the latency figures of
``loadtest.timing`` and the settings the server spoke with. Exit status: 0 on success, 1 when the
server could not be reached, refused the key or the session, sent an error, or sent no audio (2 is
argparse's usage error, an option out of range included).

Only the standard library is imported at module level: ``timbre say --help`` builds this parser,
and the stream client reaches torch through the session layer (seconds to import), so the client,
numpy and soundfile are imported when the command runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from realtime.client import ContextRecord

CONTEXT_ID = "say"


@dataclass(frozen=True)
class SayOptions:
    url: str
    text: str
    out: Path
    voice: str
    sample_rate_hz: int
    words_per_s: float
    api_key: str | None
    timeout_s: float
    speed: float | None = None
    """None: the server's default (1.0)."""
    pitch: float | None = None
    """Semitones; None: the server's default (0)."""
    language: str | None = None
    """None: the voice's own language."""


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``say`` on an ``argparse`` subparsers object; the parser's ``func`` default is
    ``main`` (``args.func(args)`` returns the exit status)."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "say",
        help="speak a text through a running server into a WAV file",
        description="Stream a text word by word to a Timbre server and write the audio it returns.",
    )
    parser.add_argument("--url", default="ws://127.0.0.1:8080", help="server base URL (ws://...)")
    parser.add_argument("--voice", default="joe", help="voice id (default: joe)")
    parser.add_argument("--text", required=True, help="text to speak")
    parser.add_argument("--out", type=Path, default=Path("say.wav"), help="WAV file to write")
    parser.add_argument("--json", action="store_true", help="print one JSON object with timings")
    parser.add_argument("--sample-rate", type=int, default=24000, help="output rate in Hz")
    parser.add_argument(
        "--key",
        default=None,
        help="API key (default: $TIMBRE_API_KEY, else $DATA_DIR/demo-api-key)",
    )
    parser.add_argument(
        "--words-per-s",
        type=float,
        default=8.0,
        help="stream the text at this many words per second; 0 sends it all at once (default: 8)",
    )
    parser.add_argument(
        "--timeout-s", type=float, default=60.0, help="give up when the audio is not done by then"
    )
    parser.add_argument(
        "--speed", type=_speed, default=None, help="speaking rate, 0.5 to 2.0 (default: 1.0)"
    )
    parser.add_argument(
        "--pitch",
        type=_pitch,
        default=None,
        help="pitch shift in semitones, -6 to 6; the duration stays as it is (default: 0)",
    )
    parser.add_argument(
        "--language",
        type=_language,
        default=None,
        help="a language the voice speaks, e.g. en, en-gb, es, fr, it, pt-br, hi, ja for Kokoro "
        "voices (joe speaks en only); default: the voice's own",
    )
    parser.set_defaults(func=main)
    return parser


def main(args: argparse.Namespace) -> int:
    """Run ``timbre say`` for parsed ``args``; returns the exit status."""
    from realtime.client import ClientError, Unauthorized, resolve_api_key

    if not args.text.strip():
        return _fail("--text is empty")
    options = SayOptions(
        url=args.url,
        text=args.text,
        out=args.out,
        voice=args.voice,
        sample_rate_hz=args.sample_rate,
        words_per_s=args.words_per_s,
        api_key=resolve_api_key(args.key),
        timeout_s=args.timeout_s,
        speed=args.speed,
        pitch=args.pitch,
        language=args.language,
    )
    started = time.monotonic()
    try:
        record = asyncio.run(say(options))
    except Unauthorized as exc:
        hint = "" if options.api_key else " (no key found: pass --key or set TIMBRE_API_KEY)"
        return _fail(f"{exc.message}{hint}")
    except ClientError as exc:
        return _fail(exc.message)
    wall_s = time.monotonic() - started

    if record.audio:
        _write_wav(options.out, record)
    report = summarize(record, wall_s)
    report["out"] = str(options.out) if record.audio else None
    if args.json:
        print(json.dumps(report))
    else:
        print(_human(report), file=sys.stderr)
    for error in record.errors:
        print(f"timbre say: server error {error.code}: {error.message}", file=sys.stderr)
    if record.errors:
        return 1
    if not record.audio:
        return _fail("the server sent no audio")
    return 0


async def say(options: SayOptions) -> ContextRecord:
    """Speak ``options.text`` in one context and return its record once ``context_done`` came.

    Raises ``ClientError`` subclasses: connection or session refused (a ``language`` the voice
    does not speak included), connection lost, timeout.
    """
    from realtime.client import StreamClient

    client = await StreamClient.connect(
        options.url,
        options.api_key,
        voice=options.voice,
        sample_rate_hz=options.sample_rate_hz,
        speed=options.speed,
        pitch=options.pitch,
        language=options.language,
    )
    async with client:
        await client.stream_words(CONTEXT_ID, options.text, options.words_per_s)
        await client.close_context(CONTEXT_ID)
        return await client.wait_done(CONTEXT_ID, options.timeout_s)


def summarize(record: ContextRecord, wall_s: float) -> dict[str, Any]:
    """The ``--json`` object: ``ttfa_ms``, ``ttfa_from_first_text_ms``, ``audio_s``,
    ``sample_rate``, ``words``, ``frames`` and more (ms and s rounded); ``voice``, ``speed``,
    ``pitch`` and ``language`` as the server's ``context_started`` reported them (``language``
    is None when the voice speaks its own)."""
    from loadtest.timing import segmenter_rule, utterance_timing

    timing = utterance_timing(record, segmenter_rule())
    started = record.started
    return {
        "ttfa_ms": _round(timing.ttfa_ms),
        "ttfa_from_first_text_ms": _round(timing.ttfa_from_first_text_ms),
        "first_unit_words": timing.first_unit_words,
        "audio_s": round(record.audio_s, 3),
        "sample_rate": record.sample_rate_hz,
        "samples": record.samples,
        "words": record.word_count,
        "frames": len(record.frames),
        "gap_ms_max": _round(max(timing.gaps_ms, default=None)),
        "wall_s": round(wall_s, 3),
        "reason": record.done.reason if record.done else None,
        "voice": started.voice if started else None,
        "speed": started.speed if started else None,
        "pitch": started.pitch if started else None,
        "language": started.language if started else None,
        "errors": [{"code": e.code, "message": e.message} for e in record.errors],
    }


def _write_wav(path: Path, record: ContextRecord) -> None:
    import numpy as np
    import soundfile as sf

    samples = np.frombuffer(bytes(record.audio), dtype="<i2")
    sf.write(str(path), samples, record.sample_rate_hz, subtype="PCM_16", format="WAV")


def _human(report: dict[str, Any]) -> str:
    return (
        f"wrote {report['out']}: {report['audio_s']:.2f} s at {report['sample_rate']} Hz, "
        f"{report['frames']} frames; first audio {report['ttfa_ms']} ms after the first unit "
        f"({report['ttfa_from_first_text_ms']} ms after the first word)"
    )


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def _speed(text: str) -> float:
    from realtime.protocol_fields import MAX_SPEED, MIN_SPEED

    return _in_range(text, MIN_SPEED, MAX_SPEED)


def _pitch(text: str) -> float:
    from session.pitch import MAX_PITCH, MIN_PITCH

    return _in_range(text, MIN_PITCH, MAX_PITCH)


def _in_range(text: str, low: float, high: float) -> float:
    """An option's number, checked against the protocol's own bounds (NaN fails the test)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not low <= value <= high:
        raise argparse.ArgumentTypeError(f"{text} is not between {low:g} and {high:g}")
    return value


def _language(text: str) -> str:
    """A language code's shape, as the server checks it; whether the voice speaks it is the
    server's answer (the session is refused with ``unsupported_language``)."""
    from realtime.protocol_fields import is_language_code

    if not is_language_code(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a language code such as en or pt-br")
    return text


def _fail(message: str) -> int:
    print(f"timbre say: {message}", file=sys.stderr)
    return 1
