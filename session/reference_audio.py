"""Checks on uploaded reference audio, before any voice profile exists.

``check_references`` takes the uploaded files (name, bytes), decodes each (wav, mp3, flac, ogg
with Opus/Vorbis/FLAC, webm with Opus or Vorbis; any rate, mono or stereo), and either returns a
``ReferenceReport`` with the measurements and the audio for the clone job, or raises one
``ReferenceAudioError`` naming the first check that failed, in this order:

1. ``file_too_large`` (413): the upload's bytes, before anything is decoded;
2. ``undecodable_audio``: not one of the accepted containers (told by its first bytes, never by
   its name), no audio stream, a decoding error, or no samples;
3. ``too_long``: more decoded audio than ``max_duration_s`` (decoding stops there, so a small
   file that expands to hours cannot exhaust memory);
4. ``clipped``: in some file, too many samples at full scale;
5. ``too_noisy``: in some file, speech too little above the noise floor;
6. ``too_short``: too little speech once silences are trimmed (a warning under the recommended
   length);
7. ``multiple_speakers``: the speech, all files together, does not sound like one voice.

Clipping and noise are judged per file (a clean file must not hide a clipped or noisy one) and the
report gives the worst file's value; speech length and speaker consistency are judged on all files
together. Nothing here touches the network or the disk. How each threshold was chosen is recorded
on ``ReferenceChecks``.

Level measurements use 20 ms frames of the mono audio at the output rate. The noise floor is the
mean power of the quietest 10 % of frames that are not digital silence (padding of exact zeros
must not make a noisy recording look clean); speech frames are those more than
``speech_over_noise_db`` above that floor and within ``speech_range_db`` of the loudest frames,
with pauses shorter than ``max_pause_s`` kept inside speech (so "speech duration" counts natural
pauses between words, not long silences). The SNR estimate is the mean power of speech frames over
the noise floor.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import av
import numpy as np
import numpy.typing as npt
import soxr

from session.errors import TimbreError

_F32 = npt.NDArray[np.float32]
_F64 = npt.NDArray[np.float64]


# -- errors ---------------------------------------------------------------------------------------


class ReferenceAudioError(TimbreError):
    """Base of the reference-audio refusals: the upload is unusable as it is; a new recording
    (not a retry) can help."""

    code = "bad_reference_audio"
    http_status = 422
    close_code = None


class FileTooLarge(ReferenceAudioError):
    code = "file_too_large"
    http_status = 413


class UndecodableAudio(ReferenceAudioError):
    code = "undecodable_audio"


class TooLong(ReferenceAudioError):
    code = "too_long"


class Clipped(ReferenceAudioError):
    code = "clipped"


class TooNoisy(ReferenceAudioError):
    code = "too_noisy"


class TooShort(ReferenceAudioError):
    code = "too_short"


class MultipleSpeakers(ReferenceAudioError):
    code = "multiple_speakers"


# -- configuration and results --------------------------------------------------------------------


@dataclass(frozen=True)
class ReferenceChecks:
    """Thresholds of the reference-audio checks. The measurements behind the defaults were made
    on Piper and espeak-ng speech (see tests/session/test_reference_audio.py)."""

    max_upload_bytes: int = 50 * 1024 * 1024
    """All files of one upload together. 50 MiB holds several minutes of 48 kHz stereo WAV."""
    max_duration_s: float = 600.0
    """Decoded audio of all files together; decoding stops past it."""
    sample_rate_hz: int = 16000
    """Rate of the report's audio (16000 for the speaker encoder and recognisers, 24000 for a
    24 kHz engine)."""
    min_speech_s: float = 10.0
    recommended_speech_s: float = 30.0
    """Under this much speech the report carries a warning."""
    clip_level: float = 0.9
    """A sample at or above this magnitude (1.0 = full scale) counts as clipped. Well under 1
    because lossy codecs smear a clipped plateau: speech driven 10x into clipping keeps 15 % of its
    samples at 0.99 as WAV but only 2 % as 44.1 kHz MP3, while 14-17 % stay above 0.9."""
    max_clipped_ratio: float = 0.001
    """Clean speech peak-normalised to 0 dBFS has at most 0.003 % of its samples over 0.9 (WAV,
    MP3, Opus); driven 2x (6 dB) into clipping 0.26-0.39 %, 3x 1.2-1.6 %, 10x 14-17 %. The
    encoder's embedding of 2x-clipped speech is 0.95 cosine from the clean one, 10x 0.76."""
    min_snr_db: float = 20.0
    """The estimate tracks the true SNR (speech power over noise power) within about 2 dB from 15
    to 40 dB of white noise; under about 10 dB it stops falling (the speech cannot be told from
    the noise any more) and reads 8-13. Clean Piper speech reads 41-44 dB (its pauses are not
    digitally silent). The encoder's embedding of noisy speech is 0.92 cosine from the clean one
    at 20 dB, 0.85 at 15 dB and 0.77 at 10 dB (white noise): under 20 dB the noise, not the
    voice, starts to decide the clone."""
    frame_s: float = 0.02
    noise_quantile: float = 0.1
    digital_silence_db: float = -90.0
    """Frames quieter than this (dBFS) are padding, left out of the noise floor."""
    speech_over_noise_db: float = 10.0
    speech_range_db: float = 45.0
    max_pause_s: float = 0.3
    window_s: float = 1.6
    """Speaker-consistency windows: one encoder partial (1.6 s) of speech every 0.8 s. Shorter
    windows tell quick turns apart (3 s windows straddle them: 2 s turns of two voices scored
    0.90, as high as one voice) and, with ``min_other_speaker_s``, still judge seconds of speech."""
    hop_s: float = 0.8
    min_speaker_score: float = 0.85
    """See ``speaker_score``. Measured on synthetic voices: one voice 0.91-0.96 (Piper joe;
    espeak-ng; joe in two files, one with 20 dB of noise; joe at speed 0.8 and 1.3 or with more
    expressive noise scales); two voices 0.47-0.81 (joe with espeak-ng's en-us+f3/m3, or with
    himself shifted 15-25 % in pitch and formants, as one block of 3-15 s or in 2-4 s turns).
    0.85 sits between; real recordings vary more than synthetic ones, so lower it before raising
    it if people's own voices are refused."""
    min_other_speaker_s: float = 5.0
    """The score compares at least this much speech with the rest: a cough or a laugh cannot
    make a second speaker, and one window of odd speech cannot either."""

    def __post_init__(self) -> None:
        if self.sample_rate_hz not in (16000, 24000):
            raise ValueError("sample_rate_hz must be 16000 or 24000")
        if not 0 < self.min_speech_s <= self.recommended_speech_s <= self.max_duration_s:
            raise ValueError("need 0 < min_speech_s <= recommended_speech_s <= max_duration_s")


@dataclass(frozen=True)
class ReferenceFile:
    """One decoded upload file. ``start`` and ``end`` are its samples in the report's audio."""

    name: str
    container: str
    source_sample_rate_hz: int
    channels: int
    duration_s: float
    clipped_ratio: float
    speech_s: float
    snr_db: float
    """0.0 for a file without speech (its noise is not judged)."""
    start: int
    end: int


@dataclass(frozen=True, eq=False)
class ReferenceReport:
    """Reference audio that passed every check."""

    files: tuple[ReferenceFile, ...]
    duration_s: float
    speech_s: float
    """Speech after trimming silences longer than ``max_pause_s``, all files together."""
    clipped_ratio: float
    """The worst file's."""
    snr_db: float
    """The worst file's estimate."""
    speaker_score: float
    """1.0 = one voice; see ``ReferenceChecks.min_speaker_score``."""
    sample_rate_hz: int
    audio: _F32
    """All files' mono audio at ``sample_rate_hz``, concatenated in upload order, untrimmed."""
    speech_spans: tuple[tuple[int, int], ...]
    """[start, end) samples of ``audio`` that hold speech."""
    warnings: tuple[str, ...] = field(default=())


class SpeakerEmbedder(Protocol):
    """What the speaker check needs (``inference.speaker.SpeakerEncoder``)."""

    def embed_windows(self, audio: _F32, sample_rate_hz: int, window_s: float | None = ...,
                      hop_s: float = ...) -> _F32: ...


# -- the checks -----------------------------------------------------------------------------------


def check_references(files: Sequence[tuple[str, bytes]], config: ReferenceChecks, *,
                     encoder: SpeakerEmbedder) -> ReferenceReport:
    """Decode and check the files of one upload (see the module docstring for the order).
    ``encoder`` embeds speech for the single-speaker check; share one across calls. CPU-bound
    (about 0.3 s per minute of audio on 2 cores): run it off the event loop. Raises a
    ``ReferenceAudioError`` subclass; never returns a report that failed a check."""
    if not files:
        raise UndecodableAudio("no audio file was uploaded")
    size = sum(len(data) for _, data in files)
    if size > config.max_upload_bytes:
        raise FileTooLarge(f"the upload is {size} bytes; the limit is {config.max_upload_bytes}")
    parts = _measure_all(_decode_all(files, config), config)
    _check_levels(parts, config)
    audio = np.concatenate([p.decoded.audio for p in parts])
    spans = tuple(span for p in parts for span in p.spans)
    speech_s = sum(e - s for s, e in spans) / config.sample_rate_hz
    warnings = _check_length(speech_s, config)
    speech = np.concatenate([audio[s:e] for s, e in spans])
    score = speaker_score(encoder.embed_windows(speech, config.sample_rate_hz, config.window_s,
                                                config.hop_s), config)
    if score < config.min_speaker_score:
        raise MultipleSpeakers(f"the recording sounds like more than one speaker (consistency "
                               f"{score:.2f}, need {config.min_speaker_score:.2f}); upload speech "
                               "of the voice owner alone")
    return ReferenceReport(
        files=tuple(p.file for p in parts), duration_s=len(audio) / config.sample_rate_hz,
        speech_s=speech_s, clipped_ratio=max(p.file.clipped_ratio for p in parts),
        snr_db=min((p.file.snr_db for p in parts if p.file.speech_s > 0), default=0.0),
        speaker_score=score,
        sample_rate_hz=config.sample_rate_hz, audio=audio, speech_spans=spans, warnings=warnings)


def speaker_score(embeddings: _F32, config: ReferenceChecks) -> float:
    """How surely window embeddings (n, 256), in time order, come from one voice: the cosine
    between the centroids of a two-way split of the windows (1 = the two halves sound alike).

    The split is spherical 2-means seeded by the window least like the mean of all; when its
    smaller side covers less than ``min_other_speaker_s`` of speech (one speaker: 2-means finds a
    single odd window), the smaller side becomes the windows that cover that much speech and
    are least like the rest instead. So the score always compares at least a few seconds of
    speech with the rest, and a cough or a laugh cannot decide it."""
    windows = np.asarray(embeddings, dtype=np.float64)
    if len(windows) < 2:
        return 1.0
    labels = _two_means(windows)
    if int(labels.sum()) > len(labels) // 2:
        labels = ~labels
    least = min(len(windows) // 2, _windows_covering(config.min_other_speaker_s, config))
    if int(labels.sum()) < least:
        rest = _unit(windows[~labels].mean(axis=0))
        labels = np.zeros(len(windows), dtype=bool)
        labels[np.argsort(windows @ rest)[:least]] = True
    a, b = _unit(windows[labels].mean(axis=0)), _unit(windows[~labels].mean(axis=0))
    return float(a @ b)


# -- decoding -------------------------------------------------------------------------------------


_CONTAINERS = {b"RIFF": "wav", b"fLaC": "flac", b"OggS": "ogg", b"\x1aE\xdf\xa3": "matroska"}


@dataclass(frozen=True, eq=False)
class DecodedAudio:
    """One file as ``decode_reference`` gives it: mono float32 at the config's rate; the rest
    describes the source."""

    name: str
    container: str
    source_sample_rate_hz: int
    channels: int
    clipped_ratio: float
    audio: _F32


def _decode_all(files: Sequence[tuple[str, bytes]], config: ReferenceChecks) -> list[DecodedAudio]:
    decoded: list[DecodedAudio] = []
    budget_s = config.max_duration_s
    for name, data in files:
        item = decode_reference(name, data, config, max_duration_s=budget_s)
        decoded.append(item)
        budget_s -= len(item.audio) / config.sample_rate_hz
    return decoded


def decode_reference(name: str, data: bytes, config: ReferenceChecks, *,
                     max_duration_s: float | None = None) -> DecodedAudio:
    """One file's bytes -> mono float32 at ``config.sample_rate_hz`` and its clipped-sample
    ratio (measured on the decoded samples at their own rate, before any mixing or resampling).
    Raises ``UndecodableAudio``, or ``TooLong`` past ``max_duration_s`` (default: the config's)."""
    if not data:
        raise UndecodableAudio(f"{name!r} is empty (0 bytes)")
    container = _sniff(data)
    if container is None:
        raise UndecodableAudio(f"{name!r} is not wav, mp3, flac, ogg or webm audio")
    limit_s = config.max_duration_s if max_duration_s is None else max_duration_s
    try:
        planar, rate = _decode_planar(data, container, limit_s)
    except (av.FFmpegError, _Broken) as exc:
        raise UndecodableAudio(f"{name!r} could not be decoded as {container}: {exc}") from exc
    except _Overlong:
        raise TooLong(f"the upload holds more than {config.max_duration_s:.0f} s of audio; "
                      "upload less") from None
    if planar.shape[1] == 0:
        raise UndecodableAudio(f"{name!r} holds no audio samples")
    clipped = float(np.mean(np.max(np.abs(planar), axis=0) >= config.clip_level))
    mono = planar.mean(axis=0, dtype=np.float32)
    if rate != config.sample_rate_hz:
        mono = soxr.resample(mono, rate, config.sample_rate_hz).astype(np.float32)
    display = "webm" if container == "matroska" else container
    return DecodedAudio(name, display, rate, planar.shape[0], clipped, mono)


class _Overlong(Exception):
    """More decoded audio than the duration limit."""


class _Broken(Exception):
    """Decoded frames that make no sense (FFmpeg itself did not complain)."""


def _sniff(data: bytes) -> str | None:
    """The container, told by the first bytes (a file's name is never trusted; and an explicit
    demuxer keeps FFmpeg from probing formats that open other URLs, such as HLS playlists)."""
    head = data[:4]
    if head in _CONTAINERS:
        return _CONTAINERS[head] if head != b"RIFF" or data[8:12] == b"WAVE" else None
    if data[:3] == b"ID3" or (len(data) > 1 and data[0] == 0xFF and data[1] & 0xE0 == 0xE0):
        return "mp3"
    return None


def _decode_planar(data: bytes, container: str, limit_s: float) -> tuple[_F32, int]:
    """[channels, samples] float32 at the first frame's rate and channel layout (later frames
    that differ are converted to it); no samples when there is no decodable audio stream."""
    chunks: list[_F32] = []
    total = 0
    to_float: av.AudioResampler | None = None
    rate = 0
    with av.open(io.BytesIO(data), mode="r", format=container,
                 metadata_errors="ignore") as media:
        streams = media.streams.audio
        if not streams or streams[0].codec_context is None:
            return np.zeros((1, 0), dtype=np.float32), 0
        for frame in media.decode(streams[0]):
            if to_float is None:
                if frame.sample_rate <= 0 or not frame.layout.channels:
                    raise _Broken("a frame without a sample rate or channels")
                rate = frame.sample_rate
                to_float = av.AudioResampler(format="fltp", layout=frame.layout, rate=rate)
            for converted in to_float.resample(frame):
                chunks.append(np.asarray(converted.to_ndarray(), dtype=np.float32))
                total += chunks[-1].shape[1]
            if total > limit_s * rate:
                raise _Overlong()
    if to_float is not None:
        chunks.extend(np.asarray(c.to_ndarray(), dtype=np.float32)
                      for c in to_float.resample(None))
    if not chunks:
        return np.zeros((1, 0), dtype=np.float32), rate
    return np.concatenate(chunks, axis=1), rate


# -- levels, speech and noise ----------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class _Measured:
    decoded: DecodedAudio
    file: ReferenceFile
    spans: tuple[tuple[int, int], ...]


def _measure_all(decoded: Sequence[DecodedAudio], config: ReferenceChecks) -> list[_Measured]:
    parts: list[_Measured] = []
    offset = 0
    for item in decoded:
        parts.append(_measure_file(item, config, offset))
        offset += len(item.audio)
    return parts


def _measure_file(decoded: DecodedAudio, config: ReferenceChecks, offset: int) -> _Measured:
    """Levels, speech and noise of one file; its spans are samples of the concatenated audio."""
    levels = frame_levels_db(decoded.audio, config.sample_rate_hz, config.frame_s)
    noise_db = noise_floor_db(levels, config)
    mask = speech_mask(levels, noise_db, config)
    snr = _snr_db(levels, mask, noise_db)
    frame = round(config.frame_s * config.sample_rate_hz)
    spans = tuple((offset + s * frame, offset + min(e * frame, len(decoded.audio)))
                  for s, e in _runs(mask))
    speech_s = sum(e - s for s, e in spans) / config.sample_rate_hz
    file = ReferenceFile(decoded.name, decoded.container, decoded.source_sample_rate_hz,
                         decoded.channels, len(decoded.audio) / config.sample_rate_hz,
                         decoded.clipped_ratio, speech_s, snr, offset,
                         offset + len(decoded.audio))
    return _Measured(decoded, file, spans)


def frame_levels_db(audio: _F32, sample_rate_hz: int, frame_s: float) -> _F64:
    """Mean power of each whole ``frame_s`` frame in dBFS (a full-scale sine reads -3 dB;
    digital silence -200)."""
    frame = round(frame_s * sample_rate_hz)
    count = len(audio) // frame
    frames = audio[:count * frame].astype(np.float64).reshape(count, frame)
    levels: _F64 = 10.0 * np.log10(np.mean(frames**2, axis=1) + 1e-20)
    return levels


def noise_floor_db(levels: _F64, config: ReferenceChecks) -> float:
    """Mean power (dB) of the quietest ``noise_quantile`` of frames that are not digital silence."""
    live = np.sort(levels[levels > config.digital_silence_db])
    if live.size == 0:
        return config.digital_silence_db
    quiet = live[:max(1, int(len(live) * config.noise_quantile))]
    return float(10.0 * np.log10(np.mean(10.0 ** (quiet / 10.0))))


def speech_mask(levels: _F64, noise_db: float, config: ReferenceChecks) -> npt.NDArray[np.bool_]:
    """Frames that hold speech: loud over the noise floor and near the loud frames, with short
    pauses filled in."""
    if levels.size == 0:
        return np.zeros(0, dtype=bool)
    loud_db = float(np.percentile(levels, 95))
    threshold = max(noise_db + config.speech_over_noise_db, loud_db - config.speech_range_db)
    mask = levels > threshold
    max_gap = round(config.max_pause_s / config.frame_s)
    for start, end in _runs(~mask):
        if end - start <= max_gap and start > 0 and end < len(mask):
            mask[start:end] = True
    return mask


def _snr_db(levels: _F64, mask: npt.NDArray[np.bool_], noise_db: float) -> float:
    if not mask.any():
        return 0.0
    speech_db = 10.0 * np.log10(np.mean(10.0 ** (levels[mask] / 10.0)))
    return float(speech_db - noise_db)


def _runs(mask: npt.NDArray[np.bool_]) -> list[tuple[int, int]]:
    """[start, end) of each run of True."""
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist(),
                    strict=True))


def _check_levels(parts: Sequence[_Measured], config: ReferenceChecks) -> None:
    for part in parts:
        f = part.file
        if f.clipped_ratio > config.max_clipped_ratio:
            raise Clipped(f"{f.name!r} is clipped: {100 * f.clipped_ratio:.2f} % of its samples "
                          f"are at full scale (at most {100 * config.max_clipped_ratio:.2f} %); "
                          "record again with lower input gain")
    for part in parts:
        f = part.file
        if f.speech_s > 0 and f.snr_db < config.min_snr_db:
            raise TooNoisy(f"{f.name!r} is too noisy: speech is {f.snr_db:.0f} dB over the "
                           f"background (need {config.min_snr_db:.0f} dB); record somewhere "
                           "quieter or closer to the microphone")


def _check_length(speech_s: float, config: ReferenceChecks) -> tuple[str, ...]:
    if speech_s < config.min_speech_s:
        raise TooShort(f"the recording holds {speech_s:.1f} s of speech once silences are "
                       f"trimmed; at least {config.min_speech_s:.0f} s is needed "
                       f"({config.recommended_speech_s:.0f} s recommended)")
    if speech_s < config.recommended_speech_s:
        warning = (f"only {speech_s:.1f} s of speech: {config.recommended_speech_s:.0f} s or more "
                   "gives a closer voice")
        return (warning,)
    return ()


# -- speaker consistency --------------------------------------------------------------------------


def _two_means(windows: _F64, iterations: int = 10) -> npt.NDArray[np.bool_]:
    """Spherical 2-means: True for windows in the cluster seeded by the window least like the
    mean of all."""
    mean = _unit(windows.mean(axis=0))
    centres = np.stack([mean, windows[int(np.argmin(windows @ mean))]])
    labels = np.zeros(len(windows), dtype=bool)
    for _ in range(iterations):
        labels = (windows @ centres[1]) > (windows @ centres[0])
        if labels.all() or not labels.any():
            break
        centres = np.stack([_unit(windows[~labels].mean(axis=0)),
                            _unit(windows[labels].mean(axis=0))])
    return labels


def _windows_covering(seconds: float, config: ReferenceChecks) -> int:
    """How many consecutive windows cover ``seconds`` of speech (at least 1)."""
    return max(1, int(np.ceil((seconds - config.window_s) / config.hop_s - 1e-9)) + 1)


def _unit(x: _F64) -> _F64:
    return x / max(float(np.linalg.norm(x)), 1e-12)
