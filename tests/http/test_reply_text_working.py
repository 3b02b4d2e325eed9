"""Text replies and notices of working a ticket to the end say whose words they are (issue #16
part 4), over HTTP on both platforms: time entries, the fix confirmation, files, escalation,
closure, CSAT and the SLA breach in the channel.

What people typed (a comment, a resolution note, a summary, a client, a file name, a queue
named in the config) is shown literally: on Teams escaped where it would start Markdown; on
Slack never a mention or a ping, and in a `plain_text` block where it holds mrkdwn markup. The
bot's own words reach Teams as written (no backslash before its backticks) and Slack as mrkdwn
(its backticks are code) where no typed markup is quoted.
"""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from typing import Any

from tests.fakes.botframework import FakeConnector
from tests.fakes.slack_api import FakeSlack
from tests.harness import AppHarness, view_submission, wait_until
from tests.http import test_closure_slack as closure_slack
from tests.http import test_sla_clock as sla
from tests.http.conftest_teams import CHANNEL, PERSONAL, card_of, form_values, submit_action
from tests.http.conftest_teams import PEOPLE as TEAMS_PEOPLE
from tests.http.conftest_teams import message as teams_message
from tests.http.working_support import PEOPLE, TEAMS_IDS, SlackFlow, TeamsFlow, teams_config

ANA = TEAMS_IDS["ana"]
# Typed text that would be a link, bold, a tag and italics if it were taken for markup.
HOSTILE = "[x](https://evil.example) **b** <u> _i_"
# ...as Teams must show it: escaped exactly there.
TEAMS_HOSTILE = r"\[x\](https://evil.example) \*\*b\*\* \<u> \_i\_"
# On Slack also what would ping or mention someone.
SLACK_HOSTILE = "*b* _i_ <!here> <@UEVE> [x](https://evil.example)"
SLACK_SHOWN = "*b* _i_ &lt;!here&gt; &lt;@UEVE&gt; [x](https://evil.example)"
GOOD_NOTE = "Cleared the print queue on PRN-0042 and reinstalled the HP UPD 7.1 driver"
FACTS = {
    "repro_steps": "Print the Q3 report from Excel",
    "error_text": "Error 0x8007001F: paper path",
    "already_tried": "Restarted the spooler on the print server",
    "asset_link": "https://rmm.example.com/devices/4711",
    "user_impact": "The finance team cannot print the Q3 report",
}
# A queue named in the config, no channel configured for it: typed text too.
TEAMS_QUEUE = "**net** _ops_"
SLACK_QUEUE = "*net* _ops_"
CSAT = {"delay": "0s", "vip_followup_delay": "1s"}


# -- Teams -------------------------------------------------------------------------------------


async def answered(t: TeamsFlow, conversation: str, sent: dict[str, Any]) -> str:
    """Send `sent`; the raw text of the bot's next text message in `conversation`."""
    before = len(t.fake.activities(conversation))
    assert (await t.app.teams(sent)).status == 201

    def texts() -> list[str]:
        new = t.fake.activities(conversation)[before:]
        return [str(a["text"]) for a in new if a.get("text") and not a.get("attachments")]

    await wait_until(lambda: texts() != [], what="the answer")
    return texts()[0]


async def told(t: TeamsFlow, conversation: str, words: str) -> str:
    """The raw text of the one message in `conversation` containing `words` (as read)."""
    await wait_until(lambda: t.texts(conversation, words), what=repr(words))
    [text] = t.texts(conversation, words)
    return text


async def test_teams_typed_text_is_literal_and_the_bots_words_are_as_written(
    make_app: Any, connector: FakeConnector
) -> None:
    config = teams_config(connector, csat=CSAT, escalation={"queues": {"printer": TEAMS_QUEUE}})
    app: AppHarness = await make_app(config=config, people=PEOPLE)
    t = TeamsFlow(app, connector)
    number = await t.ticket(requester="ana@example.com")
    url = connector.service_url

    def said(text: str) -> dict[str, Any]:
        return teams_message(url, text)

    # (what, the raw text of the answer or notice, what it must be / hold)
    seen: list[tuple[str, str, str]] = []
    usage = "Try `ticket time HD-7 45m [note]` (durations like 45m, 1h30m, 1.5h or 30 min)."
    text = await answered(t, PERSONAL, said(f"ticket time {number}"))
    seen.append(("time usage", text, f"How long did you work on {number}? {usage}"))
    text = await answered(t, PERSONAL, said(f"ticket time {number} 1h 30 {HOSTILE}"))
    seen.append(("bare number", text, "'1h 30': 30 what? Write 1h 30m for minutes."))
    text = await answered(t, PERSONAL, said(f"ticket time {number} 45m {HOSTILE}"))
    seen.append(("time logged, typed note", text, f"Logged 45m on {number} (total 45m)."))

    # Still broken with a comment: the technician is told, the comment as typed.
    await t.say(f"ticket confirm {number}")
    chat, question = await t.dm_card(ANA, "Still broken")
    await t.invoke(t.invoke_body(question, "Still broken", ANA, chat, comment=HOSTILE))
    text = await told(t, PERSONAL, "is still broken after the fix")
    seen += [
        ("still broken: typed comment", text, f'They wrote: "{TEAMS_HOSTILE}"'),
        ("still broken: own words", text, f"then `ticket confirm {number}` asks again."),
        ("still broken: who", text, "Ana User (ana@example.com) says"),
    ]

    # A file named like markup, on a message naming the ticket.
    image = "https://smba.trafficmanager.net/amer/v3/attachments/0-abc/views/original"
    shared = teams_message(
        url,
        f"Screenshot for {number}",
        user=ANA,
        conversation="a:1ana-chat",
        attachments=[{"contentType": "image/png", "contentUrl": image, "name": f"{HOSTILE}.png"}],
    )
    text = await answered(t, "a:1ana-chat", shared)
    seen.append(
        (
            "files added",
            text,
            f"Added to {number}: {TEAMS_HOSTILE}.png (see `ticket show {number}`).",
        )
    )

    # Escalated to a queue the config names like markup, with no channel for it.
    form = card_of((await t_said(t, f"ticket escalate {number}"))[-1])
    data = {**submit_action(form)["fallback"]["data"], **FACTS, "queue": TEAMS_QUEUE}
    escalated = teams_message(url, "", value=data)
    text = await answered(t, PERSONAL, escalated)
    queue = r"\*\*net\*\* \_ops\_"
    seen += [
        (
            "escalated",
            text,
            f"{number} was escalated to {queue} by Tom Tech (tom@example.com). Queue {queue} "
            "has no Slack or Teams channel configured (`queues:`), so nobody was notified: "
            "hand it over directly.",
        ),
    ]

    # Closed; Ana rates 1 with a comment: the technician hears it as she typed it.
    form = card_of((await t_said(t, f"ticket close {number}"))[-1])
    close = {
        **submit_action(form)["fallback"]["data"],
        "resolution_note": GOOD_NOTE,
        "resolution_category": "Incident",
        "time_spent": "",
        "kb_article": "",
    }
    await t_said(t, "", value=close)
    survey_chat, survey = await sent_card(t, "How did we do")
    await t.invoke(t.invoke_body(survey, "1", ANA, survey_chat, comment=HOSTILE))
    text = await told(t, PERSONAL, "was rated 1/5")
    seen.append(
        (
            "low rating",
            text,
            f'{number} was rated 1/5 by Ana User (ana@example.com). They wrote: "{TEAMS_HOSTILE}"'
            " Please get in touch with them.",
        )
    )

    problems = [
        f"{what}: {expected!r} not in {text!r}"
        for what, text, expected in seen
        if expected not in text
    ]
    assert not problems, "\n".join(problems)
    # The bot's own words are never escaped: no backslash but before typed markup.
    for what, text, _ in seen:
        assert "\\`" not in text and "\\(" not in text and "\\-" not in text, (what, text)


async def sent_card(t: TeamsFlow, words: str) -> tuple[str, dict[str, Any]]:
    """(conversation, card) of the one card with `words` the bot sent anywhere."""

    def found() -> list[dict[str, Any]]:
        sent = [a for a in t.fake.activities() if a.get("attachments")]
        return [a for a in sent if words in json.dumps(a)]

    await wait_until(lambda: found() != [], what=repr(words))
    [posted] = found()
    return posted["_conversation_id"], card_of(posted)


async def t_said(t: TeamsFlow, text: str, **fields: Any) -> list[dict[str, Any]]:
    """Send a message (or a form's values) in Tom's chat; the bot's cards in answer."""
    before = len(t.fake.activities(PERSONAL))
    assert await t.say(text, **fields) == 201

    def cards() -> list[dict[str, Any]]:
        return [a for a in t.fake.activities(PERSONAL)[before:] if a.get("attachments")]

    await wait_until(lambda: cards() != [], what="the card in answer")
    return cards()


async def test_teams_the_breach_in_the_channel_shows_summary_and_client_as_typed(
    make_app: Any, connector: FakeConnector
) -> None:
    clock, t0 = sla.sla_clock()
    config = {**sla.CONFIG, "sla": {"warn_before": "10m"}}
    app: AppHarness = await make_app(config=config, people=TEAMS_PEOPLE, clock=clock)
    url = connector.service_url
    form = card_of(
        (await sla.say(app, connector, teams_message(url, "ticket new", conversation=CHANNEL)))[-1]
    )
    values = form_values(summary=HOSTILE, client="<b>Acme</b> *Corp*", priority="P1")
    data = {**submit_action(form)["fallback"]["data"], **values}
    await sla.say(app, connector, teams_message(url, "", conversation=CHANNEL, value=data))
    await wait_until(lambda: sla._carded(app), what="the ticket card in the channel")

    def breaches() -> list[dict[str, Any]]:
        return [
            a
            for a in connector.activities(CHANNEL)
            if "SLA breach on" in str(a.get("text")) and a["_reply_to_id"] is None
        ]

    clock.set(t0 + timedelta(minutes=30))
    await sla.arrives(breaches, "the breach in the channel")
    [breach] = breaches()
    due = (t0 + timedelta(minutes=30)).strftime("%H:%M UTC")
    assert breach["text"] == (
        rf"SLA breach on HD-1 (P1, \<b>Acme\</b> \*Corp\*): respond target missed (due {due}). "
        rf"{TEAMS_HOSTILE} - technician Tom Tech (tech@example.com)."
    )


# -- Slack -------------------------------------------------------------------------------------


def paragraphs(post: dict[str, Any]) -> list[dict[str, Any]]:
    """The text objects of a message's section blocks."""
    return [b["text"] for b in post.get("blocks", []) if b.get("type") == "section" and "text" in b]


def literal(post: dict[str, Any], words: str) -> dict[str, Any]:
    """The paragraph of `post` holding `words`."""
    [found] = [p for p in paragraphs(post) if words in p["text"]]
    return found


def no_pings(post: dict[str, Any]) -> None:
    rendered = json.dumps(post)
    assert "<!here>" not in rendered and "<@UEVE>" not in rendered, rendered
    assert "<https://" not in rendered


async def test_slack_typed_text_is_literal_and_the_bots_words_are_mrkdwn(
    make_app: Any, slack_api: FakeSlack
) -> None:
    config = {"csat": CSAT, "escalation": {"queues": {"printer": SLACK_QUEUE}}}
    app: AppHarness = await make_app(slack=slack_api, config=config, people=PEOPLE)
    s = SlackFlow(app, slack_api)
    number = await s.ticket()

    # The bot's own words: mrkdwn, its backticks code.
    usage = await (await app.slash(f"time {number}")).json()
    said = literal(usage, "ticket time HD-7")
    assert said["type"] == "mrkdwn"
    assert "Try `/ticket time HD-7 45m [note]` (durations like" in said["text"]

    # Still broken, then a comment typed like markup and pings: the technician's thread.
    await s.command(f"confirm {number}")
    await wait_until(lambda: s.dms("UANA", "Still broken"), what="the question")
    [question] = s.dms("UANA", "Still broken")
    assert await s.press(question, "Still broken", "UANA") == ""
    view = slack_api.views_opened()[-1]["view"]
    await wait_until(lambda: s.thread(number, "is still broken"), what="the technician told")
    [first] = s.thread(number, "is still broken")
    own = literal(first, "is still broken")
    assert own["type"] == "mrkdwn" and f"`/ticket confirm {number}` asks again" in own["text"]
    await s.submit(view, {"comment": {"type": "plain_text_input", "value": SLACK_HOSTILE}}, "UANA")
    await wait_until(lambda: s.thread(number, "(still broken) wrote"), what="the comment")
    [comment] = s.thread(number, "(still broken) wrote")
    shown = literal(comment, "(still broken) wrote")
    assert shown["type"] == "plain_text" and f'"{SLACK_SHOWN}"' in shown["text"], shown
    no_pings(comment)

    # Escalated to a queue the config names like markup: the thread hears it as written.
    escalate = await s.modal(f"escalate {number}")
    states = {k: {"type": "plain_text_input", "value": v} for k, v in FACTS.items()}
    states["queue"] = {"type": "static_select", "selected_option": {"value": SLACK_QUEUE}}
    await app.interactive(view_submission(escalate, states, view_id="VESC-RT"))
    await wait_until(lambda: s.thread(number, "was escalated to"), what="the escalation")
    [escalated] = s.thread(number, "was escalated to")
    shown = literal(escalated, "was escalated to")
    assert shown["type"] == "plain_text", shown
    assert (
        f"{number} was escalated to {SLACK_QUEUE} by Tom Tech (tom@example.com)." in (shown["text"])
    )

    # Closed with a note typed like markup: the thread hears it as typed.
    await closure_slack.submit_close(app, slack_api, number, note=f"{GOOD_NOTE} {SLACK_HOSTILE}")
    await wait_until(lambda: s.thread(number, "was closed by"), what="the closed notice")
    [closed] = s.thread(number, "was closed by")
    shown = literal(closed, "was closed by")
    assert shown["type"] == "plain_text", shown
    assert (
        f"{number} was closed by Tom Tech (tom@example.com) (Incident): {GOOD_NOTE} "
        in (shown["text"])
    )
    assert SLACK_SHOWN in shown["text"]
    no_pings(closed)

    # Ana rates 1, then comments: the technician hears the comment as she typed it.
    await wait_until(lambda: s.dms("UANA", "How did we do"), what="the survey")
    [dm] = s.dms("UANA", "How did we do")
    await closure_slack.click(app, slack_api, dm, "1", "UANA")
    await wait_until(lambda: s.thread(number, "was rated 1/5"), what="the low rating")
    [rated] = s.thread(number, "was rated 1/5")
    own = literal(rated, "was rated 1/5")
    assert own["type"] == "mrkdwn" and "by Ana User (ana@example.com)." in own["text"]
    assert "<@UANA>" not in json.dumps(rated)  # named for the technician, not pinged
    opened = len(slack_api.views_opened())
    await closure_slack.click_without_answer(app, slack_api, dm, "Add a comment", "UANA")
    await slack_api.wait_for_method("views.open", count=opened + 1)
    form = slack_api.views_opened()[-1]["view"]
    values = {"comment": {"type": "plain_text_input", "value": SLACK_HOSTILE}}
    await app.interactive(view_submission(form, values, user="UANA", view_id="VCM-RT"))
    await wait_until(lambda: s.thread(number, "added a comment"), what="the comment alert")
    [alert] = s.thread(number, "added a comment")
    shown = literal(alert, "added a comment")
    assert shown["type"] == "plain_text", shown
    assert f'1/5 rating of {number}: "{SLACK_SHOWN}" Please get in touch' in shown["text"]
    no_pings(alert)


async def test_slack_the_breach_in_the_channel_shows_summary_and_client_as_typed(
    make_app: Any, slack_api: FakeSlack
) -> None:
    clock, t0 = sla.sla_clock()
    app = await sla.start(make_app, slack_api, clock)
    row = await sla.open_ticket(app, slack_api, summary=SLACK_HOSTILE, client="<!channel> *Acme*")
    clock.set(t0 + timedelta(hours=2))
    await sla.arrives(lambda: sla.in_channel(slack_api, row, "SLA breach"), "the breach")
    await asyncio.sleep(0.3)
    [breach] = sla.in_channel(slack_api, row, "SLA breach")
    shown = literal(breach, "SLA breach on")
    assert shown["type"] == "plain_text", shown
    assert shown["text"] == (
        f"SLA breach on {row.number} (P2, &lt;!channel&gt; *Acme*): respond target missed "
        f"(due 11:00 UTC). {SLACK_SHOWN} - technician Tom Tech (tom@example.com)."
    )
    rendered = json.dumps(breach)
    assert "<!channel>" not in rendered and "<@UTECH>" not in rendered
    no_pings(breach)


# -- reports filed under a P1 ------------------------------------------------------------------


async def test_slack_reports_filed_under_a_p1_hear_its_summary_and_closure_as_typed(
    make_app: Any, slack_api: FakeSlack
) -> None:
    app: AppHarness = await make_app(slack=slack_api, config={"csat": CSAT}, people=PEOPLE)
    s = SlackFlow(app, slack_api)
    p1 = await s.ticket(
        priority="P1", users=40, asset="VPN-01", summary=f"VPN down {SLACK_HOSTILE}"
    )
    report = await s.ticket(requester="UBOB", asset="vpn-01", summary=f"No VPN {SLACK_HOSTILE}")
    assert f"{report} is filed under {p1}" in await s.command(f"link {report} {p1}")

    # Bob is told which incident his report is part of, both summaries as typed.
    await wait_until(lambda: s.dms("UBOB", "part of the incident"), what="Bob told")
    [filed] = s.dms("UBOB", "part of the incident")
    shown = literal(filed, "part of the incident")
    assert shown["type"] == "plain_text", shown
    assert shown["text"] == (
        f'Your report {report} ("No VPN {SLACK_SHOWN}") is part of the incident {p1} ("VPN '
        f'down {SLACK_SHOWN}"), which the help desk is working on now. You will hear from us '
        "when it is resolved."
    )
    no_pings(filed)

    # The P1 closed with a note typed like markup: the report's thread hears it as typed.
    await s.close(p1, note=f"Replaced the power supply of VPN-01 {SLACK_HOSTILE}")
    await wait_until(lambda: s.thread(report, "was closed with"), what="the report's notice")
    [closed] = s.thread(report, "was closed with")
    shown = literal(closed, "was closed with")
    assert shown["type"] == "plain_text", shown
    assert (
        f"{report} was closed with {p1} by Tom Tech (tom@example.com) (Incident): Replaced the "
        f"power supply of VPN-01 {SLACK_SHOWN}"
    ) in shown["text"]
    no_pings(closed)

    # The P1's personal follow-up reaches the technician, its summary as typed.
    await wait_until(lambda: s.dms("UTECH", "Personal follow-up"), what="the follow-up")
    [followup] = s.dms("UTECH", "Personal follow-up")
    assert f"VPN down {SLACK_SHOWN}" in json.dumps(followup)
    no_pings(followup)


async def test_teams_reports_filed_under_a_p1_hear_its_summary_and_closure_as_typed(
    make_app: Any, connector: FakeConnector
) -> None:
    app: AppHarness = await make_app(config=teams_config(connector, csat=CSAT), people=PEOPLE)
    t = TeamsFlow(app, connector)
    p1 = await t.ticket(
        requester="ana@example.com", priority="P1", users_affected="40", summary=f"VPN {HOSTILE}"
    )
    report = await t.ticket(requester="bob@example.com", summary=f"No VPN {HOSTILE}")
    linked = await answered(
        t, PERSONAL, teams_message(connector.service_url, f"ticket link {report} {p1}")
    )
    assert linked.startswith(f"{report} is filed under {p1}: ") and "\\" not in linked

    def sent(words: str) -> list[str]:
        return [str(a.get("text")) for a in connector.activities() if words in str(a.get("text"))]

    await wait_until(lambda: sent("part of the incident"), what="Bob told")
    [filed] = sent("part of the incident")
    assert filed == (
        f'Your report {report} ("No VPN {TEAMS_HOSTILE}") is part of the incident {p1} ("VPN '
        f'{TEAMS_HOSTILE}"), which the help desk is working on now. You will hear from us when '
        "it is resolved."
    )

    form = card_of((await t_said(t, f"ticket close {p1}"))[-1])
    close = {
        **submit_action(form)["fallback"]["data"],
        "resolution_note": f"Replaced the power supply of VPN-01 {HOSTILE}",
        "resolution_category": "Incident",
        "time_spent": "1h",
        "kb_article": "",
    }
    await t_said(t, "", value=close)
    await wait_until(lambda: sent("was closed with"), what="the report's notice")
    [closed] = sent("was closed with")
    assert closed.endswith(
        f"{report} was closed with {p1} by Tom Tech (tom@example.com) (Incident): Replaced the "
        f"power supply of VPN-01 {TEAMS_HOSTILE}"
    ), closed


# -- people's names: the directory's, typed by whoever keeps it --------------------------------

NAME = "Ana [x](https://evil.example) *A*"
NAMED = [{**p, "name": NAME} if p["email"] == "ana@example.com" else p for p in PEOPLE]


async def test_teams_the_requesters_name_is_shown_as_the_directory_has_it(
    make_app: Any, connector: FakeConnector
) -> None:
    app: AppHarness = await make_app(config=teams_config(connector), people=NAMED)
    t = TeamsFlow(app, connector)
    number = await t.ticket(requester="ana@example.com")
    name = r"Ana \[x\](https://evil.example) \*A\*"
    url = connector.service_url
    asked = await answered(t, PERSONAL, teams_message(url, f"ticket confirm {number}"))
    assert asked == (
        f"Asked {name} (ana@example.com) on Microsoft Teams to try what they were doing on "
        f"{number} and answer Works now or Still broken."
    )
    chat, question = await t.dm_card(ANA, "Works now")
    await t.invoke(t.invoke_body(question, "Works now", ANA, chat))
    works = await told(t, PERSONAL, "confirmed the fix for")
    assert works.startswith(f"{name} (ana@example.com) confirmed the fix for {number}: works now")
    again = await answered(t, PERSONAL, teams_message(url, f"ticket confirm {number}"))
    assert again.startswith(f"{number}: {name} (ana@example.com) already confirmed the fix")


async def test_slack_the_requesters_name_is_shown_as_the_directory_has_it(
    make_app: Any, slack_api: FakeSlack
) -> None:
    app: AppHarness = await make_app(slack=slack_api, people=NAMED)
    s = SlackFlow(app, slack_api)
    number = await s.ticket()
    asked = await (await app.slash(f"confirm {number}")).json()
    shown = literal(asked, "to try what they were doing")
    assert shown["type"] == "plain_text", shown  # `*A*` would be bold in mrkdwn
    assert shown["text"].startswith(f"Asked {NAME} (ana@example.com) on Slack")
    assert "<@UANA>" not in json.dumps(asked)  # named, not mentioned
