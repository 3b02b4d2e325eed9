"""ServiceNow through its Table API (`/api/now/table/`), HTTP Basic as the integration user.

Incidents carry the bot's key in `correlation_id`; work notes are journal writes (PATCH
`work_notes`); time goes to `task_time_worked`; resolving is state 6 with a `close_code`
from the instance's own choice list and `close_notes`.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp

from bot.psa.http import CachedCompanies, Memo, PsaHttp, basic, company_named, ident
from bot.psa.settings import PsaSettings
from handlers.psa import (
    Company,
    NewTicket,
    Probe,
    PsaError,
    PsaRef,
    Resolution,
    TimeWork,
    optional,
)

# P1..P4 as impact/urgency, which the OOB priority lookup turns into priority 1..4.
IMPACT_URGENCY = {"P1": ("1", "1"), "P2": ("1", "2"), "P3": ("2", "2"), "P4": ("2", "3")}
PRIORITY = {"P1": "1", "P2": "2", "P3": "3", "P4": "4"}
RESOLVED = "6"
PREFERRED_CLOSE_CODES = ("solution provided", "solved (permanently)", "resolved")
DEFAULT_CLOSE_CODE = "Solution provided"
EPOCH = datetime(1970, 1, 1)


# What ServiceNow says in a 403 when the instance's rules, not the user's rights, refuse a
# write: "Data Policy Exception: The following fields are mandatory: ..." or "Operation
# against file 'incident' was aborted by Business Rule '...'" (under "Operation Failed").
RULE_REFUSALS = ("data policy exception", "aborted by business rule")


def refused_by_a_rule(status: int, answer: Any) -> bool:
    """A 403 that is a data policy or business rule refusing the write as sent (the REST
    API's 403 covers "ACL failures, or business rule or data policy constraints")."""
    error = answer.get("error") if isinstance(answer, dict) else None
    if status != 403 or not isinstance(error, dict):
        return False
    said = f"{error.get('message') or ''} {error.get('detail') or ''}".lower()
    return any(words in said for words in RULE_REFUSALS)


# "Journal fields render text wrapped in code tags as HTML" (servicenow.com, Journal field
# type): a [code] tag in a work note is markup there, whoever typed it in chat.
CODE_TAG = re.compile(r"\[(\s*/?\s*code\s*)\]", re.IGNORECASE)


def journal(text: str) -> str:
    """`text` for a journal field (work notes): every [code] / [/code] tag broken up by a
    zero-width space after its bracket, so it shows as typed and is never HTML."""
    return CODE_TAG.sub("[\u200b\\1]", text)


def quote(value: str) -> str:
    """A value inside an encoded query (`^` separates conditions, `^^` is a literal caret)."""
    return value.replace("^", "^^")


class ServiceNowConnector(CachedCompanies):
    name = "ServiceNow"
    closure_posts_note = False  # state, close_code and close_notes are fields of the incident

    def __init__(self, session: aiohttp.ClientSession, settings: PsaSettings) -> None:
        self.base = f"{settings.url}/api/now/table/"
        self.http = PsaHttp(
            session,
            name=self.name,
            headers={
                "Authorization": basic(settings.username, settings.password.get_secret_value()),
                "Accept": "application/json",
            },
            refused=refused_by_a_rule,
        )
        self.memo = Memo()

    def __repr__(self) -> str:
        return f"ServiceNowConnector({self.base!r})"

    async def _rows(
        self, table: str, query: str, fields: str, limit: int, *, lookup: str = ""
    ) -> list[dict[str, Any]]:
        """Rows of `table`; `lookup` (what is read) for a read made for a write in another
        table: a 403 is that table's ACL (PsaHttp.call `reading`)."""
        answer = await self.http.call(
            "GET",
            self.base + table,
            params={
                "sysparm_query": query,
                "sysparm_fields": fields,
                "sysparm_limit": str(limit),
                "sysparm_exclude_reference_link": "true",
            },
            reading=lookup,
        )
        rows = answer.get("result") if isinstance(answer, dict) else None
        return [r for r in rows if isinstance(r, dict)] if isinstance(rows, list) else []

    async def _one_id(self, table: str, query: str) -> str:
        found, value = self.memo.get(f"{table}?{query}")
        if found:
            return str(value)
        rows = await self._rows(table, query, "sys_id", 1, lookup=table)
        return str(self.memo.put(f"{table}?{query}", rows[0].get("sys_id", "") if rows else ""))

    async def _user(self, email: str) -> str:
        """The person's `sys_user` by e-mail: the active account first (an instance keeps a
        leaver's or an import's deactivated duplicate beside it, with the same e-mail)."""
        if not email:
            return ""
        return await self._one_id("sys_user", f"email={quote(email)}^ORDERBYDESCactive")

    async def _find_company(self, name: str) -> Company | None:
        # The exact name (ServiceNow compares strings ignoring case): a LIKE with a limit
        # missed it behind more than a page of similar names ("Acme Branch 1", ...).
        rows = await self._rows(
            "core_company", f"name={quote(name.strip())}", "sys_id,name", 10, lookup="core_company"
        )
        return company_named(rows, name, id_key="sys_id")

    async def _active_contracts(self, company: Company) -> list[str]:
        rows = await self._rows(
            "ast_contract",
            f"company={company.id}^state=active",
            "short_description,number",
            100,
            lookup="ast_contract",
        )
        return [str(r["short_description"]) for r in rows if r.get("short_description")]

    async def create_ticket(self, ticket: NewTicket, company: Company | None) -> PsaRef:
        impact, urgency = IMPACT_URGENCY.get(ticket.priority, ("2", "2"))
        body: dict[str, Any] = {
            "short_description": ticket.title[:160],
            "description": ticket.description,
            "correlation_id": ticket.key,
            "correlation_display": "helpdesk-bot",
            "impact": impact,
            "urgency": urgency,
            "priority": PRIORITY.get(ticket.priority, "3"),
            "category": ticket.category,
            "contact_type": "chat",
        }
        caller = await optional(
            self._user(ticket.requester_email), "", what="the caller", system=self.name
        )
        if caller:
            body["caller_id"] = caller
        if company is not None:
            body["company"] = company.id
        if ticket.asset:
            ci = await optional(
                self._one_id("cmdb_ci", f"name={quote(ticket.asset)}"),
                "",
                what=f"the asset {ticket.asset}",
                system=self.name,
            )
            if ci:
                body["cmdb_ci"] = ci
        answer = await self.http.call(
            "POST",
            self.base + "incident",
            params={"sysparm_exclude_reference_link": "true", "sysparm_fields": "sys_id,number"},
            body=body,
        )
        return self._ref(answer)

    def _ref(self, answer: Any) -> PsaRef:
        row = answer.get("result") if isinstance(answer, dict) else None
        if not isinstance(row, dict) or not row.get("sys_id"):
            raise PsaError(f"{self.name}: the answer has no incident sys_id", kind="rejected")
        return PsaRef(ident(row["sys_id"]), ident(row.get("number") or row["sys_id"]))

    async def find_by_reference(self, key: str) -> PsaRef | None:
        rows = await self._rows("incident", f"correlation_id={quote(key)}", "sys_id,number", 1)
        return self._ref({"result": rows[0]}) if rows else None

    async def _patch(self, ref: PsaRef, body: dict[str, Any]) -> None:
        await self.http.call(
            "PATCH",
            f"{self.base}incident/{ref.id}",
            params={"sysparm_fields": "sys_id"},
            body=body,
        )

    async def add_note(self, ref: PsaRef, text: str) -> None:
        await self._patch(ref, {"work_notes": journal(text)})

    async def add_time(self, ref: PsaRef, work: TimeWork) -> None:
        worked = (EPOCH + timedelta(minutes=work.minutes)).strftime("%Y-%m-%d %H:%M:%S")
        body: dict[str, Any] = {
            "task": ref.id,
            "time_worked": worked,
            "comments": work.note,
            "work_date": work.ended_at.astimezone(UTC).strftime("%Y-%m-%d"),
        }
        user = await optional(
            self._user(work.technician_email),
            "",
            what="the technician (logged as the integration user)",
            system=self.name,
        )
        if user:
            body["user"] = user
        await self.http.call(
            "POST", self.base + "task_time_worked", params={"sysparm_fields": "sys_id"}, body=body
        )

    async def find_note(self, ref: PsaRef, marker: str) -> bool | None:
        # psa-kb-facts §1: "Each write appends a `sys_journal_field` row; read history via
        # `sys_journal_field?sysparm_query=element_id=<sys_id>`"; the entry's text is its
        # `value` column, matched with the encoded query's LIKE (contains).
        rows = await self._rows(
            "sys_journal_field",
            f"element_id={ref.id}^valueLIKE{quote(marker)}",
            "sys_id",
            1,
            lookup="sys_journal_field",
        )
        return bool(rows)

    async def find_time(self, ref: PsaRef, marker: str) -> bool | None:
        # psa-kb-facts §1: `task_time_worked` rows have the columns `task` and `comments`
        # (the note, which carries the marker); a Table API GET with an encoded query.
        rows = await self._rows(
            "task_time_worked",
            f"task={ref.id}^commentsLIKE{quote(marker)}",
            "sys_id",
            1,
            lookup="task_time_worked",
        )
        return bool(rows)

    async def raise_to_top_priority(self, ref: PsaRef) -> None:
        await self._patch(ref, {"impact": "1", "urgency": "1", "priority": "1"})

    async def _close_code(self) -> str:
        found, value = self.memo.get("close_code")
        if found:
            return str(value)
        rows = await self._rows(
            "sys_choice",
            "name=incident^element=close_code^inactive=false",
            "value,label",
            50,
            # Without the instance's close codes the incident cannot be resolved correctly:
            # a 403 refuses the closure (saying what to grant), not the credentials.
            lookup="sys_choice (the incident close codes)",
        )
        values = {str(r.get("label") or r.get("value")).lower(): str(r.get("value")) for r in rows}
        code = next((values[p] for p in PREFERRED_CLOSE_CODES if p in values), None)
        if code is None:
            code = str(rows[0].get("value")) if rows else DEFAULT_CLOSE_CODE
        return str(self.memo.put("close_code", code))

    async def close(self, ref: PsaRef, resolution: Resolution) -> None:
        code = await self._close_code()
        await self._patch(
            ref, {"state": RESOLVED, "close_code": code, "close_notes": resolution.text}
        )

    async def probe(self) -> Probe:
        try:
            rows = await self._rows("incident", "", "sys_id", 1)
        except PsaError as exc:
            return Probe(False, str(exc))
        return Probe(
            True,
            f"authenticated: GET /api/now/table/incident answered ({len(rows)} row read)",
        )
