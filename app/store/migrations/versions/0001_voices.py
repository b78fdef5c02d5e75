"""Stored voices: ``voices`` and their reference clips, ``voice_clips`` (bytes in the database)."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "voices",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(64), nullable=False, unique=True),
        sa.Column("prompt_text", sa.Text(), nullable=False),
        sa.Column("prompt_lang", sa.String(16), nullable=False),
        sa.Column("gpt_weights", sa.Text(), nullable=True),
        sa.Column("sovits_weights", sa.Text(), nullable=True),
        sa.Column("defaults", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "voice_clips",
        sa.Column("voice_id", sa.Integer(), sa.ForeignKey("voices.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("position", sa.Integer(), primary_key=True),
        sa.Column("filename", sa.Text(), nullable=False),
        sa.Column("bytes", sa.LargeBinary(), nullable=False),
        sa.Column("sample_rate", sa.Integer(), nullable=False),
        sa.Column("seconds", sa.Float(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("voice_clips")
    op.drop_table("voices")
