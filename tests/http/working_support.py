"""Support for the tests of working a ticket to the end (#15): people, and driving Slack and
Teams through the intake, buttons, forms and events as the platforms send them."""

from __future__ import annotations

import itertools
import json
import time
from typing import Any
from urllib.parse import urlencode

from sqlalchemy import select

from storage.models import OutboxMessage, Ticket, TicketEvent
from tests.fakes.botframework import FakeConnector
from tests.fakes.slack_api import FakeSlack
from tests.harness import AppHarness, block_actions, slack_button, view_submission, wait_until
from tests.http.conftest_teams import (
    PERSONAL,
    TECH_ID,
    TENANT,
    activity,
    card_of,
    form_values,
    message,
    submit_action,
)

FORM = "application/x-www-form-urlencoded"
RETRY = {"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"}
TEAMS_IDS = {"ana": "29:1ana", "bob": "29:1bob", "cy": "29:1cy", "dee": "29:1dee"}
PEOPLE = [
    {
        "email": "tom@example.com",
        "name": "Tom Tech",
        "slack_id": "UTECH",
        "teams_id": TECH_ID,
        "technician": True,
    },
    *(
        {
            "email": f"{who}@example.com",
            "name": f"{who.capitalize()} User",
            "slack_id": f"U{who.upper()}",
            "teams_id": TEAMS_IDS[who],
        }
        for who in ("ana", "bob", "cy", "dee")
    ),
    # Listed, but neither the requester nor a technician of anything.
    {"email": "eve@example.com", "name": "Eve Outsider", "slack_id": "UEVE", "teams_id": "29:1eve"},
]
DOING = "Printing the Q3 report from Excel"
ERROR = "Error 0x8007001F: paper path"
_n = itertools.count(1)


def shown(value: Any) -> str:
    """What a message or card shows, as one string (Markdown escapes removed)."""
    return json.dumps(value, ensure_ascii=False).replace("\\\\", "")


async def ticket_row(app: AppHarness, number: str) -> Ticket:
    async with app.services.sessions() as session:
        found = (await session.execute(select(Ticket).where(Ticket.number == number))).scalar_one()
    return found


async def events(app: AppHarness, kind: str) -> list[TicketEvent]:
    async with app.services.sessions() as session:
        query = select(TicketEvent).where(TicketEvent.kind == kind).order_by(TicketEvent.id)
        return list((await session.execute(query)).scalars())


async def rows(app: AppHarness, purpose: str) -> list[OutboxMessage]:
    async with app.services.sessions() as session:
        found = (await session.execute(select(OutboxMessage).order_by(OutboxMessage.id))).scalars()
        return [r for r in found if r.payload.get("purpose") == purpose]


# -- Slack -----------------------------------------------------------------------------------


def _text(value: str) -> dict[str, Any]:
    return {"type": "plain_text_input", "value": value}


def _choice(value: str) -> dict[str, Any]:
    return {"type": "static_select", "selected_option": {"value": value}}


class SlackFlow:
    """The help channel C0HELP, where Tom (UTECH) works."""

    def __init__(self, app: AppHarness, fake: FakeSlack) -> None:
        self.app, self.fake = app, fake

    async def command(self, text: str, user: str = "UTECH") -> str:
        response = await self.app.slash(text, user=user)
        assert response.status == 200
        return shown(await response.json()) if await response.text() else ""

    async def modal(self, text: str) -> dict[str, Any]:
        opened = len(self.fake.views_opened())
        await self.app.slash(text)
        await self.fake.wait_for_method("views.open", count=opened + 1)
        return self.fake.views_opened()[-1]["view"]

    async def ticket(
        self,
        *,
        requester: str = "UANA",
        summary: str = "Printer jams on floor 3",
        priority: str = "P3",
        users: int = 1,
        category: str = "printer",
        asset: str = "PRN-0042",
        client: str = "Acme",
        error: str = ERROR,
    ) -> str:
        """Open a ticket through the intake modal; its number once its card is posted."""
        async with self.app.services.sessions() as session:
            before = len((await session.execute(select(Ticket.id))).all())
        number = f"HD-{before + 1}"
        view = await self.modal(f"new {summary}")
        values = {
            "requester": {"type": "users_select", "selected_user": requester},
            "summary": _text(summary),
            "error_text": _text(error),
            "doing": _text(DOING),
            "reproducible": _choice("yes"),
            "users_affected": {"type": "number_input", "value": str(users)},
            "priority": _choice(priority),
            "category": _choice(category),
            "asset": _text(asset),
            "client": _text(client),
        }
        submitted = view_submission(view, values, view_id=f"VW{next(_n)}")
        assert (await self.app.interactive(submitted)).status == 200
        await wait_until(lambda: self.card(number) is not None, what=f"{number}'s card")
        # The card's message is the ticket's thread only once the bot has recorded it (a reply
        # sent before that is outside any ticket's thread); on a loaded box that is not at once.
        await wait_until(lambda: card_recorded(self.app, number), timeout=20, what="the card")
        return number

    def posts(self, channel: str) -> list[dict[str, Any]]:
        return [p for p in self.fake.posts() if p.get("channel") == channel]

    def card(self, number: str) -> dict[str, Any] | None:
        """The ticket card of `number` as it stands (posted, then updated in place), with its
        `channel` and `ts`."""
        for found in reversed(self.fake.channel_messages("C0HELP")):
            if f"{number} (P" in shown(found.get("blocks", [])[:1]):
                return {**found, "channel": "C0HELP"}
        return None

    def thread(self, number: str, words: str) -> list[dict[str, Any]]:
        """Messages in C0HELP (the ticket threads) about `number` that contain `words`."""
        return [
            p
            for p in self.posts("C0HELP")
            if number in shown(p) and words in shown(p) and p.get("thread_ts")
        ]

    def dms(self, user: str, words: str = "") -> list[dict[str, Any]]:
        return [p for p in self.posts(f"D{user}") if words in shown(p)]

    def press_body(self, post: dict[str, Any], title: str, user: str) -> str:
        n = next(_n)
        payload = block_actions(
            slack_button(post, title),
            user=user,
            channel=post["channel"],
            n=n,
            response_url=self.fake.response_url_for(f"press{n}"),
        )
        payload["message"]["ts"] = post.get("ts") or payload["message"]["ts"]
        self._last = f"press{n}"
        return urlencode({"payload": json.dumps(payload)})

    async def press(self, post: dict[str, Any], title: str, user: str) -> str:
        """Press a button as `user`; what the bot answered through the response_url ('' when
        it opened a form instead)."""
        body = self.press_body(post, title, user)
        rid, opened = self._last, len(self.fake.views_opened())
        assert (await self.app.slack(body, content_type=FORM)).status == 200
        await self.app.services.slack.drain()  # type: ignore[union-attr]
        if len(self.fake.views_opened()) > opened:
            return ""
        await wait_until(lambda: self.fake.responses(rid), what=f"the answer to {title}")
        return shown(self.fake.responses(rid))

    async def submit(
        self, view: dict[str, Any], values: dict[str, Any], user: str
    ) -> dict[str, Any] | None:
        """Submit a modal as `user`; the JSON answer (a view update or errors), or None."""
        payload = view_submission(view, values, user=user, view_id=f"VS{next(_n)}")
        response = await self.app.interactive(payload)
        assert response.status == 200
        text = await response.text()
        return json.loads(text) if text else None

    def event(
        self,
        *,
        user: str,
        thread: str | None,
        files: list[dict[str, Any]] | None = None,
        event_id: str | None = None,
        channel: str = "C0HELP",
        text: str = "",
    ) -> str:
        """A message event as Slack's Events API posts it (JSON)."""
        ts = f"{time.time():.6f}"
        event: dict[str, Any] = {
            "type": "message",
            "channel": channel,
            "user": user,
            "text": text,
            "ts": ts,
            "event_ts": ts,
            "channel_type": "channel",
        }
        if thread:
            event["thread_ts"] = thread
        if files:
            event |= {"subtype": "file_share", "files": files, "upload": False}
        return json.dumps(
            {
                "token": "legacy",
                "team_id": "T0TEAM",
                "api_app_id": "A0APP",
                "event": event,
                "type": "event_callback",
                "event_id": event_id or f"Ev{next(_n):08d}",
                "event_time": int(time.time()),
                "authorizations": [
                    {
                        "team_id": "T0TEAM",
                        "user_id": "UBOT",
                        "is_bot": True,
                        "is_enterprise_install": False,
                    }
                ],
                "is_ext_shared_channel": False,
            }
        )

    async def close(self, number: str, note: str = "", kb: str = "") -> None:
        view = await self.modal(f"close {number}")
        values = {
            "resolution_note": _text(
                note or "Restarted the VPN concentrator VPN-01 and failed over to the standby"
            ),
            "resolution_category": _choice("Incident"),
            "time_spent": _text("1h"),
            "kb_article": _text(kb),
        }
        answer = await self.submit(view, values, "UTECH")
        assert not answer or "errors" not in answer, answer


# -- Teams -----------------------------------------------------------------------------------


async def card_recorded(app: AppHarness, number: str) -> bool:
    async with app.services.sessions() as session:
        message = await session.scalar(select(Ticket.card_message).where(Ticket.number == number))
    return message is not None


class TeamsFlow:
    """Tom's 1:1 chat with the bot (PERSONAL), where he opens and works tickets."""

    def __init__(self, app: AppHarness, fake: FakeConnector) -> None:
        self.app, self.fake = app, fake

    async def say(self, text: str, user: str = TECH_ID, **fields: Any) -> int:
        response = await self.app.teams(message(self.fake.service_url, text, user=user, **fields))
        return response.status

    async def ticket(self, **values: Any) -> str:
        async with self.app.services.sessions() as session:
            before = len((await session.execute(select(Ticket.id))).all())
        number = f"HD-{before + 1}"
        posted = len(self.fake.activities(PERSONAL))
        await self.say(f"ticket new {values.get('summary', 'Printer jams')}")
        await wait_until(lambda: len(self.fake.activities(PERSONAL)) > posted)
        form = card_of(self.fake.activities(PERSONAL)[-1])
        data = {**submit_action(form)["fallback"]["data"], **form_values(**values)}
        assert (await self.app.teams(activity(self.fake.service_url, value=data))).status == 201
        await wait_until(lambda: self.card(number) is not None, what=f"{number}'s card")
        # The card's message is the ticket's thread only once the bot has recorded it (a reply
        # sent before that is outside any ticket's thread); on a loaded box that is not at once.
        await wait_until(lambda: card_recorded(self.app, number), timeout=20, what="the card")
        return number

    def cards(self, conversation: str) -> list[dict[str, Any]]:
        return [card_of(a) for a in self.fake.activities(conversation) if a.get("attachments")]

    def card(self, number: str) -> dict[str, Any] | None:
        """The ticket card of `number` as it stands (sent in the turn, then updated)."""
        found = None
        for posted in self.fake.activities(PERSONAL):
            if posted.get("attachments") and f"{number} (P" in shown(card_of(posted)["body"][:1]):
                found = posted
        if found is None:
            return None
        posted_id = found["_id"]
        for update in self.fake.updates():
            if update["_activity_id"] == posted_id:
                found = update
        return card_of(found)

    def texts(self, conversation: str, words: str) -> list[str]:
        return [t for t in self.fake.texts(conversation) if t and words in t.replace("\\", "")]

    def chat_with(self, user: str) -> str | None:
        for created in self.fake.created_conversations():
            if created["members"][0]["id"] == user:
                return str(created["_id"])
        return None

    async def dm_card(self, user: str, words: str, count: int = 1) -> tuple[str, dict[str, Any]]:
        """(chat id, the count-th card with `words`) sent to `user` in their chat."""
        await wait_until(lambda: self.chat_with(user) is not None, what=f"a chat with {user}")
        chat = self.chat_with(user)
        assert chat is not None
        found = lambda: [c for c in self.cards(chat) if words in shown(c)]  # noqa: E731
        await wait_until(lambda: len(found()) >= count, what=f"{words!r} to {user}")
        return chat, found()[count - 1]

    def invoke_body(
        self, card: dict[str, Any], title: str, user: str, conversation: str, **typed: str
    ) -> dict[str, Any]:
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

    async def invoke(self, body: dict[str, Any]) -> str:
        response = await self.app.teams(body)
        assert response.status == 200
        answer = await response.json()
        value = answer.get("value")
        return value if isinstance(value, str) else shown(value)


def teams_config(fake: FakeConnector, **more: Any) -> dict[str, Any]:
    return {"teams": {"service_url": fake.service_url, "tenant_id": TENANT}, **more}
