"""Tiers: the product defaults and TOML overrides."""

from __future__ import annotations

import pytest

from session.tiers import Tier, TierTable, UnknownTier


def test_defaults_follow_the_product_brief() -> None:
    tiers = TierTable()
    assert tiers.get("free") == Tier("free", 10_000, 1, 1)
    assert tiers.get("pro") == Tier("pro", 500_000, 10, 5)
    assert tiers.get("enterprise") == Tier("enterprise", None, None, 50)
    assert tiers.default == "free" and tiers.names() == ("free", "pro", "enterprise")
    assert tiers.get("free").allows_format("opus")
    with pytest.raises(UnknownTier, match="'gold'"):
        tiers.get("gold")


def test_toml_overrides_fields_and_adds_tiers() -> None:
    tiers = TierTable.from_toml("""
        [server]
        port = 8080

        [tiers.free]
        characters_per_month = 20000
        output_formats = ["pcm_s16le", "mulaw"]

        [tiers.pro]
        max_profiles = "unlimited"

        [tiers.team]
        characters_per_month = 2000000
        max_profiles = 25
        max_concurrent_streams = 10
    """)
    free = tiers.get("free")
    assert (free.characters_per_month, free.max_profiles) == (20_000, 1)
    assert free.allows_format("mulaw") and not free.allows_format("opus")
    assert tiers.get("pro").max_profiles is None
    assert tiers.get("team") == Tier("team", 2_000_000, 25, 10)
    assert tiers.get("enterprise") == TierTable().get("enterprise")


@pytest.mark.parametrize("toml, message", [
    ("[tiers.free]\ncharacters = 5", "unknown"),
    ("[tiers.free]\nmax_concurrent_streams = 'unlimited'", "non-negative integer"),
    ("[tiers.free]\ncharacters_per_month = -1", "non-negative integer"),
    ("[tiers.free]\noutput_formats = 'opus'", "list of format names"),
    ("[tiers.team]\nmax_concurrent_streams = 3", "must set"),
])
def test_bad_settings_fail_loudly(toml: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TierTable.from_toml(toml)
