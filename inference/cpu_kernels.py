"""What this CPU runs fast, for the PyTorch decoder to choose by: its vector and matrix units
(AVX-512, AMX-BF16), and oneDNN's 8-bit integer convolution, which ``TorchGraph`` runs its
fused integer convolutions with when ``conv_dtype`` is ``torch.int8``.

``qconv`` quantises the input per tensor as ONNX's ``DynamicQuantizeLinear`` does and hands it,
with the int8 weights ``pack_int8`` packed once, to oneDNN's quantised convolution; on a graph
quantised by ONNX Runtime that reproduces its integer run. Where oneDNN has VNNI or AMX, a
dilated convolution runs on its input's polyphase view with the kernel undilated, which its int8
kernel runs 1.4-2x faster (docs/benchmarks.md, "Faster int8 windows"; ``polyphase_dilated``). A
CPU without VNNI adds pairs of 8-bit products in 16 bits, which large weights can overflow
(``int8_weight_bits``); there weights that would are centred per output channel, and what that
took out is added back exactly.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Mapping
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F

# ``qconv`` quantises with ``quantize_per_tensor``, whose quint8 result PyTorch deprecates (it
# warns on first use); it is one pass where rounding by hand takes four. Should a PyTorch drop
# it, ``int8_convolutions()`` says False and ``auto`` keeps to float convolutions.
warnings.filterwarnings("ignore", message=r"torch\.quantize_per_tensor, ", category=UserWarning)


def wide_vector_units() -> bool:
    """Whether PyTorch's CPU kernels run AVX-512 here, where a float32 convolution beats ONNX
    Runtime's integer one even without AMX (docs/benchmarks.md, "A CPU without AMX")."""
    return torch.backends.cpu.get_cpu_capability() == "AVX512"


def _cpu_flags() -> set[str]:
    """The CPU's feature flags (Linux ``/proc/cpuinfo``; empty elsewhere)."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[-1].split())
    except OSError:
        pass
    return set()


def bf16_matrix_units() -> bool:
    """Whether this CPU multiplies bfloat16 matrices in hardware (Intel AMX-BF16), where a
    bfloat16 convolution beats ONNX Runtime's integer one."""
    return "amx_bf16" in _cpu_flags()


class Int8Conv(NamedTuple):
    """A fused convolution's weights packed for oneDNN, with its per-channel rescaling and bias,
    and the 2-d stride, padding and dilation it runs with. ``phases`` > 1: a dilated convolution
    run on its input's polyphase view (``_polyphase``), with ``phases`` the dilation."""

    packed: torch.Tensor
    scale: torch.Tensor
    bias: torch.Tensor
    zeros: torch.Tensor
    stride: list[int]
    padding: list[int]
    dilation: list[int]
    groups: int
    phases: int
    centred: tuple[torch.Tensor, torch.Tensor] | None
    """The output channels whose weights were shifted to fit 7 bits (``pack_int8``), and (1, n,
    1) each one's rescaling times the integer it was shifted by; or None. That times the
    convolution of the input's sum over channels with a kernel of ones is added back to those
    channels (``_add_centre``)."""
    kernel: int


def pack_int8(weight: torch.Tensor, a: Mapping[str, Any]) -> Int8Conv | None:
    """A fused convolution's integer weights minus their zero point, packed for oneDNN once;
    None if this CPU cannot sum them exactly (``int8_weight_bits``: 8 bits with VNNI or AMX; 7
    without, where weights beyond [-64, 64] that overflow a 16-bit sum of two products are
    centred first (``_saturates``); Kokoro's unsigned 7-bit weights minus their zero point all
    run, uncentred), and that convolution runs in float32.

    A 1-d convolution runs as a 2-d one of height 1, except, where ``polyphase_dilated``, a
    dilated one of stride 1 padded to keep its length (odd kernel, padding dilation x (kernel -
    1) / 2). Such a convolution with dilation d convolves each of the input's d phases (every
    d-th sample) on its own with the kernel undilated, and ``_polyphase`` lays the phases out as
    the columns of a 2-d input with no copy."""
    bits = int8_weight_bits()
    low, high = _weight_range(bits)
    if low <= weight.min() and weight.max() <= high:
        return _pack(weight, a)
    if bits == 8 or a.get("group", 1) != 1:
        return None
    # 7 bits: pairs of products are added in 16 bits, which only a pair of large weights of one
    # sign overflows. Weights that fit int8 are tried as packed on the input that makes every
    # pair largest (all of Kokoro's pass); otherwise the output channels with weights outside
    # [-64, 64] are centred on 0. An unsigned 7-bit weight minus its zero point spans at most
    # 128 values, so centred it fits.
    if -128 <= weight.min() and weight.max() <= 127 and not _saturates(weight, a):
        return _pack(weight, a)
    lowest, highest = weight.amin(dim=(1, 2)), weight.amax(dim=(1, 2))
    outside = ((lowest < low) | (highest > high)).nonzero().reshape(-1)
    shift = torch.zeros(weight.shape[0])
    shift[outside] = torch.round((lowest[outside] + highest[outside]) / 2)
    centred = weight - shift.reshape(-1, 1, 1)
    if centred.min() < low or centred.max() > high:
        return None
    return _pack(centred, a, (outside, shift[outside]))


def _saturates(weight: torch.Tensor, a: Mapping[str, Any]) -> bool:
    """Whether oneDNN's 16-bit sums of pairs of products overflow anywhere on ``weight``,
    packed as ``pack_int8`` packs it (the pairs are fixed by the packed layout). Every input at
    the largest uint8 (255) makes each pair as large as it gets, whichever products the kernel
    pairs; a pair that overflows loses at least 128 (255 x 129 - 32,767) of the integer sum."""
    channels_in, kernel = weight.shape[1], weight.shape[2]
    step, pad = a.get("strides", [1])[0], a.get("pads", [0, 0])[0]
    dilation = a.get("dilations", [1])[0]
    unit = {**a, "scale": torch.ones(1), "bias": torch.zeros(1)}
    x = torch.ones(1, channels_in, 2 * (dilation * (kernel - 1) + pad + step))  # all to 255
    want = F.conv1d(x.double(), weight.double(), stride=step, padding=pad, dilation=dilation)
    got = qconv(x, _pack(weight, unit)).double()  # the integer sums x 255 / 255
    return bool((got - want).abs().max() > 0.25)


def _pack(weight: torch.Tensor, a: Mapping[str, Any],
          shifted: tuple[torch.Tensor, torch.Tensor] | None = None) -> Int8Conv:
    """``pack_int8`` without the check that the weights fit; ``shifted``: the output channels
    whose weights were shifted, and by how much."""
    channels, _, kernel = weight.shape
    step, pad = a.get("strides", [1])[0], a.get("pads", [0, 0])[0]
    dilation = a.get("dilations", [1])[0]
    phases = dilation if (dilation > 1 and step == 1 and kernel % 2 == 1
                          and pad == dilation * (kernel - 1) // 2 and polyphase_dilated()) else 1
    w8 = weight.round().to(torch.int8)
    if phases > 1:
        w4 = w8.unsqueeze(3)  # (out, in, kernel, 1): the kernel runs down each phase's column
        stride, padding, dilation2 = [1, 1], [(kernel - 1) // 2, 0], [1, 1]
    else:
        w4 = w8.unsqueeze(2)
        stride, padding, dilation2 = [1, step], [0, pad], [1, dilation]
    w4 = w4.contiguous(memory_format=torch.channels_last)
    groups = a.get("group", 1)
    scale = a["scale"].reshape(-1).expand(channels).contiguous().float()
    packed = torch.ops.onednn.qconv_prepack(w4, scale, 1.0, 0, stride, padding, dilation2,
                                            groups, None)
    return Int8Conv(packed, scale, a["bias"].reshape(-1).expand(channels).contiguous().float(),
                     torch.zeros(channels, dtype=torch.int64), stride, padding, dilation2,
                     groups, phases,
                     None if shifted is None
                     else (shifted[0], (shifted[1] * scale[shifted[0]]).reshape(1, -1, 1)),
                     kernel)


def _uint8_alias(q: torch.Tensor) -> torch.Tensor:
    """A quint8 tensor's bytes as a plain uint8 tensor on the same memory. ``int_repr()`` gives
    the same values but copies them, and that copy took longer than the quantising itself (5 %
    of a decoder window against 3 %, docs/benchmarks.md). The alias holds the storage alive."""
    return torch.empty(0, dtype=torch.uint8).set_(q.untyped_storage(), q.storage_offset(),
                                                  q.size(), q.stride())


def _polyphase(xq: torch.Tensor, phases: int, fill: int) -> torch.Tensor:
    """A channels-last (batch, channels, 1, time) tensor as (batch, channels, time / phases,
    phases): column p holds samples p, p + phases, ... In channels-last memory that is the same
    bytes, so it is a view; the time is first padded with ``fill`` (the quantised zero) to a
    multiple of ``phases``, which the convolution's own zero padding would have read there."""
    batch, channels, _, length = xq.shape
    padded_length = -(-length // phases) * phases
    if padded_length != length:
        padded = torch.empty((batch, channels, 1, padded_length), dtype=xq.dtype,
                             memory_format=torch.channels_last)
        padded[..., :length] = xq
        padded[..., length:] = fill
        xq = padded
    return xq.as_strided((batch, channels, padded_length // phases, phases),
                         (padded_length * channels, 1, phases * channels, channels))


def qconv(x: torch.Tensor, w: Int8Conv) -> torch.Tensor:
    """conv(x, w) x scale + bias with 8-bit integers, as the ONNX graph means it: the input
    quantised per tensor like ``DynamicQuantizeLinear`` (uint8, a range that includes 0, round
    half to even), convolved with the int8 weights by oneDNN (VNNI, AMX-INT8 or AVX2), the sum
    rescaled to float32 with the bias added in the same kernel, and any centred channels'
    shift added back. Returns (batch, channels, time) with channels-last strides, like
    ``TorchGraph._conv``."""
    x4 = x.float().unsqueeze(2).contiguous(memory_format=torch.channels_last)
    lo, hi = torch.aminmax(x4.permute(0, 2, 3, 1).reshape(-1))  # a view: one pass in memory order
    lo_f, hi_f = min(float(lo), 0.0), max(float(hi), 0.0)
    scale = (hi_f - lo_f) / 255.0 or 1.0  # an all-zero input: any scale gives zeros
    zero = min(255, max(0, round(-lo_f / scale)))
    xq = _uint8_alias(torch.quantize_per_tensor(x4, scale, zero, torch.quint8))  # one pass
    length = xq.shape[3]
    source = _polyphase(xq, w.phases, zero) if w.phases > 1 else xq
    y: torch.Tensor = torch.ops.onednn.qconv2d_pointwise(
        source, scale, zero, w.packed, w.scale, w.zeros, w.bias, w.stride, w.padding, w.dilation,
        w.groups, 1.0, 0, torch.float32, "none", [], "")
    if w.phases == 1:
        y = y.squeeze(2)
    else:
        batch, channels, rows, phases = y.shape  # channels-last: phases interleave back in place
        y = y.contiguous(memory_format=torch.channels_last)
        y = y.as_strided((batch, channels, rows * phases),
                         (rows * phases * channels, 1, channels))[:, :, :length]
    if w.centred is not None:
        _add_centre(y, xq, scale, zero, w, *w.centred)
    return y


def _add_centre(y: torch.Tensor, xq: torch.Tensor, scale: float, zero: int, w: Int8Conv,
                centred: torch.Tensor, centre: torch.Tensor) -> None:
    """Adds back to ``y`` what centring ``w``'s weights took out (``w.centred``, here
    ``centred`` and ``centre``): conv(x, shift) for a shift constant over an output channel is
    the shift times the convolution of x summed over its channels with a kernel of ones. The
    channel sums are of the quantised input, so the result is the integer convolution's exactly
    (up to float rounding). ``xq``: (batch, channels, 1, time) uint8, channels-last."""
    channels = xq.shape[1]
    sums = (xq.sum(dim=1, dtype=torch.int32) - channels * zero).float()  # (batch, 1, time)
    dilation = w.dilation[1] if w.phases == 1 else w.phases
    stride = w.stride[1]
    padding = w.padding[1] if w.phases == 1 else dilation * (w.kernel - 1) // 2
    box = F.conv1d(sums, torch.ones(1, 1, w.kernel), stride=stride, padding=padding,
                   dilation=dilation)  # integers below 2^24: exact in float32
    y.index_add_(1, centred, centre * box, alpha=scale)


def on_grid(channels: int, length: int, seed: int = 0) -> torch.Tensor:
    """A (1, channels, length) input that lies on its own 8-bit quantisation grid: steps of 1/51
    from -2 to 3, both ends present. An int8 convolution of it equals a float convolution of the
    same values to float rounding, which is how its results are checked."""
    generator = torch.Generator().manual_seed(seed)
    steps = torch.randint(-102, 154, (channels * length,), generator=generator)
    steps[:2] = torch.tensor([-102, 153])
    return (steps.float() / 51).reshape(1, channels, length)


def _weight_range(bits: int) -> tuple[int, int]:
    """The int8 weights a convolution may hold when ``bits`` of them are summed exactly: all of
    int8 for 8; for 7, magnitudes up to 64, whose uint8 x int8 pairs (2 x 255 x 64 = 32,640)
    still fit the 16-bit sums of CPUs without VNNI."""
    return (-128, 127) if bits == 8 else (-64, 64)


def _exact(packed: Int8Conv | None, weight: torch.Tensor, x: torch.Tensor,
           a: Mapping[str, Any]) -> bool:
    """Whether ``qconv`` with ``weight`` as ``packed`` gives the float convolution of ``x`` (on
    its own quantisation grid) rescaled as ``a`` says, stride 1."""
    dilation = a.get("dilations", [1])[0]
    want = (F.conv1d(x, weight, padding=a["pads"][0], dilation=dilation)
            * a["scale"].reshape(1, -1, 1) + a["bias"].reshape(1, -1, 1))
    return packed is not None and torch.allclose(qconv(x, packed), want, rtol=1e-4, atol=1e-4)


@functools.cache
def int8_weight_bits() -> int:
    """How many bits of int8 weight oneDNN's int8 convolution sums exactly on this CPU: 8 where
    it has VNNI or AMX (products added straight into 32-bit sums), 7 where it has not (plain AVX2
    or AVX-512 add pairs of uint8 x int8 products into 16 bits with ``vpmaddubsw``, which
    saturates: on an AVX2 EPYC, weights of 100 and inputs near 255 came out 35 % wrong). Found
    by running the worst case, not from the CPU's flags; 7 if the run fails."""
    channels = 16
    a = {"pads": [1, 1], "scale": torch.ones(2), "bias": torch.zeros(2)}
    weight = torch.full((2, channels, 3), 127.0)
    weight[1] = -128.0
    x = torch.full((1, channels, 8), 1.0)  # the largest value: all of it quantises to 255
    x[0, 0, 0] = 0.0
    try:
        return 8 if _exact(_pack(weight, a), weight, x, a) else 7
    except (RuntimeError, AttributeError, TypeError):
        return 7


@functools.cache
def polyphase_dilated() -> bool:
    """Whether a dilated int8 convolution runs on its input's polyphase view (``_polyphase``):
    where oneDNN sums 8-bit weights exactly (``int8_weight_bits``: VNNI or AMX), whose kernels
    (``brg_conv_fwd``) ran a dilated convolution 1.4-2x slower than the undilated one of the same
    arithmetic on a 2-core Xeon with AVX-512 VNNI, and the view ran it 1.1-2x faster. Plain
    AVX2's kernel (``jit_uni_int8:avx2``) runs it dilated as fast as undilated, and the view's
    short rows 5-20 % slower (2-core AVX2 EPYC; docs/benchmarks.md, "Dilated convolutions on
    AVX2"), so there it runs dilated."""
    return int8_weight_bits() == 8


@functools.cache
def int8_convolutions() -> bool:
    """Whether this PyTorch runs oneDNN's quantised convolution (``TorchGraph`` with
    ``torch.int8``) and it gives what a float convolution of the same integers gives: for a
    plain convolution, a dilated one (on its polyphase view where ``polyphase_dilated``) and
    the largest weights ``pack_int8`` lets through on this CPU against the largest inputs. The
    inputs lie on their own quantisation grid (``on_grid``), so the two agree exactly."""
    weight = torch.arange(-12.0, 12.0).reshape(2, 3, 4)
    scale, bias = torch.tensor([0.5, 0.25]), torch.tensor([1.0, -1.0])
    bits = int8_weight_bits()
    low, high = _weight_range(bits)
    extreme = torch.full((2, 16, 3), float(high))
    extreme[:, 1::2] = float(low)
    largest = torch.ones(1, 16, 8)
    largest[0, 0, 0] = 0.0
    cases = [(weight, on_grid(3, 10), {"pads": [1, 1]}),
             (weight[:, :, :3], on_grid(3, 10), {"pads": [3, 3], "dilations": [3]}),
             (extreme, largest, {"pads": [1, 1]})]
    if bits == 7:  # off centre, as unsigned 7-bit weights minus their zero point lie, and
        offset = extreme - 22.0  # with pairs that overflow 16 bits whichever products pair up
        offset[0] = -86.0
        cases += [(offset, largest, {"pads": [1, 1]}),
                  (offset + 44.0, on_grid(16, 10), {"pads": [3, 3], "dilations": [3]})]
    try:
        for kernel, x, shape in cases:
            a = {**shape, "scale": scale, "bias": bias}
            if not _exact(pack_int8(kernel, a), kernel, x, a):
                return False
    except (RuntimeError, AttributeError, TypeError):
        return False
    return True
