"""coqui-tts's own XTTS modules agree with ours on the same (random) weights: conditioning latents,
greedy codes and their latents from coqui's streaming generator, and the HiFi-GAN waveform.

Skipped unless coqui-tts is installed (``pip install coqui-tts --no-deps`` plus transformers,
einops, coqpit-config and coqui-tts-trainer). PyPI's torchaudio is a CUDA build and torchcodec is
only needed for audio files, so when they are absent both are replaced by stubs that provide what
the imports need (torchaudio's ``MelSpectrogram`` by ours, which keeps its buffer names); so is
librosa (numba, llvmlite, ...), which these modules only import.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import sys
import types
from dataclasses import replace
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from inference.engine import DecodeItem, EnginePlan, PrefillItem, RequestId, SynthesisUnit
from inference.xtts import XttsConfig, XttsEngine, XttsEngineConfig, XttsModel
from inference.xtts.features import MelSpectrogram
from inference.xtts.voices import VoiceConditioning

# coqui hard-wires the perceiver and speaker-encoder sizes: keep those, shrink the rest.
CONFIG = replace(XttsConfig.tiny(), cond_encoder_blocks=6, perceiver_latents=32,
                 perceiver_depth=2, perceiver_heads=8, perceiver_dim_head=64, d_vector_dim=512,
                 speaker_layers=(3, 4, 6, 3), speaker_filters=(32, 64, 128, 256))


class _StubMelSpectrogram(MelSpectrogram):
    def __init__(self, sample_rate: int = 16000, n_fft: int = 400, win_length: int | None = None,
                 hop_length: int | None = None, n_mels: int = 128, window_fn: Any = torch.hann_window,
                 f_min: float = 0.0, f_max: float | None = None, norm: str | None = None,
                 **_: Any) -> None:
        super().__init__(sample_rate=sample_rate, n_fft=n_fft, win_length=win_length or n_fft,
                         hop_length=hop_length or (win_length or n_fft) // 2, n_mels=n_mels,
                         f_min=f_min, f_max=f_max, norm=norm, window_fn=window_fn)


def _skip_or_fail(reason: str) -> None:
    """`make test` installs the reference (requirements/test-references*.txt): in CI its absence is
    a failure, on a developer's partial install a skip."""
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


def _stub(name: str) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__spec__ = importlib.machinery.ModuleSpec(name, None)
    module.__version__ = torch.__version__.split("+")[0]  # type: ignore[attr-defined]
    sys.modules[name] = module
    return module


def _coqui() -> tuple[Any, Any]:
    if importlib.util.find_spec("TTS") is None:
        _skip_or_fail("coqui-tts is not installed")
    if importlib.util.find_spec("torchaudio") is None:
        audio = _stub("torchaudio")
        audio.transforms = _stub("torchaudio.transforms")  # type: ignore[attr-defined]
        audio.transforms.MelSpectrogram = _StubMelSpectrogram  # type: ignore[attr-defined]
        audio.functional = _stub("torchaudio.functional")  # type: ignore[attr-defined]
    for name in ("torchcodec", "librosa"):
        if importlib.util.find_spec(name) is None:
            _stub(name)
    try:
        from TTS.tts.layers.xtts.gpt import GPT
        from TTS.tts.layers.xtts.hifigan_decoder import HifiDecoder
        from TTS.tts.layers.xtts.stream_generator import init_stream_support
    except ImportError as exc:
        _skip_or_fail(f"coqui-tts does not import here: {exc}")
    init_stream_support()
    return GPT, HifiDecoder


@pytest.fixture(scope="module")
def models() -> tuple[XttsModel, Any, Any]:
    GPT, HifiDecoder = _coqui()
    torch.manual_seed(11)
    ours = XttsModel(CONFIG).eval()
    c = CONFIG
    gpt = GPT(layers=c.gpt_layers, model_dim=c.gpt_n_model_channels, heads=c.gpt_n_heads,
              start_text_token=c.gpt_start_text_token, stop_text_token=c.gpt_stop_text_token,
              max_text_tokens=c.gpt_max_text_tokens, max_mel_tokens=c.gpt_max_audio_tokens,
              max_prompt_tokens=c.gpt_max_prompt_tokens,
              number_text_tokens=c.gpt_number_text_tokens,
              num_audio_tokens=c.gpt_num_audio_tokens,
              start_audio_token=c.gpt_start_audio_token, stop_audio_token=c.gpt_stop_audio_token,
              use_perceiver_resampler=True, code_stride_len=c.gpt_code_stride_len)
    hifi = HifiDecoder(decoder_input_dim=c.decoder_input_dim, d_vector_dim=c.d_vector_dim,
                       upsample_initial_channel_decoder=c.upsample_initial_channel)
    state = ours.state_dict()
    for prefix, module in (("gpt.", gpt), ("hifigan_decoder.", hifi)):
        part = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        result = module.load_state_dict(part, strict=False)
        assert not result.unexpected_keys
        assert all(k.endswith((".attn.bias", ".attn.masked_bias")) for k in result.missing_keys)
    gpt.init_gpt_for_inference(kv_cache=True)
    return ours, gpt.eval(), hifi.eval()


def test_conditioning_latents_agree(models: tuple[XttsModel, Any, Any]) -> None:
    ours, gpt, _ = models
    mel = torch.randn(1, 80, 150)
    with torch.inference_mode():
        theirs = gpt.get_style_emb(mel).transpose(1, 2)
        mine = ours.gpt.style_latents(mel)
    torch.testing.assert_close(mine, theirs, atol=1e-5, rtol=1e-4)


def test_greedy_codes_and_latents_agree_with_coquis_gpt(models: tuple[XttsModel, Any, Any]) -> None:
    """Our batched, cached decoding against coqui's GPT pass (``get_logits``, HF GPT-2) over the
    same prompt and codes: same latents, and every code is coqui's most likely next code.
    (coqui's streaming generator itself does not run with transformers 5.24.)"""
    ours, gpt, _ = models
    voice = VoiceConditioning(np.random.default_rng(2).standard_normal((32, 64)).astype(np.float32),
                              np.ones(512, dtype=np.float32) / np.sqrt(512))
    engine = XttsEngine(ours, XttsEngineConfig(max_active=1, fixed_tokens=30), voices={"v": voice})
    text = "hello world"
    rid = RequestId(1)
    out = engine.execute(EnginePlan(prefills=(PrefillItem(rid, SynthesisUnit(text, "v")),)))
    while not out.outputs[0].finished:
        out = engine.execute(EnginePlan(decodes=(DecodeItem(rid),)))
    codes, latents = engine.generated(rid)
    c = CONFIG
    tokens = torch.tensor([engine.tokenizer.encode(text, "en")])
    framed = torch.nn.functional.pad(torch.nn.functional.pad(tokens, (0, 1), value=c.gpt_stop_text_token),
                                     (1, 0), value=c.gpt_start_text_token)
    fed = torch.tensor([[c.gpt_start_audio_token] + codes[:-1]])
    with torch.inference_mode():
        text_emb = gpt.text_embedding(framed) + gpt.text_pos_embedding(framed)
        mel_emb = gpt.mel_embedding(fed) + gpt.mel_pos_embedding(fed)
        _, theirs = gpt.get_logits(text_emb, gpt.text_head, mel_emb, gpt.mel_head,
                                   prompt=torch.from_numpy(voice.gpt_latents)[None],
                                   return_latent=True)
        logits = gpt.mel_head(theirs[0]).clone()
    torch.testing.assert_close(latents, theirs[0], atol=1e-4, rtol=1e-3)
    logits = logits.clone()
    logits[:, c.gpt_stop_audio_token] = float("-inf")  # fixed-length mode never stops
    assert logits.argmax(dim=-1).tolist() == codes


def test_hifigan_waveform_agrees(models: tuple[XttsModel, Any, Any]) -> None:
    ours, _, hifi = models
    latents = torch.randn(1, 23, CONFIG.decoder_input_dim)
    g = torch.nn.functional.normalize(torch.randn(1, 512), dim=1)[:, :, None]
    with torch.inference_mode():
        torch.testing.assert_close(ours.hifigan_decoder(latents, g), hifi(latents, g=g),
                                   atol=1e-5, rtol=1e-4)
