"""Every state-changing command and submission is idempotent under redelivery (issue 16.3).

For every route the dispatcher registers as changing state, on Slack and on Teams, the same
delivery is sent twice: a Slack retry (`X-Slack-Retry-Num`, same body) or a Teams activity with
the same id. Everything the first one did (tickets, time entries, checks, audit events, outbox
rows, and what reached Slack, the connector and PagerDuty: DMs, pages, notices, escalations)
is counted before and after the retry; the retry adds nothing, and its own answer is the first
one's where that was the response (a Slack command, a Teams invoke: the person never saw the
first, test_answer_replay), else empty (a Teams message's answer was sent once already).
A refused or failed delivery is not remembered: its corrected resubmission (the same Slack
modal, the same view id) goes through.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import pytest
from sqlalchemy import func, select, text, update

from handlers.dispatch import ACTIONS, COMMANDS, EVENTS
from handlers.replay import FORM_AGAIN
from storage.inbound import KEEP
from storage.models import (
    CsatSurvey,
    FixConfirmation,
    IdentityCheck,
    InboundDelivery,
    OutboxMessage,
    Ticket,
    TicketAttachment,
    TicketEvent,
    TimeEntry,
)
from tests.fakes.botframework import FakeConnector
from tests.fakes.pagers import FakePagerDuty
from tests.fakes.slack_api import FakeSlack
from tests.harness import AppHarness, block_actions, view_submission, wait_until
from tests.harness import slack_button as button
from tests.http.conftest_teams import (
    PERSONAL,
    TECH_ID,
    TENANT,
    activity,
    card_of,
    form_values,
    next_id,
)
from tests.http.p1_support import pager_env

FORM = "application/x-www-form-urlencoded"
RETRY = {"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"}
ANA_TEAMS, BO_TEAMS = "29:1ana", "29:1bo"
PEOPLE = [
    {
        "email": "ana@example.com",
        "name": "Ana Lopez",
        "slack_id": "U0ANA",
        "teams_id": ANA_TEAMS,
        "manager": "bo@example.com",
    },
    {"email": "bo@example.com", "name": "Bo Boss", "slack_id": "U0BO", "teams_id": BO_TEAMS},
    # No manager: confirmed by a technician's call-back on the number on file.
    {
        "email": "cy@example.com",
        "name": "Cy Solo",
        "slack_id": "U0CY",
        "teams_id": "29:1cy",
        "phone": "+1 555 0199",
    },
    {
        "email": "tom@example.com",
        "name": "Tom Tech",
        "slack_id": "UTECH",
        "teams_id": TECH_ID,
        "technician": True,
    },
]
REPORTS = "19:reports@thread.tacv2"
GOOD_NOTE = "Cleared the print queue on PRN-0042 and reinstalled the HP UPD 7.1 driver"
FACTS = {
    "repro_steps": "Print the Q3 report from Excel on floor 3",
    "error_text": "Error 0x8007001F: paper path",
    "already_tried": "Power cycled the printer and cleared the queue",
    "asset_link": "PRN-0042",
    "user_impact": "Ana cannot print the invoices due today",
    "queue": "networking",
}
CLOSE = {
    "resolution_note": GOOD_NOTE,
    "resolution_category": "Incident",
    "time_spent": "1h",
    "kb_article": "KB0012345",  # the filed reports make a pattern: SPEC asks for one
}


def state_changing_routes() -> set[str]:
    """Every registered route that changes state: commands by verb, actions by id, events
    by name."""
    return (
        {verb for verb, r in COMMANDS.items() if r.changes_state}
        | {action.value for action, r in ACTIONS.items() if r.changes_state}
        | {event for event, r in EVENTS.items() if r.changes_state}
    )


@dataclass
class Step:
    """One state-changing route: `prepare` does the read-only part (opening a form, finding a
    button) and returns `send(retry)`, which delivers the same request once more each call."""

    route: str
    prepare: Callable[[], Awaitable[Callable[[bool], Awaitable[tuple[int, str]]]]]
    # What the retry may answer (besides nothing at all).
    retry_answer: str = ""


# -- counting everything a delivery can do ---------------------------------------------------


# Rows put back for a few seconds (posts to one Slack channel are paced, a follow-up waits
# for what it follows) are still owed: only rows due later than this (a VIP reminder) are not.
SOON = timedelta(seconds=10)


async def settled(app: AppHarness) -> None:
    """Nothing due (or due within seconds) is left in the outbox, and Slack's post-ack calls
    have run."""

    async def idle() -> bool:
        async with app.services.sessions() as session:
            query = select(func.count()).where(
                OutboxMessage.status == "pending", OutboxMessage.due_at <= datetime.now(UTC) + SOON
            )
            return (await session.execute(query)).scalar_one() == 0

    # Post-ack work may queue rows (the report's chart): it goes first, then the outbox.
    if app.services.slack is not None:
        await app.services.slack.drain()
    await wait_until(idle, timeout=20, what="the outbox to drain")
    if app.services.slack is not None:
        await app.services.slack.drain()


async def snapshot(
    app: AppHarness,
    slack: FakeSlack | None,
    connector: FakeConnector | None,
    pagerduty: FakePagerDuty,
) -> dict[str, Any]:
    counts: dict[str, Any] = {}
    async with app.services.sessions() as session:
        for model in (Ticket, TimeEntry, IdentityCheck, FixConfirmation, TicketAttachment):
            query = select(func.count()).select_from(model)
            counts[model.__tablename__] = (await session.execute(query)).scalar_one()
        surveys = await session.execute(select(CsatSurvey.rating, CsatSurvey.comment))
        counts["surveys"] = sorted((r or 0, c) for r, c in surveys)
        kinds = await session.execute(select(TicketEvent.kind))
        counts["events"] = Counter(kinds.scalars())
        fixed = await session.execute(select(Ticket.number, Ticket.fix_state, Ticket.filed_under))
        counts["tickets"] = sorted(tuple(str(v) for v in row) for row in fixed)
        rows = (await session.execute(select(OutboxMessage))).scalars()
        counts["outbox"] = Counter(f"{r.kind}:{r.payload.get('purpose') or ''}" for r in rows)
    counts["pages"] = len(pagerduty.events())
    if slack is not None:
        counts["slack"] = Counter(c.method for c in slack.api_calls() if c.method != "auth.test")
        counts["slack responses"] = len(slack.responses())
    if connector is not None:
        counts["teams activities"] = len(connector.activities())
        counts["teams chats"] = len(connector.created_conversations())
        counts["teams updates"] = len(connector.updates())
    return counts


async def deliver_twice(
    app: AppHarness, steps: list[Step], look: Callable[[], Awaitable[dict[str, Any]]]
) -> None:
    done: set[str] = set()
    for step in steps:
        send = await step.prepare()
        await settled(app)
        before = await look()
        first_status, first_body = await send(False)
        assert first_status in (200, 201), (step.route, first_status, first_body)
        await settled(app)
        after_first = await look()
        assert after_first != before, f"{step.route}: the first delivery did nothing"
        status, body = await send(True)
        assert status in (200, 201), (step.route, status, body)
        if step.retry_answer and step.retry_answer in body:
            pass
        elif first_body:  # the response was the answer: given again, as it was
            assert body == first_body, f"{step.route}: the retry answered {body!r}"
        else:
            assert body == "", f"{step.route}: the retry answered {body!r}"
        await settled(app)
        after_retry = await look()
        changed = {k: (after_first[k], v) for k, v in after_retry.items() if after_first[k] != v}
        assert not changed, f"{step.route}: the retry changed {changed}"
        done.add(step.route)
    assert done >= state_changing_routes(), state_changing_routes() - done


def test_every_route_is_declared_and_the_tests_cover_every_state_changing_one() -> None:
    for name, route in [*COMMANDS.items(), *ACTIONS.items(), *EVENTS.items()]:
        assert isinstance(route.changes_state, bool), name
    # Forms, show, mine and help may simply run again; everything else is covered below.
    # Opening the escalation or closure form is the ticket's first response (SPEC, SLA); a
    # report uploads or attaches its chart, which a retry must not do again.
    assert state_changing_routes() == {
        "verify",
        "escalate",
        "close",
        "ticket.escalate",
        "ticket.close",
        "p1",
        "time",
        "ticket.create",
        "ticket.verify",
        "ticket.escalate.submit",
        "ticket.close.submit",
        "identity.approve",
        "identity.deny",
        "identity.called_back",
        "csat.rate",
        "csat.comment",
        "confirm",
        "link",
        "fix.works",
        "fix.broken",
        "fix.comment",
        "ticket.file_under",
        "ticket.message",
        "report",
    }


# -- Slack -----------------------------------------------------------------------------------


class SlackDriver:
    def __init__(self, app: AppHarness, fake: FakeSlack) -> None:
        self.app, self.fake = app, fake
        self.n = 0

    def _next(self) -> int:
        self.n += 1
        return self.n

    def sender(self, body: str) -> Callable[[bool], Awaitable[tuple[int, str]]]:
        async def send(retry: bool) -> tuple[int, str]:
            response = await self.app.slack(body, content_type=FORM, headers=RETRY if retry else {})
            return response.status, await response.text()

        return send

    def json_sender(self, body: str) -> Callable[[bool], Awaitable[tuple[int, str]]]:
        """An Events API delivery (JSON), retried with the same body."""

        async def send(retry: bool) -> tuple[int, str]:
            headers = RETRY if retry else {}
            response = await self.app.slack(body, content_type="application/json", headers=headers)
            return response.status, await response.text()

        return send

    async def thread_of(self, number: str) -> str:
        async with self.app.services.sessions() as session:
            query = select(Ticket.source_thread).where(Ticket.number == number)
            found = (await session.execute(query)).scalar_one()
        assert found
        return str(found)

    async def next_number(self) -> str:
        async with self.app.services.sessions() as session:
            count = (await session.execute(select(func.count()).select_from(Ticket))).scalar_one()
        return f"HD-{count + 1}"

    async def new_ticket(self, summary: str) -> str:
        """A ticket like HD-1 (same client and asset), its card posted; its number."""
        number = await self.next_number()
        view = await self.modal(f"new {summary}")
        sent = await self.app.slack(self.submission(view, intake(summary)), content_type=FORM)
        assert sent.status == 200
        await wait_until(lambda: any(number in json.dumps(p) for p in self.posts("C0HELP")))
        return number

    def command(self, text: str, user: str = "UTECH") -> str:
        form = {
            "command": "/ticket",
            "text": text,
            "user_id": user,
            "user_name": user.lower(),
            "channel_id": "C0HELP",
            "team_id": "T0TEAM",
            "response_url": self.fake.response_url_for(f"cmd{self._next()}"),
            "trigger_id": f"trigger-{self.n}-{time.monotonic_ns()}",
        }
        return urlencode(form)

    async def modal(self, text: str) -> dict[str, Any]:
        opened = len(self.fake.views_opened())
        assert (await self.app.slack(self.command(text), content_type=FORM)).status == 200
        await self.fake.wait_for_method("views.open", count=opened + 1)
        return self.fake.views_opened()[-1]["view"]

    def submission(self, view: dict[str, Any], values: dict[str, Any], user: str = "UTECH") -> str:
        payload = view_submission(view, values, user=user, view_id=f"V{self._next()}")
        return urlencode({"payload": json.dumps(payload)})

    def press(self, post: dict[str, Any], title: str, user: str) -> str:
        n = self._next()
        payload = block_actions(
            button(post, title),
            user=user,
            channel=post["channel"],
            n=n,
            response_url=self.fake.response_url_for(f"r{n}"),
        )
        return urlencode({"payload": json.dumps(payload)})

    def posts(self, channel: str) -> list[dict[str, Any]]:
        return [p for p in self.fake.posts() if p.get("channel") == channel]

    def last_with(self, channel: str, title: str) -> dict[str, Any]:
        found = [p for p in self.posts(channel) if title in json.dumps(p.get("blocks"))]
        assert found, f"no message with {title!r} in {channel}"
        return found[-1]


def _text(value: str) -> dict[str, Any]:
    return {"type": "plain_text_input", "value": value}


def _choice(value: str) -> dict[str, Any]:
    return {"type": "static_select", "selected_option": {"value": value}}


def intake(summary: str = "Printer jams on floor 3") -> dict[str, Any]:
    return {
        "requester": {"type": "users_select", "selected_user": "U0ANA"},
        "summary": _text(summary),
        "error_text": _text("Error 0x8007001F: paper path"),
        "doing": _text("Printing the Q3 report"),
        "reproducible": _choice("yes"),
        "users_affected": {"type": "number_input", "value": "1"},
        "priority": _choice("P3"),
        "category": _choice("printer"),
        "asset": _text("PRN-0042"),
        "client": _text("Acme"),
    }


def slack_steps(s: SlackDriver) -> list[Step]:
    async def create() -> Any:
        return s.sender(s.submission(await s.modal("new Printer jams"), intake()))

    async def command(text: str) -> Any:
        return s.sender(s.command(text))

    async def verify_button() -> Any:
        return s.sender(
            s.press(s.last_with("C0HELP", "Verify identity"), "Verify identity", "UTECH")
        )

    async def answer(title: str) -> Any:
        return s.sender(s.press(s.last_with("DU0BO", title), title, "U0BO"))

    async def escalate() -> Any:
        view = await s.modal("escalate HD-1")
        values = {k: _choice(v) if k == "queue" else _text(v) for k, v in FACTS.items()}
        return s.sender(s.submission(view, values))

    async def close() -> Any:
        view = await s.modal("close HD-1")
        values = {
            k: _choice(v) if k == "resolution_category" else _text(v) for k, v in CLOSE.items()
        }
        return s.sender(s.submission(view, values))

    async def rate() -> Any:
        return s.sender(s.press(s.last_with("DU0ANA", "How did we do"), "2", "U0ANA"))

    async def comment_button() -> Any:
        return s.sender(s.press(s.last_with("DU0ANA", "How did we do"), "Add a comment", "U0ANA"))

    async def comment() -> Any:
        view = s.fake.views_opened()[-1]["view"]
        return s.sender(s.submission(view, {"comment": _text("Slow, but fixed")}, user="U0ANA"))

    async def second_ticket_to_deny() -> Any:
        number = await s.new_ticket("Jams again")
        assert (await s.app.slack(s.command(f"verify {number}"), content_type=FORM)).status == 200
        await wait_until(lambda: any(number in json.dumps(p) for p in s.posts("DU0BO")))
        return await answer("Deny")

    async def called_back() -> Any:
        number = await s.next_number()
        view = await s.modal("new Cy is locked out")
        values = {**intake("Cy is locked out"), "requester": {"type": "users_select",
                                                              "selected_user": "U0CY"}}  # fmt: skip
        assert (await s.app.slack(s.submission(view, values), content_type=FORM)).status == 200
        await wait_until(lambda: any(number in json.dumps(p) for p in s.posts("C0HELP")))
        assert (await s.app.slack(s.command(f"verify {number}"), content_type=FORM)).status == 200
        title = "Called back: confirmed"
        # The notice (the number on file, the button) is Tom's direct message.
        await wait_until(
            lambda: any(
                title in json.dumps(p) and number in json.dumps(p) for p in s.posts("DUTECH")
            )
        )
        return s.sender(s.press(s.last_with("DUTECH", title), title, "UTECH"))

    async def fresh() -> str:
        """A new ticket nobody has answered yet (its first response is still to come)."""
        number = await s.new_ticket("Jams once more")
        await settled(s.app)
        return number

    async def form_command(verb: str) -> Any:
        return s.sender(s.command(f"{verb} {await fresh()}"))

    async def card_button(title: str) -> Any:
        number = await fresh()
        card = next(p for p in reversed(s.posts("C0HELP")) if f"{number} (P" in json.dumps(p))
        return s.sender(s.press(card, title, "UTECH"))

    async def fix(title: str) -> Any:
        return s.sender(s.press(s.last_with("DU0ANA", title), title, "U0ANA"))

    async def fix_comment() -> Any:
        view = s.fake.views_opened()[-1]["view"]
        assert view["callback_id"] == "fix.comment"
        values = {"comment": _text("Still jams on tray 2")}
        return s.sender(s.submission(view, values, user="U0ANA"))

    async def file_under_button() -> Any:
        number = await s.new_ticket("Jams on floor 3 too")
        card = next(p for p in reversed(s.posts("C0HELP")) if f"{number} (P" in json.dumps(p))
        return s.sender(s.press(card, "Add to HD-1", "UTECH"))

    async def link() -> Any:
        number = await s.new_ticket("Jams on floor 4 as well")
        return s.sender(s.command(f"link {number} HD-1"))

    async def file_in_thread() -> Any:
        thread = await s.thread_of("HD-1")
        event = {
            "type": "message",
            "subtype": "file_share",
            "channel": "C0HELP",
            "user": "U0ANA",
            "text": "the paper path",
            "ts": f"{time.time():.6f}",
            "thread_ts": thread,
            "files": [
                {
                    "id": "F0JAM",
                    "name": "jam.jpg",
                    "mimetype": "image/jpeg",
                    "size": 1000,
                    "permalink": "https://acme.slack.com/files/U0ANA/F0JAM/jam.jpg",
                }
            ],
        }
        body = {"type": "event_callback", "team_id": "T0TEAM", "api_app_id": "A0APP",
                "event_id": "Ev0JAM", "event_time": int(time.time()), "event": event}  # fmt: skip
        return s.json_sender(json.dumps(body))

    return [
        Step("ticket.create", create),
        Step("report", lambda: command("report")),
        Step("time", lambda: command("time HD-1 30m")),
        Step("verify", lambda: command("verify HD-1")),
        Step("ticket.verify", verify_button),
        Step("identity.approve", lambda: answer("Approve")),
        Step("confirm", lambda: command("confirm HD-1")),
        Step("fix.broken", lambda: fix("Still broken")),
        Step("fix.comment", fix_comment),
        Step("confirm", lambda: command("confirm HD-1")),
        Step("fix.works", lambda: fix("Works now")),
        Step("p1", lambda: command("p1 HD-1")),
        Step("ticket.file_under", file_under_button),
        Step("link", link),
        Step("ticket.message", file_in_thread),
        Step("ticket.escalate.submit", escalate),
        Step("ticket.close.submit", close),
        Step("csat.rate", rate),
        Step("csat.comment", comment_button),
        Step("csat.comment", comment),
        Step("identity.deny", second_ticket_to_deny),
        Step("identity.called_back", called_back),
        # The form opened with the command's trigger id (single-use, good for 3 s): its retry
        # says how to get it (the first may have opened it).
        Step("escalate", lambda: form_command("escalate"), FORM_AGAIN),
        Step("close", lambda: form_command("close"), FORM_AGAIN),
        Step("ticket.escalate", lambda: card_button("Escalate")),
        Step("ticket.close", lambda: card_button("Close")),
    ]


async def test_slack_retries_change_nothing_twice(
    make_app: Any, slack_api: FakeSlack, pagerduty: FakePagerDuty
) -> None:
    config = {
        "slack": {"incident_channel": "C0INCIDENT"},
        "queues": {"security": {"slack": "C0SECURITY"}, "networking": {"slack": "C0NETWORK"}},
        "escalation": {"queues": {"printer": "networking"}},
        "csat": {"delay": "0s"},
    }
    app: AppHarness = await make_app(
        slack=slack_api, config=config, people=PEOPLE, env=pager_env(pagerduty, None)
    )
    driver = SlackDriver(app, slack_api)
    await deliver_twice(app, slack_steps(driver), lambda: snapshot(app, slack_api, None, pagerduty))
    # What the chain did, once each.
    assert len(pagerduty.events("trigger")) == 1 and len(pagerduty.events("resolve")) == 1
    assert len(driver.posts("C0NETWORK")) == 1 and len(driver.posts("C0SECURITY")) == 1
    assert len(driver.posts("C0INCIDENT")) == 1
    # The report's chart was uploaded once, its retry uploaded nothing.
    assert len(slack_api.shared_files("C0HELP")) == 1
    assert len(slack_api.api_calls("files.completeUploadExternal")) == 1


async def test_a_slack_retry_of_a_read_only_command_is_answered_again(
    make_app: Any, slack_api: FakeSlack
) -> None:
    """Slack retries a command only when its first response did not arrive within 3 s, and
    then shows nothing of it: the retry's response is the only answer the person sees, so it
    is given (a Teams activity's answer is a message of its own: test_teams_answer_once)."""
    app: AppHarness = await make_app(slack=slack_api, people=PEOPLE)
    s = SlackDriver(app, slack_api)
    for said in ("mine", "show HD-9", "help"):
        send = s.sender(s.command(said))
        first, again = await send(False), await send(True)
        assert first[0] == 200 and first[1], said
        assert again == first, said
    assert slack_api.posts() == []


# -- Teams -----------------------------------------------------------------------------------


class TeamsDriver:
    def __init__(self, app: AppHarness, fake: FakeConnector) -> None:
        self.app, self.fake = app, fake

    def sender(self, body: dict[str, Any]) -> Callable[[bool], Awaitable[tuple[int, str]]]:
        body = {**body, "id": next_id()}

        async def send(retry: bool) -> tuple[int, str]:
            response = await self.app.teams(body)
            if response.status != 200:
                return response.status, ""
            answer = await response.json()  # an invoke's answer: a message or a card
            value = answer.get("value")
            return 200, value if isinstance(value, str) else json.dumps(value)

        return send

    def message(self, text: str, user: str = TECH_ID) -> dict[str, Any]:
        return activity(self.fake.service_url, text=text, textFormat="plain", user=user)

    async def say(self, text: str) -> dict[str, Any]:
        """A message in the technician's chat; the card the bot answers with."""
        posted = len(self.fake.activities(PERSONAL))
        assert (await self.app.teams(self.message(text))).status == 201
        await wait_until(
            lambda: any(a.get("attachments") for a in self.fake.activities(PERSONAL)[posted:]),
            timeout=20,
        )
        return card_of(
            next(a for a in self.fake.activities(PERSONAL)[posted:] if a.get("attachments"))
        )

    def submit(
        self, form: dict[str, Any], values: dict[str, Any], user: str = TECH_ID
    ) -> dict[str, Any]:
        data = {**form["actions"][0]["fallback"]["data"], **values}
        return activity(self.fake.service_url, value=data, user=user)

    def invoke(self, card: dict[str, Any], title: str, user: str, conversation: str,
               **typed: str) -> dict[str, Any]:  # fmt: skip
        pressed = next(a for a in card["actions"] if a["title"] == title)
        return activity(
            self.fake.service_url,
            type="invoke",
            name="adaptiveCard/action",
            user=user,
            conversation=conversation,
            value={
                "action": {
                    "type": "Action.Execute",
                    "verb": pressed["verb"],
                    "data": {**pressed["data"], **typed},
                },
                "trigger": "manual",
            },
        )

    def chat_with(self, user: str) -> str:
        return next(
            c["_id"] for c in self.fake.created_conversations() if c["members"][0]["id"] == user
        )

    def cards_in(self, conversation: str) -> list[dict[str, Any]]:
        return [card_of(a) for a in self.fake.activities(conversation) if a.get("attachments")]

    def last_card_with(self, conversation: str, words: str) -> dict[str, Any]:
        found = [c for c in self.cards_in(conversation) if words in shown(c)]
        assert found, f"no card with {words!r} in {conversation}"
        return found[-1]


def shown(card: dict[str, Any]) -> str:
    """A card's JSON with Markdown escapes removed."""
    return json.dumps(card).replace("\\\\", "")


def teams_steps(t: TeamsDriver) -> list[Step]:
    async def create() -> Any:
        form = await t.say("ticket new Printer jams")
        return t.sender(t.submit(form, form_values(category="printer", priority="P3")))

    async def command(text: str) -> Any:
        return t.sender(t.message(text))

    async def report() -> Any:
        # In a channel: its answer carries the chart beside the card.
        return t.sender(activity(t.fake.service_url, text="<at>Helpdesk</at> ticket report",
                                 textFormat="plain", conversation=REPORTS))  # fmt: skip

    async def verify_button() -> Any:
        card = t.last_card_with(PERSONAL, "Verify identity")
        return t.sender(t.invoke(card, "Verify identity", TECH_ID, PERSONAL))

    async def answer(title: str, number: str = "HD-1") -> Any:
        chat = t.chat_with(BO_TEAMS)
        card = t.last_card_with(chat, number)
        return t.sender(t.invoke(card, title, BO_TEAMS, chat))

    async def escalate() -> Any:
        return t.sender(t.submit(await t.say("ticket escalate HD-1"), FACTS))

    async def close() -> Any:
        form = await t.say("ticket close HD-1")
        pressed = form["actions"][0]
        body = activity(
            t.fake.service_url,
            type="invoke",
            name="adaptiveCard/action",
            value={"action": {"type": "Action.Execute", "verb": pressed["verb"],
                              "data": {**pressed["data"], **CLOSE}}},
        )  # fmt: skip
        return t.sender(body)

    async def survey(title: str, **typed: str) -> Any:
        chat = t.chat_with(ANA_TEAMS)
        card = t.last_card_with(chat, "How did we do")
        return t.sender(t.invoke(card, title, ANA_TEAMS, chat, **typed))

    async def new_ticket(summary: str) -> str:
        async with t.app.services.sessions() as session:
            count = (await session.execute(select(func.count()).select_from(Ticket))).scalar_one()
        number = f"HD-{count + 1}"
        form = await t.say(f"ticket new {summary}")
        values = form_values(category="printer", priority="P3", summary=summary)
        assert (await t.app.teams(t.submit(form, values))).status == 201
        await wait_until(lambda: any(f"{number} (P" in shown(c) for c in t.cards_in(PERSONAL)))
        return number

    async def second_ticket_to_deny() -> Any:
        number = await new_ticket("Jams again")
        assert (await t.app.teams(t.message(f"ticket verify {number}"))).status == 201
        await wait_until(lambda: any(number in shown(c) for c in t.cards_in(t.chat_with(BO_TEAMS))))
        return await answer("Deny", number)

    async def called_back() -> Any:
        async with t.app.services.sessions() as session:
            count = (await session.execute(select(func.count()).select_from(Ticket))).scalar_one()
        number = f"HD-{count + 1}"
        form = await t.say("ticket new Cy is locked out")
        values = form_values(category="printer", priority="P3", summary="Cy is locked out",
                             requester="cy@example.com")  # fmt: skip
        assert (await t.app.teams(t.submit(form, values))).status == 201
        await wait_until(lambda: any(f"{number} (P" in shown(c) for c in t.cards_in(PERSONAL)))
        assert (await t.app.teams(t.message(f"ticket verify {number}"))).status == 201
        title = "Called back: confirmed"
        await wait_until(lambda: any(title in shown(c) for c in t.cards_in(PERSONAL)))
        card = t.last_card_with(PERSONAL, title)
        return t.sender(t.invoke(card, title, TECH_ID, PERSONAL))

    def question() -> tuple[str, dict[str, Any]]:
        chat = t.chat_with(ANA_TEAMS)
        return chat, t.last_card_with(chat, "Works now")

    async def broken_without_a_box() -> Any:
        chat, card = question()  # a client that sends no empty inputs: the form comes back
        return t.sender(t.invoke(card, "Still broken", ANA_TEAMS, chat))

    async def fix_comment() -> Any:
        chat, card = question()
        pressed = next(a for a in card["actions"] if a["title"] == "Still broken")
        data = {**pressed["data"], "action": "fix.comment", "comment": "Still jams on tray 2"}
        body = activity(t.fake.service_url, type="invoke", name="adaptiveCard/action",
                        user=ANA_TEAMS, conversation=chat,
                        value={"action": {"type": "Action.Execute", "verb": "fix.comment",
                                          "data": data}, "trigger": "manual"})  # fmt: skip
        return t.sender(body)

    async def works() -> Any:
        chat, card = question()
        return t.sender(t.invoke(card, "Works now", ANA_TEAMS, chat))

    async def file_under_button() -> Any:
        number = await new_ticket("Jams on floor 3 too")
        card = t.last_card_with(PERSONAL, f"{number} (P")
        return t.sender(t.invoke(card, "Add to HD-1", TECH_ID, PERSONAL))

    async def link() -> Any:
        number = await new_ticket("Jams on floor 4 as well")
        return t.sender(t.message(f"ticket link {number} HD-1"))

    async def files() -> Any:
        image = "https://smba.trafficmanager.net/amer/v3/attachments/0-jam/views/original"
        body = activity(t.fake.service_url, text="HD-1: the paper path", textFormat="plain",
                        user=ANA_TEAMS, conversation=t.chat_with(ANA_TEAMS),
                        attachments=[{"contentType": "image/jpeg", "contentUrl": image,
                                      "name": "jam.jpg"}])  # fmt: skip
        return t.sender(body)

    async def fresh() -> str:
        """A new ticket nobody has answered yet (its first response is still to come)."""
        number = await new_ticket("Jams once more")
        await settled(t.app)
        return number

    async def form_command(verb: str) -> Any:
        return t.sender(t.message(f"ticket {verb} {await fresh()}"))

    async def card_button(title: str) -> Any:
        number = await fresh()
        card = t.last_card_with(PERSONAL, f"{number} (P")
        return t.sender(t.invoke(card, title, TECH_ID, PERSONAL))

    duplicate = "Already done: that was handled before."
    return [
        Step("ticket.create", create),
        Step("report", report),
        Step("time", lambda: command("ticket time HD-1 30m")),
        Step("verify", lambda: command("ticket verify HD-1")),
        Step("ticket.verify", verify_button, duplicate),
        Step("identity.approve", lambda: answer("Approve"), duplicate),
        Step("confirm", lambda: command("ticket confirm HD-1")),
        Step("fix.broken", broken_without_a_box, duplicate),
        Step("fix.comment", fix_comment, duplicate),
        Step("confirm", lambda: command("ticket confirm HD-1")),
        Step("fix.works", works, duplicate),
        Step("p1", lambda: command("ticket p1 HD-1")),
        Step("ticket.file_under", file_under_button, duplicate),
        Step("link", link),
        Step("ticket.message", files),
        Step("ticket.escalate.submit", escalate),
        Step("ticket.close.submit", close, duplicate),
        Step("csat.rate", lambda: survey("2"), duplicate),
        Step("csat.comment", lambda: survey("Add a comment", comment="Slow, but fixed"), duplicate),
        Step("identity.deny", second_ticket_to_deny, duplicate),
        Step("identity.called_back", called_back, duplicate),
        Step("escalate", lambda: form_command("escalate")),
        Step("close", lambda: form_command("close")),
        Step("ticket.escalate", lambda: card_button("Escalate"), duplicate),
        Step("ticket.close", lambda: card_button("Close"), duplicate),
    ]


async def test_teams_redelivered_activities_change_nothing_twice(
    make_app: Any, connector: FakeConnector, pagerduty: FakePagerDuty
) -> None:
    config = {
        "teams": {
            "service_url": connector.service_url,
            "tenant_id": TENANT,
            "incident_conversation": "19:incident@thread.tacv2",
        },
        "queues": {
            "security": {"teams": "19:security@thread.tacv2"},
            "networking": {"teams": "19:network@thread.tacv2"},
        },
        "escalation": {"queues": {"printer": "networking"}},
        "csat": {"delay": "0s"},
    }
    app: AppHarness = await make_app(config=config, people=PEOPLE, env=pager_env(pagerduty, None))
    driver = TeamsDriver(app, connector)
    await deliver_twice(app, teams_steps(driver), lambda: snapshot(app, None, connector, pagerduty))
    assert len(pagerduty.events("trigger")) == 1 and len(pagerduty.events("resolve")) == 1
    assert len(connector.activities("19:network@thread.tacv2")) == 1
    assert len(connector.activities("19:security@thread.tacv2")) == 1
    assert len(connector.activities("19:incident@thread.tacv2")) == 1
    # The report's answer, with its chart, was sent once: its redelivery sent nothing.
    [answer] = connector.activities(REPORTS)
    assert [x["contentType"] for x in answer["attachments"]][1:] == ["image/png"]


# -- refused or failed deliveries are not remembered -----------------------------------------


async def test_a_refused_submission_does_not_block_its_corrected_resubmission(
    make_app: Any, slack_api: FakeSlack
) -> None:
    app: AppHarness = await make_app(slack=slack_api, people=PEOPLE)
    s = SlackDriver(app, slack_api)
    view = await s.modal("new Printer jams")
    payload = view_submission(view, intake(summary="  "), view_id="V-SAME")
    refused = await app.interactive(payload)
    assert (await refused.json())["response_action"] == "errors"
    corrected = view_submission(view, intake(), view_id="V-SAME")
    assert corrected["view"]["id"] == payload["view"]["id"]
    assert (await app.interactive(corrected)).status == 200
    async with app.services.sessions() as session:
        assert (await session.execute(select(func.count()).select_from(Ticket))).scalar_one() == 1

    # A closure refused for its note, then corrected in the same modal.
    view = await s.modal("close HD-1")
    values = {k: _choice(v) if k == "resolution_category" else _text(v) for k, v in CLOSE.items()}
    bad = view_submission(view, {**values, "resolution_note": _text("fixed")}, view_id="V-CL")
    assert "errors" in await (await app.interactive(bad)).text()
    good = view_submission(view, values, view_id="V-CL")
    assert (await app.interactive(good)).status == 200
    async with app.services.sessions() as session:
        assert (await session.execute(select(Ticket.status))).scalar_one() == "closed"


async def test_a_delivery_whose_work_failed_is_done_by_its_retry(
    make_app: Any, slack_api: FakeSlack, db_url: str
) -> None:
    if not db_url.startswith("sqlite"):
        pytest.skip("breaks the schema on purpose: done on the per-test SQLite copy only")
    app: AppHarness = await make_app(slack=slack_api, people=PEOPLE)
    s = SlackDriver(app, slack_api)
    send = s.sender(s.submission(await s.modal("new Printer jams"), intake()))
    async with app.services.engine.begin() as conn:
        await conn.execute(text("ALTER TABLE ticket_events RENAME TO ticket_events_gone"))
    status, body = await send(False)
    assert status == 200 and "Something went wrong" in body
    async with app.services.engine.begin() as conn:
        await conn.execute(text("ALTER TABLE ticket_events_gone RENAME TO ticket_events"))
    # Slack retries it (same view id and hash): this time the ticket is made, once.
    assert (await send(True))[0] == 200
    assert (await send(True)) == (200, "")
    async with app.services.sessions() as session:
        assert (await session.execute(select(func.count()).select_from(Ticket))).scalar_one() == 1


# -- handled delivery ids are pruned only once nothing accepts a repeat ----------------------


async def age(app: AppHarness, key_like: str, by: timedelta) -> None:
    """Make the stored delivery ids matching `key_like` look handled `by` earlier."""
    async with app.services.engine.begin() as conn:
        rows = await conn.execute(
            select(InboundDelivery.key, InboundDelivery.at).where(
                InboundDelivery.key.like(key_like)
            )
        )
        for key, at in rows.all():
            await conn.execute(
                update(InboundDelivery).where(InboundDelivery.key == key).values(at=at - by)
            )


async def stored_keys(app: AppHarness) -> list[str]:
    async with app.services.sessions() as session:
        return list((await session.execute(select(InboundDelivery.key))).scalars())


async def pruned(app: AppHarness) -> int:
    """One run of the app's scheduled prune job, now."""
    assert app.services.scheduler is not None and app.services.prune is not None
    assert app.services.scheduler.get_job("inbound-prune") is not None
    return await app.services.prune.run()


async def tickets_made(app: AppHarness) -> int:
    async with app.services.sessions() as session:
        return (await session.execute(select(func.count()).select_from(Ticket))).scalar_one()


async def test_a_slack_retry_within_the_bound_is_refused_after_a_prune_run(
    make_app: Any, slack_api: FakeSlack
) -> None:
    app: AppHarness = await make_app(slack=slack_api, people=PEOPLE)
    s = SlackDriver(app, slack_api)
    payload = view_submission(await s.modal("new Printer jams"), intake(), view_id="V-OLD")
    old_body = urlencode({"payload": json.dumps(payload)})
    assert (await s.sender(old_body)(False))[0] == 200
    recent = s.sender(s.submission(await s.modal("new Scanner jams"), intake("Scanner jams")))
    assert (await recent(False))[0] == 200
    assert await tickets_made(app) == 2
    # The first one was handled a little longer ago than ids are kept; the second just now.
    await age(app, "slack:view:%", timedelta(minutes=1))
    await age(app, "slack:view:V-OLD:%", KEEP)

    assert await pruned(app) == 1
    assert len([k for k in await stored_keys(app) if k.startswith("slack:view:")]) == 1
    # Slack's retry of the recent one (signed now, as a retry is) is still a duplicate.
    assert await recent(True) == (200, "")
    assert await tickets_made(app) == 2
    # A repeat of the pruned one would have to be signed that long ago: refused at the door.
    stale = int(time.time() - KEEP.total_seconds())
    refused = await app.slack(old_body, content_type=FORM, headers=RETRY, timestamp=stale)
    assert refused.status == 401
    assert await tickets_made(app) == 2


def answers_apart(keys: set[str]) -> list[str]:
    """The claims of deliveries, without the records of their answers as sent."""
    return [k for k in keys if not k.startswith("answered:")]


async def test_a_teams_redelivery_within_the_bound_is_refused_after_a_prune_run(
    make_app: Any, connector: FakeConnector
) -> None:
    config = {"teams": {"service_url": connector.service_url, "tenant_id": TENANT}}
    app: AppHarness = await make_app(config=config, people=PEOPLE)
    t = TeamsDriver(app, connector)
    form = await t.say("ticket new Printer jams")
    older = t.sender(t.submit(form, form_values(category="printer", priority="P3")))
    # The answers to `ticket new` (the forms) claim their activity ids too: only the
    # submissions' ids are looked at.
    answered = set(await stored_keys(app))
    assert (await older(False))[0] == 201
    [old_key] = answers_apart(set(await stored_keys(app)) - answered)
    form = await t.say("ticket new Scanner jams")
    values = form_values(category="printer", priority="P3", summary="Scanner jams")
    recent = t.sender(t.submit(form, values))
    answered = set(await stored_keys(app))
    assert (await recent(False))[0] == 201
    assert await tickets_made(app) == 2
    [recent_key] = answers_apart(set(await stored_keys(app)) - answered)
    await age(app, "teams:%", timedelta(minutes=1))
    await age(app, old_key, KEEP)
    assert await pruned(app) == 1
    assert recent_key in await stored_keys(app) and old_key not in await stored_keys(app)
    assert (await recent(True))[0] == 201
    await settled(app)
    assert await tickets_made(app) == 2
