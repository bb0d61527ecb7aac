"""Run a dynamically quantised ONNX graph in PyTorch, its integer convolutions in float or int8.

Kokoro's stock model is an ONNX Runtime int8 export: every convolution quantises its input on the
fly (``DynamicQuantizeLinear``), convolves integers (``ConvInteger``) and rescales the result. On
a CPU with bfloat16 matrix units (Intel AMX) a bfloat16 convolution is several times faster than
ONNX Runtime's integer kernel, and the decoder spends most of its time in convolutions.

``TorchGraph`` walks the graph's nodes in order with PyTorch operators. Quantisation is carried
out as the identity: ``DynamicQuantizeLinear`` passes its input through with scale 1 and zero
point 0, so ``ConvInteger`` / ``MatMulInteger`` receive float activations, convolve them with the
integer weights minus their zero point, and the graph's own rescaling (input scale 1 x weight
scale) turns that into the dequantised convolution. What remains quantised is what the export
baked in: the weights' 8-bit values and the biases rounded to the weight scale. The activations
are no longer rounded to 8 bits per tensor, so the output differs from ONNX Runtime's as much as
that rounding is worth (the Kokoro decoder's tests and docs/benchmarks.md measure it).

With ``conv_dtype=torch.int8`` (for CPUs with VNNI, where float32 convolutions are the cost) the
fused convolutions are not run in float at all: ``inference.cpu_kernels.qconv`` quantises the
input per tensor as ``DynamicQuantizeLinear`` does and hands it, with the int8 weights, to
oneDNN's quantised convolution. On a graph quantised by ONNX Runtime that reproduces its
integer run.

Speed. At load time (``optimise``, the default) the quantisation steps and everything computed
from constants alone are folded away, and three chains the decoder repeats become one step each:
a convolution with its bias and rescaling, the Snake activation and adaptive instance
normalisation (``inference.graph_rewrites``): 1968 steps become 715. Convolutions run as 2-d
convolutions of height 1 in channels-last layout, which oneDNN runs without reordering its
operands, and element-wise operators keep that layout. On Kokoro's decoder this is about 2.2x
faster than the plain node-by-node run (docs/benchmarks.md). With ``torch.int8`` on a CPU with
VNNI or AMX a dilated convolution runs on its input's polyphase view with the kernel undilated
(``inference.cpu_kernels.pack_int8``), which oneDNN's int8 kernel there runs 1.4-2x faster.

Only the operators and attribute values the graphs we run use are implemented; ``TorchGraph``
refuses any other at load time (``ValueError``), never at run time. It is thread-safe: each run
keeps its values in its own dictionary.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnx
import torch
import torch.nn.functional as F
from onnx import helper, numpy_helper

from inference.cpu_kernels import Int8Conv, int8_convolutions, pack_int8, qconv
from inference.graph_rewrites import Operators, Step, affine_norm, fold, fuse, snake

_DTYPES = {1: torch.float32, 2: torch.uint8, 3: torch.int8, 6: torch.int32, 7: torch.int64,
           9: torch.bool, 11: torch.float64}
_Op = Callable[..., Any]
_UNARY: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "Sqrt": torch.sqrt, "Sin": torch.sin, "Cos": torch.cos, "Atan": torch.atan, "Exp": torch.exp,
    "Tanh": torch.tanh, "Floor": torch.floor}
_BINARY: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "Add": torch.add, "Sub": torch.sub, "Mul": torch.mul, "Greater": torch.gt, "Less": torch.lt,
    "Equal": torch.eq, "MatMul": torch.matmul}


def _make_plain_op(op_type: str) -> _Op:
    if op_type in _UNARY:
        unary = _UNARY[op_type]
        return lambda a, n, x: unary(x)
    binary = _BINARY[op_type]
    return lambda a, n, x, y: binary(x, y)


_PLAIN_OPS = {op_type: _make_plain_op(op_type) for op_type in [*_UNARY, *_BINARY]}

STFT_DC_RESIDUE = 4.5e-7
"""ONNX Runtime's STFT (1.x, CPU) gives the DC bin an imaginary part of about -4.5e-7 times its
real part where an exact DFT gives 0 (measured on 20-sample frames: 4.0-5.1e-7, of that sign in
every frame with a clear DC; 90-96 % where the DC is near 0). ``_op_STFT`` gives it the same, so
that the graph's phase, ``atan(im / re)`` shifted by pi by the sign of ``im`` where ``re`` is
negative, comes out pi as in ONNX Runtime and not -pi. Kokoro's decoder reads the harmonic
source's phases: with -pi its voices embedded only 0.81-0.92 alike against their ONNX Runtime
selves, with this 0.997-0.999 (docs/benchmarks.md, "The harmonic source in PyTorch")."""


def _plain_op(op_type: str) -> _Op | None:
    """An element-wise operator that needs no attributes, in the ``_op_*`` calling convention."""
    return _PLAIN_OPS.get(op_type)


def _reflect_channels_last(x: torch.Tensor, left: int, right: int) -> torch.Tensor:
    """``F.pad(x, (left, right), mode="reflect")`` of a (batch, channels, time) tensor in
    channels-last layout (``_conv``'s output), keeping that layout: ``F.pad`` would return a
    contiguous tensor, and element-wise operators that mix the two layouts run 2-3x slower."""
    length = x.shape[2]
    if not (0 <= left < length and 0 <= right < length):
        raise ValueError(f"reflect padding ({left}, {right}) needs more than {length} frames")
    index = torch.cat([torch.arange(left, 0, -1), torch.arange(length),
                       torch.arange(length - 2, length - 2 - right, -1)])
    return x.transpose(1, 2).index_select(1, index).transpose(1, 2)


class TorchGraph:
    """An ONNX graph evaluated node by node with PyTorch. ``conv_dtype`` is the precision of the
    integer convolutions: ``torch.bfloat16`` or ``torch.float32`` run them in float (their 8-bit
    weights are exact in either), ``torch.int8`` runs them in integers as the graph means them
    (``cpu_kernels.qconv``; needs ``optimise`` and ``int8_convolutions()``). Every other
    operator, float convolutions and integer matrix products included, runs in float32 or the
    graph's own integer types."""

    def __init__(self, path: Path | onnx.ModelProto, conv_dtype: torch.dtype = torch.float32,
                 optimise: bool = True) -> None:
        if conv_dtype == torch.int8 and not (optimise and int8_convolutions()):
            raise ValueError("int8 convolutions need optimise=True and PyTorch's oneDNN "
                             "quantised convolution (int8_convolutions())")
        model = path if isinstance(path, onnx.ModelProto) else onnx.load(str(path))
        graph = model.graph
        self.conv_dtype = conv_dtype
        self._float_conv_dtype = torch.float32 if conv_dtype == torch.int8 else conv_dtype
        """What the integer convolutions not run in int8 run in."""
        self._consts: dict[str, torch.Tensor] = {
            init.name: torch.from_numpy(numpy_helper.to_array(init).copy())
            for init in graph.initializer}
        self.inputs = [i.name for i in graph.input if i.name not in self._consts]
        self.outputs = [o.name for o in graph.output]
        atan_inputs = {n.input[0] for n in graph.node if n.op_type == "Atan"}
        self._steps: list[Step] = []
        for node in graph.node:
            if node.domain not in ("", "ai.onnx"):
                raise ValueError(f"{node.name}: operator domain {node.domain!r} is not supported")
            attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
            if node.op_type == "Constant":
                self._consts[node.output[0]] = torch.from_numpy(
                    numpy_helper.to_array(attrs["value"]).copy())
                continue
            op_type = node.op_type
            if op_type == "Div" and node.output[0] in atan_inputs:
                op_type = "DivForAtan"
            op = _plain_op(op_type) or getattr(self, f"_op_{op_type}", None)
            if op is None:
                raise ValueError(f"{node.name}: operator {node.op_type} is not supported")
            self._check(node.name, op_type, attrs)
            self._steps.append((op, list(node.input), list(node.output), attrs))
        if optimise:
            folded = fold(self._steps, self._consts, self.outputs,
                          self._op_DynamicQuantizeLinear)
            self._steps = fuse(folded, self._consts, self.outputs, Operators(
                conv_integer=self._op_ConvInteger, scaled_conv_integer=self._op_ScaledConvInteger,
                cast=self._op_Cast, reduce_mean=self._op_ReduceMean, div=self._op_Div,
                pow=self._op_Pow, mul=_PLAIN_OPS["Mul"], add=_PLAIN_OPS["Add"],
                sub=_PLAIN_OPS["Sub"], sin=_PLAIN_OPS["Sin"], sqrt=_PLAIN_OPS["Sqrt"]))
        self._last_use: dict[str, int] = {}
        for k, (_, names, _, _) in enumerate(self._steps):
            for name in names:
                self._last_use[name] = k
        self._weights: dict[str, torch.Tensor] = {}
        self._conv_weights: dict[tuple[str, torch.dtype], torch.Tensor] = {}
        self._packed: dict[str, Int8Conv] = {}
        for op, names, _, attrs in self._steps:  # built once: runs on several threads share them
            packed = (pack_int8(self._float_weight(names), attrs)
                      if op == self._op_ScaledConvInteger and conv_dtype == torch.int8 else None)
            if packed is not None:
                self._packed[names[1]] = packed
            elif op in (self._op_ConvInteger, self._op_ScaledConvInteger):
                self._conv_weight(names[1], self._float_weight(names), self._float_conv_dtype)
            elif op == self._op_MatMulInteger:
                self._float_weight(names)

    def operators(self) -> list[str]:
        """The operator of every step run, in order, fused ones by their own names (``Snake``,
        ``AffineNorm``, ``ScaledConvInteger``)."""
        named = {op: op_type for op_type, op in _PLAIN_OPS.items()}
        named.update({snake: "Snake", affine_norm: "AffineNorm"})
        return [named.get(op) or op.__name__.removeprefix("_op_") for op, _, _, _ in self._steps]

    def run(self, feeds: Mapping[str, npt.NDArray[Any]]) -> list[npt.NDArray[Any]]:
        """The graph's outputs for ``feeds`` (every input by name), as numpy arrays."""
        missing = set(self.inputs) - set(feeds)
        if missing:
            raise ValueError(f"missing graph inputs: {sorted(missing)}")
        values: dict[str, torch.Tensor] = dict(self._consts)
        for name, array in feeds.items():
            values[name] = torch.from_numpy(np.asarray(array))
        keep = set(self.outputs) | set(self._consts) | set(feeds)
        with torch.inference_mode():
            for k, (op, names, outs, attrs) in enumerate(self._steps):
                result = op(attrs, names, *(values[n] if n else None for n in names))
                if len(outs) == 1:
                    values[outs[0]] = result
                else:
                    for name, value in zip(outs, result, strict=True):
                        values[name] = value
                for name in names:  # free what no later node reads
                    if self._last_use.get(name) == k and name not in keep:
                        values.pop(name, None)
        return [values[name].numpy() for name in self.outputs]

    # -- checks made at load time ----------------------------------------------------------------

    @staticmethod
    def _check(name: str, op_type: str, attrs: Mapping[str, Any]) -> None:
        def refuse(why: str) -> None:
            raise ValueError(f"{name}: {op_type} with {why} is not supported")

        if op_type in ("ConvInteger", "Conv", "ConvTranspose"):
            pads = attrs.get("pads", [0, 0])
            if len(pads) != 2 or pads[0] != pads[1]:
                refuse(f"pads {pads} (only symmetric 1-d padding)")
            if attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
                refuse("auto_pad")
        if op_type == "Resize":
            mode, ctm = attrs.get("mode", b"nearest"), attrs.get("coordinate_transformation_mode")
            if (mode, ctm) not in ((b"nearest", b"asymmetric"), (b"linear", b"half_pixel")):
                refuse(f"mode {mode!r} and coordinates {ctm!r}")
            if mode == b"nearest" and attrs.get("nearest_mode", b"floor") != b"floor":
                refuse("nearest_mode other than floor")
        if op_type == "Cast" and attrs["to"] not in _DTYPES:
            refuse(f"target type {attrs['to']}")
        if op_type == "Pad" and attrs.get("mode", b"constant") not in (b"constant", b"reflect"):
            refuse(f"mode {attrs['mode']!r}")
        if op_type == "ScatterND" and attrs.get("reduction", b"none") != b"none":
            refuse("a reduction")
        if op_type == "STFT" and not attrs.get("onesided", 1):
            refuse("two-sided output")

    # -- quantisation, carried out as the identity ------------------------------------------------

    def _op_DynamicQuantizeLinear(self, a: Any, n: Any, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return x, torch.tensor(1.0), torch.tensor(0, dtype=torch.uint8)

    def _float_weight(self, names: Sequence[str]) -> torch.Tensor:
        """Integer weights minus their zero point (per tensor or per output channel), in float."""
        key = names[1]
        if key not in self._weights:
            weight = self._consts[key].float()
            zero = (self._consts[names[3]].float() if len(names) > 3 and names[3]
                    else torch.tensor(0.0))
            if zero.dim() and weight.dim() == 3:  # per output channel of a convolution
                zero = zero.reshape(-1, 1, 1)
            self._weights[key] = weight - zero
        return self._weights[key]

    def _op_ConvInteger(self, a: Any, names: Sequence[str], x: torch.Tensor,
                        *_: Any) -> torch.Tensor:
        return self._conv(a, x, self._conv_weight(names[1], self._float_weight(names),
                                                  self._float_conv_dtype), None)

    def _op_ScaledConvInteger(self, a: Any, names: Sequence[str], x: torch.Tensor,
                              *_: Any) -> torch.Tensor:
        """``graph_rewrites.fuse``'s convolution: conv(x, w) x scale + bias, in place (2x faster
        than the graph's three or four steps; the bias is added in float, as the graph does)."""
        packed = self._packed.get(names[1])
        if packed is not None:
            return qconv(x, packed)
        y = self._conv(a, x, self._conv_weight(names[1], self._float_weight(names),
                                               self._float_conv_dtype), None)
        return y.mul_(a["scale"]).add_(a["bias"])

    def _op_MatMulInteger(self, a: Any, names: Sequence[str], x: torch.Tensor,
                          *_: Any) -> torch.Tensor:
        return torch.matmul(x.float(), self._float_weight(names))

    def _conv_weight(self, key: str | None, weight: torch.Tensor,
                     dtype: torch.dtype) -> torch.Tensor:
        """``weight`` (out, in, k) as a (out, in, 1, k) channels-last tensor of ``dtype``, made
        once per constant ``key`` (a thread that races another makes the same tensor); a weight
        that is no constant (``key`` None) is converted on every call."""
        cached = self._conv_weights.get((key, dtype)) if key else None
        if cached is None:
            cached = weight.to(dtype).unsqueeze(2).contiguous(memory_format=torch.channels_last)
            if key:
                self._conv_weights[key, dtype] = cached
        return cached

    @staticmethod
    def _conv(a: Mapping[str, Any], x: torch.Tensor, w4: torch.Tensor,
              b: torch.Tensor | None) -> torch.Tensor:
        """A 1-d convolution run as a 2-d one of height 1 in channels-last layout: oneDNN then
        convolves without reordering its input and output (2-5x faster on the decoder's long
        windows). The result is float32 (batch, channels, time) with channels-last strides,
        which element-wise operators keep, so the next convolution's input needs no reorder."""
        x4 = x.unsqueeze(2).to(dtype=w4.dtype, memory_format=torch.channels_last)
        y = F.conv2d(x4, w4, None if b is None else b.to(w4.dtype),
                     stride=(1, a.get("strides", [1])[0]), padding=(0, a.get("pads", [0, 0])[0]),
                     dilation=(1, a.get("dilations", [1])[0]), groups=a.get("group", 1))
        return y.squeeze(2).float()

    def _op_Conv(self, a: Any, names: Sequence[str], x: torch.Tensor, w: torch.Tensor,
                 b: torch.Tensor | None = None) -> torch.Tensor:
        key = names[1] if names[1] in self._consts else None
        return self._conv(a, x.float(), self._conv_weight(key, w, torch.float32), b)

    def _op_ConvTranspose(self, a: Any, names: Sequence[str], x: torch.Tensor, w: torch.Tensor,
                          b: torch.Tensor | None = None) -> torch.Tensor:
        """In channels-last layout, like ``_conv`` (about 3x faster than ``conv_transpose1d``)."""
        key = names[1] if names[1] in self._consts else None
        w4 = self._conv_weight(key, w, torch.float32)
        x4 = x.float().unsqueeze(2).contiguous(memory_format=torch.channels_last)
        return F.conv_transpose2d(
            x4, w4, b, stride=(1, a.get("strides", [1])[0]), padding=(0, a.get("pads", [0, 0])[0]),
            output_padding=(0, a.get("output_padding", [0])[0]), groups=a.get("group", 1),
            dilation=(1, a.get("dilations", [1])[0])).squeeze(2)

    # -- element-wise ------------------------------------------------------------------------------

    def _op_Div(self, a: Any, n: Any, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if x.is_floating_point() or y.is_floating_point():
            return x / y
        return torch.div(x, y, rounding_mode="trunc")  # ONNX integer division truncates

    def _op_DivForAtan(self, a: Any, n: Any, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The ratio whose arctangent is a phase: 0/0 (a bin with no energy) is phase 0, as
        ``atan2`` has it, instead of NaN."""
        return torch.nan_to_num(x / y, nan=0.0)

    def _op_Pow(self, a: Any, n: Any, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if y.numel() == 1 and float(y) == 2.0:
            return x * x
        return torch.pow(x, y)

    def _op_LeakyRelu(self, a: Any, n: Any, x: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(x, a.get("alpha", 0.01))

    def _op_Where(self, a: Any, n: Any, c: torch.Tensor, x: torch.Tensor,
                  y: torch.Tensor) -> torch.Tensor:
        return torch.where(c, x, y)

    def _op_Cast(self, a: Any, n: Any, x: torch.Tensor) -> torch.Tensor:
        return x.to(_DTYPES[a["to"]])

    def _op_ReduceMean(self, a: Any, n: Any, x: torch.Tensor,
                       axes: torch.Tensor | None = None) -> torch.Tensor:
        keep = bool(a.get("keepdims", 1))
        if axes is None or axes.numel() == 0:
            return x.mean() if not keep else x.mean(dim=tuple(range(x.dim())), keepdim=True)
        return x.mean(dim=[int(v) for v in axes], keepdim=keep)

    # -- shapes and indexing -----------------------------------------------------------------------

    def _op_Shape(self, a: Any, n: Any, x: torch.Tensor) -> torch.Tensor:
        return torch.tensor(list(x.shape), dtype=torch.int64)[a.get("start", 0):a.get("end")]

    def _op_Reshape(self, a: Any, n: Any, x: torch.Tensor, shape: torch.Tensor) -> torch.Tensor:
        dims = [int(v) for v in shape]
        if not a.get("allowzero", 0):
            dims = [x.shape[i] if v == 0 else v for i, v in enumerate(dims)]
        return x.reshape(dims)

    def _op_Unsqueeze(self, a: Any, n: Any, x: torch.Tensor, axes: torch.Tensor) -> torch.Tensor:
        rank = x.dim() + axes.numel()
        for axis in sorted(int(v) % rank for v in axes):
            x = x.unsqueeze(axis)
        return x

    def _op_Squeeze(self, a: Any, n: Any, x: torch.Tensor,
                    axes: torch.Tensor | None = None) -> torch.Tensor:
        if axes is None:
            return x.squeeze()
        for axis in sorted((int(v) % x.dim() for v in axes), reverse=True):
            x = x.squeeze(axis)
        return x

    def _op_Transpose(self, a: Any, n: Any, x: torch.Tensor) -> torch.Tensor:
        return x.permute(a["perm"]) if "perm" in a else x.permute(*reversed(range(x.dim())))

    def _op_Concat(self, a: Any, n: Any, *xs: torch.Tensor) -> torch.Tensor:
        return torch.cat(xs, dim=a["axis"])

    def _op_Split(self, a: Any, n: Any, x: torch.Tensor,
                  split: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(torch.split(x, [int(v) for v in split], dim=a.get("axis", 0)))

    def _op_Gather(self, a: Any, n: Any, x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        axis = a.get("axis", 0) % x.dim()
        index = torch.where(index < 0, index + x.shape[axis], index)
        if index.dim() == 0:
            return x.select(axis, int(index))
        picked = torch.index_select(x, axis, index.reshape(-1))
        return picked.reshape(*x.shape[:axis], *index.shape, *x.shape[axis + 1:])

    def _op_Slice(self, a: Any, n: Any, x: torch.Tensor, starts: torch.Tensor,
                  ends: torch.Tensor, axes: torch.Tensor | None = None,
                  steps: torch.Tensor | None = None) -> torch.Tensor:
        axis_list = (list(range(len(starts))) if axes is None
                     else [int(v) % x.dim() for v in axes])
        step_list = [1] * len(starts) if steps is None else [int(v) for v in steps]
        index: list[slice] = [slice(None)] * x.dim()
        for start, end, axis, step in zip(starts.tolist(), ends.tolist(), axis_list, step_list,
                                          strict=True):
            if step != 1:
                raise ValueError("Slice with a step other than 1 is not supported")
            size = x.shape[axis]
            start = max(0, min(size, start + size if start < 0 else start))
            end = max(0, min(size, end + size if end < 0 else end))
            index[axis] = slice(start, end)
        return x[tuple(index)]

    def _op_Range(self, a: Any, n: Any, start: torch.Tensor, limit: torch.Tensor,
                  delta: torch.Tensor) -> torch.Tensor:
        return torch.arange(start.item(), limit.item(), delta.item(), dtype=start.dtype)

    def _op_NonZero(self, a: Any, n: Any, x: torch.Tensor) -> torch.Tensor:
        return torch.stack(torch.nonzero(x, as_tuple=True)).to(torch.int64)

    def _op_Expand(self, a: Any, n: Any, x: torch.Tensor, shape: torch.Tensor) -> torch.Tensor:
        target = [int(v) for v in shape]
        rank = max(x.dim(), len(target))
        dims = [1] * (rank - x.dim()) + list(x.shape)
        target = [1] * (rank - len(target)) + target
        return x.reshape(dims).expand([max(d, t) for d, t in zip(dims, target, strict=True)])

    def _op_ScatterND(self, a: Any, n: Any, data: torch.Tensor, index: torch.Tensor,
                      updates: torch.Tensor) -> torch.Tensor:
        out = data.clone()
        depth = index.shape[-1]
        rows = index.reshape(-1, depth)
        out[tuple(rows.t())] = updates.reshape(rows.shape[0], *data.shape[depth:])
        return out

    def _op_Pad(self, a: Any, n: Any, x: torch.Tensor, pads: torch.Tensor,
                value: torch.Tensor | None = None, axes: torch.Tensor | None = None,
                ) -> torch.Tensor:
        if axes is not None:
            raise ValueError("Pad with axes is not supported")
        amounts = [int(v) for v in pads]
        rank = x.dim()
        torch_pads: list[int] = []
        for axis in reversed(range(rank)):
            torch_pads += [amounts[axis], amounts[rank + axis]]
        while len(torch_pads) > 2 and torch_pads[-2:] == [0, 0]:
            torch_pads = torch_pads[:-2]  # reflect padding pads only the last axes
        if a.get("mode", b"constant") == b"reflect":
            if rank == 3 and len(torch_pads) == 2 and x.stride(1) == 1:
                return _reflect_channels_last(x, *torch_pads)
            return F.pad(x, torch_pads, mode="reflect")
        return F.pad(x, torch_pads, value=0.0 if value is None else float(value))

    def _op_Resize(self, a: Any, n: Any, x: torch.Tensor, roi: Any = None,
                   scales: torch.Tensor | None = None, sizes: torch.Tensor | None = None,
                   ) -> torch.Tensor:
        if scales is None or x.dim() != 3 or [float(v) for v in scales[:2]] != [1.0, 1.0]:
            raise ValueError("Resize is supported along the last axis of a 3-d tensor by scale")
        factor = float(scales[2])
        if a.get("mode", b"nearest") == b"nearest":
            return F.interpolate(x, scale_factor=factor, mode="nearest")
        return F.interpolate(x, scale_factor=factor, mode="linear", align_corners=False)

    def _op_STFT(self, a: Any, n: Any, signal: torch.Tensor, step: torch.Tensor,
                 window: torch.Tensor | None = None,
                 length: torch.Tensor | None = None) -> torch.Tensor:
        """[batch, samples(, 1)] -> [batch, frames, bins, 2] (real, imaginary), one-sided.

        The DC bin's imaginary part is ``-STFT_DC_RESIDUE`` times its real part, as ONNX
        Runtime's DFT leaves it, instead of an exact 0: its sign decides the bin's phase where
        the real part is negative (pi, not -pi, through the graph's arctangent steps), and
        Kokoro's decoder reads that phase (``STFT_DC_RESIDUE``)."""
        size = int(length) if length is not None else int(window.shape[0]) if window is not None \
            else 0
        samples = signal[..., 0] if signal.dim() == 3 else signal
        frames = samples.unfold(-1, size, int(step))
        if window is not None:
            frames = frames * window
        spectrum = torch.fft.rfft(frames, dim=-1)
        imaginary = spectrum.imag.clone()
        imaginary[..., 0] = -STFT_DC_RESIDUE * spectrum.real[..., 0]
        return torch.stack([spectrum.real, imaginary], dim=-1)
