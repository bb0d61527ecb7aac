"""One live phone call: the utterances queued for it and the task that speaks them, paced.

The application adds utterances (``speak``) and cancels them (``cancel``) over HTTP; one speaker
task per call takes them in order, synthesises each with ``Speech`` on the call's ``StreamQuota``,
encodes it to 8 kHz mu-law, cuts 20 ms frames and sends them paced by ``FramePacer``, then a
``mark`` named after the utterance. ``cancel`` drops the queue, stops the utterance playing (its
remaining frames are never sent), and only then sends ``clear``, so no frame follows the clear.

An utterance spoken with a voice profile (``v_...``) is registered in ``LiveVoices`` while it
plays, and its use is audited when it starts. The profile is resolved again at that moment, so an
utterance queued before its profile was revoked is refused rather than spoken; revoking the profile
while it plays stops it at once (no further frame) and sends ``clear``, as ``cancel`` does, but
leaves the rest of the queue alone.

Synthesis refusals while speaking (quota used up, server busy, a revoked voice) skip that utterance:
they are counted in ``timbre_errors{code}`` and no mark is sent for it.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Awaitable, Callable
from contextlib import aclosing
from dataclasses import dataclass
from typing import Final

from prometheus_client import Histogram

from realtime.codecs import make_encoder, parse_output_format
from realtime.metrics import Metrics
from realtime.twilio.pacer import FramePacer, FrameSplitter, PacingSettings
from realtime.twilio.protocol import TwilioStream
from realtime.ws_native import Tenancy
from session.errors import TimbreError, TooManyContexts
from session.ids import TenantId
from session.session import SessionConfig
from session.speech import Speech, SpeechRequest
from session.voices import PROFILE_PREFIX, ResolvedVoice, VoiceCatalog, VoiceUnavailable

log = logging.getLogger(__name__)

ULAW_8000: Final = parse_output_format("ulaw_8000")

Send = Callable[[str], Awaitable[None]]


@dataclass(frozen=True)
class Utterance:
    utterance_id: str
    """Also the name of the mark sent after its last frame."""
    text: str
    voice: ResolvedVoice
    generation: int
    """The call's cancel count when it was queued: a later cancel makes it stale."""


@dataclass(frozen=True)
class CallServices:
    """What every call on a server shares."""

    catalog: VoiceCatalog
    session_config: SessionConfig
    metrics: Metrics
    lateness: Histogram
    pacing: PacingSettings


class Call:
    """A call's speech. ``run`` is its speaker task; ``speak``/``cancel`` come from HTTP handlers
    on the same event loop; ``played`` holds the marks Twilio echoed back (in order)."""

    def __init__(self, stream: TwilioStream, send: Send, voice: ResolvedVoice, tenancy: Tenancy,
                 services: CallServices) -> None:
        start = stream.start
        assert start is not None, "a call exists once its stream has started"
        self.tenant = tenancy.tenant
        self.call_sid = start.call_sid
        self.stream = stream
        self.voice = voice
        self._send = send
        self._tenancy = tenancy
        self._services = services
        self._pacer = FramePacer(services.pacing)
        self._queue: asyncio.Queue[Utterance] = asyncio.Queue()
        self._turn = asyncio.Lock()
        self._generation = 0
        self._current: asyncio.Task[None] | None = None
        self._revoked: VoiceUnavailable | None = None
        """Why the utterance playing was stopped by ``LiveVoices`` (its profile was revoked)."""
        self._ids = itertools.count(1)
        self.played: list[str] = []

    def speak(self, text: str, voice: ResolvedVoice | None = None) -> Utterance:
        """Queue ``text`` after what is already queued; returns the utterance (its id names its
        mark). The caller has validated the text and resolved the voice. An utterance is a call's
        context: with ``SessionConfig.max_contexts`` queued or playing, raises TooManyContexts
        (HTTP 429), so an application cannot pile up unbounded work on one call."""
        limit = self._services.session_config.max_contexts
        playing = self._current is not None and not self._current.done()
        if self._queue.qsize() + playing >= limit:
            raise TooManyContexts(f"{limit} utterances are queued or playing on this call "
                                  "already; wait for a mark or cancel")
        utterance = Utterance(f"u{next(self._ids)}", text, voice or self.voice, self._generation)
        self._queue.put_nowait(utterance)
        return utterance

    async def cancel(self) -> int:
        """Drop every queued utterance and stop the one playing, then send ``clear``. Returns how
        many utterances were dropped (the one playing included)."""
        self._generation += 1
        dropped = self._queue.qsize()
        while not self._queue.empty():
            self._queue.get_nowait()
        if self._current is not None and not self._current.done():
            self._current.cancel()
            dropped += 1
        async with self._turn:  # the speaker holds it until the cancelled utterance has stopped
            self._pacer.reset()
            await self._send(self.stream.clear())
        return dropped

    async def run(self) -> None:
        """Speak queued utterances until cancelled (when the call ends)."""
        while True:
            utterance = await self._queue.get()
            async with self._turn:
                if utterance.generation != self._generation:
                    continue  # queued before a cancel that ran while we waited for the turn
                await self._take_turn(utterance)

    async def _take_turn(self, utterance: Utterance) -> None:
        """Play one utterance (holding the turn); if its voice was revoked meanwhile, clear."""
        current = self._current = asyncio.create_task(self._play(utterance))
        try:
            await asyncio.wait({current})
        finally:
            if not current.done():  # the call is ending: stop the utterance too
                current.cancel()
                await asyncio.wait({current})
            self._current = None
        revoked, self._revoked = self._revoked, None
        if revoked is not None:
            self._services.metrics.errors.labels(revoked.code).inc()
            log.info("call %s: utterance %s stopped: %s", self.call_sid, utterance.utterance_id,
                     revoked.message)
            self._pacer.reset()
            await self._send(self.stream.clear())

    async def _play(self, utterance: Utterance) -> None:
        unregister = self._watch_profile(utterance)
        try:
            voice = await self._tenancy.profiles.resolve(self.tenant, utterance.voice.voice_id)
            if voice.voice_id.startswith(PROFILE_PREFIX):
                self._tenancy.record_use(voice.voice_id)
            await self._speak(utterance, voice)
        except TimbreError as err:
            self._services.metrics.errors.labels(err.code).inc()
            log.info("call %s: utterance %s failed: %s", self.call_sid, utterance.utterance_id,
                     err.message)
        finally:
            unregister()

    def _watch_profile(self, utterance: Utterance) -> Callable[[], None]:
        """Register the utterance (the running ``_play`` task) in ``LiveVoices`` when it speaks
        with a profile; returns the unregister function. Registered before the profile is
        resolved again, so a revocation in between is not missed."""
        voice_id = utterance.voice.voice_id
        if not voice_id.startswith(PROFILE_PREFIX):
            return lambda: None
        task = asyncio.current_task()
        assert task is not None

        def end(reason: str) -> None:
            if not task.done() and self._current is task:
                self._revoked = VoiceUnavailable(reason)
                task.cancel()

        return self._tenancy.live.add(self.tenant, voice_id, end)

    async def _speak(self, utterance: Utterance, voice: ResolvedVoice) -> None:
        """Synthesise, encode and send the utterance paced, then its mark. Raises TimbreError."""
        metrics = self._services.metrics
        speech = Speech(SpeechRequest(utterance.text, voice), self._services.catalog,
                        self._services.session_config, self._tenancy.quota)
        encoder = make_encoder(ULAW_8000, speech.sample_rate_hz)
        splitter = FrameSplitter()
        metrics.active_contexts.inc()
        try:
            async with speech, aclosing(speech.chunks()) as chunks:
                async for chunk in chunks:
                    await self._send_frames(splitter.push(encoder.encode(chunk)))
                await self._send_frames(splitter.push(encoder.finish()) + splitter.flush())
            await self._send(self.stream.mark(utterance.utterance_id))
        finally:
            encoder.close()
            metrics.active_contexts.dec()
            _count(metrics, speech)

    async def _send_frames(self, frames: list[bytes]) -> None:
        for i, frame in enumerate(frames):
            delay = self._pacer.delay_s(time.monotonic())
            if delay > 0:
                try:
                    await asyncio.sleep(delay)
                except asyncio.CancelledError:
                    self._services.metrics.dropped_frames.inc(len(frames) - i)
                    raise
            self._services.lateness.observe(self._pacer.sent(time.monotonic()))
            await self._send(self.stream.media(frame))

    def mark_played(self, name: str) -> None:
        self.played.append(name)


def _count(metrics: Metrics, speech: Speech) -> None:
    for failure in speech.failures:
        metrics.errors.labels(failure.code).inc()
    if speech.finished is not None:
        metrics.characters.inc(speech.finished.spoken_characters)
    metrics.audio_seconds.inc(speech.samples / speech.sample_rate_hz)


class CallRegistry:
    """Live calls by tenant and call SID: the HTTP API finds a call only in its own tenant."""

    def __init__(self) -> None:
        self._calls: dict[TenantId, dict[str, Call]] = {}

    def get(self, tenant: TenantId, call_sid: str) -> Call | None:
        return self._calls.get(tenant, {}).get(call_sid)

    def add(self, call: Call) -> bool:
        """Register ``call``; False when its tenant already has a live call with that SID."""
        calls = self._calls.setdefault(call.tenant, {})
        if call.call_sid in calls:
            return False
        calls[call.call_sid] = call
        return True

    def remove(self, call: Call) -> None:
        calls = self._calls.get(call.tenant, {})
        if calls.get(call.call_sid) is call:
            del calls[call.call_sid]
            if not calls:
                del self._calls[call.tenant]

    def __len__(self) -> int:
        return sum(len(calls) for calls in self._calls.values())
