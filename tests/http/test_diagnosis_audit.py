"""SPEC "Diagnosis help", statements the other diagnosis tests left open, over Slack HTTP (and
Teams where SPEC applies to both), on SQLite and PostgreSQL: the card's three similar tickets
(resolved only) and `similar`'s longer list, the kinds of "the same error", a pattern counted
over open tickets too, changes touching a ticket by its asset, the Patch Tuesday categories
offered by the intake, and `similar` with a KB that does not answer."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import pytest
import yaml
from sqlalchemy import select

from handlers import diagnosis
from handlers.diagnosis import rules
from storage import error_signatures
from storage.models import Ticket
from tests.fakes.botframework import FakeConnector
from tests.fakes.kb_hudu import FakeHudu
from tests.fakes.slack_api import FakeSlack
from tests.harness import AppHarness, view_submission, wait_until
from tests.http.conftest_teams import inputs, submit_action
from tests.http.diagnosis_support import (
    PEOPLE,
    card_update,
    close,
    ephemeral,
    flat,
    modal,
    numbers,
    open_ticket,
    select_state,
    text_state,
    ticket,
)
from tests.http.test_diagnosis_teams import PEOPLE as TEAMS_PEOPLE
from tests.http.test_diagnosis_teams import card_text, say
from tests.http.test_diagnosis_teams import close as teams_close
from tests.http.working_support import SlackFlow

# One error code (0x80070005, written in two cases) in the words of five reports.
SAME_CODE = [
    "Windows Update failed with error 0x80070005 on the cumulative update",
    "Installing KB5033375 stopped: 0X80070005 access denied",
    "Update error 0x80070005 after the reboot",
    "0x80070005 again during the feature update",
    "Setup says: something went wrong (0x80070005)",
]
NOTE = "Reset the Windows Update components and re-ran the update"


async def test_card_lists_three_resolved_tickets_and_similar_lists_them_all(
    make_app: Any, slack_api: FakeSlack
) -> None:
    """Up to three earlier *resolved* tickets on the card (an open one with the error is not a
    fix to copy), any client; `similar` lists the same and more."""
    app = await make_app(
        slack=slack_api, config={"patterns": {"repeat_threshold": 1000}}, people=PEOPLE
    )
    resolved = []
    for n, error in enumerate(SAME_CODE[:4]):
        number, _ = await open_ticket(app, slack_api, error=error, client=f"client{n}")
        assert (await close(app, slack_api, number, note=f"{NOTE} ({n})"))[1] == {}
        resolved.append(number)
    still_open, _ = await open_ticket(app, slack_api, error=SAME_CODE[0], client="umbrella")

    number, card = await open_ticket(app, slack_api, error=SAME_CODE[4], client="initech")
    shown = flat(card)
    assert "Similar tickets" in shown
    listed = [n for n in numbers(shown) if n != number]
    assert still_open not in listed, shown
    assert len(listed) == 3 and set(listed) < set(resolved), listed
    answer = flat(await ephemeral(app, f"similar {number}"))
    for earlier in resolved:
        assert earlier in answer, (earlier, answer)


# Pairs that are the same error by SPEC's rule, and one that only shares a word.
SAME_ERROR_PAIRS = [
    # Equal exact texts, ignoring case and surrounding whitespace (no code in them).
    ("The printer says PC LOAD LETTER", "  the PRINTER says pc load letter \n"),
    # A Windows event ID.
    ("Event ID 4625: An account failed to log on", "The Security log shows event 4625 again"),
    # An AADSTS code.
    ("AADSTS50076: you must use multi-factor authentication", "Sign-in fails with AADSTS50076"),
    # An HTTP status.
    ("HTTP Error 503. The service is unavailable.", "The portal answers HTTP 503 all morning"),
    # Equal exact texts as they read: one typed, one pasted from a macOS file name (NFD) with
    # a zero-width space.
    (
        "Zugriff auf Übersicht.xlsx verweigert",
        "\u200bZugriff auf Übersicht.xlsx verweigert".replace("Ü", "U\u0308"),
    ),
    # A numbered Windows error and an event ID as a German Windows writes them.
    (
        "Fehler 809: Die Netzwerkverbindung zum VPN-Server konnte nicht hergestellt werden",
        "VPN trennt sofort, Fehler 809",
    ),
    ("Ereignis-ID: 4625 Fehler beim Anmelden eines Kontos", "Event ID 4625 in the Security log"),
    # .NET's wording of it (WebException), in an ADAL error.
    (
        "ADAL Error: service_unavailable, The remote server returned an error: (503) Server "
        "Unavailable.",
        "The portal answers HTTP 503 all morning",
    ),
]


@pytest.mark.parametrize(("first_error", "second_error"), SAME_ERROR_PAIRS)
async def test_each_kind_of_the_same_error_finds_the_earlier_ticket(
    make_app: Any, slack_api: FakeSlack, first_error: str, second_error: str
) -> None:
    app = await make_app(
        slack=slack_api, config={"patterns": {"repeat_threshold": 1000}}, people=PEOPLE
    )
    first, _ = await open_ticket(
        app, slack_api, error=first_error, client="acme", summary="Cannot work"
    )
    assert (await close(app, slack_api, first, note=NOTE))[1] == {}
    number, card = await open_ticket(
        app, slack_api, error=second_error, client="globex", summary="Still cannot work"
    )
    shown = flat(card)
    assert "Similar tickets" in shown and f"{first} (acme)" in shown, shown
    same = flat(await ephemeral(app, f"similar {number}")).partition("Similar error text")[0]
    assert f"{first} (acme)" in same and "same error" in same, same


async def test_other_exact_texts_without_a_code_are_not_the_same_error(
    make_app: Any, slack_api: FakeSlack
) -> None:
    app = await make_app(slack=slack_api, config={}, people=PEOPLE)
    first, _ = await open_ticket(
        app, slack_api, error="The printer says PC LOAD LETTER", client="acme"
    )
    assert (await close(app, slack_api, first, note=NOTE))[1] == {}
    _, card = await open_ticket(app, slack_api, error="The printer says PAPER JAM", client="b")
    assert first not in flat(card), flat(card)


async def test_a_pattern_counts_open_tickets_and_names_every_earlier_one(
    make_app: Any, slack_api: FakeSlack
) -> None:
    """The threshold counts open tickets too: two open ones and the new one make a pattern;
    the next one is ticket 4 of it and lists the three before; both need a KB article to
    close, the first two do not; a KB article named on a pattern ticket is suggested next."""
    app = await make_app(
        slack=slack_api, config={"patterns": {"repeat_threshold": 3}}, people=PEOPLE
    )
    one, card = await open_ticket(app, slack_api, error=SAME_CODE[0], client="acme")
    assert "Pattern" not in flat(card)
    two, card = await open_ticket(app, slack_api, error=SAME_CODE[1], client="globex")
    assert "Pattern" not in flat(card)
    three, card = await open_ticket(app, slack_api, error=SAME_CODE[2], client="initech")
    shown = flat(card)
    assert f"Pattern: {three} is ticket 3 with this error (0x80070005)" in shown, shown
    assert f"Earlier: {one}, {two}" in shown
    four, card = await open_ticket(app, slack_api, error=SAME_CODE[3], client="acme")
    shown = flat(card)
    assert f"Pattern: {four} is ticket 4 with this error (0x80070005)" in shown, shown
    assert f"Earlier: {one}, {two}, {three}" in shown
    assert "Suggested KB article" not in shown

    for number in (three, four):
        view, ack = await close(app, slack_api, number, note=NOTE)
        assert "part of a pattern" in flat(view)
        assert "part of a pattern" in ack["errors"]["kb_article"], ack
    assert (await close(app, slack_api, one, note=NOTE))[1] == {}
    assert (await close(app, slack_api, four, note=NOTE, kb="KB0777"))[1] == {}
    _, card = await open_ticket(app, slack_api, error=SAME_CODE[4], client="globex")
    shown = flat(card)
    assert "Suggested KB article" in shown and "KB0777" in shown, shown


async def test_changes_touch_a_ticket_by_its_asset_case_insensitively(
    make_app: Any, slack_api: FakeSlack, tmp_path: Any
) -> None:
    """A config entry and a calendar event (its CATEGORIES) name an asset: a ticket of another
    client on that asset, typed in other case, is hinted; one on another asset is not."""
    (tmp_path / "changes.ics").write_text(
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//EN\r\n"
        "BEGIN:VEVENT\r\nUID:fw@x\r\nDTSTAMP:20261101T000000Z\r\nDTSTART:20261215T220000Z\r\n"
        "SUMMARY:Firewall firmware window\r\nCATEGORIES:globex,FW-01\r\nEND:VEVENT\r\n"
        "END:VCALENDAR\r\n"
    )
    config = {
        "changes": {
            "window": "3d", "calendar": "changes.ics", "patch_tuesday": False,
            "entries": [{"title": "VPN client 7.2 rollout", "start": "2026-12-15T18:00:00Z",
                         "clients": ["acme"], "assets": ["VPN-GW1"]}],
        }
    }  # fmt: skip
    app: AppHarness = await make_app(slack=slack_api, config=config, people=PEOPLE)
    app.services.deps.clock = lambda: datetime(2026, 12, 16, 8, tzinfo=UTC)
    _, card = await open_ticket(
        app, slack_api, error="", client="initech", category="network", asset="vpn-gw1"
    )
    assert "opened 14 hours after VPN client 7.2 rollout (2026-12-15 18:00 UTC)" in flat(card)
    assert "Firewall" not in flat(card)
    _, card = await open_ticket(
        app, slack_api, error="", client="initech", category="network", asset="fw-01"
    )
    assert "opened 10 hours after Firewall firmware window (2026-12-15 22:00 UTC)" in flat(card)
    assert "VPN client" not in flat(card)
    _, card = await open_ticket(
        app, slack_api, error="", client="initech", category="network", asset="SW-02"
    )
    assert "VPN client" not in flat(card) and "Firewall" not in flat(card)
    # Opened before either change started: nothing to hint yet.
    app.services.deps.clock = lambda: datetime(2026, 12, 15, 17, tzinfo=UTC)
    _, card = await open_ticket(
        app, slack_api, error="", client="acme", category="network", asset="FW-01"
    )
    assert "VPN client" not in flat(card) and "Firewall" not in flat(card)


async def test_patch_tuesday_categories_are_offered_and_hinted_whole_day(
    make_app: Any, slack_api: FakeSlack
) -> None:
    """`changes.patch_tuesday_categories` set to [printer, citrix]: the intake's Category offers
    both; a printer ticket is hinted (also late on Patch Tuesday itself, and while any of its
    UTC day is within the window), an e-mail one is not."""
    config = {"changes": {"window": "1d", "patch_tuesday_categories": ["printer", "Citrix"]}}
    app: AppHarness = await make_app(slack=slack_api, config=config, people=PEOPLE)
    view = await modal(app, slack_api, "new")
    category = next(b for b in view["blocks"] if b.get("block_id") == "category")
    offered = [o["value"] for o in category["element"]["options"]]
    assert {"printer", "citrix"} <= set(offered), offered

    def at(text: str) -> None:
        moment = datetime.fromisoformat(text).replace(tzinfo=UTC)
        app.services.deps.clock = lambda: moment

    at("2026-12-08T23:30:00")
    _, card = await open_ticket(app, slack_api, error="", client="acme", category="printer")
    assert "Patch Tuesday (2026-12-08)" in flat(card)
    # 1 day and 18 hours after the day began, 18 hours after it ended: within the 1d window.
    at("2026-12-09T18:00:00")
    _, card = await open_ticket(app, slack_api, error="", client="acme", category="citrix")
    assert "opened 1 day after Patch Tuesday (2026-12-08)" in flat(card)
    _, card = await open_ticket(app, slack_api, error="", client="acme", category="email")
    assert "Patch Tuesday" not in flat(card)
    at("2026-12-10T01:00:00")
    _, card = await open_ticket(app, slack_api, error="", client="acme", category="printer")
    assert "Patch Tuesday" not in flat(card)


async def test_patch_tuesday_false_hints_nothing(make_app: Any, slack_api: FakeSlack) -> None:
    config = {"changes": {"window": "3d", "patch_tuesday": False}}
    app: AppHarness = await make_app(slack=slack_api, config=config, people=PEOPLE)
    app.services.deps.clock = lambda: datetime(2026, 12, 10, 9, tzinfo=UTC)
    _, card = await open_ticket(app, slack_api, error="", client="acme", category="windows")
    assert "Patch Tuesday" not in flat(card)


async def test_similar_says_within_10_s_that_the_kb_did_not_answer(
    make_app: Any, slack_api: FakeSlack
) -> None:
    async with FakeHudu() as hudu:
        hudu.set_delay("/api/v1/articles", 30)
        app = await make_app(
            slack=slack_api,
            config={"kb": {"source": "hudu", "url": hudu.url}},
            people=PEOPLE,
            env={"KB_API_KEY": hudu.api_key},
        )
        number, _ = await open_ticket(app, slack_api, error=SAME_CODE[0], client="acme")
        started = time.monotonic()
        response = await app.slash(
            f"similar {number}", response_url=slack_api.response_url_for("sim1")
        )
        assert response.status == 200
        assert time.monotonic() - started < 3
        first = await response.json()
        assert first["response_type"] == "ephemeral"
        assert "Still asking Hudu" in flat(first)
        await slack_api.wait_for("/response/sim1", timeout=10)
        assert time.monotonic() - started < 10
        [late] = slack_api.responses("sim1")
        assert late["response_type"] == "ephemeral"
        assert "Hudu did not answer within 5 s" in flat(late)


async def test_patterns_changes_and_categories_on_teams(
    make_app: Any, connector: FakeConnector
) -> None:
    """On Teams: the intake form's Category offers the Patch Tuesday categories; a pattern
    counts open tickets; a KB article named on a pattern ticket is suggested on the next one;
    a change is hinted on the card."""
    config: dict[str, Any] = {
        "teams": {"service_url": connector.service_url, "tenant_id": "t-1"},
        "patterns": {"repeat_threshold": 2},
        "changes": {"window": "3d", "patch_tuesday_categories": ["windows", "citrix"]},
    }
    app: AppHarness = await make_app(config=config, people=TEAMS_PEOPLE)
    app.services.deps.clock = lambda: datetime(2026, 12, 10, 9, tzinfo=UTC)
    form = await say(app, connector, text="ticket new Citrix fails")
    [category] = [i for i in inputs(form) if i["id"] == "category"]
    assert {"windows", "citrix"} <= {c["value"] for c in category["choices"]}

    async def submit(error: str, category: str) -> tuple[str, str]:
        form = await say(app, connector, text="ticket new Citrix fails")
        values = {
            "requester": "ana@example.com", "summary": "Citrix fails", "error_text": error,
            "doing": "Starting the desktop", "reproducible": "yes", "users_affected": "1",
            "priority": "P3", "category": category, "asset": "", "client": "acme",
        }  # fmt: skip
        data = {**submit_action(form)["fallback"]["data"], **values}
        card = card_text(await say(app, connector, value=data))
        async with app.services.sessions() as session:
            query = select(Ticket.number).order_by(Ticket.id.desc())
            return str((await session.execute(query)).scalar()), card

    one, card = await submit("Citrix error 0x80040154 at logon", "citrix")
    assert "opened 2 days after Patch Tuesday (2026-12-08)" in card, card
    assert "Pattern" not in card
    two, card = await submit("0x80040154 when the desktop starts", "network")
    assert "Patch Tuesday" not in card
    assert f"Pattern: {two} is ticket 2 with this error (0x80040154)" in card, card
    assert f"Earlier: {one}" in card
    _, refused = await teams_close(app, connector, two, note=NOTE)
    assert "part of a pattern" in card_text(refused)
    _, done = await teams_close(app, connector, two, note=NOTE, kb="KB0555")
    assert f"Closed {two}" in card_text(done)
    three, card = await submit("0x80040154 once more", "network")
    assert "Similar tickets" in card and f"{two} (acme)" in card, card
    assert NOTE in card and "KB article: KB0555" in card
    assert "Suggested KB article" in card and "KB0555" in card, card
    assert f"Pattern: {three} is ticket 3 with this error (0x80040154)" in card, card
    assert f"Earlier: {one}, {two}" in card


async def test_kb_finds_resolved_tickets_by_summary_error_text_or_resolution_note(
    make_app: Any, slack_api: FakeSlack
) -> None:
    """Each of the three fields is searched, whatever the case typed; an open ticket with the
    words is no resolved ticket and is not listed."""
    app = await make_app(slack=slack_api, config={}, people=PEOPLE)
    by_summary, _ = await open_ticket(
        app, slack_api, error="It just spins", client="acme", summary="Scanner on floor 2 hangs"
    )
    by_error, _ = await open_ticket(
        app, slack_api, error="The spooler subsystem app stopped", client="globex",
        summary="Cannot print",
    )  # fmt: skip
    by_note, _ = await open_ticket(
        app, slack_api, error="Nothing happens", client="initech", summary="Laptop dock"
    )
    for number, note in [
        (by_summary, "Updated the TWAIN driver of the scanner"),
        (by_error, "Restarted the print service and cleared the queue"),
        (by_note, "Replaced the Thunderbolt cable of the dock"),
    ]:
        assert (await close(app, slack_api, number, note=note))[1] == {}
    still_open, _ = await open_ticket(
        app, slack_api, error="Spooler subsystem app stopped again", client="acme",
        summary="Scanner and thunderbolt dock",
    )  # fmt: skip
    for typed, wanted in [
        ("kb SCANNER floor", by_summary),
        ("kb spooler subsystem", by_error),
        ("kb thunderbolt cable", by_note),
    ]:
        answer = flat(await ephemeral(app, typed))
        assert wanted in answer, (typed, answer)
        assert still_open not in answer, (typed, answer)


async def test_the_card_lists_at_most_three_kb_articles_with_their_links(
    make_app: Any, slack_api: FakeSlack
) -> None:
    async with FakeHudu() as hudu:
        articles = [
            hudu.add_article(f"Fix {n} for 0x80070005", "Windows Update 0x80070005")
            for n in range(5)
        ]
        app = await make_app(
            slack=slack_api,
            config={"kb": {"source": "hudu", "url": hudu.url}},
            people=PEOPLE,
            env={"KB_API_KEY": hudu.api_key},
        )
        number, _ = await open_ticket(app, slack_api, error=SAME_CODE[0], client="acme")
        updated = await card_update(app, slack_api, number, "KB articles (Hudu)", timeout=5)
        shown = flat(updated)
        listed = [a for a in articles if a["name"] in shown]
        assert len(listed) == 3, shown
        for article in listed:
            assert article["url"] in shown


async def test_the_same_exact_text_without_a_code_makes_a_pattern(
    make_app: Any, slack_api: FakeSlack
) -> None:
    app = await make_app(slack=slack_api, config={}, people=PEOPLE)  # the default threshold, 3
    text = "The printer says PC LOAD LETTER"
    one, _ = await open_ticket(app, slack_api, error=text, client="acme", category="printer")
    two, _ = await open_ticket(app, slack_api, error=text.upper(), client="b", category="printer")
    three, card = await open_ticket(
        app, slack_api, error=f" {text.lower()} ", client="c", category="printer"
    )
    shown = flat(card)
    assert f"Pattern: {three} is ticket 3 with this error" in shown, shown
    assert f"Earlier: {one}, {two}" in shown
    _, ack = await close(app, slack_api, three, note=NOTE)
    assert "part of a pattern" in ack["errors"]["kb_article"], ack


@pytest.mark.parametrize("placeholder", ["n/a", "-", "..."])
async def test_an_error_text_that_is_only_a_placeholder_is_no_error(
    make_app: Any, slack_api: FakeSlack, placeholder: str
) -> None:
    """Exact error text is optional; where there was no message technicians type `n/a` or
    `-`. Three unrelated tickets typed so were "the same error text": an Outlook ticket listed
    a printer fix under Similar tickets, the third was a pattern whose closure was refused
    without a KB article, and `similar` listed them as the same error. A placeholder is no
    error text (as the open-P1 match already reads it); a code in the summary still counts."""
    app = await make_app(slack=slack_api, config={}, people=PEOPLE)  # the default threshold, 3
    one, _ = await open_ticket(
        app,
        slack_api,
        error=placeholder,
        client="acme",
        category="printer",
        summary="Printer offline",
    )
    assert (await close(app, slack_api, one, note=NOTE))[1] == {}
    _, card = await open_ticket(
        app,
        slack_api,
        error=placeholder.upper(),
        client="b",
        category="outlook",
        summary="Outlook is slow",
    )
    assert "Similar tickets" not in flat(card) and one not in flat(card), flat(card)
    three, card = await open_ticket(
        app,
        slack_api,
        error=f" {placeholder} ",
        client="c",
        category="office",
        summary="Word crashes on start",
    )
    shown = flat(card)
    assert "Pattern" not in shown and "Similar tickets" not in shown, shown
    answer = flat(await ephemeral(app, f"similar {three}"))
    # (HD-1 may still be a full-text match of what they were doing: not the same error.)
    assert "Same error" not in answer and "same error text" not in answer, answer
    _, ack = await close(app, slack_api, three, note=NOTE)
    assert ack == {}, ack
    assert (await ticket(app, three)).status == "closed"
    # A code in the summary is still the same error.
    four, card = await open_ticket(
        app, slack_api, error=placeholder, client="d", summary="Update fails with 0x80070005"
    )
    assert (await close(app, slack_api, four, note=NOTE))[1] == {}
    _, card = await open_ticket(
        app, slack_api, error="", client="e", summary="0x80070005 again on the update"
    )
    assert f"{four} (d)" in flat(card) and one not in flat(card), flat(card)


async def test_placeholder_error_texts_stored_by_an_earlier_release_make_no_reported_pattern(
    make_app: Any, slack_api: FakeSlack
) -> None:
    """A database written before placeholders stopped being error texts holds an `exact`
    signature for each `n/a` ticket: the report's top patterns named "n/a" (often the most
    frequent "error" of all). Only real errors are reported."""
    app = await make_app(slack=slack_api, config={}, people=PEOPLE)
    placeholders = []
    for n in range(4):
        number, _ = await open_ticket(app, slack_api, error="N/A", client=f"c{n}")
        placeholders.append(number)
    real = [
        (await open_ticket(app, slack_api, error="PC LOAD LETTER", client=f"r{n}"))[0]
        for n in range(3)
    ]
    ids = [(await ticket(app, number)).id for number in placeholders]
    async with app.services.sessions() as session, session.begin():
        for ticket_id in ids:  # what the earlier release stored with them
            await error_signatures.add_signatures(
                session, ticket_id=ticket_id, keys=[f"exact:{rules.exact_key('n/a')}"]
            )
    since, until = datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC)
    patterns = await diagnosis.top_patterns(app.services.deps, since=since, until=until)
    assert [(p.error, p.numbers) for p in patterns] == [("PC LOAD LETTER", tuple(real))]


async def test_a_fix_the_requester_confirmed_is_marked_among_similar_tickets(
    make_app: Any, slack_api: FakeSlack
) -> None:
    """Of two earlier fixes for one error, the one whose requester answered Works now is the
    one known to work: the card's Similar tickets, `similar` and `kb` said nothing of it, so
    the technician could not tell the confirmed fix from a guess closed unconfirmed."""
    app = await make_app(slack=slack_api, config={}, people=PEOPLE)
    flow = SlackFlow(app, slack_api)
    confirmed, _ = await open_ticket(app, slack_api, error=SAME_CODE[0], client="acme")
    await flow.command(f"confirm {confirmed}")
    await wait_until(lambda: flow.dms("UANA", "Works now"), what="the question to Ana")
    [question] = flow.dms("UANA", "Works now")
    assert "works now" in await flow.press(question, "Works now", "UANA")
    assert (await close(app, slack_api, confirmed, note=NOTE))[1] == {}
    guessed, _ = await open_ticket(app, slack_api, error=SAME_CODE[1], client="globex")
    assert (await close(app, slack_api, guessed, note=f"{NOTE} again"))[1] == {}

    def line(text: str, number: str) -> str:
        return text.split(f"{number} (")[1].split("HD-")[0]

    _, card = await open_ticket(app, slack_api, error=SAME_CODE[2], client="initech")
    for answer in (
        flat(card),
        flat(await ephemeral(app, f"similar {(await ticket(app, guessed)).number}")),
        flat(await ephemeral(app, "kb 0x80070005")),
    ):
        assert "fix confirmed" in line(answer, confirmed), answer
        if f"{guessed} (" in answer:
            assert "fix confirmed" not in line(answer, guessed), answer


async def test_kb_finds_an_error_code_in_the_summary_or_the_resolution_note(
    make_app: Any, slack_api: FakeSlack
) -> None:
    """`kb 0x…` lists a resolved ticket whose code is not in its error text but in its summary
    or its resolution note (SPEC: summary, error text or resolution note contains the code)."""
    app = await make_app(slack=slack_api, config={}, people=PEOPLE)
    in_summary, _ = await open_ticket(
        app, slack_api, error="It will not update", client="acme", summary="WSUS 0x8024402C"
    )
    in_note, _ = await open_ticket(
        app, slack_api, error="Update failed", client="globex", summary="Updates stuck"
    )
    note = "Reset the folder permissions behind 0x80070005 on SoftwareDistribution"
    assert (await close(app, slack_api, in_note, note=note))[1] == {}
    assert (await close(app, slack_api, in_summary, note=NOTE))[1] == {}
    for typed, wanted in [
        ("kb 0x8024402c", in_summary),
        ("kb 0x80070005", in_note),
        ("kb 0X80070005", in_note),
    ]:
        answer = flat(await ephemeral(app, typed))
        assert wanted in answer, (typed, answer)


# SPEC's "Diagnosis help" config block as written there (unquoted timestamps, `space` beside
# `source: hudu`, comments), with the KB's address replaced by the fake's.
SPEC_BLOCK = """\
kb:
  source: hudu              # hudu | itglue | confluence; absent = resolved tickets only
  url: {kb_url}
  space: IT                 # confluence only: the space key searched
changes:                    # the change calendar
  window: 3d                # how long after a change a new ticket is hinted
  patch_tuesday: true       # Microsoft's second Tuesday of the month, built in
  patch_tuesday_categories: [windows, m365, office, outlook, exchange, server]   # the default
  calendar: changes.ics     # optional iCalendar file (relative to the config file) or http(s) URL
  entries:                  # optional, besides the calendar
{entry}
patterns:
  repeat_threshold: 3       # this many tickets with the same error make a pattern
directory: {{source: file, path: people.yaml}}
"""
SPEC_ENTRY = (  # one line in SPEC
    '    - {title: "VPN client 7.2 rollout", start: 2026-12-01T18:00:00Z, '
    "clients: [acme], assets: [VPN-GW1]}"
)


async def test_specs_config_block_as_written_works(
    make_app: Any, slack_api: FakeSlack, tmp_path: Any
) -> None:
    async with FakeHudu() as hudu:
        hudu.add_article("VPN client 7.2 known issues", "vpn")
        folder = tmp_path / "config"
        folder.mkdir()
        (folder / "helpdesk.yaml").write_text(SPEC_BLOCK.format(kb_url=hudu.url, entry=SPEC_ENTRY))
        (folder / "people.yaml").write_text(yaml.safe_dump(PEOPLE))
        (folder / "changes.ics").write_text(
            "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//EN\r\n"
            "BEGIN:VEVENT\r\nUID:fw@x\r\nDTSTAMP:20261101T000000Z\r\n"
            "DTSTART:20261202T060000Z\r\nSUMMARY:Firewall firmware window\r\n"
            "CATEGORIES:acme\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
        )
        app: AppHarness = await make_app(
            slack=slack_api,
            env={"HELPDESK_CONFIG": str(folder / "helpdesk.yaml"), "KB_API_KEY": hudu.api_key},
        )
        app.services.deps.clock = lambda: datetime(2026, 12, 2, 19, 30, tzinfo=UTC)
        _, card = await open_ticket(
            app, slack_api, error="", client="acme", category="network", summary="VPN drops"
        )
        shown = flat(card)
        assert "opened 1 day after VPN client 7.2 rollout (2026-12-01 18:00 UTC)" in shown
        assert "opened 13 hours after Firewall firmware window (2026-12-02 06:00 UTC)" in shown
        view = await modal(app, slack_api, "new")
        category = next(b for b in view["blocks"] if b.get("block_id") == "category")
        offered = {o["value"] for o in category["element"]["options"]}
        assert {"windows", "m365", "office", "outlook", "exchange", "server"} <= offered
        answer = flat(await ephemeral(app, "kb vpn client"))
        assert "VPN client 7.2 known issues" in answer


async def test_a_card_dmed_to_the_technician_is_updated_there_with_the_kb_articles(
    make_app: Any, slack_api: FakeSlack
) -> None:
    """The channel refuses the bot's card, so it is DMed to the technician: the KB's articles
    update that card in place (in the DM), not a message in the refusing channel."""
    async with FakeHudu() as hudu:
        hudu.add_article("Windows Update 0x80070005: reset the update components", "fix")
        hudu.set_delay("/api/v1/articles", 1.0)  # after the card went out
        app = await make_app(
            slack=slack_api,
            config={"kb": {"source": "hudu", "url": hudu.url}},
            people=PEOPLE,
            env={"KB_API_KEY": hudu.api_key},
        )
        slack_api.refusing["C0HELP"] = "restricted_action"
        view = await modal(app, slack_api, "new Windows Update fails")
        values = {
            "requester": {"type": "users_select", "selected_user": "UANA"},
            "summary": text_state("Windows Update fails"),
            "error_text": text_state(SAME_CODE[0]),
            "doing": text_state("Installing the monthly updates"),
            "reproducible": select_state("yes"),
            "users_affected": {"type": "number_input", "value": "1"},
            "priority": select_state("P3"),
            "category": select_state("windows"),
            "asset": text_state(""),
            "client": text_state("acme"),
        }
        response = await app.interactive(view_submission(view, values, view_id="VDM1"))
        assert response.status == 200

        def dm_cards() -> list[dict[str, Any]]:
            return [
                p for p in slack_api.posts() if p["channel"] == "DUTECH" and "HD-1" in p["text"]
            ]

        await wait_until(dm_cards, timeout=5, what="the card in Tom's DM")

        def updates() -> list[dict[str, Any]]:
            return [
                u for u in slack_api.method_calls("chat.update") if "KB articles (Hudu)" in flat(u)
            ]

        await wait_until(updates, timeout=6, what="the DMed card updated with the KB")
        [update] = updates()
        current = await ticket(app, "HD-1")
        assert (update["channel"], update["ts"]) == ("DUTECH", current.card_message)
        assert "reset the update components" in flat(update)


async def test_kb_articles_found_before_the_card_is_posted_still_reach_it(
    make_app: Any, slack_api: FakeSlack
) -> None:
    """Slack is slow to answer the card's post; the KB answers at once, before the bot knows
    the card's message: the card still shows the articles (in its post or an update)."""
    async with FakeHudu() as hudu:
        hudu.add_article("Windows Update 0x80070005: reset the update components", "fix")
        app = await make_app(
            slack=slack_api,
            config={"kb": {"source": "hudu", "url": hudu.url}},
            people=PEOPLE,
            env={"KB_API_KEY": hudu.api_key},
        )
        slack_api.delay_answer("chat.postMessage", 2.0)
        number, card = await open_ticket(app, slack_api, error=SAME_CODE[0], client="acme")
        if "reset the update components" not in flat(card):
            await card_update(app, slack_api, number, "reset the update components", timeout=8)


# Words a technician types that stand inside a compound of the stored text: PostgreSQL's text
# parser keeps `WINWORD.EXE`, `ntdll.dll`, `Teams/Outlook`, `500/4500` and host names as one
# token each, so before revision 0021 the word alone was not in the ticket's search document
# there (SQLite's FTS5 splits them).
COMPOUND_ERROR = (
    "Faulting application name: WINWORD.EXE, faulting module name: ntdll.dll, "
    "while loading the Teams/Outlook add-in"
)
COMPOUND_NOTE = "Opened UDP 500/4500 on the firewall and renewed the lease on dc1.corp.example.com"


@pytest.mark.parametrize("typed", ["winword", "ntdll", "outlook", "4500", "dc1"])
async def test_kb_finds_a_word_that_stands_inside_a_compound(
    make_app: Any, slack_api: FakeSlack, typed: str
) -> None:
    """SPEC: `kb <words>` lists resolved tickets whose summary, error text or resolution note
    contains the words: `kb ntdll` finds the crash in ntdll.dll on either database."""
    app = await make_app(slack=slack_api, config={}, people=PEOPLE)
    number, _ = await open_ticket(
        app, slack_api, error=COMPOUND_ERROR, client="acme", summary="Word crashes at start"
    )
    assert (await close(app, slack_api, number, note=COMPOUND_NOTE))[1] == {}
    assert number in flat(await ephemeral(app, f"kb {typed}"))
