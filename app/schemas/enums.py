"""The enumerations the API accepts, in both spellings: upstream's UI labels exactly as its web UI
shows them (zh_CN), and short codes. Validators turn either into the code; unknown values give 422
with the accepted values listed (pydantic's literal error does that)."""

from __future__ import annotations

from typing import Annotated, Literal, get_args

from pydantic import AfterValidator

from app.engine.jobs import CUT_METHODS
from app.engine.languages import LANGUAGES

# UI label → code, in the order upstream's UI lists them.
LANGUAGE_LABELS: dict[str, str] = {
    "中文": "all_zh",
    "英文": "en",
    "日文": "all_ja",
    "粤语": "all_yue",
    "韩文": "all_ko",
    "中英混合": "zh",
    "日英混合": "ja",
    "粤英混合": "yue",
    "韩英混合": "ko",
    "多语种混合": "auto",
    "多语种混合(粤语)": "auto_yue",
}
CUT_METHOD_LABELS: dict[str, str] = {
    "不切": "cut0",
    "凑四句一切": "cut1",
    "凑50字一切": "cut2",
    "按中文句号。切": "cut3",
    "按英文句号.切": "cut4",
    "按标点符号切": "cut5",
}
assert tuple(LANGUAGE_LABELS.values()) == LANGUAGES, "one label per engine language code, in its order"

LanguageSpelling = Literal[
    "中文", "英文", "日文", "粤语", "韩文", "中英混合", "日英混合", "粤英混合", "韩英混合", "多语种混合", "多语种混合(粤语)",
    "all_zh", "en", "all_ja", "all_yue", "all_ko", "zh", "ja", "yue", "ko", "auto", "auto_yue",
]  # fmt: skip
CutMethodSpelling = Literal[
    "不切", "凑四句一切", "凑50字一切", "按中文句号。切", "按英文句号.切", "按标点符号切",
    "cut0", "cut1", "cut2", "cut3", "cut4", "cut5",
]  # fmt: skip

# The literals above are written out so that OpenAPI shows every spelling; keep them in sync.
assert set(get_args(LanguageSpelling)) == set(LANGUAGE_LABELS) | set(LANGUAGE_LABELS.values())
assert set(get_args(CutMethodSpelling)) == set(CUT_METHOD_LABELS) | set(CUT_METHOD_LABELS.values())
assert tuple(CUT_METHOD_LABELS.values()) == CUT_METHODS


def language_code(value: str) -> str:
    return LANGUAGE_LABELS.get(value, value)


def cut_method_code(value: str) -> str:
    return CUT_METHOD_LABELS.get(value, value)


def language_label(code: str) -> str:
    return next(label for label, c in LANGUAGE_LABELS.items() if c == code)


def cut_method_label(code: str) -> str:
    return next(label for label, c in CUT_METHOD_LABELS.items() if c == code)


Language = Annotated[LanguageSpelling, AfterValidator(language_code)]
CutMethod = Annotated[CutMethodSpelling, AfterValidator(cut_method_code)]
