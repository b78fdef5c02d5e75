"""Optional g2pW polyphone model for v2 Chinese, as upstream GPT-SoVITS runs it.

Upstream (chinese2.py) reads every v2 Chinese clause with the g2pW ONNX model: a BERT-based
classifier that picks the reading of each polyphonic character from its sentence context. We use
it only when the model folder is installed (``<weights_root>/GPT_SoVITS/text/G2PWModel``);
otherwise the pypinyin path in ``g2p.py`` runs, which is what the conformance corpus was made with.

What happens to a batch of clauses (all clauses of one ``g2p`` call go in one batch, as upstream):

1. Each clause is converted to Taiwan traditional characters with OpenCC (``s2tw``), because the
   model and its character lists are traditional-Chinese (upstream's ``enable_non_tradional_chinese``,
   on by default in its G2PWPinyin).
2. Per character: a polyphonic character (``POLYPHONIC_CHARS.txt``) becomes a query for the model;
   a monophonic one (``MONOPHONIC_CHARS.txt``) gets its listed reading; anything else gets
   pypinyin's reading of the clause converted back to simplified characters.
3. The model sees a window of the clause: from 16 characters before the first polyphonic character
   to 16 after the last. All queries of one clause therefore share one text, and the BERT part runs
   once per distinct text ("sentence dedup", upstream's default).
4. The model returns per-label probabilities, already restricted to the readings allowed for the
   character (``phoneme_mask``); the argmax label is a bopomofo syllable with a tone digit, turned
   into tone-3 pinyin with the folder's ``bopomofo_to_pinyin_wo_tune_dict.json``.

Then, per jieba word, upstream's word dictionary (``polyphonic.rep`` + ``polyphonic-fix.rep``,
data files of an upstream checkout that we cannot ship) overrides the model: a listed word takes
the dictionary's readings, and a listed single character takes its first reading. When those files
are absent the model's readings stand, and start-up says so.

Why this module is long: g2pW's pre- and post-processing (upstream's character/phoneme tables,
the ONNX input layout, the polyphone corrections) must match upstream line for line, and is only
used together.
"""

from __future__ import annotations

import ast
import json
import logging
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pypinyin import Style, pinyin
from pypinyin.contrib.tone_convert import to_finals_tone3, to_initials

from .char_convert import to_simplified
from .erhua import apply_erhua
from .segmenter import cut_with_pos
from .syllables import UnknownSyllableError
from .tone_sandhi import apply_sandhi, merge_words

log = logging.getLogger(__name__)

# Where upstream's files sit, relative to the weights root (an upstream checkout has all of them);
# the first two are registry.G2PW_DIR and registry.BERT_DIR (not imported: that module loads torch).
MODEL_DIR = "GPT_SoVITS/text/G2PWModel"
TOKENIZER_DIR = "GPT_SoVITS/pretrained_models/chinese-roberta-wwm-ext-large"
WORD_DICTIONARY_DIR = "GPT_SoVITS/text/g2pw"
# Read in this order; an entry of the later file replaces the same key of the earlier one.
WORD_DICTIONARY_FILES = ("polyphonic.rep", "polyphonic-fix.rep")

ONNX_FILE_NAMES = ("g2pW.onnx", "g2pw.onnx")  # the first one present is used
POLYPHONIC_FILE = "POLYPHONIC_CHARS.txt"
MONOPHONIC_FILE = "MONOPHONIC_CHARS.txt"
BOPOMOFO_FILE = "bopomofo_to_pinyin_wo_tune_dict.json"
CONFIG_FILE = "config.py"

# Upstream facts: characters the model lists as polyphonic but upstream reads with pypinyin anyway
# (traditional forms, since the lists are traditional; upstream's 听 is the simplified form, which
# never survives the s2tw conversion, kept as listed), and monophonic entries it ignores.
NOT_PREDICTED = frozenset("一不和咋嗲剖差攢倒難奔勁拗肖瘙誒泊听噢")
MONOPHONIC_IGNORED = frozenset("似攢")

CONTEXT_CHARS = 16  # upstream's default window around the polyphonic characters of a clause
MAX_TOKENS = 512  # BERT's limit, [CLS] and [SEP] included
ONNX_THREADS = 2  # upstream's intra-op thread count

# Model settings read from the folder's config.py, with upstream's defaults for absent keys.
_CONFIG_DEFAULTS = {"use_mask": True, "use_char_phoneme": False}


@dataclass(frozen=True)
class ModelConfig:
    use_mask: bool = True  # feed the per-character "allowed readings" mask (else all ones)
    use_char_phoneme: bool = False  # labels are "char reading" pairs instead of bare readings


def read_model_config(path: Path) -> ModelConfig:
    """The two settings we need from the model's ``config.py``.

    Upstream executes that file; we parse it and take top-level literal assignments only, so a
    weights folder cannot run code in the service.
    """
    values: dict[str, Any] = dict(_CONFIG_DEFAULTS)
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            name = node.targets[0].id
            if name in values:
                values[name] = bool(ast.literal_eval(node.value))
    return ModelConfig(**values)


def _read_tab_pairs(path: Path) -> list[tuple[str, str]]:
    pairs = []
    for line in path.read_text(encoding="utf-8").strip().split("\n"):
        char, reading = line.split("\t")
        pairs.append((char, reading))
    return pairs


@dataclass(frozen=True)
class LabelSet:
    """The model's output classes and, per polyphonic character, which of them it may take."""

    labels: list[str]
    allowed: dict[str, list[int]]  # character -> indices into labels
    use_char_phoneme: bool

    @classmethod
    def from_pairs(cls, pairs: Sequence[tuple[str, str]], use_char_phoneme: bool) -> LabelSet:
        def label_of(char: str, reading: str) -> str:
            return f"{char} {reading}" if use_char_phoneme else reading

        labels = sorted({label_of(char, reading) for char, reading in pairs})
        index = {label: i for i, label in enumerate(labels)}
        allowed: dict[str, list[int]] = {}
        for char, reading in pairs:
            allowed.setdefault(char, []).append(index[label_of(char, reading)])
        return cls(labels, allowed, use_char_phoneme)

    def reading(self, label_index: int) -> str:
        label = self.labels[label_index]
        return label.split(" ")[1] if self.use_char_phoneme else label


# --------------------------------------------------------------------------- tokenisation


def split_words(text: str) -> tuple[list[str], list[int | None], list[tuple[int, int]]]:
    """Cut text the way g2pW feeds BERT: runs of ASCII letters/digits are one word, spaces are
    dropped, anything else is a word of one character.

    Returns the words, the word index of every character (None for spaces) and each word's
    (start, end) character span.
    """
    words: list[str] = []
    char_to_word: list[int | None] = []
    word_spans: list[tuple[int, int]] = []
    for match in re.finditer(r" +|[a-zA-Z0-9]+|.", text, flags=re.DOTALL):
        piece = match.group()
        if piece[0] == " ":
            char_to_word += [None] * len(piece)
            continue
        char_to_word += [len(words)] * len(piece)
        word_spans.append((match.start(), match.end()))
        words.append(piece)
    return words, char_to_word, word_spans


@dataclass
class Tokenized:
    tokens: list[str]
    char_to_token: list[int | None]
    token_spans: list[tuple[int, int]]  # character span of each token


def tokenize_with_offsets(tokenizer: Any, text: str) -> Tokenized:
    """BERT word pieces of ``text`` and the token index of each character."""
    words, char_to_token, word_spans = split_words(text)
    tokens: list[str] = []
    token_spans: list[tuple[int, int]] = []
    for word, (start, end) in zip(words, word_spans, strict=True):
        pieces = tokenizer.tokenize(word)
        if not pieces or pieces == ["[UNK]"]:
            tokens.append("[UNK]")
            token_spans.append((start, end))
            continue
        for piece in pieces:
            width = len(piece.removeprefix("##"))
            tokens.append(piece)
            token_spans.append((start, start + width))
            start += width
    # Upstream quirk kept: characters that no piece covers (a tokenizer that rewrote the word)
    # keep their *word* index here, not a token index.
    for token_index, (start, end) in enumerate(token_spans):
        for char_index in range(start, end):
            char_to_token[char_index] = token_index
    return Tokenized(tokens, char_to_token, token_spans)


def _cut_to_token_limit(text: str, query: int, tok: Tokenized) -> tuple[str, int, Tokenized]:
    """For a text over BERT's limit: the longest token window around the query that fits."""
    keep = MAX_TOKENS - 2
    if len(tok.tokens) <= keep:
        return text, query, tok
    centre = tok.char_to_token[query]
    assert centre is not None  # a query is a hanzi, never a space
    first = min(max(centre - keep // 2, 0), len(tok.tokens) - keep)
    last = first + keep
    start, end = tok.token_spans[first][0], tok.token_spans[last - 1][1]
    return (
        text[start:end],
        query - start,
        Tokenized(
            tok.tokens[first:last],
            [None if i is None else i - first for i in tok.char_to_token[start:end]],
            [(s - start, e - start) for s, e in tok.token_spans[first:last]],
        ),
    )


# --------------------------------------------------------------------------- model inputs


@dataclass
class Query:
    """One polyphonic character to predict: where it is in the model's text and in its clause."""

    text: str  # the window of the clause the model sees
    index_in_text: int
    clause: int
    index_in_clause: int


def build_model_inputs(
    tokenizer: Any, label_set: LabelSet, char_ids: dict[str, int], use_mask: bool, queries: Sequence[Query]
) -> dict[str, np.ndarray]:
    """The ONNX feed for a batch of queries: one row per query, token rows padded with zeros."""
    cache: dict[str, Tokenized] = {}
    rows_input_ids: list[list[int]] = []
    masks, query_char_ids, positions = [], [], []
    all_labels = [1] * len(label_set.labels)
    for query in queries:
        text = query.text.lower()
        if text not in cache:
            cache[text] = tokenize_with_offsets(tokenizer, text)
        text, index, tok = _cut_to_token_limit(text, query.index_in_text, cache[text])
        rows_input_ids.append(tokenizer.convert_tokens_to_ids(["[CLS]", *tok.tokens, "[SEP]"]))
        char = text[index]
        if use_mask:
            allowed = set(label_set.allowed[char])
            masks.append([1 if i in allowed else 0 for i in range(len(label_set.labels))])
        else:
            masks.append(all_labels)
        query_char_ids.append(char_ids[char])
        positions.append(tok.char_to_token[index] + 1)  # +1: [CLS] comes first

    width = max(len(row) for row in rows_input_ids)
    input_ids = np.zeros((len(queries), width), dtype=np.int64)
    attention_mask = np.zeros((len(queries), width), dtype=np.int64)
    for row, ids in enumerate(rows_input_ids):
        input_ids[row, : len(ids)] = ids
        attention_mask[row, : len(ids)] = 1
    return {
        "input_ids": input_ids,
        "token_type_ids": np.zeros_like(input_ids),
        "attention_mask": attention_mask,
        "phoneme_mask": np.array(masks, dtype=np.float32),
        "char_ids": np.array(query_char_ids, dtype=np.int64),
        "position_ids": np.array(positions, dtype=np.int64),
    }


_TEXT_INPUTS = ("input_ids", "token_type_ids", "attention_mask")


# --------------------------------------------------------------------------- the model


def _per_char_pinyin(simplified: str) -> list[str]:
    """pypinyin's tone-3 reading of each character of a clause, read as a whole (phrase-aware).

    pypinyin returns a run of non-hanzi characters as ONE item; upstream indexes its result by
    character position, which is only aligned when such runs are single characters (always so for
    normalised clauses). We split such runs into characters so positions always line up.
    """
    return [
        item[0] for item in pinyin(simplified, style=Style.TONE3, neutral_tone_with_five=True, errors=list)
    ]


@dataclass
class G2PW:
    """A loaded g2pW folder: tokenizer, ONNX session, character lists and label set."""

    model_dir: Path
    tokenizer: Any
    session: Any
    label_set: LabelSet
    use_mask: bool
    predicted_chars: frozenset[str]
    monophonic: dict[str, str]
    bopomofo_to_pinyin: dict[str, str]
    to_traditional: Any  # an OpenCC converter (``.convert(str) -> str``)
    word_dictionary: dict[str, list[str]] | None = None
    char_ids: dict[str, int] = field(init=False)
    _lock: threading.Lock = field(init=False, default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.char_ids = {char: i for i, char in enumerate(sorted(self.label_set.allowed))}

    @classmethod
    def load(
        cls, model_dir: Path, tokenizer_dir: Path, word_dictionary: dict[str, list[str]] | None = None
    ) -> G2PW:
        import onnxruntime
        from opencc import OpenCC
        from transformers import AutoTokenizer

        model_dir = Path(model_dir)
        onnx_path = next((model_dir / n for n in ONNX_FILE_NAMES if (model_dir / n).is_file()), None)
        if onnx_path is None:
            raise FileNotFoundError(f"{model_dir}: no {' or '.join(ONNX_FILE_NAMES)}")
        config = read_model_config(model_dir / CONFIG_FILE)
        label_set = LabelSet.from_pairs(_read_tab_pairs(model_dir / POLYPHONIC_FILE), config.use_char_phoneme)
        monophonic = dict(_read_tab_pairs(model_dir / MONOPHONIC_FILE))
        for char in MONOPHONIC_IGNORED:
            monophonic.pop(char, None)
        bopomofo = json.loads((model_dir / BOPOMOFO_FILE).read_text(encoding="utf-8"))

        options = onnxruntime.SessionOptions()
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
        options.intra_op_num_threads = ONNX_THREADS
        options.log_severity_level = 3
        session = onnxruntime.InferenceSession(
            str(onnx_path), sess_options=options, providers=["CPUExecutionProvider"]
        )
        return cls(
            model_dir=model_dir,
            tokenizer=AutoTokenizer.from_pretrained(tokenizer_dir, local_files_only=True),
            session=session,
            label_set=label_set,
            use_mask=config.use_mask,
            predicted_chars=frozenset(label_set.allowed) - NOT_PREDICTED,
            monophonic=monophonic,
            bopomofo_to_pinyin=bopomofo,
            to_traditional=OpenCC("s2tw"),
            word_dictionary=word_dictionary,
        )

    def bopomofo_reading(self, bopomofo: str) -> str | None:
        """Bopomofo + tone digit -> tone-3 pinyin ("ㄓㄨㄥ1" -> "zhong1"); None (logged) when the
        table lacks the syllable, as upstream."""
        tone = bopomofo[-1]
        if tone not in "12345":
            raise ValueError(f"g2pW label {bopomofo!r} has no tone digit")
        syllable = self.bopomofo_to_pinyin.get(bopomofo[:-1])
        if not syllable:
            log.warning("g2pW: bopomofo %r has no pinyin in %s", bopomofo, BOPOMOFO_FILE)
            return None
        return syllable + tone

    def queries_and_fixed_readings(
        self, clauses: Sequence[str]
    ) -> tuple[list[Query], list[list[str | None]]]:
        """Split each (traditional) clause into model queries and readings known without the model."""
        queries: list[Query] = []
        readings: list[list[str | None]] = []
        for clause_index, clause in enumerate(clauses):
            fallback = _per_char_pinyin(to_simplified(clause))
            clause_readings: list[str | None] = []
            polyphonic_at: list[int] = []
            for i, char in enumerate(clause):
                if char in self.predicted_chars:
                    polyphonic_at.append(i)
                    clause_readings.append(None)
                elif char in self.monophonic:
                    clause_readings.append(self.bopomofo_reading(self.monophonic[char]))
                else:
                    clause_readings.append(fallback[i])
            if polyphonic_at:
                start = max(0, polyphonic_at[0] - CONTEXT_CHARS)
                window = clause[start : polyphonic_at[-1] + CONTEXT_CHARS + 1]
                queries += [Query(window, i - start, clause_index, i) for i in polyphonic_at]
            readings.append(clause_readings)
        return queries, readings

    def predict_labels(self, feed: dict[str, np.ndarray]) -> list[int]:
        probabilities = self.session.run(None, feed)[0]
        return np.argmax(probabilities, axis=1).tolist()

    def predict_deduplicated(self, feed: dict[str, np.ndarray], texts: Sequence[str]) -> list[int]:
        """Run BERT once per distinct text: queries that share a text get a single token row.

        The model broadcasts that one row over the group's masks, char ids and positions.
        """
        groups: dict[str, list[int]] = {}
        for row, text in enumerate(texts):
            groups.setdefault(text, []).append(row)
        if all(len(rows) == 1 for rows in groups.values()):
            return self.predict_labels(feed)
        predictions = [0] * len(texts)
        for rows in groups.values():
            group_feed = {name: value[rows] for name, value in feed.items()}
            if len(rows) > 1:
                for name in _TEXT_INPUTS:
                    group_feed[name] = group_feed[name][:1]
            for row, label in zip(rows, self.predict_labels(group_feed), strict=True):
                predictions[row] = label
        return predictions

    def readings(self, clauses: Sequence[str]) -> list[list[str | None]]:
        """Tone-3 pinyin ("zhong1", neutral tone 5) per character of each clause; a character
        pypinyin passes through (punctuation) is returned as itself; None where a model label has
        no pinyin."""
        traditional = []
        for clause in clauses:
            converted = self.to_traditional.convert(clause)
            if len(converted) != len(clause):
                raise UnknownSyllableError(f"OpenCC changed the length of {clause!r}; g2pW cannot align it")
            traditional.append(converted)
        queries, readings = self.queries_and_fixed_readings(traditional)
        if not queries:
            return readings
        with self._lock:  # one tokenizer and session; keep concurrent requests apart
            feed = build_model_inputs(self.tokenizer, self.label_set, self.char_ids, self.use_mask, queries)
            labels = self.predict_deduplicated(feed, [q.text for q in queries])
        for query, label in zip(queries, labels, strict=True):
            readings[query.clause][query.index_in_clause] = self.bopomofo_reading(
                self.label_set.reading(label)
            )
        return readings


# --------------------------------------------------------------------------- word dictionary


def read_word_dictionary(folder: Path) -> tuple[dict[str, list[str]], list[Path]]:
    """Upstream's word -> readings overrides from ``polyphonic.rep`` and ``polyphonic-fix.rep``.

    Each line is ``word: ['yi1', 'ding1']``. Returns the merged dictionary and the files read.
    """
    dictionary: dict[str, list[str]] = {}
    read: list[Path] = []
    for name in WORD_DICTIONARY_FILES:
        path = Path(folder) / name
        if not path.is_file():
            continue
        with open(path, encoding="utf-8") as lines:
            for line in lines:
                if not line.strip():
                    continue
                word, _, value = line.partition(":")
                dictionary[word.strip()] = list(ast.literal_eval(value.strip()))
        read.append(path)
    return dictionary, read


def correct_with_dictionary(
    dictionary: dict[str, list[str]] | None, word: str, readings: list[str | None]
) -> list[str | None]:
    """A word the dictionary lists takes its readings; otherwise each listed character takes its
    first listed reading."""
    if not dictionary:
        return readings
    if word in dictionary:
        return list(dictionary[word])
    corrected = list(readings)
    for i, char in enumerate(word):
        if char in dictionary:
            corrected[i] = dictionary[char][0]
    return corrected


# --------------------------------------------------------------------------- clause syllables


def _split_reading(reading: str | None, word: str) -> tuple[str, str]:
    if not reading:
        raise UnknownSyllableError(f"g2pW gave no reading for a character of {word!r}")
    if not reading[0].isalpha():
        return reading, reading  # punctuation passes through as both "initial" and "final"
    return to_initials(reading), to_finals_tone3(reading, neutral_tone_with_five=True)


def clause_syllables(model: G2PW, clauses: Sequence[str]) -> list[tuple[list[str], list[str]]]:
    """(initials, tone-3 finals) of each clause (Latin letters already removed), read with g2pW.

    The same word grouping, tone sandhi and erhua as the pypinyin path; only the readings differ.
    """
    non_empty = [clause for clause in clauses if clause]
    readings_of = iter(model.readings(non_empty) if non_empty else [])
    result = []
    for clause in clauses:
        readings = next(readings_of) if clause else []
        initials: list[str] = []
        finals: list[str] = []
        end = 0
        for word, pos in merge_words(cut_with_pos(clause)):
            start, end = end, end + len(word)
            if pos == "eng":
                continue
            word_readings = correct_with_dictionary(model.word_dictionary, word, readings[start:end])
            split = [_split_reading(reading, word) for reading in word_readings]
            word_finals = [final for _, final in split]
            if "" in word_finals:
                # e.g. 噷 "hm": no vowel, hence no tone and no phones (same refusal as the pypinyin path)
                raise UnknownSyllableError(f"no final in the reading of {word!r}, which has no phones")
            initials += [initial for initial, _ in split]
            finals += apply_erhua(word, pos, apply_sandhi(word, pos, word_finals))
        result.append((initials, finals))
    return result


# --------------------------------------------------------------------------- the switch

_active: G2PW | None = None


def active_g2pw() -> G2PW | None:
    """The loaded g2pW model when v2 Chinese uses it, else None (the pypinyin path)."""
    return _active


def enable_g2pw(model_dir: Path, tokenizer_dir: Path, word_dictionary_dir: Path | None = None) -> G2PW:
    """Load the model folder and use it for v2 Chinese from now on. Raises if anything is missing."""
    global _active
    dictionary: dict[str, list[str]] | None = None
    if word_dictionary_dir is not None:
        dictionary, read = read_word_dictionary(word_dictionary_dir)
        if not read:
            dictionary = None
    _active = G2PW.load(model_dir, tokenizer_dir, dictionary)
    return _active


def disable_g2pw() -> None:
    """Back to the pypinyin path (the default)."""
    global _active
    _active = None


def configure_from_weights_root(weights_root: Path) -> str:
    """Called once at start-up: use g2pW when its folder is installed, and log which path is active.

    A folder that fails to load (missing tokenizer, onnxruntime or opencc, broken files) is logged
    as an error and the pypinyin path stays active. Returns the one-line description it logged.
    """
    root = Path(weights_root)
    model_dir = root / MODEL_DIR
    disable_g2pw()
    if not model_dir.is_dir():
        message = f"Chinese polyphones: pypinyin (no g2pW model at {model_dir})"
        log.info(message)
        return message
    try:
        model = enable_g2pw(model_dir, root / TOKENIZER_DIR, root / WORD_DICTIONARY_DIR)
    except Exception as exc:  # noqa: BLE001 - any failure means: stay on the default path, loudly
        message = f"Chinese polyphones: pypinyin (g2pW model at {model_dir} could not be loaded: {exc!r})"
        log.error(message)
        return message
    if model.word_dictionary is None:
        message = (
            f"Chinese polyphones: g2pW ({model_dir}) WITHOUT upstream's word dictionary "
            f"({' / '.join(WORD_DICTIONARY_FILES)} not found in {root / WORD_DICTIONARY_DIR}); "
            "readings of the words it lists can differ from upstream"
        )
        log.warning(message)
    else:
        message = (
            f"Chinese polyphones: g2pW ({model_dir}) with upstream's word dictionary "
            f"({len(model.word_dictionary)} entries from {root / WORD_DICTIONARY_DIR})"
        )
        log.info(message)
    return message
