"""Field readers of the native protocol (``realtime.protocol``): each takes a decoded JSON object
and a field name, and returns the field's value checked, or raises ``BadMessage`` (``BadFormat`` /
``BadSampleRate`` for those two fields) naming the field, so a client always learns which field
was wrong and why.

The voice options ``speed``, ``pitch`` and ``language`` are checked here for their shape and range
only: whether the voice speaks a language depends on which voice a context ends up with, so that
check (``session.languages.check_language``, error ``unsupported_language``) happens when the
context starts.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any, Final, TypeVar

from realtime.audio import SUPPORTED_FORMATS, SUPPORTED_SAMPLE_RATES
from session.errors import BadFormat, BadMessage, BadSampleRate
from session.pitch import MAX_PITCH, MIN_PITCH

MIN_SPEED: Final = 0.5
MAX_SPEED: Final = 2.0
DEFAULT_CONTEXT_ID: Final = "default"
MAX_LANGUAGE_CHARS: Final = 16
LANGUAGE_CODE: Final = re.compile(r"[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{1,8}){0,2}")
"""The shape of a language code (``en``, ``en-us``, ``pt_BR``): checked before the voice is asked,
so a message can never smuggle an arbitrary string into an error message or an engine."""

_CONTEXT_ID: Final = re.compile(r"[A-Za-z0-9_.:\-]{1,64}")

JsonObject = dict[str, Any]
_T = TypeVar("_T")


def required(obj: JsonObject, name: str) -> object:
    value = obj.get(name)
    if value is None:
        raise BadMessage(f"missing field '{name}'")
    return value


def optional(read: Callable[[JsonObject, str], _T], obj: JsonObject, name: str) -> _T | None:
    """``read`` the field, or None when it is absent or null."""
    return None if obj.get(name) is None else read(obj, name)


def string(obj: JsonObject, name: str) -> str:
    value = required(obj, name)
    if not isinstance(value, str):
        raise BadMessage(f"field '{name}' must be a string")
    try:
        value.encode()
    except UnicodeEncodeError:  # a lone surrogate smuggled in as "\ud800"
        raise BadMessage(f"field '{name}' is not valid Unicode") from None
    return value


def non_empty(obj: JsonObject, name: str) -> str:
    value = string(obj, name)
    if not value:
        raise BadMessage(f"field '{name}' must not be empty")
    return value


def context_id(obj: JsonObject, name: str) -> str:
    value = required(obj, name)
    if not isinstance(value, str):
        raise BadMessage(f"field '{name}' must be a string")
    return valid_context_id(value)


def client_context_id(obj: JsonObject) -> str:
    """A client message's ``context_id``; ``"default"`` when it is left out."""
    return optional(context_id, obj, "context_id") or DEFAULT_CONTEXT_ID


def context_id_or_none(obj: JsonObject) -> str | None:
    """The message's ``context_id`` when it is a valid one (to tag an error with), else None."""
    value = obj.get("context_id")
    return value if isinstance(value, str) and _CONTEXT_ID.fullmatch(value) else None


def valid_context_id(value: str) -> str:
    if not _CONTEXT_ID.fullmatch(value):
        raise BadMessage("context_id must be 1 to 64 characters from A-Z a-z 0-9 _ . : -")
    return value


def count(obj: JsonObject, name: str) -> int:
    value = required(obj, name)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise BadMessage(f"field '{name}' must be a non-negative integer")
    return value


def number(obj: JsonObject, name: str) -> float:
    value = required(obj, name)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BadMessage(f"field '{name}' must be a number")
    return float(value)


def ms(obj: JsonObject, name: str) -> float:
    value = number(obj, name)
    if not 0 <= value < math.inf:
        raise BadMessage(f"field '{name}' must be a non-negative number of milliseconds")
    return value


def speed(obj: JsonObject, name: str) -> float:
    value = number(obj, name)
    if not MIN_SPEED <= value <= MAX_SPEED:
        raise BadMessage(f"field '{name}' must be between {MIN_SPEED} and {MAX_SPEED}")
    return value


def pitch(obj: JsonObject, name: str) -> float:
    """Semitones, ``session.voicing.MIN_PITCH`` to ``MAX_PITCH``."""
    value = number(obj, name)
    if not MIN_PITCH <= value <= MAX_PITCH:
        raise BadMessage(
            f"field '{name}' must be between {MIN_PITCH:g} and {MAX_PITCH:g} semitones"
        )
    return value


def is_language_code(value: str) -> bool:
    """Whether ``value`` has a language code's shape (every transport checks it the same way)."""
    return len(value) <= MAX_LANGUAGE_CHARS and LANGUAGE_CODE.fullmatch(value) is not None


def language(obj: JsonObject, name: str) -> str:
    """A language code's shape (``en``, ``pt-br``); the voice decides later whether it speaks it."""
    value = string(obj, name)
    if not is_language_code(value):
        raise BadMessage(f"field '{name}' must be a language code such as 'en' or 'pt-br'")
    return value


def sample_rate(obj: JsonObject, name: str) -> int:
    value = required(obj, name)
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadMessage(f"field '{name}' must be an integer")
    if value not in SUPPORTED_SAMPLE_RATES:
        raise BadSampleRate(f"sample_rate {value} is not one of {SUPPORTED_SAMPLE_RATES}")
    return value


def audio_format(obj: JsonObject, name: str) -> str:
    value = string(obj, name)
    if value not in SUPPORTED_FORMATS:
        raise BadFormat(f"format {value!r} is not one of {SUPPORTED_FORMATS}")
    return value
