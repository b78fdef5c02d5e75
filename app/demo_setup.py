"""Demo weights at start-up (``gsv-server --demo-if-empty``, what ``make run`` uses): when the weights
root holds no model, fill it with random demo models so the service can be tried at once, and say
loudly that they produce noise. The engine knows nothing of this; it just finds weights."""

from __future__ import annotations

import logging
from pathlib import Path

from app.demo import README_NAME, write_demo_weights

log = logging.getLogger(__name__)

DEMO_WARNING = (
    "DEMO WEIGHTS: the weights root holds random demo models that produce noise, not speech; put real "
    "GPT-SoVITS weights in its GPT_SoVITS/pretrained_models/, SoVITS_weights*/ and GPT_weights*/ folders "
    "(see weights/README.md)"
)


def prepare_demo_weights(root: Path, choices: tuple[list[str], list[str]]) -> None:
    """Write demo weights into ``root`` when ``choices`` (SoVITS names, GPT names) are both empty."""
    if any(choices):
        return
    log.warning("weights root %s holds no model: writing demo weights into it", Path(root).resolve())
    written = write_demo_weights(Path(root))
    log.warning("wrote %d demo files", sum(r.written for r in written))


def demo_warnings(root: Path) -> list[str]:
    """The readiness warning when ``root`` holds demo weights (their marker file is there)."""
    return [DEMO_WARNING] if (Path(root) / README_NAME).is_file() else []
