"""Fake ConnectWise PSA (Manage) REST API.

`GET /login/companyinfo/<company>` (no auth) names the codebase; the API lives under
`/<codebase>apis/3.0/` and needs the `clientId` header and `company+public:private` Basic
auth. Lengths are counted in UTF-16 code units, as .NET does (an emoji counts two). Bare
objects and arrays; updates are JSON-Patch arrays; `conditions=` understands
`a="text"`, `a=123`, `a=true`, `a/b=1` joined with ` and `; collections (a ticket's notes,
time entries, ...) page with `page` / `pageSize`. `move_codebase()` makes the old
path answer 404, as a cloud upgrade does. A collection path in `unreadable` (e.g.
`system/members`, `service/boards/1/statuses`) answers reads with 403 and the
`{"code", "message"}` error body, as for an API member whose security role lacks inquire.
"""

from __future__ import annotations

import base64
import re
from datetime import datetime
from typing import Any

from aiohttp import web

from tests.fakes.base import Recorded
from tests.fakes.psa_common import FakeTicket, PsaFake, utf16_length

COMPANY_ID, PUBLIC, PRIVATE = "acmemsp", "PubKey0123456789", "PrivKey-0123456789abcdef"
CLIENT_ID = "3b1c0c5e-1111-4c4c-9999-0123456789ab"
BOARD = {"id": 1, "name": "Help Desk"}
# A board's statuses as ConnectWise lists them (`inactive`, `closedStatus`, `sortOrder`:
# django-connectwise's BoardStatus fixtures and sync, which reads them with
# `conditions=inactive=False`): a retired closed status and a "Cancelled" one sort before
# the board's ">Closed", as on boards that grew over the years.
STATUSES = [
    {"id": 11, "name": "New", "closedStatus": False, "inactive": False, "sortOrder": 0},
    {"id": 16, "name": "Closed (old)", "closedStatus": True, "inactive": True, "sortOrder": 1},
    {"id": 18, "name": "Cancelled", "closedStatus": True, "inactive": False, "sortOrder": 2},
    {"id": 17, "name": ">Closed", "closedStatus": True, "inactive": False, "sortOrder": 5},
]
PRIORITIES = [
    {"id": 4, "name": "Priority 3 - Normal Response", "sortOrder": 6},
    {"id": 15, "name": "Priority 1 - Emergency Response", "sortOrder": 1},
    {"id": 8, "name": "Priority 2 - Quick Response", "sortOrder": 4},
]
CONDITION = re.compile(r'^\s*([\w/]+)\s*=\s*("(?:[^"\\]|\\.)*"|[\w.-]+)\s*$')


def _error(status: int, code: str, message: str, **extra: Any) -> web.Response:
    return web.json_response({"code": code, "message": message, **extra}, status=status)


def _conditions(text: str) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for part in re.split(r"\s+and\s+", text.strip()) if text.strip() else []:
        match = CONDITION.match(part)
        if match is None:
            raise ValueError(part)
        name, raw = match.groups()
        if raw.startswith('"'):
            value: Any = re.sub(r"\\(.)", r"\1", raw[1:-1])
        elif raw in ("true", "false"):
            value = raw == "true"
        else:
            value = int(raw) if raw.isdigit() else raw
        out.append((name, value))
    return out


def _get(record: dict[str, Any], path: str) -> Any:
    value: Any = record
    for part in path.split("/"):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def _matches(record: dict[str, Any], conditions: list[tuple[str, Any]]) -> bool:
    for name, value in conditions:
        have = _get(record, name)
        if isinstance(value, str):
            if str(have or "").lower() != value.lower():  # SQL Server collation: no case
                return False
        elif have != value:
            return False
    return True


class FakeConnectWise(PsaFake):
    SYSTEM = "connectwise"

    def __init__(self) -> None:
        super().__init__()
        self.codebase = "v2025_1/"
        self.agreements: list[dict[str, Any]] = []
        self.members: list[dict[str, Any]] = []
        self.entries: list[dict[str, Any]] = []
        self.notes: list[dict[str, Any]] = []
        # Ids of deleted companies: ConnectWise still lists them, with `deletedFlag`
        # (django-connectwise reads companies with `conditions=deletedFlag=False`).
        self.deleted: set[str] = set()
        self._next = 4122

    def env(self) -> dict[str, str]:
        return {
            "PSA_CLIENT_ID": CLIENT_ID,
            "PSA_COMPANY_ID": COMPANY_ID,
            "PSA_PUBLIC_KEY": PUBLIC,
            "PSA_PRIVATE_KEY": PRIVATE,
        }

    def move_codebase(self, codebase: str) -> None:
        self.codebase = codebase

    def default_error_body(self, status: int) -> Any:
        return {
            "code": "TooManyRequests" if status == 429 else "ServiceUnavailable",
            "message": f"scripted {status}",
        }

    def add_company(self, name: str, contracts: list[tuple[str, bool]] | None = None) -> str:
        company_id = super().add_company(name, contracts)
        for contract, active in contracts or []:
            self.agreements.append(
                {
                    "id": 300 + len(self.agreements),
                    "name": contract,
                    "company": {"id": int(company_id), "name": name},
                    "cancelledFlag": not active,
                    "agreementStatus": "Active",
                }
            )
        return company_id

    def add_person(self, email: str) -> str:
        member_id = super().add_person(email)
        self.members.append(
            {
                "id": int(member_id),
                "identifier": email.split("@")[0],
                "officeEmail": email,
                "inactiveFlag": False,
            }
        )
        return member_id

    def _company(self, company: Any) -> dict[str, Any] | None:
        if not isinstance(company, dict):
            return None
        if company.get("identifier") == "Catchall":
            return {
                "id": 2,
                "identifier": "Catchall",
                "name": "Catch All (for email connector use only)",
            }
        found = self.company_by_id(company.get("id"))
        return (
            {"id": int(found.id), "identifier": found.name.replace(" ", ""), "name": found.name}
            if found
            else None
        )

    def _authorized(self, rec: Recorded) -> bool:
        user = f"{COMPANY_ID}+{PUBLIC}:{PRIVATE}"
        expected = "Basic " + base64.b64encode(user.encode()).decode()
        return not self.refuse_credentials and rec.headers.get("Authorization") == expected

    async def handle(self, rec: Recorded, request: web.Request) -> web.StreamResponse:
        if rec.path.startswith("/login/companyinfo/"):
            company = rec.path.rsplit("/", 1)[1]
            if company.lower() != COMPANY_ID:
                return web.json_response(None, status=404)
            return web.json_response(
                {
                    "CompanyName": "Acme MSP",
                    "Codebase": self.codebase,
                    "VersionCode": "v2025.1",
                    "VersionNumber": "v4.6.12345",
                    "CompanyID": COMPANY_ID,
                    "IsCloud": True,
                    "SiteUrl": "api-na.myconnectwise.net",
                }
            )
        prefix = f"/{self.codebase}apis/3.0/"
        if not rec.path.startswith(prefix):
            return _error(404, "NotFound", "The requested resource was not found")
        if not rec.headers.get("clientId"):
            return _error(403, "Forbidden", "clientId header is required")
        if not self._authorized(rec):
            return _error(401, "Unauthorized", "Authentication failed")
        path = rec.path[len(prefix) :].strip("/")
        try:
            conditions = _conditions(rec.query.get("conditions", ""))
        except ValueError as exc:
            return _error(400, "InvalidObject", f"conditions: cannot parse {exc}")
        if rec.method == "GET":
            return self._list_or_get(rec, path, conditions)
        if rec.method == "POST":
            return await self._post(rec, path)
        if rec.method == "PATCH":
            return await self._patch(rec, path)
        return _error(405, "MethodNotAllowed", "not here")

    def _fields(self, rec: Recorded, row: dict[str, Any]) -> dict[str, Any]:
        fields = rec.query.get("fields")
        if not fields:
            return row
        return {f: row[f] for f in fields.split(",") if f in row}

    def _list_or_get(
        self, rec: Recorded, path: str, conditions: list[tuple[str, Any]]
    ) -> web.Response:
        tickets = [t.raw for t in self.tickets.values()]
        companies = [
            {
                "id": int(c.id),
                "identifier": c.name.replace(" ", ""),
                "name": c.name,
                "deletedFlag": c.id in self.deleted,
            }
            for c in self.companies
        ]
        collections: dict[str, list[dict[str, Any]]] = {
            "service/tickets": tickets,
            "company/companies": companies,
            "finance/agreements": self.agreements,
            "system/members": self.members,
            "service/priorities": PRIORITIES,
            "time/entries": self.entries,
            f"service/boards/{BOARD['id']}/statuses": STATUSES,
        }
        if path in self.unreadable:
            return _error(403, "Forbidden", f"The API member's security role may not read {path}")
        if path == "system/info":
            return web.json_response({"version": "v2025.1.12345", "isCloud": True})
        notes = re.fullmatch(r"service/tickets/(\d+)/notes", path)
        if notes is not None:
            if notes.group(1) not in self.tickets:
                return _error(404, "NotFound", "Ticket not found")
            collections[path] = [n for n in self.notes if str(n["ticketId"]) == notes.group(1)]
        if path in collections:
            rows = [r for r in collections[path] if _matches(r, conditions)]
            order = rec.query.get("orderBy", "")
            if order.startswith("sortOrder"):
                rows.sort(key=lambda r: r.get("sortOrder", 0))
            elif order.startswith("id"):
                rows.sort(key=lambda r: r.get("id", 0), reverse=order.endswith("desc"))
            size = int(rec.query.get("pageSize", "25"))
            if not 1 <= size <= 1000:
                return _error(400, "InvalidObject", "pageSize must be 1-1000")
            page = int(rec.query.get("page", "1"))
            rows = rows[(page - 1) * size : page * size]
            return web.json_response([self._fields(rec, r) for r in rows])
        if path.startswith("service/tickets/") and path.count("/") == 2:
            ticket = self.tickets.get(path.rsplit("/", 1)[1])
            if ticket is None:
                return _error(404, "NotFound", "Ticket not found")
            return web.json_response(self._fields(rec, ticket.raw))
        return _error(404, "NotFound", "The requested resource was not found")

    async def _post(self, rec: Recorded, path: str) -> web.Response:
        body = rec.json if isinstance(rec.json, dict) else None
        if body is None:
            return _error(400, "InvalidObject", "body is not an object")
        if path == "service/tickets":
            return await self._create(body)
        if path.startswith("service/tickets/") and path.endswith("/notes"):
            ticket = self.tickets.get(path.split("/")[2])
            if ticket is None:
                return _error(404, "NotFound", "Ticket not found")
            if not body.get("text"):
                return _error(
                    400,
                    "InvalidObject",
                    "serviceNote object is invalid",
                    errors=[{"code": "NullOrEmpty", "field": "text"}],
                )
            note = {"id": 900 + len(self.notes), "ticketId": int(ticket.id), **body}
            self.notes.append(note)
            if body.get("resolutionFlag"):
                ticket.resolution = str(body["text"])
            else:
                ticket.notes.append(str(body["text"]))
            return await self.accepted("note", ticket.id, web.json_response(note, status=201))
        if path == "time/entries":
            ticket = self.tickets.get(str(body.get("chargeToId")))
            if body.get("chargeToType") != "ServiceTicket" or ticket is None:
                return _error(
                    400,
                    "InvalidObject",
                    "timeEntry object is invalid",
                    errors=[{"code": "InvalidField", "field": "chargeToId"}],
                )
            if not body.get("timeStart"):
                return _error(
                    400,
                    "InvalidObject",
                    "timeEntry object is invalid",
                    errors=[{"code": "NullOrEmpty", "field": "timeStart"}],
                )
            start = datetime.fromisoformat(str(body["timeStart"]).replace("Z", "+00:00"))
            end = datetime.fromisoformat(str(body["timeEnd"]).replace("Z", "+00:00"))
            entry = {"id": 700 + len(self.entries), **body}
            self.entries.append(entry)
            ticket.time_minutes.append(int((end - start).total_seconds() // 60))
            member = body.get("member") or {}
            ticket.time_by.append(
                next(
                    (
                        m["officeEmail"]
                        for m in self.members
                        if m["identifier"] == member.get("identifier")
                    ),
                    "",
                )
            )
            return await self.accepted("time", ticket.id, web.json_response(entry, status=201))
        return _error(404, "NotFound", "The requested resource was not found")

    async def _create(self, body: dict[str, Any]) -> web.Response:
        summary = str(body.get("summary") or "")
        company = self._company(body.get("company"))
        errors = []
        if not summary or utf16_length(summary) > 100:  # .NET / nvarchar(100)
            errors.append(
                {
                    "code": "InvalidField",
                    "message": "summary must be 1-100 characters",
                    "field": "summary",
                }
            )
        if company is None:
            errors.append(
                {"code": "InvalidField", "message": "company is required", "field": "company"}
            )
        if utf16_length(str(body.get("externalXRef") or "")) > 100:
            errors.append({"code": "InvalidField", "message": "max 100", "field": "externalXRef"})
        if errors:
            return _error(400, "InvalidObject", "ticket object is invalid", errors=errors)
        assert company is not None
        self._next += 1
        priority = body.get("priority") or {"id": 4}
        raw = {
            "id": self._next,
            "summary": summary,
            "board": dict(BOARD),
            "status": {"id": 11, "name": "New"},
            "company": company,
            "priority": {"id": priority["id"]},
            "externalXRef": body.get("externalXRef", ""),
            "contactEmailAddress": body.get("contactEmailAddress", ""),
            "contactName": body.get("contactName", ""),
            "closedFlag": False,
            "initialDescription": body.get("initialDescription", ""),
        }
        self.tickets[str(self._next)] = FakeTicket(
            id=str(self._next),
            number=f"#{self._next}",
            ref=str(raw["externalXRef"]),
            title=summary,
            description=str(raw["initialDescription"]),
            company="" if company["identifier"] == "Catchall" else company["name"],
            contact=str(raw["contactEmailAddress"]),
            top_priority=priority["id"] == 15,
            raw=raw,
        )
        return await self.accepted(
            "create",
            str(self._next),
            web.json_response(
                {k: v for k, v in raw.items() if k != "initialDescription"}, status=201
            ),
        )

    async def _patch(self, rec: Recorded, path: str) -> web.Response:
        ticket = (
            self.tickets.get(path.rsplit("/", 1)[1])
            if path.startswith("service/tickets/")
            else None
        )
        if ticket is None:
            return _error(404, "NotFound", "Ticket not found")
        ops = rec.json
        if not isinstance(ops, list) or not all(isinstance(o, dict) for o in ops):
            return _error(400, "InvalidObject", "PATCH takes a JSON Patch array of operations")
        what = "update"
        for op in ops:
            if op.get("op") != "replace" or op.get("path") not in ("status", "priority"):
                return _error(400, "InvalidObject", f"cannot {op.get('op')} {op.get('path')}")
            value = op.get("value") or {}
            if op["path"] == "status":
                status = next((s for s in STATUSES if s["id"] == value.get("id")), None)
                if status is None:
                    return _error(400, "InvalidObject", "status is not on this board")
                ticket.raw["status"] = {"id": status["id"], "name": status["name"]}
                ticket.raw["closedFlag"] = ticket.closed = bool(status["closedStatus"])
                what = "close" if status["closedStatus"] else what
            else:
                if not any(p["id"] == value.get("id") for p in PRIORITIES):
                    return _error(400, "InvalidObject", "unknown priority")
                ticket.raw["priority"] = {"id": value["id"]}
                ticket.top_priority, what = value["id"] == 15, "priority"
        return await self.accepted(what, ticket.id, web.json_response(ticket.raw))
