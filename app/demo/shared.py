"""The shared demo models every voice (or every v2Pro/v2ProPlus voice) needs: the tiny HuBERT and
Chinese BERT Hugging Face folders, and the speaker-verification checkpoint (full size: its
architecture is fixed)."""

from __future__ import annotations

from pathlib import Path

import torch

from app.demo.randomize import random_layers, randomize
from app.engine.models.speaker import SpeakerEncoder, upstream_only_layers


def build_speaker_state(seed: int) -> dict[str, torch.Tensor]:
    """ERes2NetV2 state dict (float32, like the official file) including the unused embedding head."""
    model = SpeakerEncoder()
    generator = torch.Generator().manual_seed(seed)
    # The stem sees log-mel values of magnitude ~10; every block's last BatchNorm starts small so
    # sixteen residual additions stay bounded (the usual zero-ish init of residual branches).
    randomize(
        model,
        generator,
        gains=((r"^conv1\.weight$", 0.3), (r"fuse.*att", 1.0), (r"\.weight$", 1.4)),
    )
    with torch.no_grad():
        for name, tensor in model.state_dict(keep_vars=True).items():
            if name.endswith(".bn3.weight"):
                tensor.uniform_(0.1, 0.2, generator=generator)
    # Inference never uses the embedding head, but upstream's sv.py loads the checkpoint strictly.
    return {**model.state_dict(), **random_layers(upstream_only_layers(), generator)}


def write_hubert(folder: Path, seed: int) -> None:
    """A 2-layer HuBERT (768-d output, which SoVITS expects) + the feature-extractor config upstream reads."""
    from transformers import HubertConfig, HubertModel, Wav2Vec2FeatureExtractor

    config = HubertConfig(
        hidden_size=768,
        num_hidden_layers=2,
        num_attention_heads=12,
        intermediate_size=768,
        conv_dim=(64,) * 7,  # the convolutional front end keeps upstream's strides (320 samples/frame)
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=16,
        feat_extract_norm="group",
        conv_bias=False,
    )
    with torch.random.fork_rng(devices=[]):  # HF draws from the global RNG; leave the caller's alone
        torch.manual_seed(seed)
        model = HubertModel(config).eval()
    model.half().save_pretrained(folder, safe_serialization=True)  # float16 on disk, like the official files
    Wav2Vec2FeatureExtractor(
        feature_size=1, sampling_rate=16000, padding_value=0.0, do_normalize=True, return_attention_mask=False
    ).save_pretrained(folder)


# Characters that get a vocabulary entry besides the CJK block: what Chinese text normalisation leaves.
_CJK_PUNCTUATION = "，。！？、；：“”‘’（）《》【】…—·～"
CJK_UNIFIED = (0x4E00, 0x9FFF)  # the CJK Unified Ideographs block, inclusive


def bert_vocab() -> list[str]:
    """A WordPiece vocabulary: specials, printable ASCII (also as ``##`` continuations), CJK
    punctuation and every CJK Unified Ideograph, one token per character."""
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    ascii_chars = [chr(c) for c in range(0x21, 0x7F) if not chr(c).isupper()]  # lower-cased input
    ascii_continuations = ["##" + c for c in ascii_chars if c.isalnum()]
    cjk = [chr(c) for c in range(CJK_UNIFIED[0], CJK_UNIFIED[1] + 1)]
    return specials + ascii_chars + ascii_continuations + list(_CJK_PUNCTUATION) + cjk


def write_bert(folder: Path, seed: int) -> None:
    """A 3-layer BertForMaskedLM with upstream's 1024-d hidden size and an offline-built tokenizer."""
    from transformers import BertConfig, BertForMaskedLM, BertTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    vocab = bert_vocab()
    vocab_file = folder / "vocab.txt"
    vocab_file.write_text("\n".join(vocab) + "\n", encoding="utf-8")
    tokenizer = BertTokenizerFast(
        vocab_file=str(vocab_file), do_lower_case=True, tokenize_chinese_chars=True, strip_accents=None
    )
    tokenizer.save_pretrained(folder)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=1024,  # the GPT's bert_proj reads 1024-d features
        num_hidden_layers=3,  # features come from hidden_states[-3], so at least 2 layers
        num_attention_heads=16,
        intermediate_size=1024,
        max_position_embeddings=512,
        pad_token_id=0,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = BertForMaskedLM(config).eval()
    model.half().save_pretrained(folder, safe_serialization=True)  # float16 on disk, like the official files
