"""Bare slack-bolt AsyncApp behind aiohttp, as thin as Bolt allows.

Modes:
  ack          `/ticket` acked at once, process_before_response=True
  ack-default  the same with Bolt's defaults (ack polled every 10 ms)
  insert       like `ack`, and a view_submission inserts one row (SQLAlchemy core, one
               aiosqlite connection, WAL) before it acks
  insert-post  like `insert`, and after the ack posts a ticket card of the same size and shape
               as the bot's (header, the same facts, error, buttons) to the channel named in
               the modal's private_metadata with slack_sdk's AsyncWebClient (chat.postMessage):
               what a minimal bot doing the same user-visible job costs. No outbox, no retry
               after a crash: the card is lost if the process dies after the ack. The client
               keeps one aiohttp session (keep-alive), as the bot's does: without one,
               slack_sdk opens a session and a TCP connection for every call.
  outbox       like `insert-post`, with the least that makes the card durable (the project's
               rule for side effects): the submission and an outbox row holding the card in
               one transaction before the ack; after the ack the card is posted and the row
               marked delivered in a second transaction. No claim, lease, retry or dedup:
               a floor for what any bot that never loses a card pays, not a full outbox.

`python -m bench.baselines.bolt_app --port P --mode ack --api-url URL [--db PATH]`
(SLACK_SIGNING_SECRET and SLACK_BOT_TOKEN from the environment).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import aiohttp
from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy import (
    Column,
    DateTime,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    event,
    insert,
    update,
)
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

METADATA = MetaData()
ROWS = Table(
    "submissions",
    METADATA,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("view_id", String(64)),
    Column("user_id", String(64)),
    Column("values", Text),
    Column("created_at", DateTime),
)

OUTBOX = Table(
    "outbox",
    METADATA,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("payload", Text),
    Column("status", String(16)),
    Column("delivered_at", DateTime),
)


def sqlite_engine(path: str) -> AsyncEngine:
    """One connection (a writer that never waits for another), WAL, like the bot's."""
    engine = create_async_engine(
        f"sqlite+aiosqlite:///{path}", pool_size=1, max_overflow=0, connect_args={"timeout": 30}
    )

    @event.listens_for(engine.sync_engine, "connect")
    def _pragmas(dbapi_conn: Any, _: Any) -> None:
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    return engine


def _value(state: dict[str, Any]) -> str:
    if "selected_option" in state:
        return str(state["selected_option"]["value"])
    return str(state.get("value") or state.get("selected_user") or "-")


async def post_card(client: AsyncWebClient, view: dict[str, Any], user: str, number: int) -> None:
    await client.chat_postMessage(**card_message(view, user, number))


def card_message(view: dict[str, Any], user: str, number: int) -> dict[str, Any]:
    """The ticket card a minimal bot would post: title, facts, error text, three buttons."""
    values = {key: _value(next(iter(v.values()))) for key, v in view["state"]["values"].items()}
    channel = json.loads(view.get("private_metadata") or "{}").get("channel", "C0HELP")
    ticket = f"HD-{number}"
    title = f"{ticket} ({values['priority']}): {values['summary']}"
    facts = [
        ("Ticket", ticket),
        ("Priority", values["priority"]),
        ("Status", "open"),
        ("Requester", f"<@{values['requester']}>"),
        ("Technician", f"<@{user}>"),
        ("Category", values["category"]),
        ("Users affected", values["users_affected"]),
        ("Reproducible", values["reproducible"]),
        ("Respond by", "in 2h"),
        ("Resolve by", "in 1d"),
        ("Asset", values["asset"]),
        ("Client", values["client"]),
    ]
    blocks = [
        {"type": "section", "text": {"type": "mrkdwn", "text": f"*{title}*"}},
        {"type": "section", "fields": [{"type": "mrkdwn", "text": f"*{k}*\n{v}"}
                                       for k, v in facts[:10]]},
        {"type": "section", "fields": [{"type": "mrkdwn", "text": f"*{k}*\n{v}"}
                                       for k, v in facts[10:]]},
        {"type": "context", "elements": [{"type": "mrkdwn", "text": "Exact error text"}]},
        {"type": "section", "text": {"type": "mrkdwn", "text": values["error_text"]}},
        {"type": "context", "elements": [{"type": "mrkdwn", "text": "What they were doing"}]},
        {"type": "section", "text": {"type": "mrkdwn", "text": values["doing"]}},
        {"type": "actions", "elements": [
            {"type": "button", "action_id": action, "text": {"type": "plain_text", "text": text},
             "value": json.dumps({"ticket": ticket})}
            for action, text in (("ticket.verify", "Verify identity"),
                                 ("ticket.escalate", "Escalate"), ("ticket.close", "Close"))
        ]},
    ]  # fmt: skip
    return {"channel": channel, "text": title, "blocks": blocks}


async def post_from_outbox(
    client: AsyncWebClient, engine: AsyncEngine, row: int, message: dict[str, Any]
) -> None:
    await client.chat_postMessage(**message)
    async with engine.begin() as conn:
        await conn.execute(
            update(OUTBOX)
            .where(OUTBOX.c.id == row)
            .values(status="delivered", delivered_at=datetime.now(UTC))
        )


def build(mode: str, api_url: str, db_path: str | None) -> web.Application:
    client = AsyncWebClient(token=os.environ["SLACK_BOT_TOKEN"], base_url=api_url)
    bolt = AsyncApp(
        client=client,
        signing_secret=os.environ["SLACK_SIGNING_SECRET"],
        process_before_response=mode != "ack-default",
    )
    durable = mode in ("insert", "insert-post", "outbox")
    engine = sqlite_engine(db_path) if durable and db_path else None
    posting: set[asyncio.Task[Any]] = set()

    @bolt.command("/ticket")
    async def on_command(ack: Any) -> None:
        await ack()

    @bolt.view(re.compile(r".+"))
    async def on_view(ack: Any, body: dict[str, Any]) -> None:
        number = row = 0
        view = body["view"]
        message: dict[str, Any] = {}
        if engine is not None:
            async with engine.begin() as conn:
                result = await conn.execute(
                    insert(ROWS).values(
                        view_id=view["id"],
                        user_id=body["user"]["id"],
                        values=json.dumps(view["state"]["values"]),
                        created_at=datetime.now(UTC),
                    )
                )
                number = result.inserted_primary_key[0]
                if mode == "outbox":
                    message = card_message(view, body["user"]["id"], number)
                    queued = await conn.execute(
                        insert(OUTBOX).values(payload=json.dumps(message), status="pending")
                    )
                    row = queued.inserted_primary_key[0]
        await ack()
        task = None
        if mode == "insert-post":
            task = asyncio.create_task(post_card(client, view, body["user"]["id"], number))
        elif mode == "outbox" and engine is not None:
            task = asyncio.create_task(post_from_outbox(client, engine, row, message))
        if task is not None:
            posting.add(task)
            task.add_done_callback(posting.discard)

    async def events(request: web.Request) -> web.Response:
        bolt_request = await to_bolt_request(request)
        return await to_aiohttp_response(await bolt.async_dispatch(bolt_request))

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        client.session = aiohttp.ClientSession()
        if engine is not None:
            async with engine.begin() as conn:
                await conn.run_sync(METADATA.create_all)
        yield
        await client.session.close()
        if engine is not None:
            await engine.dispose()

    app = web.Application()
    app.cleanup_ctx.append(lifecycle)
    app.router.add_post("/slack/events", events)
    app.router.add_get("/healthz", lambda _: _ok())
    return app


async def _ok() -> web.Response:
    return web.json_response({"status": "ok"})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    modes = ("ack", "ack-default", "insert", "insert-post", "outbox")
    parser.add_argument("--mode", choices=modes, default="ack")
    parser.add_argument("--api-url", required=True)
    parser.add_argument("--db")
    args = parser.parse_args()
    app = build(args.mode, args.api_url, args.db)
    web.run_app(app, host="127.0.0.1", port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
