"""Mandarin normalisation rules on small hand-made inputs (expected readings derived from the rules)."""

from __future__ import annotations

import pytest

from app.engine.text.zh import normalize
from app.engine.text.zh.char_convert import has_traditional_table, to_half_width, to_simplified
from app.engine.text.zh.numbers import read_cardinal, read_digits, read_number


@pytest.mark.parametrize(
    ("digits", "spoken"),
    [
        ("0", "零"),
        ("000", "零"),
        ("7", "七"),
        ("10", "十"),  # a leading 一十 is said 十
        ("15", "十五"),
        ("110", "一百一十"),  # ...but only at the very start
        ("105", "一百零五"),  # a skipped place is said 零 once
        ("1001", "一千零一"),
        ("20010", "二万零一十"),
        ("100000000", "一亿"),
        ("123456789", "一亿二千三百四十五万六千七百八十九"),
    ],
)
def test_cardinals(digits, spoken):
    assert read_cardinal(digits) == spoken


def test_decimals_and_digit_strings():
    assert read_number("3.14") == "三点一四"
    assert read_number(".5") == "零点五"
    # upstream quirk: trailing zeros of the fraction collapse to one 零 instead of vanishing
    assert read_number("3.20") == "三点二零"
    assert read_number("3.00") == "三点零"
    assert read_digits("2024") == "二零二四"
    assert read_digits("110", one_as_yao=True) == "幺幺零"


@pytest.mark.parametrize(
    ("text", "spoken"),
    [
        ("我今年25岁", "我今年二十五岁"),
        ("买2个苹果", "买两个苹果"),  # 二 before a measure word is 两
        ("12个", "十二个"),  # ...but only when the whole number reads 二
        ("10+个", "十多个"),
        ("房间号是1024", "房间号是幺零二四"),  # a bare number of 3+ digits is read as a code
        ("共计3.5元", "共计三点五元"),
        ("温度-3°C", "温度零下三度"),
        ("体温37.5℃", "体温三十七点五度"),
        ("零下5摄氏度", "零下五度"),  # upstream quirk: the 摄氏度 branch is unreachable
        ("占50%", "占百分之五十"),
        ("下降-2.5%", "下降负百分之二点五"),
        ("3/4的人", "四分之三的人"),
        ("1+2=3", "一加二等于三"),
        ("2³", "二的三次方"),
        # upstream quirk: arithmetic is read before ranges, so a hyphen between numbers is 减
        ("3-5天", "三减五天"),
        ("3~5天", "三到五天"),
        ("气温-10", "气温负十"),
        ("版本1.2.10", "版本一点二点一零"),
    ],
)
def test_numbers(text, spoken):
    assert normalize(text) == spoken


@pytest.mark.parametrize(
    ("text", "spoken"),
    [
        ("2024年5月1日", "二零二四年五月一日"),
        ("24年12月", "二四年十二月"),
        ("2024-05-01出发", "二零二四年五月一日出发"),
        ("2024/12/31", "二零二四年十二月三十一日"),
        ("8:05", "八点零五分"),
        ("12:30", "十二点半"),
        ("23:59:09", "二十三点五十九分零九秒"),
        ("9:00", "九点"),
        ("8:00-12:45", "八点至十二点四十五分"),
        # upstream quirk: the end of a range says 半 when the START minute is 30
        ("8:30-9:15", "八点半至九点半"),
    ],
)
def test_dates_and_times(text, spoken):
    assert normalize(text) == spoken


@pytest.mark.parametrize(
    ("text", "spoken"),
    [
        ("13812345678", "幺三八幺二三四五六七八"),
        ("+8613812345678", "八六幺三八幺二三四五六七八"),
        ("01012345678", "零幺零幺二三四五六七八"),
        ("4001234567", "四零零幺二三四五六七"),
        # upstream quirk: arithmetic runs first, so a hyphenated number reads its hyphens as 减
        ("010-12345678", "零幺零减幺二三四五六七八"),
    ],
)
def test_phone_numbers(text, spoken):
    assert normalize(text) == spoken


def test_units():
    assert normalize("重5kg") == "重五千克"
    assert normalize("长3cm") == "长三厘米"
    assert normalize("10cm~20cm") == "十厘米至二十厘米"  # ~ between two measurements is 至
    assert normalize("10~20cm") == "十到二十厘米"  # ...otherwise it is a plain range
    # upstream quirk: abbreviations are replaced anywhere, and "m" is tried before "mm"
    assert normalize("5mm") == "五米米"


def test_punctuation_and_symbols():
    assert normalize("你好！！？") == "你好!"  # runs of marks keep the first
    assert normalize("好，是；对：嗯。") == "好,是,对,恩."  # 嗯 is respelled 恩
    assert normalize("等等...好～") == "等等…好…"
    assert normalize("《三体》很好看") == "三体很好看"
    assert normalize("α和β") == "阿尔法和贝塔"
    assert normalize("第①名") == "第一名"
    assert normalize("Hello你好abc") == "你好"  # Latin letters are not read by this frontend
    assert normalize("。。。") == "."


def test_full_width_forms():
    assert to_half_width("１２ＡＢ\u3000") == "12AB "
    assert normalize("我有１２个") == "我有十二个"


def test_traditional_characters_are_simplified_with_upstreams_table():
    # The table comes from the paddlespeech wheel; without it traditional text would not match upstream.
    assert has_traditional_table(), "install the t2s table source: pip install --no-deps paddlespeech==1.5.0"
    assert to_simplified("這個體裡") == "这个体里"
    assert normalize("這是繁體中文。") == "这是繁体中文."
    # the one-to-one table has its own choices that a phrase converter would not make
    assert to_simplified("於") == "於"
    assert to_simplified("餘") == "馀"


def test_without_the_table_source_text_is_left_as_written(monkeypatch, caplog):
    from app.engine.text.zh import char_convert

    monkeypatch.setattr(char_convert, "_table_source", lambda: None)
    monkeypatch.setattr(char_convert, "_table", None)
    with caplog.at_level("WARNING"):
        assert char_convert.to_simplified("這個") == "這個"
    assert "paddlespeech" in caplog.text
