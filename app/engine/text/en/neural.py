"""Pronunciation of out-of-vocabulary words with g2p_en's bundled seq2seq model.

The model is a character GRU encoder and a phoneme GRU decoder with greedy decoding (g2p_en 2.1.0,
``checkpoint20.npz``, shipped inside the package). We run it with NumPy ourselves instead of importing
g2p_en, whose import tries to download NLTK data. The arithmetic is done in float32 in the same order
as g2p_en so that the arg-max at every step, and therefore the output, is identical.
"""

from __future__ import annotations

import threading

import numpy as np

from app.engine.text.en.lexicon import package_dir

# Input alphabet: index 0 pad, 1 unknown character, 2 end of word, then a-z.
GRAPHEMES: tuple[str, ...] = ("<pad>", "<unk>", "</s>", *"abcdefghijklmnopqrstuvwxyz")
# Output alphabet: 4 specials, then the ARPAbet phones in this order. "UW" without stress is one of
# them (upstream's g2p later drops it).
PHONEMES: tuple[str, ...] = (
    "<pad>", "<unk>", "<s>", "</s>",
    "AA0", "AA1", "AA2", "AE0", "AE1", "AE2", "AH0", "AH1", "AH2", "AO0", "AO1", "AO2",
    "AW0", "AW1", "AW2", "AY0", "AY1", "AY2", "B", "CH", "D", "DH",
    "EH0", "EH1", "EH2", "ER0", "ER1", "ER2", "EY0", "EY1", "EY2", "F", "G", "HH",
    "IH0", "IH1", "IH2", "IY0", "IY1", "IY2", "JH", "K", "L", "M", "N", "NG",
    "OW0", "OW1", "OW2", "OY0", "OY1", "OY2", "P", "R", "S", "SH", "T", "TH",
    "UH0", "UH1", "UH2", "UW", "UW0", "UW1", "UW2", "V", "W", "Y", "Z", "ZH",
)  # fmt: skip
_GRAPHEME_INDEX = {g: i for i, g in enumerate(GRAPHEMES)}
_UNKNOWN_CHAR = _GRAPHEME_INDEX["<unk>"]
_END_OF_WORD = _GRAPHEME_INDEX["</s>"]
_START = PHONEMES.index("<s>")
_STOP = PHONEMES.index("</s>")
MAX_PHONES = 20  # the decoder gives up after this many phones


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-x))


class _Gru:
    """One GRU cell with PyTorch's gate layout (reset, update, new) stacked in the weight rows."""

    def __init__(self, w_ih: np.ndarray, w_hh: np.ndarray, b_ih: np.ndarray, b_hh: np.ndarray) -> None:
        self.w_ih_t, self.w_hh_t = w_ih.T, w_hh.T
        self.b_ih, self.b_hh = b_ih, b_hh
        self.hidden_size = w_hh.shape[1]

    def step(self, x: np.ndarray, h: np.ndarray) -> np.ndarray:
        from_input = np.matmul(x, self.w_ih_t) + self.b_ih
        from_hidden = np.matmul(h, self.w_hh_t) + self.b_hh
        split = 2 * self.hidden_size
        reset, update = np.split(_sigmoid(from_input[:, :split] + from_hidden[:, :split]), 2, -1)
        candidate = np.tanh(from_input[:, split:] + reset * from_hidden[:, split:])
        return (1 - update) * candidate + update * h


class NeuralG2p:
    """Greedy seq2seq decoding of one lower-case word into ARPAbet phones."""

    def __init__(self, weights: dict[str, np.ndarray]) -> None:
        self.char_embedding = weights["enc_emb"]
        self.phone_embedding = weights["dec_emb"]
        self.encoder = _Gru(
            weights["enc_w_ih"], weights["enc_w_hh"], weights["enc_b_ih"], weights["enc_b_hh"]
        )
        self.decoder = _Gru(
            weights["dec_w_ih"], weights["dec_w_hh"], weights["dec_b_ih"], weights["dec_b_hh"]
        )
        self.output_w_t = weights["fc_w"].T
        self.output_b = weights["fc_b"]

    def predict(self, word: str) -> list[str]:
        char_ids = [_GRAPHEME_INDEX.get(char, _UNKNOWN_CHAR) for char in word] + [_END_OF_WORD]
        h = np.zeros((1, self.encoder.hidden_size), np.float32)
        for char_id in char_ids:
            h = self.encoder.step(self.char_embedding[[char_id]], h)

        phones: list[str] = []
        previous = _START
        for _ in range(MAX_PHONES):
            h = self.decoder.step(self.phone_embedding[[previous]], h)
            logits = np.matmul(h, self.output_w_t) + self.output_b
            previous = int(logits.argmax())
            if previous == _STOP:
                break
            phones.append(PHONEMES[previous] if previous < len(PHONEMES) else "<unk>")
        return phones


_lock = threading.Lock()
_model: NeuralG2p | None = None


def neural_g2p() -> NeuralG2p:
    """The shared model, loaded from g2p_en's checkpoint on first call."""
    global _model
    if _model is None:
        with _lock:
            if _model is None:
                directory = package_dir("g2p_en")
                if directory is None or not (directory / "checkpoint20.npz").is_file():
                    raise RuntimeError("English g2p needs the g2p_en package (its checkpoint20.npz)")
                with np.load(directory / "checkpoint20.npz") as archive:
                    _model = NeuralG2p({name: archive[name] for name in archive.files})
    return _model
