"""English normalisation: what the TTS voice is given to read."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from session.normalize import cardinal, normalize, number, ordinal, year
from session.segment import split_units

CASES = {
    "numbers": [
        ("3.5", "three point five"),
        ("1,234", "one thousand two hundred thirty-four"),
        ("-5 below", "minus five below"),
        ("−3", "minus three"),
        ("0.5", "zero point five"),
        (".5", "point five"),
        ("007", "zero zero seven"),
        ("1000000", "one million"),
        ("100,000,000,000", "one hundred billion"),
        ("He scored 3.", "He scored three."),
        ("COVID-19", "COVID-nineteen"),
        ("4K video", "four K video"),
        ("pages 5-10", "pages five to ten"),
        ("a 3-2 win", "a three to two win"),
        ("1/2 cup", "one half cup"),
        ("2/3 of them", "two thirds of them"),
        ("1920x1080", "one thousand nine hundred twenty by one thousand eighty"),
        ("5 * 3", "five times three"),
        ("version 3.11.4", "version three point eleven point four"),
        ("v1.2.3", "version one point two point three"),
        ("call 555-123-4567", "call five five five, one two three, four five six seven"),
    ],
    "ordinals": [
        ("the 1st and 22nd", "the first and twenty-second"),
        ("3rd place", "third place"),
        ("11th, 12th, 13th", "eleventh, twelfth, thirteenth"),
        ("the 101st time", "the one hundred first time"),
        ("#1 hit", "number one hit"),
        ("No. 5", "number five"),
    ],
    "money": [
        ("$5", "five dollars"),
        ("$1", "one dollar"),
        ("$3.50", "three dollars and fifty cents"),
        ("$3.5", "three dollars and fifty cents"),
        ("$1.01", "one dollar and one cent"),
        ("$0.99", "ninety-nine cents"),
        ("$1,000,000", "one million dollars"),
        ("-$5", "minus five dollars"),
        ("€20", "twenty euros"),
        ("20 €", "twenty euros"),
        ("£1.50", "one pound and fifty pence"),
        ("¥100", "one hundred yen"),
        ("$1.2M", "one point two million dollars"),
        ("$2 billion", "two billion dollars"),
        ("It's $2.5bn", "It's two point five billion dollars"),
        ("$50k", "fifty thousand dollars"),
        ("It costs $5.", "It costs five dollars."),
    ],
    "percentages": [
        ("50%", "fifty percent"),
        ("3.5 %", "three point five percent"),
        ("-2%", "minus two percent"),
        ("5-10%", "five to ten percent"),
    ],
    "times": [
        ("3:30 pm", "three thirty p m"),
        ("3:30PM", "three thirty p m"),
        ("10:05", "ten oh five"),
        ("10:00", "ten o'clock"),
        ("3:00 p.m.", "three p m."),
        ("14:45", "fourteen forty-five"),
        ("18:00", "eighteen hundred"),
        ("10:05:30", "ten oh five and thirty seconds"),
        ("at 5 p.m. sharp", "at five p m sharp"),
        ("5pm", "five p m"),
    ],
    "dates": [
        ("2024-03-15", "March fifteenth, twenty twenty-four"),
        ("March 3, 2024", "March third, twenty twenty-four"),
        ("Oct. 31", "October thirty-first"),
        ("May 5th", "May fifth"),
        ("3/15/2024", "March fifteenth, twenty twenty-four"),
        ("15/3/2024", "March fifteenth, twenty twenty-four"),
        ("3 March 2024", "the third of March, twenty twenty-four"),
        ("the 3rd of March", "the third of March"),
    ],
    "years": [
        ("in 1999", "in nineteen ninety-nine"),
        ("2024", "twenty twenty-four"),
        ("by 2030 we", "by twenty thirty we"),
        ("in 2005", "in two thousand five"),
        ("in 1905", "in nineteen oh five"),
        ("The year 1800 was", "The year eighteen hundred was"),
        ("from 1990 to 2000", "from nineteen ninety to two thousand"),
        ("2024-25", "twenty twenty-four to twenty-five"),
        ("1999 people", "one thousand nine hundred ninety-nine people"),
        ("the 1990s", "the nineteen nineties"),
        ("the 2010s", "the twenty tens"),
        ("the '80s", "the eighties"),
    ],
    "abbreviations": [
        ("Dr. Smith lives on Elm Dr.", "Doctor Smith lives on Elm Drive."),
        ("Mr. and Mrs. Jones", "Mister and Missus Jones"),
        ("St. Louis", "Saint Louis"),
        ("Main St.", "Main Street."),
        ("apples, pears, etc.", "apples, pears, et cetera."),
        ("e.g. this", "for example this"),
        ("E.g. this", "for example this"),
        ("i.e. that", "that is that"),
        ("cats vs. dogs", "cats versus dogs"),
        ("Python vs Java", "Python versus Java"),
        ("VS Code", "VS Code"),
        ("approx. 5 km", "approximately five kilometers"),
        ("Prof. Lee, Jr.", "Professor Lee, Junior."),
    ],
    "units": [
        ("5 kg", "five kilograms"),
        ("1 km", "one kilometer"),
        ("60 mph", "sixty miles per hour"),
        ("1.5 kg", "one point five kilograms"),
        ("he's 6 ft tall", "he's six feet tall"),
        ("25°C", "twenty-five degrees Celsius"),
        ("-5 °F", "minus five degrees Fahrenheit"),
        ("16 GB", "sixteen gigabytes"),
        ("100 km/h", "one hundred kilometers per hour"),
    ],
    "addresses": [
        ("example.com", "example dot com"),
        ("Visit example.com.", "Visit example dot com."),
        ("see example.com/docs, then", "see example dot com slash docs, then"),
        ("https://www.example.com/path/to.", "w w w dot example dot com slash path slash to."),
        ("a@b.io", "a at b dot io"),
        ("john.doe@mail.example.org.", "john dot doe at mail dot example dot org."),
        ("my-site.co.uk", "my dash site dot co dot uk"),
    ],
    "symbols": [
        ("R&D", "R and D"),
        ("A & B", "A and B"),
        ("1+1=2", "one plus one equals two"),
        ("x = y", "x equals y"),
        ("@home", "at home"),
        ("**bold** and `code`", "bold and code"),
        ("## Heading", "Heading"),
        ("- Buy milk", "Buy milk"),
    ],
    "untouched": [
        ("Hello there, how are you?", "Hello there, how are you?"),
        ("It's a fine day — isn't it?", "It's a fine day — isn't it?"),
        ("Node.js and the U.S. team", "Node.js and the U.S. team"),
        ("", ""),
    ],
}


@pytest.mark.parametrize(
    ("text", "spoken"),
    [pytest.param(text, spoken, id=f"{group}:{text}") for group, cases in CASES.items()
     for text, spoken in cases],
)  # fmt: skip
def test_normalize(text: str, spoken: str) -> None:
    assert normalize(text) == spoken


@pytest.mark.parametrize(
    ("n", "cardinal_words", "ordinal_words"),
    [
        (0, "zero", "zeroth"),
        (1, "one", "first"),
        (12, "twelve", "twelfth"),
        (20, "twenty", "twentieth"),
        (21, "twenty-one", "twenty-first"),
        (100, "one hundred", "one hundredth"),
        (1_001, "one thousand one", "one thousand first"),
        (1_234, "one thousand two hundred thirty-four", "one thousand two hundred thirty-fourth"),
        (2_000_000, "two million", "two millionth"),
        (10**15 + 3, "one quadrillion three", "one quadrillion third"),
    ],
)
def test_cardinal_and_ordinal(n: int, cardinal_words: str, ordinal_words: str) -> None:
    assert cardinal(n) == cardinal_words
    assert ordinal(n) == ordinal_words


@pytest.mark.parametrize(
    ("n", "words"),
    [
        (1066, "ten sixty-six"),
        (1900, "nineteen hundred"),
        (1905, "nineteen oh five"),
        (1999, "nineteen ninety-nine"),
        (2000, "two thousand"),
        (2009, "two thousand nine"),
        (2010, "twenty ten"),
        (2024, "twenty twenty-four"),
        (999, "nine hundred ninety-nine"),
    ],
)
def test_year(n: int, words: str) -> None:
    assert year(n) == words


def test_huge_numbers_are_read_digit_by_digit() -> None:
    assert cardinal(10**18) == "one" + " zero" * 18
    assert number("-12.05") == "minus twelve point zero five"


def test_other_languages_pass_through() -> None:
    assert normalize("3 Äpfel für $5", lang="de") == "3 Äpfel für $5"
    assert normalize("$5", lang="en-US") == "five dollars"


def test_each_unit_is_normalised_on_its_own() -> None:
    text = "Sure. Meet Dr. Chen at 3:30 pm. She paid $3.50, i.e. 50% off, on Main St."
    assert [normalize(unit) for unit in split_units(text)] == [
        "Sure.",
        "Meet Doctor Chen at three thirty p m.",
        "She paid three dollars and fifty cents, that is fifty percent off, on Main Street.",
    ]


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="abcdefghijklmnopqrtuvwxyzABCXYZ ,!?'\n", max_size=60))
def test_plain_words_are_left_alone(text: str) -> None:
    assert normalize(text) == text


_NUMBERS_AND_SYMBOLS = "0123456789$€£.,:/-−%x×*+&@# apmAPMskgthndrS'’\nwcom"


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=_NUMBERS_AND_SYMBOLS, max_size=30) | st.text(max_size=30))
def test_any_text_normalises_without_error(text: str) -> None:
    assert isinstance(normalize(text), str)
