"""Symbol tables and phone -> id mapping."""

from __future__ import annotations

import json

import pytest

from app.engine.text.symbols import SYMBOLS_V1, SYMBOLS_V2, phones_to_ids, symbol_to_id, symbols_for


def test_table_sizes_and_uniqueness() -> None:
    assert len(SYMBOLS_V1) == 322
    assert len(SYMBOLS_V2) == 732
    assert len(set(SYMBOLS_V1)) == len(SYMBOLS_V1)
    assert len(set(SYMBOLS_V2)) == len(SYMBOLS_V2)


def test_v2_extends_v1_without_moving_ids() -> None:
    assert SYMBOLS_V2[: len(SYMBOLS_V1)] == SYMBOLS_V1
    assert SYMBOLS_V2[322:324] == ("[", "]")


def test_every_later_version_uses_v2() -> None:
    assert symbols_for("v1") is SYMBOLS_V1
    for version in ("v2", "v2Pro", "v2ProPlus", "v3", "v4"):
        assert symbols_for(version) is SYMBOLS_V2


def test_phones_to_ids_round_trip() -> None:
    phones = ["_", "n", "i3", "h", "ao3", ",", "UNK", "SP2"]
    for version, table in (("v1", SYMBOLS_V1), ("v2", SYMBOLS_V2)):
        ids = phones_to_ids(phones, version)
        assert [table[i] for i in ids] == phones
    assert phones_to_ids(["_"], "v2") == [symbol_to_id("v2")["_"]]


def test_v2_only_phones_are_unknown_to_v1() -> None:
    for phone in ("[", "ㄱ", "空", "Yaa1", "Ygw"):
        assert phone in symbol_to_id("v2")
        assert phone not in symbol_to_id("v1")
    with pytest.raises(KeyError):
        phones_to_ids(["Yaa1"], "v1")


@pytest.mark.conformance
def test_tables_match_reference(conformance) -> None:
    golden = json.loads((conformance / "text" / "symbols.json").read_text(encoding="utf-8"))
    assert list(SYMBOLS_V1) == golden["v1"]["symbols"]
    assert list(SYMBOLS_V2) == golden["v2"]["symbols"]
    assert golden["v1"]["count"] == len(SYMBOLS_V1)
    assert golden["v2"]["count"] == len(SYMBOLS_V2)
