"""Upgrades and rollbacks as an operator meets them (SPEC "Running", "Upgrades"), with real
`python -m bot` processes on SQLite and PostgreSQL: a database from a newer release is left
alone (exit 2, one line), PostgreSQL processes refuse a schema that is not theirs, and a
database the first release wrote upgrades with everything kept and nothing sent twice."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from alembic import command as alembic
from sqlalchemy import column, insert, inspect, select, table, text
from sqlalchemy.engine import make_url
from sqlalchemy.event import listen, remove
from sqlalchemy.ext.asyncio import create_async_engine

from handlers.diagnosis import rules
from storage import db, error_signatures
from storage import tickets as tickets_repo
from storage.migrate import alembic_config, head_revisions, upgrade
from storage.models import CsatSurvey, InboundDelivery, OutboxMessage, Ticket, TicketSignature
from tests.fakes.slack_api import FakeSlack
from tests.harness import BOT_TOKEN, SIGNING_SECRET, AppHarness, wait_until
from tests.http.p1_support import slack_ticket
from tests.unit.test_cli import ROOT, run_bot
from tests.unit.test_diagnosis_rules import CA_PAGE, PASSWORD_PAGE
from tests.upgrade import build_release_0001, comparable, reflect, release_0001, rows_of, snapshot

NEWER = "0099_from_the_future"
HEAD = ", ".join(head_revisions())
PEOPLE = [
    {"email": "tom@example.com", "name": "Tom Tech", "slack_id": "UTECH", "technician": True},
    {"email": "bo@example.com", "name": "Bo Chen", "slack_id": "UBO"},
    {"email": "ana@example.com", "name": "Ana Lopez", "slack_id": "UANA",
     "manager": "bo@example.com"},
    {"email": "sam@example.com", "name": "Sam User", "slack_id": "USAM"},
]  # fmt: skip
CONFIG = {
    "slack": {"incident_channel": "C0INCIDENT"},
    "incident": {"bridge_url": "https://meet.example.com/p1-bridge"},
    "csat": {"delay": "0s", "vip_followup_delay": "1d"},
}


def bot(command: str, url: str, cwd: Path) -> tuple[int, list[str]]:
    """`python -m bot <command>` on `url`; its exit code and stderr lines."""
    result = run_bot(command, cwd=cwd, env={"DATABASE_URL": url, "PORT": "1"})
    return result.returncode, result.stderr.strip().splitlines()


async def stamp_newer(url: str) -> None:
    """What a newer release leaves: a table and a column of its own, its revision stamped."""
    engine = db.create_engine(url)
    async with engine.begin() as conn:
        await conn.execute(text("CREATE TABLE future_things (id INTEGER PRIMARY KEY, note TEXT)"))
        await conn.execute(text("INSERT INTO future_things VALUES (1, 'written by 0099')"))
        await conn.execute(text("ALTER TABLE tickets ADD COLUMN future_flag INTEGER"))
        await conn.execute(text("DELETE FROM alembic_version"))  # every head this release has
        await conn.execute(text(f"INSERT INTO alembic_version VALUES ('{NEWER}')"))
    await engine.dispose()


# -- a newer release's database ------------------------------------------------------------------


async def test_a_newer_releases_database_is_left_alone(empty_url: str, tmp_path: Path):
    await build_release_0001(empty_url)
    engine = db.create_engine(empty_url)
    await upgrade(engine)
    await engine.dispose()
    await stamp_newer(empty_url)
    before = await snapshot(empty_url)
    assert before["alembic_version"]["rows"] == [{"version_num": NEWER}]

    for command in ("migrate", "serve", "worker"):
        code, lines = bot(command, empty_url, tmp_path)
        assert code == 2, (command, lines)
        assert len(lines) == 1, (command, lines)  # one line, no traceback
        [line] = lines
        assert "newer than this version" in line, line
        assert NEWER in line and f"newest revision {HEAD}" in line, line
        assert await snapshot(empty_url) == before, f"{command} changed the database"


async def test_another_applications_database_is_left_alone(empty_url: str, tmp_path: Path):
    """A DATABASE_URL naming a database helpdesk-bot never migrated that has a table of its
    name (another application's, or one whose alembic_version was dropped): every command stops
    with one line and exit 2, nothing changed. `migrate` (and `serve` on SQLite) died with
    Alembic's traceback, exit 1, at `CREATE TABLE tickets`."""
    engine = db.create_engine(empty_url)
    async with engine.begin() as conn:
        await conn.execute(text("CREATE TABLE tickets (id INTEGER PRIMARY KEY, title TEXT)"))
        await conn.execute(text("INSERT INTO tickets VALUES (1, 'the other app''s ticket')"))
    await engine.dispose()
    before = await snapshot(empty_url)

    for command in ("migrate", "serve", "worker", "check-config"):
        code, lines = bot(command, empty_url, tmp_path)
        assert code == 2, (command, lines)
        assert len(lines) == 1, (command, lines)  # one line, no traceback
        [line] = lines
        assert line.startswith("database error: "), line
        assert "no helpdesk-bot schema revision" in line and "(tickets)" in line, line
        assert await snapshot(empty_url) == before, f"{command} changed the database"


# -- PostgreSQL processes run only on their own schema -----------------------------------------


async def test_postgresql_serve_and_worker_refuse_an_older_schema_until_migrated(
    pg_migrated: str, tmp_path: Path
):
    admin = create_async_engine(pg_migrated, isolation_level="AUTOCOMMIT")
    name = f"helpdesk_old_{secrets.token_hex(4)}"
    async with admin.connect() as conn:
        await conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(pg_migrated).set(database=name).render_as_string(hide_password=False)
    try:
        for command in ("serve", "worker"):  # never migrated
            code, lines = bot(command, url, tmp_path)
            assert code == 2 and len(lines) == 1, (command, lines)
            assert "never migrated" in lines[0] and "python -m bot migrate" in lines[0]
        assert await snapshot(url) == {}  # nothing was created either

        await build_release_0001(url)  # an older release's schema
        for command in ("serve", "worker"):
            code, lines = bot(command, url, tmp_path)
            assert code == 2 and len(lines) == 1, (command, lines)
            assert "revision 0001" in lines[0] and "older" in lines[0]
            assert "python -m bot migrate" in lines[0]

        code, lines = bot("migrate", url, tmp_path)
        assert code == 0, lines
        assert await worker_starts(url, tmp_path)
    finally:
        async with admin.connect() as conn:
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await admin.dispose()


async def worker_starts(url: str, cwd: Path) -> bool:
    """`python -m bot worker` runs (until told to stop) on the database at `url`."""
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR")}
    env |= {"PYTHONPATH": str(ROOT), "DATABASE_URL": url}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "worker", cwd=cwd, env=env,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert process.stderr is not None
    try:
        while line := await asyncio.wait_for(process.stderr.readline(), timeout=30):
            if b"outbox worker running" in line:
                return True
        return False
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(process.wait(), timeout=15)


# -- upgrading the first release's database ------------------------------------------------------


async def rows_kept(url: str) -> dict[str, list[dict[str, Any]]]:
    """Every table of the first release, only its columns, as stored now."""
    engine = db.create_engine(url)
    tables = release_0001()["tables"]

    def read(conn: Any) -> dict[str, list[dict[str, Any]]]:
        meta = reflect(conn)
        return {
            name: rows_of(conn, meta.tables[name], list(rows[0]) if rows else None)
            for name, rows in tables.items()
        }

    async with engine.connect() as conn:
        kept = await conn.run_sync(read)
    await engine.dispose()
    return kept


def fixture_rows() -> dict[str, list[dict[str, Any]]]:
    """The fixture's rows normalised like stored ones (datetimes in UTC ISO form)."""
    out = {}
    for name, rows in release_0001()["tables"].items():
        out[name] = [
            {
                k: comparable(datetime.fromisoformat(v))
                if isinstance(v, str) and k.endswith(("_at", "_by", "_until")) and v[:2] == "20"
                else v
                for k, v in row.items()
            }
            for row in rows
        ]
    return out


async def test_the_first_releases_database_upgrades_with_everything_kept(
    empty_url: str, tmp_path: Path, slack_api: FakeSlack
):
    await build_release_0001(empty_url)
    written = fixture_rows()
    assert await rows_kept(empty_url) == written  # the fixture database, as the release left it

    code, lines = bot("migrate", empty_url, tmp_path)
    assert code == 0, lines
    assert any(f"upgraded from revision 0001 to {HEAD}" in line for line in lines), lines
    assert await rows_kept(empty_url) == written  # every row, every value
    migrated = await snapshot(empty_url)
    stamped = sorted(row["version_num"] for row in migrated["alembic_version"]["rows"])
    assert stamped == sorted(head_revisions())

    code, lines = bot("migrate", empty_url, tmp_path)  # a second migrate changes nothing
    assert code == 0, lines
    assert any("nothing to do" in line for line in lines), lines
    assert await snapshot(empty_url) == migrated

    # Today's release runs on it: what was delivered stays delivered, what is owed goes once.
    started = datetime.now(UTC)
    owed = [
        r for r in release_0001()["tables"]["outbox"]
        if r["status"] == "pending" and datetime.fromisoformat(r["due_at"]) <= started
    ]  # fmt: skip
    assert owed, "the fixture holds a side effect still owed"
    env = {
        "DATABASE_URL": empty_url,
        "SLACK_BOT_TOKEN": BOT_TOKEN,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "SLACK_API_URL": f"{slack_api.url}/api/",
    }
    app = await AppHarness(tmp_path, env, CONFIG, PEOPLE).start()
    try:
        await wait_until(
            lambda: delivered(app, [r["id"] for r in owed]), timeout=10, what="owed rows"
        )
        await slack_ticket(app, slack_api, priority="P3", users=1)
        await wait_until(lambda: tickets_posted(slack_api) == 1, what="the new ticket card")
        async with app.services.sessions() as session:
            numbers = (await session.execute(select(Ticket.number).order_by(Ticket.id))).all()
            ratings = (await session.execute(select(CsatSurvey.rating))).scalars().all()
        assert [n for (n,) in numbers] == ["HD-1", "HD-2", "HD-3", "HD-4", "HD-5"]
        assert 4 in ratings  # the survey answer kept
    finally:
        await app.stop()

    # Exactly the owed DMs went out (each once) and the new ticket's card; nothing else again.
    dms = [p["channel"] for p in slack_api.posts() if p["channel"].startswith("D")]
    assert sorted(dms) == sorted(f"D{r['payload']['user']}" for r in owed)
    others = [p["channel"] for p in slack_api.posts() if not p["channel"].startswith("D")]
    assert others == ["C0HELP"]
    assert slack_api.method_calls("chat.update") == []
    kept = await rows_kept(empty_url)
    assert kept["ticket_counters"] == [{"prefix": "HD", "last_value": 5}]  # numbering went on
    for name, rows in written.items():
        for row in rows:
            if name == "ticket_counters" or (name == "outbox" and row["status"] == "pending"):
                continue  # counted on; owed then, delivered now
            assert row in kept[name], (name, row)


def tickets_posted(fake: FakeSlack) -> int:
    return sum("HD-5" in json.dumps(p) for p in fake.posts() if p["channel"] == "C0HELP")


async def delivered(app: AppHarness, ids: list[int]) -> bool:
    async with app.services.sessions() as session:
        query = select(OutboxMessage.status).where(OutboxMessage.id.in_(ids))
        return all(s == "delivered" for s in (await session.execute(query)).scalars().all())


# -- revision 0012: delivery ids indexed by age, for their prune --------------------------------


def to(revision: str, direction: str = "upgrade") -> Any:
    """A step of alembic's to `revision`, to run on an open connection (`run_sync`)."""

    def run(conn: Any) -> None:
        cfg = alembic_config()
        cfg.attributes["connection"] = conn
        getattr(alembic, direction)(cfg, revision)

    return run


async def old_ticket(session: Any, **fields: Any) -> int:
    """Store a ticket in an older schema (its id): only the columns that schema has, where
    `tickets_repo.create` names every column of the model, those added since included."""
    row, [values] = await _old_rows(session, [fields])
    inserted = await session.execute(insert(row).values(values).returning(row.c.id))
    return int(inserted.scalar_one())


async def old_tickets(session: Any, rows: list[dict[str, Any]]) -> None:
    """`old_ticket` for many tickets (each naming its `id`) in one statement: a thousand
    tickets one by one, each asking the schema its columns first, took most of a test's
    minute on a loaded PostgreSQL."""
    row, values = await _old_rows(session, rows)
    await session.execute(insert(row), values)


async def _old_rows(session: Any, rows: list[dict[str, Any]]) -> tuple[Any, list[dict[str, Any]]]:
    conn = await session.connection()
    have = await conn.run_sync(
        lambda sync: {str(c["name"]) for c in inspect(sync).get_columns("tickets")}
    )
    defaults = tickets_repo._DEFAULTS.items()
    values = [
        {k: make() for k, make in defaults if k in have and k not in fields} | fields
        for fields in rows
    ]
    model = Ticket.__table__.c
    names = dict.fromkeys(k for one in values for k in one)
    return table("tickets", *(column(k, model[k].type) for k in ("id", *names))), values


def _inbound_indexes(conn: Any) -> dict[str, list[str]]:
    found = inspect(conn).get_indexes("inbound_deliveries")
    return {str(ix["name"]): [str(c) for c in ix["column_names"]] for ix in found}


async def test_revision_0012_indexes_delivery_ids_by_age_and_downgrades(empty_url: str):
    engine = db.create_engine(empty_url)
    rows = [
        {"key": "slack:view:V1:h", "at": datetime(2026, 11, 1, tzinfo=UTC)},
        {"key": "teams:a:1:2", "at": datetime(2026, 12, 5, tzinfo=UTC)},
    ]

    try:
        async with engine.begin() as conn:
            await conn.run_sync(to("0011", "upgrade"))
            assert await conn.run_sync(_inbound_indexes) == {}
            await conn.execute(insert(InboundDelivery), rows)
        async with engine.begin() as conn:
            await conn.run_sync(to("0012", "upgrade"))
            assert await conn.run_sync(_inbound_indexes) == {"ix_inbound_deliveries_at": ["at"]}
        async with engine.begin() as conn:
            await conn.run_sync(to("0011", "downgrade"))
            assert await conn.run_sync(_inbound_indexes) == {}
        async with engine.begin() as conn:
            await conn.run_sync(to("heads", "upgrade"))
            assert await conn.run_sync(_inbound_indexes) == {"ix_inbound_deliveries_at": ["at"]}
            kept = await conn.execute(select(InboundDelivery.key).order_by(InboundDelivery.key))
            assert [k for (k,) in kept] == [r["key"] for r in rows]  # no id lost on the way
    finally:
        await engine.dispose()


async def test_revision_0013_forgets_zero_error_codes_and_keeps_the_real_ones(empty_url: str):
    """Tickets stored before 0x0 stopped being an error code carry hex:0x00000000 (every
    Remote Desktop error: 'Extended error code: 0x0'), which made them all one error."""
    engine = db.create_engine(empty_url)

    now = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    stored = {1: ["hex:0x00000204", "hex:0x00000000"], 2: ["hex:0x00000507", "error:0"],
              3: ["hex:0x80070005", "error:404"]}  # fmt: skip
    try:
        async with engine.begin() as conn:
            await conn.run_sync(to("0012"))
        async with db.session_factory(engine)() as session, session.begin():
            for seq, keys in stored.items():
                ticket_id = await old_ticket(
                    session, number=f"HD-{seq}", prefix="HD", seq=seq, status="open",
                    summary="Remote Desktop", error_text="", reproducible="yes",
                    priority="P3", tier="standard", requester_id="UANA",
                    technician_id="UTECH", source_platform="slack", source_channel="C1",
                    created_at=now, respond_by=now, resolve_by=now,
                )  # fmt: skip
                await error_signatures.add_signatures(session, ticket_id=ticket_id, keys=keys)
        async with engine.begin() as conn:
            await conn.run_sync(to("0013"))
            rows = await conn.execute(
                select(TicketSignature.signature).order_by(TicketSignature.signature)
            )
            assert [s for (s,) in rows] == [
                "error:404", "hex:0x00000204", "hex:0x00000507", "hex:0x80070005"
            ]  # fmt: skip
    finally:
        await engine.dispose()


async def test_revision_0014_recomputes_signatures_stored_by_the_older_rules(empty_url: str):
    """Tickets stored before the sign-in page's 'Error Code: 53003' was read as AADSTS53003
    keep error:53003, their GUIDs' hex codes (Office's app id on every sign-in page), http:200,
    and no code at all for 500121; the backfill only fills tickets without signatures. 0014
    reads them again: the page ticket is then the same error as the AADSTS53003 one, the app
    id joins no two tickets, and rows still true are kept."""
    engine = db.create_engine(empty_url)

    now = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    aadsts = "AADSTS53003: Access has been blocked by Conditional Access policies."
    # (error text, summary, what the rules before 0014 stored for it)
    tickets = [
        (aadsts, "Outlook blocked", ["aadsts:53003"]),
        (CA_PAGE, "Teams blocked", ["hex:0x8f7c2a1e", "hex:0xe1d2c3b4", "hex:0xd3590ed6",
                                    "error:53003"]),
        (PASSWORD_PAGE, "Cannot sign in", ["hex:0x8f7c2a1e", "hex:0xe1d2c3b4",
                                           "hex:0xd3590ed6", "error:50126"]),
        ("Sync says HTTP 200 OK but no mail arrives", "Mail sync", ["http:200"]),
        ("", "Error Code: 500121 since the Conditional Access change", []),
        ("Windows Update failed 0x80070005", "Update fails", ["hex:0x80070005"]),
    ]  # fmt: skip
    try:
        async with engine.begin() as conn:
            await conn.run_sync(to("0013"))
        ids: list[int] = []
        async with db.session_factory(engine)() as session, session.begin():
            for seq, (error, summary, codes) in enumerate(tickets, start=1):
                ticket_id = await old_ticket(
                    session, number=f"HD-{seq}", prefix="HD", seq=seq, status="closed",
                    summary=summary, error_text=error, reproducible="yes",
                    priority="P3", tier="standard", requester_id="UANA",
                    technician_id="UTECH", source_platform="slack", source_channel="C1",
                    created_at=now, respond_by=now, resolve_by=now,
                )  # fmt: skip
                keys = codes + ([f"exact:{rules.exact_key(error)}"] if error else [])
                await error_signatures.add_signatures(session, ticket_id=ticket_id, keys=keys)
                ids.append(ticket_id)
        async with engine.begin() as conn:
            await conn.run_sync(to("0014"))
        async with db.session_factory(engine)() as session:
            for ticket_id, (error, summary, _) in zip(ids, tickets, strict=True):
                now_stored = set(await error_signatures.signatures_of(session, ticket_id))
                assert now_stored == {s.key for s in rules.signatures(error, summary=summary)}
            found, _ = await error_signatures.with_signatures(
                session, ["aadsts:53003"], before=2**62
            )
            assert sorted(f.number for f in found) == ["HD-1", "HD-2"]
            for gone in ("hex:0xd3590ed6", "hex:0x8f7c2a1e", "error:53003", "http:200"):
                assert (await error_signatures.with_signatures(session, [gone], before=2**62))[
                    0
                ] == []
            found, _ = await error_signatures.with_signatures(
                session, ["aadsts:500121"], before=2**62
            )
            assert [f.number for f in found] == ["HD-5"]
            assert "hex:0x80070005" in await error_signatures.signatures_of(session, ids[5])
    finally:
        await engine.dispose()


async def test_revision_0014_writes_a_batch_of_tickets_in_a_few_statements(empty_url: str):
    """0014 reads every ticket again, so on a large database its cost is its round trips: a
    batch of tickets whose signatures changed is brought in step in one delete and one insert,
    not two statements per ticket (measured on 50,000 changed tickets: PostgreSQL 39 s before,
    7 s after; SQLite 17 s, 5 s). 1200 sign-in page tickets stored with the app id's hex
    code: 3 batches."""
    engine = db.create_engine(empty_url)

    now = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    count = 1200
    statements: list[str] = []

    def counted(conn: Any, cursor: Any, sql: str, *args: Any) -> None:
        statements.append(sql)

    try:
        async with engine.begin() as conn:
            await conn.run_sync(to("0013"))
        async with db.session_factory(engine)() as session, session.begin():
            errors = {seq: f"{CA_PAGE}\nDevice {seq}" for seq in range(1, count + 1)}
            await old_tickets(session, [
                dict(
                    id=seq, number=f"HD-{seq}", prefix="HD", seq=seq, status="closed",
                    summary="Teams blocked", error_text=error, reproducible="yes",
                    priority="P3", tier="standard", requester_id="UANA",
                    technician_id="UTECH", source_platform="slack", source_channel="C1",
                    created_at=now, respond_by=now, resolve_by=now,
                )
                for seq, error in errors.items()
            ])  # fmt: skip
            # What add_signatures stores for each, in one statement.
            await session.execute(error_signatures._INSERT_SIGNATURE, [
                {"ticket_id": seq, "signature": key}
                for seq, error in errors.items()
                for key in ("hex:0xd3590ed6", "error:53003", f"exact:{rules.exact_key(error)}")
            ])  # fmt: skip
        listen(engine.sync_engine, "before_cursor_execute", counted)
        async with engine.begin() as conn:
            await conn.run_sync(to("0014"))
        remove(engine.sync_engine, "before_cursor_execute", counted)
        writes = [s for s in statements if s.lstrip().upper().startswith(("DELETE", "INSERT"))]
        assert len(writes) <= 2 * 3, writes[:5]
        async with db.session_factory(engine)() as session:
            for ticket_id in (1, count // 2, count):
                error = f"{CA_PAGE}\nDevice {ticket_id}"
                stored = set(await error_signatures.signatures_of(session, ticket_id))
                assert stored == {s.key for s in rules.signatures(error, summary="Teams blocked")}
            found, _ = await error_signatures.with_signatures(
                session, ["hex:0xd3590ed6"], before=2**62
            )
            assert found == []
    finally:
        await engine.dispose()


# -- revision 0016: outbox rows trimmed once old, indexed until they are ----------------------


def _outbox_shape(conn: Any) -> tuple[set[str], dict[str, list[str]]]:
    found = inspect(conn)
    columns = {str(c["name"]) for c in found.get_columns("outbox")}
    indexes = {
        str(ix["name"]): [str(c) for c in ix["column_names"]]
        for ix in found.get_indexes("outbox")
        if str(ix["name"]) == "ix_outbox_untrimmed"
    }
    return columns, indexes


async def test_revision_0016_adds_the_trim_time_and_its_index_and_downgrades(empty_url: str):
    engine = db.create_engine(empty_url)
    row = {
        "kind": "dm", "payload": {"purpose": "csat-survey", "card": {"body": []}},
        "dedup_key": "csat-survey:1", "status": "delivered", "attempts": 1, "last_error": "",
        "result": {"channel": "DUANA", "ts": "1.2"}, "failure_reported": False,
        "due_at": datetime(2026, 10, 1, tzinfo=UTC),
        "created_at": datetime(2026, 10, 1, tzinfo=UTC),
    }  # fmt: skip
    kept = [OutboxMessage.id, OutboxMessage.dedup_key, OutboxMessage.payload]
    try:
        async with engine.begin() as conn:
            await conn.run_sync(to("0015"))
            columns, indexes = await conn.run_sync(_outbox_shape)
            assert "trimmed_at" not in columns and indexes == {}
            await conn.execute(insert(OutboxMessage.__table__).values(**row))
        async with engine.begin() as conn:
            await conn.run_sync(to("0016"))
            columns, indexes = await conn.run_sync(_outbox_shape)
            assert "trimmed_at" in columns and indexes == {"ix_outbox_untrimmed": ["due_at"]}
            stored = (await conn.execute(select(OutboxMessage.trimmed_at, *kept))).one()
            assert stored[0] is None  # every row is whole at the upgrade
            assert tuple(stored[1:]) == (1, "csat-survey:1", row["payload"])
        async with engine.begin() as conn:
            await conn.run_sync(to("0015", "downgrade"))
            columns, indexes = await conn.run_sync(_outbox_shape)
            assert "trimmed_at" not in columns and indexes == {}
            assert tuple((await conn.execute(select(*kept))).one()) == (
                1, "csat-survey:1", row["payload"]
            )  # fmt: skip
        async with engine.begin() as conn:
            await conn.run_sync(to("heads"))
            assert await conn.run_sync(_outbox_shape) == (columns | {"trimmed_at"}, {
                "ix_outbox_untrimmed": ["due_at"]
            })  # fmt: skip
    finally:
        await engine.dispose()


# -- revision 0017: whether the requester's account is disabled in the directory -------------


def _ticket_columns(conn: Any) -> set[str]:
    return {str(c["name"]) for c in inspect(conn).get_columns("tickets")}


async def test_revision_0017_adds_requester_disabled_false_for_every_ticket(empty_url: str):
    engine = db.create_engine(empty_url)
    now = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(to("0016"))
            assert "requester_disabled" not in await conn.run_sync(_ticket_columns)
        async with db.session_factory(engine)() as session, session.begin():
            await old_ticket(
                session, number="HD-1", prefix="HD", seq=1, status="open",
                summary="Reset my password", error_text="", reproducible="yes",
                priority="P3", tier="standard", requester_id="UANA",
                technician_id="UTECH", source_platform="slack", source_channel="C1",
                created_at=now, respond_by=now, resolve_by=now,
            )  # fmt: skip
        kept = [Ticket.number, Ticket.summary]
        async with engine.begin() as conn:
            await conn.run_sync(to("0017"))
            stored = (await conn.execute(select(Ticket.requester_disabled, *kept))).one()
            assert tuple(stored) == (False, "HD-1", "Reset my password")
        async with engine.begin() as conn:
            await conn.run_sync(to("0016", "downgrade"))
            assert "requester_disabled" not in await conn.run_sync(_ticket_columns)
            assert tuple((await conn.execute(select(*kept))).one()) == ("HD-1", "Reset my password")
        async with engine.begin() as conn:
            await conn.run_sync(to("heads"))
            assert "requester_disabled" in await conn.run_sync(_ticket_columns)
    finally:
        await engine.dispose()


# -- revision 0020: the answer a change gave, kept with its delivery's claim ------------------


def _inbound_columns(conn: Any) -> set[str]:
    return {str(c["name"]) for c in inspect(conn).get_columns("inbound_deliveries")}


async def test_revision_0020_keeps_answers_with_delivery_claims_and_downgrades(empty_url: str):
    """Ids claimed before the upgrade have no answer (NULL: their redeliveries are answered
    nothing, as before); the claims written after it carry one; the downgrade drops it and
    keeps every id."""
    engine = db.create_engine(empty_url)
    before = {"key": "slack:command:t-old", "at": datetime(2026, 12, 6, tzinfo=UTC)}
    kept = '{"actor": "slack:UTECH", "conversation": "C0HELP", "reply": {"text": "Logged"}}'
    after = {"key": "slack:command:t-new", "at": datetime(2026, 12, 7, tzinfo=UTC)}
    inbound = table("inbound_deliveries", column("key"), column("at"), column("answer"))
    try:
        async with engine.begin() as conn:
            await conn.run_sync(to("0019"))
            assert "answer" not in await conn.run_sync(_inbound_columns)
            await conn.execute(insert(InboundDelivery.__table__).values(**before))
        async with engine.begin() as conn:
            await conn.run_sync(to("0020"))
            assert "answer" in await conn.run_sync(_inbound_columns)
            await conn.execute(insert(inbound).values(**after, answer=kept))
            rows = await conn.execute(select(inbound.c.key, inbound.c.answer).order_by("key"))
            assert [tuple(r) for r in rows] == [(after["key"], kept), (before["key"], None)]
        async with engine.begin() as conn:
            await conn.run_sync(to("0019", "downgrade"))
            assert "answer" not in await conn.run_sync(_inbound_columns)
            keys = await conn.execute(select(inbound.c.key).order_by("key"))
            assert [k for (k,) in keys] == [after["key"], before["key"]]
        async with engine.begin() as conn:
            await conn.run_sync(to("heads"))
            assert "answer" in await conn.run_sync(_inbound_columns)
    finally:
        await engine.dispose()


# -- revision 0021: PostgreSQL's search index holds the pieces of compound words --------------


async def _found_by(conn: Any, word: str) -> list[int]:
    if conn.dialect.name == "postgresql":
        query = "SELECT ticket_id FROM ticket_search WHERE document @@ to_tsquery('english', :w)"
    else:
        query = "SELECT rowid FROM ticket_search WHERE ticket_search MATCH :w"
        word = f'"{word}"'
    return [int(i) for (i,) in await conn.execute(text(query), {"w": word})]


async def test_revision_0021_indexes_compound_pieces_of_resolved_tickets(empty_url: str):
    """A ticket resolved before the upgrade whose text has `ntdll.dll` is found by `ntdll` after
    it (PostgreSQL kept the file name as one token; SQLite always split it), and so is one
    resolved after it; the downgrade goes back to whole tokens only."""
    engine = db.create_engine(empty_url)
    postgresql = empty_url.startswith("postgresql")
    now = datetime(2026, 12, 7, tzinfo=UTC)
    fields = {
        "prefix": "HD", "status": "closed", "summary": "Word crashes", "reproducible": "yes",
        "priority": "P3", "tier": "standard", "requester_id": "UANA", "technician_id": "UTECH",
        "source_platform": "slack", "source_channel": "C1", "created_at": now,
        "respond_by": now, "resolve_by": now, "resolution_note": "Repaired Office; KB0042",
    }  # fmt: skip
    try:
        async with engine.begin() as conn:
            await conn.run_sync(to("0020"))
        async with db.session_factory(engine)() as session, session.begin():
            old = await old_ticket(
                session, number="HD-1", seq=1, error_text="Faulting module ntdll.dll", **fields
            )
        async with engine.begin() as conn:
            assert await _found_by(conn, "ntdll") == ([] if postgresql else [old])
            assert await _found_by(conn, "ntdll.dll" if postgresql else "ntdll") == [old]
            await conn.run_sync(to("0021"))
            assert await _found_by(conn, "ntdll") == [old]
        async with db.session_factory(engine)() as session, session.begin():
            new = await old_ticket(
                session, number="HD-2", seq=2, error_text="Host dc1.corp.example.com", **fields
            )
        async with engine.begin() as conn:
            assert await _found_by(conn, "dc1") == [new]
            await conn.run_sync(to("0020", "downgrade"))
            assert await _found_by(conn, "ntdll") == ([] if postgresql else [old])
            await conn.run_sync(to("heads"))
            assert await _found_by(conn, "ntdll") == [old]
    finally:
        await engine.dispose()


# -- revision 0022: until when a form holds the place of a Teams ticket card -----------------


async def test_revision_0022_adds_no_form_hold_to_existing_tickets_and_downgrades(empty_url: str):
    engine = db.create_engine(empty_url)
    now = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
    kept = [Ticket.number, Ticket.card_message]
    try:
        async with engine.begin() as conn:
            await conn.run_sync(to("0021"))
            assert "card_form_until" not in await conn.run_sync(_ticket_columns)
        async with db.session_factory(engine)() as session, session.begin():
            await old_ticket(
                session, number="HD-1", prefix="HD", seq=1, status="open",
                summary="Printer jams", error_text="", reproducible="yes", priority="P3",
                tier="standard", requester_id="29:1ana", technician_id="29:1tech",
                source_platform="teams", source_channel="a:1chat", card_channel="a:1chat",
                card_message="1700000000001", created_at=now, respond_by=now, resolve_by=now,
            )  # fmt: skip
        async with engine.begin() as conn:
            await conn.run_sync(to("0022"))
            stored = (await conn.execute(select(Ticket.card_form_until, *kept))).one()
            assert tuple(stored) == (None, "HD-1", "1700000000001")
            await conn.execute(Ticket.__table__.update().values(card_form_until=now))
            held = await conn.scalar(select(Ticket.card_form_until))
            assert held is not None and held.replace(tzinfo=UTC) == now
        async with engine.begin() as conn:
            await conn.run_sync(to("0021", "downgrade"))
            assert "card_form_until" not in await conn.run_sync(_ticket_columns)
            assert tuple((await conn.execute(select(*kept))).one()) == ("HD-1", "1700000000001")
        async with engine.begin() as conn:
            await conn.run_sync(to("heads"))
            assert "card_form_until" in await conn.run_sync(_ticket_columns)
    finally:
        await engine.dispose()
