"""The stored voices as SQLAlchemy ORM tables: ``voices`` and their clips, ``voice_clips``.

A clip is kept as the original uploaded bytes, so the database URL is all the state a replica needs.
Changing these tables needs a new migration in ``app/store/migrations/versions/``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, DateTime, Float, ForeignKey, Integer, LargeBinary, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

NAME_LENGTH = 64


class Base(DeclarativeBase):
    pass


def utc_now() -> datetime:
    return datetime.now(UTC)


class VoiceRow(Base):
    __tablename__ = "voices"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(NAME_LENGTH), unique=True, nullable=False)
    prompt_text: Mapped[str] = mapped_column(Text, nullable=False)
    prompt_lang: Mapped[str] = mapped_column(String(16), nullable=False)
    gpt_weights: Mapped[str | None] = mapped_column(Text)
    sovits_weights: Mapped[str | None] = mapped_column(Text)
    defaults: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, default=utc_now)

    clips: Mapped[list[ClipRow]] = relationship(
        back_populates="voice",
        order_by="ClipRow.position",
        cascade="all, delete-orphan",
        passive_deletes=True,  # the database's ON DELETE CASCADE removes them
    )


class ClipRow(Base):
    __tablename__ = "voice_clips"

    voice_id: Mapped[int] = mapped_column(
        ForeignKey("voices.id", ondelete="CASCADE"), primary_key=True
    )
    position: Mapped[int] = mapped_column(Integer, primary_key=True)  # 0: the main reference
    filename: Mapped[str] = mapped_column(Text, nullable=False)
    data: Mapped[bytes] = mapped_column("bytes", LargeBinary, nullable=False)
    sample_rate: Mapped[int] = mapped_column(Integer, nullable=False)
    seconds: Mapped[float] = mapped_column(Float, nullable=False)

    voice: Mapped[VoiceRow] = relationship(back_populates="clips")
