"""Offline synthesis plans its units in the request's language: only English (or no language, the
voice's own) has digits rewritten as words; the characters metered stay the whole text."""

from __future__ import annotations

import pytest

from session.synthesis import PlannedUnit, plan_units


@pytest.mark.parametrize("language", [None, "en", "en-us"])
def test_english_digits_are_read_as_words(language: str | None) -> None:
    assert plan_units("I have 3 apples.", language=language) == [
        PlannedUnit("I have three apples.", 16)]


@pytest.mark.parametrize(("language", "text"), [("fr", "J'ai 3 pommes."), ("es", "Tengo 3 gatos."),
                                                ("ja", "3時に会いましょう。")])
def test_other_languages_keep_their_digits(language: str, text: str) -> None:
    assert plan_units(text, language=language) == [PlannedUnit(text, len(text))]


def test_japanese_units_are_cut_at_full_width_marks_and_keep_their_digits() -> None:
    text = "はい。3時に会いましょう。"
    units = plan_units(text, language="ja")
    assert units == [PlannedUnit("はい。", 3), PlannedUnit("3時に会いましょう。", 10)]
    assert sum(unit.characters for unit in units) == len(text)
