"""Chinese (Mandarin) text frontend: normalisation and grapheme-to-phoneme, as GPT-SoVITS does it.

    normalize(text) -> norm_text          # same for v1 and v2
    g2p(norm_text, version) -> (phones, word2ph)

``len(word2ph) == len(norm_text)`` and ``sum(word2ph) == len(phones)``: each hanzi gives two phones
(initial, final+tone), each punctuation mark one. Polyphones are resolved by pypinyin (upstream's
path when the g2pW model is off, which is what the conformance corpus was made with). The g2pW
polyphone model is not supported yet: its ONNX model, BERT tokenizer and upstream's polyphone
dictionaries are not available here, so that path is absent rather than approximated.
"""

from __future__ import annotations

from .char_convert import traditional_table
from .g2p import VERSIONS, g2p
from .normalizer import PUNCTUATION, normalize
from .segmenter import cut_with_pos
from .syllables import UnknownSyllableError

__all__ = ["PUNCTUATION", "VERSIONS", "UnknownSyllableError", "g2p", "normalize", "warm_up"]


def warm_up() -> None:
    """Load the segmentation dictionary and the character table now (about 2 s) instead of on first use."""
    traditional_table()
    cut_with_pos("你好")
