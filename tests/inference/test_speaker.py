"""The speaker encoder: resemblyzer's weights and features, and what its embeddings tell apart."""

from __future__ import annotations

import importlib.util
import io
import shutil
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
import soundfile
import soxr

from inference.piper import PiperEngine
from inference.speaker import EMBEDDING_DIM, SpeakerEncoder, cosine, weights_path

F32 = npt.NDArray[np.float32]
PIPER_RATE = 22050

FIRST = ("The quick brown fox jumps over the lazy dog near the river bank. "
         "Please call Stella and ask her to bring these things with her from the store. "
         "We also need a small plastic snake and a big toy frog for the kids.")
SECOND = ("When the sunlight strikes raindrops in the air, they act as a prism and form a rainbow. "
          "There is, according to legend, a boiling pot of gold at one end. "
          "People look, but no one ever finds it.")

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None,
                                  reason="needs the espeak-ng program (Debian espeak-ng)")


@pytest.fixture(scope="module")
def encoder() -> SpeakerEncoder:
    return SpeakerEncoder()


@pytest.fixture(scope="module")
def piper(tmp_path_factory: pytest.TempPathFactory) -> tuple[F32, F32]:
    """Two passages of about 10 s each in the stock Piper voice, at 22.05 kHz."""
    engine = PiperEngine(cache_dir=tmp_path_factory.mktemp("piper"))
    return engine.synthesize_one_pass(FIRST), engine.synthesize_one_pass(SECOND)


def shifted(audio: F32, factor: float) -> F32:
    """``audio`` played ``factor`` times faster: pitch and formants both move up by ``factor``
    (a smaller, higher voice to the encoder)."""
    return soxr.resample(audio, PIPER_RATE, round(PIPER_RATE / factor)).astype(np.float32)


def espeak(text: str, voice: str) -> F32:
    """espeak-ng's formant synthesiser (22.05 kHz): a second, very different voice."""
    wav = subprocess.run(["espeak-ng", "-v", voice, "--stdout", text], check=True,
                         capture_output=True).stdout
    audio, rate = soundfile.read(io.BytesIO(wav), dtype="float32")
    assert rate == PIPER_RATE
    return np.asarray(audio, dtype=np.float32)


def test_weights_are_the_ones_resemblyzer_ships() -> None:
    path = weights_path()
    assert path.name == "pretrained.pt" and path.parent.name == "resemblyzer"
    assert 15e6 < path.stat().st_size < 20e6


def test_embedding_is_a_256_dim_unit_vector(encoder: SpeakerEncoder,
                                            piper: tuple[F32, F32]) -> None:
    embedding = encoder.embed(piper[0], PIPER_RATE)
    assert embedding.shape == (EMBEDDING_DIM,) and embedding.dtype == np.float32
    assert np.linalg.norm(embedding) == pytest.approx(1.0, abs=1e-5)
    assert (embedding >= 0).all()  # ReLU before the norm


def test_one_voice_is_similar_to_itself_and_far_from_others(encoder: SpeakerEncoder,
                                                           piper: tuple[F32, F32]) -> None:
    """Piper's joe on two different passages scores about 0.99 (real speakers about 0.93); joe
    shifted up 25 % in pitch and formants scores about 0.61 against him, like two different
    people (about 0.63)."""
    first, second = (encoder.embed(x, PIPER_RATE) for x in piper)
    other = encoder.embed(shifted(piper[1], 1.25), PIPER_RATE)
    assert cosine(first, second) > 0.9
    assert cosine(first, other) < 0.75
    assert cosine(second, other) < cosine(first, second) - 0.2


@needs_espeak
def test_a_different_synthesiser_is_a_different_speaker(encoder: SpeakerEncoder,
                                                        piper: tuple[F32, F32]) -> None:
    """espeak-ng's female variant against joe scores about 0.49; against itself about 0.98."""
    joe = encoder.embed(piper[0], PIPER_RATE)
    female = encoder.embed(espeak(FIRST, "en-us+f3"), PIPER_RATE)
    female_again = encoder.embed(espeak(SECOND, "en-us+f3"), PIPER_RATE)
    assert cosine(joe, female) < 0.7
    assert cosine(female, female_again) > 0.9


def test_the_sample_rate_is_taken_into_account(encoder: SpeakerEncoder,
                                               piper: tuple[F32, F32]) -> None:
    audio = piper[0]
    at_48k = soxr.resample(audio, PIPER_RATE, 48000).astype(np.float32)
    assert cosine(encoder.embed(audio, PIPER_RATE), encoder.embed(at_48k, 48000)) > 0.999


def test_windows_are_embedded_as_each_window_alone(encoder: SpeakerEncoder,
                                                   piper: tuple[F32, F32]) -> None:
    audio = soxr.resample(piper[0], PIPER_RATE, 16000).astype(np.float32)[:16000 * 10]
    rows = encoder.embed_windows(audio, 16000, window_s=3.0, hop_s=1.5)
    starts = [0.0, 1.5, 3.0, 4.5, 6.0, 7.0]  # the last window ends with the audio
    assert rows.shape == (len(starts), EMBEDDING_DIM)
    for row, start in zip(rows, starts, strict=True):
        window = audio[round(start * 16000):round(start * 16000) + 3 * 16000]
        assert np.abs(row - encoder.embed(window, 16000)).max() < 1e-5
    assert encoder.embed_windows(audio[:16000 * 2], 16000, window_s=3.0).shape == (1, 256)


def test_short_quiet_and_empty_audio(encoder: SpeakerEncoder, piper: tuple[F32, F32]) -> None:
    half_second = piper[0][:PIPER_RATE // 2]
    assert encoder.embed(half_second, PIPER_RATE).shape == (EMBEDDING_DIM,)
    # Quiet audio is raised to -30 dBFS first, so the level of a quiet recording does not matter.
    quiet = encoder.embed(piper[0] * 0.01, PIPER_RATE)
    quieter = encoder.embed(piper[0] * 0.001, PIPER_RATE)
    assert cosine(quiet, quieter) > 0.9999
    with pytest.raises(ValueError):
        encoder.embed(np.zeros(0, dtype=np.float32), PIPER_RATE)
    with pytest.raises(ValueError):
        encoder.embed_windows(piper[0], PIPER_RATE, window_s=1.0)


# -- against resemblyzer itself ---------------------------------------------------------------


@pytest.fixture(scope="module")
def reference() -> Any:
    """resemblyzer's own encoder; it needs librosa and webrtcvad, which Timbre does not."""
    for name in ("librosa", "webrtcvad"):
        if importlib.util.find_spec(name) is None:
            pytest.skip(f"resemblyzer's dependency {name} is not installed")
    with warnings.catch_warnings():  # its scipy.ndimage.morphology import is deprecated
        warnings.simplefilter("ignore", DeprecationWarning)
        from resemblyzer import VoiceEncoder

    return VoiceEncoder("cpu", verbose=False)


@pytest.mark.parametrize("seconds", [0.3, 1.6, 4.0, 4.77, 10.0])
def test_matches_resemblyzer_on_the_same_audio(encoder: SpeakerEncoder, reference: Any,
                                               piper: tuple[F32, F32], seconds: float) -> None:
    """Same 16 kHz audio in, same embedding out: mel features, partial slicing (including the
    zero-padded last partial), the network and the averaging all agree."""
    from resemblyzer import normalize_volume

    audio = soxr.resample(piper[1], PIPER_RATE, 16000).astype(np.float32)
    audio = audio[:round(seconds * 16000)]
    theirs = reference.embed_utterance(normalize_volume(audio, -30, increase_only=True))
    ours = encoder.embed(audio, 16000)
    assert np.abs(ours - theirs).max() < 1e-5


def test_close_to_resemblyzers_full_preprocessing(encoder: SpeakerEncoder, reference: Any,
                                                  piper: tuple[F32, F32]) -> None:
    """resemblyzer also resamples (librosa, soxr underneath) and trims long silences with
    webrtcvad; Piper speech has no long silences, so the embeddings agree closely."""
    from resemblyzer import preprocess_wav

    theirs = reference.embed_utterance(preprocess_wav(piper[0], PIPER_RATE))
    assert cosine(encoder.embed(piper[0], PIPER_RATE), theirs) > 0.995


def test_no_import_of_resemblyzer_or_librosa() -> None:
    """The encoder must not pull in librosa (numba, llvmlite, scikit-learn) at run time."""
    code = ("import sys; import inference.speaker as s; s.SpeakerEncoder(); "
            "assert 'resemblyzer' not in sys.modules and 'librosa' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[2])
