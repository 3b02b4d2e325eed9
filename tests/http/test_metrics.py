"""GET /metrics: Prometheus series move when a ticket is opened and an outbox row delivered."""

from __future__ import annotations

import asyncio
import re

from tests.fakes.slack_api import FakeSlack
from tests.harness import AppHarness, view_submission
from tests.http.test_slack_intake import open_modal, states


def sample(text: str, name: str, **labels: str) -> float:
    """The value of one series in Prometheus text format (0 when absent)."""
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        match = re.match(r"^([a-zA-Z_:][\w:]*)(\{[^}]*\})?\s+(\S+)$", line)
        if not match or match.group(1) != name:
            continue
        got = ",".join(sorted((match.group(2) or "{}")[1:-1].split(","))) if match.group(2) else ""
        if got == wanted:
            return float(match.group(3))
    return 0.0


async def scrape(app: AppHarness) -> str:
    response = await app.http.get(f"{app.url}/metrics")
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    return await response.text()


async def test_metrics_move_with_tickets_and_deliveries(make_app, slack_api: FakeSlack):
    app = await make_app(slack=slack_api)
    before = await scrape(app)
    for name in (
        "helpdesk_requests_total",
        "helpdesk_ack_seconds",
        "helpdesk_tickets_opened_total",
        "helpdesk_outbox_pending",
        "helpdesk_outbox_oldest_pending_age_seconds",
        "helpdesk_outbox_deliveries_total",
        "helpdesk_outbox_failures_total",
        "helpdesk_identity_checks_total",
        "helpdesk_csat_ratings_total",
    ):
        assert f"# TYPE {name}" in before, name
    assert sample(before, "helpdesk_tickets_opened_total", priority="P2") == 0

    view = await open_modal(app, slack_api)
    await app.interactive(view_submission(view, states()))
    await slack_api.wait_for_method("chat.postMessage")
    for _ in range(100):
        after = await scrape(app)
        # The depth gauge is read from the database just before the counters: wait for both.
        if (
            sample(after, "helpdesk_outbox_deliveries_total", kind="message") >= 1
            and sample(after, "helpdesk_outbox_pending") == 0
        ):
            break
        await asyncio.sleep(0.05)
    assert sample(after, "helpdesk_tickets_opened_total", priority="P2") == 1
    assert sample(after, "helpdesk_outbox_deliveries_total", kind="message") == 1
    assert sample(after, "helpdesk_outbox_pending") == 0
    assert (
        sample(
            after, "helpdesk_requests_total", platform="slack", kind="view_submission", status="200"
        )
        == 1
    )
    assert (
        sample(after, "helpdesk_requests_total", platform="slack", kind="command", status="200")
        == 1
    )
    assert sample(after, "helpdesk_ack_seconds_count", platform="slack", kind="command") == 1
    # Counted again on the same labels (each combination's children are looked up once).
    assert (await app.slash("help")).status == 200
    again = await scrape(app)
    assert sample(again, "helpdesk_requests_total", platform="slack", kind="command",
                  status="200") == 2  # fmt: skip
    assert sample(again, "helpdesk_ack_seconds_count", platform="slack", kind="command") == 2


def test_core_events_become_counters() -> None:
    from prometheus_client.exposition import generate_latest

    from bot.metrics import Metrics

    metrics = Metrics()
    metrics.observe("identity", outcome="approved")
    metrics.observe("identity", outcome="refused")
    metrics.observe("csat", rating="4")
    metrics.observe("ticket_opened", priority="P1")
    text = generate_latest(metrics.registry).decode()
    assert sample(text, "helpdesk_identity_checks_total", outcome="approved") == 1
    assert sample(text, "helpdesk_identity_checks_total", outcome="refused") == 1
    assert sample(text, "helpdesk_csat_ratings_total", rating="4") == 1
    assert sample(text, "helpdesk_tickets_opened_total", priority="P1") == 1


async def test_teams_request_kinds_made_up_by_a_caller_are_counted_as_other(make_app):
    """The Teams kind is read before the caller is authenticated: made-up types and invoke
    names must not become labels (each would be a series for good)."""
    app = await make_app()
    bodies = [
        {"type": "made-up-type-1"},
        {"type": ["not", "a", "string"]},
        {"type": "invoke", "name": "made/up/name-1"},
        {"type": "invoke", "name": {"x": 1}},
    ]
    for body in bodies:
        response = await app.teams(body)
        assert response.status < 500
    after = await scrape(app)
    assert "made-up" not in after and "made/up" not in after
    counted = sum(
        sample(after, "helpdesk_requests_total", platform="teams", kind=kind, status=status)
        for kind in ("other", "invoke:other")
        for status in ("400", "401", "200")
    )
    assert counted == len(bodies)


async def test_slack_made_up_types_do_not_become_labels(make_app, slack_api: FakeSlack):
    """The Slack kind comes from the body's `type`, which any signed caller chooses: only the
    kinds the front door knows become labels, the rest count as `other` (found by a review)."""
    import json

    app = await make_app(slack=slack_api)
    for i in range(50):
        response = await app.slack(
            json.dumps({"type": f"made-up-{i}"}), content_type="application/json"
        )
        assert response.status == 400
    after = await scrape(app)
    series = [
        line
        for line in after.splitlines()
        if line.startswith("helpdesk_requests_total{") and "made-up" in line
    ]
    assert not series
    assert "made-up" not in after
    assert (
        sample(after, "helpdesk_requests_total", platform="slack", kind="other", status="400") == 50
    )


def test_slack_metric_kinds_are_the_ones_the_front_door_knows() -> None:
    from bot.slack import shapes

    for kind in ("command", "block_actions", "view_submission", "event_callback", *shapes.LEGACY):
        assert shapes.metric_kind(kind) == kind
    for kind in ("made-up", "x" * 255, "", "EVENT_CALLBACK"):
        assert shapes.metric_kind(kind) == "other"


async def test_metrics_token_requires_the_bearer_and_says_so(make_app, caplog):
    """The port /metrics is served on is the one Slack and Teams reach, often public: with
    METRICS_TOKEN set a scrape needs `Authorization: Bearer <token>` (401 otherwise, one log
    line, the token never logged); /healthz stays open."""
    app = await make_app(env={"METRICS_TOKEN": "s3cret-scrape"})
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret-scrape"}):
        response = await app.http.get(f"{app.url}/metrics", headers=headers)
        assert response.status == 401, headers
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        assert "helpdesk_" not in await response.text()
    good = await app.http.get(
        f"{app.url}/metrics", headers={"Authorization": "Bearer s3cret-scrape"}
    )
    assert good.status == 200 and "# TYPE helpdesk_requests_total" in await good.text()
    assert (await app.http.get(f"{app.url}/healthz")).status == 200
    refused = [r.getMessage() for r in caplog.records if "GET /metrics from" in r.getMessage()]
    assert len(refused) == 3 and all("refused" in line for line in refused)
    assert "s3cret-scrape" not in caplog.text
    assert "GET /metrics: with 'Authorization: Bearer <METRICS_TOKEN>' only" in caplog.text


async def test_metrics_open_without_a_token_and_the_start_up_line_says_so(make_app, caplog):
    app = await make_app()
    assert (await app.http.get(f"{app.url}/metrics")).status == 200
    assert "GET /metrics: open to anyone who reaches 127.0.0.1:" in caplog.text
    assert "set METRICS_TOKEN" in caplog.text
