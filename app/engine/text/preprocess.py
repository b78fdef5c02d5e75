"""The text frontend entry point: raw text -> pieces to synthesise, each with its phones.

This is upstream's ``TextPreprocessor.preprocess(text, lang, text_split_method, version)`` without the
BERT step. It runs in two stages:

1. :func:`pre_segment` folds repeated punctuation, cuts the text with one of the cut methods, merges
   very short pieces, drops pieces without a word character and closes every piece with a full stop.
2. :func:`phones_for_piece` splits each piece by language, cleans every language part into phones
   and records which parts get real BERT features (Chinese) and which get zeros (everything else).

BERT features are computed separately (``app.engine.text.bert``) from the :class:`Segment` objects,
so the frontend is usable, and testable, without BERT weights.

Input is refused with :class:`TextRejected` (a ValueError, for a 4xx answer) where upstream raises:
text that is blank after cutting, text a language module cannot read (upstream crashes), Chinese too
long for BERT's window (upstream crashes in BERT); and when no piece yields phones. Unknown language or
cut method codes are plain ValueErrors (caller errors). Any other text is accepted.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import Literal

from app.engine.errors import InvalidRequest
from app.engine.text.cleaner import clean_text
from app.engine.text.cut import SPLITS, cut_text, split_big_text
from app.engine.text.langsplit import LangPiece, split_by_language
from app.engine.text.symbols import phones_to_ids

_log = logging.getLogger(__name__)

# Language codes of the API (upstream's dict_language values).
LANGUAGES: tuple[str, ...] = (
    "all_zh", "en", "all_ja", "all_yue", "all_ko", "zh", "ja", "yue", "ko", "auto", "auto_yue",
)  # fmt: skip

BertKind = Literal["bert", "zeros"]

# A run of these marks folds into its first mark ("?!" -> "?", "..." -> ".").
_FOLDED_PUNCTUATION = "!?…,.-"
_PUNCTUATION_RUN = re.compile(f"([{re.escape(_FOLDED_PUNCTUATION)}])[{re.escape(_FOLDED_PUNCTUATION)}]+")
_SPLIT_MARK = re.compile("[" + re.escape("".join(sorted(SPLITS))) + "]")
_SPACE_RUN = re.compile(" {2,}")
_NEWLINE_RUN = re.compile("\n{2,}")
_NON_WORD = re.compile(r"\W+")

# A text whose first clause is shorter than this gets a leading full stop (upstream: very short
# openings are otherwise synthesised badly).
SHORT_OPENING = 4
# Pieces are merged until each has at least this many characters.
MIN_PIECE_CHARS = 5
# BERT's 512-token window minus [CLS] and [SEP].
MAX_PIECE_CHARS = 510
# A piece with fewer phones is re-read with a "." in front, once.
MIN_PHONES = 6


class TextRejected(InvalidRequest, ValueError):
    """The text cannot be synthesised (nothing readable in it). Answer with a 4xx, not a crash."""

    code = "no_speakable_text"


@dataclass
class LangSegment:
    """One single-language part of a piece."""

    lang: str  # "zh", "ja", "en", "ko" or "yue"
    text: str
    norm_text: str
    phones: list[str]
    phone_ids: list[int]
    word2ph: list[int] | None  # phones per character of norm_text (Chinese and Cantonese only)

    @property
    def bert_kind(self) -> BertKind:
        # Only Mandarin gets BERT features; Cantonese is read by the Chinese g2p but gets zeros.
        return "bert" if self.lang == "zh" else "zeros"


@dataclass
class Segment:
    """One piece of the input, synthesised on its own."""

    text: str  # the piece as cut (before space folding and the "." retry prefix)
    norm_text: str
    phones: list[str]
    phone_ids: list[int]
    lang_segments: list[LangSegment] = field(default_factory=list)
    retried_with_dot_prefix: bool = False

    @property
    def word2ph(self) -> list[int] | None:
        """Phones per normalised character, when every part has that mapping (e.g. pure Chinese)."""
        if not self.lang_segments or any(part.word2ph is None for part in self.lang_segments):
            return None
        return [count for part in self.lang_segments for count in part.word2ph or []]


# --- stage 1: cutting ------------------------------------------------------------------------------


def fold_repeated_punctuation(text: str) -> str:
    return _PUNCTUATION_RUN.sub(r"\1", text)


def _first_clause(text: str) -> str:
    return _SPLIT_MARK.split(text, maxsplit=1)[0].strip()


def merge_short_pieces(pieces: list[str], min_chars: int = MIN_PIECE_CHARS) -> list[str]:
    """Join consecutive pieces until each has ``min_chars``; a short tail joins the last piece."""
    if len(pieces) < 2:
        return pieces
    merged: list[str] = []
    pending = ""
    for piece in pieces:
        pending += piece
        if len(pending) >= min_chars:
            merged.append(pending)
            pending = ""
    if pending:
        if merged:
            merged[-1] += pending
        else:
            merged.append(pending)
    return merged


def pre_segment(text: str, lang: str, method: str) -> list[str]:
    """Cut ``text`` into the pieces that are synthesised one by one (upstream's pre_seg_text).

    ``text`` should already have gone through :func:`fold_repeated_punctuation` (as :func:`preprocess`
    does). Raises TextRejected when the cut leaves only blank pieces.
    """
    full_stop = "." if lang == "en" else "。"
    text = text.strip("\n")
    if not text:
        return []
    if text[0] not in SPLITS and len(_first_clause(text)) < SHORT_OPENING:
        text = full_stop + text

    # A run of newlines becomes one (upstream replaces "\n\n" until none is left: one pass per halving).
    lines = _NEWLINE_RUN.sub("\n", cut_text(text, method)).split("\n")
    # Upstream's filter_text: "\n" counts as blank here but is not removed below (it cannot occur
    # after the split anyway). A lone space is removed; longer whitespace is dropped further down.
    if all(line in (" ", "\n", "") for line in lines):
        raise TextRejected("the text has nothing to read after cutting (please enter valid text)")
    lines = merge_short_pieces([line for line in lines if line not in (" ", "")])

    pieces: list[str] = []
    for piece in lines:
        if not piece.strip():
            continue
        # Pieces without any word character (punctuation, symbols, emoji) are skipped. "_" counts as a
        # word character here, as in upstream's \W.
        if not _NON_WORD.sub("", piece):
            continue
        if piece[-1] not in SPLITS:
            piece += full_stop
        if len(piece) > MAX_PIECE_CHARS:
            # split_big_text yields an empty first chunk when the text starts with a part longer than the
            # limit; upstream then crashes on it, we drop it.
            pieces.extend(chunk for chunk in split_big_text(piece) if chunk)
        else:
            pieces.append(piece)
    return pieces


# --- stage 2: phones -------------------------------------------------------------------------------


def split_languages(text: str, lang: str) -> list[LangPiece]:
    """The single-language parts of a piece, for an API language code."""
    if lang == "en":
        return [LangPiece("en", text)]
    if lang in ("all_zh", "all_ja", "all_ko"):
        return split_by_language(text, lang.removeprefix("all_"))
    if lang in ("all_yue", "auto_yue"):
        # Cantonese is written with Chinese characters: whatever is detected as Chinese is Cantonese.
        pieces = split_by_language(text, "zh" if lang == "all_yue" else "")
        return [LangPiece("yue" if p.lang == "zh" else p.lang, p.text) for p in pieces]
    if lang == "auto":
        return split_by_language(text)
    # "zh", "ja", "ko", "yue": Han characters cannot be told apart by script, so the user's language
    # wins for everything that is not English; consecutive non-English parts are merged.
    merged: list[LangPiece] = []
    for piece in split_by_language(text):
        is_english = piece.lang == "en"
        if merged and (merged[-1].lang == "en") == is_english:
            merged[-1].add_text(piece.text)
        else:
            merged.append(LangPiece("en" if is_english else lang, piece.text))
    return merged


def _clean_part(piece: LangPiece, version: str) -> LangSegment:
    try:
        phones, word2ph, norm_text = clean_text(piece.text, piece.lang, version)
    except (ImportError, RuntimeError):
        raise  # a missing module or a broken g2p contract is our bug, not the user's text
    except Exception as error:
        # Some text defeats a language module's normaliser (e.g. a 200-digit number in English); upstream
        # would crash. Refuse the text instead, keeping the cause for the logs.
        _log.warning("cannot read %s text %r", piece.lang, piece.text[:80], exc_info=True)
        raise TextRejected(f"cannot read this {piece.lang} text: {piece.text[:40]!r}") from error
    if word2ph is not None and piece.lang == "zh" and len(norm_text) > MAX_PIECE_CHARS:
        # BERT reads the normalised Chinese text in one window (512 tokens with [CLS] and [SEP]).
        raise TextRejected(
            f"a sentence is too long ({len(norm_text)} characters once normalised, at most {MAX_PIECE_CHARS}); "
            "add punctuation"
        )
    return LangSegment(
        lang=piece.lang,
        text=piece.text,
        norm_text=norm_text,
        phones=phones,
        phone_ids=phones_to_ids(phones, version),
        word2ph=word2ph,
    )


def phones_for_piece(text: str, lang: str, version: str = "v2") -> Segment:
    """Phones of one cut piece (upstream's get_phones_and_bert without the BERT features)."""
    if lang not in LANGUAGES:
        raise ValueError(f"unknown language {lang!r}; expected one of {', '.join(LANGUAGES)}")
    folded = _SPACE_RUN.sub(" ", text)
    segment = _phones(folded, lang, version)
    if len(segment.phones) < MIN_PHONES:
        # Very short pieces are re-read once with a leading "." (which becomes a pause phone).
        segment = _phones("." + folded, lang, version)
        segment.retried_with_dot_prefix = True
    segment.text = text
    return segment


def _phones(text: str, lang: str, version: str) -> Segment:
    parts = [_clean_part(piece, version) for piece in split_languages(text, lang)]
    return Segment(
        text=text,
        norm_text="".join(part.norm_text for part in parts),
        phones=[phone for part in parts for phone in part.phones],
        phone_ids=[phone_id for part in parts for phone_id in part.phone_ids],
        lang_segments=parts,
    )


def preprocess(text: str, lang: str, method: str = "cut1", version: str = "v2") -> list[Segment]:
    """Raw text -> the segments to synthesise, in order (upstream's TextPreprocessor.preprocess).

    ``lang`` is one of :data:`LANGUAGES`, ``method`` a cut method code ("cut0".."cut5"), ``version``
    the model version ("v1" uses the v1 symbol table and language set). Raises TextRejected when
    nothing in the text can be read.
    """
    if lang not in LANGUAGES:
        raise ValueError(f"unknown language {lang!r}; expected one of {', '.join(LANGUAGES)}")
    segments: list[Segment] = []
    for piece in pre_segment(fold_repeated_punctuation(text), lang, method):
        segment = phones_for_piece(piece, lang, version)
        # Upstream skips pieces that normalise to nothing.
        if segment.norm_text:
            segments.append(segment)
    if not segments:
        raise TextRejected("the text contains nothing that can be read aloud")
    return segments
