"""PostgreSQL's full-text index also holds the pieces of compound words.

PostgreSQL's text parser keeps a file name, host name, path or version (`ntdll.dll`,
`dc1.corp.example.com`, `Teams/Outlook`, `500/4500`) as one token, so `kb ntdll` and the
similar list missed a resolved ticket whose text had `ntdll.dll`, though SQLite's FTS5
(unicode61, which splits on punctuation) found it. Each field is now indexed twice at its
weight: as written, and with every run of punctuation read as a space. The words typed with
their punctuation still match the whole token (storage.search.fts_query). SQLite: nothing
to change.

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-07 09:30:00
"""

from __future__ import annotations

from alembic import op

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None

_WEIGHTS = (("summary", "A"), ("error_text", "B"), ("resolution_note", "C"), ("doing", "D"))


def _document(t: str, *, pieces: bool) -> str:
    parts = []
    for field, weight in _WEIGHTS:
        parts.append(f"setweight(to_tsvector('english', {t}.{field}), '{weight}')")
        if pieces:
            split = f"regexp_replace({t}.{field}, '[[:punct:]]+', ' ', 'g')"
            parts.append(f"setweight(to_tsvector('english', {split}), '{weight}')")
    return "\n    || ".join(parts)


def _sync(*, pieces: bool) -> str:
    return f"""CREATE OR REPLACE FUNCTION ticket_search_sync() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
      IF NEW.status = 'closed' THEN
        INSERT INTO ticket_search (ticket_id, document)
          VALUES (NEW.id, {_document("NEW", pieces=pieces)})
        ON CONFLICT (ticket_id) DO UPDATE SET document = EXCLUDED.document;
      ELSIF TG_OP = 'UPDATE' AND OLD.status = 'closed' THEN
        DELETE FROM ticket_search WHERE ticket_id = NEW.id;
      END IF;
      RETURN NULL;
    END $$"""


def _reindex(*, pieces: bool) -> str:
    return f"""UPDATE ticket_search AS s SET document = {_document("t", pieces=pieces)}
    FROM tickets AS t WHERE t.id = s.ticket_id"""


def _apply(*, pieces: bool) -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(_sync(pieces=pieces))
    op.execute(_reindex(pieces=pieces))


def upgrade() -> None:
    _apply(pieces=True)


def downgrade() -> None:
    _apply(pieces=False)
