"""Loopback fake of a published iCalendar feed (`changes.calendar` as an http(s) URL)."""

from __future__ import annotations

from aiohttp import web

from tests.fakes.base import FakeServer, Recorded

PATH = "/changes.ics"


class FakeCalendar(FakeServer):
    """Serves `ics` at `/changes.ics` (change it any time; `fail(PATH, 503, ...)` to refuse)."""

    def __init__(self, ics: str) -> None:
        super().__init__()
        self.ics = ics

    @property
    def feed_url(self) -> str:
        return f"{self.url}{PATH}"

    async def handle(self, rec: Recorded, request: web.Request) -> web.StreamResponse:
        if rec.path != PATH:
            return web.Response(status=404)
        return web.Response(body=self.ics.encode(), content_type="text/calendar", charset="utf-8")
