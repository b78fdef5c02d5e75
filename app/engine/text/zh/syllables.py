"""Pinyin syllable -> (initial phone, final phone), the Opencpop "strict" convention GPT-SoVITS uses.

Upstream reads this from a 429-line table; here the same facts are written as the list of valid
syllables per initial plus the few spelling rules that turn a syllable into two phones:

* zero-initial syllables that start with a vowel get a pseudo initial: a.. -> "AA", e.. -> "EE", o.. -> "OO",
  and keep the whole syllable as the final (``ang`` -> ``AA ang``);
* after j, q, x and y a written "u" is really "ü" and becomes "v" (``ju`` -> ``j v``, ``yuan`` -> ``y van``);
  the syllable may also arrive already spelled with "v" (``jv``);
* the "buzzing" i after zh/ch/sh/r is ``ir``, after z/c/s it is ``i0``;
* y + an / y + e are the fronted vowels ``En`` / ``E`` (``yan`` -> ``y En``, ``ye`` -> ``y E``).

Anything not listed is not a Mandarin syllable of the inventory, and the model has no phones for it.
"""

from __future__ import annotations

# Finals as written after each initial. "" stands for the vowel-initial syllables (a, ai, ...).
_FINALS_BY_INITIAL: dict[str, str] = {
    "": "a ai an ang ao e ei en eng er o ou",
    "b": "a ai an ang ao ei en eng i ian iao ie in ing o u",
    "p": "a ai an ang ao ei en eng i ian iao ie in ing o ou u",
    "m": "a ai an ang ao e ei en eng i ian iao ie in ing iu o ou u",
    "f": "a an ang ei en eng o ou u",
    "d": "a ai an ang ao e ei en eng i ia ian iao ie ing iu ong ou u uan ui un uo",
    "t": "a ai an ang ao e ei eng i ian iao ie ing ong ou u uan ui un uo",
    "n": "a ai an ang ao e ei en eng i ian iang iao ie in ing iu ong ou u uan un uo v ve",
    "l": "a ai an ang ao e ei eng i ia ian iang iao ie in ing iu o ong ou u uan un uo v ve",
    "g": "a ai an ang ao e ei en eng ong ou u ua uai uan uang ui un uo",
    "k": "a ai an ang ao e ei en eng ong ou u ua uai uan uang ui un uo",
    "h": "a ai an ang ao e ei en eng ong ou u ua uai uan uang ui un uo",
    "j": "i ia ian iang iao ie in ing iong iu u uan ue un",
    "q": "i ia ian iang iao ie in ing iong iu u uan ue un",
    "x": "i ia ian iang iao ie in ing iong iu u uan ue un",
    "zh": "a ai an ang ao e ei en eng i ong ou u ua uai uan uang ui un uo",
    "ch": "a ai an ang ao e en eng i ong ou u ua uai uan uang ui un uo",
    "sh": "a ai an ang ao e ei en eng i ou u ua uai uan uang ui un uo",
    "r": "an ang ao e en eng i ong ou u ua uan ui un uo",
    "z": "a ai an ang ao e ei en eng i ong ou u uan ui un uo",
    "c": "a ai an ang ao e ei en eng i ong ou u uan ui un uo",
    "s": "a ai an ang ao e en eng i ong ou u uan ui un uo",
    "y": "a an ang ao e i in ing o ong ou u uan ue un",
    "w": "a ai an ang ei en eng o u",
}

_INITIALS_LONGEST_FIRST = sorted((i for i in _FINALS_BY_INITIAL if i), key=len, reverse=True)
_ZERO_INITIAL_PHONE = {"a": "AA", "e": "EE", "o": "OO"}
_U_IS_UMLAUT_AFTER = {"j", "q", "x", "y"}


def _phones_for(initial: str, final: str) -> tuple[str, str]:
    if not initial:
        return _ZERO_INITIAL_PHONE[final[0]], final
    if initial in _U_IS_UMLAUT_AFTER and final.startswith("u"):
        final = "v" + final[1:]
    if final == "i" and initial in ("zh", "ch", "sh", "r"):
        final = "ir"
    elif final == "i" and initial in ("z", "c", "s"):
        final = "i0"
    elif initial == "y" and final in ("an", "e"):
        final = {"an": "En", "e": "E"}[final]
    return initial, final


def _build_table() -> dict[str, tuple[str, str]]:
    table: dict[str, tuple[str, str]] = {}
    for initial, finals in _FINALS_BY_INITIAL.items():
        for final in finals.split():
            table[initial + final] = _phones_for(initial, final)
            # the ü-syllables are accepted in either spelling: "ju" and "jv", "yuan" and "yvan"
            if initial in _U_IS_UMLAUT_AFTER and final.startswith("u"):
                table[initial + "v" + final[1:]] = table[initial + final]
    return table


SYLLABLE_PHONES: dict[str, tuple[str, str]] = _build_table()


class UnknownSyllableError(ValueError):
    """A pinyin syllable outside the model's inventory (e.g. the interjections "hm", "ng")."""


def syllable_to_phones(syllable: str) -> tuple[str, str]:
    """Toneless pinyin syllable ("zhong", "jv", "er") -> (initial phone, final phone)."""
    try:
        return SYLLABLE_PHONES[syllable]
    except KeyError:
        raise UnknownSyllableError(
            f"pinyin syllable {syllable!r} has no phones in the Mandarin inventory"
        ) from None
