"""Pipecat's ElevenLabs TTS services against Timbre, with only the base URL (and the key) changed.

Runs inside ``.venv-compat``. Each service runs in the smallest real pipeline Pipecat allows: a
``Pipeline([tts, collector])`` run by a ``WorkerRunner`` as a ``PipelineWorker`` (what 1.3 renamed
``PipelineRunner`` / ``PipelineTask`` to), fed a ``TTSSpeakFrame`` then an ``EndFrame``, as an
application speaks a line. The collector keeps what reaches it: ``TTSAudioRawFrame`` audio and the
``TTSTextFrame`` words Pipecat derives from the server's alignment (their ``pts``, in seconds),
per utterance (TTS context); errors come from the worker's ``on_pipeline_error`` event.

- ``ElevenLabsTTSService(url="ws://...")``: the multi-context WebSocket
  (``{url}/v1/text-to-speech/{voice}/multi-stream-input``);
- ``ElevenLabsHttpTTSService(base_url="http://...")``: HTTP
  (``POST {base_url}/v1/text-to-speech/{voice}/stream/with-timestamps``).

Prints one JSON report (see ``report.py``); exits 1 when a run saw an error.

    .venv-compat/bin/python tests/compat/pipecat_tts.py --base-url http://127.0.0.1:8080 \
        --api-key tk_... --text "Hello there." --out-dir /tmp/pc
"""

from __future__ import annotations

import asyncio
import sys
from importlib.metadata import version

import aiohttp
from loguru import logger
from pipecat.frames.frames import (
    EndFrame,
    ErrorFrame,
    Frame,
    TTSAudioRawFrame,
    TTSSpeakFrame,
    TTSTextFrame,
)
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.task import PipelineParams
from pipecat.pipeline.worker import PipelineWorker
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.services.elevenlabs.tts import ElevenLabsHttpTTSService, ElevenLabsTTSService
from pipecat.workers.runner import WorkerRunner
from report import Run, arguments, emit

SAMPLE_RATE = 24000
"""Pipecat asks for ``pcm_{rate}`` of the pipeline's output rate; 24 kHz is the usual one."""


UTTERANCES = 2
"""The text is spoken twice in one pipeline: the second utterance is a new context on the same
socket (WebSocket) or a second request (HTTP), as every later turn of a conversation is."""


class Collector(FrameProcessor):
    """The end of the pipeline: records what the TTS service pushed downstream, one ``Run`` per
    TTS context (utterance), in the order they start."""

    def __init__(self, runs: list[Run]) -> None:
        super().__init__()
        self.runs = runs
        self.by_context: dict[str | None, Run] = {}

    def run_of(self, context_id: str | None) -> Run:
        if context_id not in self.by_context:
            taken = len(self.by_context)
            if taken >= len(self.runs):
                self.runs[-1].errors.append(f"an unexpected extra context {context_id}")
            self.by_context[context_id] = self.runs[min(taken, len(self.runs) - 1)]
        return self.by_context[context_id]

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, TTSAudioRawFrame):
            self.run_of(frame.context_id).add_audio(frame.audio, frame.sample_rate,
                                                    frame.num_channels)
        elif isinstance(frame, TTSTextFrame):
            start = frame.pts / 1e9 if frame.pts is not None else None
            self.run_of(frame.context_id).words.append(
                {"word": frame.text.strip(), "start_s": start, "end_s": None})
        await self.push_frame(frame, direction)


async def speak(tts: FrameProcessor, runs: list[Run]) -> None:
    worker = PipelineWorker(Pipeline([tts, Collector(runs)]),
                            params=PipelineParams(audio_out_sample_rate=SAMPLE_RATE))

    @worker.event_handler("on_pipeline_error")
    async def on_pipeline_error(_worker: PipelineWorker, frame: ErrorFrame) -> None:
        runs[0].errors.append(str(frame.error))

    await worker.queue_frames([*(TTSSpeakFrame(run.text) for run in runs), EndFrame()])
    runner = WorkerRunner(handle_sigint=False)
    await runner.add_workers(worker)
    await runner.run()


async def main() -> int:
    args = arguments(__doc__.splitlines()[0])
    logger.remove()
    logger.add(sys.stderr, level="INFO")
    ws_url = args.base_url.replace("https://", "wss://").replace("http://", "ws://")
    output_format = f"pcm_{SAMPLE_RATE}"
    runs: list[Run] = []
    async with aiohttp.ClientSession() as session:
        services: list[tuple[str, FrameProcessor]] = [
            ("websocket", ElevenLabsTTSService(
                api_key=args.api_key, url=ws_url,
                settings=ElevenLabsTTSService.Settings(voice=args.voice))),
            ("http", ElevenLabsHttpTTSService(
                api_key=args.api_key, base_url=args.base_url, aiohttp_session=session,
                settings=ElevenLabsHttpTTSService.Settings(voice=args.voice))),
        ]
        for api, tts in services:
            utterances = [Run(f"pipecat-{api}-{n}", "pipecat", api, output_format, args.text,
                              utterance=n) for n in range(1, UTTERANCES + 1)]
            try:
                await asyncio.wait_for(speak(tts, utterances), timeout=120)
            except Exception as exc:  # noqa: BLE001 - reported, the next service still goes
                utterances[0].errors.append(f"{type(exc).__name__}: {exc}")
            runs.extend(utterances)
    emit("pipecat-ai", version("pipecat-ai"), runs, args.out_dir)
    return 1 if any(run.errors for run in runs) else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
