"""``gsv-demo-weights DIR``: fill DIR with small random weights in upstream's folder layout.

The result lets ``gsv-server --weights-root DIR`` run every stage without downloading anything. The
voices produce noise, not speech.
"""

from __future__ import annotations

import argparse
import time

from app.demo import (
    DEMO_VERSIONS,
    README_NAME,
    WriteResult,
    write_demo_weights,
)

# Versions without a demo voice yet, and why.
FUTURE_VERSIONS = {"v3": "its vocoder (BigVGAN, in NVIDIA's folder format) has no small demo version yet"}


def _versions(text: str) -> list[str]:
    versions = [v.strip() for v in text.split(",") if v.strip()]
    if not versions:
        raise argparse.ArgumentTypeError("give at least one version")
    for version in versions:
        if version in FUTURE_VERSIONS:
            raise argparse.ArgumentTypeError(
                f"demo weights for {version} are not available yet: {FUTURE_VERSIONS[version]}"
            )
        if version not in DEMO_VERSIONS:
            raise argparse.ArgumentTypeError(
                f"unknown version {version!r} (choose from {', '.join(DEMO_VERSIONS)})"
            )
    return versions


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="gsv-demo-weights",
        description="Write small random GPT-SoVITS weights (noise, not speech) in upstream's folder layout.",
    )
    parser.add_argument("dir", help="weights root to fill (created if missing)")
    parser.add_argument(
        "--seed", type=int, default=0, help="random seed; the same seed gives identical files"
    )
    parser.add_argument("--force", action="store_true", help="overwrite files that already exist")
    parser.add_argument(
        "--versions",
        type=_versions,
        default=list(DEMO_VERSIONS),
        help=(
            f"comma-separated model versions to write a demo voice for, from {','.join(DEMO_VERSIONS)} "
            f"(default {','.join(DEMO_VERSIONS)})"
        ),
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()

    def report(result: WriteResult) -> None:
        action = "wrote" if result.written else "kept "
        note = "" if result.written else "  (exists; --force overwrites)"
        print(f"{action} {result.path}  [{result.what}]{note}", flush=True)

    print(f"writing demo weights to {args.dir} (seed {args.seed})", flush=True)
    write_demo_weights(args.dir, seed=args.seed, versions=args.versions, force=args.force, on_progress=report)
    print(f"done in {time.monotonic() - started:.1f}s; see {README_NAME} in that folder.")
    print(
        "These weights produce noise, not speech. Real weights go in the same layout "
        "(GPT_SoVITS/pretrained_models/, SoVITS_weights*/, GPT_weights*/; see weights/README.md)."
    )
    print(f"Try them: gsv-server --weights-root {args.dir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
