"""Chinese (Mandarin) text frontend: normalisation and grapheme-to-phoneme, as GPT-SoVITS does it.

    normalize(text) -> norm_text          # same for v1 and v2
    g2p(norm_text, version) -> (phones, word2ph)

``len(word2ph) == len(norm_text)`` and ``sum(word2ph) == len(phones)``: each hanzi gives two phones
(initial, final+tone), each punctuation mark one. Polyphones are resolved by pypinyin (upstream's
path when the g2pW model is off, which is what the conformance corpus was made with).
"""

from __future__ import annotations

from .g2p import VERSIONS, g2p
from .normalizer import PUNCTUATION, normalize
from .syllables import UnknownSyllableError

__all__ = ["PUNCTUATION", "VERSIONS", "UnknownSyllableError", "g2p", "normalize"]
