"""`kb <code>` finds a resolved ticket whose resolution note names the code as it was typed
there, over Slack HTTP on SQLite and PostgreSQL (SPEC: "resolved tickets whose summary, error
text or resolution note contains the words or the error code")."""

from __future__ import annotations

from typing import Any

import pytest

from tests.fakes.slack_api import FakeSlack
from tests.http.diagnosis_support import PEOPLE, close, ephemeral, flat, open_ticket

# A code spelled in the note as technicians write it, and other spellings of the same code.
CASES = [
    (
        "Replaced the storage driver after stop code 0x7B",
        ["kb 0x7b", "kb 0x7B driver", "kb 0x0000007B"],
    ),
    ("Cleared the Teams cache, which ended caa70004", ["kb caa70004", "kb caa70004 teams"]),
    (
        "Repaired the Office install that gave -2147024891 when saving",
        ["kb -2147024891", "kb 0x80070005 saving"],
    ),
]


@pytest.mark.parametrize(("note", "searches"), CASES)
async def test_kb_finds_a_code_named_only_in_the_resolution_note(
    make_app: Any, slack_api: FakeSlack, note: str, searches: list[str]
) -> None:
    app = await make_app(slack=slack_api, config={}, people=PEOPLE)
    number, _ = await open_ticket(
        app, slack_api, error="It stopped working", client="acme", summary="Laptop trouble"
    )
    assert (await close(app, slack_api, number, note=note))[1] == {}
    for typed in searches:
        assert f"{number} (acme)" in flat(await ephemeral(app, typed)), typed
