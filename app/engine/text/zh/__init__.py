"""Chinese (Mandarin) text frontend: normalisation and grapheme-to-phoneme, as GPT-SoVITS does it.

    normalize(text) -> norm_text          # same for v1 and v2
    g2p(norm_text, version) -> (phones, word2ph)

``len(word2ph) == len(norm_text)`` and ``sum(word2ph) == len(phones)``: each hanzi gives two phones
(initial, final+tone), each punctuation mark one. Polyphones are resolved by pypinyin (upstream's
path when the g2pW model is off, which is what the conformance corpus was made with) unless the
g2pW model folder is installed: ``configure_from_weights_root(root)`` (called once at start-up)
switches v2 to it and logs which path is active; ``enable_g2pw``/``disable_g2pw`` do it by hand.
See g2pw.py.
"""

from __future__ import annotations

from .char_convert import traditional_table
from .g2p import VERSIONS, g2p
from .g2pw import active_g2pw, configure_from_weights_root, disable_g2pw, enable_g2pw
from .normalizer import PUNCTUATION, normalize
from .segmenter import cut_with_pos
from .syllables import UnknownSyllableError

__all__ = [
    "PUNCTUATION",
    "VERSIONS",
    "UnknownSyllableError",
    "active_g2pw",
    "configure_from_weights_root",
    "disable_g2pw",
    "enable_g2pw",
    "g2p",
    "normalize",
    "warm_up",
]


def warm_up() -> None:
    """Load the segmentation dictionary and the character table now (about 2 s) instead of on first use."""
    traditional_table()
    cut_with_pos("你好")
