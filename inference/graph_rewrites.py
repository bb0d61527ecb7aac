"""Load-time rewrites of a ``TorchGraph``'s steps: quantisation as the identity, constant folding,
and the fusion of the element-wise chains Kokoro's decoder repeats.

A step is ``(operator, input names, output names, attributes)``, the operator in ``TorchGraph``'s
calling convention ``op(attributes, input names, *input tensors)``. ``fold`` drops the dynamic
quantisation steps (their scale and zero point become the constants 1 and 0, their output is
their input) and runs once every step whose inputs are all constants. ``fuse`` replaces three
chains by one step each: a convolution with its requantised bias and rescaling (run by the
graph's own ``scaled_conv_integer``, which owns the weights), the Snake activation (``snake``)
and instance normalisation with its affine map (``affine_norm``). On Kokoro's decoder 1968 steps
become 715, and each fused chain takes one or two passes over its tensor instead of 3-9.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import onnx
import torch
import torch.nn.functional as F

Op = Callable[..., Any]
Step = tuple[Op, list[str], list[str], dict[str, Any]]
"""An operator, its input names ("" for an omitted optional one), output names, attributes."""


@dataclass(frozen=True)
class Operators:
    """The graph's operators that ``fuse`` recognises in steps, and the convolution it emits."""

    conv_integer: Op
    scaled_conv_integer: Op
    cast: Op
    reduce_mean: Op
    div: Op
    pow: Op
    mul: Op
    add: Op
    sub: Op
    sin: Op
    sqrt: Op


def fold(steps: list[Step], consts: dict[str, torch.Tensor], graph_outputs: Sequence[str],
         quantize: Op) -> list[Step]:
    """Quantisation as the identity, then constant folding. ``DynamicQuantizeLinear``'s
    scale and zero point are constants (1 and 0) and its output is its input, so the step
    goes and its readers read the input; then every step whose inputs are all constants
    (the biases requantised to each weight's scale, the scales themselves) runs once here."""
    alias: dict[str, str] = {}
    kept: list[Step] = []
    outputs = set(graph_outputs)
    with torch.inference_mode():
        for op, names, outs, attrs in steps:
            names = [alias.get(name, name) for name in names]
            if op == quantize and not outputs & set(outs):
                alias[outs[0]] = names[0]
                consts[outs[1]], consts[outs[2]] = op(attrs, names, None)[1:]
                continue
            if all(not name or name in consts for name in names):
                result = op(attrs, names, *(consts[n] if n else None for n in names))
                for name, value in zip(outs, result if len(outs) > 1 else [result],
                                       strict=True):
                    consts[name] = value
                continue
            kept.append((op, names, outs, attrs))
    for name in outputs & set(alias):
        raise ValueError(f"graph output {name} is a quantised tensor")
    return kept


class _Chains:
    """What ``fuse``'s matchers read: the steps, who reads each value, constants."""

    def __init__(self, steps: list[Step], outputs: set[str],
                 consts: Mapping[str, torch.Tensor]) -> None:
        self.steps, self.outputs, self.consts = steps, outputs, consts
        self.readers: dict[str, list[int]] = {}
        for k, (_, names, _, _) in enumerate(steps):
            for name in dict.fromkeys(names):
                self.readers.setdefault(name, []).append(k)

    def output(self, k: int) -> str:
        return self.steps[k][2][0]

    def sole_reader(self, name: str, op: Op) -> int | None:
        """The one step that reads ``name``, if it is ``op`` and ``name`` is no graph output."""
        found = self.readers.get(name, [])
        if len(found) != 1 or name in self.outputs or self.steps[found[0]][0] != op:
            return None
        return found[0]

    def follow(self, k: int, op: Op) -> tuple[int, str] | None:
        """The one step that reads step ``k``'s output, if it is the two-input ``op``, with its
        other input."""
        found = self.sole_reader(self.output(k), op)
        other = None if found is None else self.other(self.steps[found][1], self.output(k))
        return None if found is None or other is None else (found, other)

    @staticmethod
    def other(names: Sequence[str], name: str) -> str | None:
        """The input of a two-input step that is not ``name``."""
        rest = [n for n in names if n != name]
        return rest[0] if len(rest) == 1 else None

    def is_scalar(self, name: str, value: float | None = None) -> bool:
        """Whether ``name`` is a one-value constant (equal to ``value`` if given)."""
        const = self.consts.get(name)
        return const is not None and const.numel() == 1 and (
            value is None or float(const) == value)


def fuse(steps: list[Step], consts: Mapping[str, torch.Tensor], outputs: Sequence[str],
         ops: Operators) -> list[Step]:
    """Replace the chains the decoder repeats by one step each: a convolution with its
    requantised bias and rescaling, the Snake activation, adaptive instance normalisation.
    Each runs in one or two passes over its tensor instead of 3-9, which on the decoder's
    long windows is most of what element-wise operators cost. A chain is replaced only when
    nothing outside it reads its intermediate values."""
    chains = _Chains(steps, set(outputs), consts)
    matchers = {ops.conv_integer: _match_conv, ops.mul: _match_snake,
                ops.reduce_mean: _match_norm}
    replaced: dict[int, Step] = {}
    dropped: set[int] = set()
    for k, (op, _, _, _) in enumerate(steps):
        matcher = matchers.get(op)
        found = None if k in dropped or matcher is None else matcher(chains, k, ops)
        if found is not None:
            indices, step = found
            dropped.update(indices)
            replaced[indices[-1]] = step
    return [replaced.get(k, step) for k, step in enumerate(steps)
            if k not in dropped or k in replaced]

def _match_conv(c: _Chains, k: int, ops: Operators) -> tuple[list[int], Step] | None:
    """ConvInteger -> [Add(requantised bias)] -> Cast(float) -> Mul(scale) -> [Add(bias)]:
    Kokoro's export adds the bias before rescaling, ``quantize_dynamic`` after."""
    _, names, _, attrs = c.steps[k]
    channels = c.consts[names[1]].shape[0]
    add = ops.add

    def next_step(op: Op) -> tuple[int | None, torch.Tensor | None]:
        """The chain's next step if it is ``op``, and its other input as (1, channels, 1)
        if that is a constant of one value or one per output channel."""
        value = c.output(chain[-1])
        found = c.sole_reader(value, op)
        name = None if found is None else c.other(c.steps[found][1], value)
        const = None if name is None else c.consts.get(name)
        if const is None or const.numel() not in (1, channels):
            return found, None
        return found, const.float().reshape(-1).expand(channels).reshape(1, -1, 1)

    chain = [k]
    bias = torch.zeros(1, channels, 1)
    found, const = next_step(add)
    if found is not None and const is not None:
        chain.append(found)
        bias = const
    found, _ = next_step(ops.cast)
    if found is None or c.steps[found][3]["to"] != onnx.TensorProto.FLOAT:
        return None
    chain.append(found)
    found, scale = next_step(ops.mul)
    if found is None or scale is None:
        return None
    chain.append(found)
    bias = bias * scale
    found, const = next_step(add)
    if found is not None and const is not None:
        chain.append(found)
        bias = bias + const
    fused = dict(attrs, scale=scale.contiguous(), bias=bias.contiguous())
    return chain, (ops.scaled_conv_integer, names, c.steps[chain[-1]][2], fused)

def _match_snake(c: _Chains, k: int, ops: Operators) -> tuple[list[int], Step] | None:
    """Snake, x + sin(alpha x)^2 / alpha: Mul(alpha, x) -> Sin -> Pow(2) -> Mul(1/alpha) ->
    Add(x)."""
    names = c.steps[k][1]
    alpha = next((n for n in names if n in c.consts), None)
    x = None if alpha is None else c.other(names, alpha)
    if alpha is None or x is None or x in c.consts:
        return None
    sin = c.sole_reader(c.output(k), ops.sin)
    if sin is None:
        return None
    square = c.sole_reader(c.output(sin), ops.pow)
    if square is None or not c.is_scalar(c.steps[square][1][1], 2.0):
        return None
    over_alpha = c.follow(square, ops.mul)
    plus_x = None if over_alpha is None else c.follow(over_alpha[0], ops.add)
    if over_alpha is None or plus_x is None or plus_x[1] != x:
        return None
    return ([k, sin, square, over_alpha[0], plus_x[0]],
            (snake, [x, alpha, over_alpha[1]], c.steps[plus_x[0]][2], {}))

def _match_norm(c: _Chains, k: int, ops: Operators) -> tuple[list[int], Step] | None:
    """Instance normalisation with an affine map: ReduceMean(x) -> Sub(x, mean) -> Mul(d, d)
    -> ReduceMean -> Add(eps) -> Sqrt -> Div(d, sd) -> Mul(gain) -> Add(shift)."""
    _, names, _, attrs = c.steps[k]
    axes = names[1] if len(names) > 1 else ""
    if axes:
        dims = [int(v) for v in c.consts[axes]] if axes in c.consts else []
    else:
        dims = list(attrs.get("axes", []))
    if not dims or not attrs.get("keepdims", 1):
        return None
    x, mean = names[0], c.output(k)
    sub = c.sole_reader(mean, ops.sub)
    if sub is None or c.steps[sub][1] != [x, mean]:
        return None
    centred = c.output(sub)
    users = c.readers.get(centred, [])
    square = next((u for u in users if c.steps[u][0] == ops.mul
                   and c.steps[u][1] == [centred, centred]), None)
    div = next((u for u in users if c.steps[u][0] == ops.div), None)
    if square is None or div is None or len(users) != 2 or centred in c.outputs:
        return None
    var = c.sole_reader(c.output(square), ops.reduce_mean)
    if var is None or c.steps[var][1][1:] != names[1:] or c.steps[var][3] != attrs:
        return None
    found = c.follow(var, ops.add)
    if found is None or not c.is_scalar(found[1]):
        return None
    plus, eps = found
    root = c.sole_reader(c.output(plus), ops.sqrt)
    if root is None or c.sole_reader(c.output(root), ops.div) != div:
        return None
    if c.steps[div][1] != [centred, c.output(root)]:
        return None
    scaled = c.follow(div, ops.mul)
    shifted = None if scaled is None else c.follow(scaled[0], ops.add)
    if scaled is None or shifted is None:
        return None
    (times, gain), (plus_shift, shift) = scaled, shifted
    fused = {"dims": dims, "eps": float(c.consts[eps])}
    return ([k, sub, square, var, plus, root, div, times, plus_shift],
            (affine_norm, [x, gain, shift], c.steps[plus_shift][2], fused))


def snake(a: Any, n: Any, x: torch.Tensor, alpha: torch.Tensor,
              inverse: torch.Tensor) -> torch.Tensor:
    """x + sin(alpha x)^2 / alpha, in place on one temporary."""
    y = torch.mul(x, alpha)
    y.sin_()
    y.square_()
    y.mul_(inverse)
    return y.add_(x)

def affine_norm(a: Any, n: Any, x: torch.Tensor, gain: torch.Tensor,
                   shift: torch.Tensor) -> torch.Tensor:
    """gain (x - mean) / sqrt(var + eps) + shift over ``dims``. One utterance's float32
    (1, channels, time) tensor over its time axis, which is every one Kokoro's decoder has, is
    PyTorch's batch normalisation of a batch of one: its kernel takes the statistics in one pass
    and the map in another, 4-5x faster than the element-wise steps below on a 96-frame window's
    tensors (the decoder's window 6-10 % faster). Anything else takes the element-wise steps,
    the map in one pass. (``torch.var_mean`` over the time axis of a channels-last tensor runs
    4x slower than these.)"""
    channels = x.shape[1] if x.dim() == 3 else 0
    if (channels and x.shape[0] == 1 and list(a["dims"]) in ([2], [-1])
            and x.dtype == gain.dtype == shift.dtype == torch.float32
            and gain.numel() == shift.numel() == channels):
        # (1, C, 1, T): channels-last strides stay channels-last, which the kernel runs fastest
        return F.batch_norm(x.unsqueeze(2), None, None, gain.reshape(-1), shift.reshape(-1),
                            training=True, eps=a["eps"]).squeeze(2)
    mean = x.mean(dim=a["dims"], keepdim=True)
    centred = x - mean
    var = (centred * centred).mean(dim=a["dims"], keepdim=True)
    scale = gain * torch.rsqrt(var + a["eps"])
    return torch.addcmul(shift - mean * scale, x, scale)
