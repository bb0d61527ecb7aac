"""Static, preallocated key/value cache: one row ("slot") per live request.

All rows have room for the longest XTTS sequence, so admitting a request never allocates: it takes a
free slot, and releasing it gives the slot back. One extra scratch row at index ``slots`` absorbs the
writes of padding rows when a decode batch is padded to a captured CUDA-graph size, and every row
has one spare last position (``dump_position``) that padding rows write to and no request reads.
"""

from __future__ import annotations

import torch


class KvCache:
    def __init__(
        self,
        *,
        layers: int,
        slots: int,
        heads: int,
        max_len: int,
        head_dim: int,
        device: torch.device,
        dtype: torch.dtype,
    ) -> None:
        shape = (layers, slots + 1, heads, max_len + 1, head_dim)
        self.k = torch.zeros(shape, device=device, dtype=dtype)
        self.v = torch.zeros(shape, device=device, dtype=dtype)
        self.slots = slots
        self.max_len = max_len
        self._free = list(range(slots - 1, -1, -1))

    @property
    def dump_position(self) -> int:
        return self.max_len

    @property
    def scratch_slot(self) -> int:
        return self.slots

    @property
    def free_slots(self) -> int:
        return len(self._free)

    @property
    def bytes(self) -> int:
        return 2 * self.k.numel() * self.k.element_size()

    def allocate(self) -> int | None:
        """A free slot, or None when every slot is taken (capacity is a return value)."""
        return self._free.pop() if self._free else None

    def release(self, slot: int) -> None:
        if slot in self._free or not 0 <= slot < self.slots:
            raise ValueError(f"slot {slot} is not allocated")
        self._free.append(slot)
