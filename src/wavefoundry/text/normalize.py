"""English text normalisation for text-to-speech, with no download.

What a reader says, spelled out in lowercase letters: Unicode folded to ASCII (`unidecode`),
currency, ordinals, decimals, years and plain numbers in words (`inflect`), the common
abbreviations of LJ Speech's books and VCTK's newspapers expanded. The same rules as Keith Ito's
`english_cleaners` for Tacotron (the ones NVIDIA's Tacotron 2 trains LJ Speech with), written
over well-kept packages. Punctuation stays: the symbol set (symbols.py) keeps what a reader
pauses at.
"""

from __future__ import annotations

import re
import unicodedata
from functools import cache

import inflect
from unidecode import unidecode

# Abbreviations read as words; matched case-insensitively, with their full stop, at a word start.
ABBREVIATIONS: dict[str, str] = {
    "mr": "mister",
    "mrs": "missus",
    "ms": "miss",
    "dr": "doctor",
    "st": "saint",
    "co": "company",
    "jr": "junior",
    "sr": "senior",
    "maj": "major",
    "gen": "general",
    "drs": "doctors",
    "rev": "reverend",
    "lt": "lieutenant",
    "hon": "honorable",
    "sgt": "sergeant",
    "capt": "captain",
    "esq": "esquire",
    "ltd": "limited",
    "col": "colonel",
    "ft": "fort",
    "no": "number",
    "vs": "versus",
    "etc": "et cetera",
}
# Currencies: symbol -> (unit, units, subunit, subunits).
CURRENCIES: dict[str, tuple[str, str, str, str]] = {
    "$": ("dollar", "dollars", "cent", "cents"),
    "£": ("pound", "pounds", "penny", "pence"),
    "€": ("euro", "euros", "cent", "cents"),
}
_SYMBOL_WORDS = {"%": " percent", "&": " and ", "+": " plus ", "@": " at "}

_ABBREVIATION = re.compile(r"\b(" + "|".join(ABBREVIATIONS) + r")\.", re.IGNORECASE)
_MONEY = re.compile(r"([$£€])\s?(\d[\d,]*(?:\.\d+)?)")
_GROUPED = re.compile(r"\d{1,3}(?:,\d{3})+")
_DECIMAL = re.compile(r"\d+\.\d+")
_ORDINAL = re.compile(r"\b(\d+)(st|nd|rd|th)\b", re.IGNORECASE)
_NUMBER = re.compile(r"\d+")
_WHITESPACE = re.compile(r"\s+")


@cache
def _engine() -> inflect.engine:
    return inflect.engine()


def _words(number: int | str) -> str:
    """A cardinal in words the way LJ Speech's normalized column reads it:
    123 -> "one hundred and twenty-three" (no commas)."""
    return _engine().number_to_words(str(number), andword="and").replace(",", "")


def _year_or_number(match: re.Match[str]) -> str:
    """Four digits from 1100 to 2099 read as a year (1862 -> eighteen sixty-two, 1805 ->
    eighteen oh five, 1900 -> nineteen hundred, 2005 -> two thousand five); others as numbers."""
    digits = match.group(0)
    value = int(digits)
    if len(digits) == 4 and 1100 <= value < 2100 and not 2000 <= value < 2010:
        high, low = divmod(value, 100)
        if low == 0:
            return f"{_words(high)} hundred"
        if low < 10:
            return f"{_words(high)} oh {_words(low)}"
        return f"{_words(high)} {_words(low)}"
    if 2000 <= value < 2010 and len(digits) == 4:
        return "two thousand" + (f" {_words(value - 2000)}" if value > 2000 else "")
    return _words(value)


def _money(match: re.Match[str]) -> str:
    unit, units, subunit, subunits = CURRENCIES[match.group(1)]
    whole, _, fraction = match.group(2).replace(",", "").partition(".")
    major = int(whole or 0)
    minor = int((fraction + "00")[:2]) if fraction else 0
    parts = []
    if major or not minor:
        parts.append(f"{_words(major)} {unit if major == 1 else units}")
    if minor:
        parts.append(f"{_words(minor)} {subunit if minor == 1 else subunits}")
    return " ".join(parts[:1] + [f"and {p}" for p in parts[1:]]) if len(parts) > 1 else parts[0]


def _decimal(match: re.Match[str]) -> str:
    whole, _, fraction = match.group(0).partition(".")
    return f"{_words(whole)} point " + " ".join(_words(d) for d in fraction)


def _ordinal(match: re.Match[str]) -> str:
    return _engine().number_to_words(_engine().ordinal(match.group(1))).replace(",", "")


def folded_away(text: str) -> set[str]:
    """The characters of `text` that ASCII folding drops without a trace: symbols `unidecode`
    has no spelling for (e.g. "☃"), which `normalize` would make vanish unreported. Combining
    marks, separators and format characters are not among them (their text keeps its sense)."""
    return {
        c
        for c in set(text)
        if not c.isascii() and unicodedata.category(c)[0] not in "MZC" and not unidecode(c).strip()
    }


def normalize(text: str) -> str:
    """Written English to what is said, lowercase ASCII with punctuation kept.

    "Mr. Fry paid $3.50 on the 2nd of May, 1862." ->
    "mister fry paid three dollars and fifty cents on the second of may, eighteen sixty-two."
    Never raises; characters it cannot spell stay for the symbol set to drop and report.
    """
    text = _MONEY.sub(_money, text)  # before ASCII folding turns "£" into "PS"
    text = unidecode(text)
    text = _ABBREVIATION.sub(lambda m: ABBREVIATIONS[m.group(1).lower()], text)
    text = _GROUPED.sub(lambda m: _words(m.group(0).replace(",", "")), text)  # never a year
    text = _DECIMAL.sub(_decimal, text)
    text = _ORDINAL.sub(_ordinal, text)
    text = _NUMBER.sub(_year_or_number, text)
    for symbol, word in _SYMBOL_WORDS.items():
        text = text.replace(symbol, word)
    return _WHITESPACE.sub(" ", text.lower()).strip()
