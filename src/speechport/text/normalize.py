"""Text normalisation before espeak-ng: only what espeak-ng 1.51 reads badly or what would
break the punctuation-preserving split (``phonemes.phonemize``). Numbers, ordinals and most
symbols are left to espeak-ng, which reads them well.

- typographic apostrophes and dashes become the ones espeak-ng and the phoneme vocabulary
  know (``’`` -> ``'``, `` - `` and ``--`` -> ``—``, ``...`` -> ``…``);
- a few abbreviations whose period would otherwise end a sentence (``Dr.``, ``Mr.``, ``e.g.``,
  ``St.``: "Saint" before a name, "Street" otherwise) are spelled out;
- initialisms lose their periods (``U.S.A.`` -> ``USA``, which espeak-ng spells out) and
  ``#1`` becomes "number 1";
- currency amounts (espeak-ng says "dollar five point five zero" for ``$5.50``) are spelled
  as "5 dollars 50 cents";
- control characters and runs of white space become one space.
"""

from __future__ import annotations

import re
import unicodedata

_CHARACTERS = {
    "\u2018": "'",  # ‘
    "\u2019": "'",  # ’
    "\u02bc": "'",  # ʼ
    "\u2032": "'",  # ′
    "\u2013": "—",  # – en dash
    "\u2012": "—",
    "\u2015": "—",
    "\u00a0": " ",
}

_ABBREVIATIONS = {
    "Mr.": "Mister",
    "Mrs.": "Missus",
    "Ms.": "Miz",
    "Dr.": "Doctor",
    "Prof.": "Professor",
    "Sr.": "Senior",
    "Jr.": "Junior",
    "vs.": "versus",
    "e.g.": "for example",
    "i.e.": "that is",
    "etc.": "et cetera",
    "approx.": "approximately",
}
_ABBREVIATION = re.compile(
    r"(?<![\w.])(" + "|".join(re.escape(a) for a in _ABBREVIATIONS) + r")(?=\s|$|[,;:!?])",
    re.IGNORECASE,
)
_LOWER_ABBREVIATIONS = {k.lower(): v for k, v in _ABBREVIATIONS.items()}

_CURRENCIES = {
    "$": ("dollar", "dollars", "cent", "cents"),
    "€": ("euro", "euros", "cent", "cents"),
    "£": ("pound", "pounds", "penny", "pence"),
}
_CURRENCY = re.compile(r"([$€£])\s?(\d{1,3}(?:,\d{3})+|\d+)(?:\.(\d{2}))?(?!\d)")
_DASH = re.compile(r"\s+-{1,2}\s+|-{2,}")
_ELLIPSIS = re.compile(r"\.{3,}")
_SPACE = re.compile(r"\s+")
_INITIALISM = re.compile(r"\b(?:[A-Za-z]\.){2,}(?![A-Za-z])")  # "U.S.A." -> "USA"
_NUMBER_SIGN = re.compile(r"#(?=\d)")  # "#1" -> "number 1" (espeak-ng says "hash")
_SAINT = re.compile(r"\bSt\.(?=\s+[A-Z])")  # "St. Louis"; any other "St." is a street
_STREET = re.compile(r"\bSt\.")


def normalize_text(text: str) -> str:
    """``text`` in the form the G2P reads best (see the module's docstring)."""
    text = unicodedata.normalize("NFC", text)
    text = "".join(_CHARACTERS.get(c, c) for c in text)
    text = "".join(" " if unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") else c for c in text)
    text = _ELLIPSIS.sub("…", text)
    text = _DASH.sub(" — ", text)
    text = _CURRENCY.sub(_spell_currency, text)
    text = _STREET.sub("Street", _SAINT.sub("Saint", text))
    text = _NUMBER_SIGN.sub("number ", text)
    text = _ABBREVIATION.sub(lambda m: _LOWER_ABBREVIATIONS[m.group(1).lower()], text)
    text = _INITIALISM.sub(lambda m: m.group(0).replace(".", "").upper(), text)
    return _SPACE.sub(" ", text).strip()


def _spell_currency(match: re.Match[str]) -> str:
    one, many, sub_one, sub_many = _CURRENCIES[match.group(1)]
    whole = match.group(2).replace(",", "")
    words = f"{whole} {one if whole == '1' else many}"
    if match.group(3) and int(match.group(3)):
        cents = int(match.group(3))
        words += f" {cents} {sub_one if cents == 1 else sub_many}"
    return words
