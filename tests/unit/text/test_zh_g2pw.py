"""The optional g2pW polyphone path, on a tiny hand-built model folder.

The folder mimics upstream's G2PWModel (character lists, bopomofo table, config.py, g2pW.onnx) with a
small ONNX model exported from torch that has g2pW's six inputs and one output. Its weights are set
by hand so that each polyphonic character has a known "right" reading, which is only predicted when:

* the probabilities are read at the query character's token (position_ids; a neighbour's token
  favours the other reading),
* the disallowed labels are masked out (phoneme_mask; the character's own token favours a label it
  may not take even more),
* the character is looked up in traditional form (the lists are traditional, as g2pW's are).
"""

from __future__ import annotations

import json
import logging
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest

from app.engine.text.zh import g2p, normalize
from app.engine.text.zh import g2pw as g2pw_module
from app.engine.text.zh.g2pw import (
    CONTEXT_CHARS,
    G2PW,
    MAX_TOKENS,
    LabelSet,
    Query,
    active_g2pw,
    build_model_inputs,
    configure_from_weights_root,
    correct_with_dictionary,
    disable_g2pw,
    enable_g2pw,
    read_model_config,
    split_words,
    tokenize_with_offsets,
)
from tests.conftest import conformance_dir, corpus_piece_texts, read_jsonl

torch = pytest.importorskip("torch")
pytest.importorskip("onnx", reason="torch.onnx.export needs the onnx package (dev dependency)")
pytest.importorskip("onnxruntime")
pytest.importorskip("opencc")

# Polyphonic characters (traditional, as in g2pW's lists): readings, the one our model is built to
# choose, and the other one. 一 is listed but upstream never predicts it.
POLYPHONIC = {
    "長": ("ㄓㄤ3", "ㄔㄤ2"),
    "行": ("ㄏㄤ2", "ㄒㄧㄥ2"),
    "為": ("ㄨㄟ4", "ㄨㄟ2"),
    "了": ("ㄌㄧㄠ3", "ㄌㄜ5"),
}
NEVER_PREDICTED = {"一": ("ㄧ2", "ㄧ1")}
# 們 gets a reading pypinyin would not give in 我们 (men5), so the table visibly wins; 似 is listed
# with a wrong reading but upstream drops it from the table.
MONOPHONIC = {"們": "ㄇㄣ2", "似": "ㄏㄠ3"}
BOPOMOFO_TO_PINYIN = {
    "ㄓㄤ": "zhang",
    "ㄔㄤ": "chang",
    "ㄏㄤ": "hang",
    "ㄒㄧㄥ": "xing",
    "ㄨㄟ": "wei",
    "ㄌㄧㄠ": "liao",
    "ㄌㄜ": "le",
    "ㄧ": "yi",
    "ㄇㄣ": "men",
    "ㄏㄠ": "hao",
}
SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
VOCAB_CHARS = "我們们长長了行为為一个似的好银行人在走天他说很,.!?abc12"
WORD_PIECES = ["##b", "##c", "##2"]


def pinyin_of(bopomofo: str) -> str:
    return BOPOMOFO_TO_PINYIN[bopomofo[:-1]] + bopomofo[-1]


def label_list() -> list[str]:
    # g2pW's labels: the distinct readings of the polyphonic list, sorted
    readings = {r for pair in (*POLYPHONIC.values(), *NEVER_PREDICTED.values()) for r in pair}
    return sorted(readings)


class TinyG2PW(torch.nn.Module):
    """g2pW's signature: probabilities [queries, labels] from the token at each query's position."""

    def __init__(self, scores: torch.Tensor, n_chars: int):
        super().__init__()
        vocab, n_labels = scores.shape
        self.one_hot = torch.nn.Embedding.from_pretrained(torch.eye(vocab))
        self.token_type = torch.nn.Embedding.from_pretrained(torch.zeros(2, vocab))
        self.scores = torch.nn.Parameter(scores)
        self.char_bias = torch.nn.Embedding.from_pretrained(torch.zeros(n_chars, n_labels))

    def forward(self, input_ids, token_type_ids, attention_mask, phoneme_mask, char_ids, position_ids):
        hidden = self.one_hot(input_ids) + self.token_type(token_type_ids)
        hidden = hidden * attention_mask.unsqueeze(-1).float()
        # one token row may serve several queries (upstream's sentence dedup): broadcast it
        hidden = hidden.expand(char_ids.shape[0], -1, -1)
        index = position_ids.view(-1, 1, 1).expand(-1, 1, hidden.shape[-1])
        at_query = hidden.gather(1, index).squeeze(1)
        logits = at_query @ self.scores + self.char_bias(char_ids)
        return torch.softmax(logits, dim=-1) * phoneme_mask


def scores_table(vocab: list[str], labels: list[str]) -> torch.Tensor:
    scores = torch.zeros(len(vocab), len(labels))
    other = [labels.index(o) for _, o in POLYPHONIC.values()]
    scores[:, other] = 8.0  # any token but the character itself favours the "other" reading
    right_readings = [labels.index(right) for right, _ in POLYPHONIC.values()]
    for i, (char, (right, wrong)) in enumerate(POLYPHONIC.items()):
        row = vocab.index(char)
        scores[row, labels.index(wrong)] = 0.0
        scores[row, labels.index(right)] = 5.0
        # ...and a label the character may not take scores highest of all
        scores[row, right_readings[(i + 1) % len(right_readings)]] = 10.0
    return scores


def write_model_folder(model_dir: Path, vocab: list[str], use_mask: bool = True) -> None:
    model_dir.mkdir(parents=True)
    lines = [f"{c}\t{r}" for c, pair in (*POLYPHONIC.items(), *NEVER_PREDICTED.items()) for r in pair]
    (model_dir / "POLYPHONIC_CHARS.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    mono = "\n".join(f"{c}\t{r}" for c, r in MONOPHONIC.items())
    (model_dir / "MONOPHONIC_CHARS.txt").write_text(mono + "\n", encoding="utf-8")
    (model_dir / "bopomofo_to_pinyin_wo_tune_dict.json").write_text(
        json.dumps(BOPOMOFO_TO_PINYIN, ensure_ascii=False), encoding="utf-8"
    )
    (model_dir / "config.py").write_text(
        f"manual_seed = 1313\nmodel_source = 'bert-base-chinese'\nuse_mask = {use_mask}\n"
        "use_char_phoneme = False\nparam_conditional = {'bias': True}\n",
        encoding="utf-8",
    )
    labels = label_list()
    n_chars = len({*POLYPHONIC, *NEVER_PREDICTED})
    model = TinyG2PW(scores_table(vocab, labels), n_chars).eval()
    n, width = 3, 7
    example = (
        torch.ones(n, width, dtype=torch.long),
        torch.zeros(n, width, dtype=torch.long),
        torch.ones(n, width, dtype=torch.long),
        torch.ones(n, len(labels)),
        torch.zeros(n, dtype=torch.long),
        torch.ones(n, dtype=torch.long),
    )
    names = ["input_ids", "token_type_ids", "attention_mask", "phoneme_mask", "char_ids", "position_ids"]
    dynamic = {name: {0: f"{name}_rows"} for name in names}
    for name in ("input_ids", "token_type_ids", "attention_mask"):
        dynamic[name][1] = "tokens"
    with warnings.catch_warnings():  # the TorchScript exporter is deprecated; it needs no onnxscript
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            model,
            example,
            str(model_dir / "g2pW.onnx"),
            input_names=names,
            output_names=["probs"],
            dynamic_axes=dynamic,
            dynamo=False,
        )


def write_tokenizer(folder: Path, vocab: list[str]) -> None:
    folder.mkdir(parents=True)
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    (folder / "tokenizer_config.json").write_text(
        json.dumps({"tokenizer_class": "BertTokenizer", "do_lower_case": True}), encoding="utf-8"
    )


@pytest.fixture(scope="module")
def weights_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("weights")
    vocab = SPECIAL_TOKENS + list(dict.fromkeys(VOCAB_CHARS)) + WORD_PIECES
    write_tokenizer(root / g2pw_module.TOKENIZER_DIR, vocab)
    write_model_folder(root / g2pw_module.MODEL_DIR, vocab)
    return root


@pytest.fixture(scope="module")
def model(weights_root) -> G2PW:
    return G2PW.load(weights_root / g2pw_module.MODEL_DIR, weights_root / g2pw_module.TOKENIZER_DIR)


@pytest.fixture(autouse=True)
def pypinyin_path_after_each_test():
    yield
    disable_g2pw()


# --------------------------------------------------------------------------- loading and the switch


def test_configure_uses_the_folder_when_present_and_logs_it(weights_root, caplog):
    with caplog.at_level(logging.INFO, logger=g2pw_module.__name__):
        message = configure_from_weights_root(weights_root)
    assert active_g2pw() is not None
    assert message.startswith("Chinese polyphones: g2pW")
    assert "WITHOUT upstream's word dictionary" in message  # no polyphonic*.rep in this root
    assert message in caplog.text


def test_configure_without_the_folder_keeps_pypinyin(tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger=g2pw_module.__name__):
        message = configure_from_weights_root(tmp_path)
    assert active_g2pw() is None
    assert "pypinyin" in message and message in caplog.text


def test_a_folder_that_cannot_load_is_logged_and_pypinyin_stays(weights_root, tmp_path, caplog):
    shutil.copytree(weights_root / g2pw_module.MODEL_DIR, tmp_path / g2pw_module.MODEL_DIR)  # no tokenizer
    with caplog.at_level(logging.ERROR, logger=g2pw_module.__name__):
        message = configure_from_weights_root(tmp_path)
    assert active_g2pw() is None
    assert "could not be loaded" in message and message in caplog.text


def test_word_dictionary_is_read_from_the_upstream_checkout(weights_root, tmp_path):
    root = tmp_path / "root"
    shutil.copytree(weights_root, root)
    rep_dir = root / g2pw_module.WORD_DICTIONARY_DIR
    rep_dir.mkdir(parents=True)
    (rep_dir / "polyphonic.rep").write_text("长了: ['chang2', 'le5']\n行: ['xing2']\n", encoding="utf-8")
    (rep_dir / "polyphonic-fix.rep").write_text("长了: ['zhang3', 'le5']\n\n", encoding="utf-8")
    message = configure_from_weights_root(root)
    assert "with upstream's word dictionary (2 entries" in message
    # the later file wins for the same word
    assert active_g2pw().word_dictionary == {"长了": ["zhang3", "le5"], "行": ["xing2"]}


def test_folder_paths_are_the_registrys():
    from app.engine import registry

    assert g2pw_module.MODEL_DIR == registry.G2PW_DIR
    assert g2pw_module.TOKENIZER_DIR == registry.BERT_DIR


def test_model_config_is_parsed_not_executed(tmp_path):
    config = tmp_path / "config.py"
    config.write_text("import os\nos.remove('x')\nuse_mask = False\nuse_char_phoneme = True\n")
    parsed = read_model_config(config)
    assert (parsed.use_mask, parsed.use_char_phoneme) == (False, True)
    config.write_text("window_size = 32\n")
    assert read_model_config(config) == g2pw_module.ModelConfig(use_mask=True, use_char_phoneme=False)


def test_labels_are_sorted_readings_and_char_labels_are_split():
    pairs = [("長", "ㄓㄤ3"), ("長", "ㄔㄤ2"), ("行", "ㄏㄤ2")]
    plain = LabelSet.from_pairs(pairs, use_char_phoneme=False)
    assert plain.labels == sorted(["ㄓㄤ3", "ㄔㄤ2", "ㄏㄤ2"])
    assert [plain.labels[i] for i in plain.allowed["長"]] == ["ㄓㄤ3", "ㄔㄤ2"]
    paired = LabelSet.from_pairs(pairs, use_char_phoneme=True)
    assert paired.labels == sorted(["長 ㄓㄤ3", "長 ㄔㄤ2", "行 ㄏㄤ2"])
    assert paired.reading(paired.labels.index("長 ㄔㄤ2")) == "ㄔㄤ2"


# --------------------------------------------------------------------------- tokenisation and batching


def test_words_are_alphanumeric_runs_or_single_characters_and_spaces_vanish():
    words, char_to_word, spans = split_words("ab12 長了  x")
    assert words == ["ab12", "長", "了", "x"]
    assert char_to_word == [0, 0, 0, 0, None, 1, 2, None, None, 3]
    assert spans == [(0, 4), (5, 6), (6, 7), (9, 10)]


def test_token_offsets_cover_word_pieces_and_unknown_words(model):
    tok = tokenize_with_offsets(model.tokenizer, "長了 abc 鼹")
    assert tok.tokens[:2] == ["長", "了"] and tok.tokens[-1] == "[UNK]"
    assert tok.char_to_token[0] == 0 and tok.char_to_token[1] == 1 and tok.char_to_token[2] is None
    assert tok.char_to_token[-1] == len(tok.tokens) - 1
    # every character of "abc" maps into the pieces of that word
    pieces = {tok.char_to_token[i] for i in range(3, 6)}
    assert "".join(tok.tokens[i].removeprefix("##") for i in sorted(pieces)) == "abc"


def test_window_spans_the_polyphonic_characters_plus_context(model):
    clause = "我" * 20 + "長" + "我" * 5 + "為" + "我" * 30
    queries, readings = model.queries_and_fixed_readings([clause])
    first, last = 20, 26
    window = clause[first - CONTEXT_CHARS : last + CONTEXT_CHARS + 1]
    assert [q.text for q in queries] == [window, window]
    assert [(q.index_in_text, q.index_in_clause) for q in queries] == [
        (CONTEXT_CHARS, 20),
        (CONTEXT_CHARS + 6, 26),
    ]
    assert readings[0][20] is None and readings[0][26] is None and readings[0][0] == "wo3"


def test_model_inputs_have_one_row_per_query_padded_to_the_longest_text(model):
    queries = [Query("我長了", 1, 0, 1), Query("我長了", 2, 0, 2), Query("行", 0, 1, 0)]
    feed = build_model_inputs(model.tokenizer, model.label_set, model.char_ids, True, queries)
    vocab = model.tokenizer.convert_tokens_to_ids
    assert feed["input_ids"].shape == (3, 5) and feed["input_ids"].dtype == np.int64
    assert feed["input_ids"][0].tolist() == vocab(["[CLS]", "我", "長", "了", "[SEP]"])
    assert feed["input_ids"][2].tolist() == vocab(["[CLS]", "行", "[SEP]"]) + [0, 0]
    assert feed["attention_mask"][2].tolist() == [1, 1, 1, 0, 0]
    assert not feed["token_type_ids"].any()
    assert feed["position_ids"].tolist() == [2, 3, 1]  # [CLS] shifts every position by one
    chars = sorted({*POLYPHONIC, *NEVER_PREDICTED})
    assert feed["char_ids"].tolist() == [chars.index("長"), chars.index("了"), chars.index("行")]
    labels = label_list()
    assert feed["phoneme_mask"].dtype == np.float32
    allowed = [labels[i] for i in np.flatnonzero(feed["phoneme_mask"][0])]
    assert sorted(allowed) == sorted(POLYPHONIC["長"])
    unmasked = build_model_inputs(model.tokenizer, model.label_set, model.char_ids, False, queries[:1])
    assert unmasked["phoneme_mask"].tolist() == [[1.0] * len(labels)]


def test_long_texts_are_cut_to_the_token_limit_around_the_query(model):
    text = "我" * 700 + "長" + "我" * 100
    feed = build_model_inputs(
        model.tokenizer, model.label_set, model.char_ids, True, [Query(text, 700, 0, 700)]
    )
    assert feed["input_ids"].shape == (1, MAX_TOKENS)
    # cut so the window ends at the text's end: the query sits 101 tokens before [SEP]
    assert feed["position_ids"].tolist() == [MAX_TOKENS - 1 - 101]
    assert feed["input_ids"][0, feed["position_ids"][0]] == model.tokenizer.convert_tokens_to_ids("長")


class RecordingSession:
    def __init__(self, session):
        self.session = session
        self.feeds: list[dict[str, np.ndarray]] = []

    def run(self, outputs, feed):
        self.feeds.append(feed)
        return self.session.run(outputs, feed)


def test_queries_of_one_clause_share_one_token_row(model, monkeypatch):
    recorder = RecordingSession(model.session)
    monkeypatch.setattr(model, "session", recorder)
    readings = model.readings(["长了我们", "为我"])
    assert [feed["input_ids"].shape[0] for feed in recorder.feeds] == [1, 1]
    assert [feed["char_ids"].shape[0] for feed in recorder.feeds] == [2, 1]
    # same predictions as the whole batch without dedup
    queries, _ = model.queries_and_fixed_readings(["長了我們", "為我"])
    feed = build_model_inputs(model.tokenizer, model.label_set, model.char_ids, True, queries)
    full = [model.label_set.labels[i] for i in model.predict_labels(feed)]
    assert full == ["ㄓㄤ3", "ㄌㄧㄠ3", "ㄨㄟ4"]
    assert [readings[0][0], readings[0][1], readings[1][0]] == [pinyin_of(b) for b in full]


# --------------------------------------------------------------------------- readings


def test_polyphonic_characters_take_the_models_choice_among_their_readings(model):
    readings = model.readings(["他长了", "银行很长", "为人"])
    assert readings[0] == ["ta1", pinyin_of(POLYPHONIC["長"][0]), pinyin_of(POLYPHONIC["了"][0])]
    assert readings[1][1] == pinyin_of(POLYPHONIC["行"][0])
    assert readings[1][3] == pinyin_of(POLYPHONIC["長"][0])
    assert readings[2][0] == pinyin_of(POLYPHONIC["為"][0])


def test_other_characters_keep_pypinyin_and_the_monophonic_table(model):
    from pypinyin import Style, pinyin

    readings = model.readings(["一个好似我们的天,"])[0]
    expected = [p[0] for p in pinyin("一个好似我们的天,", style=Style.TONE3, neutral_tone_with_five=True)]
    assert readings[3] == expected[3]  # 似: the table's entry is ignored, as upstream does
    assert readings[5] == pinyin_of(MONOPHONIC["們"])  # 們 is in the table: men2, not men5
    assert readings[0] == expected[0]  # 一 is listed as polyphonic but never predicted
    keep = [i for i in range(len(expected)) if i != 5]
    assert [readings[i] for i in keep] == [expected[i] for i in keep]


def test_without_the_mask_the_unrestricted_argmax_wins(weights_root, tmp_path):
    model_dir = tmp_path / "G2PWModel"
    shutil.copytree(weights_root / g2pw_module.MODEL_DIR, model_dir)
    (model_dir / "config.py").write_text("use_mask = False\n")
    unmasked = G2PW.load(model_dir, weights_root / g2pw_module.TOKENIZER_DIR)
    assert unmasked.readings(["长"])[0] == [pinyin_of(POLYPHONIC["行"][0])]  # 10 beats 5


def test_dictionary_overrides_whole_words_then_single_characters():
    dictionary = {"长了": ["chang2", "le5"], "行": ["xing2", "hang2"]}
    assert correct_with_dictionary(dictionary, "长了", ["zhang3", "liao3"]) == ["chang2", "le5"]
    assert correct_with_dictionary(dictionary, "银行", ["yin2", "hang2"]) == ["yin2", "xing2"]
    assert correct_with_dictionary(None, "长了", ["zhang3", "liao3"]) == ["zhang3", "liao3"]


# --------------------------------------------------------------------------- through g2p


def test_g2p_v2_uses_g2pw_when_enabled_and_v1_never_does(weights_root):
    text = normalize("很长的行。")
    before_v1, before_v2 = g2p(text, "v1"), g2p(text, "v2")
    assert before_v2[0][6:8] == ["x", "ing2"]  # pypinyin's reading of 行 here
    configure_from_weights_root(weights_root)
    phones, word2ph = g2p(text, "v2")
    # the model's readings (長 zhang3, 行 hang2), then the usual sandhi (很 before a third tone: hen2)
    assert phones == ["h", "en2", "zh", "ang3", "d", "e5", "h", "ang2", "."]
    assert word2ph == before_v2[1]
    assert g2p(text, "v1") == before_v1
    disable_g2pw()
    assert g2p(text, "v2") == before_v2


def test_g2p_applies_tone_sandhi_to_model_readings(weights_root):
    configure_from_weights_root(weights_root)
    # 們 men2 (monophonic table) and 了 liao3 (model) are then made neutral by the suffix/particle rules
    phones, _ = g2p(normalize("我们长了。"), "v2")
    assert phones == ["w", "o3", "m", "en5", "zh", "ang3", "l", "iao5", "."]


def test_g2p_applies_the_word_dictionary_to_model_readings(weights_root):
    model = enable_g2pw(weights_root / g2pw_module.MODEL_DIR, weights_root / g2pw_module.TOKENIZER_DIR)
    model.word_dictionary = {"长": ["chang2"]}
    phones, _ = g2p(normalize("长。"), "v2")
    assert phones == ["ch", "ang2", "."]


def test_g2p_batches_every_clause_in_one_call(weights_root, monkeypatch):
    model = enable_g2pw(weights_root / g2pw_module.MODEL_DIR, weights_root / g2pw_module.TOKENIZER_DIR)
    calls: list[list[str]] = []
    original = model.readings
    monkeypatch.setattr(model, "readings", lambda clauses: calls.append(list(clauses)) or original(clauses))
    g2p(normalize("他长了,为我行!好."), "v2")
    assert calls == [["他长了,", "为我行!", "好."]]


def _v2_mandarin_pieces() -> list[dict]:
    path = conformance_dir() / "text" / "frontend.jsonl"
    if not path.is_file():
        return []
    pieces = {}
    for case in read_jsonl(path):
        if case["version"] != "v2":
            continue
        for segment in case.get("segments") or []:
            for piece in segment["lang_segments"]:
                if piece["lang"] == "zh" and not any(mark in piece["text"] for mark in ("￥", "^")):
                    pieces.setdefault(piece["text"], piece)
    return list(pieces.values())


@pytest.mark.conformance
def test_without_the_folder_v2_still_matches_the_corpus(tmp_path, conformance):
    configure_from_weights_root(tmp_path)
    pieces = _v2_mandarin_pieces()
    # Every v2 Mandarin piece the corpus holds (less the cleaner's pause marks), whatever its size.
    expected = {
        text for _, text in corpus_piece_texts("zh", ("v2",)) if not any(m in text for m in ("￥", "^"))
    }
    assert pieces and {piece["text"] for piece in pieces} == expected
    for piece in pieces:
        assert g2p(piece["norm_text"], "v2") == (piece["phones"], piece["word2ph"]), piece["text"]
