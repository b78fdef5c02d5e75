"""The six text-cutting methods of upstream's web UI, and the splitter for over-long pieces.

Each method takes the raw text and returns it with a newline between the pieces that are synthesised
separately. ``/to_cut`` returns that string as is; the frontend splits it on newlines. The outputs must
equal upstream's character for character, so some odd-looking rules below are deliberate: each is
named where it happens.

Every function here is linear in the length of the text.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

# Sentence-ending marks that close a sentence for the "four sentences" and "50 characters" methods,
# and that the frontend treats as "already punctuated".
SPLITS: frozenset[str] = frozenset("，。？！,.?!~:：—…")

# Characters that alone make a piece "punctuation only" (such pieces are dropped). The space counts.
_FILLER: frozenset[str] = frozenset("!?…,.- ")

# Marks after which the "by punctuation" method (cut5) cuts.
_CUT5_MARKS: frozenset[str] = frozenset(",.;?!、，。？！;：…")

# An ASCII full stop that is not part of a decimal number (cut4 keeps "3.14" whole).
_SENTENCE_DOT = re.compile(r"(?<!\d)\.(?!\d)")

CUT_METHODS: tuple[str, ...] = ("cut0", "cut1", "cut2", "cut3", "cut4", "cut5")


def _only_filler(piece: str, filler: frozenset[str] = _FILLER) -> bool:
    # An empty piece counts as filler too (the empty set is a subset of anything).
    return all(ch in filler for ch in piece)


def _join_kept(pieces: Iterable[str]) -> str:
    return "\n".join(p for p in pieces if not _only_filler(p))


def split_sentences(text: str) -> list[str]:
    """Split after every SPLITS mark, keeping the mark with its sentence.

    Upstream first folds "……" into "。" and "——" into "，", and appends "。" when the text does not end
    with a mark, so the last sentence is always closed.
    """
    text = text.replace("……", "。").replace("——", "，")
    if not text:
        return []
    if text[-1] not in SPLITS:
        text += "。"
    sentences: list[str] = []
    start = 0
    for i, ch in enumerate(text):
        if ch in SPLITS:
            sentences.append(text[start : i + 1])
            start = i + 1
    return sentences


def cut0(text: str) -> str:
    """不切: no cut. Text made only of filler becomes a lone newline (upstream's behaviour)."""
    return "\n" if _only_filler(text) else text


def cut1(text: str) -> str:
    """凑四句一切: every four sentences form one piece."""
    text = text.strip("\n")
    sentences = split_sentences(text)
    if len(sentences) <= 4:
        # Upstream returns the stripped input itself here, not the re-joined sentences, so the
        # "……"/"——" folding and the appended "。" do not show up in single-piece output.
        pieces = [text]
    else:
        pieces = ["".join(sentences[i : i + 4]) for i in range(0, len(sentences), 4)]
        # Upstream's slice bounds make the last group open-ended from the one before it, so the last
        # group always joins its predecessor (8 sentences give one piece, 9 give pieces of 4 and 5).
        tail = pieces.pop()
        pieces[-1] += tail
    return _join_kept(pieces)


def cut2(text: str, limit: int = 50) -> str:
    """凑50字一切: sentences accumulate until the running length exceeds 50 characters."""
    text = text.strip("\n")
    sentences = split_sentences(text)
    if len(sentences) < 2:
        return text
    pieces: list[str] = []
    current: list[str] = []
    length = 0
    for sentence in sentences:
        current.append(sentence)
        length += len(sentence)
        if length > limit:
            pieces.append("".join(current))
            current, length = [], 0
    if current:
        pieces.append("".join(current))
    # A short tail joins the piece before it.
    if len(pieces) > 1 and len(pieces[-1]) < limit:
        tail = pieces.pop()
        pieces[-1] += tail
    return _join_kept(pieces)


def cut3(text: str) -> str:
    """按中文句号。切: cut at every "。" (the marks are removed)."""
    return _join_kept(text.strip("\n").strip("。").split("。"))


def cut4(text: str) -> str:
    """按英文句号.切: cut at every "." that is not inside a number (the dots are removed)."""
    return _join_kept(_SENTENCE_DOT.split(text.strip("\n").strip(".")))


def cut5(text: str) -> str:
    """按标点符号切: cut after every punctuation mark, keeping the mark; decimals stay whole."""
    text = text.strip("\n")
    pieces: list[str] = []
    start = 0
    last = len(text) - 1
    for i, ch in enumerate(text):
        if ch not in _CUT5_MARKS:
            continue
        if ch == "." and 0 < i < last and text[i - 1].isdigit() and text[i + 1].isdigit():
            continue
        pieces.append(text[start : i + 1])
        start = i + 1
    if start < len(text):
        pieces.append(text[start:])
    return "\n".join(p for p in pieces if not _only_filler(p, _CUT5_MARKS))


_METHODS: dict[str, Callable[[str], str]] = {
    "cut0": cut0,
    "cut1": cut1,
    "cut2": cut2,
    "cut3": cut3,
    "cut4": cut4,
    "cut5": cut5,
}


def cut_text(text: str, method: str) -> str:
    """Apply cut method ``method`` ("cut0".."cut5") to ``text``."""
    try:
        return _METHODS[method](text)
    except KeyError:
        raise ValueError(f"unknown cut method {method!r}; expected one of {', '.join(CUT_METHODS)}") from None


def to_cut(text: str, method: str) -> str:
    """What upstream's ``/to_cut`` answers: blank input gives "" without cutting."""
    if not text.strip():
        return ""
    return cut_text(text, method)


def split_big_text(text: str, max_len: int = 510) -> list[str]:
    """Split text longer than BERT's window at sentence marks into chunks of at most ``max_len``.

    A chunk is closed before the part that would push it over ``max_len``; a single part longer than
    ``max_len`` stays whole, as upstream leaves it.
    """
    parts = re.split("([" + re.escape("".join(sorted(SPLITS))) + "])", text)
    chunks: list[str] = []
    current = ""
    for part in parts:
        if len(current) + len(part) > max_len:
            chunks.append(current)
            current = part
        else:
            current += part
    if current:
        chunks.append(current)
    return chunks
