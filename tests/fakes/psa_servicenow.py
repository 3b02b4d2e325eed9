"""Fake ServiceNow Table API: `/api/now/table/<table>`, HTTP Basic, `{"result": ...}`.

Tables: incident (correlation_id, work_notes journal, state/close_code/close_notes),
task_time_worked, sys_journal_field (a row per work note, read only), core_company,
ast_contract, sys_user, cmdb_ci, sys_choice; a table in `unreadable` answers reads with
403 "User Not Authorized" / "Failed ACL Validation" (a read ACL, KB2971488). Resolving
without a field a data policy makes mandatory (close_code, close_notes, and any in
`mandatory_on_resolve`) is answered 403 "Operation Failed" / "Data Policy Exception" (the
REST API's 403 also covers "business rule or data policy constraints"). While `hibernating`
(a developer instance asleep) every call is answered 200 with the instance's web page, not
JSON (kafka-docker-playground#8778 shows that page in answer to the Table API). Encoded
queries understand `a=b`, `aLIKEb`, `^` (and), `^^` (a literal caret) and ORDERBY.
"""

from __future__ import annotations

import base64
import re
import secrets
from typing import Any

from aiohttp import web

from tests.fakes.base import Recorded
from tests.fakes.psa_common import FakeTicket, PsaFake

USER, PASSWORD = "svc.helpdesk", "sn-Pa55word-0123456789"
CLOSE_CODES = ["Solution provided", "Workaround provided", "Duplicate", "Resolved by caller"]
TIME_WORKED = re.compile(r"^1970-01-0[1-2] \d\d:\d\d:\d\d$")
RESOLVED = "6"
HIBERNATING_PAGE = (
    "<!DOCTYPE html><html><head><title>Instance Hibernating page</title></head><body>"
    '<div class="instance-hibernating-page"><h1>Your instance is hibernating</h1>'
    "<p>Sign in to the developer portal to wake it up.</p></div></body></html>"
)


def _error(status: int, message: str, detail: str = "") -> web.Response:
    body = {"error": {"message": message, "detail": detail}, "status": "failure"}
    return web.json_response(body, status=status)


def _split(query: str) -> list[str]:
    """Conditions of an encoded query (`^` separates, `^^` is a literal caret)."""
    parts, current, i = [], "", 0
    while i < len(query):
        if query[i] == "^":
            if query[i + 1 : i + 2] == "^":
                current += "^"
                i += 2
                continue
            parts.append(current)
            current = ""
        else:
            current += query[i]
        i += 1
    parts.append(current)
    return [p for p in parts if p and not p.startswith("ORDERBY")]


def _ordered(rows: list[dict[str, Any]], query: str) -> list[dict[str, Any]]:
    """`rows` in the order the query's ORDERBY<field> / ORDERBYDESC<field> parts ask (the first
    part the main key; a boolean sorts false before true, as ServiceNow stores it 0 / 1)."""
    parts = [p for p in query.split("^") if p.startswith("ORDERBY")]
    for part in reversed(parts):
        descending = part.startswith("ORDERBYDESC")
        name = part.removeprefix("ORDERBYDESC" if descending else "ORDERBY")
        rows = sorted(rows, key=lambda r: str(r.get(name, "")), reverse=descending)
    return rows


def _matches(record: dict[str, Any], query: str) -> bool:
    for condition in _split(query):
        if "LIKE" in condition:
            name, value = condition.split("LIKE", 1)
            if value.lower() not in str(record.get(name, "")).lower():
                return False
        elif "=" in condition:
            name, value = condition.split("=", 1)
            if str(record.get(name, "")).lower() != value.lower():
                return False
        else:
            return False
    return True


class FakeServiceNow(PsaFake):
    SYSTEM = "servicenow"

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[dict[str, Any]]] = {
            "incident": [],
            "task_time_worked": [],
            "core_company": [],
            "ast_contract": [],
            "sys_user": [],
            "cmdb_ci": [],
            "sys_journal_field": [],
            "sys_choice": [
                {
                    "sys_id": secrets.token_hex(16),
                    "name": "incident",
                    "element": "close_code",
                    "value": v,
                    "label": v,
                    "inactive": "false",
                }
                for v in CLOSE_CODES
            ],
        }
        self.journal: dict[str, list[str]] = {}
        self.hibernating = False
        # Fields an instance's data policy makes mandatory on resolving (name -> label).
        self.mandatory_on_resolve: dict[str, str] = {}
        self._numbers = 10000

    def env(self) -> dict[str, str]:
        return {"PSA_USERNAME": USER, "PSA_PASSWORD": PASSWORD}

    def default_error_body(self, status: int) -> Any:
        if status == 429:
            return {
                "error": {
                    "message": "Rate limit exceeded",
                    "detail": "Too many requests for the rule helpdesk-bot",
                },
                "status": "failure",
            }
        return {"error": {"message": f"scripted {status}", "detail": ""}, "status": "failure"}

    def add_company(self, name: str, contracts: list[tuple[str, bool]] | None = None) -> str:
        company_id = super().add_company(name, contracts)
        self.tables["core_company"].append({"sys_id": company_id, "name": name})
        for contract, active in contracts or []:
            self.tables["ast_contract"].append(
                {
                    "sys_id": secrets.token_hex(16),
                    "number": f"CNTR{len(self.tables['ast_contract']) + 1:07d}",
                    "short_description": contract,
                    "company": company_id,
                    "state": "active" if active else "expired",
                    "active": str(active).lower(),
                }
            )
        return company_id

    def add_person(self, email: str) -> str:
        user_id = super().add_person(email)
        self.tables["sys_user"].append(
            {"sys_id": user_id, "email": email, "user_name": email, "active": "true"}
        )
        return user_id

    def add_ci(self, name: str) -> str:
        ci = secrets.token_hex(16)
        self.tables["cmdb_ci"].append({"sys_id": ci, "name": name})
        return ci

    def new_company_id(self) -> str:
        return secrets.token_hex(16)

    def new_person_id(self) -> str:
        return secrets.token_hex(16)

    def _authorized(self, rec: Recorded) -> bool:
        expected = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        return not self.refuse_credentials and rec.headers.get("Authorization") == expected

    async def handle(self, rec: Recorded, request: web.Request) -> web.StreamResponse:
        if self.hibernating:
            return web.Response(text=HIBERNATING_PAGE, content_type="text/html")
        prefix = "/api/now/table/"
        if not rec.path.startswith(prefix):
            return _error(400, "Requested URI does not represent any resource")
        if not self._authorized(rec):
            return _error(401, "User Not Authenticated", "Required to provide Auth information")
        parts = rec.path[len(prefix) :].split("/")
        table, sys_id = parts[0], (parts[1] if len(parts) > 1 else "")
        if table not in self.tables:
            return _error(400, f"Invalid table {table}")
        if rec.method == "GET" and table in self.unreadable:
            # A table-level read ACL the user does not pass (KB2971488): 403, not 401.
            return _error(403, "User Not Authorized", "Failed ACL Validation")
        if rec.method == "GET":
            return self._get(rec, table, sys_id)
        if rec.method == "POST" and not sys_id:
            return await self._post(rec, table)
        if rec.method in ("PATCH", "PUT") and sys_id and table == "incident":
            return await self._patch(rec, sys_id)
        return _error(405, "Method not Supported")

    def _fields(self, rec: Recorded, row: dict[str, Any]) -> dict[str, Any]:
        fields = rec.query.get("sysparm_fields")
        if not fields:
            return dict(row)
        return {f: row.get(f, "") for f in fields.split(",")}

    def _get(self, rec: Recorded, table: str, sys_id: str) -> web.Response:
        rows = self.tables[table]
        if sys_id:
            row = next((r for r in rows if r["sys_id"] == sys_id), None)
            if row is None:
                return _error(404, "No Record found", "Record doesn't exist or ACL restricts")
            return web.json_response({"result": self._fields(rec, row)})
        query = rec.query.get("sysparm_query", "")
        found = _ordered([r for r in rows if _matches(r, query)], query)
        limit = int(rec.query.get("sysparm_limit", "10000"))
        return web.json_response(
            {"result": [self._fields(rec, r) for r in found[:limit]]},
            headers={"X-Total-Count": str(len(found))},
        )

    async def _post(self, rec: Recorded, table: str) -> web.Response:
        body = rec.json
        if not isinstance(body, dict):
            return _error(400, "Exception while reading request", "body is not a JSON object")
        if table == "incident":
            return await self._create(rec, body)
        if table == "task_time_worked":
            incident = self._incident(str(body.get("task", "")))
            if incident is None:
                return _error(400, "Invalid task", "task does not name an incident")
            if not TIME_WORKED.match(str(body.get("time_worked", ""))):
                return _error(400, "Invalid time_worked", "expected 1970-01-01 HH:MM:SS")
            hours, minutes, seconds = map(int, str(body["time_worked"])[11:].split(":"))
            days = int(str(body["time_worked"])[8:10]) - 1
            row = {"sys_id": secrets.token_hex(16), **{k: str(v) for k, v in body.items()}}
            self.tables[table].append(row)
            ticket = self.tickets[incident["sys_id"]]
            ticket.time_minutes.append(days * 1440 + hours * 60 + minutes + seconds // 60)
            ticket.time_by.append(self.person_of(body.get("user", "")))
            return await self.accepted(
                "time", ticket.id, web.json_response({"result": row}, status=201)
            )
        return _error(403, "Operation against this table is not allowed in this fake")

    async def _create(self, rec: Recorded, body: dict[str, Any]) -> web.Response:
        self._numbers += 1
        sys_id = secrets.token_hex(16)
        row = {
            "sys_id": sys_id,
            "number": f"INC{self._numbers:07d}",
            "state": "1",
            "impact": "3",
            "urgency": "3",
            "priority": "5",
            "active": "true",
            **{k: str(v) for k, v in body.items() if k != "work_notes"},
        }
        self.tables["incident"].append(row)
        company = next((c for c in self.companies if c.id == row.get("company")), None)
        self.tickets[sys_id] = FakeTicket(
            id=sys_id,
            number=row["number"],
            ref=row.get("correlation_id", ""),
            title=row.get("short_description", ""),
            description=row.get("description", ""),
            company=company.name if company else "",
            contact=self.person_of(row.get("caller_id", "")),
            category=row.get("category", ""),
            asset=next(
                (c["name"] for c in self.tables["cmdb_ci"] if c["sys_id"] == row.get("cmdb_ci")), ""
            ),
            source=row.get("contact_type", ""),
            top_priority=row.get("priority") == "1",
            raw=row,
        )
        return await self.accepted(
            "create", sys_id, web.json_response({"result": self._fields(rec, row)}, status=201)
        )

    def _incident(self, sys_id: str) -> dict[str, Any] | None:
        return next((r for r in self.tables["incident"] if r["sys_id"] == sys_id), None)

    async def _patch(self, rec: Recorded, sys_id: str) -> web.Response:
        row = self._incident(sys_id)
        if row is None:
            return _error(404, "No Record found", "Record doesn't exist or ACL restricts")
        body = rec.json
        if not isinstance(body, dict):
            return _error(400, "Exception while reading request", "body is not a JSON object")
        if str(body.get("state")) == RESOLVED:
            mandatory = {
                "close_code": "Resolution code",
                "close_notes": "Resolution notes",
                **self.mandatory_on_resolve,
            }
            missing = [label for name, label in mandatory.items() if not body.get(name)]
            if body.get("close_code") and body["close_code"] not in CLOSE_CODES:
                missing.insert(0, "Resolution code")
            if missing:
                return _error(
                    403,
                    "Operation Failed",
                    "Data Policy Exception: \n\tThe following fields are mandatory: "
                    + ", ".join(dict.fromkeys(missing)),
                )
        ticket = self.tickets[sys_id]
        what = "update"
        if body.get("work_notes"):
            self.journal.setdefault(sys_id, []).append(str(body["work_notes"]))
            self.tables["sys_journal_field"].append(
                {
                    "sys_id": secrets.token_hex(16),
                    "name": "incident",
                    "element_id": sys_id,
                    "element": "work_notes",
                    "value": str(body["work_notes"]),
                }
            )
            ticket.notes.append(str(body["work_notes"]))
            what = "note"
        for key, value in body.items():
            if key != "work_notes":
                row[key] = str(value)
        if body.get("priority") is not None:
            ticket.top_priority = row["priority"] == "1"
            what = "priority"
        if str(body.get("state")) == RESOLVED:
            ticket.closed, ticket.resolution = True, row["close_notes"]
            what = "close"
        return await self.accepted(
            what, sys_id, web.json_response({"result": self._fields(rec, row)})
        )
