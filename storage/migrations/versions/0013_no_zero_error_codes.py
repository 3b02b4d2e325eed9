"""Forget the zero error codes stored as signatures before 0x0 stopped being one.

0x0 (S_OK, ERROR_SUCCESS) follows every Remote Desktop error code ("Extended error code:
0x0"), so tickets stored with it were all "the same error" (similar tickets, patterns, the
report's top patterns). Tickets opened since do not get it; this removes it from older ones.
Their own codes stay.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-06 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

ZERO_CODES = ("hex:0x00000000", "error:0")


def upgrade() -> None:
    signatures = sa.table("ticket_signatures", sa.column("signature", sa.String))
    op.execute(signatures.delete().where(signatures.c.signature.in_(ZERO_CODES)))


def downgrade() -> None:
    """Nothing to put back: the rows removed said something untrue."""
