"""Word segmentation with part-of-speech tags (jieba), loaded once, lazily, thread-safely.

Upstream uses jieba_fast; plain jieba has the same dictionary and algorithm and gives the same cuts.
We keep a private tokenizer instance so words another module adds to jieba's global dictionary
cannot change how Chinese is read here.
"""

from __future__ import annotations

import logging
import threading

import jieba
import jieba.posseg

_lock = threading.Lock()
_words: jieba.Tokenizer | None = None
_tagger: jieba.posseg.POSTokenizer | None = None


def _load() -> tuple[jieba.Tokenizer, jieba.posseg.POSTokenizer]:
    global _words, _tagger
    if _words is None or _tagger is None:
        with _lock:
            if _words is None or _tagger is None:
                jieba.setLogLevel(logging.WARNING)  # the dictionary load is chatty at INFO
                words = jieba.Tokenizer()
                words.initialize()
                _tagger = jieba.posseg.POSTokenizer(words)
                _words = words
    return _words, _tagger


def cut_with_pos(text: str) -> list[tuple[str, str]]:
    """Segment into (word, jieba POS tag) pairs, HMM on for unknown words (jieba's default)."""
    _, tagger = _load()
    return [(pair.word, pair.flag) for pair in tagger.lcut(text)]


def cut_for_search(word: str) -> list[str]:
    """jieba's search-engine mode: the word plus the dictionary sub-words inside it."""
    words, _ = _load()
    return list(words.cut_for_search(word))
