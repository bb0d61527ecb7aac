"""CUDA graphs for the GPT decode step: one captured graph per (batch bucket, context bucket).

A decode step is ~15 small kernels per layer; at XTTS sizes launching them costs more than running
them. A graph replays the whole step in one launch. Batches are padded up to the next captured size
with rows that write only to the KV cache's dump position (of the scratch slot when rows are
gathered, of the next slots when rows are read in place); contexts are padded to the next bucket
(masked keys cost a little bandwidth, nothing else). Graphs are captured lazily on first use and
share one memory pool; outputs are copied out right after replay, before any other graph runs.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

StepFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, int, bool],
                  tuple[torch.Tensor, torch.Tensor]]
"""(codes, audio positions, slots, cache positions, context, contiguous) -> (latents, logits)."""


def batch_buckets(max_batch: int) -> list[int]:
    sizes = {1, 2, 4, 8} | set(range(16, max_batch + 16, 16))
    return sorted(s for s in sizes if s < max_batch) + [max_batch]


class DecodeGraphs:
    def __init__(self, step: StepFn, *, max_batch: int, scratch_slot: int, dump_position: int,
                 device: torch.device) -> None:
        self._step = step
        self._buckets = batch_buckets(max_batch)
        self._scratch = scratch_slot
        self._dump = dump_position
        self._device = device
        self._pool = torch.cuda.graph_pool_handle()
        self._graphs: dict[tuple[int, int, bool], tuple[torch.cuda.CUDAGraph, list[torch.Tensor],
                                                  tuple[torch.Tensor, torch.Tensor]]] = {}

    @property
    def captured(self) -> int:
        return len(self._graphs)

    def bucket(self, batch: int) -> int:
        for size in self._buckets:
            if size >= batch:
                return size
        raise ValueError(f"batch {batch} exceeds the largest graph ({self._buckets[-1]})")

    def run(self, codes: torch.Tensor, audio_pos: torch.Tensor, slots: torch.Tensor,
            positions: torch.Tensor, context: int, contiguous: bool
            ) -> tuple[torch.Tensor, torch.Tensor]:
        batch = codes.shape[0]
        key = (self.bucket(batch), context, contiguous)
        if key not in self._graphs:
            self._graphs[key] = self._capture(*key)
        graph, inputs, (latents, logits) = self._graphs[key]
        for static, value in zip(inputs, (codes, audio_pos, slots, positions)):
            static[:batch].copy_(value)
        self._pad(inputs, batch, contiguous)
        graph.replay()
        return latents[:batch].clone(), logits[:batch].clone()

    def _pad(self, inputs: list[torch.Tensor], batch: int, contiguous: bool) -> None:
        codes, audio_pos, slots, positions = inputs
        codes[batch:].fill_(0)
        audio_pos[batch:].fill_(0)
        positions[batch:].fill_(self._dump)
        if contiguous:
            slots[batch:].copy_(torch.arange(batch, slots.shape[0], device=self._device))
        else:
            slots[batch:].fill_(self._scratch)

    def _capture(self, batch: int, context: int, contiguous: bool) -> tuple[
            torch.cuda.CUDAGraph, list[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
        inputs = [torch.zeros(batch, dtype=torch.long, device=self._device) for _ in range(4)]
        self._pad(inputs, 0, contiguous)
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(2):  # warm up kernels and allocator outside capture
                self._step(*inputs, context, contiguous)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self._pool):
            outputs = self._step(*inputs, context, contiguous)
        return graph, inputs, outputs


class VocoderGraphs:
    """The HiFi-GAN generator over a [batch, channels, width] window batch, one graph per (batch
    bucket, width). Padding rows are zeros; their samples are discarded."""

    def __init__(self, decoder: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], *,
                 max_batch: int, device: torch.device) -> None:
        self._decoder = decoder
        sizes = (1, 2, 3, 4, 6, 8, 10, 12, 16, 20, 24, 32, 40, 48, 64, 96, 128, 192, 256)
        self.buckets = [b for b in sizes if b < max_batch] + [max_batch]
        self._device = device
        self._pool = torch.cuda.graph_pool_handle()
        self._graphs: dict[tuple[int, int], tuple[torch.cuda.CUDAGraph, torch.Tensor,
                                                  torch.Tensor, torch.Tensor]] = {}

    @property
    def captured(self) -> int:
        return len(self._graphs)

    def run(self, z: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        batch, width = z.shape[0], z.shape[2]
        size = next((b for b in self.buckets if b >= batch), None)
        if size is None:
            return self._decoder(z, g)
        key = (size, width)
        if key not in self._graphs:
            self._graphs[key] = self._capture(z, g, size)
        graph, static_z, static_g, out = self._graphs[key]
        static_z[:batch].copy_(z)
        static_z[batch:].zero_()
        static_g[:batch].copy_(g)
        graph.replay()
        return out[:batch].clone()

    def _capture(self, z: torch.Tensor, g: torch.Tensor, size: int) -> tuple[
            torch.cuda.CUDAGraph, torch.Tensor, torch.Tensor, torch.Tensor]:
        static_z = torch.zeros((size,) + tuple(z.shape[1:]), dtype=z.dtype, device=self._device)
        static_g = torch.zeros((size,) + tuple(g.shape[1:]), dtype=g.dtype, device=self._device)
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(2):
                self._decoder(static_z, static_g)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self._pool):
            out = self._decoder(static_z, static_g)
        return graph, static_z, static_g, out
