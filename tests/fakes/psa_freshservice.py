"""Fake Freshservice API v2: `/api/v2/...`, the API key as Basic user (password `X`),
envelopes `{"ticket": ...}`, `{"conversation": ...}`, `{"time_entry": ...}` (a ticket's
time entries listed as `{"time_entries": [...]}`, its notes as `{"conversations": [...]}`,
both with `page` / `per_page` up to 100), errors
`{"description", "errors": [{field, message, code}]}`; numeric status/priority/source codes.
A resource in `unreadable` (`agents`, `departments`) answers reads with 403 and the
`{"code": "access_denied", "message"}` body Freshservice gives an agent without the
privilege. `ticket_form_fields` lists the instance's ticket fields; `custom_fields` names the
custom ones (the bot's key field unless a test removes it), the only ones a ticket may carry."""

from __future__ import annotations

import base64
import html
import re
from typing import Any

from aiohttp import web

from tests.fakes.base import Recorded
from tests.fakes.psa_common import FakeTicket, PsaFake

API_KEY = "fs-ApiKey-0123456789abcdef"
KEY_FIELD = "cf_helpdesk_bot_key"
STATUSES, PRIORITIES = {2, 3, 4, 5}, {1, 2, 3, 4}
SOURCES = set(range(1, 11))
SPENT = re.compile(r"^\d\d:\d\d$")
FILTER = re.compile(r"^\"(\w+):'([^']*)'\"$")


def text_of(body: str) -> str:
    """What an HTML body says as Freshservice shows it (it keeps the HTML as sent and the
    browser renders it): a run of spaces, tabs or newlines in the source is one space, none
    at the start or end of a line; `<br>` breaks the line; `&nbsp;` is a space that stays."""
    text = re.sub(r"<br\s*/?>", "\0", body)
    text = re.sub(r"<[^>]+>", "", text)
    text = re.sub(r"[ \t\r\n\f]+", " ", text)
    text = re.sub(r" ?\0 ?", "\n", text).strip(" ")
    return html.unescape(text).replace("\xa0", " ")


def _invalid(*errors: tuple[str, str, str]) -> web.Response:
    body = {
        "description": "Validation failed",
        "errors": [{"field": f, "message": m, "code": c} for f, m, c in errors],
    }
    return web.json_response(body, status=400)


class FakeFreshservice(PsaFake):
    SYSTEM = "freshservice"

    def __init__(self) -> None:
        super().__init__()
        self._conversations = 0
        self.time_entries: dict[str, list[dict[str, Any]]] = {}  # ticket id -> its entries
        self.conversations: dict[str, list[dict[str, Any]]] = {}  # ticket id -> its notes
        # The custom ticket fields the instance defines (README: the bot's key needs one):
        # listed by `ticket_form_fields`, the only ones a ticket's `custom_fields` may name.
        self.custom_fields = [KEY_FIELD]

    def env(self) -> dict[str, str]:
        return {"PSA_API_KEY": API_KEY}

    def default_error_body(self, status: int) -> Any:
        if status == 429:
            return {"message": "You have exceeded the limit of requests per minute"}
        return {"description": f"scripted {status}", "errors": []}

    def _authorized(self, rec: Recorded) -> bool:
        expected = "Basic " + base64.b64encode(f"{API_KEY}:X".encode()).decode()
        return not self.refuse_credentials and rec.headers.get("Authorization") == expected

    async def handle(self, rec: Recorded, request: web.Request) -> web.StreamResponse:
        if not rec.path.startswith("/api/v2/"):
            return web.json_response({"message": "Not found"}, status=404)
        if not self._authorized(rec):
            body = {
                "code": "invalid_credentials",
                "message": "You have to be logged in to perform this action.",
            }
            return web.json_response(body, status=401)
        parts = rec.path.removeprefix("/api/v2/").strip("/").split("/")
        if rec.method == "GET":
            return self._get(rec, parts)
        body = rec.json if isinstance(rec.json, dict) else None
        if body is None:
            return _invalid(("body", "It should be a JSON object", "invalid_value"))
        if parts == ["tickets"] and rec.method == "POST":
            return await self._create(body)
        if len(parts) >= 2 and parts[0] == "tickets" and parts[1] in self.tickets:
            ticket = self.tickets[parts[1]]
            if len(parts) == 2 and rec.method == "PUT":
                return await self._update(ticket, body)
            if parts[2:] == ["notes"] and rec.method == "POST":
                return await self._note(ticket, body)
            if parts[2:] == ["time_entries"] and rec.method == "POST":
                return await self._time(ticket, body)
        return web.json_response({"code": "access_denied", "message": "not found"}, status=404)

    def _get(self, rec: Recorded, parts: list[str]) -> web.Response:
        if parts[0] in self.unreadable:
            body = {
                "code": "access_denied",
                "message": "You are not authorized to perform this action.",
            }
            return web.json_response(body, status=403)
        if parts == ["tickets", "filter"]:
            match = FILTER.match(rec.query.get("query", ""))
            if match is None:
                return _invalid(("query", "It should be a valid query string", "invalid_value"))
            field, value = match.groups()
            found = [
                t.raw
                for t in self.tickets.values()
                if str(t.raw.get("custom_fields", {}).get(field)) == value
            ]
            return web.json_response({"tickets": found, "total": len(found)})
        if parts == ["tickets"]:
            return web.json_response({"tickets": [t.raw for t in self.tickets.values()][:1]})
        # "List All Conversations" (api.freshservice.com/#list_all_conversations, also
        # FreshservicePS Get-FreshServiceConversation): a ticket's replies and notes, oldest
        # first, `page` / `per_page` (at most 100), as `{"conversations": [...]}`.
        listed = {"time_entries": self.time_entries, "conversations": self.conversations}
        if len(parts) == 3 and parts[0] == "tickets" and parts[2] in listed:
            if parts[1] not in self.tickets:
                return web.json_response(
                    {"code": "access_denied", "message": "not found"}, status=404
                )
            page, per_page = int(rec.query.get("page", "1")), int(rec.query.get("per_page", "30"))
            if not 1 <= per_page <= 100:
                return _invalid(("per_page", "It should be between 1 and 100", "invalid_value"))
            rows = listed[parts[2]].get(parts[1], [])
            return web.json_response({parts[2]: rows[(page - 1) * per_page : page * per_page]})
        if parts == ["ticket_form_fields"]:
            # "List All Ticket Fields": `{"ticket_fields": [...]}`, default fields first.
            defaults = ["requester", "subject", "ticket_type", "status", "priority", "description"]
            rows = [
                {
                    "id": i,
                    "name": n,
                    "label": n.title(),
                    "field_type": f"default_{n}",
                    "default": True,
                }
                for i, n in enumerate(defaults, start=1)
            ] + [
                {
                    "id": 100 + i,
                    "name": n,
                    "label": n.removeprefix("cf_").replace("_", " "),
                    "field_type": "custom_text",
                    "default": False,
                }
                for i, n in enumerate(self.custom_fields)
            ]
            return web.json_response({"ticket_fields": rows})
        if parts == ["departments"]:
            page, per_page = int(rec.query.get("page", "1")), int(rec.query.get("per_page", "30"))
            rows = [{"id": int(c.id), "name": c.name, "description": None} for c in self.companies]
            return web.json_response({"departments": rows[(page - 1) * per_page : page * per_page]})
        if parts == ["agents"]:
            email = rec.query.get("email", "").lower()
            rows = [{"id": int(i), "email": e} for e, i in self.people.items() if e == email]
            return web.json_response({"agents": rows})
        return web.json_response({"code": "access_denied", "message": "not found"}, status=404)

    async def _create(self, body: dict[str, Any]) -> web.Response:
        errors = []
        for name in ("subject", "description"):
            if not body.get(name):
                errors.append(
                    (name, "It should not be blank as this is a mandatory field", "missing_field")
                )
        if not (body.get("email") or body.get("requester_id") or body.get("phone")):
            errors.append(
                (
                    "requester_id",
                    "Please fill at least 1 of requester_id, phone, "
                    "email fields as they are mandatory",
                    "missing_field",
                )
            )
        if body.get("status") not in STATUSES:
            errors.append(
                ("status", "It should be one of these values: '2,3,4,5'", "invalid_value")
            )
        if body.get("priority") not in PRIORITIES:
            errors.append(
                ("priority", "It should be one of these values: '1,2,3,4'", "invalid_value")
            )
        if body.get("source", 2) not in SOURCES:
            errors.append(("source", "It should be one of the sources", "invalid_value"))
        for name in body.get("custom_fields") or {}:
            if name not in self.custom_fields:
                errors.append((name, "Unexpected/invalid field in request", "invalid_field"))
        department = body.get("department_id")
        if department is not None and self.company_by_id(department) is None:
            errors.append(
                (
                    "department_id",
                    "There is no department matching the given department_id",
                    "invalid_value",
                )
            )
        if errors:
            return _invalid(*errors)
        number = 4122 + len(self.tickets) + 1
        raw = {
            "id": number,
            "display_id": number,
            "created_at": "2026-12-05T10:00:00Z",
            "type": "Incident",
            **body,
        }
        # Every custom field the instance defines, null unless the create set it.
        raw["custom_fields"] = {
            **dict.fromkeys(self.custom_fields),
            **(body.get("custom_fields") or {}),
        }
        company = self.company_by_id(department) if department is not None else None
        self.tickets[str(number)] = FakeTicket(
            id=str(number),
            number=f"#{number}",
            ref=str(next((v for v in raw["custom_fields"].values() if v), "")),
            title=str(body["subject"]),
            description=text_of(str(body["description"])),
            company=company.name if company else "",
            contact=str(body.get("email") or ""),
            source=str(body.get("source", "")),
            top_priority=body["priority"] == 4,
            raw=raw,
        )
        return await self.accepted(
            "create", str(number), web.json_response({"ticket": raw}, status=201)
        )

    async def _update(self, ticket: FakeTicket, body: dict[str, Any]) -> web.Response:
        if "status" in body and body["status"] not in STATUSES:
            return _invalid(
                ("status", "It should be one of these values: '2,3,4,5'", "invalid_value")
            )
        if "priority" in body and body["priority"] not in PRIORITIES:
            return _invalid(
                ("priority", "It should be one of these values: '1,2,3,4'", "invalid_value")
            )
        ticket.raw.update(body)
        what = "update"
        if "priority" in body:
            ticket.top_priority, what = body["priority"] == 4, "priority"
        if body.get("status") in (4, 5):
            ticket.closed, what = True, "close"
            ticket.resolution = ticket.notes[-1] if ticket.notes else ""
        return await self.accepted(what, ticket.id, web.json_response({"ticket": ticket.raw}))

    async def _note(self, ticket: FakeTicket, body: dict[str, Any]) -> web.Response:
        if not body.get("body"):
            return _invalid(("body", "It should not be blank", "missing_field"))
        self._conversations += 1
        ticket.notes.append(text_of(str(body["body"])))
        note = {
            "id": self._conversations,
            "user_id": 1,
            "body": body["body"],
            "body_text": text_of(str(body["body"])),
            "private": body.get("private", True),
            "incoming": False,
            "ticket_id": int(ticket.id),
        }
        self.conversations.setdefault(ticket.id, []).append(note)
        return await self.accepted(
            "note", ticket.id, web.json_response({"conversation": note}, status=201)
        )

    async def _time(self, ticket: FakeTicket, body: dict[str, Any]) -> web.Response:
        spent = str(body.get("time_spent", ""))
        if not SPENT.match(spent):
            return _invalid(("time_spent", "It should be in the 'hh:mm' format", "invalid_value"))
        if "agent_id" in body and self.person_of(body["agent_id"]) == "":
            return _invalid(
                ("agent_id", "There is no agent matching the given agent_id", "invalid_value")
            )
        hours, minutes = map(int, spent.split(":"))
        ticket.time_minutes.append(hours * 60 + minutes)
        ticket.time_by.append(self.person_of(body.get("agent_id", "")))
        entry = {"id": len(ticket.time_minutes), "ticket_id": int(ticket.id), **body}
        self.time_entries.setdefault(ticket.id, []).append(entry)
        return await self.accepted(
            "time", ticket.id, web.json_response({"time_entry": entry}, status=201)
        )
