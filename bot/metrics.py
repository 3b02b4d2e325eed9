"""Prometheus metrics: one registry per app (no globals), served at GET /metrics."""

from __future__ import annotations

import asyncio
import hmac
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import generate_latest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.db_health import DatabaseMonitor
from bot.metrics_access import metrics_access as metrics_access  # where it was
from bot.settings import Settings
from storage import outbox
from storage.errors import is_unavailable

# Set by the front doors on each request: what kind of request it was (label for metrics).
REQUEST_KIND = web.RequestKey("request_kind", str)
PLATFORM_PATHS = {"/slack/events": "slack", "/api/messages": "teams"}
# How long a scrape waits for the outbox depth (Prometheus gives up on a scrape after 10 s).
OUTBOX_TIMEOUT = 3.0
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        # (platform, kind, status) -> the request counter's and ack histogram's children
        self._request_children: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        self.requests = Counter(
            "helpdesk_requests_total",
            "Requests by platform, kind, status",
            ["platform", "kind", "status"],
            registry=r,
        )
        self.ack_seconds = Histogram(
            "helpdesk_ack_seconds",
            "Time to answer Slack/Teams",
            ["platform", "kind"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.tickets_opened = Counter(
            "helpdesk_tickets_opened_total", "Tickets opened", ["priority"], registry=r
        )
        # The outbox gauges are read from the database on each scrape: kept apart, so that a
        # scrape the database cannot answer leaves them out rather than repeating old values.
        o = self.outbox_registry = CollectorRegistry(auto_describe=True)
        self.outbox_pending = Gauge(
            "helpdesk_outbox_pending", "Undelivered outbox rows that are due", registry=o
        )
        self.outbox_oldest = Gauge(
            "helpdesk_outbox_oldest_pending_age_seconds",
            "How long the oldest undelivered row has been due",
            registry=o,
        )
        self.outbox_scheduled = Gauge(
            "helpdesk_outbox_scheduled",
            "Outbox rows waiting for their time (SLA warnings, delayed surveys, reminders)",
            registry=o,
        )
        self.deliveries = Counter(
            "helpdesk_outbox_deliveries_total", "Delivered outbox rows", ["kind"], registry=r
        )
        self.delivery_failures = Counter(
            "helpdesk_outbox_failures_total", "Failed delivery attempts", ["kind"], registry=r
        )
        self.outbox_pruned_rows = Counter(
            "helpdesk_outbox_pruned_total",
            "Finished outbox rows trimmed to what is still read, or deleted (retention)",
            ["action"],
            registry=r,
        )
        self.identity_checks = Counter(
            "helpdesk_identity_checks_total", "Identity checks by outcome", ["outcome"], registry=r
        )
        self.csat_ratings = Counter(
            "helpdesk_csat_ratings_total", "CSAT answers by rating", ["rating"], registry=r
        )

    def observe(self, name: str, **labels: str) -> None:
        """The core's hook (`Deps.observe`): domain events become counters."""
        if name == "ticket_opened":
            self.tickets_opened.labels(priority=labels.get("priority", "?")).inc()
        elif name == "identity":
            self.identity_checks.labels(outcome=labels.get("outcome", "?")).inc()
        elif name == "csat":
            self.csat_ratings.labels(rating=labels.get("rating", "?")).inc()

    def delivered(self, kind: str) -> None:
        self.deliveries.labels(kind=kind).inc()

    def failed(self, kind: str) -> None:
        self.delivery_failures.labels(kind=kind).inc()

    def outbox_pruned(self, *, trimmed: int, deleted: int) -> None:
        if trimmed:
            self.outbox_pruned_rows.labels(action="trimmed").inc(trimmed)
        if deleted:
            self.outbox_pruned_rows.labels(action="deleted").inc(deleted)

    async def render(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        database: DatabaseMonitor | None = None,
        timeout: float = OUTBOX_TIMEOUT,  # noqa: ASYNC109
    ) -> bytes:
        """Every series; the outbox gauges only when the database answered.

        While `database` says it is down the query is not even tried; a query that meets the
        outage tells `database` (which logs it about once every 10 s, no traceback).
        """
        body = generate_latest(self.registry)
        if database is not None and not database.available:
            return body
        try:
            async with asyncio.timeout(timeout):
                async with sessions() as session:
                    depth = await outbox.stats(session)
        except Exception as exc:
            if database is None or not is_unavailable(exc):
                raise
            database.trouble(exc)
            return body
        self.outbox_pending.set(depth.due)
        oldest = depth.oldest
        age = (datetime.now(UTC) - oldest).total_seconds() if oldest else 0.0
        self.outbox_oldest.set(max(age, 0.0))
        self.outbox_scheduled.set(depth.scheduled)
        return body + generate_latest(self.outbox_registry)

    def middleware(self) -> Any:
        @web.middleware
        async def measure(
            request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
        ) -> web.StreamResponse:
            platform = PLATFORM_PATHS.get(request.path)
            if platform is None:
                return await handler(request)
            started = time.perf_counter()
            status = 500
            try:
                response = await handler(request)
                status = response.status
                return response
            except web.HTTPException as exc:
                status = exc.status
                raise
            finally:
                kind = request.get(REQUEST_KIND, "other")
                self.answered(platform, kind, status, time.perf_counter() - started)

        return measure

    def answered(self, platform: str, kind: str, status: int, seconds: float) -> None:
        """One request answered (an HTTP request, or a Socket Mode envelope acknowledged,
        `status` being what HTTP would have answered) after `seconds`."""
        key = (platform, kind, status)
        children = self._request_children.get(key)
        if children is None:  # `labels()` is a locked look-up: once per combination
            children = self._request_children[key] = (
                self.requests.labels(platform=platform, kind=kind, status=str(status)),
                self.ack_seconds.labels(platform=platform, kind=kind),
            )
        children[0].inc()
        children[1].observe(seconds)


async def metrics_handler(
    metrics: Metrics,
    sessions: async_sessionmaker[AsyncSession],
    database: DatabaseMonitor | None = None,
) -> web.Response:
    body = await metrics.render(sessions, database=database)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def metrics_allowed(settings: Settings, request: web.Request) -> bool:
    """Without METRICS_TOKEN anyone who reaches the port may scrape; with it, only a request
    carrying `Authorization: Bearer <token>` (compared in constant time)."""
    if settings.metrics_token is None:
        return True
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    expected = settings.metrics_token.get_secret_value().encode()
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), expected)
