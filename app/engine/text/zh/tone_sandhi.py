"""Mandarin tone sandhi on jieba words, as GPT-SoVITS applies it (rules from PaddleSpeech).

Tones are the trailing digit of a pypinyin "final with tone" ("ao3"); 5 is the neutral tone.
Two stages:

* ``merge_words`` re-groups jieba's words so each rule sees its whole context: 不 joins the next
  word, 一 joins the next word (and 听/一/听 becomes 听一听), repeated words join, short runs of
  third-tone words join, and 儿 joins the word before it.
* ``apply_sandhi`` changes the tones inside one word: 不, 一, neutral tone, third tone, in that order.

The rules are heuristics and have known oddities; they are reproduced as they are because the
model was trained on their output.
"""

from __future__ import annotations

from pypinyin import Style, lazy_pinyin

from .neutral_tone_words import ALWAYS_NEUTRAL_WORDS, NEVER_NEUTRAL_WORDS
from .segmenter import cut_for_search

Word = tuple[str, str]  # (text, jieba POS tag)

_SENTENCE_FINAL_PARTICLES = "吧呢哈啊呐噻嘛吖嗨呐哦哒额滴哩哟喽啰耶喔诶"
_STRUCTURAL_PARTICLES = "的地得"
_ASPECT_PARTICLES = "了着过"
_PLURAL_OR_NOUN_SUFFIXES = "们子"
_LOCATION_SUFFIXES = "上下里"
_DIRECTION_SUFFIXES = "来去"
_DIRECTION_VERBS = "上下进出回过起开"
_BEFORE_MEASURE_GE = "几有两半多各整每做是"  # 个 after these is the measure word, said ge5
_PUNCTUATION_AFTER_YI = "：，；。？！“”‘’':,;.?!"


def tone3_finals(word: str) -> list[str]:
    """pypinyin finals with tone digits for each character, neutral tone as 5 ("你好" -> ["i3", "ao3"])."""
    return lazy_pinyin(word, neutral_tone_with_five=True, style=Style.FINALS_TONE3)


def _retone(final: str, tone: str) -> str:
    return final[:-1] + tone


def _all_third_tone(finals: list[str]) -> bool:
    return all(final[-1] == "3" for final in finals)


def _is_reduplication(word: str) -> bool:
    return len(word) == 2 and word[0] == word[1]


def split_in_two(word: str) -> list[str]:
    """Split a word into two parts around its shortest dictionary sub-word (e.g. 蒙古包 -> 蒙古 / 包).

    The shortest sub-word found by jieba's search mode becomes the first part when the word starts
    with it, otherwise the last part; the second part may be empty.
    """
    shortest = sorted(cut_for_search(word), key=len)[0]
    if word.find(shortest) == 0:
        return [shortest, word[len(shortest) :]]
    return [word[: -len(shortest)], shortest]


# --- word re-grouping ----------------------------------------------------------------------------


def _merge_bu(words: list[Word]) -> list[Word]:
    merged: list[Word] = []
    previous = ""
    for text, pos in words:
        if previous == "不":
            text = "不" + text  # takes the POS of the word it joins
        if text != "不":
            merged.append((text, pos))
        previous = text
    if previous == "不":  # a trailing 不 stays on its own, as an adverb
        merged.append(("不", "d"))
    return merged


def _merge_yi(words: list[Word]) -> list[Word]:
    # verb 一 verb (听一听) becomes one word
    around: list[list[str]] = []
    i = 0
    while i < len(words):
        text, pos = words[i]
        if 0 < i < len(words) - 1 and text == "一":
            before, after = around[-1], words[i + 1]
            if before[0] == after[0] and before[1] == "v" and after[1] == "v":
                around[-1] = [before[0] + "一" + after[0], before[1]]
                i += 2
                continue
        around.append([text, pos])
        i += 1
    # a lone 一 joins the word after it
    merged: list[list[str]] = []
    for text, pos in around:
        if merged and merged[-1][0] == "一":
            merged[-1][0] += text
        else:
            merged.append([text, pos])
    return [(text, pos) for text, pos in merged]


def _merge_reduplication(words: list[Word]) -> list[Word]:
    merged: list[list[str]] = []
    for text, pos in words:
        if merged and text == merged[-1][0]:
            merged[-1][0] += text
        else:
            merged.append([text, pos])
    return [(text, pos) for text, pos in merged]


def _merge_third_tones(words: list[Word], whole_words: bool) -> list[Word]:
    """Join neighbours that form a third-tone run, if the result is at most 3 characters long.

    whole_words=True: both words are entirely third tone (so 3-3 sandhi can see them together).
    whole_words=False: only the touching syllables are third tone.
    A word joins at most once, and a reduplicated word (奶奶) is never extended: it needs neutral tone.
    """
    finals = [tone3_finals(text) for text, _ in words]
    merged: list[list[str]] = []
    joined_previous = [False] * len(words)
    for i, (text, pos) in enumerate(words):
        if i > 0:
            if whole_words:
                third_tone_run = _all_third_tone(finals[i - 1]) and _all_third_tone(finals[i])
            else:
                third_tone_run = finals[i - 1][-1][-1] == "3" and finals[i][0][-1] == "3"
            previous = words[i - 1][0]
            if (
                third_tone_run
                and not joined_previous[i - 1]
                and not _is_reduplication(previous)
                and len(previous) + len(text) <= 3
            ):
                merged[-1][0] += text
                joined_previous[i] = True
                continue
        merged.append([text, pos])
    return [(text, pos) for text, pos in merged]


def _merge_er(words: list[Word]) -> list[Word]:
    merged: list[list[str]] = []
    for i, (text, pos) in enumerate(words):
        if i > 0 and text == "儿" and words[i - 1][0] != "#":
            merged[-1][0] += text
        else:
            merged.append([text, pos])
    return [(text, pos) for text, pos in merged]


def merge_words(words: list[Word]) -> list[Word]:
    """Re-group jieba's (word, POS) list so that the sandhi rules see whole sandhi domains."""
    words = _merge_bu(words)
    words = _merge_yi(words)
    words = _merge_reduplication(words)
    for whole_words in (True, False):
        try:
            words = _merge_third_tones(words, whole_words)
        except IndexError:
            # A syllable pypinyin gives no final for (e.g. 噷) has no tone to compare; upstream then
            # skips this merge step for the whole sentence, and so do we.
            pass
    return _merge_er(words)


# --- tone changes inside one word -------------------------------------------------------------------


def _bu_sandhi(word: str, finals: list[str]) -> list[str]:
    if len(word) == 3 and word[1] == "不":  # 看不懂: 不 is neutral between verb and complement
        finals[1] = _retone(finals[1], "5")
        return finals
    for i, char in enumerate(word[:-1]):
        if char == "不" and finals[i + 1][-1] == "4":  # 不怕: bu2 before a fourth tone
            finals[i] = _retone(finals[i], "2")
    return finals


def _yi_sandhi(word: str, finals: list[str]) -> list[str]:
    if "一" in word and all(char.isnumeric() for char in word if char != "一"):
        return finals  # 一 inside a number (一零一, 十一) keeps yi1
    if len(word) == 3 and word[1] == "一" and word[0] == word[-1]:
        finals[1] = _retone(finals[1], "5")  # 看一看
    elif word.startswith("第一"):
        finals[1] = _retone(finals[1], "1")  # ordinal: 第一
    else:
        for i, char in enumerate(word[:-1]):
            if char != "一":
                continue
            if finals[i + 1][-1] == "4":
                finals[i] = _retone(finals[i], "2")  # 一段: yi2 before a fourth tone
            elif word[i + 1] not in _PUNCTUATION_AFTER_YI:
                finals[i] = _retone(finals[i], "4")  # 一天: yi4 before other tones
    return finals


def _neutral_sandhi(word: str, pos: str, finals: list[str]) -> list[str]:
    # reduplicated nouns, verbs, adjectives: 奶奶, 试试
    for j in range(1, len(word)):
        if word[j] == word[j - 1] and pos[0] in "nva" and word not in NEVER_NEUTRAL_WORDS:
            finals[j] = _retone(finals[j], "5")

    ge_index = word.find("个")
    last = len(finals) - 1
    if word[-1] in _SENTENCE_FINAL_PARTICLES or word[-1] in _STRUCTURAL_PARTICLES:
        finals[last] = _retone(finals[last], "5")
    elif len(word) == 1 and word in _ASPECT_PARTICLES and pos in ("ul", "uz", "ug"):
        finals[last] = _retone(finals[last], "5")  # 走了, 看着, 去过
    elif (
        len(word) > 1
        and word[-1] in _PLURAL_OR_NOUN_SUFFIXES
        and pos in ("r", "n")
        and word not in NEVER_NEUTRAL_WORDS
    ):
        finals[last] = _retone(finals[last], "5")  # 我们, 桌子
    elif len(word) > 1 and word[-1] in _LOCATION_SUFFIXES and pos in ("s", "l", "f"):
        finals[last] = _retone(finals[last], "5")  # 桌上, 家里
    elif len(word) > 1 and word[-1] in _DIRECTION_SUFFIXES and word[-2] in _DIRECTION_VERBS:
        finals[last] = _retone(finals[last], "5")  # 上来, 出去
    elif (ge_index >= 1 and (word[ge_index - 1].isnumeric() or word[ge_index - 1] in _BEFORE_MEASURE_GE)) or (
        word == "个"
    ):
        finals[ge_index] = _retone(finals[ge_index], "5")  # 一个, 几个
    elif word in ALWAYS_NEUTRAL_WORDS or word[-2:] in ALWAYS_NEUTRAL_WORDS:
        finals[last] = _retone(finals[last], "5")

    # the lexical neutral-tone words are also looked for in each half of the word
    first, second = split_in_two(word)
    halves = [finals[: len(first)], finals[len(first) :]]
    for part, part_finals in zip((first, second), halves, strict=True):
        if part in ALWAYS_NEUTRAL_WORDS or part[-2:] in ALWAYS_NEUTRAL_WORDS:
            part_finals[-1] = _retone(part_finals[-1], "5")
    return halves[0] + halves[1]


def _third_tone_sandhi(word: str, finals: list[str]) -> list[str]:
    if len(word) == 2 and _all_third_tone(finals):
        finals[0] = _retone(finals[0], "2")  # 你好: ni2 hao3
    elif len(word) == 3:
        first, _ = split_in_two(word)
        if _all_third_tone(finals):
            if len(first) == 2:  # 蒙古/包: 2 2 3
                finals[0] = _retone(finals[0], "2")
                finals[1] = _retone(finals[1], "2")
            elif len(first) == 1:  # 纸/老虎: 3 2 3
                finals[1] = _retone(finals[1], "2")
        else:
            head, tail = finals[: len(first)], finals[len(first) :]
            if _all_third_tone(head) and len(head) == 2:  # 所有/人
                head[0] = _retone(head[0], "2")
            if _all_third_tone(tail) and len(tail) == 2:
                tail[0] = _retone(tail[0], "2")
            elif tail and not _all_third_tone(tail) and tail[0][-1] == "3" and head[-1][-1] == "3":
                head[-1] = _retone(head[-1], "2")  # 好/喜欢
            finals = head + tail
    elif len(word) == 4:  # idioms: two pairs
        pairs = [finals[:2], finals[2:]]
        for pair in pairs:
            if _all_third_tone(pair):
                pair[0] = _retone(pair[0], "2")
        finals = pairs[0] + pairs[1]
    return finals


def apply_sandhi(word: str, pos: str, finals: list[str]) -> list[str]:
    """Tone changes for one (merged) word; ``finals`` are its pypinyin tone-3 finals."""
    finals = _bu_sandhi(word, list(finals))
    finals = _yi_sandhi(word, finals)
    finals = _neutral_sandhi(word, pos, finals)
    return _third_tone_sandhi(word, finals)
