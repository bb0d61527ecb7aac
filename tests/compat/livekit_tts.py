"""LiveKit Agents' ElevenLabs plugin against Timbre, with only ``base_url`` (and the key) changed.

Runs inside ``.venv-compat``. Drives ``livekit.plugins.elevenlabs.TTS`` through its public API the
way LiveKit's docs show, with the ``http_session`` parameter so no LiveKit server or job context is
needed:

- ``synthesize(text)``: the plugin's HTTP path (``POST {base_url}/text-to-speech/{voice}/stream``);
- ``stream()`` with ``push_text`` / ``end_input``: its multi-context WebSocket
  (``{base_url}/text-to-speech/{voice}/multi-stream-input``, ``http`` -> ``ws``).

Each runs per encoding in ``ENCODINGS`` (the plugin decodes MP3 itself, so both arrive as PCM
frames); ``stream`` runs twice on one ``TTS``, the second a new context on the same socket.
Prints one JSON report (see ``report.py``); exits 1 when a run raised.

    .venv-compat/bin/python tests/compat/livekit_tts.py --base-url http://127.0.0.1:8080 \
        --api-key tk_... --text "Hello there." --out-dir /tmp/lk
"""

from __future__ import annotations

import asyncio
import sys
from importlib.metadata import version

import aiohttp
from livekit.agents.types import USERDATA_TIMED_TRANSCRIPT
from livekit.plugins import elevenlabs
from report import Run, arguments, emit

ENCODINGS = ("pcm_24000", "mp3_22050_32")
"""``pcm_24000`` (what agents pick for raw audio) and ``mp3_22050_32``, the plugin's default."""


def _take(run: Run, frame: object) -> None:
    data = bytes(frame.data.cast("B"))  # type: ignore[attr-defined]
    run.add_audio(data, frame.sample_rate, frame.num_channels)  # type: ignore[attr-defined]
    for word in frame.userdata.get(USERDATA_TIMED_TRANSCRIPT) or ():  # type: ignore[attr-defined]
        if str(word).strip():
            run.words.append({"word": str(word).strip(), "start_s": _seconds(word.start_time),
                              "end_s": _seconds(word.end_time)})


def _seconds(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) else None


async def synthesize(tts: elevenlabs.TTS, run: Run) -> None:
    async with tts.synthesize(run.text) as stream:
        async for event in stream:
            _take(run, event.frame)


async def stream(tts: elevenlabs.TTS, run: Run) -> None:
    async with tts.stream() as synth:
        for word in run.text.split(" "):  # as an LLM would hand it over, a word at a time
            synth.push_text(word + " ")
        synth.end_input()
        async for event in synth:
            _take(run, event.frame)


async def main() -> int:
    args = arguments(__doc__.splitlines()[0])
    runs: list[Run] = []
    async with aiohttp.ClientSession() as session:
        for encoding in ENCODINGS:
            tts = elevenlabs.TTS(api_key=args.api_key, voice_id=args.voice, encoding=encoding,
                                 base_url=f"{args.base_url}/v1", http_session=session)
            # The second stream is a new context on the connection the first one opened.
            for api, drive, n in (("synthesize", synthesize, 1), ("stream", stream, 1),
                                  ("stream", stream, 2)):
                run = Run(f"livekit-{api}-{encoding}-{n}", "livekit", api, encoding, args.text,
                          utterance=n)
                try:
                    await asyncio.wait_for(drive(tts, run), timeout=60)
                except Exception as exc:  # noqa: BLE001 - reported, the next run still goes
                    run.errors.append(f"{type(exc).__name__}: {exc}")
                runs.append(run)
            await tts.aclose()
    emit("livekit-plugins-elevenlabs", version("livekit-plugins-elevenlabs"), runs, args.out_dir)
    return 1 if any(run.errors for run in runs) else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
