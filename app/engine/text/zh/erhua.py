"""Erhua (儿化): in v2, a word-final 儿 that is a rhotic suffix is said with the tone of the syllable before it.

GPT-SoVITS keeps 儿 as its own syllable (so every character still gets two phones) and only changes
its tone: 哪儿 na3 er2 -> na3 er3. Words where 儿 means "child"/"son" or is part of a name keep er2.
"""

from __future__ import annotations

# Always rhotic, even when jieba tags them as names or adjectives.
ALWAYS_ERHUA = frozenset("小院儿 胡同儿 范儿 老汉儿 撒欢儿 寻老礼儿 妥妥儿 媳妇儿".split())

# 儿 is a full word here (child, son, a name, a small animal...), not the rhotic suffix.
NEVER_ERHUA = frozenset(
    """
    虐儿 为儿 护儿 瞒儿 救儿 替儿 有儿 一儿 我儿 俺儿 妻儿 拐儿 聋儿 乞儿 患儿 幼儿 孤儿 婴儿 婴幼儿
    连体儿 脑瘫儿 流浪儿 体弱儿 混血儿 蜜雪儿 舫儿 祖儿 美儿 应采儿 可儿 侄儿 孙儿 侄孙儿 女儿 男儿
    红孩儿 花儿 虫儿 马儿 鸟儿 猪儿 猫儿 狗儿 少儿
    """.split()
)

# jieba POS tags whose words keep 儿 as written: adjectives (a), abbreviations (j), person names (nr).
_NON_RHOTIC_POS = {"a", "j", "nr"}


def apply_erhua(word: str, pos: str, finals: list[str]) -> list[str]:
    """Return the word's finals with the erhua tone rule applied (initials never change)."""
    finals = list(finals)
    if finals and word[len(finals) - 1] == "儿" and finals[-1] == "er1":
        finals[-1] = "er2"  # a final 儿 read er1 is always corrected to er2 first
    if word not in ALWAYS_ERHUA and (word in NEVER_ERHUA or pos in _NON_RHOTIC_POS):
        return finals
    if len(finals) != len(word) or len(word) < 2:
        return finals  # e.g. a run of symbols that pypinyin kept as one item
    if word[-1] == "儿" and finals[-1] in ("er2", "er5") and word[-2:] not in NEVER_ERHUA:
        finals[-1] = "er" + finals[-2][-1]
    return finals
