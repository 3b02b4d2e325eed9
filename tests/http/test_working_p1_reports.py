"""Duplicate reports of a P1 (#15), over Slack and Teams HTTP: three reports of one outage
(same client and asset) while HD-1 is P1 are filed under it (its card's **Add to HD-1**, or
`link`); one page in total, the incident notice edited in place to the summed users affected,
each requester told which incident it is part of; closing HD-1 closes the three with its
resolution and sends each of their requesters a survey."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from tests.fakes.botframework import FakeConnector
from tests.fakes.pagers import FakePagerDuty
from tests.fakes.slack_api import FakeSlack
from tests.harness import AppHarness, wait_until
from tests.http.conftest_teams import PERSONAL
from tests.http.p1_support import INCIDENT_CHANNEL, INCIDENT_CONVERSATION, pager_env
from tests.http.working_support import (
    PEOPLE,
    TEAMS_IDS,
    SlackFlow,
    TeamsFlow,
    events,
    shown,
    teams_config,
    ticket_row,
)

OUTAGE = {"summary": "VPN down in Lisbon", "category": "network", "error": "Error 809"}


async def test_slack_three_reports_one_page_notice_summed_closed_with_the_p1(
    make_app: Any, slack_api: FakeSlack, pagerduty: FakePagerDuty
) -> None:
    config = {"slack": {"incident_channel": INCIDENT_CHANNEL}}
    app: AppHarness = await make_app(
        slack=slack_api, config=config, people=PEOPLE, env=pager_env(pagerduty, None)
    )
    s = SlackFlow(app, slack_api)
    p1 = await s.ticket(priority="P1", users=40, asset="VPN-01", client="Acme", **OUTAGE)
    await pagerduty.wait_for("/v2/enqueue")
    await wait_until(lambda: s.posts(INCIDENT_CHANNEL), what="the incident notice")

    # Three reports: same client and asset (any case), lower priorities, other people.
    reports = []
    for requester, users, client, asset in (
        ("UBOB", 2, "ACME", "vpn-01"),
        ("UCY", 3, "Acme", "VPN-01"),
        ("UDEE", 1, "acme ", "Vpn-01"),
    ):
        reports.append(
            await s.ticket(
                requester=requester,
                users=users,
                client=client,
                asset=asset,
                summary="Cannot connect to the VPN",
                category="network",
            )
        )
    unrelated = await s.ticket(
        requester="UANA", client="Globex", asset="VPN-01", error="Error 0x80070005: access denied"
    )
    for number in reports:
        card = s.card(number)
        assert f"Matches open P1 {p1}" in shown(card) and f"Add to {p1}" in shown(card)
    assert "Matches open P1" not in shown(s.card(unrelated))

    # Filing: the card's button twice, `link` once; the answers give the new total.
    first = await s.press(s.card(reports[0]), f"Add to {p1}", "UTECH")  # type: ignore[arg-type]
    assert f"{reports[0]} is filed under {p1}" in first and "42 users affected" in first
    linked = await s.command(f"link {reports[1]} {p1}")
    assert f"{reports[1]} is filed under {p1}" in linked and "45 users affected" in linked
    third = await s.press(s.card(reports[2]), f"Add to {p1}", "UTECH")  # type: ignore[arg-type]
    assert f"{reports[2]} is filed under {p1}" in third and "46 users affected" in third

    # Refusals, each with its reason.
    assert "Only technicians" in await s.command(f"link {unrelated} {p1}", user="UBOB")
    assert f"{reports[0]} is already filed under {p1}" in await s.command(f"link {reports[0]} {p1}")
    assert f"{unrelated} is not a P1" in await s.command(f"link {reports[0]} {unrelated}")
    assert "cannot be filed under itself" in await s.command(f"link {p1} {p1}")
    assert "There is no ticket HD-99" in await s.command(f"link HD-99 {p1}")

    # One notice, edited in place to the summed users affected; one page in total.
    def notice_edits() -> list[dict[str, Any]]:
        return [
            u for u in slack_api.method_calls("chat.update") if u.get("channel") == INCIDENT_CHANNEL
        ]

    await wait_until(
        lambda: any("46" in shown(u.get("blocks")) for u in notice_edits()),
        what="the notice showing 46 users affected",
    )
    latest = slack_api.channel_messages(INCIDENT_CHANNEL)
    assert len(latest) == 1 and "*Users affected:* 46" in shown(latest[0]["blocks"])
    assert "*Filed reports:* 3" in shown(latest[0]["blocks"])
    assert len(pagerduty.events("trigger")) == 1
    assert len(s.posts(INCIDENT_CHANNEL)) == 1
    # The P1's card shows the total; each report's requester is told which incident.
    await wait_until(lambda: "46 (40 on" in shown(s.card(p1)), what="the P1's card")
    for user, number in zip(("UBOB", "UCY", "UDEE"), reports, strict=True):
        await wait_until(lambda u=user: s.dms(u, f"part of the incident {p1}"), what=user)
        assert number in shown(s.dms(user, f"part of the incident {p1}"))
        assert f"Filed under P1 {p1}" in shown(s.card(number))
    assert not s.dms("UANA", "part of the incident")
    show = await s.command(f"show {p1}")
    assert f"Reports filed under {p1} (3)" in show
    assert f"*{reports[1]}:* <@UCY> (cy@example.com) - 3 affected - open" in show

    # Closing the P1 closes the three with its resolution; each requester gets a survey. The
    # third report made their error (0x8007001F) a pattern: the P1's closure names a KB article.
    await s.close(
        p1, note="Replaced the failed power supply of the VPN concentrator VPN-01", kb="KB0809"
    )
    for number in reports:
        ticket = await ticket_row(app, number)
        assert ticket.status == "closed" and "power supply" in ticket.resolution_note
        assert ticket.kb_article == "KB0809"
    assert (await ticket_row(app, unrelated)).status == "open"
    for user, number in zip(("UBOB", "UCY", "UDEE"), reports, strict=True):
        await wait_until(
            lambda u=user, n=number: s.dms(u, f"How did we do on {n}"), what=f"{user}'s survey"
        )
        assert "power supply" in shown(s.dms(user, f"How did we do on {number}"))
    await wait_until(lambda: pagerduty.events("resolve"), what="the page resolved")
    await asyncio.sleep(0.5)
    assert len(pagerduty.events("trigger")) == 1 and len(s.posts(INCIDENT_CHANNEL)) == 1
    with_it = [e for e in await events(app, "ticket.closed") if e.data.get("with") == p1]
    assert sorted(e.data["note"][:20] for e in with_it) == ["Replaced the failed "] * 3
    for number in reports:
        await wait_until(lambda n=number: "closed" in shown(s.card(n)), what=f"{number} card")
    # A closed P1 takes no more reports.
    assert f"{p1} is closed" in await s.command(f"link {unrelated} {p1}")


async def test_slack_same_error_matches_and_a_pending_identity_check_does_not_block_filing(
    make_app: Any, slack_api: FakeSlack
) -> None:
    # Bob's manager Mo is asked to confirm his identity (password reset): it stays pending.
    people = [{**p, "manager": "mo@example.com"} if p["slack_id"] == "UBOB" else p for p in PEOPLE]
    people.append({"email": "mo@example.com", "name": "Mo Manager", "slack_id": "UMO"})
    app: AppHarness = await make_app(slack=slack_api, people=people)
    s = SlackFlow(app, slack_api)
    p1 = await s.ticket(
        priority="P1",
        users=30,
        client="",
        asset="",
        error="Sign-in failed: AADSTS50076 MFA required",
    )
    # Another client and no asset, but the same AADSTS code: the same error.
    report = await s.ticket(
        requester="UBOB",
        category="password-reset",
        client="Globex",
        asset="",
        error="aadsts50076 when opening Outlook",
    )
    assert f"Matches open P1 {p1}" in shown(s.card(report))
    assert (await ticket_row(app, report)).identity_state == "pending"
    assert f"{report} is filed under {p1}" in await s.command(f"link {report} {p1}")
    # Below P1: refused with the reason.
    other = await s.ticket(requester="UCY")
    assert f"{other} is not a P1" in await s.command(f"link {report} {other}")
    # A filed report is not raised to P1 on its own (it would page again).
    assert f"filed under the P1 {p1}" in await s.command(f"p1 {report}")


async def test_teams_reports_filed_notice_edited_in_place_and_closed_with_the_p1(
    make_app: Any, connector: FakeConnector, pagerduty: FakePagerDuty
) -> None:
    config = teams_config(
        connector,
        teams={
            "service_url": connector.service_url,
            "tenant_id": "72f988bf-86f1-41af-91ab-2d7cd011db47",
            "incident_conversation": INCIDENT_CONVERSATION,
        },
    )
    app: AppHarness = await make_app(config=config, people=PEOPLE, env=pager_env(pagerduty, None))
    t = TeamsFlow(app, connector)
    p1 = await t.ticket(
        priority="P1",
        users_affected="10",
        asset="VPN-01",
        client="Acme",
        summary="VPN down",
        category="network",
    )
    await pagerduty.wait_for("/v2/enqueue")
    await wait_until(lambda: connector.activities(INCIDENT_CONVERSATION), what="the notice")
    bob = await t.ticket(
        requester="bob@example.com",
        asset="vpn-01",
        client="ACME",
        users_affected="4",
        summary="No VPN",
        category="network",
    )
    cy = await t.ticket(
        requester="cy@example.com",
        asset="VPN-01",
        client="acme",
        users_affected="1",
        summary="VPN?",
        category="network",
    )
    card = t.card(bob)
    assert card is not None and f"Matches open P1 {p1}" in shown(card)
    add = next(a for a in card["actions"] if a["title"] == f"Add to {p1}")
    assert add["type"] == "Action.Execute"
    answer = await t.invoke(t.invoke_body(card, f"Add to {p1}", "29:1tech", PERSONAL))
    assert f"{bob} is filed under {p1}" in answer and "14 users affected" in answer
    assert await t.say(f"ticket link {cy} {p1}") == 201
    await wait_until(lambda: t.texts(PERSONAL, f"{cy} is filed under {p1}"))
    assert "15 users affected" in t.texts(PERSONAL, f"{cy} is filed under {p1}")[0]

    def notice_updates() -> list[dict[str, Any]]:
        return [u for u in connector.updates() if u["_conversation_id"] == INCIDENT_CONVERSATION]

    await wait_until(
        lambda: any('"value": "15"' in json.dumps(u) for u in notice_updates()),
        what="the notice edited to 15 users affected",
    )
    [notice] = connector.activities(INCIDENT_CONVERSATION)
    assert all(u["_activity_id"] == notice["_id"] for u in notice_updates())
    for who in ("bob", "cy"):
        await wait_until(lambda w=who: t.chat_with(TEAMS_IDS[w]) is not None)
        chat = t.chat_with(TEAMS_IDS[who])
        assert chat is not None
        await wait_until(lambda c=chat: t.texts(c, f"part of the incident {p1}"))

    posted = len(connector.activities(PERSONAL))
    assert await t.say(f"ticket close {p1}") == 201
    await wait_until(lambda: len(connector.activities(PERSONAL)) > posted)
    form = next(a for a in connector.activities(PERSONAL)[posted:] if a.get("attachments"))[
        "attachments"
    ][0]["content"]
    close = {
        **form["actions"][0]["data"],
        "resolution_note": "Replaced the power supply of the VPN concentrator VPN-01",
        "resolution_category": "Incident",
        "time_spent": "1h",
        # Cy's report made the reports' error (0x8007001F) a pattern: it closes with a KB article.
        "kb_article": "KB0809",
    }
    from tests.http.conftest_teams import activity

    closing = activity(connector.service_url, value=close)
    assert (await app.teams(closing)).status == 201
    for number, who in ((bob, "bob"), (cy, "cy")):
        await wait_until(lambda n=number: _closed(app, n), what=f"{number} closed")
        chat = t.chat_with(TEAMS_IDS[who])
        assert chat is not None
        await wait_until(
            lambda c=chat, n=number: [x for x in t.cards(c) if f"How did we do on {n}" in shown(x)],
            what=f"{who}'s survey",
        )
    await wait_until(lambda: pagerduty.events("resolve"))
    assert len(pagerduty.events("trigger")) == 1
    assert len(connector.activities(INCIDENT_CONVERSATION)) == 1


async def _closed(app: AppHarness, number: str) -> bool:
    return (await ticket_row(app, number)).status == "closed"


async def test_a_ticket_that_matched_a_p1_no_longer_offers_it_once_the_p1_is_closed(
    make_app: Any, slack_api: FakeSlack
) -> None:
    """A report left unfiled when its P1 is closed: its card (refreshed) and `show` stop
    saying `Matches open P1 HD-1` and offering **Add to HD-1**, which would only be refused
    (`HD-1 is closed`)."""
    app: AppHarness = await make_app(slack=slack_api, people=PEOPLE)
    s = SlackFlow(app, slack_api)
    p1 = await s.ticket(priority="P1", users=40, asset="VPN-01", client="Acme", **OUTAGE)
    report = await s.ticket(requester="UBOB", asset="vpn-01", client="ACME", category="network")
    assert f"Matches open P1 {p1}" in shown(s.card(report))
    await s.close(p1)
    assert (await ticket_row(app, p1)).status == "closed"
    assert (await ticket_row(app, report)).status == "open"
    shown_now = await s.command(f"show {report}")
    assert report in shown_now
    assert f"Matches open P1 {p1}" not in shown_now and f"Add to {p1}" not in shown_now
    await wait_until(
        lambda: f"Matches open P1 {p1}" not in shown(s.card(report)),
        what="the report's card refreshed",
    )
    assert f"Add to {p1}" not in shown(s.card(report))


async def test_slack_link_reads_ticket_numbers_as_every_other_command_does(
    make_app: Any, slack_api: FakeSlack
) -> None:
    """`hd-02` is HD-2 for `show`, `time`, `close`...; `link` took it for a ticket HD-02."""
    app: AppHarness = await make_app(slack=slack_api, people=PEOPLE)
    s = SlackFlow(app, slack_api)
    p1 = await s.ticket(priority="P1", users=40, asset="VPN-01", client="Acme", **OUTAGE)
    report = await s.ticket(requester="UBOB", users=2, asset="VPN-01", client="Acme")
    assert (p1, report) == ("HD-1", "HD-2")
    linked = await s.command("link hd-02 HD-001")
    assert "HD-2 is filed under HD-1" in linked and "42 users affected" in linked
    assert (await ticket_row(app, "HD-2")).filed_under == "HD-1"


async def test_link_without_an_incident_channel_claims_no_notice_update(
    make_app: Any, slack_api: FakeSlack
) -> None:
    """No incident channel is configured, so there is no notice to edit: the answer to `link`
    does not say "Its incident notice is updated"."""
    app: AppHarness = await make_app(slack=slack_api, people=PEOPLE)
    s = SlackFlow(app, slack_api)
    p1 = await s.ticket(priority="P1", users=40, asset="VPN-01", client="Acme", **OUTAGE)
    report = await s.ticket(requester="UBOB", users=2, asset="vpn-01", client="ACME")
    answer = await s.command(f"link {report} {p1}")
    assert f"{report} is filed under {p1}" in answer and "42 users affected" in answer
    assert "notice" not in answer, answer


async def test_slack_a_p1_closing_a_pattern_report_with_it_needs_a_kb_article(
    make_app: Any, slack_api: FakeSlack
) -> None:
    """A report filed under a P1 can be the ticket that makes its error a pattern while the
    P1, opened before it, is not one: closing the P1 closes the report with the P1's
    resolution and KB article. The P1's closure did not ask for one, so a pattern ticket was
    closed without the KB article its closure needs (SPEC "Patterns"). The P1's closure form
    now says why it needs one and a closure without one is refused with that reason."""
    from tests.http.diagnosis_support import close

    config = {"patterns": {"repeat_threshold": 2}}
    app: AppHarness = await make_app(slack=slack_api, config=config, people=PEOPLE)
    s = SlackFlow(app, slack_api)
    error = "Outlook: sending failed with 0x800CCC0E (SMTP server unreachable)"
    p1 = await s.ticket(priority="P1", users=30, asset="", client="Acme", error=error)
    report = await s.ticket(requester="UBOB", asset="", client="Globex", error=error)
    assert "Pattern" not in shown(s.card(p1)) and "Pattern" in shown(s.card(report))
    assert f"{report} is filed under {p1}" in await s.command(f"link {report} {p1}")

    view, ack = await close(
        app, slack_api, p1, note="Restarted the SMTP relay service on MAIL-01 and cleared its queue"
    )
    assert f"{report} is part of a pattern" in shown(view)
    assert ack.get("response_action") == "errors", ack
    assert f"{report} is part of a pattern" in shown(ack["errors"]["kb_article"])
    assert (await ticket_row(app, p1)).status == "open"
    assert (await ticket_row(app, report)).status == "open"

    _, ack = await close(
        app,
        slack_api,
        p1,
        note="Restarted the SMTP relay service on MAIL-01 and cleared its queue",
        kb="KB0815",
    )
    assert ack == {}, ack
    for number in (p1, report):
        closed = await ticket_row(app, number)
        assert closed.status == "closed" and closed.kb_article == "KB0815"


async def test_slack_a_p1_with_reports_filed_under_another_p1_brings_them_along(
    make_app: Any, slack_api: FakeSlack
) -> None:
    """HD-2, a P1 with Bob's report filed under it, turns out to be the outage HD-1 already is:
    `link HD-2 HD-1` files both under HD-1 (it was refused, its advice "file those under HD-1
    first" refused in turn as "already filed under HD-2"). Bob is told of HD-1; closing HD-1
    closes them both, Bob surveyed once."""
    app: AppHarness = await make_app(slack=slack_api, people=PEOPLE)
    s = SlackFlow(app, slack_api)
    p1 = await s.ticket(priority="P1", users=40, asset="VPN-01", client="Acme", **OUTAGE)
    second = await s.ticket(priority="P1", users=10, asset="MAIL-01", client="Acme")
    report = await s.ticket(requester="UBOB", users=2, asset="mail-01", client="acme")
    assert f"{report} is filed under {second}" in await s.command(f"link {report} {second}")
    await wait_until(lambda: s.dms("UBOB", f"part of the incident {second}"), what="Bob told")

    linked = await s.command(f"link {second} {p1}")
    assert f"{second} is filed under {p1}" in linked, linked
    assert "52 users affected in total (40 of its own + 12 in 2 filed reports)" in linked
    assert f"({report}) is now filed under {p1}" in linked
    assert (await ticket_row(app, report)).filed_under == p1
    assert (await ticket_row(app, second)).total_users_affected == 10
    await wait_until(lambda: s.dms("UBOB", f"part of the incident {p1}"), what="Bob told again")
    await wait_until(lambda: f"Filed under P1 {p1}" in shown(s.card(report)), what="its card")
    moved = [e for e in await events(app, "ticket.filed") if e.data.get("from") == second]
    assert [e.data["under"] for e in moved] == [p1]
    assert f"Reports filed under {p1} (2)" in await s.command(f"show {p1}")

    await s.close(p1, note="Replaced the failed power supply of the VPN concentrator VPN-01")
    for number in (second, report):
        assert (await ticket_row(app, number)).status == "closed"
    await wait_until(lambda: s.dms("UBOB", f"How did we do on {report}"), what="Bob's survey")
    await app.services.slack.drain()  # type: ignore[union-attr]
    await asyncio.sleep(1)
    assert len(s.dms("UBOB", "How did we do")) == 1
    assert len(s.dms("UBOB", f"part of the incident {p1}")) == 1


async def test_a_ticket_that_matched_a_p1_closed_with_another_no_longer_offers_it(
    make_app: Any, slack_api: FakeSlack
) -> None:
    """HD-2, a P1 that Cy's ticket matches, is filed under the P1 HD-1 and closed with it: Cy's
    card and `show` stop offering **Add to HD-2** (it kept it, and pressing it was refused
    with `HD-2 is closed`), as when HD-2 is closed on its own."""
    app: AppHarness = await make_app(slack=slack_api, people=PEOPLE)
    s = SlackFlow(app, slack_api)
    p1 = await s.ticket(priority="P1", users=40, asset="VPN-01", client="Acme", **OUTAGE)
    inner = await s.ticket(priority="P1", users=10, asset="MAIL-01", client="Acme")
    report = await s.ticket(requester="UCY", asset="mail-01", client="ACME", category="network")
    assert f"Add to {inner}" in shown(s.card(report))
    assert f"{inner} is filed under {p1}" in await s.command(f"link {inner} {p1}")
    await s.close(p1)
    assert (await ticket_row(app, inner)).status == "closed"
    assert (await ticket_row(app, report)).status == "open"
    shown_now = await s.command(f"show {report}")
    assert report in shown_now
    assert f"Matches open P1 {inner}" not in shown_now and f"Add to {inner}" not in shown_now
    await wait_until(
        lambda: f"Add to {inner}" not in shown(s.card(report)), what="the report's card refreshed"
    )
