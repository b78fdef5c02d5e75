"""English grapheme-to-phoneme conversion of normalised text.

Per token, in this order (upstream's g2p_en subclass):

1. no letter at all (punctuation): the token itself;
2. a single letter: its dictionary pronunciation, except a capital "A" which is read "EY1";
3. a homograph ("read", "lead", "live", ...): chosen by the token's part-of-speech tag;
4. otherwise :func:`_lookup_word`: dictionary, spelling out short words, possessive "'s",
   splitting compounds with ``wordsegment``, and finally the neural model.

Tokens are separated by nothing in the output; only phones of the v2 symbol table survive.
"""

from __future__ import annotations

import logging
import re
import threading

import wordsegment
from nltk.tokenize import TweetTokenizer

from app.engine.text.en.lexicon import Lexicon, lexicon
from app.engine.text.en.neural import neural_g2p
from app.engine.text.symbols import symbol_to_id

logger = logging.getLogger(__name__)

_tokenize = TweetTokenizer().tokenize
_HAS_LETTER_RE = re.compile("[a-z]")
_POSSESSIVE_RE = re.compile(r"^[a-z]+'s$")

# Last phone of the owner -> what "'s" adds: after a voiceless consonant "S", after a sibilant
# "AH0 Z", after anything else (voiced consonants, vowels) "Z".
_VOICELESS = frozenset({"P", "T", "K", "F", "TH", "HH"})
_SIBILANTS = frozenset({"S", "Z", "SH", "ZH", "CH", "JH"})

# Decoder specials and the stress-less "UW" are dropped from the output, "<unk>" becomes "UNK".
_DROPPED = frozenset({"<pad>", "UW", "</s>", "<s>"})
_RENAMED = {"<unk>": "UNK", "'": "-"}  # an apostrophe left as a phone is read as a pause "-"

_SHORT_WORD = 3  # unknown words up to this length are spelled out letter by letter


# --- shared, lazily loaded helpers -----------------------------------------------------------------
_lock = threading.Lock()
_segmenter_ready = False
_tagger_loaded = False
_tagger = None  # nltk PerceptronTagger, or None when its data is missing


def _ensure_segmenter() -> None:
    global _segmenter_ready
    if not _segmenter_ready:
        with _lock:
            if not _segmenter_ready:
                wordsegment.load()  # reads the unigram/bigram counts the package ships
                _segmenter_ready = True


def _pos_tagger():
    global _tagger, _tagger_loaded
    if not _tagger_loaded:
        with _lock:
            if not _tagger_loaded:
                from nltk.tag.perceptron import PerceptronTagger

                try:
                    _tagger = PerceptronTagger()  # English model, from NLTK_DATA / nltk.data.path
                except (LookupError, OSError):
                    _tagger = None
                    logger.warning(
                        "English g2p: NLTK's averaged_perceptron_tagger_eng data was not found; "
                        "homographs (read, lead, live, ...) get their dictionary pronunciation "
                        "instead of one chosen by part of speech"
                    )
                _tagger_loaded = True
    return _tagger


def _tag(tokens: list[str]) -> list[str | None]:
    tagger = _pos_tagger()
    if tagger is None or not tokens:
        return [None] * len(tokens)
    return [tag for _, tag in tagger.tag(tokens)]


# --- word lookup -----------------------------------------------------------------------------------
def _spell_out(word: str, lex: Lexicon) -> list[str]:
    phones: list[str] = []
    for char in word:
        if char == "a":
            phones.append("EY1")  # the letter's name, not the article "AH0"
        elif char in lex.words:
            phones.extend(lex.words[char])
        else:
            phones.append(char)  # "'" or "-" inside a short token; filtered or renamed later
    return phones


def _with_possessive(owner: list[str]) -> list[str]:
    last = owner[-1] if owner else ""
    if last in _VOICELESS:
        return [*owner, "S"]
    if last in _SIBILANTS:
        return [*owner, "AH0", "Z"]
    return [*owner, "Z"]


def _lookup_word(word: str, lex: Lexicon) -> list[str]:
    """Pronounce one lower-case word that is neither a single letter nor a homograph."""
    if len(word) > 1 and word in lex.words:
        return list(lex.words[word])
    if len(word) <= _SHORT_WORD:
        return _spell_out(word, lex)
    if _POSSESSIVE_RE.match(word):
        return _with_possessive(_lookup_word(word[:-2], lex))
    _ensure_segmenter()
    # wordsegment also drops characters other than letters and digits ("state-of-the-art").
    try:
        parts = wordsegment.segment(word)
    except RecursionError as error:
        # Its search recurses once per word it finds in a 250-letter chunk, so a long word that splits
        # into many short ones ("abcabc...") exceeds the recursion limit (upstream crashes). That is
        # the text's fault: a ValueError, refused with a 4xx, not a RuntimeError (our bug, a 500).
        raise ValueError(f"cannot split a {len(word)}-letter word into words") from error
    if len(parts) == 1:
        return neural_g2p().predict(word)
    return [phone for part in parts for phone in _lookup_word(part, lex)]


def _homograph(word: str, tag: str | None, lex: Lexicon) -> list[str]:
    pron_for_pos, other_pron, pos = lex.homographs[word]
    if tag is None:  # no tagger: degrade to the plain dictionary reading
        return _lookup_word(word, lex)
    # A tag that is a prefix of the wanted one also counts ("VB" for "VBP"); upstream added this for
    # "read", the only entry whose POS is longer than two letters.
    if tag.startswith(pos) or (len(tag) < len(pos) and pos.startswith(tag)):
        return list(pron_for_pos)
    return list(other_pron)


def _token_phones(token: str, tag: str | None, lex: Lexicon) -> list[str]:
    word = token.lower()
    if not _HAS_LETTER_RE.search(word):
        return [word]
    if len(word) == 1:
        # Only the capital "A" is the letter's name; lower-case "a" is the article.
        return ["EY1"] if token == "A" else list(lex.words.get(word, ()))
    if word in lex.homographs:
        return _homograph(word, tag, lex)
    return _lookup_word(word, lex)


def g2p(norm_text: str) -> list[str]:
    """ARPAbet phones (with stress digits) and punctuation marks for normalised English text."""
    lex = lexicon()
    tokens = _tokenize(norm_text)
    known = symbol_to_id("v2")
    phones: list[str] = []
    for token, tag in zip(tokens, _tag(tokens), strict=True):
        for phone in _token_phones(token, tag, lex):
            if phone in _DROPPED:
                continue
            phone = _RENAMED.get(phone, phone)
            if phone in known:
                phones.append(phone)
    return phones
