"""Phone-level BERT features for the GPT stage (upstream's get_bert_feature / get_bert_inf).

Chinese parts of a segment get features from a Chinese RoBERTa (``chinese-roberta-wwm-ext-large``):
the hidden states of the third-to-last layer, one row per character of the normalised text (the [CLS]
and [SEP] rows dropped), each row repeated once per phone of that character (``word2ph``). Every other
part gets zeros. The result is ``[1024, n_phones]``, columns aligned with the segment's phones.

The model is loaded from a local folder only; nothing is downloaded.
"""

from __future__ import annotations

import threading
from pathlib import Path

import torch

from app.engine.text.preprocess import LangSegment, Segment

FEATURE_DIM = 1024
# hidden_states[-3]: the layer upstream takes its features from.
FEATURE_LAYER = -3


def zero_features(n_phones: int) -> torch.Tensor:
    """Features of a part that gets no BERT: zeros, ``[1024, n_phones]``."""
    return torch.zeros((FEATURE_DIM, n_phones), dtype=torch.float32)


def _expand_to_phones(char_features: torch.Tensor, word2ph: list[int]) -> torch.Tensor:
    """Repeat row i of ``char_features`` word2ph[i] times, then transpose to ``[dim, n_phones]``."""
    repeats = torch.tensor(word2ph, dtype=torch.long)
    return torch.repeat_interleave(char_features[: len(word2ph)], repeats, dim=0).T


class BertFeatureExtractor:
    """Computes BERT features for segments. Safe to share between threads (one forward at a time)."""

    def __init__(self, model_dir: str | Path, device: str | torch.device = "cpu", half: bool = False) -> None:
        model_dir = Path(model_dir)
        if not (model_dir / "config.json").is_file():
            raise FileNotFoundError(
                f"BERT model folder not found or incomplete: {model_dir} "
                "(expected a chinese-roberta-wwm-ext-large folder with config.json, tokenizer and weights)"
            )
        from transformers import AutoModelForMaskedLM, AutoTokenizer

        self.device = torch.device(device)
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
        model = AutoModelForMaskedLM.from_pretrained(model_dir, local_files_only=True, dtype=torch.float32)
        if half:
            model = model.half()
        self.model = model.to(self.device).eval()
        self._lock = threading.Lock()

    @torch.no_grad()
    def char_features(self, norm_text: str) -> torch.Tensor:
        """One feature row per token of ``norm_text`` without [CLS]/[SEP]: ``[n_tokens, 1024]`` (CPU)."""
        inputs = self.tokenizer(norm_text, return_tensors="pt")
        inputs = {name: tensor.to(self.device) for name, tensor in inputs.items()}
        with self._lock:
            output = self.model(**inputs, output_hidden_states=True)
        return output.hidden_states[FEATURE_LAYER][0, 1:-1].float().cpu()

    def phone_features(self, norm_text: str, word2ph: list[int]) -> torch.Tensor:
        """Features of Chinese text, ``[1024, sum(word2ph)]``; word2ph has one entry per character."""
        if len(word2ph) != len(norm_text):
            raise ValueError(f"word2ph has {len(word2ph)} entries for {len(norm_text)} characters")
        rows = self.char_features(norm_text)
        if rows.shape[0] < len(word2ph):
            # The tokenizer merged characters (should not happen for normalised Chinese text).
            raise RuntimeError(
                f"BERT tokenised {norm_text!r} into {rows.shape[0]} tokens, not one per character"
            )
        return _expand_to_phones(rows, word2ph)

    def part_features(self, part: LangSegment) -> torch.Tensor:
        if part.bert_kind == "bert" and part.word2ph is not None:
            return self.phone_features(part.norm_text, part.word2ph)
        return zero_features(len(part.phones))

    def segment_features(self, segment: Segment) -> torch.Tensor:
        """Features of a whole segment, ``[1024, len(segment.phones)]`` float32 on the CPU."""
        if not segment.lang_segments:
            return zero_features(len(segment.phones))
        return torch.cat([self.part_features(part) for part in segment.lang_segments], dim=1)
