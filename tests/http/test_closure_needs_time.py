"""SPEC "Closure and CSAT": closing needs at least one time entry or a **Time spent** value.
With neither, the closure is refused (Slack: a field error on the modal; Teams: the form comes
back saying why, once, under Time spent) and the ticket stays open; a logged time entry then
suffices. Both databases."""

from __future__ import annotations

from typing import Any

from tests.fakes.botframework import FakeConnector
from tests.fakes.slack_api import FakeSlack
from tests.harness import wait_until
from tests.http import test_closure_slack as slack
from tests.http import test_closure_teams as teams
from tests.http.conftest_teams import PERSONAL, message, note_under, submit_action


async def test_slack_no_time_entry_and_no_time_spent_is_refused(
    make_app: Any, slack_api: FakeSlack
) -> None:
    app = await slack.start(make_app, slack_api)
    number = await slack.new_ticket(app, slack_api)
    refused = await slack.submit_close(app, slack_api, number, time_spent="")
    assert refused.get("response_action") == "errors", refused
    assert set(refused["errors"]) == {"time_spent"}, refused
    assert (await slack.ticket_row(app, number)).status == "open"
    await app.slash(f"time {number} 20m swapped the fuser")
    assert await slack.submit_close(app, slack_api, number, time_spent="") == {}
    assert (await slack.ticket_row(app, number)).status == "closed"


async def test_teams_no_time_entry_and_no_time_spent_is_refused(
    make_app: Any, connector: FakeConnector
) -> None:
    app = await teams.start(make_app, connector)
    await teams.new_ticket(app, connector)
    form = await teams.say(app, connector, text="ticket close HD-1")
    submit = submit_action(form)["fallback"]["data"]
    again = await teams.say(app, connector, {**submit, **teams.close_values(), "time_spent": ""})
    shown = teams.card_text(again)
    assert "not closed" in shown and "No time is logged" in shown, shown
    assert "time_spent" in [i["id"] for i in teams.inputs(again)]
    # The reason once, under the field it is about (the form's own note said it again).
    assert shown.count("No time is logged") == 1, shown
    assert "No time is logged on this ticket yet" in note_under(again, "time_spent")
    executed = await teams.invoke(
        app, connector, "ticket.close.submit", {**submit, **teams.close_values(), "time_spent": ""}
    )
    shown = teams.card_text(executed["value"])
    assert shown.count("No time is logged") == 1, shown
    assert "No time is logged on this ticket yet" in note_under(executed["value"], "time_spent")
    assert (await teams.ticket(app)).status == "open"


async def test_teams_a_mistyped_time_spent_still_shows_the_time_already_logged(
    make_app: Any, connector: FakeConnector
) -> None:
    """The form's note under the title is left out only where the field's error says the same
    thing (nothing typed, nothing logged). A mistyped Time spent on a ticket with time logged
    keeps "Time logged so far": whether to type any time at all hangs on it."""
    app = await teams.start(make_app, connector)
    await teams.new_ticket(app, connector)
    posted = len(connector.activities(PERSONAL))
    logging = message(connector.service_url, "ticket time HD-1 20m swapped the fuser")
    assert (await app.teams(logging)).status == 201
    await wait_until(lambda: len(connector.activities(PERSONAL)) > posted, what="time logged")
    form = await teams.say(app, connector, text="ticket close HD-1")
    submit = submit_action(form)["fallback"]["data"]
    mistyped = {**submit, **teams.close_values(), "time_spent": "a while"}
    again = await teams.say(app, connector, mistyped)
    shown = teams.card_text(again)
    assert "not closed" in shown and note_under(again, "time_spent"), shown
    assert "Time logged so far: 20m" in shown, shown
    executed = await teams.invoke(app, connector, "ticket.close.submit", mistyped)
    shown = teams.card_text(executed["value"])
    assert note_under(executed["value"], "time_spent"), shown
    assert "Time logged so far: 20m" in shown, shown
    assert (await teams.ticket(app)).status == "open"


# Time as technicians type it beside `45m`: a timesheet's `1:30`, the French and German `1h30`,
# a decimal comma and an abbreviation's full stop. Each was refused as "not a duration".
TYPED_TIMES = [("1:30", 90), ("1h30", 90), ("1,5h", 90), ("45 min.", 45)]


async def test_slack_time_spent_as_technicians_type_it_is_logged(
    make_app: Any, slack_api: FakeSlack
) -> None:
    app = await slack.start(make_app, slack_api)
    for typed, minutes in TYPED_TIMES:
        number = await slack.new_ticket(app, slack_api)
        answer = await slack.submit_close(app, slack_api, number, time_spent=typed)
        assert answer == {}, (typed, answer)
        row = await slack.ticket_row(app, number)
        assert row.status == "closed" and row.time_minutes == minutes, (typed, row.time_minutes)


async def test_teams_time_spent_and_time_entries_as_technicians_type_them_are_logged(
    make_app: Any, connector: FakeConnector
) -> None:
    app = await teams.start(make_app, connector)
    await teams.new_ticket(app, connector)
    posted = len(connector.activities(PERSONAL))
    logging = message(connector.service_url, "ticket time HD-1 1:30 swapped the fuser")
    assert (await app.teams(logging)).status == 201
    await wait_until(lambda: len(connector.activities(PERSONAL)) > posted, what="time logged")
    assert (await teams.ticket(app)).time_minutes == 90
    form = await teams.say(app, connector, text="ticket close HD-1")
    submit = submit_action(form)["fallback"]["data"]
    executed = await teams.invoke(
        app,
        connector,
        "ticket.close.submit",
        {**submit, **teams.close_values(), "time_spent": "1h30"},
    )
    assert "not closed" not in teams.card_text(executed["value"]), executed
    row = await teams.ticket(app)
    assert row.status == "closed" and row.time_minutes == 180, row.time_minutes
