"""The chaos soak (bench/chaos.py), short: 15 s of random SIGKILLs on PostgreSQL, fixed seed.

Three real bot processes (`serve`, `serve --no-scheduler`, `worker`) on one PostgreSQL
database, FakeSlack and FakePagerDuty on 127.0.0.1, technicians opening tickets (P1s page),
logging time and closing tickets (CSAT surveys) with signed Slack requests while a random
process is SIGKILLed every 0.5-3 s and started again. Then: every card, incident notice and
survey posted once (by the outbox id in the message metadata), every P1 paged (its alert open
unless closed), nothing for a submission told to try again, the outbox empty. The longer soak is
`python -m bench.chaos` (see bench/README.md). The Teams run is the same with technicians
sending Bot Framework activities (bench/chaos_teams.py; MicrosoftAppId set, real JWTs) that are
delivered again when unanswered: every card, notice and survey in Teams at least once and at
most twice, a second copy only after a kill of its sender.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.chaos import BOT_TOKEN, ROUTING_KEY, Options, run
from bench.chaos_socket import APP_TOKEN
from bench.chaos_teams import APP_PASSWORD

pytestmark = pytest.mark.slow


async def test_random_kills_lose_nothing_and_send_nothing_twice(
    pg_url: str, tmp_path: Path
) -> None:
    lines: list[str] = []
    # Gentler than the script's default: a restarted process costs a second or two of CPU, and
    # the suite's other tests (timed ones among them) share the box's cores with this one.
    opts = Options(
        seed=20261207, duration=15.0, database_url=pg_url, workdir=tmp_path, drain=60.0,
        kill_min=2.0, kill_max=4.0, technicians=2, log=lines.append,
    )  # fmt: skip
    report = await run(opts)
    assert report.passed, report.text()
    for name, logged in report.logs.items():
        assert ROUTING_KEY not in logged and BOT_TOKEN not in logged, name


async def test_random_kills_over_socket_mode_lose_nothing_and_send_nothing_twice(
    pg_url: str, tmp_path: Path
) -> None:
    """The same over Slack Socket Mode (bench/chaos_socket.py): envelopes spread over the
    `serve` processes' connections, one not acknowledged delivered again elsewhere, a process
    stalled now and then (its envelopes delivered again while it holds them), connections
    rotated, files shared in card threads. Every envelope acknowledged on a connection that
    stayed open, nothing made twice."""
    lines: list[str] = []
    opts = Options(
        seed=20261208, duration=15.0, database_url=pg_url, workdir=tmp_path, drain=60.0,
        kill_min=2.0, kill_max=4.0, technicians=2, log=lines.append, transport="socket",
    )  # fmt: skip
    report = await run(opts)
    assert report.passed, report.text()
    for name, logged in report.logs.items():
        assert ROUTING_KEY not in logged and BOT_TOKEN not in logged, name
        assert APP_TOKEN not in logged, name


async def test_random_kills_under_teams_traffic_lose_nothing_and_repeat_at_most_once(
    pg_url: str, tmp_path: Path
) -> None:
    lines: list[str] = []
    opts = Options(
        seed=20261208, duration=15.0, database_url=pg_url, workdir=tmp_path, drain=60.0,
        kill_min=2.0, kill_max=4.0, technicians=2, log=lines.append, platform="teams",
    )  # fmt: skip
    report = await run(opts)
    assert report.passed, report.text()
    for name, logged in report.logs.items():
        assert ROUTING_KEY not in logged and BOT_TOKEN not in logged, name
        assert APP_PASSWORD not in logged, name
