"""The chaos soak's Teams side (`python -m bench.chaos --platform teams|both`).

A fake Bot Framework connector (tests/fakes/botframework.py) that answers up to `latency` s
after doing each call's work, the fake token issuer and OpenID keys (the bot runs with a
`MicrosoftAppId` and checks every activity's JWT), and technicians who work in Teams: each in
their own 1:1 chat with the bot (and now and then in a channel), they type `ticket new <token>
VPN down`, fill in the intake card (Action.Submit, or Action.Execute answered in the invoke
response), `ticket time HD-n 15m <token>` and `ticket close HD-n` with the closure card. An
activity whose request got no 2xx (its process was killed, or was not up) is delivered again
with the same id, as Bot Framework does. `check` then holds what the connector received against
the database: every ticket card, incident notice and survey at least once and at most twice, a
second copy only with a process killed between the two; the card and notice left showing the
ticket as it is; the answers to one activity id given at most twice.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import secrets
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from bench.chaos import (
    GOOD_NOTE,
    IN_DOUBT,
    KILLS,
    TRY_AGAIN,
    Action,
    BotProc,
    Intake,
    Report,
    Snapshot,
    Workload,
    serving,
)
from tests.fakes.base import Recorded
from tests.fakes.botframework import FakeBotAuth, FakeConnector

APP_ID = "00000000-cafe-4bad-b0a7-c4a05c4a0500"
APP_PASSWORD = "chaos-app-password"
TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
BOT_ID = f"28:{APP_ID}"
INCIDENT = "19:chaos-incident@thread.tacv2"
TEAMS_CHANNELS = ("19:chaos-1@thread.tacv2", "19:chaos-2@thread.tacv2")
ANA_TEAMS_ID = "29:1ana"
CARD = "application/vnd.microsoft.card.adaptive"
TICKET_CARD = re.compile(r"^(HD-\d+) \(P\d\)")
ATTEMPTS = 6  # deliveries of one activity (Bot Framework gives up after a few)
# A redelivery's answer when the first delivery committed and died before keeping its answer
# (handlers.replay.LOST): the ticket exists, its card is not posted.
LOST = "an earlier delivery of this request was saved, but its answer was lost"


def technician_id(n: int) -> str:
    return f"29:chaos-tech{n}"


def technician_chat(n: int) -> str:
    return f"a:chaos-chat-tech{n}"


def people(technicians: int) -> list[dict[str, Any]]:
    """Directory entries of the Teams technicians (the requester Ana is in bench.chaos)."""
    return [
        {"email": f"tech{n}@example.com", "name": f"Tech {n}", "teams_id": technician_id(n),
         "technician": True}
        for n in range(technicians)
    ]  # fmt: skip


def plain(text: str) -> str:
    """Text with Markdown escapes removed (what is searched for the answers' words)."""
    return re.sub(r"\\(.)", r"\1", text)


def card_in(activity: dict[str, Any]) -> dict[str, Any] | None:
    for attachment in activity.get("attachments") or []:
        if isinstance(attachment, dict) and attachment.get("contentType") == CARD:
            content = attachment.get("content")
            return content if isinstance(content, dict) else None
    return None


def fallback(card: dict[str, Any] | None) -> str:
    return plain(str((card or {}).get("fallbackText") or ""))


def ticket_of_card(card: dict[str, Any] | None) -> str | None:
    """The number of the ticket a ticket card shows (None for any other card)."""
    found = TICKET_CARD.match(fallback(card))
    return found.group(1) if found else None


def is_form(card: dict[str, Any]) -> bool:
    return any(str(e.get("type", "")).startswith("Input.") for e in card.get("body") or [])


def closure_answer(card: dict[str, Any] | None) -> bool:
    """The closure's answer: the closed ticket's card with `Closed HD-n.` on it."""
    return any(
        plain(str(e.get("text") or "")).startswith("Closed HD-")
        for e in (card or {}).get("body") or []
    )


def has_close(card: dict[str, Any] | None) -> bool:
    return any(a.get("title") == "Close" for a in (card or {}).get("actions") or [])


def words_of(activity: dict[str, Any]) -> str:
    """Everything an activity says, Markdown escapes removed."""
    return plain(str(activity.get("text") or "") + json.dumps(card_in(activity) or {}))


# -- the fakes -------------------------------------------------------------------------------


class SlowConnector(FakeConnector):
    """The connector doing each call's work at once and answering up to `latency` s later (the
    window where a killed sender leaves a message sent and not recorded). A 1:1 chat opened
    with someone is always the same conversation (a technician's: `technician_chat`), as in
    Teams."""

    def __init__(self, latency: float, rng: random.Random) -> None:
        super().__init__(threaded=False)
        self.latency, self.rng = latency, rng
        self.arrived: dict[str, float] = {}  # posted activity id -> time.monotonic()
        self.updated_at: list[float] = []  # parallel to updates()

    async def handle(self, rec: Recorded, request: web.Request) -> web.StreamResponse:
        parts = rec.raw_path.strip("/").split("/")
        if rec.method == "POST" and parts == ["v3", "conversations"]:
            response = self._open_chat(rec)
        else:
            posted, updated = len(self._activities), len(self._updates)
            response = await super().handle(rec, request)
            now = time.monotonic()
            for activity in self._activities[posted:]:
                self.arrived[activity["_id"]] = now
            self.updated_at += [now] * (len(self._updates) - updated)
        if self.latency > 0 and rec.method in ("POST", "PUT"):
            await asyncio.sleep(self.rng.uniform(0, self.latency))
        return response

    def _open_chat(self, rec: Recorded) -> web.StreamResponse:
        body = rec.json if isinstance(rec.json, dict) else {}
        members = body.get("members") or [{}]
        user = str((members[0] or {}).get("id") or "")
        if not user:
            return self._error(400, "BadArgument", "no member")
        chat = f"a:chaos-chat-{user.removeprefix('29:').removeprefix('chaos-')}"
        meta = {"_path": rec.path, "_authorization": rec.headers.get("Authorization")}
        self._created.append({**body, "_id": chat, "_activity_id": "", **meta})
        return web.json_response({"id": chat, "serviceUrl": self.service_url}, status=201)


class TeamsFakes:
    """The connector and the Bot Framework token issuer, and what the bot needs to use them."""

    def __init__(self, latency: float, seed: int) -> None:
        self.connector = SlowConnector(latency, random.Random(f"{seed}-teams"))
        self.auth = FakeBotAuth()

    async def start(self) -> None:
        await self.connector.start()
        await self.auth.start()

    async def stop(self) -> None:
        await self.connector.stop()
        await self.auth.stop()

    def env(self) -> dict[str, str]:
        return self.auth.env(APP_ID, APP_PASSWORD)

    def config(self) -> dict[str, Any]:
        return {
            "incident_conversation": INCIDENT,
            "service_url": self.connector.service_url,
            "tenant_id": TENANT,
        }

    def token(self) -> str:
        return self.auth.make_token(APP_ID, self.connector.service_url)


# -- the workload -----------------------------------------------------------------------------


@dataclass
class Sent:
    """One activity as the technician's client sent it (delivered again until a 2xx)."""

    body: dict[str, Any]
    at: float  # monotonic, first delivery
    statuses: list[str] = field(default_factory=list)  # each delivery: status or "-"
    response: Any = None  # the last 2xx's JSON body (an invoke's answer), if any

    @property
    def id(self) -> str:
        return str(self.body["id"])

    @property
    def unanswered(self) -> bool:
        return any(not s.startswith("2") for s in self.statuses)


class TeamsDriver:
    """Bot Framework activities, signed, to whichever `serve` is up, as Teams sends them."""

    def __init__(
        self, slots: list[BotProc], fakes: TeamsFakes, http: aiohttp.ClientSession, work: Workload,
        dump: Path | None = None,
    ) -> None:  # fmt: skip
        self.slots, self.fakes, self.http, self.work = slots, fakes, http, work
        self.dump = dump  # a folder: teams.json (what was sent and received) is written there
        self.connector = fakes.connector
        self.sent: list[Sent] = []
        # (conversation, message replaced, card) of every ticket card an invoke answered with
        self.invoke_cards: list[tuple[str, str, dict[str, Any]]] = []
        self.lost: set[str] = set()  # tokens of intakes answered LOST
        self._ids = 0

    def activity(self, tech: int, conversation: str, **fields: Any) -> dict[str, Any]:
        self._ids += 1
        kind = "personal" if conversation.startswith("a:") else "channel"
        return {
            "type": "message", "id": f"chaos-{self._ids}-{secrets.token_hex(3)}",
            "timestamp": "2026-12-07T09:10:00.000Z", "channelId": "msteams",
            "serviceUrl": self.connector.service_url,
            "from": {"id": technician_id(tech), "name": f"Tech {tech}",
                     "aadObjectId": f"00000000-0000-4000-8000-00000000000{tech}"},
            "conversation": {"id": conversation, "conversationType": kind, "tenantId": TENANT,
                             **({"isGroup": True} if kind == "channel" else {})},
            "recipient": {"id": BOT_ID, "name": "Helpdesk"},
            "channelData": {"tenant": {"id": TENANT}}, "locale": "en-US", **fields,
        }  # fmt: skip

    async def deliver(self, rng: random.Random, body: dict[str, Any]) -> Sent:
        """Deliver the activity until some process answers 2xx (at most ATTEMPTS times)."""
        sent = Sent(body, time.monotonic())
        self.sent.append(sent)
        for _ in range(ATTEMPTS):
            slot = await serving(self.slots, rng)
            status, began = "no serve up", time.monotonic()
            if slot is not None:
                headers = {"Authorization": f"Bearer {self.fakes.token()}"}
                try:
                    async with self.http.post(
                        f"{slot.url}/api/messages", json=body, headers=headers,
                        timeout=aiohttp.ClientTimeout(total=15),
                    ) as response:  # fmt: skip
                        status = str(response.status)
                        text = await response.text()
                        if response.status // 100 == 2 and text:
                            sent.response = json.loads(text)
                except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                    status = type(exc).__name__
                status += f" {slot.name} {time.monotonic() - began:.1f}s"
            sent.statuses.append(status)
            if status.startswith("2"):
                return sent
            self.work.unanswered += 1
            await asyncio.sleep(rng.uniform(0.3, 1.0))
        return sent

    def answers(self, sent: Sent, tech: int) -> list[dict[str, Any]]:
        """What the bot posted for the activity: replies to it, and anything in the
        technician's 1:1 chat since it was sent (an answer meant only for them)."""
        chat, arrived = technician_chat(tech), self.connector.arrived
        return [
            a
            for a in self.connector.activities()
            if a.get("_reply_to_id") == sent.id
            or (a["_conversation_id"] == chat and arrived.get(a["_id"], 0) >= sent.at)
        ]

    async def form(self, rng: random.Random, tech: int, conversation: str, words: str,
                   mark: str) -> dict[str, Any] | None:  # fmt: skip
        """The card the bot answers `words` with (the one whose JSON holds `mark`), with
        `_id`: the message it is in. A message that got no card is typed again."""
        for _ in range(3):
            sent = await self.deliver(rng, self.activity(tech, conversation, text=words))
            deadline = time.monotonic() + 4
            while time.monotonic() < deadline:
                for posted in self.answers(sent, tech):
                    card = card_in(posted)
                    if card is not None and mark in plain(json.dumps(card)) and is_form(card):
                        return {**card, "_id": posted["_id"], "_conversation": conversation}
                await asyncio.sleep(0.05)
        return None

    async def submit(self, rng: random.Random, tech: int, form: dict[str, Any],
                     values: dict[str, Any]) -> tuple[Sent, str]:  # fmt: skip
        """Fill in the form's card and press its button: Action.Submit (a message with
        `value`) or, one time in three, Action.Execute (an invoke answered in its response).
        Returns the activity and all that was answered to it (Markdown escapes removed)."""
        action = form["actions"][0]
        conversation, message = form["_conversation"], form["_id"]
        data = {**(action.get("data") or {}), **values}
        if action.get("type") == "Action.Execute" and rng.random() < 1 / 3:
            invoke = {"type": "Action.Execute", "verb": action["verb"], "data": data}
            body = self.activity(
                tech, conversation, type="invoke", name="adaptiveCard/action",
                value={"action": invoke, "trigger": "manual"}, replyToId=message,
            )  # fmt: skip
            sent = await self.deliver(rng, body)
            answer = sent.response if isinstance(sent.response, dict) else {}
            value = answer.get("value")
            if answer.get("type") == CARD and isinstance(value, dict):
                if ticket_of_card(value) and not closure_answer(value):
                    self.invoke_cards.append((conversation, message, value))
                said = plain(json.dumps(value))
            else:
                said = plain(str(value or ""))
        else:
            fallback_data = (action.get("fallback") or {}).get("data") or action.get("data")
            body = self.activity(tech, conversation, value={**fallback_data, **values},
                                 replyToId=message)  # fmt: skip
            sent = await self.deliver(rng, body)
            said = ""
        await asyncio.sleep(0.2)
        said += " ".join(words_of(a) for a in self.answers(sent, tech))
        return sent, said

    @staticmethod
    def outcome(sent: Sent, said: str, accepted: bool) -> str:
        """ok | refused (told to try again, nothing else) | unknown | error:<answer>."""
        if not any(s.startswith("2") for s in sent.statuses):
            return "unknown"
        if accepted:
            return "ok"
        if TRY_AGAIN in said:
            return "unknown" if sent.unanswered else "refused"
        if IN_DOUBT in said or not said.strip() or sent.unanswered:
            return "unknown"
        return f"error:{said[:300]}"

    async def intake(self, rng: random.Random, tech: int) -> None:
        token = f"chaos-{secrets.token_hex(5)}"
        in_channel = rng.random() < 0.3
        where = rng.choice(TEAMS_CHANNELS) if in_channel else technician_chat(tech)
        item = Intake(token, where, rng.random() < 0.35)
        self.work.intakes.append(item)
        form = await self.form(rng, tech, where, f"ticket new {token} VPN down", token)
        if form is None:
            item.outcome = "no form"
            self.work.skipped += 1
            return
        values = {
            "requester": "ana@example.com", "summary": f"{token} VPN down",
            "error_text": "Error 809: the network connection could not be established",
            "doing": "Connecting in the morning", "reproducible": "yes",
            "users_affected": "40" if item.p1 else "1", "priority": "P1" if item.p1 else "P3",
            "category": "network", "asset": "VPN-01", "client": "",
        }  # fmt: skip
        sent, said = await self.submit(rng, tech, form, values)
        # Accepted: the ticket card (its summary starts with the token) was answered.
        accepted = bool(re.search(rf'"(HD-\d+) \(P\d\): {token} VPN down', said))
        item.outcome = self.outcome(sent, said, accepted or LOST in said)
        if LOST in said:
            self.lost.add(token)
        item.answers = [f"{sent.id} {sent.statuses}: {said[:120]!r}"]

    async def close(self, rng: random.Random, tech: int, number: str) -> None:
        action = Action("close", number, f"close-{number}")
        self.work.actions.append(action)
        form = await self.form(rng, tech, technician_chat(tech), f"ticket close {number}",
                               f'"{number}"')  # fmt: skip
        if form is None:
            action.outcome = "no form"
            self.work.skipped += 1
            return
        values = {"resolution_note": GOOD_NOTE, "resolution_category": "Incident",
                  "time_spent": "1h", "kb_article": "KB0012345"}  # fmt: skip
        sent, said = await self.submit(rng, tech, form, values)
        action.outcome = self.outcome(sent, said, f"Closed {number}." in said)

    async def log_time(self, rng: random.Random, tech: int, number: str) -> None:
        token = f"chaos-{secrets.token_hex(5)}"
        action = Action("time", number, token)
        self.work.actions.append(action)
        body = self.activity(tech, technician_chat(tech), text=f"ticket time {number} 15m {token}")
        sent = await self.deliver(rng, body)
        await asyncio.sleep(0.2)
        said = " ".join(words_of(a) for a in self.answers(sent, tech))
        action.outcome = self.outcome(sent, said, f"Logged 15m on {number}" in said)

    async def technician(
        self, rng: random.Random, until: float, think: tuple[float, float], tech: int
    ) -> None:
        """Half intakes, a quarter closes, a quarter time entries (on tickets still open)."""
        while time.monotonic() < until:
            await asyncio.sleep(rng.uniform(*think))
            numbers = list(self.work.opened)
            roll = rng.random()
            if roll < 0.5 or not numbers:
                await self.intake(rng, tech)
            elif roll < 0.75:
                number = rng.choice(numbers)
                if number in self.work.opened:
                    self.work.opened.remove(number)
                await self.close(rng, tech, number)
            else:
                await self.log_time(rng, tech, rng.choice(numbers))


# -- the checks -------------------------------------------------------------------------------


# A copy sent again must follow a kill of its sender between the send and its record: the
# record follows the connector's answer (up to --latency) at once, give or take the database.
RECORD_WITHIN = 3.0


def killed_between(start: float, end: float) -> list[str]:
    """The kills after the first copy arrived (at `start`) soon enough to have stopped its
    record, and before the second (at `end`)."""
    last = min(end, start + RECORD_WITHIN)
    return [f"{name} at +{t - start:.2f}s" for t, name in KILLS if start - 0.05 <= t <= last]


def check(driver: TeamsDriver, snap: Snapshot, report: Report, *, db_drops: bool) -> None:
    """What Teams received, against the database (bench.chaos.check did the rest)."""
    bad = report.violations.append
    connector = driver.connector
    if driver.dump is not None:
        record = {
            "sent": [{"id": s.id, "at": s.at, "statuses": s.statuses, "body": s.body,
                      "response": s.response} for s in driver.sent],
            "posted": connector.activities(), "arrived": connector.arrived,
            "updates": connector.updates(), "updated_at": connector.updated_at,
            "kills": KILLS, "invoke_cards": driver.invoke_cards,
        }  # fmt: skip
        (driver.dump / "teams.json").write_text(json.dumps(record, indent=1, default=str))
    posted = connector.activities()
    updates = connector.updates()
    teams_tickets = [t for t in snap.tickets if t.source_platform == "teams"]
    closed = {t.number for t in snap.tickets if t.status == "closed"}
    by_number = {t.number: t for t in snap.tickets}

    def at(activity: dict[str, Any]) -> float:
        return connector.arrived.get(activity["_id"], 0.0)

    def at_most_twice(what: str, number: str, copies: list[dict[str, Any]]) -> None:
        if len(copies) > 2:
            bad(f"{number}: {what} reached Teams {len(copies)} times")
        elif len(copies) == 2:
            first, second = sorted(at(c) for c in copies)
            kills = killed_between(first, second)
            repeats.append(f"{number} {what} {second - first:.2f}s apart, kills {kills}")
            if not kills and not db_drops:
                bad(f"{number}: {what} reached Teams twice ({second - first:.2f}s apart) with "
                    "no process killed in between")  # fmt: skip

    repeats: list[str] = []
    # Ticket cards: posted in the turn (or later through the outbox), or the answer to an
    # Action.Execute replacing the form's card.
    cards: dict[str, list[dict[str, Any]]] = {}
    for activity in posted:
        number = ticket_of_card(card_in(activity))
        if number and not closure_answer(card_in(activity)):
            cards.setdefault(number, []).append(activity)
    shown = {(c, m): card for c, m, card in driver.invoke_cards}
    executed = Counter(ticket_of_card(card) for _, _, card in driver.invoke_cards)
    lost = {t.number for t in teams_tickets if t.summary.split(" ")[0] in driver.lost}
    # Notes for such a ticket wait for its card (handlers.deliveries.CARD_WAIT, 120 s after
    # they were queued, longer than the drain): then they go out without a thread.
    lost_ids = {t.id for t in teams_tickets if t.number in lost}
    waiting = {r.id for r in snap.rows if r.status == "pending" and r.ticket_id in lost_ids}
    for violation in list(report.violations):
        found = re.match(r"outbox row (\d+) ", violation)
        if found and int(found.group(1)) in waiting:
            report.violations.remove(violation)
            report.notes.append(f"{violation} (waits for the card that was lost)")
    for ticket in teams_tickets:
        copies = cards.get(ticket.number, [])
        if not copies and not executed.get(ticket.number):
            if ticket.number in lost:
                report.notes.append(
                    f"{ticket.number}: its card never reached Teams: the process that saved it "
                    "died before keeping its answer; the redelivery was told it was done (LOST)"
                )
                continue
            bad(f"{ticket.number}: its ticket card never reached Teams")
        at_most_twice("ticket card", ticket.number, copies)
        if copies and executed.get(ticket.number):
            report.notes.append(f"{ticket.number}: card posted and answered to an invoke too")
        # The card where the ticket says it is (refreshes edit it), as it stands after every
        # refresh. (A second copy, posted after its sender died, may be the ticket's thread.)
        where = (ticket.card_channel or "", ticket.card_message or "")
        edits = [u for u in updates if (u["_conversation_id"], u["_activity_id"]) == where]
        original = next((a for a in copies if a["_id"] == where[1]), None)
        final = card_in(edits[-1]) if edits else (card_in(original) if original else None)
        if final is None:
            final = shown.get(where)
        if final is None:
            # Both processes that posted it died before recording where (the next delivery
            # of the activity does not post a third copy): nowhere to refresh.
            lost = len(copies) == 2 and all(killed_between(at(c), at(c) + 9) for c in copies)
            (report.notes.append if lost else bad)(
                f"{ticket.number}: no card at its recorded place {where} ({len(copies)} posted)"
            )
            continue
        if has_close(final) == (ticket.number in closed):
            state = "closed" if ticket.number in closed else "open"
            bad(f"{ticket.number}: the card in Teams is stale (ticket {state}, Close button "
                f"{'shown' if has_close(final) else 'gone'}; {len(edits)} edits)")  # fmt: skip

    # Incident notices (every P1, whichever platform it came through) and their final state.
    notices: dict[str, list[dict[str, Any]]] = {}
    for activity in posted:
        if activity["_conversation_id"] == INCIDENT:
            found = re.match(r"^P1 (HD-\d+):", fallback(card_in(activity)))
            if found:
                notices.setdefault(found.group(1), []).append(activity)
    rows = {r.dedup_key: r for r in snap.rows if r.dedup_key}
    p1s = sorted(t.number for t in snap.tickets if t.priority == "P1")
    for number in p1s:
        copies = notices.get(number, [])
        row = rows.get(f"p1:{number}:notice:teams")
        if row is not None and row.status == "cancelled":
            continue
        if not copies:
            bad(f"{number}: its incident notice never reached Teams")
            continue
        at_most_twice("incident notice", number, copies)
        recorded = str((row.result or {}).get("activity_id") or "") if row else ""
        if recorded not in {c["_id"] for c in copies}:
            bad(f"{number}: the notice recorded ({recorded!r}) is none of those in Teams")
            continue
        edits = [u for u in updates if u["_activity_id"] == recorded]
        first = next(c for c in copies if c["_id"] == recorded)
        final = card_in(edits[-1] if edits else first)
        resolved = fallback(final).startswith("Resolved:")
        if resolved != (number in closed):
            bad(f"{number}: the incident notice in Teams is stale (ticket "
                f"{'closed' if number in closed else 'open'}, notice "
                f"{'resolved' if resolved else 'open'})")  # fmt: skip

    # Surveys, to the requester's 1:1 chat: Teams tickets once closed, none before.
    surveys: dict[str, list[dict[str, Any]]] = {}
    for activity in posted:
        found = re.match(r"^How did we do on (HD-\d+)\?", fallback(card_in(activity)))
        if found:
            surveys.setdefault(found.group(1), []).append(activity)
    for ticket in teams_tickets:
        copies = surveys.get(ticket.number, [])
        if ticket.number in closed and not copies:
            bad(f"{ticket.number}: closed, but its survey never reached Teams")
        if ticket.number not in closed and copies:
            bad(f"{ticket.number}: survey sent ({len(copies)}) for a ticket not closed")
        at_most_twice("survey", ticket.number, copies)
    for number in surveys:
        if number in by_number and by_number[number].source_platform != "teams":
            bad(f"{number}: a Slack ticket's survey went to Teams")

    # The answers to one activity: given once, twice only when a process died in between.
    replies: dict[str, list[dict[str, Any]]] = {}
    for activity in posted:
        if activity.get("_reply_to_id"):
            replies.setdefault(activity["_reply_to_id"], []).append(activity)
    twice = 0
    for sent in driver.sent:
        copies = replies.get(sent.id, [])
        if len(copies) > 2:
            bad(f"activity {sent.id} answered {len(copies)} times ({sent.statuses})")
        elif len(copies) == 2:
            twice += 1
            first, second = sorted(at(c) for c in copies)
            if not killed_between(first, second) and not db_drops:
                bad(f"activity {sent.id} answered twice ({second - first:.2f}s apart) with no "
                    f"process killed in between ({sent.statuses})")  # fmt: skip

    redelivered = sum(len(s.statuses) > 1 for s in driver.sent)
    kinds = Counter(
        "invoke" if s.body.get("type") == "invoke" else "submit" if s.body.get("value") else "text"
        for s in driver.sent
    )
    report.lines.append(
        f"  Teams: {len(driver.sent)} activities {dict(kinds)}, {redelivered} delivered again "
        f"({sum(len(s.statuses) for s in driver.sent)} deliveries), {twice} answered twice; "
        f"connector {len(posted)} posts, {len(updates)} updates, "
        f"{len(connector.created_conversations())} chats opened; ticket cards "
        f"{sum(map(len, cards.values()))} posted + {len(driver.invoke_cards)} in invoke answers "
        f"for {len(teams_tickets)} Teams tickets; notices {sum(map(len, notices.values()))}; "
        f"surveys {sum(map(len, surveys.values()))}"
    )
    for line in repeats:
        report.notes.append(f"Teams repeat: {line}")
