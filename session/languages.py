"""The ``language`` option: which languages a voice's engine speaks, checked before synthesis.

Engines that speak several languages (Kokoro) list them (``languages()``); the others (Piper's
``joe``) speak English only. A request's language is checked when its context starts, so a bad
code is one clear error instead of a failure per text unit later.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from session.errors import TimbreError
from session.voices import ResolvedVoice

ENGLISH = ("en", "en-us")
"""What a single-language engine accepts: its voices are American English."""


class UnsupportedLanguage(TimbreError):
    """A language the voice cannot speak. The session survives it."""

    code = "unsupported_language"
    http_status = 400
    close_code = None


@runtime_checkable
class SpeaksLanguages(Protocol):
    def languages(self) -> Sequence[str]: ...


def normalize_language(code: str) -> str:
    """``pt_BR`` -> ``pt-br``: the form engines list."""
    return code.strip().lower().replace("_", "-")


def check_language(voice: ResolvedVoice, language: str | None) -> str | None:
    """The normalised language for ``voice`` (None stays None: the voice's default). Raises
    ``UnsupportedLanguage`` naming the languages the voice does speak."""
    if language is None:
        return None
    code = normalize_language(language)
    engine = voice.scheduler.engine
    spoken = tuple(engine.languages()) if isinstance(engine, SpeaksLanguages) else ENGLISH
    if code not in spoken:
        raise UnsupportedLanguage(f"voice {voice.voice_id} does not speak {language!r}; it "
                                  f"speaks {', '.join(spoken)}")
    return code
