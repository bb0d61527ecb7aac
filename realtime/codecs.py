"""Output formats and the streaming encoders that make them.

A client names a format (ours, ElevenLabs' ``output_format`` or OpenAI's ``response_format``);
``parse_output_format`` turns the name into an ``OutputFormat`` and ``make_encoder`` builds the
``StreamEncoder`` for one stream of engine audio. The encoder resamples from the engine's rate with one
``StreamingResampler`` and keeps the codec's state (frame buffer, Ogg page sequence, MP3 bit reservoir)
across ``encode`` calls, so the bytes of a stream fed in chunks of any size are exactly the bytes of a
one-pass encode of the whole signal: no clicks or gaps at chunk seams.

Lossy and container work is done by FFmpeg through PyAV; only raw PCM and the WAV header are written
here. Each ``encode`` returns whole units a client can play as they arrive: samples, mu-law/A-law
bytes, whole Ogg pages, whole MP3 frames, whole ADTS frames, whole FLAC frames.
"""

from __future__ import annotations

import io
import secrets
import struct
from abc import ABC, abstractmethod
from dataclasses import dataclass, replace
from fractions import Fraction
from functools import cache
from typing import Final, Literal

import av
import av.audio.stream
import numpy as np
import numpy.typing as npt

from realtime.audio import (
    SUPPORTED_SAMPLE_RATES,
    FloatAudio,
    StreamingResampler,
    float_to_pcm16,
)
from session.errors import BadFormat, BadSampleRate

Codec = Literal["pcm_s16le", "pcm_mulaw", "pcm_alaw", "opus", "mp3", "aac", "flac"]
Container = Literal["raw", "wav", "ogg", "mp3", "adts", "flac"]


@dataclass(frozen=True)
class OutputFormat:
    """What a client receives: ``codec`` samples at ``sample_rate_hz`` in ``container``.

    ``bitrate_bps`` is the target bitrate of a lossy codec (None for PCM and FLAC); ``media_type`` is
    the Content-Type an HTTP response carries.
    """

    codec: Codec
    sample_rate_hz: int
    bitrate_bps: int | None
    container: Container
    media_type: str


DEFAULT_PCM_RATE_HZ: Final = 24000
"""Rate of formats whose name carries none (``pcm_s16le``, ``pcm``, ``wav``, ``flac``); OpenAI's rate."""


def _pcm(rate_hz: int) -> OutputFormat:
    return OutputFormat("pcm_s16le", rate_hz, None, "raw", "audio/pcm")


def _wav(rate_hz: int) -> OutputFormat:
    return OutputFormat("pcm_s16le", rate_hz, None, "wav", "audio/wav")


def _flac(rate_hz: int) -> OutputFormat:
    return OutputFormat("flac", rate_hz, None, "flac", "audio/flac")


def _mp3(rate_hz: int, kbps: int) -> OutputFormat:
    return OutputFormat("mp3", rate_hz, kbps * 1000, "mp3", "audio/mpeg")


def _opus(rate_hz: int, kbps: int) -> OutputFormat:
    return OutputFormat("opus", rate_hz, kbps * 1000, "ogg", "audio/ogg")


_ULAW: Final = OutputFormat("pcm_mulaw", 8000, None, "raw", "audio/basic")
_ALAW: Final = OutputFormat("pcm_alaw", 8000, None, "raw", "audio/x-alaw-basic")
_AAC: Final = OutputFormat("aac", 24000, 64000, "adts", "audio/aac")

_RATE_FREE: Final[dict[str, OutputFormat]] = {
    "pcm_s16le": _pcm(DEFAULT_PCM_RATE_HZ),  # ours: the rate comes separately
    "pcm": _pcm(DEFAULT_PCM_RATE_HZ),  # OpenAI: 24 kHz s16le, no header
    "wav": _wav(DEFAULT_PCM_RATE_HZ),
    "flac": _flac(DEFAULT_PCM_RATE_HZ),
}
"""Names whose rate a caller may choose (``sample_rate_hz``); the format here has the default."""

_FIXED: Final[dict[str, OutputFormat]] = {
    "ulaw_8000": _ULAW,
    "alaw_8000": _ALAW,
    "mp3": _mp3(44100, 128),
    "opus": _opus(48000, 64),
    "aac": _AAC,
    # ElevenLabs' output_format names
    **{f"pcm_{rate}": _pcm(rate) for rate in (8000, 16000, 22050, 24000, 32000, 44100, 48000)},
    "mp3_22050_32": _mp3(22050, 32),
    "mp3_24000_48": _mp3(24000, 48),
    **{f"mp3_44100_{kbps}": _mp3(44100, kbps) for kbps in (32, 64, 96, 128, 192)},
    **{f"opus_48000_{kbps}": _opus(48000, kbps) for kbps in (32, 64, 96, 128, 192)},
}

_ENCODER_NAMES: Final[dict[Codec, str]] = {
    "pcm_mulaw": "pcm_mulaw",
    "pcm_alaw": "pcm_alaw",
    "opus": "libopus",
    "mp3": "libmp3lame",
    "aac": "aac",
    "flac": "flac",
}
"""FFmpeg encoder per codec; ``pcm_s16le`` needs none."""


@cache
def _has_encoder(codec: Codec) -> bool:
    if codec == "pcm_s16le":
        return True
    try:
        av.codec.Codec(_ENCODER_NAMES[codec], "w")
    except (av.codec.codec.UnknownCodecError, ValueError):
        return False
    return True


@cache
def supported_output_formats() -> tuple[str, ...]:
    """Every name ``parse_output_format`` accepts, given the encoders this FFmpeg build has."""
    names = {**_RATE_FREE, **_FIXED}
    return tuple(name for name, fmt in names.items() if _has_encoder(fmt.codec))


def parse_output_format(name: str, sample_rate_hz: int | None = None) -> OutputFormat:
    """The format a client asked for by ``name`` (ours, ElevenLabs' or OpenAI's).

    ``sample_rate_hz`` picks the rate of ``pcm_s16le``/``pcm``/``wav``/``flac`` (default 24000); for
    other names it may only repeat the rate the name fixes. Raises ``BadFormat`` (listing the
    supported names) for an unknown name or one this build cannot encode, and ``BadSampleRate`` for a
    rate outside ``SUPPORTED_SAMPLE_RATES`` or one that contradicts the name.
    """
    supported = supported_output_formats()
    if name not in supported:
        raise BadFormat(f"output format {name!r} is not one of {', '.join(supported)}")
    if name in _RATE_FREE:
        fmt = _RATE_FREE[name]
        if sample_rate_hz is None:
            return fmt
        if sample_rate_hz not in SUPPORTED_SAMPLE_RATES:
            raise BadSampleRate(
                f"sample rate {sample_rate_hz} Hz is not one of {SUPPORTED_SAMPLE_RATES}"
            )
        return replace(fmt, sample_rate_hz=sample_rate_hz)
    fmt = _FIXED[name]
    if sample_rate_hz is not None and sample_rate_hz != fmt.sample_rate_hz:
        raise BadSampleRate(
            f"output format {name!r} is {fmt.sample_rate_hz} Hz; got sample rate {sample_rate_hz} Hz"
        )
    return fmt


class StreamEncoder(ABC):
    """Encode one stream of mono float32 engine audio into ``format``, chunk by chunk.

    Call ``encode`` with each chunk (at ``input_rate_hz``, any length, empty included), then
    ``finish`` once; the concatenation of everything returned is one valid stream of the format,
    identical to encoding the whole signal in one pass. Output lags input by the resampler's and the
    codec's delay (a frame: 20 ms for Opus, 1152 samples for MP3); ``finish`` returns the rest.
    ``close`` abandons a stream (e.g. on cancel) and frees the codec. Not thread-safe; one instance per
    stream. Calling ``encode`` or ``finish`` after ``finish``/``close`` raises ``RuntimeError``.
    """

    def __init__(self, fmt: OutputFormat, input_rate_hz: int) -> None:
        self.format = fmt
        self.input_rate_hz = input_rate_hz
        self._resampler = StreamingResampler(input_rate_hz, fmt.sample_rate_hz)
        self._done = False

    @property
    def media_type(self) -> str:
        return self.format.media_type

    def encode(self, pcm: npt.ArrayLike) -> bytes:
        """Feed the next chunk; returns the complete output units ready so far (maybe ``b""``)."""
        self._check_open()
        return self._encode(_clipped(self._resampler.process(pcm)))

    def finish(self) -> bytes:
        """End the stream: returns the held-back tail and any trailer, then closes the encoder."""
        self._check_open()
        out = self._encode(_clipped(self._resampler.flush())) + self._flush()
        self.close()
        return out

    def close(self) -> None:
        """Release the codec without producing output; idempotent."""
        self._done = True

    def _check_open(self) -> None:
        if self._done:
            raise RuntimeError(f"the {self.format.codec} encoder is finished")

    @abstractmethod
    def _encode(self, samples: FloatAudio) -> bytes:
        """Encode samples already at the format's rate and clipped to [-1, 1]."""

    @abstractmethod
    def _flush(self) -> bytes:
        """Everything the codec still holds once the input has ended."""


class _PcmEncoder(StreamEncoder):
    def _encode(self, samples: FloatAudio) -> bytes:
        return float_to_pcm16(samples)

    def _flush(self) -> bytes:
        return b""


_WAV_STREAM_DATA_BYTES: Final = 0xFFFFFFFF - 36
"""Data size a streamed WAV header claims: the most RIFF can say, so players read to the end."""


def wav_header(sample_rate_hz: int, data_bytes: int | None = None) -> bytes:
    """A 44-byte header for mono s16le WAV; ``data_bytes=None`` gives the streaming (max size) one."""
    size = _WAV_STREAM_DATA_BYTES if data_bytes is None else data_bytes
    return b"".join((
        b"RIFF", struct.pack("<I", 36 + size), b"WAVE",
        b"fmt ", struct.pack("<IHHIIHH", 16, 1, 1, sample_rate_hz, 2 * sample_rate_hz, 2, 16),
        b"data", struct.pack("<I", size),
    ))  # fmt: skip


class _WavEncoder(_PcmEncoder):
    """Streaming WAV: the header (with the maximum size, as the length is not known yet) leads the
    first output, so a client can start playing at once."""

    def __init__(self, fmt: OutputFormat, input_rate_hz: int) -> None:
        super().__init__(fmt, input_rate_hz)
        self._header_sent = False

    def _encode(self, samples: FloatAudio) -> bytes:
        body = super()._encode(samples)
        if self._header_sent:
            return body
        self._header_sent = True
        return wav_header(self.format.sample_rate_hz) + body


_AV_MUXERS: Final[dict[Codec, str]] = {
    "pcm_mulaw": "mulaw",
    "pcm_alaw": "alaw",
    "opus": "ogg",
    "mp3": "mp3",
    "aac": "adts",
    "flac": "flac",
}

_FLUSH_EACH_PACKET: Final = {"flush_packets": "1"}
"""Hand each packet out as soon as it is muxed, not once 4 KiB have gathered in PyAV's buffer."""

_MUXER_OPTIONS: Final[dict[str, dict[str, str]]] = {
    # one page per 20 ms Opus packet, so pages leave without delay; bitexact: the serial is ours
    "ogg": {"page_duration": "20000", "fflags": "+bitexact"},
    "mp3": {"write_xing": "0", "id3v2_version": "0"},  # bare frames: no tag, no seek-back frame
}


class _Sink:
    """A write-only, unseekable file for PyAV: muxers then write streamable output only."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def write(self, data: bytes) -> int:
        self._buf += data
        return len(data)

    def take(self) -> bytes:
        out = bytes(self._buf)
        self._buf.clear()
        return out


class _AvEncoder(StreamEncoder):
    """A PyAV encoder and muxer writing into memory. PyAV re-frames whatever we send into the codec's
    frame size, so the codec sees the same frames however the input was chunked."""

    def __init__(
        self, fmt: OutputFormat, input_rate_hz: int, ogg_serial: int, *, whole_file: bool = False
    ) -> None:
        super().__init__(fmt, input_rate_hz)
        # a seekable file lets the muxer go back and fill in sizes (FLAC's STREAMINFO), so nothing
        # can be handed out before the end
        self._sink: _Sink | io.BytesIO = io.BytesIO() if whole_file else _Sink()
        muxer = _AV_MUXERS[fmt.codec]
        options = {**_FLUSH_EACH_PACKET, **_MUXER_OPTIONS.get(muxer, {})}
        if muxer == "ogg":
            options["serial_offset"] = str(ogg_serial)
        self._container = av.open(self._sink, "w", format=muxer, options=options, buffer_size=4096)
        stream = self._container.add_stream(_ENCODER_NAMES[fmt.codec], rate=fmt.sample_rate_hz)
        assert isinstance(
            stream, av.audio.stream.AudioStream
        )  # an audio codec makes an audio stream
        self._stream = stream
        self._stream.layout = "mono"
        if fmt.bitrate_bps is not None:
            self._stream.bit_rate = fmt.bitrate_bps
        self._s16 = self._stream.format.name.startswith("s16")
        self._pts = 0

    def _encode(self, samples: FloatAudio) -> bytes:
        if len(samples):
            self._mux(self._frame(samples))
        return self._sink.take() if isinstance(self._sink, _Sink) else b""

    def _flush(self) -> bytes:
        self._mux(None)
        self._container.close()
        return self._sink.take() if isinstance(self._sink, _Sink) else self._sink.getvalue()

    def close(self) -> None:
        if not self._done:
            self._container.close()
        super().close()

    def _frame(self, samples: FloatAudio) -> av.AudioFrame:
        if self._s16:  # our rounding (float_to_pcm16), so PCM-based codecs match the raw path
            data = np.frombuffer(float_to_pcm16(samples), dtype="<i2")[None, :]
            frame = av.AudioFrame.from_ndarray(data, format="s16", layout="mono")
        else:
            frame = av.AudioFrame.from_ndarray(samples[None, :], format="flt", layout="mono")
        frame.sample_rate = self.format.sample_rate_hz
        frame.time_base = Fraction(1, self.format.sample_rate_hz)
        frame.pts = self._pts
        self._pts += len(samples)
        return frame

    def _mux(self, frame: av.AudioFrame | None) -> None:
        self._container.mux(self._stream.encode(frame))


def make_encoder(
    fmt: OutputFormat, input_rate_hz: int, *, ogg_serial: int | None = None
) -> StreamEncoder:
    """A fresh encoder for one stream of engine audio at ``input_rate_hz`` into ``fmt``.

    ``ogg_serial`` fixes the Ogg stream serial number (default: random, so that streams a client
    chains one after another stay distinct); other containers ignore it. Raises ``ValueError`` for a
    non-positive rate.
    """
    if fmt.codec == "pcm_s16le":
        if fmt.container == "wav":
            return _WavEncoder(fmt, input_rate_hz)
        return _PcmEncoder(fmt, input_rate_hz)
    serial = secrets.randbits(31) if ogg_serial is None else ogg_serial
    return _AvEncoder(fmt, input_rate_hz, serial)


def encode_once(
    fmt: OutputFormat, input_rate_hz: int, pcm: npt.ArrayLike, *, ogg_serial: int | None = None
) -> bytes:
    """Encode a whole signal as one file (an HTTP response body that is not streamed).

    Same bytes as a streamed encode with the same ``ogg_serial``, except for the headers that need
    the length: a WAV header carries the exact sizes, FLAC's STREAMINFO the sample count and MD5.
    """
    encoder: StreamEncoder
    if fmt.codec == "flac":
        encoder = _AvEncoder(fmt, input_rate_hz, 0, whole_file=True)
    else:
        encoder = make_encoder(fmt, input_rate_hz, ogg_serial=ogg_serial)
    out = encoder.encode(pcm) + encoder.finish()
    if fmt.container == "wav":
        return wav_header(fmt.sample_rate_hz, len(out) - 44) + out[44:]
    return out


def _clipped(samples: FloatAudio) -> FloatAudio:
    """Resampler overshoot clipped to full scale, so every codec gets the same legal input."""
    out: FloatAudio = np.clip(np.nan_to_num(samples), -1.0, 1.0).astype(np.float32, copy=False)
    return out
