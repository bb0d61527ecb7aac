"""The XTTS engine on a tiny random model: batching is invisible, streaming equals one pass, and
coqui checkpoint keys load. GPU twins of the batching test are marked ``gpu``."""

from __future__ import annotations

import json
import threading
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

from inference.engine import (
    DecodeItem,
    EnginePlan,
    PrefillItem,
    RequestId,
    RequestOutput,
    SynthesisUnit,
)
from inference.xtts import (
    CheckpointMismatch,
    SamplingConfig,
    VoiceConditioning,
    XttsConfig,
    XttsEngine,
    XttsEngineConfig,
    XttsModel,
    load_model,
    random_voice,
)
from inference.xtts.vocoder_stream import FrameChain

TINY = XttsConfig.tiny()
TEXTS = {
    RequestId(1): "hello there",
    RequestId(2): "a somewhat longer sentence to speak",
    RequestId(3): "hi",
    RequestId(4): "the quick brown fox jumps",
}
JOIN_AT = {RequestId(1): 0, RequestId(2): 0, RequestId(3): 3, RequestId(4): 7}


@pytest.fixture(scope="module")
def model() -> XttsModel:
    torch.set_num_threads(1)
    return load_model(config=TINY, seed=3)


def make_engine(model: XttsModel, **overrides: object) -> XttsEngine:
    config = XttsEngineConfig(**{"max_active": 4, "fixed_tokens": 24, **overrides})  # type: ignore[arg-type]
    return XttsEngine(model, config, voices={"v0": random_voice(TINY, 0),
                                             "v1": random_voice(TINY, 1)})


def unit_for(rid: RequestId) -> SynthesisUnit:
    return SynthesisUnit(text=TEXTS[rid], voice=f"v{int(rid) % 2}")


def run_interleaved(engine: XttsEngine, join_at: dict[RequestId, int]) -> dict[RequestId, dict]:
    """Requests join at their step; every live request decodes every step until it finishes.
    Returns per request: codes, latents and streamed audio pieces."""
    seen: dict[RequestId, dict] = {}
    live: list[RequestId] = []
    step = 0
    while len(seen) < len(join_at) or live:
        joining = [rid for rid, at in join_at.items() if at == step]
        plan = EnginePlan(prefills=tuple(PrefillItem(r, unit_for(r)) for r in joining),
                          decodes=tuple(DecodeItem(r) for r in live))
        result = engine.execute(plan)
        assert not result.failures
        for rid in joining:
            seen[rid] = {"audio": []}
        for out in result.outputs:
            record(engine, seen[out.request_id], out)
            if out.finished:
                engine.release(out.request_id)
        live = [r for r in live + joining if not seen[r].get("finished")]
        step += 1
        assert step < 500
    return seen


def record(engine: XttsEngine, into: dict, out: RequestOutput) -> None:
    into["audio"].append(out.audio)
    if out.finished:
        into["codes"], into["latents"] = engine.generated(out.request_id)
        into["finished"] = True
        into["words"] = out.words


def test_batched_interleaved_decoding_equals_each_request_alone(model: XttsModel) -> None:
    together = run_interleaved(make_engine(model), JOIN_AT)
    for rid in TEXTS:
        alone = run_interleaved(make_engine(model), {rid: 0})[rid]
        assert together[rid]["codes"] == alone["codes"]
        torch.testing.assert_close(together[rid]["latents"], alone["latents"],
                                   atol=1e-5, rtol=1e-4)
        np.testing.assert_allclose(np.concatenate(together[rid]["audio"]),
                                   np.concatenate(alone["audio"]), atol=1e-5)


def test_cached_decoding_equals_a_plain_causal_pass(model: XttsModel) -> None:
    engine = make_engine(model)
    rid = RequestId(2)
    result = run_interleaved(engine, {rid: 0})[rid]
    cond = torch.from_numpy(random_voice(TINY, 0).gpt_latents)
    tokens = torch.tensor(engine.tokenizer.encode(TEXTS[rid], "en"))
    codes = torch.tensor(result["codes"])
    with torch.inference_mode():
        latents, logits = model.gpt.reference_latents(cond, tokens, codes)
    torch.testing.assert_close(result["latents"], latents, atol=1e-5, rtol=1e-4)
    banned = logits.clone()
    banned[:, TINY.gpt_stop_audio_token] = float("-inf")  # fixed-length mode never stops
    assert banned.argmax(dim=-1).tolist() == result["codes"]


def test_sampled_codes_do_not_depend_on_batch_mates(model: XttsModel) -> None:
    sampling = SamplingConfig(temperature=0.8, top_k=20, top_p=0.9, repetition_penalty=2.0)
    together = run_interleaved(make_engine(model, sampling=sampling, seed=7), JOIN_AT)
    alone = run_interleaved(make_engine(model, sampling=sampling, seed=7), {RequestId(4): 0})
    assert together[RequestId(4)]["codes"] == alone[RequestId(4)]["codes"]
    greedy = run_interleaved(make_engine(model), {RequestId(4): 0})
    assert greedy[RequestId(4)]["codes"] != alone[RequestId(4)]["codes"]


@pytest.mark.parametrize("speed", [1.0, 1.3])
def test_streamed_audio_equals_one_pass_decoding(model: XttsModel, speed: float) -> None:
    engine = make_engine(model, fixed_tokens=40)
    rids = [RequestId(1), RequestId(2)]
    seen = {rid: {"audio": []} for rid in rids}
    plan = EnginePlan(prefills=tuple(
        PrefillItem(rid, SynthesisUnit(TEXTS[rid], f"v{int(rid) % 2}", speed=speed))
        for rid in rids))
    pieces = 0
    while not all(s.get("finished") for s in seen.values()):
        for out in engine.execute(plan).outputs:
            record(engine, seen[out.request_id], out)
            pieces += len(out.audio) > 0
        plan = EnginePlan(decodes=tuple(DecodeItem(r) for r in rids if not seen[r].get("finished")))
    assert pieces >= 2 * len(rids)  # audio really left in several windows
    for rid in rids:
        streamed = np.concatenate(seen[rid]["audio"])
        latents = seen[rid]["latents"][None]
        if speed != 1.0:  # coqui stretches the latents before decoding
            latents = F.interpolate(latents.transpose(1, 2), scale_factor=1 / speed,
                                    mode="linear").transpose(1, 2)
        g = torch.from_numpy(random_voice(TINY, int(rid) % 2).speaker_embedding)[None, :, None]
        with torch.inference_mode():
            one_pass = model.hifigan_decoder(latents, g)[0, 0].numpy()
        assert streamed.shape == one_pass.shape
        np.testing.assert_allclose(streamed, one_pass, atol=2e-5)


def test_first_audio_leaves_after_a_few_codes(model: XttsModel) -> None:
    engine = make_engine(model, fixed_tokens=60)
    rid = RequestId(1)
    outputs = [engine.execute(EnginePlan(prefills=(PrefillItem(rid, unit_for(rid)),))).outputs[0]]
    while not outputs[-1].finished:
        outputs += engine.execute(EnginePlan(decodes=(DecodeItem(rid),))).outputs
    first = next(i for i, out in enumerate(outputs) if len(out.audio))
    assert first <= 10
    assert [w.word for w in outputs[-1].words] == TEXTS[rid].split()
    total_ms = sum(len(o.audio) for o in outputs) / engine.sample_rate_hz * 1000
    assert outputs[-1].words[-1].end_ms == pytest.approx(total_ms)


def test_frame_chain_matches_interpolate_and_known_frames_never_change() -> None:
    rng = np.random.default_rng(0)
    chain = FrameChain((1 / 1.3, 4.0, 24000 / 22050))
    latents = torch.from_numpy(rng.standard_normal((57, 5)).astype(np.float32))
    z = latents.T[None]
    for scale in (1 / 1.3, 4.0, 24000 / 22050):
        z = F.interpolate(z, scale_factor=scale, mode="linear")
    full = z[0]
    assert chain.total(57) == full.shape[1]
    for n in (3, 10, 31, 56):
        known = chain.known(n, finished=False)
        if known:
            torch.testing.assert_close(chain.frames(latents[:n], 0, known, None), full[:, :known])
    torch.testing.assert_close(chain.frames(latents, 100, full.shape[1], 57), full[:, 100:])


def test_requests_the_engine_cannot_serve_fail_without_crashing(model: XttsModel) -> None:
    engine = make_engine(model, max_active=1)
    plan = EnginePlan(prefills=(
        PrefillItem(RequestId(1), SynthesisUnit("fine", "v0")),
        PrefillItem(RequestId(2), SynthesisUnit("no slot left", "v0")),
        PrefillItem(RequestId(3), SynthesisUnit("who", "nobody")),
        PrefillItem(RequestId(4), SynthesisUnit("x" * 500, "v0")),
    ))
    result = engine.execute(plan)
    assert [o.request_id for o in result.outputs] == [RequestId(1)]
    assert {f.request_id: f.code for f in result.failures} == {
        RequestId(2): "engine_full", RequestId(3): "unknown_voice", RequestId(4): "text_too_long"}
    engine.release(RequestId(1))
    assert not engine.execute(EnginePlan(prefills=plan.prefills[1:2])).failures


def test_profile_voices_load_from_the_voice_source_on_first_use(model: XttsModel) -> None:
    from inference.voice_registry import VoiceRegistry

    registry = VoiceRegistry()
    engine = XttsEngine(model, XttsEngineConfig(max_active=2), voice_source=registry)
    unit = SynthesisUnit("hello", "v_profile")
    first = engine.execute(EnginePlan(prefills=(PrefillItem(RequestId(1), unit),)))
    assert [f.code for f in first.failures] == ["unknown_voice"]
    registry.put("v_profile", random_voice(TINY, seed=9).to_bytes())
    second = engine.execute(EnginePlan(prefills=(PrefillItem(RequestId(2), unit),)))
    assert not second.failures and "v_profile" in engine.voices()
    registry.put("v_broken", b"not a voice")
    third = engine.execute(EnginePlan(prefills=(
        PrefillItem(RequestId(3), SynthesisUnit("hello", "v_broken")),)))
    assert [f.code for f in third.failures] == ["unknown_voice"]


def test_voice_conditioning_from_reference_audio_round_trips(model: XttsModel) -> None:
    rng = np.random.default_rng(1)
    audio = (0.1 * rng.standard_normal(16000)).astype(np.float32)
    engine = make_engine(model)
    voice = engine.clone_voice(audio, 16000)
    assert voice.fits(TINY)
    assert np.linalg.norm(voice.speaker_embedding) == pytest.approx(1.0, abs=1e-5)
    again = VoiceConditioning.from_bytes(voice.to_bytes())
    np.testing.assert_array_equal(again.gpt_latents, voice.gpt_latents)
    engine.add_voice("cloned", again)
    assert "cloned" in engine.voices()


# --- checkpoints -----------------------------------------------------------------------------------


def write_checkpoint(directory: Path, state: dict, config: XttsConfig) -> None:
    model_args = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(config).items()}
    (directory / "config.json").write_text(json.dumps({"model": "xtts", "model_args": model_args}))
    torch.save({"model": state}, directory / "model.pth")


def test_a_coqui_layout_checkpoint_loads_into_the_model(tmp_path: Path) -> None:
    torch.manual_seed(5)
    source = XttsModel(TINY).eval()  # weight norm still a parametrisation, as coqui saves it
    state = {f"xtts.{k}": v for k, v in source.state_dict().items()}  # a trainer's prefix
    state["dvae.codebook"] = torch.zeros(3)  # training-only module, ignored
    state["gpt.gpt.h.0.attn.bias"] = torch.ones(1, 1, 4, 4)  # HF causal-mask buffer, ignored
    write_checkpoint(tmp_path, state, TINY)
    loaded = load_model(tmp_path)
    assert loaded.config == TINY
    for key in ("gpt.gpt.h.1.attn.c_attn.weight", "gpt.mel_head.weight",
                "gpt.conditioning_perceiver.layers.0.0.to_kv.weight",
                "hifigan_decoder.speaker_encoder.layer4.0.conv1.weight", "mel_stats"):
        torch.testing.assert_close(loaded.state_dict()[key], source.state_dict()[key])
    latents, g = torch.randn(1, 9, TINY.decoder_input_dim), torch.randn(1, TINY.d_vector_dim, 1)
    with torch.inference_mode():
        torch.testing.assert_close(loaded.hifigan_decoder(latents, g),
                                   source.hifigan_decoder(latents, g))


def test_legacy_weight_norm_keys_load(tmp_path: Path) -> None:
    source = XttsModel(TINY).eval()
    state = {}
    for key, value in source.state_dict().items():
        key = key.replace("parametrizations.weight.original0", "weight_g")
        state[key.replace("parametrizations.weight.original1", "weight_v")] = value
    write_checkpoint(tmp_path, state, TINY)
    loaded = load_model(tmp_path)
    latents, g = torch.randn(1, 5, TINY.decoder_input_dim), torch.randn(1, TINY.d_vector_dim, 1)
    with torch.inference_mode():
        torch.testing.assert_close(loaded.hifigan_decoder(latents, g),
                                   source.hifigan_decoder(latents, g))


def test_a_checkpoint_of_another_model_is_refused(tmp_path: Path) -> None:
    state = XttsModel(TINY).state_dict()
    del state["gpt.mel_head.weight"]
    write_checkpoint(tmp_path, state, TINY)
    with pytest.raises(CheckpointMismatch, match="gpt.mel_head.weight"):
        load_model(tmp_path)


def test_full_size_parameters_have_the_published_xtts_v2_shapes() -> None:
    with torch.device("meta"):
        full = XttsModel(XttsConfig.xtts_v2())
    shapes = {k: tuple(v.shape) for k, v in full.state_dict().items()}
    assert shapes["gpt.gpt.h.29.attn.c_attn.weight"] == (1024, 3072)
    assert shapes["gpt.gpt.h.29.mlp.c_proj.weight"] == (4096, 1024)
    assert shapes["gpt.text_embedding.weight"] == (6681, 1024)
    assert shapes["gpt.mel_embedding.weight"] == (1026, 1024)
    assert shapes["gpt.mel_pos_embedding.emb.weight"] == (608, 1024)
    assert shapes["gpt.text_pos_embedding.emb.weight"] == (404, 1024)
    assert shapes["gpt.conditioning_perceiver.latents"] == (32, 1024)
    assert shapes["gpt.conditioning_perceiver.layers.1.1.0.weight"] == (5460, 1024)
    assert shapes["gpt.conditioning_encoder.attn.5.qkv.weight"] == (3072, 1024, 1)
    assert shapes["hifigan_decoder.waveform_decoder.conv_pre.weight"] == (512, 1024, 7)
    assert shapes["hifigan_decoder.waveform_decoder.ups.0.parametrizations.weight.original1"] \
        == (512, 256, 16)
    assert shapes["hifigan_decoder.waveform_decoder.conds.3.weight"] == (32, 512, 1)
    assert shapes["hifigan_decoder.speaker_encoder.fc.weight"] == (512, 4096)
    assert shapes["hifigan_decoder.speaker_encoder.torch_spec.1.mel_scale.fb"] == (257, 64)
    gpt_stack = sum(v.numel() for k, v in full.state_dict().items() if k.startswith("gpt.gpt."))
    assert 370e6 < gpt_stack < 380e6  # 30 GPT-2 blocks of width 1024


# --- under the real scheduler ------------------------------------------------------------------------


def test_streams_under_the_scheduler_get_their_audio_in_order(model: XttsModel) -> None:
    from inference.scheduler import Scheduler, SchedulerConfig, StreamFinished, UnitAudio

    engine = make_engine(model, fixed_tokens=12)
    scheduler = Scheduler(engine, SchedulerConfig(max_batch=4, max_streams=4,
                                                  admission_utilization=None))
    scheduler.start()
    try:
        assert scheduler.ready.wait(60)
        done = threading.Event()
        events: dict[int, list] = {}
        finished: set[int] = set()

        def sink(event: object) -> None:
            if isinstance(event, UnitAudio):
                events.setdefault(event.stream_id, []).append(event)
            if isinstance(event, StreamFinished):
                finished.add(event.stream_id)
                if len(finished) == 3:
                    done.set()

        streams = []
        for i in range(3):
            sid = scheduler.open_stream(sink)
            assert isinstance(sid, int)
            streams.append(sid)
            for text in ("first clause,", "second one."):
                scheduler.submit(sid, SynthesisUnit(text, f"v{i % 2}"))
            scheduler.end_stream(sid)
        assert done.wait(120)
    finally:
        scheduler.stop()
    for sid in streams:
        units = [e.unit_index for e in events[sid]]
        assert units == sorted(units) and set(units) == {0, 1}
        assert sum(len(e.audio) for e in events[sid]) > 0


# --- GPU twin ------------------------------------------------------------------------------------------


@pytest.mark.gpu
def test_gpu_batched_decoding_with_cuda_graphs_equals_each_request_alone() -> None:
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    def on_gpu(**overrides: object) -> XttsEngine:  # the engine moves its model: use a fresh one
        return make_engine(load_model(config=TINY, seed=3), device="cuda", **overrides)

    together = run_interleaved(on_gpu(cuda_graphs=True), JOIN_AT)
    for rid in TEXTS:
        alone = run_interleaved(on_gpu(), {rid: 0})[rid]
        assert together[rid]["codes"] == alone["codes"]
        torch.testing.assert_close(together[rid]["latents"], alone["latents"],
                                   atol=1e-4, rtol=1e-3)
        np.testing.assert_allclose(np.concatenate(together[rid]["audio"]),
                                   np.concatenate(alone["audio"]), atol=1e-4)
