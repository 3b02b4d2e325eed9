"""Diagnosis help at scale: `similar HD-n` and intake (with signature extraction, same-error
look-ups, pattern count) on a database of 1M tickets with realistic, varied error texts.

    python -m bench.similar [--db sqlite|postgresql|both] [--tickets N] [--requests N]

The tickets come from bench/bulk.py (one real ticket copied by the database), each copy taking
its summary, exact error text, what they were doing, resolution note and KB article from one of
1,000 variants built here from 40 real product errors (Windows Update, Outlook, Teams, AADSTS,
VPN, printers, HTTP...) with their own codes; the variants' signatures are computed by the
bot's own rules and copied to every ticket of the variant. 95 % of the tickets are resolved,
so the full-text index holds ~950k documents. Then, against the running bot (`python -m bot
serve`, a subprocess): `/ticket similar HD-n` for random n at c=1 and c=8, and intake
submissions whose error matches ~1 % of all tickets at c=1 and c=8, beside a bare Bolt app
with one SQLite insert (the intake target's baseline). PostgreSQL runs in its own scratch
database (created, and dropped afterwards).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

import yaml
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from bench import payloads
from bench.bulk import load_tickets
from bench.fakes import RemoteFakes
from bench.loadgen import client_session
from bench.procs import Server, base_env, free_port, run_checked, stop_all
from bench.run import Figures, Settle, measure, say, unique_view_id, wait_until
from handlers.diagnosis import signatures

VARIANTS = 1000
PG_ADMIN = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
PG_DB = "helpdesk_bench_similar"

# (product, summary, error text with {code}, what they were doing, resolution with {obj},
#  codes to vary over)
BASES: list[tuple[str, str, str, str, str, list[str]]] = [
    ("windows", "Windows Update fails", "Windows failed to install the update with error {code}",
     "Installing the monthly cumulative update", "Reset the SoftwareDistribution folder on {obj}",
     ["0x80070005", "0x800f0922", "0x80240034", "0x8024402c", "0x80073712"]),
    ("outlook", "Outlook cannot send mail", "Task 'Sending' reported error ({code}) : 'Outlook "
     "cannot connect to your outgoing (SMTP) e-mail server.'", "Sending a reply to a customer",
     "Changed the SMTP port to 587 in the Outlook profile on {obj}",
     ["0x800CCC0E", "0x800CCC0F", "0x8004010F", "0x80042108"]),
    ("outlook", "Outlook keeps asking for the password", "Outlook credential prompt loop, "
     "error {code}", "Opening the mailbox in the morning",
     "Cleared the cached credentials in Credential Manager on {obj}", ["0x80190194", "0x8004011D"]),
    ("m365", "Teams will not sign in", "We're sorry - we've run into an issue. Error code - {code}",
     "Starting Teams after a restart", "Cleared the Teams cache folder on {obj}",
     ["caa70004", "caa20002", "caa7000a", "caa82ee2"]),
    ("mfa", "Sign-in blocked", "{code}: Error validating credentials due to invalid username or "
     "password.", "Signing in to the portal", "Reset the password and re-registered MFA for {obj}",
     ["AADSTS50126", "AADSTS50076", "AADSTS50058", "AADSTS700016", "AADSTS53003"]),
    ("network", "VPN does not connect", "Error {code}: The network connection between your "
     "computer and the VPN server could not be established", "Connecting from home",
     "Opened UDP 500 and 4500 on the home router and reinstalled the VPN client on {obj}",
     ["809", "800", "720", "691", "812"]),
    ("printer", "Printer will not install", "Operation could not be completed (error {code}). "
     "Double check the printer name", "Adding the floor printer",
     "Reinstalled the print driver and restarted the spooler on {obj}",
     ["0x00000709", "0x0000011b", "0x00000bcb", "0x0000007e"]),
    ("software", "Web app shows an error", "HTTP Error {code}. The service is unavailable.",
     "Opening the time sheet site", "Recycled the IIS application pool on {obj}",
     ["503", "500", "502", "504"]),
    ("office", "Office activation fails", "Something went wrong. Error Code: {code}",
     "Opening Word after the upgrade", "Repaired the Office installation and re-licensed {obj}",
     ["30015-11", "30088-1015", "30094-1011", "0xC004F074"]),
    ("server", "Server rebooted unexpectedly", "Event ID {code}: The system has rebooted without "
     "cleanly shutting down first.", "Nothing, it happened overnight",
     "Replaced the failing PSU on {obj}", ["41", "6008", "1001"]),
]  # fmt: skip
OBJECTS = ["LAPTOP-0{i:03d}", "DESKTOP-1{i:03d}", "SRV-APP{i:02d}", "PRN-0{i:03d}"]


def variants() -> list[dict[str, Any]]:
    """1,000 variants: each base error, each of its codes, many objects and clients."""
    rng = random.Random(13)
    out: list[dict[str, Any]] = []
    for k in range(VARIANTS):
        category, summary, error, doing, resolution, codes = BASES[k % len(BASES)]
        code = codes[(k // len(BASES)) % len(codes)]
        obj = OBJECTS[k % len(OBJECTS)].format(i=k % 97)
        row = {
            "k": k,
            "summary": summary,
            "error_text": error.format(code=code),
            "doing": doing,
            "resolution_note": resolution.format(obj=obj),
            "kb_article": f"KB{100000 + k % 300}" if rng.random() < 0.3 else "",
            "category": category,
            "client": f"client{k % 50}",
        }
        row["signatures"] = [s.key for s in signatures(row["error_text"], summary=row["summary"])]
        out.append(row)
    return out


async def make_variants(url: str, rows: list[dict[str, Any]]) -> None:
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.execute(text("DROP TABLE IF EXISTS bench_variants"))
            await conn.execute(text("DROP TABLE IF EXISTS bench_variant_signatures"))
            await conn.execute(
                text(
                    "CREATE TABLE bench_variants (k INTEGER PRIMARY KEY, summary TEXT, "
                    "error_text TEXT, doing TEXT, resolution_note TEXT, kb_article TEXT, "
                    "category TEXT, client TEXT)"
                )
            )
            await conn.execute(
                text("CREATE TABLE bench_variant_signatures (k INTEGER, signature TEXT)")
            )
            await conn.execute(
                text(
                    "INSERT INTO bench_variants VALUES (:k, :summary, :error_text, :doing, "
                    ":resolution_note, :kb_article, :category, :client)"
                ),
                [{key: r[key] for key in r if key != "signatures"} for r in rows],
            )
            await conn.execute(
                text("INSERT INTO bench_variant_signatures VALUES (:k, :signature)"),
                [{"k": r["k"], "signature": s} for r in rows for s in r["signatures"]],
            )
    finally:
        await engine.dispose()


async def load(url: str, db: str, count: int) -> tuple[int, int]:
    """The 1M varied tickets and their signatures."""
    rows = variants()
    await make_variants(url, rows)
    engine = create_async_engine(url)
    variant = f"(((n % {VARIANTS}) * 919) % {VARIANTS})"
    columns = {
        key: f"v.{key}"
        for key in ("summary", "error_text", "doing", "category", "client", "kb_article")
    }
    # Only resolved tickets have a resolution note.
    columns["resolution_note"] = "CASE WHEN (n / 200) % 20 = 0 THEN '' ELSE v.resolution_note END"
    try:
        first, last, seconds = await load_tickets(
            engine,
            count,
            history=False,
            progress=say,
            columns=columns,
            join=f"JOIN bench_variants AS v ON v.k = {variant}",
        )
        started = time.perf_counter()
        async with engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO ticket_signatures (ticket_id, signature) "
                    "SELECT t.id, s.signature FROM tickets AS t "
                    f"JOIN bench_variant_signatures AS s ON s.k = {variant.replace('n', 't.seq')} "
                    "WHERE t.seq BETWEEN :first AND :last"
                ),
                {"first": first, "last": last},
            )
            if db == "postgresql":
                await conn.execute(text("ANALYZE"))
        async with engine.connect() as conn:
            if db == "sqlite":
                await conn.execute(text("PRAGMA wal_checkpoint(TRUNCATE)"))
            docs = (await conn.execute(text("SELECT count(*) FROM ticket_search"))).scalar_one()
            sigs = (await conn.execute(text("SELECT count(*) FROM ticket_signatures"))).scalar()
        say(
            f"  {last - first + 1:,} tickets in {seconds:.0f} s; {sigs:,} signatures in "
            f"{time.perf_counter() - started:.0f} s; {docs:,} resolved tickets in the "
            "full-text index"
        )
    finally:
        await engine.dispose()
    return first, last


INTAKE_ERROR = "Windows failed to install the update with error 0x80070005"


def intake(view: dict[str, Any], db: str, i: int) -> tuple[bytes, dict[str, str]]:
    """An intake submission whose error matches ~1 % of the tickets (a pattern). Each names
    its own channel: posts to one Slack channel are paced to about one a second."""
    body, _ = payloads.view_submission(view, view_id=unique_view_id(db), channel=f"CSIM{i:06d}")
    raw = body.decode().replace("Error+0x8007001F%3A+paper+path", quote_plus(INTAKE_ERROR))
    assert raw != body.decode(), "the intake payload changed: update bench/similar.py"
    return payloads.signed(raw)


async def run_db(db: str, fakes: RemoteFakes, figures: Figures, args: argparse.Namespace,
                 tmp: Path) -> None:  # fmt: skip
    say(f"\n== diagnosis help on {db}")
    work = tmp / db
    work.mkdir()
    config = work / "helpdesk.yaml"
    config.write_text(yaml.safe_dump({"patterns": {"repeat_threshold": 3}}))
    port = free_port()
    env = {
        **base_env(),
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "SLACK_BOT_TOKEN": payloads.BOT_TOKEN,
        "SLACK_SIGNING_SECRET": payloads.SIGNING_SECRET,
        "SLACK_API_URL": f"{fakes.slack_url}/api/",
        "HELPDESK_CONFIG": str(config),
        "LOG_LEVEL": "WARNING",
    }
    if db == "sqlite":
        url = f"sqlite+aiosqlite:///{work / 'helpdesk.db'}"
    else:
        url = make_url(args.pg_url).set(database=PG_DB).render_as_string(hide_password=False)
        admin = create_async_engine(args.pg_url, isolation_level="AUTOCOMMIT")
        async with admin.connect() as conn:
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{PG_DB}" WITH (FORCE)'))
            await conn.execute(text(f'CREATE DATABASE "{PG_DB}"'))
        await admin.dispose()
        run_checked(["-m", "bot", "migrate"], {**env, "DATABASE_URL": url}, work / "migrate.log")
    env["DATABASE_URL"] = url
    server = Server(f"bot-{db}", ["-m", "bot", "serve"], env, port, work / "server.log")
    await server.start()
    events = f"{server.url}/slack/events"
    try:
        opened = await fakes.count("views.open")
        async with client_session(1) as http:
            body, headers = payloads.slash("new x")
            async with http.post(events, data=body, headers=headers) as response:
                await response.read()

        async def modal_opened() -> bool:
            return await fakes.count("views.open") > opened

        if not await wait_until(modal_opened, 10):
            raise RuntimeError("the bot did not open the intake modal")
        view = (await fakes.slack())["last_view"]
        # The template ticket that bench/bulk.py copies.
        async with client_session(1) as http:
            body, headers = payloads.view_submission(view, view_id=unique_view_id(db))
            async with http.post(events, data=body, headers=headers) as response:
                await response.read()
        await asyncio.sleep(0.5)
        say(f"tickets: bulk-loading {args.tickets:,} varied tickets")
        first, last = await load(url, db, args.tickets)
        await fakes.trim()
        rng = random.Random(7)
        serial = itertools.count()
        levels = (1, 8)
        say("slack: /ticket similar HD-n (random n)")
        await measure(figures, (db, "slack.similar"), server, events,
                      lambda i: payloads.slash(f"similar HD-{rng.randint(first, last)}"),
                      requests=args.requests, levels=levels, max_seconds=20)  # fmt: skip
        await fakes.trim()
        say(f"slack: intake submission, error matching ~1 % of tickets ({INTAKE_ERROR!r})")
        await measure(figures, (db, "slack.submit"), server, events,
                      lambda i: intake(view, db, next(serial)), requests=args.requests,
                      levels=levels,
                      settle=Settle(lambda: fakes.count("chat.postMessage")),
                      max_seconds=20)  # fmt: skip
        await fakes.trim()
    finally:
        server.stop()
        if db == "postgresql" and not args.keep:
            admin = create_async_engine(args.pg_url, isolation_level="AUTOCOMMIT")
            async with admin.connect() as conn:
                await conn.execute(text(f'DROP DATABASE IF EXISTS "{PG_DB}" WITH (FORCE)'))
            await admin.dispose()


async def baseline(fakes: RemoteFakes, figures: Figures, args: argparse.Namespace,
                   tmp: Path) -> None:  # fmt: skip
    """Bare Bolt + one SQLite insert: the baseline of the intake target (issue #6)."""
    say("\n== bolt.insert: bare Bolt + one SQLite insert before the ack")
    port = free_port()
    env = {**base_env(), "SLACK_BOT_TOKEN": payloads.BOT_TOKEN,
           "SLACK_SIGNING_SECRET": payloads.SIGNING_SECRET}  # fmt: skip
    server = Server("bolt.insert", ["-m", "bench.baselines.bolt_app", "--port", str(port),
                                    "--mode", "insert", "--api-url", f"{fakes.slack_url}/api/",
                                    "--db", str(tmp / "bolt.db")],
                    env, port, tmp / "bolt.insert.log")  # fmt: skip
    await server.start()
    view = fakes.view or {"type": "modal", "callback_id": "ticket.create",
                          "private_metadata": '{"channel":"C0HELP"}'}  # fmt: skip
    try:
        await measure(figures, ("bare", "bolt.insert"), server, f"{server.url}/slack/events",
                      lambda i: payloads.view_submission(view, view_id=unique_view_id("bare")),
                      requests=args.requests, levels=(1, 8))  # fmt: skip
    finally:
        server.stop()


def report(figures: Figures) -> None:
    say("\n== results (ms)")
    say(f"{'backend':<11} {'scenario':<14} {'c':>2} {'req/s':>8} {'p50':>7} {'p99':>8} "
        f"{'cpu/req':>8} {'err':>4}")  # fmt: skip
    for (backend, scenario, c), r in figures.loads.items():
        say(f"{backend:<11} {scenario:<14} {c:>2} {r.rps:8.1f} {r.pct(0.5):7.2f} "
            f"{r.pct(0.99):8.2f} {r.cpu_ms:8.2f} {r.errors:>4}")  # fmt: skip
    bare = {c: r for (b, s, c), r in figures.loads.items() if b == "bare"}
    for (backend, scenario, c), r in figures.loads.items():
        if scenario == "slack.similar" and c == 1:
            verdict = "PASS" if r.pct(0.99) <= 50 else "FAIL"
            say(f"{verdict}  similar p99 at 1M tickets on {backend}: {r.pct(0.99):.1f} ms "
                "(target 50 ms, c=1)")  # fmt: skip
        if scenario == "slack.submit" and backend == "sqlite" and c == 8:
            verdict = "PASS" if r.pct(0.99) <= 50 else "FAIL"
            say(f"{verdict}  intake p99 at c=8 on sqlite: {r.pct(0.99):.1f} ms (target 50 ms)")
        if scenario == "slack.submit" and backend == "sqlite" and c in bare:
            ratio = r.rps / bare[c].rps if bare[c].rps else 0.0
            verdict = "PASS" if ratio >= 0.7 else "FAIL"
            say(f"{verdict}  intake throughput c={c} on sqlite: {ratio:.0%} of bare Bolt + "
                "insert (target 70 %)")  # fmt: skip


async def main_async(args: argparse.Namespace) -> int:
    dbs = ["sqlite", "postgresql"] if args.db == "both" else [args.db]
    tmp = Path(tempfile.mkdtemp(prefix="diagnosis-bench-"))
    say(f"diagnosis benchmark: {', '.join(dbs)}; {args.tickets:,} tickets; work dir {tmp}")
    fakes = RemoteFakes()
    figures = Figures()
    failed = False
    try:
        await fakes.start()
        for db in dbs:
            await run_db(db, fakes, figures, args, tmp)
        if not args.no_baseline:
            await baseline(fakes, figures, args, tmp)
    except (Exception, asyncio.CancelledError) as exc:
        failed = True
        say(f"\nbenchmark stopped: {type(exc).__name__}: {exc}")
    finally:
        stop_all()
        await fakes.stop()
        report(figures)
        if failed or args.keep:
            say(f"work dir kept: {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.similar", description=__doc__)
    parser.add_argument("--db", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--tickets", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--pg-url", default=PG_ADMIN, help="a server to make the scratch db on")
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument("--keep", action="store_true")
    return asyncio.run(main_async(parser.parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
