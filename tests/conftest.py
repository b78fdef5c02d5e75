"""Shared fixtures: where the conformance corpus lives, and a session-wide cache for generated weights."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def conformance_dir() -> Path:
    return Path(os.environ.get("GSV_CONFORMANCE_DIR", ROOT.parent / "shared" / "conformance")).resolve()


@pytest.fixture(scope="session")
def conformance() -> Path:
    path = conformance_dir()
    if not path.is_dir():
        pytest.fail(f"conformance corpus not found at {path} (set GSV_CONFORMANCE_DIR)")
    return path


def read_jsonl(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]
