"""Attachments (#15), over Slack and Teams HTTP: files shared in a ticket card's Slack thread
and files on a Teams message naming the ticket are recorded (name, link, who, when) and listed
by `show`, once per file whatever the redeliveries; files elsewhere are ignored; nothing is
downloaded; every Events API request is answered 200 within 3 s."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import func, select

from storage.models import TicketAttachment
from tests.fakes.botframework import FakeConnector
from tests.fakes.slack_api import FakeSlack
from tests.harness import AppHarness, wait_until
from tests.http.conftest_teams import PERSONAL, TECH_ID, message
from tests.http.working_support import (
    PEOPLE,
    RETRY,
    TEAMS_IDS,
    SlackFlow,
    TeamsFlow,
    events,
    shown,
    teams_config,
)

SHOT = "https://fake-team.slack.com/files/UANA/F0SHOT/screenshot.png"


async def attachments(app: AppHarness) -> list[TicketAttachment]:
    async with app.services.sessions() as session:
        query = select(TicketAttachment).order_by(TicketAttachment.id)
        return list((await session.execute(query)).scalars())


async def count(app: AppHarness) -> int:
    async with app.services.sessions() as session:
        found = await session.execute(select(func.count()).select_from(TicketAttachment))
        return int(found.scalar_one())


async def test_slack_files_in_the_ticket_thread_are_recorded_once_and_shown(
    make_app: Any, slack_api: FakeSlack
) -> None:
    app: AppHarness = await make_app(slack=slack_api, people=PEOPLE)
    s = SlackFlow(app, slack_api)
    number = await s.ticket()
    other = await s.ticket(summary="Another printer")
    thread = (s.card(number) or {})["ts"]
    shot = {
        "id": "F0SHOT",
        "name": "screenshot.png",
        "title": "screenshot.png",
        "mimetype": "image/png",
        "size": 48213,
        "permalink": SHOT,
        "url_private": "https://files.slack.com/files-pri/T0-F0SHOT/screenshot.png",
    }
    # Slack Connect: only the id, read with files.info.
    slack_api.add_file("F0LOG", "install.log", mimetype="text/plain")
    stub = {"id": "F0LOG", "file_access": "check_file_info"}
    body = s.event(
        user="UANA",
        thread=thread,
        files=[shot, stub],
        event_id="Ev0FILES",
        text="here is what I see",
    )
    started = time.monotonic()
    first = await app.slack(body, content_type="application/json")
    assert first.status == 200 and time.monotonic() - started < 3
    retry = await app.slack(body, content_type="application/json", headers=RETRY)
    assert retry.status == 200
    await wait_until(lambda: _has(app, 2), what="the files recorded")
    # Elsewhere: at the top of the channel, in another thread, by the bot itself: ignored.
    for elsewhere in (
        s.event(user="UANA", thread=None, files=[{**shot, "id": "F0TOP"}]),
        s.event(user="UANA", thread="1600000000.000100", files=[{**shot, "id": "F0ELSE"}]),
        s.event(user="UANA", thread=thread, files=[{**shot, "id": "F0ELSE"}], channel="C0OTHER"),
    ):
        assert (await app.slack(elsewhere, content_type="application/json")).status == 200
    # A technician's plain reply in the thread, and a share of the same file again.
    reply = s.event(user="UTECH", thread=thread, text="Thanks, looking at it")
    assert (await app.slack(reply, content_type="application/json")).status == 200
    again = s.event(user="UANA", thread=thread, files=[shot])
    assert (await app.slack(again, content_type="application/json")).status == 200
    await app.services.slack.drain()  # type: ignore[union-attr]

    found = await attachments(app)
    assert [(a.name, a.url, a.actor_id) for a in found] == [
        ("screenshot.png", SHOT, "UANA"),
        ("install.log", "https://fake-team.slack.com/files/U0/F0LOG/install.log", "UANA"),
    ]
    assert found[0].size == 48213 and found[0].content_type == "image/png"
    assert len(await events(app, "attachment.added")) == 1
    # Only the stub is looked up (a retry may look again: a read, and nothing is recorded twice).
    assert {c["file"] for c in slack_api.method_calls("files.info")} == {"F0LOG"}
    show = await s.command(f"show {number}")
    assert "Attachments (2)" in show
    assert f"*screenshot.png:* {SHOT} - <@UANA> (ana@example.com) - 20" in show
    assert "Attachments" not in await s.command(f"show {other}")


async def _has(app: AppHarness, n: int) -> bool:
    return await count(app) == n


async def test_slack_malformed_files_are_refused_and_other_events_acknowledged(
    make_app: Any, slack_api: FakeSlack
) -> None:
    app: AppHarness = await make_app(slack=slack_api, people=PEOPLE)
    s = SlackFlow(app, slack_api)
    bad = s.event(user="UANA", thread="1.2", files=[{"id": "F1", "size": "big"}])
    assert (await app.slack(bad, content_type="application/json")).status == 400
    edited = s.event(user="UANA", thread="1.2").replace(
        '"type": "message"', '"type": "message", "subtype": "message_changed"'
    )
    assert (await app.slack(edited, content_type="application/json")).status == 200
    assert await count(app) == 0


async def test_teams_attachments_on_a_message_naming_the_ticket(
    make_app: Any, connector: FakeConnector
) -> None:
    app: AppHarness = await make_app(config=teams_config(connector), people=PEOPLE)
    t = TeamsFlow(app, connector)
    number = await t.ticket(requester="ana@example.com")
    image = "https://smba.trafficmanager.net/amer/v3/attachments/0-abc/views/original"
    sharepoint = "https://acme.sharepoint.com/personal/ana/Documents/crash.dmp"
    files = [
        {"contentType": "image/png", "contentUrl": image, "name": "error.png"},
        {
            "contentType": "application/vnd.microsoft.teams.file.download.info",
            "contentUrl": sharepoint,
            "name": "crash.dmp",
            "content": {
                "downloadUrl": "https://acme.sharepoint.com/download?x=1",
                "uniqueId": "1a2b",
                "fileType": "dmp",
            },
        },
        {"contentType": "text/html", "content": "<p>HD-1 <img src='x'></p>"},
        {
            "contentType": "application/vnd.microsoft.card.adaptive",
            "content": {"type": "AdaptiveCard"},
        },
    ]
    chat = "a:1ana-chat"
    sent = message(
        connector.service_url,
        f"Screenshot for {number.lower()}",
        user=TEAMS_IDS["ana"],
        conversation=chat,
        attachments=files,
        activity_id="1700000009999",
    )
    assert (await app.teams(sent)).status == 201
    assert (await app.teams(sent)).status == 201  # redelivered: the same activity id
    await wait_until(lambda: t.texts(chat, f"Added to {number}"), what="the answer")
    found = await attachments(app)
    assert [(a.name, a.url, a.actor_id) for a in found] == [
        ("error.png", image, TEAMS_IDS["ana"]),
        ("crash.dmp", sharepoint, TEAMS_IDS["ana"]),
    ]
    assert len(t.texts(chat, f"Added to {number}")) == 1

    # Someone who is neither the requester nor a technician, elsewhere: refused, audited.
    stranger = message(
        connector.service_url,
        f"{number} look",
        user="29:1eve",
        conversation="a:1eve-chat",
        attachments=[{"contentType": "image/jpeg", "contentUrl": image + "2"}],
    )
    assert (await app.teams(stranger)).status == 201
    await wait_until(lambda: t.texts("a:1eve-chat", "Only the requester"))
    assert len(await events(app, "attachment.refused")) == 1
    # A file with no ticket number is not recorded; an unknown number is said so.
    plain = message(
        connector.service_url,
        "just a picture",
        user=TECH_ID,
        attachments=[{"contentType": "image/png", "contentUrl": image + "3"}],
    )
    assert (await app.teams(plain)).status == 201
    unknown = message(
        connector.service_url,
        "for HD-99",
        user=TECH_ID,
        attachments=[{"contentType": "image/png", "contentUrl": image + "4"}],
    )
    assert (await app.teams(unknown)).status == 201
    await wait_until(lambda: t.texts(PERSONAL, "There is no ticket HD-99"))
    assert await count(app) == 2

    posted = len(connector.activities(PERSONAL))
    assert await t.say(f"ticket show {number}") == 201
    await wait_until(lambda: len(connector.activities(PERSONAL)) > posted)
    card = shown(connector.activities(PERSONAL)[posted:])
    assert "Attachments (2)" in card and "error.png" in card and "crash.dmp" in card
    assert image in card and "Ana User (ana@example.com)" in card


EVIL = "https://fake-team.slack.com/files/UEVE/F0EVIL/evil.png"


async def test_slack_files_naming_a_ticket_outside_its_thread_are_ignored(
    make_app: Any, slack_api: FakeSlack, caplog: Any
) -> None:
    """Only the card's own thread counts: a ticket number in the text of a message in any
    other thread, whoever posts it and wherever, records nothing and answers nothing."""
    app: AppHarness = await make_app(slack=slack_api, people=PEOPLE)
    s = SlackFlow(app, slack_api)
    number = await s.ticket()
    shot = {"id": "F0EVIL", "name": "evil.png", "mimetype": "image/png", "size": 1}
    posted = len(slack_api.posts())
    caplog.set_level("INFO")
    for user, channel, key in (
        ("UEVE", "C0RANDOM", "F0EVIL"),  # an outsider, a thread of another channel
        ("UEVE", "C0HELP", "F0EVIL2"),  # an outsider, another thread of the ticket's channel
        ("UANA", "C0RANDOM", "F0ANA"),  # even its requester, outside the card's thread
        ("UTECH", "C0HELP", "F0TOM"),  # even a technician
    ):
        body = s.event(
            user=user,
            thread="1600000000.000100",
            channel=channel,
            files=[{**shot, "id": key, "permalink": EVIL.replace("F0EVIL", key)}],
            text=f"about {number}",
        )
        assert (await app.slack(body, content_type="application/json")).status == 200
    await app.services.slack.drain()  # type: ignore[union-attr]
    assert await attachments(app) == []
    assert await events(app, "attachment.added") == []
    assert await events(app, "attachment.refused") == []
    assert len(slack_api.posts()) == posted  # nothing said in public
    assert "files outside a ticket's thread ignored" in caplog.text
    assert "Attachments" not in await s.command(f"show {number}")
    # In the card's own thread they count.
    thread = (s.card(number) or {})["ts"]
    body = s.event(user="UANA", thread=thread, files=[{**shot, "permalink": EVIL}])
    assert (await app.slack(body, content_type="application/json")).status == 200
    await app.services.slack.drain()  # type: ignore[union-attr]
    assert [(a.name, a.url, a.actor_id) for a in await attachments(app)] == [
        ("evil.png", EVIL, "UANA")
    ]


async def test_teams_a_reply_chain_naming_a_ticket_takes_files_only_from_its_people(
    make_app: Any, connector: FakeConnector
) -> None:
    """A reply in some channel's reply chain (not the ticket card's) naming a ticket: its
    requester's and a technician's files are recorded, anyone else's refused."""
    app: AppHarness = await make_app(config=teams_config(connector), people=PEOPLE)
    t = TeamsFlow(app, connector)
    number = await t.ticket(requester="ana@example.com")
    chain = "19:random@thread.tacv2;messageid=1700000000000"

    def sent(user: str, url: str) -> dict[str, Any]:
        shot = {"contentType": "image/png", "contentUrl": url, "name": "x.png"}
        return message(
            connector.service_url,
            f"<at>Helpdesk</at> {number} look",
            user=user,
            conversation=chain,
            attachments=[shot],
        )

    assert (await app.teams(sent("29:1eve", "https://evil.example/x.png"))).status == 201
    # Refused, told to her in her own chat (answers here are private), and audited.
    await wait_until(lambda: t.chat_with("29:1eve") is not None, what="a chat with Eve")
    eve = t.chat_with("29:1eve") or ""
    await wait_until(lambda: t.texts(eve, f"Only the requester of {number}"), what="the refusal")
    assert await attachments(app) == []
    assert len(await events(app, "attachment.refused")) == 1
    # Its requester and a technician, in the same chain: recorded.
    ana, tom = "https://example.com/ana.png", "https://example.com/tom.png"
    assert (await app.teams(sent(TEAMS_IDS["ana"], ana))).status == 201
    assert (await app.teams(sent(TECH_ID, tom))).status == 201
    await wait_until(lambda: _has(app, 2), what="the files recorded")
    assert connector.activities(chain) == []  # nothing said in the channel
    assert [(a.url, a.actor_id) for a in await attachments(app)] == [
        (ana, TEAMS_IDS["ana"]),
        (tom, TECH_ID),
    ]


async def test_slack_a_permalink_off_slacks_domain_is_not_kept_as_the_files_link(
    make_app: Any, slack_api: FakeSlack, caplog: Any
) -> None:
    """Slack Connect brings files from other organisations: a permalink that is not https on
    Slack's own domains (another site, `http:`, `javascript:`, a look-alike host) is not kept
    as the file's link; the file is recorded and `show` says it has no link."""
    app: AppHarness = await make_app(slack=slack_api, people=PEOPLE)
    s = SlackFlow(app, slack_api)
    number = await s.ticket()
    thread = (s.card(number) or {})["ts"]
    partner = "https://partner-org.enterprise.slack.com/files/UP/F0P/partner.png"
    links = {
        "F0OK": SHOT,
        "F0PARTNER": partner,
        "F0HTTP": "http://fake-team.slack.com/files/UANA/F0HTTP/x.png",
        "F0JS": "javascript:alert(document.cookie)//slack.com",
        "F0DATA": "data:text/html;base64,PHNjcmlwdD4=",
        "F0SITE": "https://evil.example/files/x.png",
        "F0LOOK": "https://slack.com.evil.example/files/x.png",
        "F0USER": "https://slack.com@evil.example/files/x.png",
    }
    files = [
        {"id": key, "name": f"{key}.png", "mimetype": "image/png", "size": 1, "permalink": url}
        for key, url in links.items()
    ]
    caplog.set_level("INFO")
    body = s.event(user="UANA", thread=thread, files=files)
    assert (await app.slack(body, content_type="application/json")).status == 200
    await app.services.slack.drain()  # type: ignore[union-attr]
    await wait_until(lambda: _has(app, len(links)), what="the files recorded")
    kept = {a.file_key: a.url for a in await attachments(app)}
    assert kept == {
        **{key: "" for key in links},
        "F0OK": SHOT,
        "F0PARTNER": partner,
    }
    assert "file link refused" in caplog.text
    show = await s.command(f"show {number}")
    assert f"*F0OK.png:* {SHOT} - " in show and f"*F0PARTNER.png:* {partner} - " in show
    assert "*F0JS.png:* (no link) - " in show
    for bad in ("evil.example", "javascript", "data:", "http://"):
        assert bad not in show


async def test_teams_a_content_url_that_is_not_http_is_not_kept_as_the_files_link(
    make_app: Any, connector: FakeConnector
) -> None:
    app: AppHarness = await make_app(config=teams_config(connector), people=PEOPLE)
    t = TeamsFlow(app, connector)
    number = await t.ticket(requester="ana@example.com")
    good = "https://smba.trafficmanager.net/amer/v3/attachments/0-abc/views/original"
    urls = {
        "good.png": good,
        "script.png": "javascript:alert(1)",
        "inline.png": "data:image/png;base64," + "A" * 5000,
        "vb.png": "vbscript:msgbox(1)",
        "spaced.png": "https://example.com/a b.png",
    }
    chat = "a:1ana-chat"
    sent = message(
        connector.service_url,
        f"Screens for {number}",
        user=TEAMS_IDS["ana"],
        conversation=chat,
        attachments=[
            {"contentType": "image/png", "contentUrl": url, "name": name}
            for name, url in urls.items()
        ],
    )
    assert (await app.teams(sent)).status == 201
    await wait_until(lambda: t.texts(chat, f"Added to {number}"), what="the answer")
    assert {a.name: a.url for a in await attachments(app)} == {
        **{name: "" for name in urls},
        "good.png": good,
    }
    posted = len(connector.activities(PERSONAL))
    assert await t.say(f"ticket show {number}") == 201
    await wait_until(lambda: len(connector.activities(PERSONAL)) > posted)
    card = shown(connector.activities(PERSONAL)[posted:])
    assert good in card and "(no link)" in card
    for bad in ("javascript", "data:", "vbscript", "a b.png"):
        assert bad not in card


async def test_teams_a_message_with_50_attachments_says_which_were_not_added(
    make_app: Any, connector: FakeConnector
) -> None:
    """Fifty attachments on one message (a card and the message's HTML among them): the first
    20 files are recorded and the answer says the other 30 were not, instead of dropping them
    without a word; HTML and card attachments do not count against the 20."""
    app: AppHarness = await make_app(config=teams_config(connector), people=PEOPLE)
    t = TeamsFlow(app, connector)
    number = await t.ticket(requester="ana@example.com")
    noise: list[dict[str, Any]] = [
        {"contentType": "text/html", "content": f"<p>{number}</p>"},
        {"contentType": "application/vnd.microsoft.card.adaptive", "content": {}},
    ] * 5
    images = [
        {
            "contentType": "image/png",
            "contentUrl": f"https://smba.trafficmanager.net/amer/v3/attachments/{n}",
            "name": f"shot-{n:02d}.png",
        }
        for n in range(40)
    ]
    chat = "a:1ana-chat"
    sent = message(
        connector.service_url,
        f"All the screens for {number}",
        user=TEAMS_IDS["ana"],
        conversation=chat,
        attachments=[*noise, *images],
    )
    assert len(sent["attachments"]) == 50
    assert (await app.teams(sent)).status == 201
    await wait_until(lambda: t.texts(chat, f"Added to {number}"), what="the answer")
    [answer] = t.texts(chat, f"Added to {number}")
    assert "shot-09.png and 10 more" in answer and "shot-10.png" not in answer
    assert "the other 20 were not added" in answer
    assert [a.name for a in await attachments(app)] == [f"shot-{n:02d}.png" for n in range(20)]


async def test_teams_twenty_files_with_long_names_are_answered_within_the_message_limit(
    make_app: Any, connector: FakeConnector
) -> None:
    """Twenty files whose names are 500 characters of Markdown punctuation (each escaped for
    Teams): the answer naming them all passed Teams' message size limit (413) and the person
    got no answer; now it names the first ten, cut, and how many more."""
    app: AppHarness = await make_app(config=teams_config(connector), people=PEOPLE)
    t = TeamsFlow(app, connector)
    number = await t.ticket(requester="ana@example.com")
    chat = "a:1ana-chat"
    sent = message(
        connector.service_url,
        f"Logs for {number}",
        user=TEAMS_IDS["ana"],
        conversation=chat,
        attachments=[
            {
                "contentType": "image/png",
                "contentUrl": f"https://smba.trafficmanager.net/amer/v3/attachments/{n}",
                "name": f"{n:02d}" + "*_[" * 166,
            }
            for n in range(20)
        ],
    )
    assert (await app.teams(sent)).status == 201
    await wait_until(lambda: t.texts(chat, f"Added to {number}"), what="the answer")
    [answer] = t.texts(chat, f"Added to {number}")
    assert "and 10 more" in answer and len(answer) < 3000
    assert len(await attachments(app)) == 20
    assert all(len(a.name) == 500 for a in await attachments(app))
