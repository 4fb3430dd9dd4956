"""What an SMS costs: its encoding, its segments, and accent folding that is recorded."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass
from typing import Literal

Encoding = Literal["GSM-7", "UCS-2"]

# GSM 03.38 default alphabet, in table order (0x00 to 0x7F, ESC at 0x1B left out).
GSM_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ"
    " !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
# The extension table: each costs an escape septet plus its own.
GSM_EXTENSION = frozenset("\f^{}\\[~]|€")

GSM_SINGLE, GSM_PART = 160, 153
UCS2_SINGLE, UCS2_PART = 70, 67

# Characters that turn a whole message into UCS-2 although a GSM-7 spelling says the same.
_SYMBOLS = {
    "\u00a0": " ",  # no-break space, common in amounts pasted from spreadsheets
    "\u2007": " ",
    "\u202f": " ",
    "\u2018": "'",
    "\u2019": "'",
    "\u201c": '"',
    "\u201d": '"',
    "\u2013": "-",
    "\u2014": "-",
    "\u2026": "...",
    "\u00b4": "'",
    "ª": "a",
    "º": "o",
    "°": "o",
}
# "N°" and "Nº" abbreviate "número"; "No." reads the same and is GSM-7.
_NUMBER_SIGN = re.compile(r"\b([Nn])[°º]")


@dataclass(frozen=True)
class SmsCost:
    """How a text travels as SMS: ``septets`` is None for UCS-2, where units are UTF-16."""

    encoding: Encoding
    segments: int
    characters: int
    septets: int | None
    units: int  # septets for GSM-7, UTF-16 code units for UCS-2: what the limits count
    non_gsm: tuple[str, ...] = ()  # the characters that forced UCS-2, first seen first


@dataclass(frozen=True)
class FieldChange:
    """One field whose value was folded to GSM-7, before and after."""

    field: str
    before: str
    after: str


@dataclass(frozen=True)
class Transliteration:
    """The values after folding, and every change made, for the contact record."""

    values: dict[str, str]
    changes: tuple[FieldChange, ...]
    # Fields whose value still forces UCS-2: left alone by policy, or with no plain spelling.
    still_ucs2: tuple[str, ...]


def is_gsm7(char: str) -> bool:
    """True when a character has a GSM-7 septet, in the basic or the extension table."""
    return char in GSM_BASIC or char in GSM_EXTENSION


def analyse_sms(text: str) -> SmsCost:
    """Count the encoding and the true segments a carrier bills for a text."""
    non_gsm = tuple(dict.fromkeys(char for char in text if not is_gsm7(char)))
    if not non_gsm:
        sizes = [2 if char in GSM_EXTENSION else 1 for char in text]
        units = sum(sizes)
        segments = _pack(sizes, GSM_SINGLE, GSM_PART)
        return SmsCost("GSM-7", segments, len(text), units, units)
    sizes = [2 if ord(char) > 0xFFFF else 1 for char in text]
    segments = _pack(sizes, UCS2_SINGLE, UCS2_PART)
    return SmsCost("UCS-2", segments, len(text), None, sum(sizes), non_gsm)


def _pack(sizes: list[int], single: int, part: int) -> int:
    """Fill segments in order; an escape pair or a surrogate pair never straddles two."""
    total = sum(sizes)
    if total == 0:
        return 0
    if total <= single:
        return 1
    segments, used = 1, 0
    for size in sizes:
        if used + size > part:
            segments, used = segments + 1, 0
        used += size
    return segments


def fold_to_gsm7(text: str) -> str:
    """Spell a text in GSM-7 where a plain equivalent exists; é and ñ stay, á becomes a."""
    text = _NUMBER_SIGN.sub(r"\1o.", text)
    return "".join(_fold_char(char) for char in text)


def _fold_char(char: str) -> str:
    if is_gsm7(char):
        return char
    if char in _SYMBOLS:
        return _SYMBOLS[char]
    base = "".join(
        part
        for part in unicodedata.normalize("NFD", char)
        if not unicodedata.combining(part)
    )
    return base if base and all(is_gsm7(part) for part in base) else char


def transliterate(
    values: Mapping[str, str], fields: Collection[str]
) -> Transliteration:
    """Fold to GSM-7 only the named fields; report each change and what still needs UCS-2."""
    folded: dict[str, str] = {}
    changes: list[FieldChange] = []
    for name, value in values.items():
        # Names are how debtors recognise a message is theirs: only respelt when asked.
        after = fold_to_gsm7(value) if name in fields else value
        folded[name] = after
        if after != value:
            changes.append(FieldChange(name, value, after))
    still_ucs2 = tuple(
        name for name, value in folded.items() if not all(map(is_gsm7, value))
    )
    return Transliteration(folded, tuple(changes), still_ucs2)


def describe_changes(changes: Collection[FieldChange]) -> Iterator[str]:
    """One line per change, for the ledger: ``creditor_name: 'Línea' -> 'Linea'``."""
    for change in changes:
        yield f"{change.field}: {change.before!r} -> {change.after!r}"
