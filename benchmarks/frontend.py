"""Text-frontend throughput: characters per second for a Chinese, an English and a mixed paragraph.

    python benchmarks/frontend.py                      # print the table
    python benchmarks/frontend.py --save base.json     # also save the numbers
    python benchmarks/frontend.py --compare base.json  # print ratios against a saved run

Timings are after a warm-up run (dictionaries, taggers and models load lazily on first use).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.engine.text.preprocess import preprocess  # noqa: E402

_ZH_SENTENCES = [
    "今天是2024年3月15日，天气晴朗，气温在18到25摄氏度之间。",
    "我们一起去公园散步，路边的花都开了，红的像火，粉的像霞。",
    "他花了3.5万元买了一台新电脑，速度比原来快了百分之四十。",
    "请拨打电话13812345678联系客服，工作时间是早上九点到下午六点。",
    "孩子们在草地上放风筝，笑声传得很远很远。",
]
_EN_SENTENCES = [
    "The quick brown fox jumps over the lazy dog near the riverbank.",
    "On March 3rd, 2021, she paid $45.50 for 12 books at the store.",
    "Dr. Smith read the report twice before he would record his conclusions.",
    "Neural text-to-speech systems convert written language into natural audio.",
    "We will meet at 10:30 a.m. and leave by 4 p.m. if the weather holds.",
]
_MIXED_SENTENCES = [
    "我今天用Python写了一个小程序，it works really well.",
    "日本語も少し話せます。Hello everyone, 欢迎来到我们的节目！",
    "这个API的response time大约是200毫秒。",
    "안녕하세요, 我们下周见。See you next week!",
]


def paragraph(sentences: list[str], *, chars: int | None = None, words: int | None = None) -> str:
    out, i = [], 0
    while True:
        text = " ".join(out) if words else "".join(out)
        if (chars and len(text) >= chars) or (words and len(text.split()) >= words):
            return text
        out.append(sentences[i % len(sentences)])
        i += 1


WORKLOADS = {
    "zh_1000_chars": (paragraph(_ZH_SENTENCES, chars=1000), "all_zh"),
    "en_1000_words": (paragraph(_EN_SENTENCES, words=1000), "en"),
    "mixed_auto": (paragraph(_MIXED_SENTENCES, chars=1000), "auto"),
}


def measure(text: str, lang: str, repeats: int) -> dict:
    preprocess(text, lang, "cut1", "v2")  # warm-up: lazy loads
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        segments = preprocess(text, lang, "cut1", "v2")
        seconds.append(time.perf_counter() - start)
    best = min(seconds)
    return {
        "chars": len(text),
        "segments": len(segments),
        "median_s": statistics.median(seconds),
        "best_s": best,
        "chars_per_s": len(text) / statistics.median(seconds),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--save", type=Path, help="write the results as JSON")
    parser.add_argument("--compare", type=Path, help="a JSON saved by --save to compare against")
    args = parser.parse_args(argv)

    results = {name: measure(text, lang, args.repeats) for name, (text, lang) in WORKLOADS.items()}
    baseline = json.loads(args.compare.read_text())["results"] if args.compare else {}

    header = f"{'workload':<16}{'chars':>7}{'segments':>10}{'median s':>10}{'chars/s':>10}"
    print(header + (f"{'vs base':>9}" if baseline else ""))
    for name, r in results.items():
        line = f"{name:<16}{r['chars']:>7}{r['segments']:>10}{r['median_s']:>10.3f}{r['chars_per_s']:>10.0f}"
        if name in baseline:
            line += f"{r['chars_per_s'] / baseline[name]['chars_per_s']:>8.2f}x"
        print(line)
    if args.save:
        meta = {"python": platform.python_version(), "machine": platform.machine()}
        args.save.write_text(json.dumps({"meta": meta, "results": results}, indent=2))


if __name__ == "__main__":
    main()
