"""Service tiers: what a tenant may use per month and at once.

Defaults follow the product brief; a ``[tiers]`` TOML table overrides them field by field and may add
tiers::

    [tiers.free]
    characters_per_month = 20000

    [tiers.team]
    characters_per_month = 2000000
    max_profiles = 25
    max_concurrent_streams = 10
    output_formats = ["pcm_s16le", "pcm_mulaw"]

``"unlimited"`` stands for no limit on characters or profiles (TOML has no null), and
``output_formats = "all"`` allows every format. Formats are named by codec, whatever the transport
calls them: ``pcm_s16le`` (raw PCM and WAV), ``pcm_mulaw``, ``pcm_alaw``, ``opus``, ``mp3``, ``aac``,
``flac``. A new tier must name all three numbers.
"""

from __future__ import annotations

import dataclasses
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

UNLIMITED = "unlimited"
ALL_FORMATS = "all"


@dataclass(frozen=True)
class Tier:
    name: str
    characters_per_month: int | None
    """Characters synthesised per calendar month (UTC); None: unlimited."""
    max_profiles: int | None
    """Voice profiles that may exist at once; None: unlimited."""
    max_concurrent_streams: int
    output_formats: tuple[str, ...] | None = None
    """Output formats allowed; None: all."""

    def allows_format(self, output_format: str) -> bool:
        return self.output_formats is None or output_format in self.output_formats


DEFAULT_TIERS = (
    Tier("free", characters_per_month=10_000, max_profiles=1, max_concurrent_streams=1),
    Tier("pro", characters_per_month=500_000, max_profiles=10, max_concurrent_streams=5),
    Tier("enterprise", characters_per_month=None, max_profiles=None, max_concurrent_streams=50),
)
DEFAULT_TIER = "free"


class UnknownTier(KeyError):
    """A tier name that is not configured (a configuration or admin-input error)."""


class TierTable:
    """The configured tiers by name. Immutable once built."""

    def __init__(self, tiers: Mapping[str, Tier] | None = None, default: str = DEFAULT_TIER) -> None:
        table = dict(tiers) if tiers is not None else {t.name: t for t in DEFAULT_TIERS}
        if default not in table:
            raise UnknownTier(f"default tier {default!r} is not configured")
        self._tiers: Mapping[str, Tier] = MappingProxyType(table)
        self.default = default

    def get(self, name: str) -> Tier:
        """Raises UnknownTier for a name that is not configured."""
        try:
            return self._tiers[name]
        except KeyError:
            raise UnknownTier(f"unknown tier {name!r}; configured: {sorted(self._tiers)}") from None

    def names(self) -> tuple[str, ...]:
        return tuple(self._tiers)

    def __contains__(self, name: object) -> bool:
        return name in self._tiers

    @classmethod
    def from_mapping(cls, tables: Mapping[str, Any]) -> TierTable:
        """Defaults overridden by ``tables`` (the contents of ``[tiers]``: tier name -> settings).

        Raises ValueError on unknown settings, wrong types, or a new tier missing a number."""
        tiers = {t.name: t for t in DEFAULT_TIERS}
        for name, settings in tables.items():
            if not isinstance(settings, Mapping):
                raise ValueError(f"[tiers.{name}] must be a table")  # noqa: TRY004 (config errors)
            tiers[name] = _tier_from(name, settings, tiers.get(name))
        return cls(tiers)

    @classmethod
    def from_toml(cls, text: str) -> TierTable:
        """Tiers from a TOML document's ``[tiers]`` table (absent: the defaults)."""
        return cls.from_mapping(tomllib.loads(text).get("tiers", {}))


_FIELDS = ("characters_per_month", "max_profiles", "max_concurrent_streams", "output_formats")


def _tier_from(name: str, settings: Mapping[str, Any], base: Tier | None) -> Tier:
    unknown = set(settings) - set(_FIELDS)
    if unknown:
        raise ValueError(f"unknown [tiers.{name}] settings: {sorted(unknown)}")
    if base is None:
        missing = set(_FIELDS[:3]) - set(settings)
        if missing:
            raise ValueError(f"new tier [tiers.{name}] must set {sorted(missing)}")
        base = Tier(name, 0, 0, 0)
    values: dict[str, Any] = {}
    for key, value in settings.items():
        where = f"[tiers.{name}] {key}"
        if key == "output_formats":
            values[key] = _formats(value, where)
        elif key == "max_concurrent_streams":
            values[key] = _count(value, where, unlimited_ok=False)
        else:
            values[key] = _count(value, where, unlimited_ok=True)
    return dataclasses.replace(base, **values)


def _count(value: Any, where: str, *, unlimited_ok: bool) -> int | None:
    if unlimited_ok and value == UNLIMITED:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        allowed = 'a non-negative integer or "unlimited"' if unlimited_ok else "a non-negative integer"
        raise ValueError(f"{where} must be {allowed}, not {value!r}")
    return value


def _formats(value: Any, where: str) -> tuple[str, ...] | None:
    if value == ALL_FORMATS:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f'{where} must be a list of format names or "all", not {value!r}')
    return tuple(value)
