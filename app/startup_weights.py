"""An empty weights root at start-up (``gsv-server --demo-if-empty``, what ``make run`` uses): fetch
upstream's pretrained models when the hub answers, else write demo weights, and say which.

Order: with ``fetch_weights`` on (``GSV_FETCH_WEIGHTS``, default true), one short reachability check
of the Hugging Face hub (``HF_ENDPOINT``); if it answers, ``gsv-fetch-weights``' default fetch runs
(the start waits for it, with its progress bars). If the hub does not answer, or the fetch fails
(which places nothing), demo weights are written as before. The outcome is logged and kept for
``/readyz``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from app.demo_setup import prepare_demo_weights
from app.settings import Settings

log = logging.getLogger(__name__)

HUB_CHECK_TIMEOUT_S = 3.0


@dataclass(frozen=True)
class StartupWeights:
    """What start-up did about an empty weights root."""

    action: str  # "fetched" or "demo"
    message: str


def prepare_empty_weights_root(
    settings: Settings,
    choices: tuple[list[str], list[str]],
    *,
    fetch: Callable[[Path], object] | None = None,
    check_timeout: float = HUB_CHECK_TIMEOUT_S,
) -> StartupWeights | None:
    """Fill an empty weights root (``choices``, the SoVITS and GPT names, both empty) when
    ``demo_if_empty`` is set; None when nothing was done. ``fetch`` replaces the default fetch (tests)."""
    if not settings.demo_if_empty or any(choices):
        return None
    from app.fetch_weights import FetchError, fetch_weights, hub_endpoint, hub_reachable
    from app.weights_manifest import DEFAULT_VERSIONS

    root = Path(settings.weights_root)
    endpoint = hub_endpoint()
    versions = ", ".join(DEFAULT_VERSIONS)
    if not settings.fetch_weights:
        reason = "GSV_FETCH_WEIGHTS=false: no fetch attempted"
    else:
        log.info("weights root %s holds no model: checking whether %s answers (%.0f s)", root, endpoint, check_timeout)
        reachable, detail = hub_reachable(endpoint, timeout=check_timeout)
        if reachable:
            log.warning("the hub answers: fetching upstream's pretrained %s models into %s", versions, root.resolve())
            try:
                (fetch or fetch_weights)(root)
            except FetchError as exc:
                reason = f"fetching upstream's pretrained models from {endpoint} failed ({exc})"
            else:
                message = f"fetched upstream's pretrained {versions} models from {endpoint} into the empty weights root"
                log.warning(message)
                return StartupWeights("fetched", message)
        else:
            reason = f"the Hugging Face hub {endpoint} did not answer ({detail})"
    message = f"demo weights written into the empty weights root: {reason}; gsv-fetch-weights gets real ones"
    log.warning(message)
    prepare_demo_weights(root, choices)
    return StartupWeights("demo", message)
