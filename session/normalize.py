"""English text normalisation for TTS: numbers, money, dates, times, addresses, abbreviations and
symbols become the words a reader would say ("$3.50" -> "three dollars and fifty cents").

Applied to one unit at a time, after segmentation, so nothing here looks beyond the unit it is
given. The rules are one table (``_RULES``); at each position of the text the rules are tried in
table order and the first that matches wins. A rule's output is never read again by another rule,
and text that no rule matches is returned unchanged. Readings are American English ("one thousand
two hundred thirty-four", no "and"). Any other language passes through untouched.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

# --- number words ---------------------------------------------------------------------------------

# fmt: off
_ONES = (
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
    "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen",
    "nineteen",
)
_TENS = ("", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")
# fmt: on
_SCALES = (
    (10**15, "quadrillion"),
    (10**12, "trillion"),
    (10**9, "billion"),
    (10**6, "million"),
    (10**3, "thousand"),
)
_IRREGULAR_ORDINALS = {
    "one": "first", "two": "second", "three": "third", "five": "fifth", "eight": "eighth",
    "nine": "ninth", "twelve": "twelfth",
}  # fmt: skip


def _below_hundred(n: int) -> str:
    if n < 20:
        return _ONES[n]
    tens, ones = divmod(n, 10)
    return _TENS[tens] + (f"-{_ONES[ones]}" if ones else "")


def _below_thousand(n: int) -> str:
    hundreds, rest = divmod(n, 100)
    words = [f"{_ONES[hundreds]} hundred"] if hundreds else []
    if rest or not hundreds:
        words.append(_below_hundred(rest))
    return " ".join(words)


def digits(text: str) -> str:
    """Each digit of ``text`` by name: "007" -> "zero zero seven"."""
    return " ".join(_ONES[int(ch)] for ch in text if ch.isdigit())


def cardinal(n: int) -> str:
    """1234 -> "one thousand two hundred thirty-four"; digit by digit from 10**18 up."""
    if n < 0:
        return "minus " + cardinal(-n)
    if n >= 10**18:
        return digits(str(n))
    words = []
    for scale, name in _SCALES:
        count, n = divmod(n, scale)
        if count:
            words.append(f"{_below_thousand(count)} {name}")
    if n or not words:
        words.append(_below_thousand(n))
    return " ".join(words)


def ordinal(n: int) -> str:
    """22 -> "twenty-second"."""
    words = cardinal(n)
    cut = max(words.rfind(" "), words.rfind("-")) + 1
    head, last = words[:cut], words[cut:]
    if last in _IRREGULAR_ORDINALS:
        return head + _IRREGULAR_ORDINALS[last]
    if last.endswith("y"):
        return head + last[:-1] + "ieth"
    return head + last + "th"


def year(n: int) -> str:
    """1999 -> "nineteen ninety-nine", 1905 -> "nineteen oh five", 2005 -> "two thousand five"."""
    century, rest = divmod(n, 100)
    if not 1000 <= n <= 9999 or 2000 <= n <= 2009 or (rest == 0 and century % 10 == 0):
        return cardinal(n)
    if rest == 0:
        return f"{_below_hundred(century)} hundred"
    if rest < 10:
        return f"{_below_hundred(century)} oh {_ONES[rest]}"
    return f"{_below_hundred(century)} {_below_hundred(rest)}"


def _plural(words: str) -> str:
    """Decades: "nineteen ninety" -> "nineteen nineties"."""
    return words[:-1] + "ies" if words.endswith("y") else words + "s"


def number(text: str) -> str:
    """A written number: "-1,234.05" -> "minus one thousand two hundred thirty-four point zero
    five". Integers with a leading zero ("007") are read digit by digit."""
    sign = "minus " if text[:1] in "-−" else ""
    whole, _, fraction = text.lstrip("-−").replace(",", "").partition(".")
    if len(whole) > 1 and whole.startswith("0"):
        words = digits(whole)
    else:
        words = cardinal(int(whole)) if whole else ""
    if fraction:
        words = f"{words} point {digits(fraction)}".strip()
    return sign + words


# --- context helpers ------------------------------------------------------------------------------


def _previous_word(m: re.Match[str]) -> str:
    found = re.search(r"(\w+)\W*$", m.string[: m.start()])
    return found.group(1) if found else ""


def _next_word(m: re.Match[str]) -> str:
    found = re.match(r"\W*?(\w+)", m.string[m.end() :])
    return found.group(1) if found else ""


def _next_is_word(m: re.Match[str]) -> bool:
    return re.match(r"\s*[^\W\d_]", m.string[m.end() :]) is not None


# --- the rules ------------------------------------------------------------------------------------

_START = r"(?<![\w.,])"  # not inside a word or another number
_NUM = r"(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?"
_SIGNED = rf"(?:(?<![\w\-−])[-−])?{_START}{_NUM}"
_END_OF_URL = r"[^\s<>\"'.,;:!?)\]]"  # a URL does not end in punctuation
_TLDS = (
    "com|org|net|edu|gov|io|ai|dev|app|co|uk|us|de|fr|es|nl|ca|au|eu|info|biz|me|tv|ly|xyz|"
    "tech|cloud|site|online|jp"
)
# fmt: off
_MONTHS = (
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
)
# fmt: on
_MONTH_NAMES = "|".join(
    (*_MONTHS, "Jan", "Feb", "Mar", "Apr", "Jun", "Jul", "Aug", "Sept", "Sep", "Oct", "Nov", "Dec")
)
_DAY = r"(?:[12]\d|3[01]|0?[1-9])"
_YEAR = re.compile(r"1[1-9]\d\d|20\d\d")
# fmt: off
_YEAR_CUES = frozenset((
    "in", "since", "by", "from", "until", "till", "to", "of", "year", "circa", "around", "before",
    "after", "during", "early", "late", "mid", "spring", "summer", "autumn", "fall", "winter",
    *(month.lower() for month in _MONTHS),
))
# fmt: on
_CURRENCIES = {
    "$": ("dollar", "dollars", "cent", "cents"),
    "€": ("euro", "euros", "cent", "cents"),
    "£": ("pound", "pounds", "penny", "pence"),
    "¥": ("yen", "yen", "", ""),
    "₹": ("rupee", "rupees", "paisa", "paise"),
}
_MONEY_SCALES = {
    "k": "thousand", "K": "thousand", "thousand": "thousand",
    "m": "million", "M": "million", "mn": "million", "million": "million",
    "b": "billion", "B": "billion", "bn": "billion", "billion": "billion",
    "T": "trillion", "tn": "trillion", "trillion": "trillion",
}  # fmt: skip
_UNITS = {
    "km": ("kilometer", "kilometers"), "cm": ("centimeter", "centimeters"),
    "mm": ("millimeter", "millimeters"), "mi": ("mile", "miles"), "ft": ("foot", "feet"),
    "kg": ("kilogram", "kilograms"), "g": ("gram", "grams"), "mg": ("milligram", "milligrams"),
    "lb": ("pound", "pounds"), "lbs": ("pound", "pounds"), "oz": ("ounce", "ounces"),
    "ml": ("milliliter", "milliliters"), "mL": ("milliliter", "milliliters"),
    "mph": ("mile per hour", "miles per hour"),
    "km/h": ("kilometer per hour", "kilometers per hour"),
    "kph": ("kilometer per hour", "kilometers per hour"),
    "°C": ("degree Celsius", "degrees Celsius"),
    "°F": ("degree Fahrenheit", "degrees Fahrenheit"),
    "°": ("degree", "degrees"),
    "KB": ("kilobyte", "kilobytes"), "MB": ("megabyte", "megabytes"),
    "GB": ("gigabyte", "gigabytes"), "TB": ("terabyte", "terabytes"),
    "Hz": ("hertz", "hertz"), "kHz": ("kilohertz", "kilohertz"), "MHz": ("megahertz", "megahertz"),
    "GHz": ("gigahertz", "gigahertz"), "kW": ("kilowatt", "kilowatts"),
    "kWh": ("kilowatt hour", "kilowatt hours"),
    "ms": ("millisecond", "milliseconds"), "sec": ("second", "seconds"),
    "secs": ("second", "seconds"), "min": ("minute", "minutes"), "mins": ("minute", "minutes"),
    "hr": ("hour", "hours"), "hrs": ("hour", "hours"),
}  # fmt: skip
_TITLES = {
    "Mr.": "Mister", "Mrs.": "Missus", "Ms.": "Miz", "Prof.": "Professor", "Jr.": "Junior",
    "Sr.": "Senior", "Mt.": "Mount", "Ave.": "Avenue", "Blvd.": "Boulevard",
    "Inc.": "Incorporated", "Ltd.": "Limited", "Corp.": "Corporation",
}  # fmt: skip
_BEFORE_OR_AFTER_NAME = {"Dr.": ("Doctor", "Drive"), "St.": ("Saint", "Street")}
"""Read the first way before a name ("Dr. Smith"), the second after one ("Elm Dr.")."""
_LATIN = {
    "etc.": "et cetera", "e.g.": "for example", "i.e.": "that is", "vs.": "versus",
    "approx.": "approximately", "cf.": "compare", "a.m.": "a m", "p.m.": "p m",
}  # fmt: skip
"""Matched in any case ("E.g."); "vs" without its dot only in lower case ("VS Code" stays)."""
_SYMBOLS = {"&": "and", "+": "plus", "=": "equals", "@": "at", "%": "percent", "×": "times"}
_SPOKEN_SEPARATORS = {
    ".": "dot", "@": "at", "/": "slash", "-": "dash", "_": "underscore", ":": "colon",
    "?": "question mark", "=": "equals", "&": "and", "#": "hash", "+": "plus", "~": "tilde",
    "%": "percent",
}  # fmt: skip
_SENTENCE_TAIL = re.compile(r"[\s\"')\]}»”’*_]*")


def _alternatives(words: Iterable[str]) -> str:
    """A regex alternation of ``words``, longest first (so "lbs" wins over "lb")."""
    return "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))


def _spell_address(text: str) -> str:
    """Read an address piece by piece: "a.b@c.io" -> "a dot b at c dot io"."""
    pieces = re.findall(r"[^\W_]+|\S", text)
    return " ".join("w w w" if p == "www" else _SPOKEN_SEPARATORS.get(p, p) for p in pieces)


def _url(m: re.Match[str]) -> str:
    return _spell_address(re.sub(r"^https?://", "", m.group()).rstrip("/"))


def _email(m: re.Match[str]) -> str:
    return _spell_address(m.group())


def _money(m: re.Match[str]) -> str:
    sign = "minus " if m["sign"] else ""
    one, many, cent, cents = _CURRENCIES[m["cur"]]
    amount, scale = m["num"].replace(",", ""), m.groupdict().get("scale")
    if scale:
        return f"{sign}{number(amount)} {_MONEY_SCALES[scale]} {many}"
    whole, _, fraction = amount.partition(".")
    if not fraction or not cent or len(fraction) > 2:
        return f"{sign}{number(amount)} {one if amount == '1' else many}"
    units, hundredths = int(whole or "0"), int(fraction.ljust(2, "0"))
    parts = []
    if units or not hundredths:
        parts.append(f"{cardinal(units)} {one if units == 1 else many}")
    if hundredths:
        parts.append(f"{cardinal(hundredths)} {cent if hundredths == 1 else cents}")
    return sign + " and ".join(parts)


def _percent(m: re.Match[str]) -> str:
    return f"{number(m['num'])} percent"


def _unit(m: re.Match[str]) -> str:
    one, many = _UNITS[m["unit"]]
    return f"{number(m['num'])} {one if m['num'].lstrip('-−') == '1' else many}"


def _on_the_hour(hour: int, meridiem: bool) -> str:
    """ "three p m", "ten o'clock", "fourteen hundred"."""
    if meridiem:
        return cardinal(hour)
    return f"{cardinal(hour)} o'clock" if hour <= 12 else f"{cardinal(hour)} hundred"


def _clock(m: re.Match[str]) -> str:
    hour, minute = int(m["h"]), int(m["m"])
    if minute == 0:
        words = _on_the_hour(hour, bool(m["ap"]))
    elif minute < 10:
        words = f"{cardinal(hour)} oh {cardinal(minute)}"
    else:
        words = f"{cardinal(hour)} {cardinal(minute)}"
    if m["s"] and int(m["s"]):
        words += f" and {cardinal(int(m['s']))} seconds"
    return words + _meridiem(m)


def _hour(m: re.Match[str]) -> str:
    return cardinal(int(m["h"])) + _meridiem(m)


def _meridiem(m: re.Match[str]) -> str:
    return f" {m['ap'].lower()} m" if m["ap"] else ""


def _year_of(text: str) -> str:
    value = int(text)
    if len(text) == 2:
        value += 2000 if value < 70 else 1900
    return year(value)


def _date_iso(m: re.Match[str]) -> str:
    return f"{_MONTHS[int(m['mo']) - 1]} {ordinal(int(m['d']))}, {_year_of(m['y'])}"


def _date_numeric(m: re.Match[str]) -> str:
    """US order (month/day/year) unless the first number cannot be a month."""
    first, second = int(m["a"]), int(m["b"])
    if first <= 12 and second <= 31:
        month, day = first, second
    elif second <= 12 and first <= 31:
        month, day = second, first
    else:
        return " slash ".join(number(part) for part in m.group().split("/"))
    return f"{_MONTHS[month - 1]} {ordinal(day)}, {_year_of(m['y'])}"


def _month_name(abbreviation: str) -> str:
    return next(month for month in _MONTHS if month.startswith(abbreviation[:3]))


def _date_month_day(m: re.Match[str]) -> str:
    words = f"{_month_name(m['mon'])} {ordinal(int(m['d']))}"
    return words + (f", {year(int(m['y']))}" if m["y"] else "")


def _date_day_month(m: re.Match[str]) -> str:
    the = "" if _previous_word(m).lower() == "the" else "the "
    words = f"{the}{ordinal(int(m['d']))} of {_month_name(m['mon'])}"
    return words + (f", {year(int(m['y']))}" if m["y"] else "")


def _decade(m: re.Match[str]) -> str:
    return _plural(year(int(m["y"])) if m["y"] else cardinal(int(m["d"])))


def _year_or_count(m: re.Match[str]) -> str:
    """A year after a cue ("in 1999") or when no word follows ("2024."); else a count."""
    if _previous_word(m).lower() in _YEAR_CUES or not _next_is_word(m):
        return year(int(m.group()))
    return cardinal(int(m.group()))


def _range(m: re.Match[str]) -> str:
    """A range or score: "5-10" -> "five to ten"; years stay years ("2024-25" -> "twenty
    twenty-four to twenty-five")."""
    low, high = m["a"], m["b"]
    if _YEAR.fullmatch(low):
        return f"{year(int(low))} to {year(int(high)) if len(high) == 4 else number(high)}"
    return f"{number(low)} to {number(high)}"


def _fraction(m: re.Match[str]) -> str:
    numerator, denominator = int(m["a"]), int(m["b"])
    name = "half" if denominator == 2 else "quarter" if denominator == 4 else ordinal(denominator)
    return f"{cardinal(numerator)} {name if numerator == 1 else _plural_noun(name)}"


def _plural_noun(noun: str) -> str:
    return noun[:-1] + "ves" if noun == "half" else noun + "s"


def _ordinal(m: re.Match[str]) -> str:
    return ordinal(int(m["n"].replace(",", "")))


def _version(m: re.Match[str]) -> str:
    words = " point ".join(cardinal(int(part)) for part in m["v"].split("."))
    return f"version {words}" if m.group().startswith("v") else words


def _phone(m: re.Match[str]) -> str:
    return ", ".join(digits(group) for group in re.findall(r"\d+", m.group()))


def _number(m: re.Match[str]) -> str:
    return number(m.group())


def _title(m: re.Match[str]) -> str:
    word = m.group()
    if word in _BEFORE_OR_AFTER_NAME:
        before_name, after_name = _BEFORE_OR_AFTER_NAME[word]
        after_a_name = _previous_word(m)[:1].isupper() and not _next_word(m)[:1].isupper()
        return after_name if after_a_name else before_name
    return _TITLES[word]


def _latin(m: re.Match[str]) -> str:
    return _LATIN.get(m.group().lower(), "versus")


def _symbol(m: re.Match[str]) -> str:
    return _SYMBOLS[m.group()]


def _drop(m: re.Match[str]) -> str:
    return ""


def _times(m: re.Match[str]) -> str:
    return "times"


def _by(m: re.Match[str]) -> str:
    """Dimensions: "1920x1080", "2×4"."""
    return f"{number(m['a'])} by {number(m['b'])}"


def _number_sign(m: re.Match[str]) -> str:
    return "number"


@dataclass(frozen=True)
class _Rule:
    name: str
    pattern: str
    """May use named groups; ``read`` gets this pattern's own match."""
    read: Callable[[re.Match[str]], str]


_RULES = (
    _Rule("email", r"(?<![\w.+-])[\w.+-]+@[\w-]+(?:\.[\w-]+)+", _email),
    _Rule(
        "url", rf"\bhttps?://[^\s<>\"]*{_END_OF_URL}|(?<![\w.])www\.[^\s<>\"]*{_END_OF_URL}", _url
    ),
    _Rule(
        "domain",
        rf"(?<![\w.@/-])[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.(?:{_TLDS})(?![\w-])"
        rf"(?:/(?:[^\s<>\"]*{_END_OF_URL})?)?",
        _url,
    ),
    _Rule(
        "money",
        rf"(?P<sign>(?<![\w\-−])[-−])?(?P<cur>[$€£¥₹])\s?(?P<num>{_NUM})"
        rf"(?:\s?(?P<scale>{_alternatives(_MONEY_SCALES)})(?!\w))?",
        _money,
    ),
    _Rule(
        "money_after",
        rf"(?P<sign>(?<![\w\-−])[-−])?{_START}(?P<num>{_NUM})\s?(?P<cur>[€£¥₹])",
        _money,
    ),
    _Rule(
        "phone",
        r"(?<![\w+])(?:\+?1[-.\s])?(?:\(\d{3}\)\s?\d{3}-\d{4}|\d{3}-\d{3}-\d{4}"
        r"|\d{3}\.\d{3}\.\d{4})(?![\w-])",
        _phone,
    ),
    _Rule(
        "date_iso",
        rf"{_START}(?P<y>\d{{4}})-(?P<mo>0[1-9]|1[0-2])-(?P<d>0[1-9]|[12]\d|3[01])"
        r"(?![\w-])",
        _date_iso,
    ),
    _Rule(
        "date_numeric",
        rf"{_START}(?P<a>\d{{1,2}})/(?P<b>\d{{1,2}})/(?P<y>\d{{4}}|\d{{2}})"
        r"(?![\w/])",
        _date_numeric,
    ),
    _Rule(
        "date_month_day",
        rf"\b(?P<mon>{_MONTH_NAMES})\.?\s(?P<d>{_DAY})(?:st|nd|rd|th)?(?!\w)"
        r"(?:,?\s(?P<y>\d{4})(?!\w))?",
        _date_month_day,
    ),
    _Rule(
        "date_day_month",
        rf"{_START}(?P<d>{_DAY})(?:st|nd|rd|th)?\s(?:of\s)?"
        rf"(?P<mon>{_MONTH_NAMES})\b\.?(?:,?\s(?P<y>\d{{4}})(?!\w))?",
        _date_day_month,
    ),
    _Rule(
        "clock",
        rf"{_START}(?P<h>[01]?\d|2[0-3]):(?P<m>[0-5]\d)(?::(?P<s>[0-5]\d))?"
        r"(?:\s?(?P<ap>[AaPp])\.?[Mm](?!\w)\.?)?(?![\w:])",
        _clock,
    ),
    _Rule("hour", rf"{_START}(?P<h>1[0-2]|0?[1-9])\s?(?P<ap>[AaPp])\.?[Mm](?!\w)\.?", _hour),
    _Rule("percent", rf"(?P<num>{_SIGNED})\s?%", _percent),
    _Rule("unit", rf"(?P<num>{_SIGNED})\s?(?P<unit>{_alternatives(_UNITS)})(?![\w/])", _unit),
    _Rule("decade", r"(?<![\w'’])(?P<y>1[1-9]\d0|20\d0)s(?!\w)|['’](?P<d>[1-9]0)s(?!\w)", _decade),
    _Rule("ordinal", rf"{_START}(?P<n>\d{{1,3}}(?:,\d{{3}})+|\d+)(?:st|nd|rd|th)(?!\w)", _ordinal),
    _Rule("by", rf"{_START}(?P<a>{_NUM})\s?[x×]\s?(?P<b>{_NUM})(?!\w|[.,]\d)", _by),
    _Rule("version", r"(?<![\w.])v?(?P<v>\d+(?:\.\d+){2,})(?![\w]|\.\d)", _version),
    _Rule("range", rf"{_START}(?P<a>\d+)\s?[-–]\s?(?P<b>\d+)(?!\w|[.,:/-]\d)", _range),
    _Rule("fraction", rf"{_START}(?P<a>[1-9])/(?P<b>[2-9]|10)(?![\w%/]|[.,]\d)", _fraction),
    _Rule("year", rf"{_START}{_YEAR.pattern}(?![\w%]|[.,]\d)", _year_or_count),
    _Rule("number", rf"{_SIGNED}|(?<![\w.])\.\d+", _number),
    _Rule("title", rf"(?<![\w.])(?:{_alternatives([*_TITLES, *_BEFORE_OR_AFTER_NAME])})", _title),
    _Rule("latin", rf"(?<![\w.])(?:(?i:{_alternatives(_LATIN)})|vs)(?![\w.])", _latin),
    _Rule("number_sign", r"#(?=\d)|\bNo\.(?=\s?\d)", _number_sign),
    _Rule("times", r"(?<=\d)\s?\*\s?(?=\d)", _times),
    _Rule("markdown", r"(?m:^\s*(?:#{1,6}|[-•])\s+)|\*+|`+", _drop),
    _Rule("symbol", f"[{re.escape(''.join(_SYMBOLS))}]", _symbol),
)
_ANY_RULE = re.compile(
    "|".join(
        f"(?P<{rule.name}>{re.sub(r'[(][?]P<[a-z]+>', '(?:', rule.pattern)})" for rule in _RULES
    )
)
_BY_NAME = {rule.name: (rule, re.compile(rule.pattern)) for rule in _RULES}


def _read(m: re.Match[str]) -> str:
    """The spoken form of one match of ``_ANY_RULE``."""
    assert m.lastgroup is not None
    rule, regex = _BY_NAME[m.lastgroup]
    own = regex.match(m.string, m.start())  # same pattern, same place: the same match, with groups
    assert own is not None and own.end() == m.end(), (rule.name, m.group())
    words: str = rule.read(own)
    if not words:
        return words
    if m.group().endswith(".") and _SENTENCE_TAIL.fullmatch(m.string, m.end()):
        words += "."  # "... on Main St." keeps its full stop
    if m.start() > 0 and m.string[m.start() - 1].isalnum():
        words = " " + words  # "R&D" -> "R and D"
    if m.end() < len(m.string) and m.string[m.end()].isalnum():
        words += " "  # "4K" -> "four K"
    return words


def normalize(text: str, lang: str = "en") -> str:
    """``text`` as words an English TTS voice reads correctly. ``lang`` other than English
    ("en", "en-US", ...) returns ``text`` unchanged: the engine's phonemizer reads it as it can."""
    if not lang.lower().startswith("en"):
        return text
    return _ANY_RULE.sub(_read, text)
