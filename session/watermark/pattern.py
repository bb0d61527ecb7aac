"""The watermark's secret pattern: signed spectral chips at fixed physical frequencies.

The mark is a fine, time-invariant ripple of the log-magnitude spectrum: the band from
``BAND_LOW_HZ`` to ``BAND_HIGH_HZ`` is cut into chips ``CHIP_HZ`` wide, and each chip is raised or
lowered by a small half-sine bump. Because the pattern is defined in hertz, not in samples or
frames, it is the same at every sample rate and at every time offset: detection needs no
synchronisation, survives resampling and cropping, and the embedder is an ordinary causal filter
(``session.watermark.embed``).

Chips are of two kinds. *Pilot* chips (the telephone band, 1-3.5 kHz) carry signs drawn once from
the key: every stream has them, every transform keeps them, and detection tests for them. *Payload*
chips (every ``PAYLOAD_EVERY``-th chip above the telephone band: all of them) carry signs drawn from
the key and the stream's 32-bit id, so a clip can be matched to the stream that made it
(``session.watermark.payload``). See docs/watermark.md.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cache

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]

BAND_LOW_HZ = 1000.0
BAND_HIGH_HZ = 7000.0
CHIP_HZ = 31.25
TELEPHONE_HIGH_HZ = 3500.0
"""Chips below this survive an 8 kHz telephone path (mu-law); they are all pilot, and detection
on narrow-band audio uses only them."""
PAYLOAD_EVERY = 1
"""Above the telephone band, every ``PAYLOAD_EVERY``-th chip carries the payload (1: all of them;
the pilot is then the telephone band, which every transform keeps, and the payload gets twice the
chips it had with 2 -- see docs/watermark.md, "Why these sizes")."""
DEFAULT_KEY = b"timbre-watermark-v1"
PROFILE_HZ = (1000.0, 2000.0, 3500.0, 4500.0, 7000.0)
PROFILE_DEPTH = (1.2, 1.2, 1.2, 1.2, 1.2)
"""Relative ripple depth by frequency (interpolated), times ``strength``. Flat since the embedder
caps its gain: an earlier profile (0.7 at 1 kHz rising to 1.5 above 4.5 kHz) cost the same PESQ
and left the telephone-band pilot weaker after mu-law and Opus (docs/watermark.md)."""


@dataclass(frozen=True)
class Pattern:
    """Chip layout. ``starts_hz``: each chip's lower edge; ``signs``: the pilot's +-1 per chip (payload
    chips' signs come from the stream id instead); ``payload``: which chips carry the payload;
    ``depth``: the peak log-magnitude (natural log) of each chip's bump."""

    starts_hz: F64
    signs: F64
    payload: npt.NDArray[np.bool_]
    depth: F64

    @property
    def pilot(self) -> npt.NDArray[np.bool_]:
        return ~self.payload


def depth_profile(freq_hz: F64, strength: float) -> F64:
    """Peak ripple (natural-log magnitude) at each frequency. Speech has most of its energy below
    1 kHz, where any ripple costs much watermark power (the SNR budget), and a ripple there hardly
    survives the host's own harmonic structure; the chips therefore start at 1 kHz. The ear
    integrates over critical bands far wider than a chip, so the alternating bumps average out."""
    return strength * np.interp(freq_hz, PROFILE_HZ, PROFILE_DEPTH)


def _rng(*parts: bytes) -> np.random.Generator:
    seed = int.from_bytes(hashlib.sha256(b"\x00".join(parts)).digest()[:8], "big")
    return np.random.default_rng(seed)


def _paired_signs(rng: np.random.Generator, count: int) -> F64:
    """Random signs in opposite pairs (+s, -s): the ripple then always alternates from one chip to
    the next of its kind, with no long same-sign runs -- a run would look like a broad bump, which
    the detector's envelope removal (and the host's own envelope) would swallow."""
    pairs = rng.choice(np.array([-1.0, 1.0]), size=(count + 1) // 2)
    signs: F64 = np.stack([pairs, -pairs], axis=1).reshape(-1)[:count]
    return signs


@cache
def pattern(key: bytes = DEFAULT_KEY, strength: float = 0.1) -> Pattern:
    """The pattern for ``key`` (deterministic; cached). ``strength``: the nominal bump depth."""
    starts = np.arange(BAND_LOW_HZ, BAND_HIGH_HZ - CHIP_HZ + 1e-9, CHIP_HZ)
    payload = (np.arange(len(starts)) % PAYLOAD_EVERY == PAYLOAD_EVERY - 1) & (
        starts >= TELEPHONE_HIGH_HZ)
    signs = np.zeros(len(starts))
    signs[~payload] = _paired_signs(_rng(key, b"pilot"), int((~payload).sum()))
    return Pattern(starts, signs, payload, depth_profile(starts + CHIP_HZ / 2, strength))


def stream_signs(pat: Pattern, stream_id: int, key: bytes = DEFAULT_KEY) -> F64:
    """The +-1 signs of the payload chips for ``stream_id`` (a keyed pseudo-random sequence: two
    ids' sequences are as good as independent)."""
    count = int(pat.payload.sum())
    return _paired_signs(_rng(key, b"stream", stream_id.to_bytes(8, "big")), count)


def chip_signs(pat: Pattern, stream_id: int, key: bytes = DEFAULT_KEY) -> F64:
    """Every chip's sign for a stream: the pilot's, with the stream's on payload chips."""
    signs = pat.signs.copy()
    signs[pat.payload] = stream_signs(pat, stream_id, key)
    return signs


def chip_weights(pat: Pattern, freqs_hz: F64) -> tuple[npt.NDArray[np.int64], F64]:
    """For each frequency in ``freqs_hz``: the chip it falls in (-1: none) and the half-sine bump
    value there (0 at the chip's edges, 1 at its centre)."""
    position = (freqs_hz - BAND_LOW_HZ) / CHIP_HZ
    index = np.floor(position).astype(np.int64)
    inside = (index >= 0) & (index < len(pat.starts_hz))
    bump = np.where(inside, np.sin(np.pi * (position - np.floor(position))), 0.0)
    return np.where(inside, index, -1), bump
