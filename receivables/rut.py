"""Chilean RUT (rol único tributario): normalised, and its check digit verified."""

from __future__ import annotations

import re

# As people write it: 76.123.456-7, 76123456-7, 761234567, with k or K as check digit.
_WRITTEN_RUT = re.compile(
    r"(?<![0-9.])([0-9]{1,2}(?:\.?[0-9]{3}){2})-?([0-9kK])(?![0-9A-Za-z])"
)
_BARE_RUT = re.compile(r"([0-9]{1,8})-?([0-9K])")


def check_digit(body: int) -> str:
    """The SII's modulo-11 check digit of a RUT's number."""
    total, factor = 0, 2
    while body:
        total += (body % 10) * factor
        body //= 10
        factor = 2 if factor == 7 else factor + 1
    digit = 11 - total % 11
    return {11: "0", 10: "K"}.get(digit, str(digit))


def normalise_rut(text: str) -> str | None:
    """``76123456-7`` for any way of writing a valid RUT; None when it is not one."""
    compact = text.replace(".", "").replace(" ", "").upper()
    match = _BARE_RUT.fullmatch(compact)
    if match is None:
        return None
    body, digit = match.groups()
    if check_digit(int(body)) != digit:
        return None
    return f"{int(body)}-{digit}"


def ruts_in(text: str) -> list[str]:
    """Every valid RUT written in free text, normalised, in order; a wrong check digit is none."""
    found: list[str] = []
    for match in _WRITTEN_RUT.finditer(text):
        rut = normalise_rut(match.group(1) + "-" + match.group(2))
        if rut is not None and rut not in found:
            found.append(rut)
    return found
