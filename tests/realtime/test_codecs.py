"""realtime.codecs: format names, and each streaming encoder against its one-pass output."""

from __future__ import annotations

import io
import struct

import av
import numpy as np
import numpy.typing as npt
import pytest
import soundfile as sf

from realtime.codecs import (
    OutputFormat,
    StreamEncoder,
    encode_once,
    make_encoder,
    parse_output_format,
    supported_output_formats,
)
from session.errors import BadFormat, BadSampleRate

ENGINE_RATE_HZ = 22050  # Piper's rate: every format but pcm_22050 resamples
SERIAL = 7  # a fixed Ogg serial, so streamed and one-pass Opus can be compared byte for byte

OURS = ("pcm_s16le", "ulaw_8000", "alaw_8000", "opus", "mp3", "wav", "flac")
ELEVENLABS = (
    "pcm_8000", "pcm_16000", "pcm_22050", "pcm_24000", "pcm_44100", "pcm_48000",
    "ulaw_8000", "alaw_8000", "mp3_22050_32", "mp3_24000_48", "mp3_44100_32", "mp3_44100_64",
    "mp3_44100_96", "mp3_44100_128", "mp3_44100_192", "opus_48000_32", "opus_48000_64",
    "opus_48000_96", "opus_48000_128", "opus_48000_192",
)  # fmt: skip
OPENAI = ("mp3", "opus", "aac", "flac", "wav", "pcm")

CODEC_PATHS = (
    "pcm_s16le", "pcm_22050", "wav", "flac", "ulaw_8000", "alaw_8000",
    "mp3_44100_128", "mp3_22050_32", "opus_48000_64", "aac",
)  # fmt: skip
"""One name per distinct encoder path (and both MP3 sample-rate families)."""

EXTRA_SAMPLES = {"pcm_s16le": 0, "flac": 0, "pcm_mulaw": 0, "pcm_alaw": 0, "opus": 960,
                 "mp3": 3 * 1152, "aac": 3 * 1024}  # fmt: skip
"""How many samples a decoder may give beyond the input: the codec's priming and last-frame padding
(raw MP3 and ADTS carry no gapless info; Ogg Opus trims by pre-skip and granule position)."""

MIN_SNR_DB = {"pcm_s16le": 80.0, "flac": 80.0, "pcm_mulaw": 30.0, "pcm_alaw": 30.0,
              "opus": 30.0, "mp3": 20.0, "aac": 25.0}  # fmt: skip


# --- names ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(set(OURS + ELEVENLABS + OPENAI)))
def test_every_documented_name_parses(name: str) -> None:
    fmt = parse_output_format(name)
    assert name in supported_output_formats()
    assert fmt.media_type.startswith("audio/")


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("pcm_16000", OutputFormat("pcm_s16le", 16000, None, "raw", "audio/pcm")),
        ("pcm", OutputFormat("pcm_s16le", 24000, None, "raw", "audio/pcm")),
        ("ulaw_8000", OutputFormat("pcm_mulaw", 8000, None, "raw", "audio/basic")),
        ("mp3_22050_32", OutputFormat("mp3", 22050, 32000, "mp3", "audio/mpeg")),
        ("opus_48000_96", OutputFormat("opus", 48000, 96000, "ogg", "audio/ogg")),
        ("wav", OutputFormat("pcm_s16le", 24000, None, "wav", "audio/wav")),
    ],
)
def test_names_mean_what_their_apis_say(name: str, expected: OutputFormat) -> None:
    assert parse_output_format(name) == expected


def test_our_bare_names_match_their_elevenlabs_spelling() -> None:
    assert parse_output_format("mp3") == parse_output_format("mp3_44100_128")
    assert parse_output_format("opus") == parse_output_format("opus_48000_64")
    assert parse_output_format("pcm_s16le", 44100) == parse_output_format("pcm_44100")


def test_rate_is_chosen_separately_for_rate_free_names() -> None:
    assert parse_output_format("pcm_s16le", 8000).sample_rate_hz == 8000
    assert parse_output_format("wav", 48000).sample_rate_hz == 48000
    assert parse_output_format("ulaw_8000", 8000).sample_rate_hz == 8000
    with pytest.raises(BadSampleRate):
        parse_output_format("pcm_s16le", 12345)
    with pytest.raises(BadSampleRate):
        parse_output_format("ulaw_8000", 16000)  # the name fixes the rate


@pytest.mark.parametrize(
    "name", ["", "mp4", "PCM", "pcm_12345", "mp3_44100_999", "opus_24000_64", "ulaw", "s16le"]
)
def test_unknown_names_are_refused_with_the_list(name: str) -> None:
    with pytest.raises(BadFormat) as caught:
        parse_output_format(name)
    assert caught.value.code == "bad_format" and caught.value.http_status == 400
    assert "pcm_s16le" in caught.value.message and "mp3_44100_128" in caught.value.message


# --- streaming encoders --------------------------------------------------------------------------


def sine(rate_hz: int, seconds: float = 0.3, freq_hz: float = 440.0) -> npt.NDArray[np.float32]:
    t = np.arange(round(seconds * rate_hz)) / rate_hz
    return (0.5 * np.sin(2 * np.pi * freq_hz * t)).astype(np.float32)


def chunk_sizes(seed: int = 0) -> list[int]:
    """Empty, one-sample, odd and large chunks, like a model's first small chunk then bigger ones."""
    rng = np.random.default_rng(seed)
    return [0, 1, 2, 0, 3, 17, 1, 511] + [int(n) for n in rng.integers(0, 900, size=40)]


def stream(encoder: StreamEncoder, signal: npt.NDArray[np.float32]) -> list[bytes]:
    """Every piece the encoder returns for ``signal`` fed in irregular chunks, ``finish`` last."""
    out, start, sizes = [], 0, chunk_sizes()
    for size in sizes:
        out.append(encoder.encode(signal[start : start + size]))
        start += size
    assert start >= len(signal)
    out.append(encoder.finish())
    return out


def decode(data: bytes, fmt: OutputFormat) -> npt.NDArray[np.float32]:
    """Decode with FFmpeg (raw formats need their rate told), as mono float32 at the format's rate."""
    raw = {"pcm_s16le": "s16le", "pcm_mulaw": "mulaw", "pcm_alaw": "alaw"}
    demuxer = raw[fmt.codec] if fmt.container == "raw" else None
    options = {"sample_rate": str(fmt.sample_rate_hz)} if demuxer else {}
    to_float = av.AudioResampler(format="flt", layout="mono")
    with av.open(io.BytesIO(data), "r", format=demuxer, options=options) as container:
        assert container.streams.audio[0].rate == fmt.sample_rate_hz
        frames = [g for f in container.decode(audio=0) for g in to_float.resample(f)]
    out: npt.NDArray[np.float32] = np.concatenate([f.to_ndarray().reshape(-1) for f in frames])
    return out


def aligned_snr_db(decoded: npt.NDArray[np.float32], reference: npt.NDArray[np.float32]) -> float:
    """SNR of ``decoded`` against ``reference`` after removing the codec delay (best lag), over the
    middle where neither the codec's start-up nor the signal's abrupt ends count."""
    n = len(reference)
    margin = n // 8
    lags = range(len(decoded) - n + 1)
    core = reference[margin:-margin]
    lag = max(lags, key=lambda k: float(np.dot(decoded[k + margin : k + n - margin], core)))
    error = decoded[lag + margin : lag + n - margin] - core
    return float(10 * np.log10(np.sum(core**2) / max(float(np.sum(error**2)), 1e-20)))


@pytest.mark.parametrize("name", CODEC_PATHS)
def test_streamed_output_equals_one_pass(name: str) -> None:
    fmt = parse_output_format(name)
    signal = sine(ENGINE_RATE_HZ)
    streamed = b"".join(stream(make_encoder(fmt, ENGINE_RATE_HZ, ogg_serial=SERIAL), signal))
    whole = encode_once(fmt, ENGINE_RATE_HZ, signal, ogg_serial=SERIAL)
    if fmt.container == "wav":  # the one-pass file knows its size; the stream's header cannot
        streamed, whole = streamed[44:], whole[44:]
    if fmt.codec == "flac":  # so does the one-pass STREAMINFO: compare the samples
        assert np.array_equal(decode(streamed, fmt), decode(whole, fmt))
    else:
        assert streamed == whole


@pytest.mark.parametrize("name", CODEC_PATHS)
def test_streamed_sine_decodes_whole_and_without_clicks(name: str) -> None:
    fmt = parse_output_format(name)
    data = b"".join(stream(make_encoder(fmt, ENGINE_RATE_HZ), sine(ENGINE_RATE_HZ)))
    decoded = decode(data, fmt)
    reference = sine(fmt.sample_rate_hz)

    assert len(reference) <= len(decoded) <= len(reference) + EXTRA_SAMPLES[fmt.codec]
    assert aligned_snr_db(decoded, reference) >= MIN_SNR_DB[fmt.codec]
    # a gap or click at a seam is a jump far above the sine's own steepest step
    steepest = float(np.abs(np.diff(reference)).max())
    assert float(np.abs(np.diff(decoded)).max()) <= 1.3 * steepest + 0.02


@pytest.mark.parametrize(("name", "unit"), [("opus", b"OggS"), ("mp3", b"\xff")])
def test_each_piece_is_whole_pages_or_frames(name: str, unit: bytes) -> None:
    """A client may hand each WebSocket message straight to a decoder: pieces start on a boundary."""
    fmt = parse_output_format(name)
    pieces = [p for p in stream(make_encoder(fmt, ENGINE_RATE_HZ), sine(ENGINE_RATE_HZ)) if p]
    assert len(pieces) > 5  # output flows while input arrives, not all at finish
    assert all(p.startswith(unit) for p in pieces)
    if name == "mp3":
        assert all(p[1] & 0xE0 == 0xE0 for p in pieces)  # 11-bit frame sync


def test_mulaw_and_alaw_bytes_are_one_byte_per_sample() -> None:
    signal = sine(8000)  # no resampling: one byte per input sample
    for name in ("ulaw_8000", "alaw_8000"):
        data = b"".join(stream(make_encoder(parse_output_format(name), 8000), signal))
        assert len(data) == len(signal)
        assert data == encode_once(parse_output_format(name), 8000, signal)


def test_streamed_wav_plays_and_one_pass_wav_has_exact_sizes() -> None:
    fmt = parse_output_format("wav", 16000)
    signal = sine(ENGINE_RATE_HZ)
    pieces = stream(make_encoder(fmt, ENGINE_RATE_HZ), signal)
    assert pieces[0][:4] == b"RIFF"  # the header leads the very first piece
    streamed = b"".join(pieces)
    with sf.SoundFile(io.BytesIO(streamed)) as f:
        assert f.samplerate == 16000 and f.channels == 1
        assert len(f.read()) == len(sine(16000))

    whole = encode_once(fmt, ENGINE_RATE_HZ, signal)
    riff_size, data_size = struct.unpack("<I", whole[4:8])[0], struct.unpack("<I", whole[40:44])[0]
    assert (riff_size, data_size) == (len(whole) - 8, len(whole) - 44)
    audio, rate = sf.read(io.BytesIO(whole), dtype="float32")
    assert rate == 16000 and len(audio) == len(sine(16000))


def test_flac_is_lossless_and_a_whole_file_knows_its_length() -> None:
    signal = sine(ENGINE_RATE_HZ)
    pcm = encode_once(parse_output_format("pcm"), ENGINE_RATE_HZ, signal)
    streamed = b"".join(stream(make_encoder(parse_output_format("flac"), ENGINE_RATE_HZ), signal))
    samples = np.rint(decode(streamed, parse_output_format("flac")) * 32768).astype("<i2")
    assert samples.tobytes() == pcm  # the very samples the raw path sends

    whole = encode_once(parse_output_format("flac"), ENGINE_RATE_HZ, signal)
    audio, rate = sf.read(io.BytesIO(whole), dtype="int16")
    assert rate == 24000 and audio.tobytes() == pcm


def test_an_empty_stream_is_still_a_valid_file() -> None:
    encoder = make_encoder(parse_output_format("wav"), ENGINE_RATE_HZ)
    assert encoder.finish()[:4] == b"RIFF"
    encoder = make_encoder(parse_output_format("mp3"), ENGINE_RATE_HZ)
    assert encoder.encode(np.zeros(0, np.float32)) == b""
    encoder.finish()


def test_a_finished_or_closed_encoder_refuses_more_audio() -> None:
    encoder = make_encoder(parse_output_format("opus"), ENGINE_RATE_HZ)
    assert encoder.media_type == "audio/ogg"
    encoder.finish()
    with pytest.raises(RuntimeError, match="finished"):
        encoder.encode(sine(ENGINE_RATE_HZ))
    closed = make_encoder(parse_output_format("mp3"), ENGINE_RATE_HZ)
    closed.encode(sine(ENGINE_RATE_HZ))
    closed.close()
    closed.close()  # idempotent: a cancelled stream may be closed twice
    with pytest.raises(RuntimeError):
        closed.finish()
