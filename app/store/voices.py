"""``VoiceStore``: voices (a reference clip, its text and default settings) saved once, used by name.

Every method is one transaction: a create that fails leaves no row behind, a delete removes the
voice and its clips together. Methods return plain dataclasses, never ORM rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import selectinload

from app.engine.errors import Conflict, NotFound
from app.store.db import make_engine, session_factory
from app.store.migrate import upgrade
from app.store.models import ClipRow, VoiceRow


@dataclass(frozen=True)
class Clip:
    """A reference clip as uploaded (``data``: the original file bytes), with what was measured of it."""

    filename: str
    data: bytes
    sample_rate: int
    seconds: float


@dataclass(frozen=True)
class ClipInfo:
    filename: str
    sample_rate: int
    seconds: float


@dataclass(frozen=True)
class NewVoice:
    """What a voice is made of; ``clips[0]`` is the main reference, the rest auxiliary ones."""

    name: str
    prompt_text: str
    prompt_lang: str  # a language code (all_zh, en ...)
    clips: list[Clip]
    gpt_weights: str | None = None
    sovits_weights: str | None = None
    defaults: dict[str, Any] = field(default_factory=dict)  # synthesis parameters, by job field name


@dataclass(frozen=True)
class VoiceInfo:
    """A stored voice without its clips' bytes."""

    name: str
    prompt_text: str
    prompt_lang: str
    gpt_weights: str | None
    sovits_weights: str | None
    defaults: dict[str, Any]
    created_at: datetime
    ref_audio: ClipInfo
    aux_ref_audios: list[ClipInfo]


@dataclass(frozen=True)
class VoiceClips:
    """What synthesis needs of a voice: the clips' original bytes (``ReferenceAudio.decode`` reads
    them; ``SynthesisJob`` takes them as they are) and the voice's text, language, models and defaults."""

    ref_audio: bytes
    aux_ref_audios: list[bytes]
    prompt_text: str
    prompt_lang: str
    gpt_weights: str | None
    sovits_weights: str | None
    defaults: dict[str, Any]


def open_voice_store(url: str) -> VoiceStore:
    """The store of the database at ``url``, its schema first brought to the newest revision."""
    engine = make_engine(url)
    try:
        upgrade(engine)
    except BaseException:
        engine.dispose()
        raise
    return VoiceStore(engine)


class VoiceStore:
    def __init__(self, engine: Engine):
        self.engine = engine
        self._session = session_factory(engine)

    def create(self, voice: NewVoice) -> VoiceInfo:
        """Save ``voice``; ``Conflict`` (code ``voice_exists``) when its name is taken."""
        if not voice.clips:
            raise ValueError("a voice needs its main reference clip")
        row = VoiceRow(
            name=voice.name,
            prompt_text=voice.prompt_text,
            prompt_lang=voice.prompt_lang,
            gpt_weights=voice.gpt_weights,
            sovits_weights=voice.sovits_weights,
            defaults=dict(voice.defaults),
            clips=[
                ClipRow(position=i, filename=c.filename, data=c.data, sample_rate=c.sample_rate, seconds=c.seconds)
                for i, c in enumerate(voice.clips)
            ],
        )
        try:
            with self._session.begin() as session:
                if session.scalar(select(VoiceRow.id).where(VoiceRow.name == voice.name)) is not None:
                    raise _exists(voice.name)
                session.add(row)
        except IntegrityError as exc:
            # Two creates of one name at once: the unique index refuses the second.
            with self._session() as session:
                if session.scalar(select(VoiceRow.id).where(VoiceRow.name == voice.name)) is not None:
                    raise _exists(voice.name) from None
            raise exc
        return _info(row)

    def list(self) -> list[VoiceInfo]:
        with self._session() as session:
            rows = session.scalars(_with_clips(select(VoiceRow)).order_by(VoiceRow.name)).all()
            return [_info(row) for row in rows]

    def get(self, name: str) -> VoiceInfo:
        with self._session() as session:
            return _info(_find(session, name, with_bytes=False))

    def get_clips(self, name: str) -> VoiceClips:
        """The voice ``name`` as synthesis uses it; ``NotFound`` (code ``voice_not_found``) if absent."""
        with self._session() as session:
            row = _find(session, name)
            return VoiceClips(
                ref_audio=row.clips[0].data,
                aux_ref_audios=[clip.data for clip in row.clips[1:]],
                prompt_text=row.prompt_text,
                prompt_lang=row.prompt_lang,
                gpt_weights=row.gpt_weights,
                sovits_weights=row.sovits_weights,
                defaults=dict(row.defaults),
            )

    def clips(self, name: str) -> list[Clip]:
        """Every clip of ``name`` with its bytes, main reference first."""
        with self._session() as session:
            return [Clip(c.filename, c.data, c.sample_rate, c.seconds) for c in _find(session, name).clips]

    def delete(self, name: str) -> None:
        with self._session.begin() as session:
            session.delete(_find(session, name))

    def close(self) -> None:
        self.engine.dispose()


def _with_clips(query):
    # Clip metadata only: the bytes are loaded when asked for (a list never reads them).
    return query.options(selectinload(VoiceRow.clips).defer(ClipRow.data))


def _find(session, name: str, *, with_bytes: bool = True) -> VoiceRow:
    query = select(VoiceRow).where(VoiceRow.name == name)
    row = session.scalar(query if with_bytes else _with_clips(query))
    if row is None:
        raise NotFound(f"no voice named {name!r}", code="voice_not_found")
    return row


def _exists(name: str) -> Conflict:
    return Conflict(f"a voice named {name!r} exists already; delete it first or pick another name", code="voice_exists")


def _info(row: VoiceRow) -> VoiceInfo:
    clips = [ClipInfo(c.filename, c.sample_rate, c.seconds) for c in row.clips]
    created = row.created_at
    if created.tzinfo is None:  # SQLite keeps no time zone; every time stored is UTC
        created = created.replace(tzinfo=UTC)
    return VoiceInfo(
        name=row.name,
        prompt_text=row.prompt_text,
        prompt_lang=row.prompt_lang,
        gpt_weights=row.gpt_weights,
        sovits_weights=row.sovits_weights,
        defaults=dict(row.defaults),
        created_at=created,
        ref_audio=clips[0],
        aux_ref_audios=clips[1:],
    )
