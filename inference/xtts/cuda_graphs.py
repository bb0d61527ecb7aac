"""CUDA graphs for the GPT decode step: one captured graph per (batch bucket, context bucket).

A decode step is ~15 small kernels per layer; at XTTS sizes launching them costs more than running
them. A graph replays the whole step in one launch. Batches are padded up to the next captured size
with rows that write only to the KV cache's scratch slot; contexts are padded to the next bucket
(masked keys cost a little bandwidth, nothing else). Graphs are captured lazily on first use and
share one memory pool; outputs are copied out right after replay, before any other graph runs.
"""

from __future__ import annotations

from typing import Callable

import torch

StepFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, int],
                  tuple[torch.Tensor, torch.Tensor]]
"""(codes, audio positions, slots, cache positions, context) -> (latents, logits), all [B, ...]."""


def batch_buckets(max_batch: int) -> list[int]:
    sizes = {1, 2, 4, 8} | set(range(16, max_batch + 16, 16))
    return sorted(s for s in sizes if s < max_batch) + [max_batch]


class DecodeGraphs:
    def __init__(self, step: StepFn, *, max_batch: int, scratch_slot: int,
                 device: torch.device) -> None:
        self._step = step
        self._buckets = batch_buckets(max_batch)
        self._scratch = scratch_slot
        self._device = device
        self._pool = torch.cuda.graph_pool_handle()
        self._graphs: dict[tuple[int, int], tuple[torch.cuda.CUDAGraph, list[torch.Tensor],
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
            positions: torch.Tensor, context: int) -> tuple[torch.Tensor, torch.Tensor]:
        batch = codes.shape[0]
        key = (self.bucket(batch), context)
        if key not in self._graphs:
            self._graphs[key] = self._capture(*key)
        graph, inputs, (latents, logits) = self._graphs[key]
        for static, value, fill in zip(inputs, (codes, audio_pos, slots, positions),
                                       (0, 0, self._scratch, 0)):
            static[:batch].copy_(value)
            static[batch:].fill_(fill)
        graph.replay()
        return latents[:batch].clone(), logits[:batch].clone()

    def _capture(self, batch: int, context: int) -> tuple[
            torch.cuda.CUDAGraph, list[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
        def filled(value: int) -> torch.Tensor:
            return torch.full((batch,), value, dtype=torch.long, device=self._device)

        inputs = [filled(0), filled(0), filled(self._scratch), filled(0)]
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(2):  # warm up kernels and allocator outside capture
                self._step(*inputs, context)  # type: ignore[call-arg]
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self._pool):
            outputs = self._step(*inputs, context)  # type: ignore[call-arg]
        return graph, inputs, outputs
