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

A profile fitted on an engine that shifts F0 at its source (Kokoro) also asks that engine for
its pitch contour change (``engine_f0``): the cloned speaker's pitch is made by the model, before
the stage, so it costs nothing and keeps the formants.
"""

from __future__ import annotations

from inference.conversion import Blend, StreamingConverter, blend_base_speed, blend_f0_shift
from inference.engine import F0Shift, FloatAudio, ShiftsF0
from session.pitch import MAX_PITCH, MIN_PITCH, pitch_ratio

__all__ = ["MAX_PITCH", "MIN_PITCH", "UnitStage", "engine_f0", "engine_speed", "needs_stage",
           "pitch_ratio"]


def engine_speed(speed: float, pitch: float, conversion: Blend) -> float:
    """The speed to ask the engine for so the converted, pitch-shifted unit comes out at
    ``speed``: the conversion's base speed (the cloned speaker's rate), slowed by the pitch
    ratio the resampler will take back."""
    return speed * blend_base_speed(conversion) / pitch_ratio(pitch)


def engine_f0(conversion: Blend, engine: object) -> F0Shift | None:
    """The pitch contour change to ask ``engine`` for: the conversion's, on an engine that shifts
    F0 at its source; None otherwise."""
    if not conversion or not (isinstance(engine, ShiftsF0) and engine.shifts_f0()):
        return None
    return blend_f0_shift(conversion)


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
