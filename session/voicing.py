"""What happens to an engine's audio between the model and the watermark: a voice profile's
conversion stage (``inference.conversion``) and the ``pitch`` option.

Both are one streaming stage per text unit (``UnitStage``): the engine speaks the unit slower by
the stage's time ratio (``engine_speed``), a resampler raises pitch and formants by that ratio and
brings the duration back, and a spectral filter moves the formants back to where they were (for
``pitch``) and toward the cloned speaker's (for a profile). Pitch therefore moves while duration,
timbre and words stay: on Piper ``joe``, +4 semitones kept a speaker-embedding similarity of 0.90
to the unshifted voice (0.62 when the formants were left shifted). The stage holds back about
75 ms (the filter's look-ahead) and is flushed at the end of each unit, so nothing waits for the
next unit's text; a unit starts and ends in the engine's own silence, so restarting the filter
there leaves no seam. A voice with no conversion and pitch 0 gets no stage at all.
"""

from __future__ import annotations

from inference.conversion import Blend, StreamingConverter, blend_base_speed
from inference.engine import FloatAudio
from session.pitch import MAX_PITCH, MIN_PITCH, pitch_ratio

__all__ = ["MAX_PITCH", "MIN_PITCH", "UnitStage", "engine_speed", "needs_stage", "pitch_ratio"]


def engine_speed(speed: float, pitch: float, conversion: Blend) -> float:
    """The speed to ask the engine for so the converted, pitch-shifted unit comes out at
    ``speed``: the conversion's base speed (the cloned speaker's rate), slowed by the pitch
    ratio the resampler will take back."""
    return speed * blend_base_speed(conversion) / pitch_ratio(pitch)


def needs_stage(conversion: Blend, pitch: float) -> bool:
    return bool(conversion) or pitch != 0.0


class UnitStage:
    """One text unit's audio through conversion and pitch. ``feed`` returns what is final so far,
    ``flush`` the rest; ``time_ratio`` is engine time / output time (for word timings)."""

    def __init__(self, conversion: Blend, pitch: float, sample_rate_hz: int) -> None:
        self._converter = StreamingConverter(conversion or None, pitch=pitch_ratio(pitch),
                                             sample_rate_hz=sample_rate_hz)
        self.time_ratio = self._converter.time_ratio

    def feed(self, audio: FloatAudio) -> FloatAudio:
        return self._converter.feed(audio)

    def flush(self) -> FloatAudio:
        return self._converter.flush()
