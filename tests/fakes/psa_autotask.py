"""Fake Autotask PSA REST API.

`GET /atservicesrest/v1.0/zoneInformation?user=` (no secret) answers the zone URL, which is
`/zone5/atservicesrest/` on this same server; there every call needs `ApiIntegrationCode`,
`UserName` and `Secret`. Envelopes: `{"itemId"}`, `{"item"}`, `{"items", "pageDetails"}`,
errors `{"errors": [...]}` (text longer than its field, counted in UTF-16 code units as .NET
does, is refused; a ticket whose contact is not one of its company's contacts is
refused, 500); queries `POST <Entity>/query` with eq / and filters; picklists
from `<Entity>/entityInformation/fields` (values as strings, as Autotask sends them); at most
three requests at once per entity (429 "Thread Threshold Exceeded" beyond). A wrong
`ApiIntegrationCode` with the right user and secret is a 500 "IntegrationCode is invalid."
(not a 401, as Autotask answers it). An entity (or
a path such as `Tickets/entityInformation/fields`) in `unreadable` answers its reads with
403 `{"errors": [...]}` (the API user's security level does not allow it).
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from tests.fakes.base import Recorded
from tests.fakes.psa_common import FakeTicket, PsaFake, utf16_length

USER, SECRET, INTEGRATION = "api.helpdesk@acme.example", "at-Secret-0123456789ab", "TRACKING0123"
ZONE = "/zone5/atservicesrest/"


def _pick(name: str, values: list[tuple[int, str, bool]]) -> dict[str, Any]:
    return {
        "name": name,
        "dataType": "integer",
        "isPickList": True,
        "isRequired": True,
        "picklistValues": [
            {
                "value": str(v),
                "label": label,
                "isDefaultValue": default,
                "sortOrder": i,
                "isActive": True,
                "isSystem": True,
            }
            for i, (v, label, default) in enumerate(values)
        ],
    }


TICKET_FIELDS = [
    _pick("status", [(1, "New", True), (5, "Complete", False), (8, "In Progress", False)]),
    _pick(
        "priority",
        [(1, "High", False), (2, "Medium", True), (3, "Low", False), (4, "Critical", False)],
    ),
    _pick("queueID", [(29682833, "Client Portal", False), (29683354, "Level I Support", True)]),
]
NOTE_FIELDS = [_pick("noteType", [(1, "Task Summary", False), (2, "Task Detail", True)])]
COMPLETE, CRITICAL = 5, 4
# Longest text each field takes, in UTF-16 code units (.NET, nvarchar): longer is refused.
LIMITS = {
    "Tickets": {"title": 255, "description": 8000, "resolution": 32000},
    "TicketNotes": {"title": 250, "description": 32000},
}


def _errors(status: int, *messages: str) -> web.Response:
    return web.json_response({"errors": list(messages)}, status=status)


def _too_long(entity: str, body: dict[str, Any]) -> web.Response | None:
    for name, limit in LIMITS[entity].items():
        if name in body and utf16_length(str(body[name] or "")) > limit:
            return _errors(
                500, f"The value for field {name} exceeds its maximum length of {limit}."
            )
    return None


def _values(fields: list[dict[str, Any]], name: str) -> set[int]:
    field = next(f for f in fields if f["name"] == name)
    return {int(v["value"]) for v in field["picklistValues"]}


def _matches(record: dict[str, Any], item: dict[str, Any]) -> bool:
    op = item.get("op")
    if op == "and":
        return all(_matches(record, i) for i in item.get("items", []))
    if op == "or":
        return any(_matches(record, i) for i in item.get("items", []))
    value = record.get(str(item.get("field")))
    if op == "eq":
        want = item.get("value")
        if isinstance(want, str) and want.lower() in ("true", "false") and value in (0, 1):
            return bool(value) == (want.lower() == "true")  # a flag asked for as text
        if isinstance(want, str) and isinstance(value, str):
            return value.lower() == want.lower()
        return bool(value == want)
    if op == "contains":
        return str(item.get("value", "")).lower() in str(value or "").lower()
    raise ValueError(f"operator {op!r}")


class FakeAutotask(PsaFake):
    SYSTEM = "autotask"

    def __init__(self) -> None:
        super().__init__()
        self.entities: dict[str, list[dict[str, Any]]] = {
            "Companies": [{"id": 0, "companyName": "Acme MSP (your company)", "isActive": True}],
            "Contracts": [],
            "Contacts": [],
            "Resources": [],
            "ResourceServiceDeskRoles": [],
            "TicketNotes": [],
            "TimeEntries": [],
            "Tickets": [],
        }
        self.in_flight: dict[str, int] = {}
        self.most_in_flight = 0
        self._item = 1000
        self.add_resource(USER, user_name=USER)

    def env(self) -> dict[str, str]:
        return {"PSA_USERNAME": USER, "PSA_PASSWORD": SECRET, "PSA_CLIENT_ID": INTEGRATION}

    def default_error_body(self, status: int) -> Any:
        if status == 429:
            return {"errors": ["Thread Threshold Exceeded: too many requests at once"]}
        return {"errors": [f"scripted {status}"]}

    def _next(self) -> int:
        self._item += 1
        return self._item

    def add_company(self, name: str, contracts: list[tuple[str, bool]] | None = None) -> str:
        company_id = super().add_company(name, contracts)
        self.entities["Companies"].append(
            {"id": int(company_id), "companyName": name, "isActive": True}
        )
        for contract, active in contracts or []:
            self.entities["Contracts"].append(
                {
                    "id": self._next(),
                    "companyID": int(company_id),
                    "contractName": contract,
                    "status": 1 if active else 0,
                }
            )
        return company_id

    def add_contact(self, company_id: str, email: str) -> int:
        contact = self._next()
        self.entities["Contacts"].append(
            # isActive is a number on contacts (django-autotask's fixtures: "isActive": 1).
            {"id": contact, "companyID": int(company_id), "emailAddress": email, "isActive": 1}
        )
        self.people[email.lower()] = str(contact)
        return contact

    def add_resource(self, email: str, *, user_name: str = "") -> int:
        resource = self._next()
        self.entities["Resources"].append(
            {
                "id": resource,
                "email": email,
                "userName": user_name or email.split("@")[0],
                "isActive": True,
            }
        )
        self.entities["ResourceServiceDeskRoles"].append(
            {
                "id": self._next(),
                "resourceID": resource,
                "roleID": 29683461,
                "isDefault": True,
                "isActive": True,
            }
        )
        return resource

    def _user_and_secret(self, rec: Recorded) -> bool:
        return not self.refuse_credentials and (
            rec.headers.get("UserName"),
            rec.headers.get("Secret"),
        ) == (USER, SECRET)

    def _authorized(self, rec: Recorded) -> bool:
        return not self.refuse_credentials and (
            rec.headers.get("UserName"),
            rec.headers.get("Secret"),
            rec.headers.get("ApiIntegrationCode"),
        ) == (USER, SECRET, INTEGRATION)

    async def handle(self, rec: Recorded, request: web.Request) -> web.StreamResponse:
        if rec.path.lower().endswith("/atservicesrest/v1.0/zoneinformation"):  # any zone host
            if rec.query.get("user", "").lower() != USER:
                return _errors(500, "Zone information could not be determined")
            return web.json_response(
                {
                    "zoneName": "Fake Zone 5",
                    "url": f"{self.url}{ZONE}",
                    "webUrl": f"{self.url}/web/",
                    "ci": 5,
                }
            )
        prefix = f"{ZONE}v1.0/"
        if not rec.path.startswith(prefix):
            return _errors(404, "Not found")
        if not self._authorized(rec):
            if self._user_and_secret(rec):
                # A tracking identifier Autotask does not know is a 500, not a 401
                # (apigrate/autotask-restapi#19; py-autotask's AutotaskAuthError on it).
                return _errors(500, "IntegrationCode is invalid.")
            return web.json_response({"errors": ["Unauthorized"]}, status=401)
        path = rec.path[len(prefix) :].strip("/")
        entity = path.split("/", 1)[0]
        if self.in_flight.get(entity, 0) >= 3:
            return _errors(429, "Thread Threshold Exceeded")
        self.in_flight[entity] = self.in_flight.get(entity, 0) + 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight[entity])
        try:
            await asyncio.sleep(0)
            return await self._route(rec, path)
        finally:
            self.in_flight[entity] -= 1

    async def _route(self, rec: Recorded, path: str) -> web.Response:
        parts = path.split("/")
        reads = rec.method == "GET" or (len(parts) == 2 and parts[1] == "query")
        if reads and len(parts) >= 2 and (parts[0] in self.unreadable or path in self.unreadable):
            return _errors(403, f"The logged in user does not have permission to read {parts[0]}.")
        if rec.method == "GET":
            if path == "Tickets/entityInformation/fields":
                return web.json_response({"fields": TICKET_FIELDS})
            if path == "TicketNotes/entityInformation/fields":
                return web.json_response({"fields": NOTE_FIELDS})
            if path == "ThresholdInformation":
                return web.json_response(
                    {
                        "externalRequestThreshold": 10000,
                        "requestThresholdTimeframe": 60,
                        "currentTimeframeRequestCount": len(self.recorded),
                    }
                )
            if len(parts) == 2 and parts[0] == "Tickets":
                ticket = self.tickets.get(parts[1])
                if ticket is None:
                    return _errors(404, "Ticket not found")
                return web.json_response({"item": ticket.raw})
            return _errors(404, "Not found")
        body = rec.json if isinstance(rec.json, dict) else None
        if body is None:
            return _errors(400, "The request body is not a JSON object")
        if rec.method == "POST" and len(parts) == 2 and parts[1] == "query":
            return self._query(parts[0], body)
        if rec.method == "POST" and path == "Tickets":
            return await self._create(body)
        if rec.method == "PATCH" and path == "Tickets":
            return await self._update(body)
        if (
            rec.method == "POST"
            and len(parts) == 3
            and parts[0] == "Tickets"
            and parts[2] == "Notes"
        ):
            return await self._note(parts[1], body)
        if rec.method == "POST" and path == "TimeEntries":
            return await self._time(body)
        return _errors(405, "Not allowed")

    def _query(self, entity: str, body: dict[str, Any]) -> web.Response:
        rows = self.entities.get(entity)
        if rows is None:
            return _errors(404, f"Unknown entity {entity}")
        try:
            found = [r for r in rows if all(_matches(r, f) for f in body.get("filter") or [])]
        except ValueError as exc:
            return _errors(500, f"Invalid filter: {exc}")
        fields = body.get("IncludeFields") or []
        items = [{k: r.get(k) for k in fields} if fields else r for r in found]
        items = items[: int(body.get("MaxRecords") or 500)]
        return web.json_response(
            {
                "items": items,
                "pageDetails": {
                    "count": len(items),
                    "requestCount": 500,
                    "prevPageUrl": None,
                    "nextPageUrl": None,
                },
            }
        )

    async def _create(self, body: dict[str, Any]) -> web.Response:
        # Autotask answers business-rule violations with 500 and `errors`.
        missing = [f for f in ("companyID", "title", "status", "priority") if body.get(f) is None]
        if missing:
            return _errors(500, *(f"{f} is required" for f in missing))
        too_long = _too_long("Tickets", body)
        if too_long is not None:
            return too_long
        if not any(c["id"] == body["companyID"] for c in self.entities["Companies"]):
            return _errors(500, "Value does not exist for the required field companyID.")
        contact = body.get("contactID")
        if contact is not None and not any(
            c["id"] == contact and c["companyID"] == body["companyID"]
            for c in self.entities["Contacts"]
        ):
            # A ticket's contact must be one of its company's contacts (n8n-nodes-autotask#15).
            return _errors(500, "Value does not reference an existing entity for contactID.")
        for name in ("status", "priority", "queueID"):
            if name in body and int(body[name]) not in _values(TICKET_FIELDS, name):
                return _errors(500, f"Invalid picklist value for {name}.")
        item = self._next()
        raw = {"id": item, "ticketNumber": f"T20261205.{item - 1000:04d}", **body}
        self.entities["Tickets"].append(raw)
        company = self.company_by_id(body["companyID"])
        self.tickets[str(item)] = FakeTicket(
            id=str(item),
            number=raw["ticketNumber"],
            ref=str(body.get("externalID") or ""),
            title=str(body["title"]),
            description=str(body.get("description") or ""),
            company=company.name if company else "",
            contact=self.person_of(body.get("contactID", "")),
            top_priority=int(body["priority"]) == CRITICAL,
            raw=raw,
        )
        return await self.accepted("create", str(item), web.json_response({"itemId": item}))

    async def _update(self, body: dict[str, Any]) -> web.Response:
        ticket = self.tickets.get(str(body.get("id")))
        if ticket is None:
            return _errors(500, "Ticket not found")
        for name in ("status", "priority"):
            if name in body and int(body[name]) not in _values(TICKET_FIELDS, name):
                return _errors(500, f"Invalid picklist value for {name}.")
        too_long = _too_long("Tickets", body)
        if too_long is not None:
            return too_long
        if int(body.get("status", 0)) == COMPLETE and not body.get("resolution"):
            return _errors(500, "A resolution is required to complete the ticket.")
        ticket.raw.update(body)
        what = "update"
        if "priority" in body:
            ticket.top_priority, what = int(body["priority"]) == CRITICAL, "priority"
        if int(body.get("status", 0)) == COMPLETE:
            ticket.closed, ticket.resolution, what = True, str(body["resolution"]), "close"
        return await self.accepted(what, ticket.id, web.json_response({"itemId": int(ticket.id)}))

    async def _note(self, ticket_id: str, body: dict[str, Any]) -> web.Response:
        ticket = self.tickets.get(ticket_id)
        if ticket is None or str(body.get("ticketID")) != ticket_id:
            return _errors(500, "ticketID does not match the parent ticket")
        if not body.get("description") or not body.get("title"):
            return _errors(500, "title and description are required")
        too_long = _too_long("TicketNotes", body)
        if too_long is not None:
            return too_long
        if int(body.get("noteType", 0)) not in _values(NOTE_FIELDS, "noteType"):
            return _errors(500, "Invalid picklist value for noteType.")
        note = self._next()
        self.entities["TicketNotes"].append({"id": note, **body})
        ticket.notes.append(str(body["description"]))
        return await self.accepted("note", ticket.id, web.json_response({"itemId": note}))

    async def _time(self, body: dict[str, Any]) -> web.Response:
        ticket = self.tickets.get(str(body.get("ticketID")))
        resource = next(
            (r for r in self.entities["Resources"] if r["id"] == body.get("resourceID")), None
        )
        if ticket is None or resource is None:
            return _errors(500, "ticketID and resourceID must exist")
        if not body.get("startDateTime") or body.get("hoursWorked") is None:
            return _errors(500, "startDateTime and hoursWorked are required")
        entry = self._next()
        self.entities["TimeEntries"].append({"id": entry, **body})
        ticket.time_minutes.append(round(float(body["hoursWorked"]) * 60))
        ticket.time_by.append(str(resource["email"]))
        return await self.accepted("time", ticket.id, web.json_response({"itemId": entry}))
