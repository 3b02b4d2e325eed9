"""Freshservice through API v2 (`/api/v2/`), the agent's API key as HTTP Basic user.

Tickets carry the bot's key in the custom field `cf_helpdesk_bot_key` (README: create it; by
the name the instance gives it, `helpdesk_bot_key` without the prefix);
the company is the department of the same name; notes are private (looked up in the ticket's
conversations); resolving is a note with the resolution, then status 4 (Resolved).
"""

from __future__ import annotations

import html
import re
from datetime import UTC
from typing import Any

import aiohttp

from bot.psa.http import Memo, PsaHttp, basic, company_named, ident
from bot.psa.settings import PsaSettings
from handlers.psa import (
    NOTE_POSTED,
    Company,
    NewTicket,
    Probe,
    PsaError,
    PsaRef,
    Resolution,
    TimeWork,
    optional,
)

KEY_FIELD = "cf_helpdesk_bot_key"
OPEN, RESOLVED = 2, 4
PRIORITY = {"P1": 4, "P2": 3, "P3": 2, "P4": 1}  # Urgent, High, Medium, Low
SOURCE = {"slack": 10, "teams": 4}  # Slack; Chat (Teams has no source of its own)
PAGE = 100


def key_field_of(answer: Any) -> str | None:
    """The bot's key field among the ticket fields `GET ticket_form_fields` lists (by its
    name with or without the `cf_` prefix), or None."""
    rows = answer.get("ticket_fields") if isinstance(answer, dict) else None
    names = {str(r.get("name", "")) for r in rows or [] if isinstance(r, dict)}
    return next((n for n in (KEY_FIELD, KEY_FIELD.removeprefix("cf_")) if n in names), None)


def as_html(text: str) -> str:
    """Freshservice bodies are HTML: the text escaped, line breaks, indentation and runs of
    spaces kept (HTML would show a pasted stack trace's leading and doubled spaces as one or
    none: each space after a space, or at a line's start, is a no-break space; a tab four)."""
    lines = html.escape(text.replace("\t", "    ")).split("\n")
    kept = [re.sub(r"(?:^|(?<= )) ", "&nbsp;", line) for line in lines]
    return "<div>" + "<br>".join(kept) + "</div>"


class FreshserviceConnector:
    name = "Freshservice"
    closure_posts_note = True  # the resolution is a note, then status 4

    def __init__(self, session: aiohttp.ClientSession, settings: PsaSettings) -> None:
        self.base = f"{settings.url}/api/v2/"
        self.http = PsaHttp(
            session,
            name=self.name,
            headers={
                "Authorization": basic(settings.api_key.get_secret_value(), "X"),
                "Accept": "application/json",
            },
        )
        self.memo = Memo()

    def __repr__(self) -> str:
        return f"FreshserviceConnector({self.base!r})"

    async def _departments(self) -> list[dict[str, Any]]:
        found, value = self.memo.get("departments")
        if found:
            return list(value)
        departments: list[dict[str, Any]] = []
        for page in range(1, 51):
            answer = await self.http.call(
                "GET",
                self.base + "departments",
                params={"per_page": str(PAGE), "page": str(page)},
                reading="departments",
            )
            rows = answer.get("departments") if isinstance(answer, dict) else None
            rows = [r for r in rows if isinstance(r, dict)] if isinstance(rows, list) else []
            departments += rows
            if len(rows) < PAGE:
                break
        return list(self.memo.put("departments", departments))

    async def find_company(self, name: str) -> Company | None:
        return company_named(await self._departments(), name)

    async def active_contracts(self, company: Company) -> list[str]:
        return []  # Freshservice has no contracts (SPEC): the default tier applies

    async def _key_field(self) -> str:
        """The name of the bot's key field as the instance's ticket fields give it:
        `cf_helpdesk_bot_key`, or `helpdesk_bot_key` when Freshservice named the field after
        its label without the prefix (the official SDK's ticket sample: `"custom_fields":
        {"employee_id": ...}`). A ticket naming another is refused as an invalid field."""
        found, value = self.memo.get("key_field")
        if found:
            return str(value)
        try:
            answer = await self.http.call(
                "GET", self.base + "ticket_form_fields", reading="ticket_form_fields"
            )
        except PsaError as exc:
            if not exc.permanent:
                raise  # an outage, a pause or refused credentials: the create waits too
            # The fields cannot be read (403, or an answer that is no list of them): the
            # name the README asks for.
            answer = None
        return str(self.memo.put("key_field", key_field_of(answer) or KEY_FIELD))

    async def create_ticket(self, ticket: NewTicket, company: Company | None) -> PsaRef:
        email = ticket.requester_email or ticket.technician_email
        if not email:
            raise PsaError(
                f"{self.name}: a ticket needs a requester e-mail (neither the requester's "
                "nor the technician's is known)",
                kind="rejected",
            )
        body: dict[str, Any] = {
            "subject": ticket.title,
            "description": as_html(ticket.description),
            "email": email,
            "status": OPEN,
            "priority": PRIORITY.get(ticket.priority, 2),
            "source": SOURCE.get(ticket.source_platform, 4),
            "custom_fields": {await self._key_field(): ticket.key},
        }
        if ticket.requester_email and ticket.requester_name:
            body["name"] = ticket.requester_name  # used when Freshservice creates the requester
        if company is not None:
            body["department_id"] = int(company.id)
        answer = await self.http.call("POST", self.base + "tickets", body=body)
        return self._ref(answer.get("ticket") if isinstance(answer, dict) else None)

    def _ref(self, row: Any) -> PsaRef:
        if not isinstance(row, dict) or not row.get("id"):
            raise PsaError(f"{self.name}: the answer has no ticket id", kind="rejected")
        return PsaRef(ident(row["id"]), f"#{ident(row['id'])}")

    async def find_by_reference(self, key: str) -> PsaRef | None:
        field = await self._key_field()
        answer = await self.http.call(
            "GET", self.base + "tickets/filter", params={"query": f"\"{field}:'{key}'\""}
        )
        rows = answer.get("tickets") if isinstance(answer, dict) else None
        return self._ref(rows[0]) if isinstance(rows, list) and rows else None

    async def add_note(self, ref: PsaRef, text: str) -> None:
        await self.http.call(
            "POST",
            f"{self.base}tickets/{ref.id}/notes",
            body={"body": as_html(text), "private": True},
        )

    async def _agent(self, email: str) -> int | None:
        if not email:
            return None
        found, value = self.memo.get(f"agent:{email.lower()}")
        if not found:
            answer = await self.http.call(
                "GET", self.base + "agents", params={"email": email}, reading="agents"
            )
            rows = answer.get("agents") if isinstance(answer, dict) else None
            value = self.memo.put(
                f"agent:{email.lower()}",
                int(rows[0]["id"]) if isinstance(rows, list) and rows else None,
            )
        return int(value) if value is not None else None

    async def add_time(self, ref: PsaRef, work: TimeWork) -> None:
        hours, minutes = divmod(work.minutes, 60)
        body: dict[str, Any] = {
            "time_spent": f"{hours:02d}:{minutes:02d}",
            "note": work.note,
            "billable": True,
            "timer_running": False,
            "executed_at": work.ended_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        agent = await optional(
            self._agent(work.technician_email),
            None,
            what="the technician (logged as the API key's agent)",
            system=self.name,
        )
        if agent is not None:
            body["agent_id"] = agent
        await self.http.call("POST", f"{self.base}tickets/{ref.id}/time_entries", body=body)

    async def _listed(
        self, ref: PsaRef, collection: str, marker: str, fields: tuple[str, ...]
    ) -> bool:
        """Whether a row of the ticket's `collection` has `marker` in one of `fields`, page by
        page (`page` from 1, `per_page` at most 100, psa-kb-facts §2)."""
        for page in range(1, 51):
            answer = await self.http.call(
                "GET",
                f"{self.base}tickets/{ref.id}/{collection}",
                params={"per_page": str(PAGE), "page": str(page)},
            )
            rows = answer.get(collection) if isinstance(answer, dict) else None
            rows = [r for r in rows if isinstance(r, dict)] if isinstance(rows, list) else []
            if any(marker in str(r.get(f) or "") for r in rows for f in fields):
                return True
            if len(rows) < PAGE:
                break
        return False

    async def find_note(self, ref: PsaRef, marker: str) -> bool | None:
        # "List All Conversations" (api.freshservice.com/#list_all_conversations; FreshservicePS
        # Get-FreshServiceConversation): `GET /api/v2/tickets/<id>/conversations`, the notes
        # as {"conversations": [{"body", "body_text", ...}]}, paged like every list.
        return await self._listed(ref, "conversations", marker, ("body_text", "body"))

    async def find_time(self, ref: PsaRef, marker: str) -> bool | None:
        # psa-kb-facts §2: "List: `GET …/time_entries?page=&per_page=` (default 30)";
        # the marker is in the entry's `note`.
        return await self._listed(ref, "time_entries", marker, ("note",))

    async def raise_to_top_priority(self, ref: PsaRef) -> None:
        await self.http.call("PUT", f"{self.base}tickets/{ref.id}", body={"priority": 4})

    async def close(self, ref: PsaRef, resolution: Resolution) -> None:
        if not resolution.note_posted:
            await self.add_note(ref, resolution.text)
        try:
            await self.http.call("PUT", f"{self.base}tickets/{ref.id}", body={"status": RESOLVED})
        except PsaError as exc:
            exc.progress[NOTE_POSTED] = True  # the retry only changes the status
            raise

    async def probe(self) -> Probe:
        try:
            await self.http.call("GET", self.base + "tickets", params={"per_page": "1"})
        except PsaError as exc:
            return Probe(False, str(exc))
        answer = "authenticated: GET /api/v2/tickets answered"
        try:
            fields = await self.http.call(
                "GET", self.base + "ticket_form_fields", reading="ticket_form_fields"
            )
        except PsaError as exc:
            # The key field cannot be checked from here; the credentials are fine.
            return Probe(True, f"{answer}; the custom field {KEY_FIELD} was not checked ({exc})")
        field = key_field_of(fields)
        if field is None:
            # Every create names it: without it each ticket is refused (invalid_field).
            return Probe(
                False,
                f"{self.name}: authenticated, but tickets have no custom field {KEY_FIELD}: "
                "every ticket would be refused. Create it (Admin > Field Manager, a single-line "
                f"text field whose API name is {KEY_FIELD})",
            )
        return Probe(True, f"{answer}; the custom field {field} is there")
