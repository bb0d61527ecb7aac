"""TorchGraph against ONNX Runtime on small graphs: every operator Kokoro's decoder uses, and the
dynamic quantisation pattern run in float."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F
from onnx import TensorProto, helper, numpy_helper
from onnxruntime.quantization import QuantType, quantize_dynamic

from inference.cpu_kernels import int8_convolutions, int8_weight_bits, on_grid, pack_int8, qconv
from inference.graph_rewrites import affine_norm
from inference.torch_graph import TorchGraph

RNG = np.random.default_rng(7)


def _model(nodes: list[onnx.NodeProto], inputs: dict[str, list[int]], outputs: list[str],
           initializers: dict[str, np.ndarray] | None = None,
           input_types: dict[str, int] | None = None) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes, "g",
        [helper.make_tensor_value_info(name, (input_types or {}).get(name, TensorProto.FLOAT),
                                       shape) for name, shape in inputs.items()],
        [helper.make_value_info(name, onnx.TypeProto()) for name in outputs],
        [numpy_helper.from_array(v, k) for k, v in (initializers or {}).items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    return model


def _both(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> tuple[list, list]:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, feeds), TorchGraph(model).run(feeds)


def _const(name: str, value: np.ndarray) -> onnx.NodeProto:
    return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(value))


def test_elementwise_and_shape_operators_match_onnx_runtime() -> None:
    i64 = np.int64
    nodes = [
        _const("two", np.array(2.0, np.float32)),
        _const("axes", np.array([2], i64)),
        _const("split", np.array([3, 5], i64)),
        _const("shape", np.array([0, -1], i64)),
        _const("starts", np.array([1], i64)),
        _const("ends", np.array([-1], i64)),
        _const("sl_axes", np.array([2], i64)),
        _const("gidx", np.array(1, i64)),
        _const("pads", np.array([0, 0, 2, 0, 0, 2], i64)),
        _const("exp_shape", np.array([2, 4, 8], i64)),
        helper.make_node("Mul", ["x", "x"], ["sq"]),
        helper.make_node("Pow", ["x", "two"], ["pw"]),
        helper.make_node("Add", ["sq", "pw"], ["a"]),
        helper.make_node("Sub", ["a", "y"], ["b"]),
        helper.make_node("Sin", ["b"], ["s"]),
        helper.make_node("Cos", ["b"], ["c"]),
        helper.make_node("Div", ["s", "two"], ["d"]),
        helper.make_node("Tanh", ["d"], ["t"]),
        helper.make_node("Exp", ["t"], ["e"]),
        helper.make_node("Sqrt", ["e"], ["r"]),
        helper.make_node("Atan", ["c"], ["at"]),
        helper.make_node("Floor", ["at"], ["fl"]),
        helper.make_node("LeakyRelu", ["b"], ["lr"], alpha=0.2),
        helper.make_node("Greater", ["x", "y"], ["gt"]),
        helper.make_node("Less", ["x", "y"], ["lt"]),
        helper.make_node("Where", ["gt", "r", "lr"], ["w"]),
        helper.make_node("ReduceMean", ["w", "axes"], ["mean"], keepdims=1),
        helper.make_node("Split", ["w", "split"], ["p", "q"], axis=2),
        helper.make_node("Concat", ["q", "p"], ["cat"], axis=2),
        helper.make_node("Reshape", ["cat", "shape"], ["flat"]),
        helper.make_node("Transpose", ["w"], ["tr"], perm=[0, 2, 1]),
        helper.make_node("Slice", ["w", "starts", "ends", "sl_axes"], ["sliced"]),
        helper.make_node("Gather", ["w", "gidx"], ["gathered"], axis=1),
        helper.make_node("Unsqueeze", ["gathered", "axes"], ["unsq"]),
        helper.make_node("Squeeze", ["unsq", "axes"], ["sqz"]),
        helper.make_node("Shape", ["w"], ["shp"]),
        helper.make_node("Cast", ["shp"], ["shp_i32"], to=TensorProto.INT32),
        helper.make_node("Pad", ["w", "pads"], ["padded"], mode="reflect"),
        helper.make_node("Expand", ["mean", "exp_shape"], ["expanded"]),
        helper.make_node("MatMul", ["tr", "m"], ["mm"]),
    ]
    outputs = ["a", "w", "mean", "flat", "sliced", "sqz", "shp_i32", "padded", "expanded", "mm",
               "at", "fl", "lt"]
    model = _model(nodes, {"x": [2, 4, 8], "y": [2, 4, 8]}, outputs,
                   {"m": RNG.normal(size=(4, 3)).astype(np.float32)})
    feeds = {"x": RNG.normal(size=(2, 4, 8)).astype(np.float32),
             "y": RNG.normal(size=(2, 4, 8)).astype(np.float32)}
    expected, got = _both(model, feeds)
    for name, want, have in zip(outputs, expected, got, strict=True):
        assert have.shape == want.shape, name
        assert have.dtype == want.dtype, name
        np.testing.assert_allclose(have, want, rtol=1e-5, atol=1e-5, err_msg=name)


def test_convolutions_resize_and_stft_match_onnx_runtime() -> None:
    nodes = [
        _const("scales", np.array([1.0, 1.0, 3.0], np.float32)),
        _const("step", np.array(5, np.int64)),
        _const("window", np.hanning(20).astype(np.float32)),
        _const("length", np.array(20, np.int64)),
        _const("sig_shape", np.array([1, -1, 1], np.int64)),
        helper.make_node("Conv", ["x", "w", "b"], ["conv"], pads=[3, 3], dilations=[2],
                         kernel_shape=[4]),
        helper.make_node("ConvTranspose", ["conv", "wt"], ["up"], strides=[3], pads=[1, 1],
                         kernel_shape=[5], output_padding=[1]),
        helper.make_node("Resize", ["conv", "", "scales"], ["near"], mode="nearest",
                         coordinate_transformation_mode="asymmetric", nearest_mode="floor"),
        helper.make_node("Resize", ["conv", "", "scales"], ["lin"], mode="linear",
                         coordinate_transformation_mode="half_pixel"),
        helper.make_node("Reshape", ["sig", "sig_shape"], ["sig3"]),
        helper.make_node("STFT", ["sig3", "step", "window", "length"], ["spec"], onesided=1),
    ]
    model = _model(nodes, {"x": [1, 3, 16], "sig": [1, 200]},
                   ["conv", "up", "near", "lin", "spec"],
                   {"w": RNG.normal(size=(4, 3, 4)).astype(np.float32),
                    "b": RNG.normal(size=4).astype(np.float32),
                    "wt": RNG.normal(size=(4, 2, 5)).astype(np.float32)})
    feeds = {"x": RNG.normal(size=(1, 3, 16)).astype(np.float32),
             "sig": RNG.normal(size=(1, 200)).astype(np.float32)}
    expected, got = _both(model, feeds)
    for want, have in zip(expected, got, strict=True):
        assert have.shape == want.shape
        np.testing.assert_allclose(have, want, rtol=1e-4, atol=1e-4)


def test_stft_phase_of_the_dc_bin_is_onnx_runtimes() -> None:
    """Kokoro's harmonic source takes each bin's phase as atan(im / re), shifted by pi by the
    sign of im where re is negative. An exact DFT leaves the DC bin's im at 0, which makes a
    negative DC's phase -pi; ONNX Runtime's leaves a residue of the other sign to re, which makes
    it pi. TorchGraph gives it ONNX Runtime's phase, on either sign of DC."""
    i64 = np.int64
    nodes = [
        _const("step", np.array(5, i64)),
        _const("window", np.hanning(21)[:-1].astype(np.float32)),
        _const("length", np.array(20, i64)),
        _const("real", np.array(0, i64)),
        _const("imag", np.array(1, i64)),
        _const("zero", np.array(0.0, np.float32)),
        _const("pi", np.array(np.pi, np.float32)),
        helper.make_node("STFT", ["sig", "step", "window", "length"], ["spec"], onesided=1),
        helper.make_node("Gather", ["spec", "real"], ["re"], axis=3),
        helper.make_node("Gather", ["spec", "imag"], ["im"], axis=3),
        helper.make_node("Div", ["im", "re"], ["ratio"]),
        helper.make_node("Atan", ["ratio"], ["atan"]),
        helper.make_node("Add", ["atan", "pi"], ["up"]),
        helper.make_node("Sub", ["atan", "pi"], ["down"]),
        helper.make_node("Greater", ["im", "zero"], ["positive"]),
        helper.make_node("Less", ["re", "zero"], ["negative"]),
        helper.make_node("Where", ["positive", "up", "down"], ["shifted"]),
        helper.make_node("Where", ["negative", "shifted", "atan"], ["phase"]),
    ]
    model = _model(nodes, {"sig": [1, 400, 1]}, ["phase"])
    for offset in (-3.0, 3.0):
        feeds = {"sig": (RNG.normal(size=(1, 400, 1)) * 0.5 + offset).astype(np.float32)}
        (expected,), (got,) = _both(model, feeds)
        want = np.pi if offset < 0 else 0.0
        np.testing.assert_allclose(expected[0, :, 0], want, atol=1e-4)
        np.testing.assert_allclose(got[0, :, 0], expected[0, :, 0], atol=1e-4)


def test_index_operators_match_onnx_runtime() -> None:
    """Range, NonZero, Equal, ScatterND: the integer bookkeeping of Kokoro's inverse STFT."""
    i64 = np.int64
    nodes = [
        _const("zero", np.array(0, i64)),
        _const("one", np.array(1, i64)),
        _const("limit", np.array(6, i64)),
        _const("half", np.array(0.0, np.float32)),
        helper.make_node("Range", ["zero", "limit", "one"], ["rng"]),
        helper.make_node("Greater", ["x", "half"], ["pos"]),
        helper.make_node("NonZero", ["pos"], ["nz"]),
        helper.make_node("Equal", ["rng", "one"], ["eq"]),
        helper.make_node("ScatterND", ["x", "idx", "upd"], ["scattered"]),
        helper.make_node("Div", ["rng", "two_i"], ["int_div"]),
    ]
    model = _model(nodes, {"x": [4, 3]}, ["rng", "nz", "eq", "scattered", "int_div"],
                   {"idx": np.array([[1], [3]], i64),
                    "upd": RNG.normal(size=(2, 3)).astype(np.float32),
                    "two_i": np.array(4, i64)})
    feeds = {"x": RNG.normal(size=(4, 3)).astype(np.float32)}
    expected, got = _both(model, feeds)
    for want, have in zip(expected, got, strict=True):
        np.testing.assert_array_equal(have, want)


def _conv_model(tmp_path: Path, weight_type: QuantType,
                reduce_range: bool = False) -> tuple[onnx.ModelProto, onnx.ModelProto]:
    """Two convolutions around a LeakyRelu, as a float model and as quantised by ONNX Runtime's
    own ``quantize_dynamic`` with ``weight_type`` weights, in 7 bits with ``reduce_range`` (the
    pattern Kokoro's export uses: unsigned 7-bit weights)."""
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["h"], pads=[2, 2], kernel_shape=[5]),
             helper.make_node("LeakyRelu", ["h"], ["a"], alpha=0.1),
             helper.make_node("Conv", ["a", "w2", "b2"], ["y"], pads=[1, 1], kernel_shape=[3])]
    float_model = _model(nodes, {"x": [1, 16, 64]}, ["y"], {
        "w1": RNG.normal(scale=0.2, size=(32, 16, 5)).astype(np.float32),
        "b1": RNG.normal(size=32).astype(np.float32),
        "w2": RNG.normal(scale=0.2, size=(8, 32, 3)).astype(np.float32),
        "b2": RNG.normal(size=8).astype(np.float32)})
    onnx.save(float_model, tmp_path / "float.onnx")
    quantize_dynamic(tmp_path / "float.onnx", tmp_path / "int8.onnx", weight_type=weight_type,
                     reduce_range=reduce_range)
    return float_model, onnx.load(str(tmp_path / "int8.onnx"))


def test_dynamically_quantised_convolutions_run_as_float(tmp_path: Path) -> None:
    """A float model quantised by ONNX Runtime's own ``quantize_dynamic`` (the pattern Kokoro's
    export uses): TorchGraph's float run of the quantised graph is the float model with 8-bit
    weights, nearer the float model than ONNX Runtime's integer run of it."""
    float_model, quantised = _conv_model(tmp_path, QuantType.QUInt8)
    assert {"ConvInteger", "DynamicQuantizeLinear"} <= {n.op_type for n in quantised.graph.node}
    feeds = {"x": RNG.normal(size=(1, 16, 64)).astype(np.float32)}
    reference = ort.InferenceSession(float_model.SerializeToString(),
                                     providers=["CPUExecutionProvider"]).run(None, feeds)[0]
    integer = ort.InferenceSession(quantised.SerializeToString(),
                                   providers=["CPUExecutionProvider"]).run(None, feeds)[0]

    def error(y: np.ndarray) -> float:
        return float(np.sqrt(np.mean((y - reference) ** 2) / np.mean(reference ** 2)))

    assert TorchGraph(quantised).operators() == ["ScaledConvInteger", "LeakyRelu",
                                                 "ScaledConvInteger"]
    np.testing.assert_allclose(TorchGraph(quantised).run(feeds)[0],
                               TorchGraph(quantised, optimise=False).run(feeds)[0],
                               rtol=1e-5, atol=1e-5)
    for dtype in (torch.float32, torch.bfloat16):
        ours = TorchGraph(quantised, dtype).run(feeds)[0]
        assert ours.shape == reference.shape
        assert error(ours) < 0.03, dtype  # 8-bit weights only
        assert error(ours) < error(integer), dtype  # activations are no longer rounded
        print(f"{dtype}: {error(ours):.4f} vs ONNX Runtime int8 {error(integer):.4f}")


@pytest.mark.skipif(not int8_convolutions(), reason="this PyTorch has no oneDNN int8 convolution")
@pytest.mark.parametrize("weight_type, reduce_range, bits", [
    (QuantType.QInt8, False, 8), (QuantType.QUInt8, False, 8), (QuantType.QInt8, True, 7),
    (QuantType.QUInt8, True, 7), (QuantType.QInt8, False, None), (QuantType.QUInt8, True, None)])
def test_dynamically_quantised_convolutions_run_in_int8(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, weight_type: QuantType,
        reduce_range: bool, bits: int | None) -> None:
    """``torch.int8`` runs the integer convolutions as the graph means them, activations rounded
    to 8 bits per tensor: its output is ONNX Runtime's integer run to within a rounding step,
    far nearer it than the float run is. Weights that do not fit what the CPU sums exactly
    fall back to float32 convolutions, with the same result as ``torch.float32``: unsigned
    8-bit weights minus their zero point, and 8-bit weights whose products overflow where
    only 7 bits are summed exactly (``int8_weight_bits``; None: this CPU's own). Unsigned
    7-bit weights minus their zero point (Kokoro's) run in int8 either way."""
    if bits is not None and bits > int8_weight_bits():
        pytest.skip("this CPU's int8 convolution saturates 8-bit weights")
    if bits is not None:
        monkeypatch.setattr("inference.cpu_kernels.int8_weight_bits", lambda: bits)
    bits = int8_weight_bits()
    _, quantised = _conv_model(tmp_path, weight_type, reduce_range)
    feeds = {"x": RNG.normal(size=(1, 16, 64)).astype(np.float32)}
    integer = ort.InferenceSession(quantised.SerializeToString(),
                                   providers=["CPUExecutionProvider"]).run(None, feeds)[0]

    def error(y: np.ndarray) -> float:
        return float(np.sqrt(np.mean((y - integer) ** 2) / np.mean(integer ** 2)))

    graph = TorchGraph(quantised, torch.int8)
    ours, in_float = graph.run(feeds)[0], TorchGraph(quantised).run(feeds)[0]
    print(f"{weight_type}: int8 {error(ours):.5f}, float {error(in_float):.5f} from ONNX Runtime's")
    if reduce_range or (weight_type == QuantType.QInt8 and bits == 8):
        assert len(graph._packed) == 2
        assert error(ours) < 0.002 and error(ours) < error(in_float) / 5
    else:
        assert len(graph._packed) < 2  # some weights outside what the CPU sums exactly
        assert error(ours) <= error(in_float) + 1e-6
    with pytest.raises(ValueError, match="need optimise=True"):
        TorchGraph(quantised, torch.int8, optimise=False)


@pytest.mark.skipif(not int8_convolutions(), reason="this PyTorch has no oneDNN int8 convolution")
def test_int8_weights_beyond_7_bits_run_as_they_are_where_no_pair_overflows() -> None:
    """A lone large weight among small ones (Kokoro's: 82 of its 23,490 output channels have a
    weight beyond [-64, 64]) never overflows a 16-bit sum of two products, whichever two are
    paired (255 x (120 + 7) < 32,768): it runs uncentred on any CPU, exactly."""
    weight = torch.randint(-7, 8, (4, 8, 3), generator=torch.Generator().manual_seed(2)).float()
    weight[0, 5, 1] = 100.0
    weight[2, 3, 0] = -120.0
    a = {"pads": [1, 1], "scale": torch.full((4,), 0.01), "bias": torch.zeros(4)}
    packed = pack_int8(weight, a)
    assert packed is not None and packed.centred is None
    x = on_grid(8, 32)
    x[0, :, 10:14] = 3.0
    want = F.conv1d(x, weight, padding=1) * 0.01
    torch.testing.assert_close(qconv(x, packed), want, rtol=1e-5, atol=1e-4)


def _snake_and_norm(extra_outputs: list[str]) -> onnx.ModelProto:
    """A convolution (so the chains see channels-last tensors), reflect padding, instance
    normalisation with a gain and shift, then Snake: the chains ``TorchGraph`` fuses."""
    i64, f32 = np.int64, np.float32
    nodes = [
        _const("axes", np.array([2], i64)),
        _const("eps", np.array(1e-5, f32)),
        _const("two", np.array(2.0, f32)),
        _const("pads", np.array([0, 0, 3, 0, 0, 2], i64)),
        helper.make_node("Conv", ["x", "w"], ["h"], pads=[1, 1], kernel_shape=[3]),
        helper.make_node("Pad", ["h", "pads"], ["hp"], mode="reflect"),
        helper.make_node("ReduceMean", ["hp", "axes"], ["mean"], keepdims=1),
        helper.make_node("Sub", ["hp", "mean"], ["centred"]),
        helper.make_node("Mul", ["centred", "centred"], ["square"]),
        helper.make_node("ReduceMean", ["square", "axes"], ["var"], keepdims=1),
        helper.make_node("Add", ["var", "eps"], ["var_eps"]),
        helper.make_node("Sqrt", ["var_eps"], ["sd"]),
        helper.make_node("Div", ["centred", "sd"], ["normal"]),
        helper.make_node("Mul", ["gain", "normal"], ["scaled"]),
        helper.make_node("Add", ["scaled", "shift"], ["norm"]),
        helper.make_node("Mul", ["alpha", "norm"], ["ax"]),
        helper.make_node("Sin", ["ax"], ["sin"]),
        helper.make_node("Pow", ["sin", "two"], ["sin2"]),
        helper.make_node("Mul", ["inverse", "sin2"], ["bump"]),
        helper.make_node("Add", ["norm", "bump"], ["y"]),
    ]
    alpha = RNG.uniform(0.5, 2.0, size=(1, 8, 1)).astype(f32)
    return _model(nodes, {"x": [1, 4, 40], "gain": [1, 8, 1], "shift": [1, 8, 1]},
                  ["y", *extra_outputs],
                  {"w": RNG.normal(size=(8, 4, 3)).astype(f32), "alpha": alpha,
                   "inverse": (1.0 / alpha).astype(f32)})


@pytest.mark.parametrize("extra_outputs", [[], ["sin"], ["centred", "sd"]])
def test_fused_chains_match_onnx_runtime(extra_outputs: list[str]) -> None:
    """Snake and the normalisation become one step each, unless a value inside a chain is read
    outside it (here: a graph output), and either way the results are ONNX Runtime's."""
    model = _snake_and_norm(extra_outputs)
    feeds = {"x": RNG.normal(size=(1, 4, 40)).astype(np.float32),
             "gain": RNG.uniform(0.5, 1.5, size=(1, 8, 1)).astype(np.float32),
             "shift": RNG.normal(size=(1, 8, 1)).astype(np.float32)}
    expected, got = _both(model, feeds)
    for want, have in zip(expected, got, strict=True):
        assert have.shape == want.shape
        np.testing.assert_allclose(have, want, rtol=1e-4, atol=1e-4)
    operators = TorchGraph(model).operators()
    assert ("Snake" in operators) == ("sin" not in extra_outputs)
    assert ("AffineNorm" in operators) == ("centred" not in extra_outputs)
    assert len(TorchGraph(model, optimise=False).operators()) == 16


@pytest.mark.parametrize("batch, dims", [(1, [2]), (2, [2]), (1, [1, 2])])
def test_affine_norm_is_the_normalisation_on_both_of_its_paths(
        batch: int, dims: list[int], monkeypatch: pytest.MonkeyPatch) -> None:
    """One utterance over its time axis runs as PyTorch's batch normalisation; a batch of two
    (whose statistics must stay apart) or other axes take the element-wise steps. Either way
    the result is the normalisation, on a channels-last tensor as the decoder has them."""
    calls: list[int] = []
    batch_norm = torch.nn.functional.batch_norm

    def spy(*args: Any, **kwargs: Any) -> torch.Tensor:
        calls.append(1)
        return batch_norm(*args, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "batch_norm", spy)
    x = torch.from_numpy(RNG.normal(2.0, 3.0, size=(batch, 6, 50)).astype(np.float32))
    x = x.unsqueeze(2).contiguous(memory_format=torch.channels_last).squeeze(2)
    gain = torch.from_numpy(RNG.uniform(0.5, 1.5, size=(batch, 6, 1)).astype(np.float32))
    shift = torch.from_numpy(RNG.normal(size=(batch, 6, 1)).astype(np.float32))
    want_x = x.double()
    mean = want_x.mean(dim=dims, keepdim=True)
    var = ((want_x - mean) ** 2).mean(dim=dims, keepdim=True)
    want = gain.double() * (want_x - mean) / torch.sqrt(var + 1e-5) + shift.double()
    got = affine_norm({"dims": dims, "eps": 1e-5}, None, x, gain, shift)
    assert len(calls) == (batch == 1 and dims == [2])
    assert got.shape == x.shape
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-4, atol=1e-4)


def test_unsupported_graphs_are_refused_at_load_time() -> None:
    elu = _model([helper.make_node("Elu", ["x"], ["y"])], {"x": [2]}, ["y"])
    with pytest.raises(ValueError, match="Elu is not supported"):
        TorchGraph(elu)
    edge = _model([helper.make_node("Pad", ["x", "p"], ["y"], mode="edge")], {"x": [4]}, ["y"],
                  {"p": np.array([1, 1], np.int64)})
    with pytest.raises(ValueError, match="Pad with mode"):
        TorchGraph(edge)
    graph = TorchGraph(_model([helper.make_node("Sin", ["x"], ["y"])], {"x": [2]}, ["y"]))
    with pytest.raises(ValueError, match="missing graph inputs"):
        graph.run({})


@pytest.mark.skipif(not int8_convolutions(), reason="this PyTorch has no oneDNN int8 convolution")
@pytest.mark.parametrize("kernel, dilation, stride, length, phases", [
    (3, 3, 1, 64, 3), (3, 3, 1, 65, 3), (7, 5, 1, 67, 5), (11, 3, 1, 97, 3), (5, 2, 1, 40, 2),
    (3, 1, 1, 64, 1), (4, 3, 1, 64, 1), (3, 3, 2, 64, 1)])
@pytest.mark.parametrize("centre", [False, True])
@pytest.mark.parametrize("polyphase", [True, False])
def test_int8_convolutions_match_float_ones_dilated_or_not(
        monkeypatch: pytest.MonkeyPatch, kernel: int, dilation: int, stride: int, length: int,
        phases: int, centre: bool, polyphase: bool) -> None:
    """An int8 convolution of an input on its own quantisation grid equals the float
    convolution of it, dilated or not. Where ``polyphase_dilated`` says so, a dilated one of
    stride 1 that keeps its length (odd kernel) runs on the input's polyphase view, a time not
    a multiple of the dilation padded; any other runs as it is. The weights span 128 values off
    centre, as unsigned 7-bit weights minus their zero point do, and one channel's pairs of
    products overflow 16 bits: where only 7 bits are summed exactly the channels outside
    [-64, 64] are centred and what that took out is added back (``centre``: as if on such a
    CPU, whatever this one has)."""
    monkeypatch.setattr("inference.cpu_kernels.polyphase_dilated", lambda: polyphase)
    if not polyphase:
        phases = 1
    if centre:
        monkeypatch.setattr("inference.cpu_kernels.int8_weight_bits", lambda: 7)
        monkeypatch.setattr("inference.cpu_kernels._saturates", lambda weight, a: True)
    pad = dilation * (kernel - 1) // 2
    weight = torch.randint(-80, 48, (6, 4, kernel), generator=torch.Generator().manual_seed(1))
    weight[0] = weight[0].clamp(-64, 47)  # a channel that fits 7 bits as it is
    weight[1] = -80  # 255 x 160 overflows 16 bits whichever two products are paired
    a = {"pads": [pad, pad], "dilations": [dilation], "strides": [stride],
         "scale": torch.linspace(0.01, 0.02, 6), "bias": torch.linspace(-1.0, 1.0, 6)}
    packed = pack_int8(weight.float(), a)
    assert packed is not None and packed.phases == phases
    if centre or int8_weight_bits() == 7:
        assert packed.centred is not None
        channels = packed.centred[0].tolist()
        assert 1 in channels and 0 not in channels
    else:
        assert packed.centred is None
    x = on_grid(4, length, seed=length)
    x[0, :, length // 2] = 3.0  # inputs that quantise to 255 beside each other
    want = (F.conv1d(x, weight.float(), stride=stride, padding=pad, dilation=dilation)
            * a["scale"].reshape(1, -1, 1) + a["bias"].reshape(1, -1, 1))
    got = qconv(x, packed)
    assert got.shape == want.shape
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-4)
    # channels-last strides, as every convolution's result has, whatever the layout it ran in
    assert got.stride()[1] == 1 and got.stride()[2] == 6
