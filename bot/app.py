"""The aiohttp application: Slack and Teams front doors, health, and the outbox scheduler."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from aiohttp import ClientSession, ClientTimeout, TCPConnector, web
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bot.changes import CalendarChanges, shown_url
from bot.correlation import new_correlation_id, ticket_number
from bot.db_health import DatabaseMonitor
from bot.directory.chat_links import ChatLinks
from bot.directory.factory import create_directory, technicians_hint
from bot.kb import create_kb
from bot.metrics import Metrics, metrics_access, metrics_allowed, metrics_handler
from bot.notifiers import Notifiers
from bot.notifiers.opsgenie import OpsgenieNotifier
from bot.notifiers.pagerduty import PagerDutyNotifier
from bot.outbox_worker import OutboxWorker
from bot.places import Places, SharedWindows
from bot.psa import create_connector, describe, register
from bot.retention import DeliveryPrune, OutboxPrune
from bot.settings import Settings
from bot.slack.files import FileSharer
from bot.slack.front import SlackFront, make_client
from bot.slack.notifier import SlackNotifier
from bot.slack.people import SlackPeople
from bot.table_stats import TableStats
from bot.teams.front import TeamsFront
from bot.teams.people import TeamsPeople
from bot.teams.references import ReferenceStore
from bot.wakeup import Wakeup
from handlers import diagnosis, psa
from handlers.deps import Deps
from handlers.escalation import unheard_queues
from storage import db, outbox
from storage.migrate import SchemaMismatch, check_schema, upgrade

log = logging.getLogger(__name__)


@dataclass
class Services:
    """Everything the process runs, built on start-up and closed on shutdown."""

    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    deps: Deps
    http: ClientSession
    notifiers: Notifiers = field(default_factory=Notifiers)
    slack: SlackFront | None = None
    teams: TeamsFront | None = None
    worker: OutboxWorker | None = None
    # Deletes handled delivery ids once nothing accepts a repeat of them (with the scheduler).
    prune: DeliveryPrune | None = None
    # Trims finished outbox rows to what is still read, once old (with the scheduler).
    outbox_prune: OutboxPrune | None = None
    table_stats: TableStats | None = None
    scheduler: AsyncIOScheduler | None = None
    metrics: Metrics = field(default_factory=Metrics)
    # Retry-After windows and pacing per Slack channel, Teams conversation, pager...
    places: Places = field(default_factory=Places)
    database: DatabaseMonitor | None = None
    wakeup: Wakeup | None = None
    calendar: CalendarChanges | None = None
    backfill: asyncio.Task[int] | None = None


SERVICES: web.AppKey[Services] = web.AppKey("services", Services)


async def start_services(
    settings: Settings,
    *,
    scheduler: bool,
    web_front: bool,
    metrics: Metrics | None = None,
    clock: Callable[[], datetime] | None = None,
) -> Services:
    """Connect to the database, load the directory, build front doors and the worker.

    `clock` is what time it is for the core and the worker alike (tests set it)."""
    engine = db.create_engine(settings.database_url)
    await db.ping(engine)
    # SQLite (one host, one file) is migrated on start; PostgreSQL only by `migrate`, and a
    # process refuses a schema that is not exactly its own. Nobody touches a newer one.
    upgraded = False
    try:
        if db.is_sqlite(settings.database_url):
            before, after = await upgrade(engine)
            upgraded = bool(before) and before != after
        else:
            await check_schema(engine, require_newest=True)
    except SchemaMismatch:
        await engine.dispose()
        raise
    sessions = db.session_factory(engine)
    # One pooled HTTP session for every outbound call (keep-alive to Slack and connectors).
    http = ClientSession(
        connector=TCPConnector(limit=100, keepalive_timeout=30),
        timeout=ClientTimeout(total=15),
    )
    client = make_client(settings, http) if settings.slack_enabled else None
    references = ReferenceStore(sessions)
    try:
        directory = await create_directory(
            settings.config.directory,
            config_dir=settings.config_dir,
            env=settings.env,
            chat=chat_links(settings, references, client),
        )
    except BaseException:
        await http.close()
        raise
    if not await directory.has_technicians():
        log.warning(
            "the directory lists no technician: everyone counts as one (%s)",
            technicians_hint(settings.config.directory.source),
        )
    pagers = tuple(
        name
        for name, key in (
            ("pagerduty", settings.pagerduty_routing_key),
            ("opsgenie", settings.opsgenie_api_key),
        )
        if key
    )
    metrics = metrics or Metrics()
    monitor = DatabaseMonitor(
        engine,
        location=db.location(settings.database_url),
        sqlite_file=db.sqlite_file(settings.database_url),
    )
    kb = create_kb(settings, http)
    calendar = None
    if settings.config.changes.calendar:
        calendar = CalendarChanges(
            settings.config.changes.calendar, config_dir=settings.config_dir, http=http
        )
        await calendar.start()
    deps = Deps(
        config=settings.config,
        sessions=sessions,
        directory=directory,
        platforms=settings.chat_platforms,
        pagers=pagers,
        observe=metrics.observe,
        database_available=lambda: monitor.available,
        database_trouble=monitor.trouble,
        kb=kb,
        change_calendar=calendar,
    )
    if clock is not None:
        deps.clock = clock
    services = Services(
        settings=settings,
        engine=engine,
        sessions=sessions,
        deps=deps,
        http=http,
        metrics=metrics,
        database=monitor,
        calendar=calendar,
        places=Places(shared=SharedWindows(engine)),
    )
    monitor.start()
    for warning in unheard_queues(settings.config):
        log.warning("%s", warning)
    log.info(
        "diagnosis help: KB %s; change calendar %s",
        f"{kb.name} at {shown_url(settings.config.kb.url or '')}" if kb else "off (no kb.source)",
        calendar.shown if calendar else "none (Patch Tuesday and config entries only)",
    )

    if client is not None:
        services.notifiers.register("message:slack", SlackNotifier(client, places=services.places))
        services.notifiers.register("dm:slack", SlackNotifier(client, places=services.places))
        services.notifiers.register("update:slack", SlackNotifier(client, places=services.places))
        services.notifiers.register("file:slack", FileSharer(client, places=services.places))
        if web_front:
            services.slack = SlackFront(settings, deps, make_client(settings, http, in_turn=True))
    if web_front:
        log.info(slack_transport(settings))
        log.info(metrics_access(settings))

    if settings.pagerduty_routing_key is not None:
        services.notifiers.register(
            "page.pagerduty",
            PagerDutyNotifier(
                http, url=settings.pagerduty_events_url, routing_key=settings.pagerduty_routing_key
            ),
        )
    if settings.opsgenie_api_key is not None:
        services.notifiers.register(
            "page.opsgenie",
            OpsgenieNotifier(
                http, url=settings.opsgenie_api_url, api_key=settings.opsgenie_api_key
            ),
        )
    log.info(
        "P1 paging through: %s",
        ", ".join(pagers)
        or "nothing (set PAGERDUTY_ROUTING_KEY and/or OPSGENIE_API_KEY to page the on-call)",
    )

    if settings.psa is not None:
        register(services.notifiers, create_connector(settings.psa, http), sessions)
        if scheduler:
            await psa.on_start(sessions)
    log.info("system of record: %s", describe(settings.psa, settings.config.psa.tiers))

    teams = TeamsFront(settings, deps, http, references, places=services.places)
    teams.register_notifiers(services.notifiers)
    if web_front:
        services.teams = teams

    if upgraded:
        # Tickets from before error signatures existed get theirs, in the background.
        services.backfill = asyncio.get_running_loop().create_task(
            diagnosis.backfill_signatures(sessions)
        )
    if scheduler:
        services.scheduler = AsyncIOScheduler(timezone="UTC")
        services.worker = OutboxWorker(
            sessions,
            services.notifiers,
            config=deps.config,
            lease=settings.outbox_lease_seconds,
            observer=metrics,
            places=services.places,
            database=db.location(settings.database_url),
            clock=deps.clock,
        )
        services.worker.schedule(services.scheduler)
        services.prune = DeliveryPrune(engine, database=db.location(settings.database_url))
        services.prune.schedule(services.scheduler)
        services.outbox_prune = OutboxPrune(
            engine, database=db.location(settings.database_url), observer=metrics
        )
        services.outbox_prune.schedule(services.scheduler)
        if engine.dialect.name == "postgresql":
            services.table_stats = TableStats(engine, database=db.location(settings.database_url))
            services.table_stats.schedule(services.scheduler)
        outbox.on_enqueue_commit(sessions, services.worker.wake)
        # Rows a request queues, due now, go straight to this process's worker.
        outbox.hand_off_on_commit(sessions, services.worker.handoff())
        services.wakeup = Wakeup(engine, settings.database_url, services.worker.wake)
        services.wakeup.start()
        services.scheduler.start()
    return services


def chat_links(
    settings: Settings, references: ReferenceStore, slack: AsyncWebClient | None
) -> ChatLinks:
    """Slack and Teams users by e-mail and AAD object id, for a directory that knows no chat
    ids (Graph): Slack's `users.info` / `users.lookupByEmail`, and the Teams senders seen."""
    graph = settings.config.directory.graph
    ttl = graph.cache_ttl.total_seconds() if graph else 300.0
    return ChatLinks(
        slack=SlackPeople(slack, ttl=ttl) if slack is not None else None,
        teams=TeamsPeople(references, service_url=settings.config.teams.service_url),
    )


async def stop_services(services: Services) -> None:
    """Stop everything, each step bounded: a dead database or peer never holds shutdown up."""
    if services.scheduler is not None:
        services.scheduler.shutdown(wait=False)
    if services.prune is not None:
        services.prune.close()
    if services.outbox_prune is not None:
        services.outbox_prune.close()
    if services.backfill is not None and not services.backfill.done():
        services.backfill.cancel()
        await asyncio.gather(services.backfill, return_exceptions=True)
    steps: list[tuple[str, Awaitable[Any]]] = []
    if services.wakeup is not None:
        steps.append(("outbox wake-up", services.wakeup.stop()))
    if services.worker is not None:
        steps.append(("outbox worker", services.worker.close()))
    if services.slack is not None:
        steps.append(("Slack calls", services.slack.drain(stopping=True)))
    if services.teams is not None:
        steps.append(("Teams answers", services.teams.bot.drain()))
        services.teams.close()
    if services.database is not None:
        steps.append(("database probe", services.database.stop()))
    steps.append(("KB look-ups", diagnosis.drain(STOP_STEP_SECONDS)))
    if services.calendar is not None:
        steps.append(("change calendar", services.calendar.close()))
    steps += [
        ("directory", services.deps.directory.close()),
        ("HTTP client", services.http.close()),
    ]
    for name, step in steps:
        await _bounded(name, step, STOP_STEP_SECONDS)
    if not await _bounded("database", services.engine.dispose(), STOP_STEP_SECONDS):
        # Connections that do not answer are dropped without a goodbye.
        await _bounded("database", services.engine.dispose(close=False), 1.0)


STOP_STEP_SECONDS = 3.0


async def _bounded(name: str, step: Awaitable[Any], seconds: float) -> bool:
    try:
        await asyncio.wait_for(step, seconds)
    except TimeoutError:
        log.warning("shutdown: %s did not stop within %.0f s; going on", name, seconds)
        return False
    except Exception as exc:
        log.warning("shutdown: %s failed to stop cleanly: %s", name, type(exc).__name__)
    return True


async def healthz(request: web.Request) -> web.Response:
    """200 when the database answers; 503 within a few seconds when it does not (refused,
    or silent: never a hang)."""
    services = request.app[SERVICES]
    monitor = services.database
    assert monitor is not None
    if not await monitor.check():
        return web.json_response({"status": "degraded", "db": "unavailable"}, status=503)
    return web.json_response({"status": "ok", "db": "ok"})


@web.middleware
async def correlate(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Every log line of one request carries the same short correlation id."""
    new_correlation_id()
    ticket_number.set("-")
    return await handler(request)


def slack_transport(settings: Settings) -> str:
    """Which way Slack requests arrive, for the start-up log line."""
    if not settings.slack_enabled:
        return (
            "Slack is disabled: set SLACK_BOT_TOKEN and SLACK_SIGNING_SECRET (HTTP) or "
            "SLACK_BOT_TOKEN and SLACK_APP_TOKEN (Socket Mode) to enable it"
        )
    if settings.slack_app_token is not None and settings.slack_signing_secret is not None:
        return (
            "Slack: Socket Mode, and signed HTTP requests at POST /slack/events "
            "(SLACK_SIGNING_SECRET is set)"
        )
    if settings.slack_app_token is not None:
        return (
            "Slack: Socket Mode only; POST /slack/events is not served "
            "(set SLACK_SIGNING_SECRET to also take signed HTTP requests)"
        )
    return "Slack: signed HTTP requests at POST /slack/events"


def _metrics_endpoint(
    settings: Settings, metrics: Metrics
) -> Callable[[web.Request], Awaitable[web.Response]]:
    """GET /metrics: behind `Authorization: Bearer <METRICS_TOKEN>` when that is set."""

    async def metrics_endpoint(request: web.Request) -> web.Response:
        if not metrics_allowed(settings, request):
            log.warning(
                "GET /metrics from %s refused: no valid 'Authorization: Bearer' "
                "(METRICS_TOKEN is set)",
                request.remote,
            )
            return web.Response(
                status=401,
                text="GET /metrics needs 'Authorization: Bearer <METRICS_TOKEN>'\n",
                headers={"WWW-Authenticate": 'Bearer realm="metrics"'},
            )
        services = request.app[SERVICES]
        return await metrics_handler(metrics, services.sessions, services.database)

    return metrics_endpoint


def worker_app(settings: Settings, services: Services) -> web.Application:
    """What `worker --metrics-port` serves: GET /metrics (its deliveries, failures and
    retention counts are counted where rows are delivered, so a web-only replica never has
    them) and GET /healthz; no Slack or Teams endpoint."""
    app = web.Application()
    app[SERVICES] = services
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", _metrics_endpoint(settings, services.metrics))
    return app


def create_app(
    settings: Settings, *, scheduler: bool = True, clock: Callable[[], datetime] | None = None
) -> web.Application:
    """The whole HTTP surface; services start and stop with the app (`clock`: see
    start_services)."""
    metrics = Metrics()
    app = web.Application(
        client_max_size=1024 * 1024, middlewares=[correlate, metrics.middleware()]
    )

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        services = await start_services(
            settings, scheduler=scheduler, web_front=True, metrics=metrics, clock=clock
        )
        app[SERVICES] = services
        if services.slack is not None and settings.slack_app_token is not None:
            try:
                await services.slack.start_socket_mode(
                    settings.slack_app_token.get_secret_value(), answered=metrics.answered
                )
            except BaseException:  # a refused app token: nothing is left running
                await stop_services(services)
                raise
        # Long-lived objects are built: keep full GC passes from walking them on every request.
        gc.collect()
        gc.freeze()
        yield
        if services.slack is not None:
            await services.slack.stop_socket_mode()
        await stop_services(services)

    async def slack_events(request: web.Request) -> web.Response:
        front = request.app[SERVICES].slack
        assert front is not None and front.http_enabled
        return await front.handle_http(request)

    async def teams_messages(request: web.Request) -> web.StreamResponse:
        front = request.app[SERVICES].teams
        assert front is not None
        return await front.handle_http(request)

    app.cleanup_ctx.append(lifecycle)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", _metrics_endpoint(settings, metrics))
    # Slack over HTTP exists only where requests can be verified: with a signing secret.
    # Otherwise (Socket Mode, or Slack off) the path is unknown: 404, nothing runs.
    if settings.slack_enabled and settings.slack_signing_secret is not None:
        app.router.add_post("/slack/events", slack_events)
    app.router.add_post("/api/messages", teams_messages)
    return app
