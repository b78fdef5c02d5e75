"""Reading Arabic numerals aloud in Mandarin: cardinals, digit strings and decimals.

These are the building blocks the normaliser's rules use; they never look at context.
"""

from __future__ import annotations

DIGIT_NAMES = "零一二三四五六七八九"

# Powers of ten that have their own character, largest first. Larger numbers are built recursively,
# e.g. 10^9 = 十亿: the part above a unit is itself read as a number.
_NAMED_POWERS = ((8, "亿"), (4, "万"), (3, "千"), (2, "百"), (1, "十"))
_YI = 8


def read_digits(digits: str, one_as_yao: bool = False) -> str:
    """Read digit by digit: "2024" -> "二零二四". Phone numbers and codes say 一 as 幺."""
    spoken = "".join(DIGIT_NAMES[int(d)] for d in digits)
    return spoken.replace("一", "幺") if one_as_yao else spoken


def _cardinal_parts(digits: str) -> list[str]:
    significant = digits.lstrip("0")
    if not significant:
        return []
    if len(significant) == 1:
        # a dropped leading zero inside a larger number is spoken once: 105 -> 一百零五
        if len(significant) < len(digits):
            return [DIGIT_NAMES[0], DIGIT_NAMES[int(significant)]]
        return [DIGIT_NAMES[int(significant)]]
    power, unit = next((p, u) for p, u in _NAMED_POWERS if p < len(significant))
    head, tail = digits[:-power], digits[-power:]
    return _cardinal_parts(head) + [unit] + _cardinal_parts(tail)


def read_cardinal(digits: str) -> str:
    """Read an integer as a quantity: "1024" -> "一千零二十四", "15" -> "十五", "000" -> "零"."""
    if not digits:
        return ""
    digits = digits.lstrip("0")
    if not digits:
        return DIGIT_NAMES[0]
    # Above 亿 the recursion only ever splits off the last eight digits, so read the head, then each
    # eight-digit group after a 亿: the same parts, without recursion one level per eight digits
    # (a RecursionError past ~8,000 digits, where upstream crashes) or the quadratic slicing.
    head = len(digits) - _YI * ((len(digits) - 1) // _YI)
    parts = _cardinal_parts(digits[:head])
    for start in range(head, len(digits), _YI):
        parts.append("亿")
        parts.extend(_cardinal_parts(digits[start : start + _YI]))
    # a leading 一十 is said 十 (十五, not 一十五); only at the very start, so 一百一十 keeps its 一
    if len(parts) >= 2 and parts[0] == "一" and parts[1] == "十":
        parts = parts[1:]
    return "".join(parts)


def read_number(number: str) -> str:
    """Read an unsigned integer or decimal: "3.14" -> "三点一四", ".5" -> "零点五".

    Trailing zeros of the fraction collapse to a single spoken 零 rather than vanishing
    ("3.20" -> "三点二零", "3.00" -> "三点零"): an upstream quirk kept so the readings match.
    """
    integer, _, fraction = number.partition(".")
    if "." in fraction:
        raise ValueError(f"{number!r} has more than one decimal point")
    spoken = read_cardinal(integer)
    fraction = fraction.rstrip("0") + "0" if fraction.endswith("0") else fraction
    if fraction:
        spoken = (spoken or DIGIT_NAMES[0]) + "点" + read_digits(fraction)
    return spoken
