"""Autotask PSA REST: the zone URL from `zoneInformation?user=`, then `<zone>v1.0/<Entity>`
with the `ApiIntegrationCode`, `UserName` and `Secret` headers.

Tickets carry the bot's key in `externalID`; picklist values (status, priority, queue, note
type) are read from the instance (`entityInformation/fields`), since they differ between
databases; at most three requests run at once per entity (Autotask's thread limit).
"""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, timedelta
from typing import Any

import aiohttp

from bot.psa.http import CachedCompanies, Memo, PsaHttp, company_named, ident
from bot.psa.settings import PsaSettings
from handlers.psa import (
    Company,
    NewTicket,
    Probe,
    PsaError,
    PsaRef,
    Resolution,
    TimeWork,
    clip,
    clip_marked,
    optional,
)

THREADS = 3
ZONE_PATH = re.compile(r"/atservicesrest(/v1\.0)?/?$", re.IGNORECASE)
PRIORITY_LABELS = {"P1": "critical", "P2": "high", "P3": "medium", "P4": "low"}
PRIORITY_VALUES = {"P1": 4, "P2": 1, "P3": 2, "P4": 3}  # Autotask's system defaults
NEW, COMPLETE = 1, 5
YOUR_COMPANY = 0  # Autotask's own company record: tickets of clients not found go there
PUBLISH_ALL = 1


def unknown_integration_code(status: int, answer: Any) -> bool:
    """Autotask's answer to an ApiIntegrationCode (PSA_CLIENT_ID) it does not know: HTTP 500
    with `{"errors": ["IntegrationCode is invalid."]}`, not a 401 (apigrate/autotask-restapi
    #19: "valid credentials, but an invalid integration code ... HTTP 500"; py-autotask takes
    it for an authentication error)."""
    errors = answer.get("errors") if isinstance(answer, dict) else None
    return (
        status == 500
        and isinstance(errors, list)
        and any("integrationcode" in str(e).replace(" ", "").lower() for e in errors)
    )


def stamp(moment: Any) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _eq(field: str, value: Any) -> dict[str, Any]:
    return {"op": "eq", "field": field, "value": value}


def _contains(field: str, value: str) -> dict[str, Any]:
    return {"op": "contains", "field": field, "value": value}


class AutotaskConnector(CachedCompanies):
    name = "Autotask"
    closure_posts_note = False  # status and `resolution` are fields of the ticket (PATCH)

    def __init__(self, session: aiohttp.ClientSession, settings: PsaSettings) -> None:
        # A zone URL given directly (`…/atservicesrest[/v1.0]`) is its host: it answers
        # zoneInformation like webservices.autotask.net does.
        self.url = ZONE_PATH.sub("", settings.url)
        self.username = settings.username
        self.http = PsaHttp(
            session,
            name=self.name,
            headers={
                "ApiIntegrationCode": settings.client_id,
                "UserName": settings.username,
                "Secret": settings.password.get_secret_value(),
                "Accept": "application/json",
            },
            # Autotask's business-rule refusals are 500s with `errors` (not 4xx): e.g.
            # apigrate/autotask-restapi#19, WYRE-AI/msp-claude-plugins#32.
            refuses_with_500=True,
            credentials_refused=unknown_integration_code,
        )
        self.memo = Memo()
        self.picklists = Memo(ttl=3600.0)  # picklists change with the admin, not the day
        self._zone: str | None = None
        self._threads: dict[str, asyncio.Semaphore] = {}

    def __repr__(self) -> str:
        return f"AutotaskConnector({self.url!r})"

    async def _base(self) -> str:
        if self._zone is None:
            try:
                answer = await self.http.call(
                    "GET",
                    f"{self.url}/atservicesrest/v1.0/zoneInformation",
                    params={"user": self.username},
                    auth=False,
                )
            except PsaError as exc:
                if exc.status != 500:
                    raise
                answer = None  # psa-kb-facts §4: an unknown user gets 500 "Zone information..."
            zone = answer.get("url") if isinstance(answer, dict) else None
            if not zone:
                # A user name Autotask does not know is refused credentials: the writes are
                # kept and the technician told once, as for a 401.
                raise PsaError(
                    f"{self.name}: no zone for API user {self.username} (zoneInformation "
                    "could not determine one): check PSA_USERNAME",
                    kind="auth",
                )
            self._zone = str(zone).rstrip("/") + "/"
        return f"{self._zone}v1.0/"

    async def _api(self, method: str, path: str, *, body: Any = None, reading: str = "") -> Any:
        entity = path.split("/", 1)[0]
        threads = self._threads.setdefault(entity, asyncio.Semaphore(THREADS))
        base = await self._base()
        async with threads:
            return await self.http.call(method, base + path, body=body, reading=reading)

    async def _query(
        self,
        entity: str,
        filters: list[dict[str, Any]],
        fields: list[str],
        limit: int = 50,
        *,
        lookup: bool = True,
    ) -> list[dict[str, Any]]:
        """Rows of `entity`. Every query but the ticket's own is a look-up for a write: a
        403 is the API user's security level keeping that entity from it, not its secret."""
        answer = await self._api(
            "POST",
            f"{entity}/query",
            body={"filter": filters, "IncludeFields": fields, "MaxRecords": limit},
            reading=entity if lookup else "",
        )
        items = answer.get("items") if isinstance(answer, dict) else None
        return [i for i in items if isinstance(i, dict)] if isinstance(items, list) else []

    async def _picklist(self, entity: str, field: str) -> list[dict[str, Any]]:
        key = f"picklist:{entity}"
        found, fields = self.picklists.get(key)
        if not found:
            answer = await self._api(
                "GET",
                f"{entity}/entityInformation/fields",
                reading=f"the {entity} picklists ({entity}/entityInformation/fields)",
            )
            rows = answer.get("fields") if isinstance(answer, dict) else None
            fields = self.picklists.put(key, rows if isinstance(rows, list) else [])
        for item in fields:
            if isinstance(item, dict) and item.get("name") == field:
                values = item.get("picklistValues") or []
                return [v for v in values if isinstance(v, dict) and v.get("isActive", True)]
        return []

    async def _pick(
        self,
        entity: str,
        field: str,
        label: str | None,
        fallback: int | None,
        *,
        required: bool = False,
    ) -> int | None:
        """The picklist value labelled `label` (ignoring case), else the default one.
        Picklists the API user may not read: `fallback` (the system value), unless the
        write is only that value (`required`: completing, the priority), then it is refused."""
        if required:
            values = await self._picklist(entity, field)
        else:
            values = await optional(
                self._picklist(entity, field),
                [],
                what=f"the {entity} {field} picklist (the system default was used)",
                system=self.name,
            )
        if label is not None:
            for value in values:
                if str(value.get("label", "")).strip().lower() == label:
                    return int(value["value"])
        for value in values:
            if value.get("isDefaultValue"):
                return int(value["value"])
        return fallback

    async def _find_company(self, name: str) -> Company | None:
        # An active company: Autotask keeps inactive ones, names and all.
        rows = await self._query(
            "Companies",
            [_eq("companyName", name.strip()), _eq("isActive", True)],
            ["id", "companyName"],
        )
        return company_named(rows, name, name_key="companyName")

    async def _active_contracts(self, company: Company) -> list[str]:
        rows = await self._query(
            "Contracts",
            [{"op": "and", "items": [_eq("companyID", int(company.id)), _eq("status", 1)]}],
            ["id", "contractName"],
            limit=100,
        )
        return [str(r["contractName"]) for r in rows if r.get("contractName")]

    async def _contact(self, email: str, company: Company) -> int | None:
        """The requester as an active contact of the ticket's own company: Autotask refuses a
        ticket whose contact belongs to another one (the same address can be a contact at
        several), and keeps inactive contacts with the address of an active one."""
        if not email:
            return None
        rows = await self._query(
            "Contacts",
            # Contacts' isActive is a number (1 / 0); django-autotask asks for it as 'true'.
            [
                _eq("emailAddress", email),
                _eq("companyID", int(company.id)),
                _eq("isActive", "true"),
            ],
            ["id"],
            limit=1,
        )
        return int(rows[0]["id"]) if rows else None

    async def create_ticket(self, ticket: NewTicket, company: Company | None) -> PsaRef:
        label = PRIORITY_LABELS.get(ticket.priority)
        body: dict[str, Any] = {
            "companyID": int(company.id) if company is not None else YOUR_COMPANY,
            # Lengths in UTF-16 code units, as Autotask (.NET) counts them.
            "title": clip(ticket.title, 255),
            "description": clip(ticket.description, 8000),
            "status": await self._pick("Tickets", "status", "new", NEW),
            "priority": await self._pick(
                "Tickets", "priority", label, PRIORITY_VALUES.get(ticket.priority, 2)
            ),
            "externalID": ticket.key,
        }
        queue = await self._pick("Tickets", "queueID", None, None)
        if queue is not None:
            body["queueID"] = queue
        if company is not None:
            contact = await optional(
                self._contact(ticket.requester_email, company),
                None,
                what="the contact",
                system=self.name,
            )
            if contact is not None:
                body["contactID"] = contact
        answer = await self._api("POST", "Tickets", body=body)
        item_id = answer.get("itemId") if isinstance(answer, dict) else None
        if not item_id:
            raise PsaError(f"{self.name}: the answer has no itemId", kind="rejected")
        try:
            return await self._ticket(int(item_id))
        except PsaError as exc:
            # The ticket exists now: however its read failed, the failure is never "certainly
            # not applied", so the retry looks it up by externalID instead of creating again.
            if exc.permanent:
                return PsaRef(str(item_id), str(item_id))  # number unknown: the id shows
            raise PsaError(
                f"{exc} (reading ticket {item_id}, made by this create)",
                kind=exc.kind,
                status=exc.status,
                retry_after=exc.retry_after,
                definite=False,
            ) from exc

    async def _ticket(self, item_id: int) -> PsaRef:
        answer = await self._api("GET", f"Tickets/{item_id}")
        item = answer.get("item") if isinstance(answer, dict) else None
        number = item.get("ticketNumber") if isinstance(item, dict) else None
        return PsaRef(str(item_id), ident(number or item_id))

    async def find_by_reference(self, key: str) -> PsaRef | None:
        rows = await self._query(
            "Tickets", [_eq("externalID", key)], ["id", "ticketNumber"], 1, lookup=False
        )
        if not rows:
            return None
        found = rows[0]
        return PsaRef(ident(found["id"]), ident(found.get("ticketNumber") or found["id"]))

    async def add_note(self, ref: PsaRef, text: str) -> None:
        title = clip(text.strip().splitlines()[0], 250) if text.strip() else "Note"
        body = {
            "ticketID": int(ref.id),
            "title": title,
            "description": clip_marked(text, 32000),
            "noteType": await self._pick("TicketNotes", "noteType", None, 1),
            "publish": PUBLISH_ALL,
        }
        await self._api("POST", f"Tickets/{int(ref.id)}/Notes", body=body)

    async def find_note(self, ref: PsaRef, marker: str) -> bool | None:
        # psa-kb-facts §4: notes "are written under the parent URL but queried at
        # `/v1.0/TicketNotes/query`"; operators include `eq` and `contains`.
        rows = await self._query(
            "TicketNotes",
            [_eq("ticketID", int(ref.id)), _contains("description", marker)],
            ["id"],
            1,
        )
        return bool(rows)

    async def find_time(self, ref: PsaRef, marker: str) -> bool | None:
        # psa-kb-facts §4: `POST /v1.0/<Entity>/query` for any entity, here `TimeEntries`
        # by the `ticketID` and `summaryNotes` it was posted with.
        rows = await self._query(
            "TimeEntries",
            [_eq("ticketID", int(ref.id)), _contains("summaryNotes", marker)],
            ["id"],
            1,
        )
        return bool(rows)

    async def _resource(self, email: str) -> tuple[int, int | None]:
        """(resource id, its default role) of the technician, else of the API user."""
        key = f"resource:{email.lower()}"
        found, value = self.memo.get(key)
        if found:
            return value  # type: ignore[no-any-return]
        # Active records only: an inactive one (a leaver) keeps its e-mail.
        active = _eq("isActive", True)
        rows = (
            await self._query("Resources", [_eq("email", email), active], ["id"], 1)
            if email
            else []
        )
        if not rows:
            rows = await self._query("Resources", [_eq("userName", self.username)], ["id"], 1)
        if not rows:
            raise PsaError(f"{self.name}: no resource to log time as", kind="rejected")
        resource = int(rows[0]["id"])
        roles = await optional(
            self._query(
                "ResourceServiceDeskRoles",
                [_eq("resourceID", resource), _eq("isDefault", True), _eq("isActive", True)],
                ["roleID"],
                1,
            ),
            [],
            what="the technician's role",
            system=self.name,
        )
        role = int(roles[0]["roleID"]) if roles and roles[0].get("roleID") else None
        return self.memo.put(key, (resource, role))  # type: ignore[no-any-return]

    async def add_time(self, ref: PsaRef, work: TimeWork) -> None:
        # A time entry needs a resource: Resources kept from the API user refuse it (403).
        resource, role = await self._resource(work.technician_email)
        start = work.ended_at - timedelta(minutes=work.minutes)
        body: dict[str, Any] = {
            "ticketID": int(ref.id),
            "resourceID": resource,
            "dateWorked": start.astimezone(UTC).strftime("%Y-%m-%dT00:00:00Z"),
            "startDateTime": stamp(start),
            "endDateTime": stamp(work.ended_at),
            "hoursWorked": round(work.minutes / 60, 2),
            "summaryNotes": work.note or "Work logged in chat",
        }
        if role is not None:
            body["roleID"] = role
        await self._api("POST", "TimeEntries", body=body)

    async def raise_to_top_priority(self, ref: PsaRef) -> None:
        critical = await self._pick(
            "Tickets", "priority", "critical", PRIORITY_VALUES["P1"], required=True
        )
        await self._api("PATCH", "Tickets", body={"id": int(ref.id), "priority": critical})

    async def close(self, ref: PsaRef, resolution: Resolution) -> None:
        complete = await self._pick("Tickets", "status", "complete", COMPLETE, required=True)
        await self._api(
            "PATCH",
            "Tickets",
            body={
                "id": int(ref.id),
                "status": complete,
                "resolution": clip(resolution.text, 32000),
            },
        )

    async def probe(self) -> Probe:
        try:
            base = await self._base()
            answer = await self._api("GET", "ThresholdInformation")
        except PsaError as exc:
            return Probe(False, str(exc))
        used = answer.get("currentTimeframeRequestCount", "?") if isinstance(answer, dict) else "?"
        limit = answer.get("externalRequestThreshold", "?") if isinstance(answer, dict) else "?"
        return Probe(True, f"authenticated: zone {base}, {used} of {limit} requests this hour")
