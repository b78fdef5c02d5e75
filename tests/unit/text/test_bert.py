"""BERT features: shapes, the per-phone expansion, zeros for non-Chinese parts, and the golden arrays."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from app.engine.text.bert import FEATURE_DIM, BertFeatureExtractor, _expand_to_phones, zero_features
from app.engine.text.preprocess import LangSegment, Segment, phones_for_piece, preprocess
from tests.conftest import conformance_dir, corpus_weights_layout


def _model_cases() -> list[Path]:
    folder = conformance_dir() / "models" / "cases"
    return sorted(folder.glob("*.json")) if folder.is_dir() else []


def _read_case(case_file: Path) -> dict:
    return json.loads(case_file.read_text(encoding="utf-8"))


def _bert_names() -> list[str]:
    """The BERT weights the model corpus's cases name (``weights.bert``), as ``models/index.json``
    entries: their layout and seed come from the index, never from this module."""
    return sorted({_read_case(path)["weights"]["bert"] for path in _model_cases()})


@pytest.fixture(scope="session")
def extractors(corpus_weights) -> Callable[[str], BertFeatureExtractor]:
    """index weights name -> the BERT written from that entry (its layout and seed), loaded once."""
    loaded: dict[str, BertFeatureExtractor] = {}

    def get(name: str) -> BertFeatureExtractor:
        if name not in loaded:
            loaded[name] = BertFeatureExtractor(corpus_weights(name))
        return loaded[name]

    return get


@pytest.fixture(scope="session")
def extractor(extractors) -> BertFeatureExtractor:
    """The tiny BERT of the model corpus: the one its cases name (the first, should they name several)."""
    names = _bert_names()
    assert names, "no model case names a BERT"
    return extractors(names[0])


def test_the_cases_name_bert_weights_of_the_index(conformance: Path) -> None:
    index = json.loads((conformance / "models" / "index.json").read_text(encoding="utf-8"))
    names = _bert_names()
    assert names, "the model corpus has no case naming its BERT"
    for name in names:
        assert name in index["weights"], f"{name} is not a weights entry of models/index.json"
        assert corpus_weights_layout(name)["kind"] == "bert", f"{name} is not a BERT layout"


# --- no weights needed ----------------------------------------------------------------------------


def test_missing_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="BERT model folder"):
        BertFeatureExtractor(tmp_path / "chinese-roberta-wwm-ext-large")


def test_expansion_repeats_each_character_row_per_phone() -> None:
    chars = torch.arange(3 * 4, dtype=torch.float32).reshape(3, 4)
    out = _expand_to_phones(chars, [2, 1, 3])
    assert out.shape == (4, 6)
    expected_columns = [0, 0, 1, 2, 2, 2]
    for column, row in enumerate(expected_columns):
        assert torch.equal(out[:, column], chars[row])
    # Extra token rows beyond the characters are ignored (upstream indexes by character).
    assert torch.equal(_expand_to_phones(torch.cat([chars, chars]), [2, 1, 3]), out)


def test_zero_features_shape() -> None:
    zeros = zero_features(7)
    assert zeros.shape == (FEATURE_DIM, 7) and zeros.dtype == torch.float32 and not zeros.any()


# --- with the tiny BERT ---------------------------------------------------------------------------


def test_phone_features_shape_and_repetition(extractor: BertFeatureExtractor) -> None:
    features = extractor.phone_features("你好,世界.", [2, 2, 1, 2, 2, 1])
    assert features.shape == (FEATURE_DIM, 10)
    assert torch.equal(features[:, 0], features[:, 1])  # both phones of 你
    assert not torch.equal(features[:, 1], features[:, 2])  # 你 vs 好
    assert features.abs().sum() > 0
    with pytest.raises(ValueError, match="word2ph"):
        extractor.phone_features("你好", [2])


def test_non_chinese_parts_get_zeros(extractor: BertFeatureExtractor) -> None:
    zh = LangSegment("zh", "你好", "你好", ["n", "i3", "h", "ao3"], [0, 0, 0, 0], [2, 2])
    en = LangSegment("en", "hi", "hi", ["HH", "AY1", "."], [0, 0, 0], None)
    yue = LangSegment("yue", "你好", "你好", ["Yn", "Yei5", "Yh", "You2"], [0, 0, 0, 0], [2, 2])
    segment = Segment("", "", zh.phones + en.phones + yue.phones, [0] * 11, [zh, en, yue])
    features = extractor.segment_features(segment)
    assert features.shape == (FEATURE_DIM, 11)
    assert features[:, :4].abs().sum() > 0
    assert not features[:, 4:].any()  # English and Cantonese: zeros


def test_concurrent_use_gives_the_same_features(extractor: BertFeatureExtractor) -> None:
    texts = ["今天天气很好.", "我们一起去公园.", "路边的花都开了.", "你好."]
    serial = [extractor.phone_features(t, [1] * len(t)) for t in texts]
    results: dict[int, torch.Tensor] = {}

    def work(i: int) -> None:
        results[i] = extractor.phone_features(texts[i % 4], [1] * len(texts[i % 4]))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for i in range(8):
        torch.testing.assert_close(results[i], serial[i % 4], rtol=0, atol=1e-5)


# --- golden arrays of the model corpus ------------------------------------------------------------


def _close(ours: np.ndarray, golden: np.ndarray) -> bool:
    # models/README.md: max|ours - golden| <= 1e-4 * max(1, max|golden|)
    return ours.shape == golden.shape and float(np.abs(ours - golden).max(initial=0)) <= 1e-4 * max(
        1.0, float(np.abs(golden).max(initial=0))
    )


@pytest.mark.conformance
@pytest.mark.slow
@pytest.mark.parametrize("case_file", _model_cases(), ids=lambda p: p.stem)
def test_features_match_reference(case_file: Path, extractors) -> None:
    case = _read_case(case_file)
    extractor = extractors(case["weights"]["bert"])  # the BERT this case was made with
    request, version = case["request"], case["version"]
    needed = {"en"}  # any language code may produce English parts
    for lang in (request["prompt_lang"], request["text_lang"]):
        needed |= {"zh"} if "zh" in lang or lang in ("auto", "auto_yue") else {lang.removeprefix("all_")}

    # What upstream's TTS.run feeds the GPT: prompt phones/features, then those of each piece.
    prompt: tuple[list[int], torch.Tensor] | None = None
    prompt_text = request["prompt_text"].strip("\n")
    if prompt_text:
        if prompt_text[-1] not in "，。？！,.?!~:：—…":
            prompt_text += "." if request["prompt_lang"] == "en" else "。"
        segment = phones_for_piece(prompt_text, request["prompt_lang"], version)
        prompt = (segment.phone_ids, extractor.segment_features(segment))
    candidates: dict[tuple[int, ...], torch.Tensor] = {}
    for segment in preprocess(request["text"], request["text_lang"], request["text_split_method"], version):
        ids, features = segment.phone_ids, extractor.segment_features(segment)
        if prompt is not None:
            ids, features = prompt[0] + ids, torch.cat([prompt[1], features], dim=1)
        candidates[tuple(ids)] = features

    arrays = np.load(case_file.with_suffix(".npz"))
    rows = sorted(k.split("_bert_") for k in arrays.files if k.startswith("t2s_") and "_bert_" in k)
    assert rows, "case has no BERT arrays"
    for call, row in rows:
        ids = tuple(int(i) for i in arrays[f"{call}_x_{row}"])
        assert ids in candidates, f"{call} row {row}: our phone ids differ from the reference's"
        golden = arrays[f"{call}_bert_{row}"]
        assert _close(candidates[ids].numpy(), golden), f"{call} row {row}: BERT features differ"
