"""Settings from env + YAML: defaults, and bad values naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.settings import ConfigError, load_settings


def test_defaults_match_spec() -> None:
    settings = load_settings({})
    assert settings.database_url == "sqlite+aiosqlite:///helpdesk.db"
    assert (settings.host, settings.port) == ("127.0.0.1", 3978)
    assert settings.teams_emulator and not settings.slack_enabled
    assert settings.slack_api_url == "https://slack.com/api/"
    assert settings.config.ticket_prefix == "HD"


def test_chat_platforms_are_those_the_deployment_is_connected_to() -> None:
    """Direct messages go to Slack only when it is enabled; Teams is always served."""
    slack = {"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_SIGNING_SECRET": "s"}
    assert load_settings({}).chat_platforms == ("teams",)
    assert load_settings(slack).chat_platforms == ("slack", "teams")
    both = load_settings({**slack, "MicrosoftAppId": "app", "MicrosoftAppPassword": "pw"})
    assert both.chat_platforms == ("slack", "teams")


def test_secrets_never_in_repr() -> None:
    settings = load_settings(
        {
            "SLACK_BOT_TOKEN": "xoxb-secret-1",
            "SLACK_SIGNING_SECRET": "s3cr3t",
            "PAGERDUTY_ROUTING_KEY": "R0UT1NG",
        }
    )
    shown = repr(settings)
    assert "xoxb-secret-1" not in shown and "s3cr3t" not in shown and "R0UT1NG" not in shown


@pytest.mark.parametrize(
    ("env", "key"),
    [
        ({"PORT": "http"}, "PORT"),
        ({"PORT": "\u00b2"}, "PORT"),  # a digit to str.isdigit(), not to int()
        ({"PORT": "9" * 5000}, "PORT"),  # past int()'s digit limit
        ({"SLACK_API_URL": "ftp://x"}, "SLACK_API_URL"),
        ({"PAGERDUTY_EVENTS_URL": "nope"}, "PAGERDUTY_EVENTS_URL"),
        ({"MicrosoftAppType": "Weird"}, "MicrosoftAppType"),
        (
            {
                "MicrosoftAppId": "abc",
                "MicrosoftAppType": "SingleTenant",
                "MicrosoftAppPassword": "p",
            },
            "MicrosoftAppTenantId",
        ),
        ({"SLACK_SIGNING_SECRET": "x"}, "SLACK_BOT_TOKEN"),
        ({"HELPDESK_CONFIG": "/nonexistent/helpdesk.yaml"}, "HELPDESK_CONFIG"),
    ],
)
def test_bad_env_names_the_key(env: dict[str, str], key: str) -> None:
    with pytest.raises(ConfigError, match=key):
        load_settings(env)


@pytest.mark.parametrize(
    ("yaml_text", "where"),
    [
        ("identity: {approval_ttl: soon}", "identity.approval_ttl"),
        ("unknown_key: 1", "unknown_key"),
        ("sla: {default_tier: platinum}", "sla"),
        # One client named twice (case, spaces) with two tiers: which one would it get?
        (
            "sla: {clients: {Acme: gold, 'acme ': standard}}",
            "sla: clients: 'Acme' and 'acme '",
        ),
        ("csat: {delay: 5 minutes}", "csat.delay"),
        ("ticket_prefix: 'H D'", "ticket_prefix"),
        ("directory: {source: nis}", "directory.source"),
        ("- a list", "mapping"),
        ("a: [unclosed", "not valid YAML"),
    ],
)
def test_bad_config_names_the_key(tmp_path: Path, yaml_text: str, where: str) -> None:
    path = tmp_path / "helpdesk.yaml"
    path.write_text(yaml_text)
    with pytest.raises(ConfigError, match=r"helpdesk\.yaml") as caught:
        load_settings({"HELPDESK_CONFIG": str(path)})
    assert where in str(caught.value)


def test_spec_example_config_loads(tmp_path: Path) -> None:
    path = tmp_path / "helpdesk.yaml"
    path.write_text("""
ticket_prefix: HD
slack: {incident_channel: C0INCIDENT}
teams:
  incident_conversation: "19:abc@thread.tacv2"
  service_url: https://smba.trafficmanager.net/amer/
  tenant_id: 00000000-0000-0000-0000-000000000000
incident: {bridge_url: https://meet.example.com/p1-bridge}
sla:
  default_tier: standard
  tiers:
    standard: {P1: {respond: 30m, resolve: 4h}, P2: {respond: 2h, resolve: 1d},
               P3: {respond: 8h, resolve: 3d}, P4: {respond: 1d, resolve: 5d}}
    gold:     {P1: {respond: 15m, resolve: 2h}, P2: {respond: 1h, resolve: 8h},
               P3: {respond: 4h, resolve: 2d}, P4: {respond: 8h, resolve: 3d}}
  clients: {acme: gold}
queues:
  security: {slack: C0SECURITY, teams: "19:security@thread.tacv2"}
  networking: {slack: C0NETWORK}
escalation:
  queues: {network: networking, m365: messaging, security: security, server: infrastructure}
tier1_scope: [password-reset, mfa, printer, outlook]
identity: {approval_ttl: 15m, categories: [password-reset, mfa, account]}
csat: {delay: 0s, vip_followup_delay: 1d}
directory: {source: file, path: people.yaml}
""")
    config = load_settings({"HELPDESK_CONFIG": str(path)}).config
    assert config.sla.tier_for("acme") == "gold"
    assert config.queues["security"].slack == "C0SECURITY"


def test_category_names_in_the_config_are_matched_as_the_form_files_them() -> None:
    """Categories are stored trimmed and in lower case; every list of them in the config is
    read the same way, so `Printer` scopes, routes and lists the `printer` tickets."""
    from handlers.config import HelpdeskConfig
    from handlers.tickets.intake import categories

    config = HelpdeskConfig.model_validate(
        {
            "identity": {"categories": ["MFA", "mfa", " Password-Reset", ""]},
            "tier1_scope": ["Printer"],
            "escalation": {"queues": {"Printer ": "desktop"}},
            "changes": {"patch_tuesday_categories": ["Windows"]},
        }
    )
    assert config.identity.categories == ["mfa", "password-reset"]
    assert config.tier1_scope == ["printer"]
    assert config.escalation.queues == {"printer": "desktop"}
    assert config.changes.patch_tuesday_categories == ["windows"]
    listed = categories(config)
    assert listed == [c.lower() for c in listed] and len(listed) == len(set(listed))
    with pytest.raises(ValueError, match="given twice"):
        HelpdeskConfig.model_validate(
            {"escalation": {"queues": {"Printer": "desktop", "printer": "field"}}}
        )


# -- LOG_LEVEL, DATABASE_URL and the config file's encoding (found by a review: each was a
# -- traceback and exit 1 at start-up instead of one line naming the key) --------------------

PASSWORD = "pw-s3cret-42"


@pytest.mark.parametrize(
    ("value", "level"),
    [("", "INFO"), ("debug", "DEBUG"), (" Warning ", "WARNING"), ("warn", "WARNING"),
     ("ERROR", "ERROR"), ("critical", "CRITICAL")],
)  # fmt: skip
def test_log_level_names_in_any_case(value: str, level: str) -> None:
    assert load_settings({"LOG_LEVEL": value}).log_level == level


@pytest.mark.parametrize("value", ["verbose", "10", "20", "NOTSET", "info,debug"])
def test_log_level_not_a_name_is_refused(value: str) -> None:
    with pytest.raises(ConfigError, match="LOG_LEVEL") as caught:
        load_settings({"LOG_LEVEL": value})
    assert "DEBUG, INFO, WARNING, ERROR, CRITICAL" in str(caught.value)


@pytest.mark.parametrize(
    "url",
    [
        "sqlite+aiosqlite:////tmp/x.db",
        "sqlite+aiosqlite://",
        f"postgresql+asyncpg://u:{PASSWORD}@db.example.com:5432/helpdesk",
        "postgresql+asyncpg:///helpdesk",
    ],
)
def test_database_url_with_an_installed_driver_is_taken_as_written(url: str) -> None:
    settings = load_settings({"DATABASE_URL": url})
    assert settings.database_url == url and settings.database_note is None


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            f"postgres://u:{PASSWORD}@db.example.com:5432/d1",
            f"postgresql+asyncpg://u:{PASSWORD}@db.example.com:5432/d1",
        ),
        (
            f"postgresql://u:{PASSWORD}@db.example.com/d1?sslmode=require",
            f"postgresql+asyncpg://u:{PASSWORD}@db.example.com/d1?ssl=require",
        ),
    ],
)
def test_a_hosting_platforms_postgres_url_is_read_as_asyncpg(url: str, expected: str) -> None:
    settings = load_settings({"DATABASE_URL": url})
    assert settings.database_url == expected
    assert settings.database_note is not None
    assert "postgresql+asyncpg://" in settings.database_note
    assert PASSWORD not in settings.database_note


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        (f"postgresql+asyncpg//u:{PASSWORD}@db.example.com/d1", "not a database URL"),
        (f"postgresql+asyncpg://u:{PASSWORD}@db.example.com:five/d1", "port is not a number"),
        (f"postgresql+asyncpg://u:{PASSWORD}@db.example.com:70000/d1", "port 70000"),
        (f"mysql+aiomysql://u:{PASSWORD}@db.example.com/d1", "mysql+aiomysql:// is not supported"),
        (f"postgresql+psycopg2://u:{PASSWORD}@db/d1", "postgresql+psycopg2:// is not supported"),
        ("sqlite:///helpdesk.db", "sqlite:// is not supported"),
        (PASSWORD, "not a database URL"),
    ],
)
def test_a_database_url_that_cannot_be_used_is_refused_without_the_password(
    url: str, problem: str
) -> None:
    with pytest.raises(ConfigError, match="DATABASE_URL") as caught:
        load_settings({"DATABASE_URL": url})
    assert problem in str(caught.value)
    assert PASSWORD not in str(caught.value)


def test_a_config_file_that_is_not_utf8_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "helpdesk.yaml"
    path.write_bytes("ticket_prefix: 'HÉ'\n".encode("latin-1"))
    with pytest.raises(ConfigError, match="HELPDESK_CONFIG") as caught:
        load_settings({"HELPDESK_CONFIG": str(path)})
    assert "helpdesk.yaml" in str(caught.value) and "UTF-8" in str(caught.value)
