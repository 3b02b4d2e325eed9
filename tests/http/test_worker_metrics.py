"""`worker --metrics-port`: in the Procfile's split the outbox is delivered by `worker`
processes, which served no HTTP at all, so `helpdesk_outbox_deliveries_total`, `..._failures_total`
and `..._pruned_total` (counted where rows are delivered and trimmed) were never incremented
in any process Prometheus could scrape: the web replica's /metrics said no delivery ever
happened while cards went out. Real processes on one SQLite file, as an operator runs them."""

from __future__ import annotations

import re
from pathlib import Path

import aiohttp
import yaml

from tests.fakes.slack_api import FakeSlack
from tests.harness import BOT_TOKEN, SIGNING_SECRET, AppHarness
from tests.http import processes
from tests.http.p1_support import SLACK_PEOPLE, eventually, slack_ticket

TOKEN = "scrape-token-0f3e9a"
DELIVERED = re.compile(r'^helpdesk_outbox_deliveries_total\{kind="([^"]+)"\} (\S+)$', re.M)


async def _scrape(http: aiohttp.ClientSession, port: int, *, token: str | None) -> str:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with http.get(f"http://127.0.0.1:{port}/metrics", headers=headers) as response:
        return f"{response.status}\n{await response.text()}"


async def test_a_worker_serves_the_delivery_counts_the_web_replica_cannot_have(
    tmp_path: Path, slack_api: FakeSlack, spawn: processes.Spawn
) -> None:
    (tmp_path / "people.yaml").write_text(yaml.safe_dump(SLACK_PEOPLE))
    (tmp_path / "helpdesk.yaml").write_text(yaml.safe_dump({"directory": {"path": "people.yaml"}}))
    web_port, metrics_port = processes.free_port(), processes.free_port()
    env = {
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'helpdesk.db'}",
        "HELPDESK_CONFIG": str(tmp_path / "helpdesk.yaml"),
        "SLACK_BOT_TOKEN": BOT_TOKEN,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "SLACK_API_URL": f"{slack_api.url}/api/",
        "HOST": "127.0.0.1",
        "PORT": str(web_port),
        "METRICS_TOKEN": TOKEN,
    }
    web = await spawn("serve", "--no-scheduler", env=env, name="web")
    await web.wait_for_line("listening on")
    worker = await spawn("worker", "--metrics-port", str(metrics_port), env=env, name="worker")
    await worker.wait_for_line("outbox worker running")
    assert any(f"GET /metrics and GET /healthz on http://127.0.0.1:{metrics_port}" in line
               for line in worker.lines), worker.lines  # fmt: skip

    client = AppHarness(tmp_path, env, None, None)  # talks to the web process over HTTP
    client.url = f"http://127.0.0.1:{web_port}"
    async with aiohttp.ClientSession() as client.http:
        http = client.http
        assert await processes.healthy(http, metrics_port)
        await slack_ticket(client, slack_api, priority="P3", users=1)
        await eventually(lambda: len(slack_api.posts()) >= 1, timeout=10, what="the card")

        async def counted() -> bool:
            scraped = await _scrape(http, metrics_port, token=TOKEN)
            return scraped.startswith("200\n") and any(
                float(n) >= 1 for _, n in DELIVERED.findall(scraped)
            )

        await eventually(counted, timeout=10, what="a delivery counted on the worker")
        scraped = await _scrape(http, metrics_port, token=TOKEN)
        assert "helpdesk_outbox_pending 0.0" in scraped, scraped
        # The same METRICS_TOKEN rule as on the web port.
        assert (await _scrape(http, metrics_port, token=None)).startswith("401\n")
        assert (await _scrape(http, metrics_port, token="wrong-token")).startswith("401\n")
        # The web replica delivered nothing itself: it has no delivery count to show.
        web_scrape = await _scrape(http, web_port, token=TOKEN)
        assert web_scrape.startswith("200\n") and DELIVERED.findall(web_scrape) == []
        # Only /metrics and /healthz: no Slack or Teams endpoint on the worker's port.
        async with http.post(f"http://127.0.0.1:{metrics_port}/slack/events") as response:
            assert response.status == 404
    await worker.stop()
    assert worker.process.returncode == 0, worker.lines[-20:]
