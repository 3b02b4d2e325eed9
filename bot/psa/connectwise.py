"""ConnectWise PSA (Manage) REST: the codebase from `/login/companyinfo/<company>`, then
`/<codebase>apis/3.0/` with the `clientId` header and `company+public:private` Basic auth.

Tickets carry the bot's key in `externalXRef`; notes are internal analysis notes, the
resolution a resolution note; updates are JSON-Patch arrays; closing picks the board's active
closed status named "Closed" (else its first active closed one), P1 the first priority by sort
order.
"""

from __future__ import annotations

import re
from datetime import UTC, timedelta
from typing import Any

import aiohttp

from bot.psa.http import CachedCompanies, Memo, PsaHttp, basic, company_named, ident
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
    clip,
    optional,
)

DEFAULT_CODEBASE = "v4_6_release/"
CW_PAGE = 1000  # ConnectWise's largest pageSize
# ConnectWise's own company for mail from unknown senders: tickets of clients not found go
# there (the client is named in the description).
CATCHALL = {"identifier": "Catchall"}
# A board's own "Closed" status, whatever punctuation sorts it (">Closed", "- Closed -").
CLOSED_NAME = re.compile(r"[\W_]*closed[\W_]*", re.IGNORECASE)


def quote(value: str) -> str:
    """A string inside a `conditions` expression."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def stamp(moment: Any) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class ConnectWiseConnector(CachedCompanies):
    name = "ConnectWise"
    closure_posts_note = True  # a resolution note, then the closed status

    def __init__(self, session: aiohttp.ClientSession, settings: PsaSettings) -> None:
        self.url = settings.url
        self.company_id = settings.company_id
        user = f"{settings.company_id}+{settings.public_key.get_secret_value()}"
        self.http = PsaHttp(
            session,
            name=self.name,
            headers={
                "Authorization": basic(user, settings.private_key.get_secret_value()),
                "clientId": settings.client_id,
                "Accept": "application/json",
            },
        )
        self.memo = Memo()
        self._codebase: str | None = None

    def __repr__(self) -> str:
        return f"ConnectWiseConnector({self.url!r})"

    async def _read_codebase(self) -> str:
        try:
            answer = await self.http.call(
                "GET", f"{self.url}/login/companyinfo/{self.company_id}", auth=False
            )
        except PsaError as exc:
            if exc.status != 404:
                raise
            answer = None  # ConnectWise does not know the company
        codebase = answer.get("Codebase") if isinstance(answer, dict) else None
        if not codebase:
            # A company ConnectWise does not know is refused credentials (PSA_COMPANY_ID is
            # the first part of the API user too): the writes are kept and the technician
            # told once, as for a 401; never a refusal of each ticket, nor an outage retried.
            raise PsaError(
                f"{self.name}: /login/companyinfo/{self.company_id} names no codebase: "
                "ConnectWise does not know that company; check PSA_COMPANY_ID",
                kind="auth",
            )
        codebase = str(codebase).strip("/") + "/"
        self._codebase = codebase
        return codebase

    async def _api(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        body: Any = None,
        reading: str = "",
    ) -> Any:
        """One API call; a 404 re-reads the codebase once (it moves with cloud releases)."""
        codebase = self._codebase or await self._read_codebase()
        try:
            return await self.http.call(
                method,
                f"{self.url}/{codebase}apis/3.0/{path}",
                params=params,
                body=body,
                reading=reading,
            )
        except PsaError as exc:
            if exc.status != 404 or await self._read_codebase() == codebase:
                raise
        return await self.http.call(
            method,
            f"{self.url}/{self._codebase}apis/3.0/{path}",
            params=params,
            body=body,
            reading=reading,
        )

    async def _list(self, path: str, *, lookup: str = "", **params: str) -> list[dict[str, Any]]:
        """Rows of the collection `path`; `lookup` (what is read) for a read made for a
        write elsewhere: a 403 is the API member's security role (PsaHttp.call `reading`)."""
        try:
            answer = await self._api("GET", path, params=params, reading=lookup)
        except PsaError as exc:
            if exc.status != 404 or any(part.isdigit() for part in path.split("/")):
                raise
            # A collection answers a query that finds nothing with `[]`: a 404 on one, still
            # there after the codebase was read again, is ConnectWise (or the way to it) not
            # serving the API right now, never a refusal of the write it was read for.
            raise PsaError(
                f"{exc}: {path} answered 404 after the codebase was read again "
                "(a ConnectWise release under way?); retried",
                kind="unavailable",
                status=404,
            ) from exc
        return [r for r in answer if isinstance(r, dict)] if isinstance(answer, list) else []

    async def _find_company(self, name: str) -> Company | None:
        rows = await self._list(
            "company/companies",
            lookup="company/companies",
            # Not a deleted company: ConnectWise lists them too, names and all.
            conditions=f"name={quote(name.strip())} and deletedFlag=false",
            fields="id,identifier,name",
            pageSize="25",
        )
        return company_named(rows, name)

    async def _active_contracts(self, company: Company) -> list[str]:
        rows = await self._list(
            "finance/agreements",
            lookup="finance/agreements",
            conditions=f"company/id={int(company.id)} and cancelledFlag=false",
            fields="id,name",
            pageSize="100",
        )
        return [str(r["name"]) for r in rows if r.get("name")]

    async def _top_priority(self) -> int:
        found, value = self.memo.get("priority")
        if not found:
            rows = await self._list(
                "service/priorities",
                lookup="service/priorities",
                orderBy="sortOrder asc",
                fields="id,name",
                pageSize="1",
            )
            if not rows:
                raise PsaError(f"{self.name}: no service priorities are defined", kind="rejected")
            value = self.memo.put("priority", int(rows[0]["id"]))
        return int(value)

    async def create_ticket(self, ticket: NewTicket, company: Company | None) -> PsaRef:
        body: dict[str, Any] = {
            # Lengths in UTF-16 code units, as ConnectWise (.NET) counts them.
            "summary": clip(ticket.title, 100),
            "company": {"id": int(company.id)} if company is not None else CATCHALL,
            "initialDescription": ticket.description,
            "externalXRef": clip(ticket.key, 100),
        }
        if ticket.requester_email:
            body["contactEmailAddress"] = ticket.requester_email
        if ticket.requester_name:
            body["contactName"] = clip(ticket.requester_name, 62)
        if ticket.priority == "P1":
            # Raising it later (psa.priority) needs the list; the ticket need not wait for it.
            top = await optional(
                self._top_priority(), None, what="the P1 priority", system=self.name
            )
            if top is not None:
                body["priority"] = {"id": top}
        return self._ref(await self._api("POST", "service/tickets", body=body))

    def _ref(self, row: Any) -> PsaRef:
        if not isinstance(row, dict) or not row.get("id"):
            raise PsaError(f"{self.name}: the answer has no ticket id", kind="rejected")
        return PsaRef(ident(row["id"]), f"#{ident(row['id'])}")

    async def find_by_reference(self, key: str) -> PsaRef | None:
        rows = await self._list(
            "service/tickets", conditions=f"externalXRef={quote(key)}", fields="id"
        )
        return self._ref(rows[0]) if rows else None

    async def add_note(self, ref: PsaRef, text: str) -> None:
        await self._api(
            "POST",
            f"service/tickets/{ref.id}/notes",
            body={"text": text, "internalAnalysisFlag": True},
        )

    async def _any_row(self, path: str, marker: str, field: str, conditions: str = "") -> bool:
        """Whether a row of the collection `path` has `marker` in its `field`, page by page
        (psa-kb-facts §3: `page` from 1, `pageSize` at most 1000)."""
        params = {"fields": f"id,{field}", "pageSize": str(CW_PAGE), "orderBy": "id desc"}
        if conditions:
            params["conditions"] = conditions
        for page in range(1, 21):
            rows = await self._list(path, **params, page=str(page))
            if any(marker in str(r.get(field) or "") for r in rows):
                return True
            if len(rows) < CW_PAGE:
                break
        return False

    async def find_note(self, ref: PsaRef, marker: str) -> bool | None:
        # The ticket's notes, read back from the collection they are posted to
        # (`service/tickets/<id>/notes`, psa-kb-facts §3), resolution notes included; the
        # marker is matched in `text` on our side (no `contains` on a text field assumed).
        return await self._any_row(f"service/tickets/{int(ref.id)}/notes", marker, "text")

    async def find_time(self, ref: PsaRef, marker: str) -> bool | None:
        # `time/entries` read back with `conditions` on the fields the entry was posted with
        # (psa-kb-facts §3: `chargeToId`, `chargeToType`); the marker is in its `notes`.
        conditions = f'chargeToId={int(ref.id)} and chargeToType="ServiceTicket"'
        return await self._any_row("time/entries", marker, "notes", conditions)

    async def _member(self, email: str) -> str:
        if not email:
            return ""
        found, value = self.memo.get(f"member:{email.lower()}")
        if not found:
            # An active member only: a leaver's record keeps its e-mail (`inactiveFlag`).
            rows = await self._list(
                "system/members",
                lookup="system/members",
                conditions=f"officeEmail={quote(email)} and inactiveFlag=false",
                fields="identifier",
            )
            value = self.memo.put(
                f"member:{email.lower()}", str(rows[0].get("identifier", "")) if rows else ""
            )
        return str(value)

    async def add_time(self, ref: PsaRef, work: TimeWork) -> None:
        body: dict[str, Any] = {
            "chargeToId": int(ref.id),
            "chargeToType": "ServiceTicket",
            "timeStart": stamp(work.ended_at - timedelta(minutes=work.minutes)),
            "timeEnd": stamp(work.ended_at),
            "notes": work.note,
        }
        member = await optional(
            self._member(work.technician_email),
            "",
            what="the technician (logged as the API member)",
            system=self.name,
        )
        if member:
            body["member"] = {"identifier": member}
        await self._api("POST", "time/entries", body=body)

    async def _patch(self, ref: PsaRef, path: str, value: Any) -> None:
        await self._api(
            "PATCH",
            f"service/tickets/{ref.id}",
            body=[{"op": "replace", "path": path, "value": value}],
        )

    async def raise_to_top_priority(self, ref: PsaRef) -> None:
        await self._patch(ref, "priority", {"id": await self._top_priority()})

    async def _closed_status(self, ref: PsaRef) -> int:
        ticket = await self._api("GET", f"service/tickets/{ref.id}", params={"fields": "id,board"})
        board = ticket.get("board") if isinstance(ticket, dict) else None
        if not isinstance(board, dict) or not board.get("id"):
            raise PsaError(f"{self.name}: ticket {ref.number} has no board", kind="rejected")
        key = f"closed:{board['id']}"
        found, value = self.memo.get(key)
        if not found:
            # Without the board's closed status the ticket cannot be closed: a 403 refuses
            # the closure (saying what to grant), not the credentials.
            # Active closed statuses only (a retired one is listed too: django-connectwise
            # reads them with `inactive=False`), and the one named "Closed" when the board
            # has it: the first by sort order is often "Cancelled" or a retired status.
            rows = await self._list(
                f"service/boards/{int(board['id'])}/statuses",
                lookup=f"service/boards/{int(board['id'])}/statuses (the board's statuses)",
                conditions="closedStatus=true and inactive=false",
                orderBy="sortOrder asc",
                fields="id,name",
            )
            if not rows:
                raise PsaError(
                    f"{self.name}: board {board.get('name', board['id'])} has no closed status",
                    kind="rejected",
                )
            named = (r for r in rows if CLOSED_NAME.fullmatch(str(r.get("name") or "")))
            value = self.memo.put(key, int(next(named, rows[0])["id"]))
        return int(value)

    async def close(self, ref: PsaRef, resolution: Resolution) -> None:
        status = await self._closed_status(ref)
        if not resolution.note_posted:
            await self._api(
                "POST",
                f"service/tickets/{ref.id}/notes",
                body={"text": resolution.text, "resolutionFlag": True},
            )
        try:
            await self._patch(ref, "status", {"id": status})
        except PsaError as exc:
            exc.progress[NOTE_POSTED] = True  # the retry only changes the status
            raise

    async def probe(self) -> Probe:
        try:
            codebase = await self._read_codebase()
            info = await self._api("GET", "system/info")
        except PsaError as exc:
            return Probe(False, str(exc))
        version = info.get("version", "?") if isinstance(info, dict) else "?"
        return Probe(True, f"authenticated: codebase {codebase}, ConnectWise version {version}")
