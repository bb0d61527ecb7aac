"""XTTS-v2 behind the engine step interface: GPT steps of many requests batched, audio streamed.

* **prefill** (a batch of new requests, one padded forward): conditioning latents + ``[START] text
  [STOP]`` + the start audio code fill the request's KV-cache slot and yield its first audio code.
* **decode** (every request of the plan, one forward): one new audio code per request. Each row
  attends to its own slot over its own length, so requests of any lengths share a step and join or
  leave between steps (continuous batching). Optional CUDA graphs replay the step in one launch.
* **vocode**: after each step a request whose next window of vocoder frames is complete (see
  ``inference.xtts.vocoder_stream``) gets it decoded by HiFi-GAN; windows of several requests run as
  one padded batch. A request's audio is the one-pass waveform of its latents, cut into pieces.

Requests never see each other: greedy codes, and sampled codes too (hash-seeded noise per request),
are the same alone or in any batch.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from inference.engine import (
    DecodeItem,
    EnginePlan,
    EngineResult,
    FloatAudio,
    PrefillItem,
    RequestFailure,
    RequestId,
    RequestOutput,
    SynthesisUnit,
    WordTiming,
)
from inference.voice_registry import VoiceRegistry
from inference.xtts.config import XttsConfig
from inference.xtts.cuda_graphs import DecodeGraphs, VocoderGraphs
from inference.xtts.kv_cache import KvCache
from inference.xtts.model import XttsModel, load_model
from inference.xtts.sampling import SamplingConfig, choose
from inference.xtts.tokenizer import BpeTokenizer, ByteTokenizer, TextTokenizer
from inference.xtts.vocoder_stream import FrameChain, Window, WindowPlanner
from inference.xtts.voices import VoiceConditioning, clone_voice, random_voice

_EMPTY: FloatAudio = np.zeros(0, dtype=np.float32)
MAX_LOADED_VOICES = 256
"""Voice profiles' conditioning kept on the device besides the configured voices."""
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class XttsEngineConfig:
    device: str = "cpu"
    dtype: str = "float32"
    """``bfloat16`` on a GPU. Conditioning modules and the speaker encoder stay float32."""
    max_active: int = 16
    """KV-cache slots: requests prefilled and not yet released. More prefills fail ``engine_full``."""
    window_frames: tuple[int, ...] = (14, 28, 46, 60)
    """Vocoder frames (10.7 ms each at 24 kHz) per streamed window; the last size repeats. Each
    window may be at most about the generation speed times the audio buffered when the previous
    one arrives, or the client runs dry (at 1.8x real time, doubling 28 -> 60 did). With 18 frames
    of context a side, 14/28/60 fill decoder widths of exactly 32/64/96 frames."""
    context_frames: int | None = None
    """Frames of context on each side of a window; None derives the decoder's receptive field."""
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    seed: int = 0
    fixed_tokens: int | None = None
    """Benchmarks: every request makes exactly this many codes (the stop code is never picked)."""
    max_tokens: int | None = None
    """Cap on codes per request (default: the model's ``gpt_max_audio_tokens``)."""
    language: str = "en"
    cuda_graphs: bool = False
    context_bucket: int = 64
    """Decode reads each row's cache up to the batch's longest length, rounded up to this."""
    vocoder_bucket: int = 32
    """Windows are padded up to a multiple of this many frames to batch them."""


@dataclass
class _Request:
    id: RequestId
    slot: int
    text: str
    tokens: list[int]
    voice: tuple[torch.Tensor, torch.Tensor]
    chain: FrameChain
    planner: WindowPlanner
    seed: int
    length: int = 0
    """Positions filled in the KV-cache slot."""
    codes: int = 0
    """Audio codes (and latents) generated."""
    last_code: int = 0
    finished: bool = False
    samples: int = 0
    vocode_at: int = 0
    """Codes before which the next window cannot be complete (skips the exact check)."""


class XttsEngine:
    """Not thread-safe: the scheduler's model thread owns it (see ``inference.engine.Engine``)."""

    def __init__(
        self,
        model: XttsModel,
        config: XttsEngineConfig | None = None,
        *,
        tokenizer: TextTokenizer | None = None,
        voices: dict[str, VoiceConditioning] | None = None,
        voice_source: VoiceRegistry | None = None,
    ) -> None:
        self.config = config or XttsEngineConfig()
        self.model_config: XttsConfig = model.config
        self.device = torch.device(self.config.device)
        self.dtype = getattr(torch, self.config.dtype)
        self.model = _place(model, self.device, self.dtype)
        mc = self.model_config
        self.tokenizer = tokenizer or ByteTokenizer(mc.gpt_number_text_tokens)
        self.max_tokens = min(self.config.max_tokens or mc.gpt_max_audio_tokens,
                              mc.gpt_max_audio_tokens)
        self.cache = KvCache(layers=mc.gpt_layers, slots=self.config.max_active,
                             heads=mc.gpt_n_heads, max_len=mc.max_context, head_dim=mc.head_dim,
                             device=self.device, dtype=self.dtype)
        self._latents = torch.zeros(self.config.max_active, self.max_tokens,
                                    mc.gpt_n_model_channels, device=self.device, dtype=self.dtype)
        self._history = torch.full((self.config.max_active, self.max_tokens), -1,
                                   dtype=torch.long, device=self.device)
        decoder = self.model.hifigan_decoder.waveform_decoder
        self.context_frames = self.config.context_frames or math.ceil(decoder.context_frames()) + 2
        self._voices: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        for name, voice in (voices or {}).items():
            self.add_voice(name, voice)
        self._configured = frozenset(self._voices)
        self._voice_source = voice_source
        self._requests: dict[RequestId, _Request] = {}
        self._graphs: DecodeGraphs | None = None
        self._vocoder_graphs: VocoderGraphs | None = None
        if self.config.cuda_graphs and self.device.type == "cuda":
            self._vocoder_graphs = VocoderGraphs(decoder, max_batch=self.config.max_active,
                                                 device=self.device)
            self._graphs = DecodeGraphs(self._forward_step, max_batch=self.config.max_active,
                                        scratch_slot=self.cache.scratch_slot,
                                        dump_position=self.cache.dump_position, device=self.device)

    # construction -------------------------------------------------------------------------------

    @classmethod
    def from_checkpoint(cls, checkpoint_dir: str | Path, config: XttsEngineConfig | None = None,
                        voices: dict[str, VoiceConditioning] | None = None,
                        voice_source: VoiceRegistry | None = None) -> XttsEngine:
        """An engine over an operator-supplied coqui XTTS-v2 directory (``config.json``,
        ``model.pth``, ``vocab.json``). ``voice_source`` supplies voice profiles' conditioning
        (``VoiceConditioning.to_bytes``) by name the first time a request uses them."""
        directory = Path(checkpoint_dir)
        return cls(load_model(directory), config, tokenizer=BpeTokenizer(directory / "vocab.json"),
                   voices=voices, voice_source=voice_source)

    @classmethod
    def random(cls, model_config: XttsConfig, config: XttsEngineConfig | None = None, *,
               seed: int = 0, voices: int = 1) -> XttsEngine:
        """Random weights and ``voices`` random speakers named ``random-0``, ``random-1``, ..."""
        model = load_model(config=model_config, seed=seed)
        named = {f"random-{i}": random_voice(model_config, seed + i) for i in range(voices)}
        return cls(model, config, voices=named)

    # the Engine protocol -----------------------------------------------------------------------

    @property
    def name(self) -> str:
        return "xtts"

    @property
    def sample_rate_hz(self) -> int:
        return self.model_config.output_sample_rate

    def voices(self) -> Sequence[str]:
        return sorted(self._voices)

    def add_voice(self, name: str, voice: VoiceConditioning) -> None:
        if not voice.fits(self.model_config):
            raise ValueError(f"voice {name!r} was made for another model size")
        self._voices[name] = (
            torch.from_numpy(voice.gpt_latents).to(self.device, self.dtype),
            torch.from_numpy(voice.speaker_embedding).to(self.device, self.dtype)[:, None],
        )

    def clone_voice(self, audio: FloatAudio, sample_rate_hz: int) -> VoiceConditioning:
        return clone_voice(self.model, audio, sample_rate_hz)

    @property
    def active(self) -> int:
        return len(self._requests)

    def generated(self, request_id: RequestId) -> tuple[list[int], torch.Tensor]:
        """A live request's audio codes so far and their latents (float32, CPU). Raises
        ``KeyError`` after ``release``."""
        request = self._requests[request_id]
        codes = self._history[request.slot, :request.codes].tolist()
        return codes, self._latents[request.slot, :request.codes].float().cpu()

    def check_graphs(self, batch: int, context: int) -> float:
        """Largest difference between the logits of captured decode steps and the same steps run
        eagerly, rows gathered and in place. Call before traffic: it writes into slots
        ``0..batch-1``. 0.0 without graphs."""
        if self._graphs is None:
            return 0.0
        worst = 0.0
        positions = torch.arange(batch, device=self.device)
        codes = positions % self.model_config.gpt_start_audio_token
        scratch = torch.full_like(positions, self.cache.scratch_slot)
        with torch.inference_mode():
            for slots, contiguous in ((scratch, False), (positions, True)):
                _, eager = self._forward_step(codes, positions, slots, positions, context,
                                              contiguous)
                _, graphed = self._graphs.run(codes, positions, slots, positions, context,
                                              contiguous)
                worst = max(worst, float((eager.float() - graphed.float()).abs().max()))
            if self._vocoder_graphs is not None:
                z = torch.randn(3, self.model_config.decoder_input_dim, self.config.vocoder_bucket,
                                device=self.device, dtype=self.dtype)
                g = torch.randn(3, self.model_config.d_vector_dim, 1, device=self.device,
                                dtype=self.dtype)
                decoder = self.model.hifigan_decoder.waveform_decoder
                diff = (decoder(z, g).float() - self._vocoder_graphs.run(z, g).float()).abs().max()
                worst = max(worst, float(diff))
        return worst

    def disable_graphs(self) -> None:
        self._graphs = None
        self._vocoder_graphs = None

    def capture_graphs(self, batch_sizes: Sequence[int], contexts: Sequence[int],
                       vocoder_widths: Sequence[int] = ()) -> int:
        """Capture decode graphs (and vocoder graphs of the given widths, batches up to 48) ahead
        of traffic so no request waits for a capture. Returns how many graphs exist (0 without
        CUDA graphs)."""
        if self._graphs is None:
            return 0
        zeros = torch.zeros(1, dtype=torch.long, device=self.device)
        slot = torch.full((1,), self.cache.scratch_slot, dtype=torch.long, device=self.device)
        dump = torch.full((1,), self.cache.dump_position, dtype=torch.long, device=self.device)
        with torch.inference_mode():
            for batch in batch_sizes:
                for context in contexts:
                    for contiguous in (False, True):
                        slots = (torch.arange(batch, device=self.device) if contiguous
                                 else slot.expand(batch))
                        self._graphs.run(zeros.expand(batch), zeros.expand(batch), slots,
                                         dump.expand(batch), context, contiguous)
        if self._vocoder_graphs is not None:
            channels, d_vector = self.model_config.decoder_input_dim, self.model_config.d_vector_dim
            with torch.inference_mode():
                for width in vocoder_widths:
                    for batch in self._vocoder_graphs.buckets:
                        if batch <= min(48, self.config.max_active):
                            self._vocoder_graphs.run(
                                torch.zeros(batch, channels, width, device=self.device,
                                            dtype=self.dtype),
                                torch.zeros(batch, d_vector, 1, device=self.device,
                                            dtype=self.dtype))
        return self._graphs.captured + (self._vocoder_graphs.captured
                                        if self._vocoder_graphs else 0)

    def warmup(self) -> None:
        rid = RequestId(-1)
        plan = EnginePlan(prefills=(PrefillItem(rid, SynthesisUnit(text="Warm up.", voice=self.voices()[0])),))
        self.execute(plan)
        for _ in range(self.context_frames + 40):
            result = self.execute(EnginePlan(decodes=(DecodeItem(rid),)))
            if any(out.finished for out in result.outputs) or result.failures:
                break
        self.release(rid)

    @torch.inference_mode()
    def execute(self, plan: EnginePlan) -> EngineResult:
        outputs: list[RequestOutput] = []
        failures: list[RequestFailure] = []
        extras: dict[str, float] = {}
        t0 = time.perf_counter()
        if plan.prefills:
            admitted = self._admit(plan.prefills, failures)
            if admitted:
                self._prefill(admitted)
                outputs += self._vocode(admitted, extras)
        t1 = time.perf_counter()
        if plan.decodes:
            running = self._running(plan.decodes, outputs, failures)
            if running:
                self._decode(running, extras)
                outputs += self._vocode(running, extras)
        t2 = time.perf_counter()
        extras["decode_batch"] = float(len(plan.decodes))
        return EngineResult(tuple(outputs), tuple(failures), prefill_s=t1 - t0,
                            decode_s=t2 - t1, extras=extras)

    def release(self, request_id: RequestId) -> None:
        request = self._requests.pop(request_id, None)
        if request is not None:
            self._history[request.slot].fill_(-1)
            self.cache.release(request.slot)

    # prefill -----------------------------------------------------------------------------------

    def _admit(self, items: Sequence[PrefillItem], failures: list[RequestFailure]) -> list[_Request]:
        admitted = []
        for item in items:
            request_or_failure = self._new_request(item)
            if isinstance(request_or_failure, RequestFailure):
                failures.append(request_or_failure)
            else:
                admitted.append(request_or_failure)
        return admitted

    def _new_request(self, item: PrefillItem) -> _Request | RequestFailure:
        rid, unit = item.request_id, item.unit
        voice = self._voices.get(unit.voice) or self._load_voice(unit.voice)
        if voice is None:
            return RequestFailure(rid, "unknown_voice", f"xtts has no voice {unit.voice!r}")
        tokens = self.tokenizer.encode(unit.text, self.config.language)
        if not tokens:
            return RequestFailure(rid, "empty_text", "nothing to speak")
        if len(tokens) > self.model_config.gpt_max_text_tokens:
            return RequestFailure(rid, "text_too_long",
                                  f"{len(tokens)} text tokens, xtts takes at most "
                                  f"{self.model_config.gpt_max_text_tokens}")
        if rid in self._requests:
            return RequestFailure(rid, "duplicate_request", f"request {rid} is already live")
        slot = self.cache.allocate()
        if slot is None:
            return RequestFailure(rid, "engine_full",
                                  f"all {self.config.max_active} xtts slots are busy")
        request = _Request(
            id=rid, slot=slot, text=unit.text, tokens=tokens, voice=voice,
            chain=FrameChain(self._frame_scales(unit.speed)),
            planner=WindowPlanner(self.config.window_frames, self.context_frames),
            seed=(self.config.seed * 1_000_003 + int(rid)) & 0x7FFFFFFF,
        )
        self._requests[rid] = request
        return request

    def _load_voice(self, name: str) -> tuple[torch.Tensor, torch.Tensor] | None:
        """A voice profile's conditioning from the voice source, turned into tensors here on the
        model thread; at most ``MAX_LOADED_VOICES`` are kept besides the configured ones."""
        params = None if self._voice_source is None else self._voice_source.get(name)
        if params is None:
            return None
        try:
            conditioning = VoiceConditioning.from_bytes(params)
            self.add_voice(name, conditioning)
        except (ValueError, KeyError, OSError):
            log.warning("voice %s has conditioning for another model; ignored", name)
            return None
        loaded = [n for n in self._voices if n not in self._configured]
        for old in loaded[: max(0, len(loaded) - MAX_LOADED_VOICES)]:
            del self._voices[old]
        return self._voices.get(name)

    def _frame_scales(self, speed: float) -> tuple[float, ...]:
        decoder = self.model.hifigan_decoder
        scales: tuple[float, ...] = (decoder.latent_scale, decoder.rate_scale)
        if speed != 1.0:
            scales = (1.0 / max(speed, 0.05),) + scales
        return scales

    def _prefill(self, requests: list[_Request]) -> None:
        gpt = self.model.gpt
        prompts = []
        for request in requests:
            tokens = torch.tensor(request.tokens, device=self.device)
            prompts.append(gpt.prompt_embeddings(request.voice[0], tokens))
        lengths = torch.tensor([p.shape[0] for p in prompts], device=self.device)
        longest = int(lengths.max())
        x = torch.stack([F.pad(p, (0, 0, 0, longest - p.shape[0])) for p in prompts])
        valid = torch.arange(longest, device=self.device)[None, :] < lengths[:, None]
        slots = torch.tensor([r.slot for r in requests], device=self.device)
        hidden = gpt.gpt.forward_prefill(x, valid, self.cache, slots)
        last = hidden[torch.arange(len(requests), device=self.device), lengths - 1]
        for request, length in zip(requests, lengths.tolist()):
            request.length = length
        self._accept(requests, *gpt.latents_and_logits(last))

    # decode ------------------------------------------------------------------------------------

    def _running(self, items: Sequence[DecodeItem], outputs: list[RequestOutput],
                 failures: list[RequestFailure]) -> list[_Request]:
        running = []
        for item in items:
            request = self._requests.get(item.request_id)
            if request is None:
                failures.append(RequestFailure(item.request_id, "unknown_request",
                                               "decode of a request that was never prefilled"))
            elif request.finished:
                outputs.append(RequestOutput(request.id, _EMPTY, finished=True))
            else:
                running.append(request)
        return running

    def _decode(self, requests: list[_Request], extras: dict[str, float]) -> None:
        def ids(values: list[int]) -> torch.Tensor:
            return torch.tensor(values, dtype=torch.long, device=self.device)

        requests.sort(key=lambda r: r.slot)  # slots 0..B-1 in order are read in place
        contiguous = all(r.slot == i for i, r in enumerate(requests))
        codes = ids([r.last_code for r in requests])
        audio_pos = ids([r.codes for r in requests])
        slots = ids([r.slot for r in requests])
        positions = ids([r.length for r in requests])
        bucket = self.config.context_bucket
        context = min(self.cache.max_len, -(-(max(r.length for r in requests) + 1) // bucket) * bucket)
        t0 = time.perf_counter()
        if self._graphs is not None:
            latents, logits = self._graphs.run(codes, audio_pos, slots, positions, context,
                                               contiguous)
        else:
            latents, logits = self._forward_step(codes, audio_pos, slots, positions, context,
                                                 contiguous)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)  # the codes are read next anyway
        extras["gpt_s"] = extras.get("gpt_s", 0.0) + time.perf_counter() - t0
        for request in requests:
            request.length += 1
        self._accept(requests, latents, logits)

    def _forward_step(self, codes: torch.Tensor, audio_pos: torch.Tensor, slots: torch.Tensor,
                      positions: torch.Tensor, context: int, contiguous: bool
                      ) -> tuple[torch.Tensor, torch.Tensor]:
        gpt = self.model.gpt
        x = gpt.code_embeddings(codes, audio_pos)
        hidden = gpt.gpt.forward_decode(x, self.cache, slots, positions, context, contiguous)
        return gpt.latents_and_logits(hidden)

    def _accept(self, requests: list[_Request], latents: torch.Tensor, logits: torch.Tensor) -> None:
        """Pick each request's next code, store its latent, and mark finished requests."""
        slots = torch.tensor([r.slot for r in requests], device=self.device)
        steps = torch.tensor([r.codes for r in requests], device=self.device)
        seeds = torch.tensor([r.seed for r in requests], device=self.device)
        stop = self.model_config.gpt_stop_audio_token
        fixed = self.config.fixed_tokens
        chosen = choose(logits, self.config.sampling, seeds=seeds, steps=steps,
                        history=self._history[slots], banned=stop if fixed else None)
        self._latents[slots, steps] = latents.to(self.dtype)
        self._history[slots, steps] = chosen
        for request, code in zip(requests, chosen.tolist()):
            request.codes += 1
            request.last_code = code
            limit = min(fixed or self.max_tokens, self.max_tokens)
            request.finished = code == stop or request.codes >= limit

    # vocode ------------------------------------------------------------------------------------

    def _vocode(self, requests: list[_Request], extras: dict[str, float]) -> list[RequestOutput]:
        jobs: list[tuple[_Request, Window]] = []
        for request in requests:
            if request.codes < request.vocode_at and not request.finished:
                continue
            known = request.chain.known(request.codes, request.finished)
            window = request.planner.next_window(known, request.finished)
            if window is not None:
                jobs.append((request, window))
            request.vocode_at = self._codes_needed(request)
        t0 = time.perf_counter()
        audio = self._decode_windows(jobs)
        extras["vocoder_s"] = extras.get("vocoder_s", 0.0) + time.perf_counter() - t0
        extras["vocoder_windows"] = extras.get("vocoder_windows", 0.0) + len(jobs)
        outputs = []
        for request in requests:
            pcm = audio.get(request.id, _EMPTY)
            request.samples += len(pcm)
            words = _word_timings(request.text, request.samples, self.sample_rate_hz) \
                if request.finished else ()
            outputs.append(RequestOutput(request.id, pcm, words, request.finished))
        return outputs

    def _codes_needed(self, request: _Request) -> int:
        """A lower bound on the codes that complete the request's next window."""
        planner = request.planner
        size = planner.schedule[min(planner.windows, len(planner.schedule) - 1)]
        frames = planner.emitted + size + planner.context
        per_code = math.prod(stage.scale for stage in request.chain.stages)
        return int(frames / per_code) - 2

    def _decode_windows(self, jobs: list[tuple[_Request, Window]]) -> dict[RequestId, FloatAudio]:
        """The windows of a tick in few generator calls: windows that may be padded are batched by
        width rounded up to ``vocoder_bucket``; the rest (a whole utterance in one window) by exact
        width."""
        groups: dict[tuple[str, int], list[tuple[_Request, Window, torch.Tensor, str]]] = {}
        bucket = self.config.vocoder_bucket
        for request, window in jobs:
            if window.emit_stop <= window.emit_start:
                continue
            total = request.codes if request.finished else None
            frames = request.chain.frames(self._latents[request.slot, :request.codes],
                                          window.start, window.stop, total)
            side = self._padding_side(window)
            key = ("exact", window.length) if side == "none" else \
                ("padded", -(-window.length // bucket) * bucket)
            groups.setdefault(key, []).append((request, window, frames, side))
        audio: dict[RequestId, FloatAudio] = {}
        for (_, width), members in groups.items():
            audio.update(self._decode_group(width, members))
        return audio

    @staticmethod
    def _padding_side(window: Window) -> str:
        """Where a window may be padded without changing its kept samples: after a window that is
        not the utterance's end, before a last window that has left context, else nowhere."""
        if not window.final:
            return "right"
        return "left" if window.start > 0 else "none"

    def _decode_group(self, width: int, members: list[tuple[_Request, Window, torch.Tensor, str]]
                      ) -> dict[RequestId, FloatAudio]:
        batch, lefts = [], []
        for _, window, frames, side in members:
            pad = width - window.length
            left = pad if side == "left" else 0
            batch.append(F.pad(frames, (left, pad - left)))
            lefts.append(left)
        z = torch.stack(batch).to(self.dtype)
        g = torch.stack([request.voice[1] for request, _, _, _ in members])
        if self._vocoder_graphs is not None:
            wav = self._vocoder_graphs.run(z, g)
        else:
            wav = self.model.hifigan_decoder.waveform_decoder(z, g)
        samples = wav[:, 0].float().cpu().numpy()
        up = self.model_config.decoder_upsample
        out = {}
        for row, ((request, window, _, _), left) in enumerate(zip(members, lefts)):
            a = (left + window.emit_start - window.start) * up
            b = (left + window.emit_stop - window.start) * up
            out[request.id] = np.ascontiguousarray(samples[row, a:b])
        return out


def _place(model: XttsModel, device: torch.device, dtype: torch.dtype) -> XttsModel:
    """Move to ``device``; the step path (GPT stack, embeddings, heads, waveform decoder) in
    ``dtype``, the rarely used float32-only parts (conditioning, speaker encoder) as they are."""
    model = model.to(device)
    gpt = model.gpt
    for module in (gpt.gpt, gpt.text_embedding, gpt.mel_embedding, gpt.mel_pos_embedding,
                   gpt.text_pos_embedding, gpt.final_norm, gpt.mel_head, gpt.text_head,
                   model.hifigan_decoder.waveform_decoder):
        module.to(dtype)
    return model


def _word_timings(text: str, samples: int, rate_hz: int) -> tuple[WordTiming, ...]:
    """Estimated: XTTS has no alignment, so words share the duration in proportion to length."""
    words = text.split()
    if not words or samples == 0:
        return ()
    weights = np.array([len(w) + 1 for w in words], dtype=np.float64)
    edges = np.concatenate([[0.0], np.cumsum(weights)]) / weights.sum() * samples / rate_hz * 1000
    return tuple(WordTiming(w, float(a), float(b)) for w, a, b in zip(words, edges[:-1], edges[1:]))

