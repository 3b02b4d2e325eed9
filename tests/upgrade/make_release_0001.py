"""Write `release_0001.json`: the rows the first release (revision 0001) leaves behind.

Not part of the suite. It drives that release itself, over HTTP with its own test harness and
fakes, through what a help desk does in a day, and dumps every table. Run it from a tree of the
release (commit 30e55dd, whose only migration is 0001), for example:

    mkdir /tmp/rel0001 && git archive 30e55dd | tar -x -C /tmp/rel0001
    cd /tmp/rel0001 && PYTHONPATH=. python <this repo>/tests/upgrade/make_release_0001.py \
        <this repo>/tests/upgrade/release_0001.json

What it leaves: HD-1 (P3) with a time entry, closed, its survey answered 4; HD-2 (P1): its
incident notice posted and its page sent, then closed (the page resolved, the survey sent, the
P1 follow-up reminder due in a day: pending); HD-3 (P2) closed while Slack failed the survey
DM's first attempt (pending, retrying); HD-4 (P4) open, its identity check sent to the manager.
Every ticket card, notice and DM that went out is a delivered outbox row.
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
from datetime import date, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, select

from storage.models import Base, CsatSurvey, OutboxMessage
from tests.fakes.slack_api import FakeSlack
from tests.harness import BOT_TOKEN, SIGNING_SECRET, AppHarness
from tests.http.p1_support import fake_pagerduty, pager_env, slack_close
from tests.http.test_closure_slack import click, new_ticket, survey_dm, wait_until

PEOPLE = [
    {"email": "tom@example.com", "name": "Tom Tech", "slack_id": "UTECH", "technician": True},
    {"email": "bo@example.com", "name": "Bo Chen", "slack_id": "UBO"},
    {
        "email": "ana@example.com",
        "name": "Ana Lopez",
        "slack_id": "UANA",
        "manager": "bo@example.com",
    },
    {"email": "sam@example.com", "name": "Sam User", "slack_id": "USAM"},
]
CONFIG = {
    "slack": {"incident_channel": "C0INCIDENT"},
    "incident": {"bridge_url": "https://meet.example.com/p1-bridge"},
    "csat": {"delay": "0s", "vip_followup_delay": "1d"},
}


async def _outbox(app: AppHarness) -> list[OutboxMessage]:
    async with app.services.sessions() as session:
        return list((await session.execute(select(OutboxMessage))).scalars().all())


async def _settled(app: AppHarness) -> bool:
    """Nothing due is waiting: every row is delivered, or pending with a failure or a delay."""
    return all(r.status != "pending" or r.attempts > 0 or r.due_at.timestamp() > _later()
               for r in await _outbox(app))  # fmt: skip


def _later() -> float:
    return datetime.now().timestamp() + 3600


async def drive(db: Path, tmp: Path) -> None:
    slack, pd = FakeSlack(), fake_pagerduty()
    await slack.start()
    await pd.start()
    env = {
        "DATABASE_URL": f"sqlite+aiosqlite:///{db}",
        "SLACK_BOT_TOKEN": BOT_TOKEN,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "SLACK_API_URL": f"{slack.url}/api/",
        **pager_env(pd, None),
    }
    app = await AppHarness(tmp, env, CONFIG, PEOPLE).start()
    try:
        one = await new_ticket(app, slack, requester="UANA", priority="P3")
        assert (await app.slash(f"time {one} 30m Replaced the toner")).status == 200
        await slack_close(app, slack, one)
        await click(app, slack, await survey_dm(slack, "UANA"), "4", "UANA")

        two = await new_ticket(app, slack, requester="UANA", priority="P1")
        await wait_until(lambda: len(pd.events()) == 1)
        await slack_close(app, slack, two)
        await wait_until(lambda: len(pd.events()) == 2)  # resolved
        await survey_dm(slack, "UANA", count=2)

        three = await new_ticket(app, slack, requester="USAM", priority="P2")
        slack.fail("/api/conversations.open", 500)  # the survey DM's first attempt
        await slack_close(app, slack, three)
        four = await new_ticket(app, slack, requester="UANA", priority="P4")
        assert (await app.slash(f"verify {four}")).status == 200
        await wait_until(lambda: any(p.get("channel") == "DUBO" for p in slack.posts()))
        deadline = asyncio.get_running_loop().time() + 10
        while not await _settled(app):
            assert asyncio.get_running_loop().time() < deadline, "outbox did not settle"
            await asyncio.sleep(0.05)
        async with app.services.sessions() as session:
            rated = (await session.execute(select(CsatSurvey.rating))).scalars().all()
        assert 4 in rated, rated
    finally:
        await app.stop()
        await slack.stop()
        await pd.stop()


def _plain(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


def dump(db: Path) -> dict[str, Any]:
    engine = create_engine(f"sqlite:///{db}")
    tables: dict[str, Any] = {}
    with engine.connect() as conn:
        revision = conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()
        for table in Base.metadata.sorted_tables:
            order = [c for c in table.primary_key.columns]
            rows = conn.execute(select(table).order_by(*order)).mappings().all()
            tables[table.name] = [{k: _plain(v) for k, v in row.items()} for row in rows]
    engine.dispose()
    return {"revision": revision, "release": "30e55dd", "tables": tables}


def main() -> None:
    out = Path(sys.argv[1])
    with tempfile.TemporaryDirectory() as folder:
        db = Path(folder) / "helpdesk.db"
        asyncio.run(drive(db, Path(folder)))
        data = dump(db)
    assert data["revision"] == "0001", data["revision"]
    out.write_text(json.dumps(data, indent=1, sort_keys=True, ensure_ascii=False) + "\n")
    counts = {name: len(rows) for name, rows in data["tables"].items()}
    print(f"wrote {out}: {counts}")


if __name__ == "__main__":
    main()
