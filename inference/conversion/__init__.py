"""Per-profile voice conversion: make a clear base voice sound like a reference speaker.

Algorithm (parallel-data conversion, fitted from the reference alone; details in ``model``):
the base voice says the reference's transcript; on an engine that shifts F0 at its source (Kokoro)
it says it with its pitch contour moved to the reference's typical pitch and spread
(``f0_stats``, ``F0Shift``; the cloning job decides); pitch can also be moved by resampling (off
by default: it cost similarity and words in the benchmark); an envelope warp factor is
estimated; DTW pairs the reference's frames with the base's; a per-envelope-class log-mel gain
(soft classes from k-means over the base's cepstra) is learned from the pairs. Applied in streaming (``stream``), the stage filters
the base voice's own STFT with the gain its frames' classes select, smoothed over a few frames,
keeping the base's phase and fine structure: words come from the base voice, timbre moves toward
the reference. ``select`` ranks candidate base voices by speaker-embedding similarity.
Numbers and what was tried: docs/benchmarks.md, "Voice cloning: the conversion stage".
"""

from inference.conversion.model import (
    ConversionParams,
    FitReport,
    Synthesize,
    f0_stats,
    fit,
    say,
)
from inference.conversion.select import rank_bases
from inference.conversion.stream import (
    Blend,
    SpectralFilter,
    StreamingConverter,
    blend_base_speed,
    blend_f0_shift,
    blend_pitch_ratio,
    convert,
)

__all__ = ["Blend", "ConversionParams", "FitReport", "SpectralFilter", "StreamingConverter",
           "Synthesize", "blend_base_speed", "blend_f0_shift", "blend_pitch_ratio", "convert",
           "f0_stats", "fit", "rank_bases", "say"]
