"""Chinese text normalisation: turn written forms (numbers, dates, units, symbols) into readable hanzi.

The rule set and its order follow the PaddleSpeech normaliser that GPT-SoVITS uses, because the
model was trained on text normalised exactly this way. Several rules have odd edges (listed where they
are implemented); they are kept on purpose so that our output matches upstream's character for character.

Pipeline for one input text:
  1. drop spaces and decorative brackets/quotes, split into clauses after each pause punctuation mark;
  2. for each clause: simplify characters, then apply the rules below in order;
  3. map punctuation to the model's small set, drop every character that is neither hanzi nor
     that punctuation, and collapse runs of punctuation to their first mark.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from app.engine.text.marks import COMMON_MARK_TO_SYMBOL

from .char_convert import to_half_width, to_simplified
from .numbers import read_cardinal, read_digits, read_number

# The punctuation marks the Chinese phone set knows (besides them only hanzi survive normalisation).
PUNCTUATION = ("!", "?", "…", ",", ".", "-")
_PUNCT_CLASS = "[" + re.escape("".join(PUNCTUATION)) + "]"

Rule = tuple[re.Pattern[str], Callable[[re.Match[str]], str]]

# --- 1. clause splitting -------------------------------------------------------------------------

_DECORATION_BEFORE_SPLIT = re.compile(r"[—《》【】<>{}()（）#&@“”^_|\\]")
_CLAUSE_END = re.compile(r"([：、，；。？！,;?!][”’]?)")


def split_clauses(text: str) -> list[str]:
    """Drop spaces and decorative marks, then cut after every pause punctuation mark."""
    text = _DECORATION_BEFORE_SPLIT.sub("", text.replace(" ", ""))
    text = _CLAUSE_END.sub(lambda m: m.group(1) + "\n", text).strip()
    return [clause.strip() for clause in re.split(r"\n+", text)]


_clauses = split_clauses  # the Cantonese frontend imports the old private name


# --- 2. number-related rules -----------------------------------------------------------------------

_NUM = r"\d+(?:\.\d+)?"
# Linear time: patterns that start with a number reject a start right after a digit, (?<!\d). A
# leftmost match never starts there: it would have matched one digit earlier, and no earlier match of
# the same pattern ends between two digits (each ends with a greedy digit run or a non-digit), so the
# substitutions are unchanged. Without it every position of a long digit run is retried: quadratic.
_NOT_AFTER_DIGIT = r"(?<!\d)"


def _signed(sign: str, negative_word: str = "负") -> str:
    return negative_word if sign else ""


# Dates: 2024年5月1日 / 24年 / 2024年5月 ; the year is read digit by digit.
_DATE = re.compile(r"(\d{4}|\d{2})年(?:(0?[1-9]|1[0-2])月)?(?:(0?[1-9]|[12][0-9]|30|31)([日号]))?")


def _date(m: re.Match[str]) -> str:
    year, month, day, day_word = m.groups()
    spoken = read_digits(year) + "年"
    if month:
        spoken += read_cardinal(month) + "月"
    if day:
        spoken += read_cardinal(day) + day_word
    return spoken


# Dates written 2024-05-01, 2024/05/01, 2024.05.01 or with spaces (same separator twice).
_NUMERIC_DATE = re.compile(r"(\d{4})([- /.])(0[1-9]|1[012])\2(0[1-9]|[12][0-9]|3[01])")


def _numeric_date(m: re.Match[str]) -> str:
    year, _, month, day = m.groups()
    return f"{read_digits(year)}年{read_cardinal(month)}月{read_cardinal(day)}日"


# Clock times 8:05, 8:05:09 and ranges 8:00-12:30 / 8:00~12:30.
_CLOCK = r"([01]?[0-9]|2[0-3]):([0-5][0-9])(?::([0-5][0-9]))?"
_TIME_RANGE = re.compile(_CLOCK + r"[~-]" + _CLOCK)
_TIME = re.compile(_CLOCK)


def _clock_unit(digits: str) -> str:
    # minutes and seconds keep a spoken leading zero: 8:05 -> 八点零五分
    spoken = read_number(digits.lstrip("0"))
    return "零" + spoken if digits.startswith("0") else spoken


def _clock(hour: str, minute: str, second: str | None, half_hour_minute: str) -> str:
    spoken = read_number(hour) + "点"
    if minute.lstrip("0"):
        spoken += "半" if int(half_hour_minute) == 30 else _clock_unit(minute) + "分"
    if second and second.lstrip("0"):
        spoken += _clock_unit(second) + "秒"
    return spoken


def _time(m: re.Match[str]) -> str:
    hour, minute, second = m.group(1, 2, 3)
    return _clock(hour, minute, second, minute)


def _time_range(m: re.Match[str]) -> str:
    hour, minute, second, hour2, minute2, second2 = m.groups()
    # Upstream quirk: the end time says 半 whenever the START minute is 30 (8:30-9:15 -> 八点半至九点半).
    return _clock(hour, minute, second, minute) + "至" + _clock(hour2, minute2, second2, minute)


# "~" between two measurements with units reads 至 (the units are handled by the next rules).
_UNITS_FOR_TO_RANGE = r"(?:%|°C|℃|度|摄氏度|cm2|cm²|cm3|cm³|cm|db|ds|kg|km|m2|m²|m³|m3|ml|m|mm|s)"
_VALUE = r"(?:-?\d+(?:\.\d+)?|\.\d+)"
# A match can end with a digit here ("m2", "cm3"), so a start right after those stays allowed.
_FIRST_VALUE = r"(?:-?(?:(?<!\d)|(?<=m[23]))\d+(?:\.\d+)?|\.\d+)"
_TO_RANGE = re.compile(_FIRST_VALUE + _UNITS_FOR_TO_RANGE + "~" + _VALUE + _UNITS_FOR_TO_RANGE)

# Temperatures: a minus sign reads 零下 ("below zero") rather than 负.
_TEMPERATURE = re.compile(r"(-?)" + _NOT_AFTER_DIGIT + "(" + _NUM + r")(°C|℃|度|摄氏度)")


def _temperature(m: re.Match[str]) -> str:
    sign, value, _unit = m.groups()
    # Upstream quirk: it means to keep 摄氏度 but tests the wrong regex group, so every unit reads 度.
    return _signed(sign, "零下") + read_number(value) + "度"


# Unit abbreviations, replaced as plain substrings in this order. Upstream quirk: they are not
# anchored to numbers, so Latin letters anywhere in the clause are affected ("mm" even becomes 米米,
# because the lone "m" is replaced before "mm" is tried).
_UNIT_WORDS = (
    ("cm2", "平方厘米"), ("cm²", "平方厘米"), ("cm3", "立方厘米"), ("cm³", "立方厘米"), ("cm", "厘米"),
    ("db", "分贝"), ("ds", "毫秒"), ("kg", "千克"), ("km", "千米"),
    ("m2", "平方米"), ("m²", "平方米"), ("m³", "立方米"), ("m3", "立方米"), ("ml", "毫升"),
    ("m", "米"), ("mm", "毫米"), ("s", "秒"),
)  # fmt: skip


def _spell_units(clause: str) -> str:
    for abbreviation, word in _UNIT_WORDS:
        clause = clause.replace(abbreviation, word)
    return clause


# Arithmetic: a op b, where each side is a number, a decimal or a single letter, optionally with a
# superscript exponent. Applied until nothing matches so chains like 1+2+3 are fully read.
# Upstream quirk: this runs before the range and phone-number rules, so "3-5" and "010-12345678"
# read their hyphen as 减 (minus); only "3~5" reaches the range rule.
_SUPERSCRIPTS = "⁰¹²³⁴⁵⁶⁷⁸⁹ˣʸⁿ"
_OPERAND = rf"(?:-?\d+(?:\.\d+)?[{_SUPERSCRIPTS}]*|\.\d+[{_SUPERSCRIPTS}]*|[A-Za-z][{_SUPERSCRIPTS}]*)"
_LEFT_OPERAND = _OPERAND.replace("-?", "-?" + _NOT_AFTER_DIGIT, 1)
_ARITHMETIC = re.compile(rf"({_LEFT_OPERAND})([+\-×÷=])({_OPERAND})")
_OPERATOR_WORDS = {"+": "加", "-": "减", "×": "乘", "÷": "除", "=": "等于"}


def _arithmetic(m: re.Match[str]) -> str:
    left, operator, right = m.groups()
    return left + _OPERATOR_WORDS[operator] + right


# x² -> x的2次方 (the digit is read by the number rules that follow).
_POWER = re.compile(f"[{_SUPERSCRIPTS}]+")
_SUPERSCRIPT_TO_PLAIN = str.maketrans(_SUPERSCRIPTS, "0123456789xyn")


def _power(m: re.Match[str]) -> str:
    return "的" + m.group(0).translate(_SUPERSCRIPT_TO_PLAIN) + "次方"


_FRACTION = re.compile(r"(-?)" + _NOT_AFTER_DIGIT + r"(\d+)/(\d+)")


def _fraction(m: re.Match[str]) -> str:
    sign, numerator, denominator = m.groups()
    return f"{_signed(sign)}{read_number(denominator)}分之{read_number(numerator)}"


_PERCENT = re.compile(r"(-?)" + _NOT_AFTER_DIGIT + "(" + _NUM + ")%")


def _percent(m: re.Match[str]) -> str:
    sign, value = m.groups()
    return f"{_signed(sign)}百分之{read_number(value)}"


# Phone numbers are read digit by digit with 一 as 幺; separators become a pause.
_MOBILE = re.compile(r"(?<!\d)((\+?86 ?)?1([38]\d|5[0-35-9]|7[678]|9[89])\d{8})(?!\d)")
_LANDLINE = re.compile(r"(?<!\d)((0(10|2[1-3]|[3-9]\d{2})-?)?[1-9]\d{6,7})(?!\d)")
_SERVICE_NUMBER = re.compile(r"400-?\d{3}-?\d{4}")


def _mobile(m: re.Match[str]) -> str:
    return "，".join(read_digits(part, one_as_yao=True) for part in m.group(0).strip("+").split())


def _landline(m: re.Match[str]) -> str:
    return "，".join(read_digits(part, one_as_yao=True) for part in m.group(0).split("-"))


# Numeric ranges 3-5 / 1.5~2 read with 到, unless the numbers are part of arithmetic.
_RANGE = re.compile(r"(?<![\d+\-×÷=])(-?" + _NUM + r")[-~](-?" + _NUM + r")(?![\d+\-×÷=])")


def _range(m: re.Match[str]) -> str:
    first, second = (_NUMBER.sub(_number, side) for side in m.groups())
    return f"{first}到{second}"


_NEGATIVE = re.compile(r"-(\d+)")


def _negative(m: re.Match[str]) -> str:
    return "负" + read_number(m.group(1))


# Version-like numbers with three or more parts: 1.2.3 -> 一点二点三 (every digit read singly).
_VERSION = re.compile(_NOT_AFTER_DIGIT + r"\d+(?:\.\d+){2,}")


def _version(m: re.Match[str]) -> str:
    return "".join("点" if c == "." else read_number(c) for c in m.group(0))


_NUMBER = re.compile(r"(-?)(" + _NUM + r")|(\.\d+)")


def _number(m: re.Match[str]) -> str:
    sign, value, bare_fraction = m.groups()
    if bare_fraction:
        return read_number(bare_fraction)  # ".5" -> 零点五
    return _signed(sign) + read_number(value)


# A count followed by a measure word: 2个 -> 两个 (two as 两, not 二, before a measure word).
# Only whether a measure word follows matters, not how long it is, so a look-ahead suffices.
_SINGLE_CHAR_MEASURE_WORDS = (
    "处台架枚趟幅平方堵间床株批项例列篇栋注亩封艘把目套段人所朵匹张座回场尾条个首阙阵网炮顶丘棵只支袭辆挑担"
    "颗壳窠曲墙群腔砣客贯扎捆刀令打手罗坡山岭江溪钟队单双对出口头脚板跳枝件贴针线管名位身堂课本页家户层丝毫"
    "厘分钱两斤铢石钧锱忽寸尺丈里寻常铺程米撮勺合升斗盘碗碟叠桶笼盆盒杯斛锅簋篮罐瓶壶卮盏箩箱煲啖袋钵年月日季"
    "刻时周天秒旬纪岁世更夜春夏秋冬代伏辈丸泡粒幢堆根道面片块元亿万千百吨角毛"
)
_MULTI_CHAR_MEASURE_WORDS = ("微克", "微米", "公分", "小时", "美元", "十吨")
_MEASURE_WORD = "[" + _SINGLE_CHAR_MEASURE_WORDS + "]|" + "|".join(_MULTI_CHAR_MEASURE_WORDS)
_COUNTED = re.compile(_NOT_AFTER_DIGIT + r"(\d+)([多余几+])?(?=" + _MEASURE_WORD + ")")


def _counted(m: re.Match[str]) -> str:
    count, approx = m.groups()
    spoken = read_number(count)
    return ("两" if spoken == "二" else spoken) + ("多" if approx == "+" else approx or "")


# Any other run of three or more digits is a code or an identifier: read digit by digit (幺 for 1).
_DIGIT_STRING = re.compile(r"\d{3,}")


def _digit_string(m: re.Match[str]) -> str:
    return read_digits(m.group(0), one_as_yao=True)


_DECIMAL = re.compile(r"(-?)" + _NOT_AFTER_DIGIT + r"(\d+\.\d+)|(\.\d+)")

# Order matters: dates before times before ranges before plain numbers, and so on.
_RULES_BEFORE_UNITS: tuple[Rule, ...] = (
    (_DATE, _date),
    (_NUMERIC_DATE, _numeric_date),
    (_TIME_RANGE, _time_range),
    (_TIME, _time),
    (_TO_RANGE, lambda m: m.group(0).replace("~", "至")),
    (_TEMPERATURE, _temperature),
)
_RULES_AFTER_ARITHMETIC: tuple[Rule, ...] = (
    (_POWER, _power),
    (_FRACTION, _fraction),
    (_PERCENT, _percent),
    (_MOBILE, _mobile),
    (_LANDLINE, _landline),
    (_SERVICE_NUMBER, _landline),
    (_RANGE, _range),
    (_NEGATIVE, _negative),
    (_VERSION, _version),
    (_DECIMAL, _number),
    (_COUNTED, _counted),
    (_DIGIT_STRING, _digit_string),
    (_NUMBER, _number),
)

# --- 3. symbols left after the number rules ------------------------------------------------------

_SYMBOL_WORDS = str.maketrans(
    {
        "/": "每",
        **dict(zip("①②③④⑤⑥⑦⑧⑨⑩", "一二三四五六七八九十", strict=True)),
        "α": "阿尔法", "β": "贝塔", "γ": "伽玛", "Γ": "伽玛", "δ": "德尔塔", "Δ": "德尔塔",
        "ε": "艾普西龙", "ζ": "捷塔", "η": "依塔", "θ": "西塔", "Θ": "西塔", "ι": "艾欧塔",
        "κ": "喀帕", "λ": "拉姆达", "Λ": "拉姆达", "μ": "缪", "ν": "拗", "ξ": "克西", "Ξ": "克西",
        "ο": "欧米克伦", "π": "派", "Π": "派", "ρ": "肉", "ς": "西格玛", "Σ": "西格玛", "σ": "西格玛",
        "τ": "套", "υ": "宇普西龙", "φ": "服艾", "Φ": "服艾", "χ": "器", "ψ": "普赛", "Ψ": "普赛",
        "ω": "欧米伽", "Ω": "欧米伽",
        # leftover operators (e.g. between words) are still read
        "+": "加", "-": "减", "×": "乘", "÷": "除", "=": "等",
    }
)  # fmt: skip
_DECORATION_AFTER_RULES = re.compile(r"[-—《》【】<=>{}()（）#&@“”^_|\\]")


def normalize_clause(clause: str) -> str:
    """Apply the written-form rules to one clause (no punctuation mapping yet)."""
    clause = to_half_width(to_simplified(clause))
    for pattern, spoken in _RULES_BEFORE_UNITS:
        clause = pattern.sub(spoken, clause)
    clause = _spell_units(clause)
    while _ARITHMETIC.search(clause):
        clause = _ARITHMETIC.sub(_arithmetic, clause)
    for pattern, spoken in _RULES_AFTER_ARITHMETIC:
        clause = pattern.sub(spoken, clause)
    return _DECORATION_AFTER_RULES.sub("", clause.translate(_SYMBOL_WORDS))


# --- 4. punctuation for the phone set ----------------------------------------------------------------

_PUNCTUATION_MAP = {
    **COMMON_MARK_TO_SYMBOL,
    "...": "…", "$": ".", "/": ",", "—": "-", "~": "…", "～": "…",
}  # fmt: skip
_PUNCTUATION_PATTERN = re.compile("|".join(re.escape(p) for p in _PUNCTUATION_MAP))
_NOT_HANZI_OR_PUNCTUATION = re.compile(r"[^\u4e00-\u9fa5" + re.escape("".join(PUNCTUATION)) + "]+")
_PUNCTUATION_RUN = re.compile(f"({_PUNCT_CLASS}){_PUNCT_CLASS}+")


def map_punctuation(text: str) -> str:
    """Map punctuation onto the phone set's marks and drop everything that is not hanzi.

    嗯 and 呣 are respelled 恩 and 母: their usual readings (n, m) are not syllables of the phone set.
    """
    text = text.replace("嗯", "恩").replace("呣", "母")
    text = _PUNCTUATION_PATTERN.sub(lambda m: _PUNCTUATION_MAP[m.group(0)], text)
    return _NOT_HANZI_OR_PUNCTUATION.sub("", text)


def normalize(text: str) -> str:
    """Written Chinese -> the text the phonemiser reads: hanzi plus the marks in PUNCTUATION."""
    spoken = "".join(map_punctuation(normalize_clause(clause)) for clause in split_clauses(text))
    # a run of marks would leak the reference's pauses; keep only the first one
    return _PUNCTUATION_RUN.sub(r"\1", spoken)
