"""Diagnosis help over Teams (Bot Framework activities), on SQLite and PostgreSQL: similar
tickets on the card, `similar`, patterns and the closure rule, `kb` against Confluence, a KB
that hangs, the card updated in place when the KB answers."""

from __future__ import annotations

import re
import time
from typing import Any

from sqlalchemy import select

from storage.models import Ticket
from tests.fakes.botframework import FakeConnector
from tests.fakes.kb_confluence import FakeConfluence
from tests.harness import AppHarness, wait_until
from tests.http.conftest_teams import (
    ANA_ID,
    PERSONAL,
    TECH_ID,
    activity,
    card_of,
    form_values,
    message,
    note_under,
    submit_action,
)
from tests.http.diagnosis_support import (
    ERROR_ACME,
    ERROR_GLOBEX,
    ERROR_NEW,
    NOTE_ACME,
    NOTE_GLOBEX,
)

PEOPLE = [
    {"email": "ana@example.com", "name": "Ana Lopez", "teams_id": ANA_ID},
    {"email": "tech@example.com", "name": "Tom Tech", "teams_id": TECH_ID, "technician": True},
]


def unescape(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text)


def card_text(card: dict[str, Any]) -> str:
    parts: list[str] = []
    for element in card["body"]:
        if element["type"] == "TextBlock":
            parts.append(element["text"])
        elif element["type"] == "FactSet":
            parts += [f"{f['title']}: {f['value']}" for f in element["facts"]]
        elif element["type"].startswith("Input."):
            parts.append(str(element.get("value", "")))
    return unescape("\n".join(parts))


async def start(make_app: Any, fake: FakeConnector, kb: FakeConfluence | None) -> AppHarness:
    config: dict[str, Any] = {
        "teams": {"service_url": fake.service_url, "tenant_id": "t-1"},
        "patterns": {"repeat_threshold": 3},
    }
    env: dict[str, str] = {}
    if kb is not None:
        config["kb"] = {"source": "confluence", "url": kb.url, "space": "IT"}
        env = {"KB_API_KEY": kb.token, "KB_USERNAME": kb.email}
    app: AppHarness = await make_app(config=config, people=PEOPLE, env=env)
    return app


async def say(
    app: AppHarness, fake: FakeConnector, *, text: str = "", value: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A message or Action.Submit in the technician's chat; the first card answered."""
    posted = len(fake.activities(PERSONAL))

    def new_cards() -> list[dict[str, Any]]:
        return [a for a in fake.activities(PERSONAL)[posted:] if a.get("attachments")]

    sent = activity(fake.service_url, value=value) if value else message(fake.service_url, text)
    assert (await app.teams(sent)).status == 201
    await wait_until(lambda: new_cards() != [], what="a card in the chat")
    return card_of(new_cards()[0])


async def open_ticket(
    app: AppHarness, fake: FakeConnector, *, error: str, client: str
) -> tuple[str, dict[str, Any]]:
    form = await say(app, fake, text="ticket new Windows Update fails")
    values = form_values(
        summary="Windows Update fails", error_text=error, client=client, category="windows"
    )
    card = await say(app, fake, value={**submit_action(form)["fallback"]["data"], **values})
    async with app.services.sessions() as session:
        number = (await session.execute(select(Ticket.number).order_by(Ticket.id.desc()))).scalar()
    return str(number), card


async def close(
    app: AppHarness, fake: FakeConnector, number: str, *, note: str, kb: str = ""
) -> tuple[dict[str, Any], dict[str, Any]]:
    """`ticket close` and submit the form: (the form, the card answered)."""
    form = await say(app, fake, text=f"ticket close {number}")
    values = {
        "resolution_note": note,
        "resolution_category": "Incident",
        "time_spent": "30m",
        "kb_article": kb,
    }
    answer = await say(app, fake, value={**submit_action(form)["fallback"]["data"], **values})
    return form, answer


async def status(app: AppHarness, number: str) -> str:
    async with app.services.sessions() as session:
        query = select(Ticket.status).where(Ticket.number == number)
        return str((await session.execute(query)).scalar_one())


async def test_similar_pattern_and_kb_on_teams(make_app: Any, connector: FakeConnector) -> None:
    async with FakeConfluence() as kb:
        kb.add_page("Windows Update 0x80070005 after Patch Tuesday", "Reset the components")
        app = await start(make_app, connector, kb)
        first, _ = await open_ticket(app, connector, error=ERROR_ACME, client="acme")
        second, _ = await open_ticket(app, connector, error=ERROR_GLOBEX, client="globex")
        await close(app, connector, first, note=NOTE_ACME, kb="KB0042")
        await close(app, connector, second, note=NOTE_GLOBEX)
        assert await status(app, first) == await status(app, second) == "closed"

        number, card = await open_ticket(app, connector, error=ERROR_NEW, client="initech")
        shown = card_text(card)
        assert "Similar tickets" in shown
        assert f"{first} (acme)" in shown and f"{second} (globex)" in shown
        assert "Reset the SoftwareDistribution folder" in shown
        assert "Re-registered the Windows Update agent DLLs" in shown
        assert f"Pattern: {number} is ticket 3 with this error (0x80070005)" in shown

        # The KB's article arrives and the card (the activity that answered) is updated.
        async with app.services.sessions() as session:
            query = select(Ticket.card_message).where(Ticket.number == number)
            card_id = (await session.execute(query)).scalar_one()

        def updated() -> list[dict[str, Any]]:
            return [
                card_of(u)
                for u in connector.updates()
                if u["_activity_id"] == card_id
                and "KB articles (Confluence)" in card_text(card_of(u))
            ]

        await wait_until(lambda: updated() != [], timeout=6, what="the card updated with KB")
        refreshed = updated()[-1]
        links = [e["text"] for e in refreshed["body"] if e.get("text", "").startswith("[")]
        assert links == [
            f"[Windows Update 0x80070005 after Patch Tuesday]({kb.url}/wiki/spaces/IT/pages/"
            f"{kb.pages[0]['id']})"
        ]
        assert "Similar tickets" in card_text(refreshed)
        assert "@@@hl@@@" not in str(refreshed)
        search = kb.calls("/wiki/rest/api/search")[0]
        assert search.query["cql"] == 'type=page AND space="IT" AND text ~ "0x80070005"'

        answer = card_text(await say(app, connector, text=f"ticket similar {number}"))
        assert f"{first} (acme)" in answer and f"{second} (globex)" in answer
        assert "Windows Update 0x80070005 after Patch Tuesday" in answer

        form, refused = await close(app, connector, number, note=NOTE_GLOBEX)
        assert "part of a pattern" in card_text(form)
        assert "part of a pattern" in card_text(refused)
        # Why a KB article is needed: said once, under the KB article field.
        assert card_text(refused).count("part of a pattern") == 1, card_text(refused)
        assert "part of a pattern" in note_under(refused, "kb_article")
        assert await status(app, number) == "open"
        _, done = await close(app, connector, number, note=NOTE_GLOBEX, kb="KB0042")
        assert f"Closed {number}" in card_text(done)
        assert await status(app, number) == "closed"

        found = card_text(await say(app, connector, text="ticket kb update 0x80070005"))
        assert "KB articles (Confluence)" in found
        assert first in found and second in found and number in found


async def test_hanging_kb_on_teams(make_app: Any, connector: FakeConnector) -> None:
    async with FakeConfluence() as kb:
        kb.set_delay("/wiki/rest/api/search", 30)
        app = await start(make_app, connector, kb)
        started = time.monotonic()
        number, card = await open_ticket(app, connector, error=ERROR_NEW, client="acme")
        assert time.monotonic() - started < 1.5 + 1.0  # the form and the card: two turns
        assert number in card_text(card)

        started = time.monotonic()
        answer = card_text(await say(app, connector, text="ticket kb 0x80070005"))
        assert time.monotonic() - started < 3
        assert "Still asking Confluence" in answer
        posted = len(connector.activities(PERSONAL))

        def late() -> list[str]:
            return [
                card_text(card_of(a))
                for a in connector.activities(PERSONAL)[posted:]
                if a.get("attachments")
            ]

        await wait_until(
            lambda: any("did not answer" in t for t in late()), timeout=10, what="late answer"
        )
        assert time.monotonic() - started < 10
        assert any("Confluence did not answer within 5 s" in t for t in late())


HOSTILE_TITLES = [
    "VPN [x](https://evil.example) reset",
    "VPN <https://evil.example|click> reset",
    "VPN *bold* _italic_ ~~struck~~ `code` reset",
    "1. VPN reset | step > two & three",
    "# VPN reset \\[escaped\\]",
]


async def test_kb_titles_show_as_written_on_teams_and_odd_urls_are_no_links(
    make_app: Any, connector: FakeConnector
) -> None:
    """KB titles are outside text: on a Teams card (Markdown) a title is shown as written, is
    the only link of its line (no `[x](https://evil)` of its own), a `javascript:` URL links
    nowhere, and every card is valid against the Adaptive Card schema (`card_of`)."""
    async with FakeConfluence() as kb:
        for title in HOSTILE_TITLES:
            kb.add_page(title, "vpn")
        app = await start(make_app, connector, kb)
        answer = await say(app, connector, text="ticket kb vpn reset")
        texts = [e["text"] for e in answer["body"] if e["type"] == "TextBlock"]
        links = [t for t in texts if t.startswith("[")]
        assert len(links) == 5, texts
        for link in links:
            shown, target = re.fullmatch(r"\[(.*)\]\((\S+)\)", link).groups()  # type: ignore[union-attr]
            assert target.startswith(f"{kb.url}/wiki/spaces/IT/pages/")
            assert not re.search(r"(?<!\\)[\[\]<`*]", shown), shown
            assert unescape(shown) in HOSTILE_TITLES
        assert "evil.example)" not in "".join(t for t in texts if not t.startswith("["))


async def test_closure_form_suggests_a_kb_article_named_after_the_pattern_began(
    make_app: Any, connector: FakeConnector
) -> None:
    """Seen in the Agents Playground: an earlier ticket with the same error was closed with a
    KB article after the pattern ticket was opened, yet the pattern ticket's closure form came
    with an empty **KB article** (the suggestion was only looked for when it was opened), so
    the technician had to find and type the article the help desk had just named."""
    app = await start(make_app, connector, None)
    first, _ = await open_ticket(app, connector, error=ERROR_ACME, client="acme")
    await open_ticket(app, connector, error=ERROR_GLOBEX, client="globex")
    number, card = await open_ticket(app, connector, error=ERROR_NEW, client="initech")
    assert f"Pattern: {number} is ticket 3" in card_text(card)
    assert "Suggested KB article" not in card_text(card)  # none named yet
    await close(app, connector, first, note=NOTE_ACME, kb="KB0042")

    form = await say(app, connector, text=f"ticket close {number}")
    assert "part of a pattern" in card_text(form)
    [kb_input] = [e for e in form["body"] if e.get("id") == "kb_article"]
    assert kb_input.get("value") == "KB0042"
