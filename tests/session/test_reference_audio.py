"""Reference-audio checks: what an uploader is told about their recording, before any profile."""

from __future__ import annotations

import dataclasses
import io
import shutil
import subprocess

import av
import numpy as np
import numpy.typing as npt
import pytest
import soxr

from inference.piper import PiperEngine
from inference.speaker import SpeakerEncoder
from session.errors import TimbreError
from session.reference_audio import (
    Clipped,
    FileTooLarge,
    MultipleSpeakers,
    ReferenceAudioError,
    ReferenceChecks,
    ReferenceReport,
    TooLong,
    TooNoisy,
    TooShort,
    UndecodableAudio,
    check_references,
    decode_reference,
)

F32 = npt.NDArray[np.float32]
RATE = 22050
CONFIG = ReferenceChecks()

SENTENCES = (
    "The quick brown fox jumps over the lazy dog near the river bank.",
    "Please call Stella and ask her to bring these things with her from the store.",
    "Six spoons of fresh snow peas, five thick slabs of blue cheese, and a snack for Bob.",
    "We also need a small plastic snake and a big toy frog for the kids.",
    "She can scoop these things into three red bags, and we will meet her at the station.",
    "When the sunlight strikes raindrops in the air, they act as a prism and form a rainbow.",
)


@pytest.fixture(scope="module")
def joe(tmp_path_factory: pytest.TempPathFactory) -> F32:
    """About 27 s of the stock Piper voice at 22.05 kHz, peak-normalised to 0 dBFS."""
    engine = PiperEngine(cache_dir=tmp_path_factory.mktemp("piper"))
    audio = np.concatenate([engine.synthesize_one_pass(s) for s in SENTENCES])
    return (audio / np.abs(audio).max()).astype(np.float32)


@pytest.fixture(scope="module")
def encoder() -> SpeakerEncoder:
    return SpeakerEncoder()


def check(encoder: SpeakerEncoder, *files: tuple[str, bytes],
          config: ReferenceChecks = CONFIG) -> ReferenceReport:
    return check_references(list(files), config, encoder=encoder)


def encode(audio: F32, container: str, codec: str = "pcm_s16le", rate: int = RATE,
           channels: int = 1) -> bytes:
    """``audio`` (22.05 kHz mono) as a file: resampled to ``rate``, copied to each channel."""
    if rate != RATE:
        audio = soxr.resample(audio, RATE, rate).astype(np.float32)
    layout = "mono" if channels == 1 else "stereo"
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format=container) as media:
        stream = media.add_stream(codec, rate=rate, layout=layout)
        to_codec = av.AudioResampler(format=stream.codec_context.codec.audio_formats[0].name,
                                     layout=layout, rate=rate)
        frame = av.AudioFrame.from_ndarray(np.tile(audio, (channels, 1)), format="fltp",
                                           layout=layout)
        frame.sample_rate = rate
        for converted in [*to_codec.resample(frame), *to_codec.resample(None), None]:
            for packet in stream.encode(converted):
                media.mux(packet)
    return buffer.getvalue()


def wav(audio: F32) -> bytes:
    return encode(audio, "wav")


def seconds(audio: F32, start: float, end: float) -> F32:
    return audio[round(start * RATE):round(end * RATE)]


def with_noise(audio: F32, snr_db: float, seed: int = 0) -> F32:
    """White noise at ``snr_db`` below the audio's mean power."""
    noise = np.random.default_rng(seed).standard_normal(len(audio))
    scale = np.sqrt(np.mean(audio.astype(np.float64) ** 2) / 10 ** (snr_db / 10))
    return (audio + noise * scale).astype(np.float32)


# -- what passes ------------------------------------------------------------------------------


def test_clean_speech_passes_with_its_measurements(encoder: SpeakerEncoder, joe: F32) -> None:
    report = check(encoder, ("joe.wav", wav(joe)))
    assert report.duration_s == pytest.approx(len(joe) / RATE, abs=0.01)
    assert 0.8 * report.duration_s < report.speech_s <= report.duration_s
    assert report.clipped_ratio < 1e-4
    assert report.snr_db > 35  # Piper's pauses are not digitally silent: about 41 dB
    assert report.speaker_score > 0.9
    assert report.sample_rate_hz == 16000 and report.audio.dtype == np.float32
    assert len(report.audio) == pytest.approx(report.duration_s * 16000, abs=1)
    (file,) = report.files
    assert (file.name, file.container, file.source_sample_rate_hz, file.channels) == (
        "joe.wav", "wav", RATE, 1)
    # 27 s: enough, but under the recommended 30 s
    assert len(report.warnings) == 1 and "30 s" in report.warnings[0]


def test_several_files_are_decoded_concatenated_and_judged_together(encoder: SpeakerEncoder,
                                                                    joe: F32) -> None:
    tail = seconds(joe, 0, 12)
    report = check(encoder, ("one.wav", wav(joe)),
                   ("two.flac", encode(tail, "flac", "flac", rate=48000, channels=2)))
    first, second = report.files
    assert (first.start, first.end, second.start) == (0, first.end, first.end)
    assert second.end == len(report.audio)
    assert (second.container, second.source_sample_rate_hz, second.channels) == ("flac", 48000, 2)
    assert report.speech_s == pytest.approx(first.speech_s + second.speech_s)
    assert report.speech_s > 30 and report.warnings == ()
    assert all(0 <= s < e <= len(report.audio) for s, e in report.speech_spans)


def test_silence_around_the_speech_is_trimmed(encoder: SpeakerEncoder, joe: F32) -> None:
    speech = seconds(joe, 0, 12)
    hiss = (np.random.default_rng(1).standard_normal(10 * RATE) * 10 ** (-70 / 20))
    padded = np.concatenate([np.zeros(10 * RATE), speech, hiss]).astype(np.float32)
    plain = check(encoder, ("plain.wav", wav(speech)))
    report = check(encoder, ("padded.wav", wav(padded)))
    assert report.duration_s == pytest.approx(32, abs=0.01)
    assert report.speech_s == pytest.approx(plain.speech_s, abs=0.2)
    assert report.speech_spans[0][0] >= 9.95 * 16000
    assert report.speech_spans[-1][1] <= 22.05 * 16000
    assert report.warnings  # 32 s of audio, but only about 11 s of speech


def test_output_at_24_khz(encoder: SpeakerEncoder, joe: F32) -> None:
    config = dataclasses.replace(CONFIG, sample_rate_hz=24000)
    report = check(encoder, ("joe.wav", wav(seconds(joe, 0, 12))), config=config)
    assert report.sample_rate_hz == 24000
    assert len(report.audio) == pytest.approx(12 * 24000, abs=2)


# -- formats ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("container", "codec", "rate", "channels", "min_correlation"), [
    ("wav", "pcm_s16le", 8000, 1, 0.999),
    ("wav", "pcm_s16le", 44100, 2, 0.999),
    ("flac", "flac", 16000, 1, 0.999),
    ("flac", "flac", 48000, 2, 0.999),
    ("mp3", "libmp3lame", 44100, 1, 0.99),
    ("mp3", "libmp3lame", 16000, 2, 0.99),
    ("ogg", "libopus", 48000, 1, 0.99),
    ("ogg", "libopus", 16000, 2, 0.99),
    ("webm", "libopus", 48000, 2, 0.99),
    ("webm", "libopus", 8000, 1, 0.99),
])
def test_each_format_decodes_to_the_same_speech(joe: F32, container: str, codec: str, rate: int,
                                                channels: int, min_correlation: float) -> None:
    clip = seconds(joe, 0, 6)
    decoded = decode_reference(f"clip.{container}", encode(clip, container, codec, rate, channels),
                               CONFIG)
    opus = codec == "libopus"
    assert decoded.source_sample_rate_hz == (48000 if opus else rate)  # Opus always decodes at 48k
    assert decoded.channels == channels
    assert decoded.container == container
    assert len(decoded.audio) == pytest.approx(6 * 16000, abs=16)
    # what the source rate let through, at 16 kHz
    expected = soxr.resample(soxr.resample(clip, RATE, rate), rate, 16000)
    n = min(len(expected), len(decoded.audio))
    correlation = np.corrcoef(expected[:n], decoded.audio[:n])[0, 1]
    assert correlation > min_correlation


def test_the_container_is_told_by_content_not_name(joe: F32) -> None:
    decoded = decode_reference("looks-like.mp3", wav(seconds(joe, 0, 2)), CONFIG)
    assert decoded.container == "wav"


@pytest.mark.parametrize("data", [
    b"",
    b"hello, this is not audio at all",
    np.random.default_rng(0).bytes(5000),
    b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(200),
    b"OggS" + np.random.default_rng(1).bytes(3000),
    b"ID3" + np.random.default_rng(2).bytes(3000),
    b"\x1aE\xdf\xa3" + np.random.default_rng(3).bytes(3000),
    b"#EXTM3U\n#EXT-X-TARGETDURATION:10\nhttp://127.0.0.1:9/a.ts\n",
])
def test_what_is_not_audio_is_undecodable(data: bytes) -> None:
    with pytest.raises(UndecodableAudio) as caught:
        decode_reference("upload", data, CONFIG)
    assert (caught.value.code, caught.value.http_status) == ("undecodable_audio", 422)
    assert ("is empty" in str(caught.value)) == (data == b"")


@pytest.mark.parametrize(("container", "codec"), [
    ("wav", "pcm_s16le"), ("flac", "flac"), ("mp3", "libmp3lame"), ("ogg", "libopus"),
    ("webm", "libopus"),
])
def test_damaged_files_decode_or_are_refused_never_crash(joe: F32, container: str,
                                                         codec: str) -> None:
    """Cut short or with bytes overwritten (headers included): some audio or a 422, never a
    crash."""
    intact = encode(seconds(joe, 0, 2), container, codec, rate=48000)
    rng = np.random.default_rng(0)
    for attempt in range(16):
        damaged = bytearray(intact[:int(rng.integers(4, len(intact)))] if attempt % 4 == 0
                            else intact)
        for position in rng.integers(4, min(len(damaged), 300 if attempt % 2 else len(damaged)),
                                     size=int(rng.integers(1, 40))):
            damaged[position] = int(rng.integers(0, 256))
        try:
            decoded = decode_reference("damaged", bytes(damaged), CONFIG)
        except UndecodableAudio:
            continue
        assert np.isfinite(decoded.audio).all()


def test_a_wav_of_an_unknown_codec_is_undecodable(joe: F32) -> None:
    """FFmpeg opens it and lists an audio stream, but with no codec to decode it."""
    data = bytearray(wav(seconds(joe, 0, 2)))
    data[20:22] = (0x1234).to_bytes(2, "little")  # the fmt chunk's format tag
    with pytest.raises(UndecodableAudio):
        decode_reference("odd.wav", bytes(data), CONFIG)


def test_a_tag_that_is_not_utf8_does_not_matter(joe: F32) -> None:
    text = b"\x03ab\x9d\xffcd"  # ID3v2.3 TIT2, declared UTF-8, invalid bytes
    frame = b"TIT2" + len(text).to_bytes(4, "big") + b"\x00\x00" + text
    size = bytes((len(frame) >> shift) & 0x7F for shift in (21, 14, 7, 0))
    tagged = b"ID3\x03\x00\x00" + size + frame + encode(seconds(joe, 0, 2), "mp3", "libmp3lame")
    assert decode_reference("tagged.mp3", tagged, CONFIG).container == "mp3"


def test_an_upload_with_no_file_is_refused(encoder: SpeakerEncoder) -> None:
    with pytest.raises(UndecodableAudio):
        check(encoder)


# -- what fails -------------------------------------------------------------------------------


def test_an_upload_over_the_size_limit_is_refused_before_decoding(
        encoder: SpeakerEncoder) -> None:
    config = dataclasses.replace(CONFIG, max_upload_bytes=1000)
    with pytest.raises(FileTooLarge) as caught:
        check(encoder, ("a.wav", bytes(600)), ("b.wav", bytes(600)), config=config)
    assert (caught.value.code, caught.value.http_status) == ("file_too_large", 413)


def test_too_much_audio_stops_decoding(encoder: SpeakerEncoder, joe: F32) -> None:
    config = dataclasses.replace(CONFIG, max_duration_s=20, recommended_speech_s=15)
    with pytest.raises(TooLong):
        check(encoder, ("a.wav", wav(seconds(joe, 0, 12))), ("b.wav", wav(seconds(joe, 0, 12))),
              config=config)


def test_too_little_speech_even_with_long_silence(encoder: SpeakerEncoder, joe: F32) -> None:
    speech = seconds(joe, 0, 8)
    padded = np.concatenate([speech, np.zeros(20 * RATE, dtype=np.float32)])
    with pytest.raises(TooShort) as caught:
        check(encoder, ("short.wav", wav(padded)))
    assert (caught.value.code, caught.value.http_status) == ("too_short", 422)
    assert "10 s" in caught.value.message


@pytest.mark.parametrize(("container", "codec"), [("wav", "pcm_s16le"), ("mp3", "libmp3lame")])
def test_clipped_speech_is_refused(encoder: SpeakerEncoder, joe: F32, container: str,
                                   codec: str) -> None:
    clipped = np.clip(joe * 10, -1, 1)
    with pytest.raises(Clipped) as caught:
        check(encoder, ("loud." + container, encode(clipped, container, codec, rate=44100)))
    assert caught.value.code == "clipped" and "loud." in caught.value.message


def test_one_clipped_file_among_clean_ones_is_refused(encoder: SpeakerEncoder,
                                                      joe: F32) -> None:
    clipped = np.clip(seconds(joe, 0, 6) * 3, -1, 1)
    with pytest.raises(Clipped) as caught:
        check(encoder, ("clean.wav", wav(joe)), ("hot.wav", wav(clipped)))
    assert "hot.wav" in caught.value.message


def test_noisy_speech_is_refused_and_moderate_noise_is_not(encoder: SpeakerEncoder,
                                                           joe: F32) -> None:
    with pytest.raises(TooNoisy) as caught:
        check(encoder, ("street.wav", wav(with_noise(joe, 5))))
    assert caught.value.code == "too_noisy"
    report = check(encoder, ("room.wav", wav(with_noise(joe, 30))))
    assert 25 < report.snr_db < 35


def test_two_voices_taking_turns_are_refused(encoder: SpeakerEncoder, joe: F32) -> None:
    """joe against joe shifted up 25 % (pitch and formants), in 4 s turns: about 0.70."""
    other = soxr.resample(joe, RATE, round(RATE / 1.25)).astype(np.float32)
    turns = [seconds(voice, t, t + 4) for t in range(0, 16, 4) for voice in (joe, other)]
    with pytest.raises(MultipleSpeakers) as caught:
        check(encoder, ("interview.wav", wav(np.concatenate(turns))))
    assert caught.value.code == "multiple_speakers"


@pytest.mark.skipif(shutil.which("espeak-ng") is None,
                    reason="needs the espeak-ng program (Debian espeak-ng)")
def test_a_second_speaker_in_another_file_is_refused(encoder: SpeakerEncoder, joe: F32) -> None:
    """espeak-ng's female voice in a second file: about 0.5."""
    text = " ".join(SENTENCES[:2])
    other = subprocess.run(["espeak-ng", "-v", "en-us+f3", "--stdout", text], check=True,
                           capture_output=True).stdout
    with pytest.raises(MultipleSpeakers):
        check(encoder, ("joe.wav", wav(joe)), ("someone-else.wav", other))


def test_every_refusal_is_a_distinct_client_error() -> None:
    classes = [FileTooLarge, UndecodableAudio, TooLong, Clipped, TooNoisy, TooShort,
               MultipleSpeakers]
    assert all(issubclass(c, ReferenceAudioError) and issubclass(c, TimbreError)
               for c in classes)
    assert len({c.code for c in classes}) == len(classes)
    assert {c.http_status for c in classes} == {413, 422}
    assert all(c.close_code is None and not c.retryable for c in classes)


def test_config_rejects_impossible_values() -> None:
    with pytest.raises(ValueError):
        ReferenceChecks(sample_rate_hz=22050)
    with pytest.raises(ValueError):
        ReferenceChecks(min_speech_s=40)
