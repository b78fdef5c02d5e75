"""``gsv-check-voices``: list the stored voices whose clips break the current reference rules.

Voices are checked when they are stored; a voice stored by an older release (before a rule existed)
is refused when used, with what is wrong. This lists every such voice at once, so an operator can
store them again. Exit status 0 when every voice is usable, 1 when some is not.
"""

from __future__ import annotations

import argparse
import sys

from app.engine.errors import EngineError
from app.engine.planning import check_aux_count, checked_references
from app.engine.reference_clips import ReferenceBudget
from app.settings import Settings, request_limits, store_url
from app.store.voices import open_voice_store


def problems(settings: Settings) -> list[tuple[str, str]]:
    """(voice name, what is wrong) for every stored voice that cannot be used."""
    limits = request_limits(settings)
    store = open_voice_store(store_url(settings))
    found = []
    try:
        for info in store.list():
            voice = store.get_clips(info.name)
            try:
                check_aux_count(len(voice.aux_ref_audios), limits, "aux_ref_audio")
                budget = ReferenceBudget(limits.reference_budget_bytes)
                checked_references(voice.ref_audio, voice.aux_ref_audios, budget, ("ref_audio", "aux_ref_audio"))
            except EngineError as exc:
                found.append((info.name, exc.message))
    finally:
        store.close()
    return found


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="gsv-check-voices", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", help="folder of the voices database (GSV_DATA_DIR)")
    parser.add_argument("--database-url", help="SQLAlchemy URL of the voices database (GSV_DATABASE_URL)")
    args = parser.parse_args(argv)
    settings = Settings(**{k: v for k, v in vars(args).items() if v is not None})
    found = problems(settings)
    for name, why in found:
        print(f"{name}: {why}")
    print(f"{len(found)} stored voice(s) break the reference rules" if found else "every stored voice is usable")
    sys.exit(1 if found else 0)


if __name__ == "__main__":
    main()
