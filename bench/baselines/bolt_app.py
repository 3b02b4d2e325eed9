"""Bare slack-bolt AsyncApp behind aiohttp, as thin as Bolt allows.

Modes:
  ack          `/ticket` acked at once, process_before_response=True
  ack-default  the same with Bolt's defaults (ack polled every 10 ms)
  insert       like `ack`, and a view_submission inserts one row (SQLAlchemy core, one
               aiosqlite connection, WAL) before it acks

`python -m bench.baselines.bolt_app --port P --mode ack --api-url URL [--db PATH]`
(SLACK_SIGNING_SECRET and SLACK_BOT_TOKEN from the environment).
"""

from __future__ import annotations

import argparse
import json
import os
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy import Column, DateTime, Integer, MetaData, String, Table, Text, event, insert
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


def build(mode: str, api_url: str, db_path: str | None) -> web.Application:
    client = AsyncWebClient(token=os.environ["SLACK_BOT_TOKEN"], base_url=api_url)
    bolt = AsyncApp(
        client=client,
        signing_secret=os.environ["SLACK_SIGNING_SECRET"],
        process_before_response=mode != "ack-default",
    )
    engine = sqlite_engine(db_path) if mode == "insert" and db_path else None

    @bolt.command("/ticket")
    async def on_command(ack: Any) -> None:
        await ack()

    @bolt.view(re.compile(r".+"))
    async def on_view(ack: Any, body: dict[str, Any]) -> None:
        if engine is not None:
            view = body["view"]
            async with engine.begin() as conn:
                await conn.execute(
                    insert(ROWS).values(
                        view_id=view["id"],
                        user_id=body["user"]["id"],
                        values=json.dumps(view["state"]["values"]),
                        created_at=datetime.now(UTC),
                    )
                )
        await ack()

    async def events(request: web.Request) -> web.Response:
        bolt_request = await to_bolt_request(request)
        return await to_aiohttp_response(await bolt.async_dispatch(bolt_request))

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        if engine is not None:
            async with engine.begin() as conn:
                await conn.run_sync(METADATA.create_all)
        yield
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
    parser.add_argument("--mode", choices=("ack", "ack-default", "insert"), default="ack")
    parser.add_argument("--api-url", required=True)
    parser.add_argument("--db")
    args = parser.parse_args()
    app = build(args.mode, args.api_url, args.db)
    web.run_app(app, host="127.0.0.1", port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
