"""`python -m bot check-config`: validate settings, config and directory; say what is enabled.

Starts no server and sends nothing. Secrets are never printed: only which ones are set.
Exit 0 when everything is usable, 2 with the problem (naming the key or file) otherwise.
"""

from __future__ import annotations

import asyncio
import socket
import sys
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import TextIO

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from bot.directory.factory import cleartext_bind, create_directory, technicians_hint
from bot.directory.file import FileDirectory
from bot.logs import redact_urls
from bot.metrics_access import metrics_access
from bot.psa import describe as describe_psa
from bot.settings import (
    ConfigError,
    Settings,
    calendar_path,
    engine_for,
    is_loopback,
    load_settings,
)
from handlers.config import unheard_queues
from handlers.directory import Directory, DirectoryError, EmptyDirectory
from handlers.durations import format_duration
from handlers.formatting import counted
from storage.schema_errors import SchemaMismatch

DB_TIMEOUT = 15.0


def describe_slack(settings: Settings) -> str:
    """Slack transport: HTTP, Socket Mode, or disabled with the variables that enable it."""
    if not settings.slack_enabled:
        return (
            "disabled (set SLACK_BOT_TOKEN and SLACK_SIGNING_SECRET for HTTP, or "
            "SLACK_BOT_TOKEN and SLACK_APP_TOKEN for Socket Mode)"
        )
    if settings.slack_app_token is not None:
        also = (
            "; POST /slack/events also accepts signed requests"
            if settings.slack_signing_secret is not None
            else "; POST /slack/events is not served"
        )
        return f"Socket Mode (SLACK_APP_TOKEN set, no public URL needed){also}"
    return "HTTP mode: POST /slack/events, signed with SLACK_SIGNING_SECRET"


def describe_teams(settings: Settings) -> str:
    """Teams auth: Bot Framework app type and tenant, or local Emulator mode."""
    if settings.teams_emulator:
        text = "Emulator mode (MicrosoftAppId is empty): no Bot Framework auth, loopback only"
        if not is_loopback(settings.host):
            text += f"; HOST={settings.host} is not loopback, so remote callers are refused"
        return text
    text = f"Bot Framework auth, MicrosoftAppId {settings.app_id}, MicrosoftAppType " + (
        settings.app_type
    )
    if settings.app_tenant_id:
        text += f", tenant {settings.app_tenant_id}"
    if settings.bot_framework_overrides:
        text += ", endpoints overridden: " + ", ".join(sorted(settings.bot_framework_overrides))
    return text


def describe_pagers(settings: Settings) -> str:
    names = []
    if settings.pagerduty_routing_key is not None:
        names.append("PagerDuty")
    if settings.opsgenie_api_key is not None:
        names.append("Opsgenie")
    return ", ".join(names) if names else "none (set PAGERDUTY_ROUTING_KEY or OPSGENIE_API_KEY)"


def describe_incidents(settings: Settings) -> str:
    config = settings.config
    parts = []
    if config.slack.incident_channel:
        parts.append(f"Slack {config.slack.incident_channel}")
    if config.teams.incident_conversation:
        parts.append(f"Teams {config.teams.incident_conversation}")
    text = (
        ", ".join(parts) if parts else "none (slack.incident_channel, teams.incident_conversation)"
    )
    if config.incident.bridge_url:
        text += f"; bridge {config.incident.bridge_url}"
    return text


def check_calendar(settings: Settings) -> tuple[str, list[str]]:
    """The change calendar as `serve` will read it, and a warning for each event it skips. A
    file that is no calendar is a ConfigError; a URL is not fetched and shown by its host only
    (its path is often the secret of a published calendar)."""
    source = settings.config.changes.calendar
    if not source:
        return "no change calendar", []
    from bot.changes import MAX_BYTES, shown_url
    from bot.changes import load as load_calendar

    if source.lower().startswith(("http://", "https://")):
        return f"change calendar {shown_url(source)} (fetched at start-up, then every 10 min)", []
    path = calendar_path(source, settings.config_dir)
    try:
        if path.stat().st_size > MAX_BYTES:
            raise ValueError(f"larger than {MAX_BYTES // (1024 * 1024)} MB")
        _, good, problems = load_calendar(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"changes.calendar: {path} cannot be used: {exc}") from None
    text = f"change calendar {path} ({counted(len(good), 'event')}"
    text += f", {len(problems)} skipped: see the warnings)" if problems else ")"
    return text, [f"changes.calendar: event skipped, cannot be read: {p}" for p in problems]


def describe_diagnosis(settings: Settings, calendar: str = "") -> str:
    """The KB searched and the change calendar (never the key)."""
    kb = settings.config.kb
    changes = settings.config.changes
    shown = f"KB {kb.source} at {kb.url}" if kb.source else "KB off (resolved tickets only)"
    if kb.source == "confluence":
        shown += f", space {kb.space}" if kb.space else ", every space"
    elif kb.space is not None:
        shown += f" (kb.space is for confluence only: {kb.space} is not used)"
    parts = [
        shown,
        calendar or check_calendar(settings)[0],
        f"{counted(len(changes.entries), 'change')} in the config",
        "Patch Tuesday " + ("on" if changes.patch_tuesday else "off"),
        f"a pattern from {settings.config.patterns.repeat_threshold} tickets with one error",
    ]
    return "; ".join(parts)


def describe_scope(settings: Settings) -> str:
    """Tier 1 scope and the nudge for tickets outside it (SPEC "Working the ticket to the end")."""
    config = settings.config
    if not config.tier1_scope:
        return "tier1_scope: [] (off): cards show no Tier 1 / Tier 2/3 label and nothing is nudged"
    seconds = int(config.escalation.nudge_after.total_seconds())
    after = format_duration(config.escalation.nudge_after) if seconds >= 60 else f"{seconds}s"
    return (
        f"Tier 1: {', '.join(config.tier1_scope)}; other tickets not escalated {after} after "
        "opening get one nudge"
    )


def describe_sla_tiers(settings: Settings) -> str:
    """Each SLA tier's respond/resolve targets per priority, on one line; the default first."""
    sla = settings.config.sla
    names = [sla.default_tier, *sorted(t for t in sla.tiers if t != sla.default_tier)]
    tiers = []
    for name in names:
        targets = " ".join(
            f"{priority} {format_duration(target.respond)}/{format_duration(target.resolve)}"
            for priority, target in sorted(sla.tiers[name].items())
        )
        tiers.append(f"{name}{' (default)' if name == sla.default_tier else ''} {targets}")
    seconds = int(sla.warn_before.total_seconds())
    warn = (
        "no warnings before a target (sla.warn_before: 0s)"
        if not seconds
        else f"warned {format_duration(sla.warn_before)} before each target"
    )
    return "; ".join(tiers) + f" (respond/resolve; {warn})"


def describe_sla_clients(settings: Settings) -> str:
    """The MSP client -> tier map, and what a client it does not name gets."""
    config = settings.config
    others = config.sla.default_tier
    if settings.psa is not None and config.psa.tiers:
        others = f"the tier of their PSA contract (psa.tiers), else {others}"
    if not config.sla.clients:
        return f"none in sla.clients: every client gets {others}"
    shown = ", ".join(
        f"{client} -> {tier}"
        for client, tier in sorted(config.sla.clients.items(), key=lambda c: c[0].lower())
    )
    return f"{shown}; other clients get {others}"


def describe_remote(settings: Settings) -> str:
    template = settings.config.remote.url_template
    return template or "none (remote.url_template: no Remote session button)"


def describe_database(url: str) -> str:
    """The URL without its password; a SQLite file given by a relative path also as the file
    it is from here (check-config may run elsewhere than the service: is it the same file?)."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise ConfigError(f"DATABASE_URL: {exc}") from None
    shown = parsed.render_as_string(hide_password=True)
    name = parsed.database or ""
    relative = name not in ("", ":memory:") and not name.startswith("file:")
    if parsed.get_backend_name() == "sqlite" and relative and not Path(name).is_absolute():
        shown += f" = {Path(name).resolve()}"
    return shown


async def describe_directory(settings: Settings) -> str:
    """Build the configured directory (raises DirectoryError) and say who is in it."""
    config = settings.config.directory
    directory: Directory = await create_directory(
        config, config_dir=settings.config_dir, env=settings.env
    )
    try:
        if isinstance(directory, FileDirectory):
            people = directory.people
            technicians = sum(1 for p in people if p.technician)
            text = (
                f"file {directory.path}: {counted(len(people), 'person', 'people')}, "
                f"{counted(technicians, 'technician')}, "
                f"{counted(sum(1 for p in people if p.vip), 'VIP')}"
            )
            if not technicians:
                text += " (no technician listed: everyone counts as one)"
            return text
        if isinstance(directory, EmptyDirectory):
            return "none (directory.path is not set): nobody listed, everyone counts as technician"
        # Without a technician group everyone counts as one: said, as start-up warns of it.
        nobody = ""
        if not await directory.has_technicians():
            nobody = (
                f"; no technician group: everyone counts as one ({technicians_hint(config.source)})"
            )
        if config.source == "graph":
            graph = config.graph
            base = graph.base_url if graph else "https://graph.microsoft.com"
            text = f"Microsoft Graph at {base} (people are looked up on demand)"
            return text + nobody
        ldap = config.ldap
        where = f"{ldap.url} under {ldap.base_dn}" if ldap else "LDAP"
        text = f"LDAP {where} (people are looked up on demand)"
        text += nobody
        if ldap is not None and cleartext_bind(ldap):
            text += "; WARNING: the bind password is sent unencrypted over ldap://, use ldaps://"
        return text
    finally:
        await directory.close()


def new_sqlite_file(url: str) -> bool:
    """True for a SQLite file that does not exist yet (start-up creates it; so must not we)."""
    from storage import db

    if not db.is_sqlite(url):
        return False
    name = make_url(url).database or ""
    if not name or name == ":memory:":
        return False
    if Path(name).is_dir():
        raise ConfigError(f"DATABASE_URL: {Path(name).resolve()} is a folder, not a SQLite file")
    if Path(name).exists():
        return False
    folder = Path(name).resolve().parent
    if not folder.is_dir():
        raise ConfigError(f"DATABASE_URL: folder {folder} does not exist")
    return True


def database_unreachable(exc: BaseException, url: str) -> ConfigError:
    """One line naming the server's host and port (never the password): SQLAlchemy's own text
    adds a second one ("Background on this error at"), and a name that does not resolve was
    only `gaierror: Name or service not known`."""
    from bot.db_health import describe
    from storage import db

    address = db.server_address(url)
    where = f" at {address}" if address else ""
    if isinstance(exc, TimeoutError):
        return ConfigError(
            f"DATABASE_URL: cannot reach the database{where} (no answer in {DB_TIMEOUT:g} s)"
        )
    if isinstance(getattr(exc, "orig", None) or exc, socket.gaierror) and address:
        host = address.rsplit(":", 1)[0]
        return ConfigError(
            f"DATABASE_URL: cannot reach the database{where}: the host name {host} does not "
            f"resolve ({describe(exc)})"
        )
    return ConfigError(f"DATABASE_URL: cannot reach the database{where} ({describe(exc)})")


async def check_database(url: str) -> tuple[str, str | None]:
    """Ping the database and read its schema revision; a SQLite file that does not exist yet
    is reported, not created. SchemaTooNew (exit 2) for a schema `serve` would refuse."""
    from storage import db
    from storage.migrate import check_schema

    shown = describe_database(url)
    if new_sqlite_file(url):
        return f"{shown} (file does not exist yet: created on first start)", None
    engine = engine_for(url)
    try:
        await asyncio.wait_for(db.ping(engine), timeout=DB_TIMEOUT)
        found = await check_schema(engine, require_newest=False)
    except SchemaMismatch:
        raise
    except Exception as exc:
        raise database_unreachable(exc, url) from None
    finally:
        await engine.dispose()
    return f"{shown} (reachable)", describe_schema(found, sqlite=db.is_sqlite(url))


def describe_schema(found: tuple[str, ...], *, sqlite: bool) -> str:
    """Where the schema stands against this release (a newer one was refused before)."""
    from storage.migrate import head_revisions

    head = ", ".join(head_revisions())
    migrated = "; serve and worker migrate SQLite on start" if sqlite else ""
    if not found:
        return f"none yet: `python -m bot migrate` creates it (revision {head}){migrated}"
    at = ", ".join(found)
    if at == head:
        return f"revision {at}, the newest"
    return f"revision {at}, behind this release's {head}: run `python -m bot migrate`{migrated}"


PROBE_TIMEOUT = 30.0


async def probe_psa(settings: Settings) -> str:
    """One authenticated read-only call to the PSA; ConfigError when it did not answer yes."""
    import aiohttp

    from bot.psa import create_connector

    assert settings.psa is not None
    async with aiohttp.ClientSession() as http:
        connector = create_connector(settings.psa, http)
        try:
            probe = await asyncio.wait_for(connector.probe(), timeout=PROBE_TIMEOUT)
        except TimeoutError:
            raise ConfigError(f"psa: {connector.name} did not answer within 30 s") from None
    if not probe.ok:
        raise ConfigError(f"psa: {probe.answer}")
    return probe.answer


async def probe_directory(settings: Settings) -> str | None:
    """A Graph directory: a token, and each configured group looked up (read-only GET): a
    group id the tenant lacks makes nobody a VIP (or technician) without a word, so it is a
    ConfigError naming the setting. None for other directories (nothing probed)."""
    from bot.directory.graph import GraphDirectory

    config = settings.config.directory
    if config.source != "graph":
        return None
    directory = await create_directory(config, config_dir=settings.config_dir, env=settings.env)
    try:
        assert isinstance(directory, GraphDirectory)
        try:
            groups = await asyncio.wait_for(directory.configured_groups(), timeout=PROBE_TIMEOUT)
        except TimeoutError:
            raise ConfigError("directory: Graph did not answer within 30 s") from None
        except DirectoryError as exc:
            raise ConfigError(f"directory: {exc}") from None
    finally:
        await directory.close()
    missing = [(setting, group_id) for setting, group_id, name in groups if name is None]
    if missing:
        raise ConfigError(
            "; ".join(
                f"{setting}: the tenant has no group {group_id} (nobody would be "
                f"{'a VIP' if 'vip' in setting else 'a technician'})"
                for setting, group_id in missing
            )
        )
    if not groups:
        return "Graph token OK; no vip_group_id or technician_group_id to check"
    found = ", ".join(f"{setting.rsplit('.', 1)[1]} {name}" for setting, _, name in groups)
    return f"Graph token OK; groups found: {found}"


async def _probe(
    name: str, probe: Callable[[Settings], Awaitable[str | None]], settings: Settings
) -> tuple[str, str | None, str | None]:
    """(report key, answer or None, problem or None): a failing probe does not stop the others."""
    try:
        return name, await probe(settings), None
    except ConfigError as exc:
        return name, None, str(exc)
    except DirectoryError as exc:
        return name, None, f"directory: {exc}"


async def run_probes(settings: Settings) -> tuple[list[tuple[str, str]], list[str]]:
    """Every probe, side by side: their report lines and what failed (each its own line)."""

    async def psa(settings: Settings) -> str:
        return await probe_psa(settings) if settings.psa else "nothing to probe (no psa.system)"

    results = await asyncio.gather(
        _probe("psa probe", psa, settings),
        _probe("directory probe", probe_directory, settings),
    )
    lines: list[tuple[str, str]] = []
    problems: list[str] = []
    for key, answer, problem in results:
        if problem is not None:
            lines.append((key, f"FAILED: {problem}"))
            problems.append(problem)
        elif answer is not None:
            lines.append((key, answer))
    return lines, problems


async def _report(
    settings: Settings, *, database: bool, probe: bool = False
) -> tuple[list[tuple[str, str]], list[str]]:
    config_source = str(settings.config_path) if settings.config_path else "built-in defaults"
    calendar, calendar_warnings = check_calendar(settings)
    if database:
        reached, schema = await check_database(settings.database_url)
    else:
        reached = describe_database(settings.database_url) + " (not contacted: --no-db)"
        schema = None
    note = settings.database_note
    lines = [
        ("config", config_source),
        ("listen", f"http://{settings.host}:{settings.port}"),
        ("metrics", metrics_access(settings).removeprefix("GET /metrics: ")),
        ("database", reached + (f"; {note.removeprefix('DATABASE_URL: ')}" if note else "")),
        *([("schema", schema)] if schema else []),
        ("slack", describe_slack(settings)),
        ("teams", describe_teams(settings)),
        ("pagers", describe_pagers(settings)),
        ("directory", await describe_directory(settings)),
        ("incidents", describe_incidents(settings)),
        ("scope", describe_scope(settings)),
        ("sla tiers", describe_sla_tiers(settings)),
        ("sla clients", describe_sla_clients(settings)),
        ("remote session", describe_remote(settings)),
        ("psa", describe_psa(settings.psa, settings.config.psa.tiers)),
        ("diagnosis", describe_diagnosis(settings, calendar)),
        (
            "tickets",
            f"numbered {settings.config.ticket_prefix}-1, {settings.config.ticket_prefix}-2, …",
        ),
        ("log format", settings.log_format),
    ]
    problems: list[str] = []
    if probe:
        probed, problems = await run_probes(settings)
        lines += probed
    lines += [("warning", text) for text in unheard_queues(settings.config)]
    lines += [("warning", text) for text in calendar_warnings]
    return lines, problems


def run(
    env: Mapping[str, str],
    *,
    database: bool = True,
    probe: bool = False,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """Print what the settings enable; exit code 2 with one message on a bad setting. With
    `probe`, every probe runs and has its line in the report; each that failed is also one
    `config error:` line, and the exit code is 2."""
    out = out or sys.stdout
    err = err or sys.stderr
    try:
        settings = load_settings(env)
        lines, problems = asyncio.run(_report(settings, database=database, probe=probe))
    except ConfigError as exc:
        print(redact_urls(f"config error: {exc}"), file=err)
        return 2
    except DirectoryError as exc:
        print(redact_urls(f"config error: directory: {exc}"), file=err)
        return 2
    except SchemaMismatch as exc:  # written by a newer release: serve and worker refuse it
        print(f"database error: {exc}", file=err)
        return 2
    width = max(len(key) for key, _ in lines)
    for key, value in lines:
        # The report is pasted into tickets and chats: masked as the log is (user:password in
        # a psa.url, kb.url or remote.url_template; a key in a query). The database line has
        # its password hidden already, and keeps the user name.
        shown = value if key == "database" else redact_urls(value)
        print(f"{key + ':':<{width + 1}} {shown}", file=out)
    if problems:
        out.flush()
        for problem in problems:
            print(redact_urls(f"config error: {problem}"), file=err)
        return 2
    print("config OK", file=out)
    return 0
