"""Voice ids and which scheduler serves them.

A voice id is ``engine:name`` (``piper:joe``). Short aliases (``joe``) resolve when exactly one engine
has a voice of that name.
"""

from __future__ import annotations

from dataclasses import dataclass

from inference.scheduler import Scheduler
from session.errors import UnknownVoice


@dataclass(frozen=True)
class ResolvedVoice:
    voice_id: str
    """Canonical id, ``engine:name``."""
    engine_voice: str
    """The name the engine knows."""
    scheduler: Scheduler


class VoiceCatalog:
    def __init__(self) -> None:
        self._schedulers: dict[str, Scheduler] = {}

    def add_engine(self, scheduler: Scheduler) -> None:
        self._schedulers[scheduler.engine.name] = scheduler

    def voice_ids(self) -> list[str]:
        return sorted(
            f"{name}:{voice}"
            for name, scheduler in self._schedulers.items()
            for voice in scheduler.engine.voices()
        )

    def schedulers(self) -> list[Scheduler]:
        return list(self._schedulers.values())

    def resolve(self, voice_id: str) -> ResolvedVoice:
        """Raises ``UnknownVoice`` for an id no engine serves."""
        engine_name, sep, name = voice_id.partition(":")
        if sep:
            scheduler = self._schedulers.get(engine_name)
            if scheduler is not None and name in scheduler.engine.voices():
                return ResolvedVoice(voice_id, name, scheduler)
            raise UnknownVoice(f"unknown voice {voice_id!r}; available: {self._listing()}")
        matches = [
            (engine_name_, scheduler)
            for engine_name_, scheduler in self._schedulers.items()
            if voice_id in scheduler.engine.voices()
        ]
        if len(matches) != 1:
            raise UnknownVoice(f"unknown voice {voice_id!r}; available: {self._listing()}")
        engine_name, scheduler = matches[0]
        return ResolvedVoice(f"{engine_name}:{voice_id}", voice_id, scheduler)

    def _listing(self) -> str:
        return ", ".join(self.voice_ids()) or "(none)"
