"""A technician's call-back on the requester's number on file confirms an identity check that no
manager could answer: the number, and who recorded the call-back, on the check.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-07 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None

COLUMNS = (
    ("callback_phone", 64),
    ("answered_platform", 8),
    ("answered_name", 255),
    ("answered_email", 320),
)


def upgrade() -> None:
    with op.batch_alter_table("identity_checks") as batch:
        # Checks made before this revision keep empty values (none was called back).
        for name, length in COLUMNS:
            batch.add_column(
                sa.Column(name, sa.String(length=length), nullable=False, server_default="")
            )


def downgrade() -> None:
    with op.batch_alter_table("identity_checks") as batch:
        for name, _ in reversed(COLUMNS):
            batch.drop_column(name)
