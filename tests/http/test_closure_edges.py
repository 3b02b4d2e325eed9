"""Closure and CSAT edges over HTTP, as a technician meets them (found by a review)."""

from __future__ import annotations

from typing import Any

from tests.fakes.slack_api import FakeSlack
from tests.harness import AppHarness, wait_until
from tests.http.working_support import PEOPLE, SlackFlow, rows, shown, ticket_row


async def test_slack_closing_a_p1_says_which_filed_reports_stay_open_and_why(
    make_app: Any, slack_api: FakeSlack
) -> None:
    """Closing a P1 from Slack's modal: the closer is told, as on Teams, which reports were
    closed with it and which stay open because their requester's identity is not confirmed
    (the modal closes on success, so the answer must reach the ticket's thread)."""
    people = [{**p, "manager": "mo@example.com"} if p["slack_id"] == "UBOB" else p for p in PEOPLE]
    people.append({"email": "mo@example.com", "name": "Mo Manager", "slack_id": "UMO"})
    app: AppHarness = await make_app(slack=slack_api, people=people)
    s = SlackFlow(app, slack_api)
    p1 = await s.ticket(priority="P1", users=30)
    # Bob's password reset waits for his manager; Cy's printer report needs no check.
    gated = await s.ticket(requester="UBOB", category="password-reset")
    plain = await s.ticket(requester="UCY")
    assert (await ticket_row(app, gated)).identity_state == "pending"
    for report in (gated, plain):
        assert f"{report} is filed under {p1}" in await s.command(f"link {report} {p1}")

    # The plain report made their error (0x8007001F) a pattern: it closes with a KB article.
    await s.close(p1, note="Replaced the fuser unit of the printer PRN-0042", kb="KB0042")
    assert (await ticket_row(app, plain)).status == "closed"
    assert (await ticket_row(app, gated)).status == "open"
    await wait_until(lambda: s.thread(p1, "was closed by"), what="the closed notice")
    [notice] = s.thread(p1, "was closed by")
    said = shown(notice)
    assert f"Also closed with it: {plain}" in said, said
    assert f"Still open: {gated}" in said and "identity is not confirmed" in said, said
    # The requester had not confirmed the fix: the closer is told it is recorded.
    assert "had not confirmed the fix" in said, said


async def test_slack_survey_to_a_deactivated_requester_is_reported_not_retried_for_ever(
    make_app: Any, slack_api: FakeSlack
) -> None:
    """Ana left: Slack answers `user_disabled` to opening her DM. No retry can change that,
    so the survey is recorded as failed for good and Tom is told at once, in the thread,
    instead of retrying every few minutes for ever ('still retrying')."""
    app: AppHarness = await make_app(slack=slack_api, people=PEOPLE)
    s = SlackFlow(app, slack_api)
    number = await s.ticket()
    slack_api.fail_ok_false("conversations.open", "user_disabled", times=50)
    await s.close(number, note="Replaced the fuser unit of the printer PRN-0042")
    await wait_until(
        lambda: s.thread(number, "will not be retried"), timeout=10, what="the failure report"
    )
    [report] = s.thread(number, "will not be retried")
    assert "CSAT survey to the requester" in shown(report) and "user_disabled" in shown(report), (
        shown(report)
    )
    [survey] = await rows(app, "csat-survey")
    assert (survey.status, survey.attempts) == ("dead", 1)
    assert "user_disabled" in (survey.last_error or "")
