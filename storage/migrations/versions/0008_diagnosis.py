"""Diagnosis help: error signatures, what the card shows, and the full-text index.

`ticket_signatures` (indexed by signature) and `ticket_diagnosis` are ordinary tables. The
full-text index of resolved tickets is the database's own and is kept current by triggers on
`tickets`, so every way a ticket is closed (or reopened, edited, deleted) updates it:
- SQLite: an FTS5 table over tickets (external content, porter stemming) and four triggers.
- PostgreSQL: `ticket_search(ticket_id, document tsvector)` with a GIN index, filled by one
  PL/pgSQL trigger; weights A summary, B error text, C resolution note, D what they were doing.
Existing resolved tickets are indexed here. A later migration that rebuilds `tickets` on
SQLite (batch "move and copy") drops its triggers and must create them again.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05 20:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_FIELDS = "summary, error_text, doing, resolution_note"
_NEW = "new.id, new.summary, new.error_text, new.doing, new.resolution_note"
_OLD = "old.id, old.summary, old.error_text, old.doing, old.resolution_note"
_SQLITE = [
    f"""CREATE VIRTUAL TABLE ticket_search USING fts5({_FIELDS},
        content='tickets', content_rowid='id', tokenize='porter unicode61 remove_diacritics 2')""",
    f"""CREATE TRIGGER ticket_search_insert AFTER INSERT ON tickets WHEN new.status = 'closed'
        BEGIN INSERT INTO ticket_search(rowid, {_FIELDS}) VALUES ({_NEW}); END""",
    f"""CREATE TRIGGER ticket_search_update AFTER UPDATE OF status, {_FIELDS} ON tickets
        WHEN old.status = 'closed' OR new.status = 'closed'
        BEGIN
          INSERT INTO ticket_search(ticket_search, rowid, {_FIELDS})
            SELECT 'delete', {_OLD} WHERE old.status = 'closed';
          INSERT INTO ticket_search(rowid, {_FIELDS})
            SELECT {_NEW} WHERE new.status = 'closed';
        END""",
    f"""CREATE TRIGGER ticket_search_delete AFTER DELETE ON tickets WHEN old.status = 'closed'
        BEGIN INSERT INTO ticket_search(ticket_search, rowid, {_FIELDS})
          VALUES ('delete', {_OLD}); END""",
    f"""INSERT INTO ticket_search(rowid, {_FIELDS})
        SELECT id, {_FIELDS} FROM tickets WHERE status = 'closed'""",
]
_DOCUMENT = """setweight(to_tsvector('english', {t}.summary), 'A')
    || setweight(to_tsvector('english', {t}.error_text), 'B')
    || setweight(to_tsvector('english', {t}.resolution_note), 'C')
    || setweight(to_tsvector('english', {t}.doing), 'D')"""
_POSTGRESQL = [
    """CREATE TABLE ticket_search (
        ticket_id BIGINT PRIMARY KEY REFERENCES tickets(id) ON DELETE CASCADE,
        document tsvector NOT NULL)""",
    "CREATE INDEX ticket_search_document ON ticket_search USING gin (document)",
    f"""CREATE FUNCTION ticket_search_sync() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      IF NEW.status = 'closed' THEN
        INSERT INTO ticket_search (ticket_id, document) VALUES (NEW.id, {_DOCUMENT.format(t="NEW")})
        ON CONFLICT (ticket_id) DO UPDATE SET document = EXCLUDED.document;
      ELSIF TG_OP = 'UPDATE' AND OLD.status = 'closed' THEN
        DELETE FROM ticket_search WHERE ticket_id = NEW.id;
      END IF;
      RETURN NULL;
    END $$""",
    """CREATE TRIGGER ticket_search_insert AFTER INSERT ON tickets
        FOR EACH ROW WHEN (NEW.status = 'closed') EXECUTE FUNCTION ticket_search_sync()""",
    f"""CREATE TRIGGER ticket_search_update AFTER UPDATE OF status, {_FIELDS} ON tickets
        FOR EACH ROW WHEN (OLD.status = 'closed' OR NEW.status = 'closed')
        EXECUTE FUNCTION ticket_search_sync()""",
    f"""INSERT INTO ticket_search (ticket_id, document)
        SELECT t.id, {_DOCUMENT.format(t="t")} FROM tickets AS t WHERE t.status = 'closed'""",
]


def upgrade() -> None:
    ticket_id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
    op.create_table(
        "ticket_signatures",
        sa.Column("ticket_id", ticket_id, nullable=False),
        sa.Column("signature", sa.String(length=120), nullable=False),
        sa.ForeignKeyConstraint(["ticket_id"], ["tickets.id"]),
        sa.PrimaryKeyConstraint("ticket_id", "signature"),
    )
    op.create_index(
        "ix_ticket_signatures_signature", "ticket_signatures", ["signature", "ticket_id"]
    )
    op.create_table(
        "ticket_diagnosis",
        sa.Column("ticket_id", ticket_id, nullable=False),
        sa.Column("similar", sa.JSON(), nullable=False),
        sa.Column("pattern_count", sa.Integer(), nullable=False),
        sa.Column("pattern_earlier", sa.JSON(), nullable=False),
        sa.Column("pattern_label", sa.String(length=200), nullable=False),
        sa.Column("suggested_kb", sa.String(length=500), nullable=False),
        sa.Column("hints", sa.JSON(), nullable=False),
        sa.Column("kb_state", sa.String(length=16), nullable=False),
        sa.Column("kb_source", sa.String(length=32), nullable=False),
        sa.Column("kb_articles", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["ticket_id"], ["tickets.id"]),
        sa.PrimaryKeyConstraint("ticket_id"),
    )
    statements = _POSTGRESQL if op.get_bind().dialect.name == "postgresql" else _SQLITE
    for statement in statements:
        op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS ticket_search_update ON tickets")
        op.execute("DROP TRIGGER IF EXISTS ticket_search_insert ON tickets")
        op.execute("DROP FUNCTION IF EXISTS ticket_search_sync()")
        op.execute("DROP TABLE IF EXISTS ticket_search")
    else:
        for trigger in ("ticket_search_insert", "ticket_search_update", "ticket_search_delete"):
            op.execute(f"DROP TRIGGER IF EXISTS {trigger}")
        op.execute("DROP TABLE IF EXISTS ticket_search")
    op.drop_table("ticket_diagnosis")
    op.drop_index("ix_ticket_signatures_signature", table_name="ticket_signatures")
    op.drop_table("ticket_signatures")
