"""The `psa:` block and PSA_* variables: bad ones stop start-up (exit 2) naming the key."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.settings import ConfigError, Settings, load_settings
from tests.fakes.psa_autotask import FakeAutotask
from tests.fakes.psa_common import PsaFake
from tests.fakes.psa_connectwise import FakeConnectWise
from tests.fakes.psa_freshservice import FakeFreshservice
from tests.fakes.psa_servicenow import FakeServiceNow
from tests.unit.test_cli import call_bot, run_bot

SN_ENV = {"PSA_USERNAME": "svc", "PSA_PASSWORD": "pw-0123456789"}


def _settings(tmp_path: Path, yaml_text: str, env: dict[str, str] | None = None) -> Settings:
    path = tmp_path / "helpdesk.yaml"
    path.write_text(yaml_text)
    return load_settings({"HELPDESK_CONFIG": str(path), **(env or {})})


@pytest.mark.parametrize(
    ("yaml_text", "env", "named"),
    [
        ("psa: {system: jira, url: https://x.example.com}", {}, "psa.system"),
        ("psa: {system: servicenow, url: ftp://x.example.com}", SN_ENV, "psa.url"),
        ("psa: {system: servicenow, url: acme.service-now.com}", SN_ENV, "psa.url"),
        ("psa: {system: servicenow}", SN_ENV, "psa.url"),
        ("psa: {system: servicenow, url: https://x.example.com}", {}, "PSA_USERNAME"),
        (
            "psa: {system: servicenow, url: https://x.example.com}",
            {"PSA_USERNAME": "svc"},
            "PSA_PASSWORD",
        ),
        ("psa: {system: freshservice, url: https://x.example.com}", {}, "PSA_API_KEY"),
        (
            "psa: {system: connectwise, url: https://x.example.com}",
            {"PSA_CLIENT_ID": "c", "PSA_COMPANY_ID": "acme", "PSA_PUBLIC_KEY": "p"},
            "PSA_PRIVATE_KEY",
        ),
        ("psa: {system: autotask, url: https://x.example.com}", SN_ENV, "PSA_CLIENT_ID"),
        (
            "psa: {system: servicenow, url: https://x.example.com, tiers: {Gold: platinum}}",
            SN_ENV,
            "psa.tiers.Gold",
        ),
        ("psa: {system: servicenow, url: https://x.example.com, color: red}", SN_ENV, "color"),
    ],
)
def test_bad_psa_settings_name_the_key(
    tmp_path: Path, yaml_text: str, env: dict[str, str], named: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        _settings(tmp_path, yaml_text, env)
    assert named in str(caught.value)


NEEDED = {
    "servicenow": ("PSA_USERNAME", "PSA_PASSWORD"),
    "freshservice": ("PSA_API_KEY",),
    "connectwise": ("PSA_CLIENT_ID", "PSA_COMPANY_ID", "PSA_PUBLIC_KEY", "PSA_PRIVATE_KEY"),
    "autotask": ("PSA_USERNAME", "PSA_PASSWORD", "PSA_CLIENT_ID"),
}


@pytest.mark.parametrize(
    ("system", "missing"), [(s, v) for s, names in NEEDED.items() for v in names]
)
def test_each_variable_its_system_needs_is_named_when_missing(
    tmp_path: Path, system: str, missing: str
) -> None:
    # SPEC lists each system's variables; every one of them, alone missing, stops start-up.
    env = {v: f"value-of-{v.lower()}" for v in NEEDED[system] if v != missing}
    with pytest.raises(ConfigError) as caught:
        _settings(tmp_path, f"psa: {{system: {system}, url: https://x.example.com}}", env)
    assert missing in str(caught.value)
    # ... and with it, the block is good (another system's variables are not asked for).
    env[missing] = "given"
    _settings(tmp_path, f"psa: {{system: {system}, url: http://127.0.0.1:9}}", env)


@pytest.mark.parametrize(
    "url",
    [
        "https://admin:hunter2@acme.service-now.com",
        "htps://admin:hunter2@acme.service-now.com",  # not http(s) either: still not echoed
        "https://hunter2@acme.service-now.com",
    ],
)
def test_a_psa_url_carrying_credentials_is_refused_without_repeating_them(
    tmp_path: Path, url: str
) -> None:
    # Credentials come from the PSA_* variables (SPEC). One typed into psa.url was taken:
    # the start-up log, check-config and PsaSettings' repr printed the password, and
    # aiohttp refused every call to combine it with the bot's own Authorization header.
    with pytest.raises(ConfigError) as caught:
        _settings(tmp_path, f"psa: {{system: servicenow, url: '{url}'}}", SN_ENV)
    assert "psa.url" in str(caught.value)
    assert "hunter2" not in str(caught.value)
    assert "PSA_USERNAME" in str(caught.value)


def test_good_psa_settings_keep_secrets_out_of_reprs(tmp_path: Path) -> None:
    settings = _settings(
        tmp_path,
        "psa: {system: servicenow, url: 'https://acme.service-now.com/', tiers: {Gold: gold}}",
        SN_ENV,
    )
    assert settings.psa is not None
    assert (settings.psa.system, settings.psa.url) == ("servicenow", "https://acme.service-now.com")
    assert "pw-0123456789" not in repr(settings) and "pw-0123456789" not in repr(settings.psa)
    assert _settings(tmp_path, "psa: {}", {}).psa is None  # absent system = no PSA


def test_start_up_with_a_bad_psa_setting_exits_2_naming_it(tmp_path: Path) -> None:
    (tmp_path / "helpdesk.yaml").write_text("psa: {system: servicenow, url: https://x.test}\n")
    env = {
        "HELPDESK_CONFIG": str(tmp_path / "helpdesk.yaml"),
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'h.db'}",
        "PSA_USERNAME": "svc",
    }
    for args in (("serve",), ("worker",), ("check-config", "--no-db")):
        done = run_bot(*args, cwd=tmp_path, env=env)
        assert done.returncode == 2, (args, done.stderr)
        assert "PSA_PASSWORD" in done.stderr and "Traceback" not in done.stderr
    (tmp_path / "helpdesk.yaml").write_text("psa: {system: remedy, url: https://x.test}\n")
    done = run_bot("serve", cwd=tmp_path, env=env)
    assert done.returncode == 2 and "psa.system" in done.stderr


@pytest.fixture(params=[FakeServiceNow, FakeFreshservice, FakeConnectWise, FakeAutotask])
def psa_fake(request: pytest.FixtureRequest) -> Iterator[PsaFake]:
    fake = request.param()
    fake.threaded = True  # its own thread: the test waits on a subprocess or on main()
    loop = asyncio.new_event_loop()
    loop.run_until_complete(fake.start())
    yield fake
    loop.run_until_complete(fake.stop())
    loop.close()


def test_check_config_probe_reports_the_answer(tmp_path: Path, psa_fake: PsaFake) -> None:
    (tmp_path / "helpdesk.yaml").write_text(
        f"psa: {{system: {psa_fake.SYSTEM}, url: '{psa_fake.url}'}}\n"
    )
    env = {"HELPDESK_CONFIG": str(tmp_path / "helpdesk.yaml"), **psa_fake.env()}
    # The reports in-process (test_cli.call_bot); the refusal (exit 2) as a process.
    done = call_bot("check-config", "--no-db", "--probe", cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    assert "psa probe:" in done.stdout and "authenticated" in done.stdout
    for secret in psa_fake.secrets():
        assert secret not in done.stdout + done.stderr
    calls = psa_fake.recorded
    assert calls and all(c.method == "GET" for c in calls)  # read-only

    psa_fake.refuse_credentials = True
    refused = run_bot("check-config", "--no-db", "--probe", cwd=tmp_path, env=env)
    assert refused.returncode == 2
    assert "HTTP 401" in refused.stderr and "Traceback" not in refused.stderr
    # Without --probe nothing is called, and refused credentials do not make it fail.
    before = len(psa_fake.recorded)
    quiet = call_bot("check-config", "--no-db", cwd=tmp_path, env=env)
    assert quiet.returncode == 0 and len(psa_fake.recorded) == before


def test_check_config_probe_fails_on_a_web_page_instead_of_the_api(tmp_path: Path) -> None:
    # A ServiceNow developer instance asleep answers 200 with its web page: not authenticated.
    fake = FakeServiceNow()
    fake.threaded = True
    loop = asyncio.new_event_loop()
    loop.run_until_complete(fake.start())
    try:
        fake.hibernating = True
        (tmp_path / "helpdesk.yaml").write_text(f"psa: {{system: servicenow, url: '{fake.url}'}}\n")
        env = {"HELPDESK_CONFIG": str(tmp_path / "helpdesk.yaml"), **fake.env()}
        done = run_bot("check-config", "--no-db", "--probe", cwd=tmp_path, env=env)
        assert done.returncode == 2, done.stdout
        assert "authenticated" not in done.stdout
        assert "web page, not JSON (Instance Hibernating page)" in done.stderr
        assert "Traceback" not in done.stderr
    finally:
        loop.run_until_complete(fake.stop())
        loop.close()


def test_check_config_probe_fails_when_freshservice_lacks_the_key_field(tmp_path: Path) -> None:
    # README: Freshservice needs the custom ticket field cf_helpdesk_bot_key; every create
    # names it, so without it each ticket is refused. The probe said "authenticated" all
    # the same; it now reads the ticket fields and names the missing one.
    fake = FakeFreshservice()
    fake.threaded = True
    loop = asyncio.new_event_loop()
    loop.run_until_complete(fake.start())
    try:
        (tmp_path / "helpdesk.yaml").write_text(
            f"psa: {{system: freshservice, url: '{fake.url}'}}\n"
        )
        env = {"HELPDESK_CONFIG": str(tmp_path / "helpdesk.yaml"), **fake.env()}
        done = call_bot("check-config", "--no-db", "--probe", cwd=tmp_path, env=env)
        assert done.returncode == 0, done.stderr
        assert "custom field cf_helpdesk_bot_key is there" in done.stdout
        fake.custom_fields = []
        missing = run_bot("check-config", "--no-db", "--probe", cwd=tmp_path, env=env)
        assert missing.returncode == 2, missing.stdout
        assert "no custom field cf_helpdesk_bot_key" in missing.stderr
        assert "Field Manager" in missing.stderr and "Traceback" not in missing.stderr
        assert all(c.method == "GET" for c in fake.recorded)  # read-only
    finally:
        loop.run_until_complete(fake.stop())
        loop.close()
