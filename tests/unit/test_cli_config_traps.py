"""Settings an operator writes that used to be read as something else, silently: each now
stops `check-config` and start-up with one line naming the key (found by an operator-side
review; every case below was `config OK` before)."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from tests.unit.test_cli import (
    CONFIG,
    _fields,
    _one_line_naming,
    _setup,
    call_bot,
    first_for_real,
    run_bot,
)

COMMANDS = [("check-config", "--no-db"), ("migrate",)]
# Each table's first case runs `python -m bot` for real with every command; its other cases,
# and the reports that only read a setting, call the same main() in-process (test_cli.call_bot).


@pytest.mark.parametrize("command", COMMANDS)
def test_a_key_given_twice_in_the_config_is_refused_naming_both_lines(
    tmp_path: Path, command: tuple[str, ...]
) -> None:
    """PyYAML keeps the last of two equal keys: a second `sla:` block pasted further down
    replaced the first one whole (its tiers and clients gone) with `config OK`."""
    config = (
        "sla:\n  clients: {acme: gold}\n"  # lines 1-2
        + CONFIG  # lines 3-7
        + "sla:\n  warn_before: 5m\n"  # line 8
    )
    env = _setup(tmp_path, config=config)
    line = _one_line_naming(run_bot(*command, cwd=tmp_path, env=env), "config.yaml")
    assert "line 8, column 1" in line and "'sla' is given twice (first on line 1)" in line, line


@pytest.mark.parametrize("command", COMMANDS)
def test_a_key_given_twice_in_a_directory_entry_is_refused(
    tmp_path: Path, command: tuple[str, ...]
) -> None:
    """An entry edited by appending `technician: false` under its `technician: true` kept the
    person a technician only by the order of the lines; now it is refused."""
    people = (
        "- email: bo@example.com\n"
        "  name: Bo Chen\n"
        "  technician: true\n"
        "  slack_id: U0BO\n"
        "  technician: false\n"
    )
    env = _setup(tmp_path, people=people)
    line = _one_line_naming(run_bot(*command, cwd=tmp_path, env=env), "people.yaml")
    assert "line 5, column 3" in line and "'technician' is given twice" in line, line


def test_a_yaml_merge_key_may_still_be_overridden(tmp_path: Path) -> None:
    """`<<: *anchor` followed by one of its keys is YAML's way to override, not a repeat."""
    config = CONFIG + (
        "queues:\n"
        "  networking: &net {slack: C0NETWORK, teams: '19:net@thread.tacv2'}\n"
        "  security:\n"
        "    <<: *net\n"
        "    slack: C0SECURITY\n"
    )
    result = call_bot("check-config", "--no-db", cwd=tmp_path, env=_setup(tmp_path, config=config))
    assert result.returncode == 0, result.stderr


EMPTY_CHANNELS = [
    # SPEC: "channel id (or #name)"; unquoted, YAML reads `#incidents` as a comment.
    ("slack:\n  incident_channel: #incidents\n", "slack.incident_channel"),
    ("queues:\n  security:\n    slack: #security\n", "queues.security.slack"),
    ('teams: {incident_conversation: ""}\n', "teams.incident_conversation"),
    ("queues:\n  security: {teams: '  '}\n", "queues.security.teams"),
]


@pytest.mark.parametrize(("config", "key"), EMPTY_CHANNELS)
@pytest.mark.parametrize("command", COMMANDS)
def test_an_empty_channel_is_refused_not_read_as_none(
    tmp_path: Path, config: str, key: str, command: tuple[str, ...]
) -> None:
    """`incident_channel: #incidents` was `incidents: none` and `config OK`: P1 notices went
    to no channel, and the operator learned it in an incident."""
    env = _setup(tmp_path, config=config)
    run = first_for_real((config, key), EMPTY_CHANNELS)
    line = _one_line_naming(run(*command, cwd=tmp_path, env=env), key)
    assert "YAML comment" in line and '"#name"' in line, line


def test_a_channel_is_read_without_the_spaces_around_it(tmp_path: Path) -> None:
    """`" C0INCIDENT "` went to Slack as written, which answers channel_not_found."""
    config = "slack: {incident_channel: ' C0INCIDENT '}\n"
    result = call_bot("check-config", "--no-db", cwd=tmp_path, env=_setup(tmp_path, config=config))
    assert result.returncode == 0, result.stderr
    assert _fields(result.stdout)["incidents"] == "Slack C0INCIDENT", result.stdout


@pytest.mark.parametrize("command", COMMANDS)
def test_a_bridge_url_that_is_not_http_is_refused(tmp_path: Path, command: tuple[str, ...]) -> None:
    """Every P1 notice carries it as the link to join; SPEC: URLs may be http or https."""
    env = _setup(tmp_path, config="incident: {bridge_url: meet.example.com/p1}\n")
    line = _one_line_naming(run_bot(*command, cwd=tmp_path, env=env), "incident.bridge_url")
    assert "meet.example.com/p1" in line and "http(s)" in line


QUOTED = [
    # Prometheus sends the token without them: every scrape 401.
    {"METRICS_TOKEN": '"scrape-token-7c1d"'},
    {"PSA_PRIVATE_KEY": "'cw-private-key-9e2f'"},
    {"TO_CHANNEL_FROM_BOT_OAUTH_SCOPE": '"https://api.botframework.com"'},
]


@pytest.mark.parametrize("env", QUOTED)
@pytest.mark.parametrize("command", COMMANDS)
def test_every_variable_but_the_two_passwords_is_refused_in_quotes(
    tmp_path: Path, env: dict[str, str], command: tuple[str, ...]
) -> None:
    """README: every variable but PSA_PASSWORD and LDAP_BIND_PASSWORD is refused when its
    value is in quotes; these three were taken with their quotes."""
    (key,) = env
    line = _one_line_naming(first_for_real(env, QUOTED)(*command, cwd=tmp_path, env=env), key)
    assert "quotes" in line
    assert env[key].strip("\"'") not in line


def test_a_graph_client_secret_of_spaces_falls_back_to_the_app_password(tmp_path: Path) -> None:
    """Variables are read stripped: `GRAPH_CLIENT_SECRET= ` is unset, so MicrosoftAppPassword
    is the secret (README), not "GRAPH_CLIENT_SECRET is required"."""
    config = "directory:\n  source: graph\n  graph: {tenant_id: t1, client_id: c1}\n"
    env = _setup(tmp_path, config=config)
    env.update({"GRAPH_CLIENT_SECRET": "  ", "MicrosoftAppPassword": "app-password-4b3a"})
    result = call_bot("check-config", "--no-db", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert _fields(result.stdout)["directory"].startswith("Microsoft Graph"), result.stdout


def test_a_teams_package_out_that_cannot_be_written_is_one_line_naming_it(
    tmp_path: Path,
) -> None:
    """`teams-package --out <a folder>` ended in an IsADirectoryError traceback."""
    from tests.unit.test_teams_package import APP_ID, _run_cli

    (tmp_path / "packages").mkdir()
    result = _run_cli("--app-id", APP_ID, "--out", "packages", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines == [f"teams-package: --out: cannot write packages ({os.strerror(errno.EISDIR)})"]
    assert os.listdir(tmp_path / "packages") == [] and os.listdir(tmp_path) == ["packages"]


def test_check_config_masks_credentials_in_urls_as_the_log_does(tmp_path: Path) -> None:
    """The log said `ServiceNow at https://[redacted]@acme...` while check-config, whose report
    operators paste into tickets, printed the KB's and the remote tool's user:password and a
    KB token as written. (A psa.url carrying credentials is refused outright: the bot's own
    Authorization header clashed with them on every call; test_psa_settings.)"""
    config = CONFIG + (
        "psa: {system: servicenow, url: 'https://acme.service-now.com'}\n"
        "kb: {source: hudu, url: 'https://bot:kb-pw-27c9@docs.example.com/?token=kb-tok-55e1'}\n"
        "remote: {url_template: 'https://rm:rm-pw-93d0@control.example.com/j?asset={asset}'}\n"
    )
    env = _setup(tmp_path, config=config)
    env.update({"PSA_USERNAME": "svc", "PSA_PASSWORD": "pw", "KB_API_KEY": "key"})
    result = run_bot("check-config", "--no-db", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    for secret in ("kb-pw-27c9", "kb-tok-55e1", "rm-pw-93d0"):
        assert secret not in result.stdout + result.stderr, result.stdout
    fields = _fields(result.stdout)
    assert fields["psa"] == "ServiceNow at https://acme.service-now.com", fields
    assert fields["diagnosis"].startswith(
        "KB hudu at https://[redacted]@docs.example.com/?token=[redacted]; no change calendar"
    ), fields
    assert "control.example.com/j?asset={asset}" in fields["remote session"], fields


@pytest.mark.parametrize("command", [*COMMANDS, ("report",)])
def test_a_refused_url_is_named_without_its_password(
    tmp_path: Path, command: tuple[str, ...]
) -> None:
    env = _setup(
        tmp_path, config="kb: {source: hudu, url: 'ftp://bot:kb-pw-27c9@docs.example.com'}\n"
    )
    env["KB_API_KEY"] = "key"
    line = _one_line_naming(run_bot(*command, cwd=tmp_path, env=env), "kb.url")
    assert "kb-pw-27c9" not in line and "docs.example.com" in line, line


OTHER_TARGETS = (
    "P2: {respond: 2h, resolve: 1d}, P3: {respond: 8h, resolve: 3d}, P4: {respond: 1d, resolve: 5d}"
)


ZERO_LIMITS = [
    # Read by many as "no limit": every manager's answer was refused as too late.
    ("identity: {approval_ttl: 0s}\n", "identity.approval_ttl"),
    ("identity: {approval_ttl: 0}\n", "identity.approval_ttl"),
    # Every P1 missed its respond target the moment it was opened.
    (
        f"sla:\n  tiers:\n    standard: {{P1: {{respond: 0m, resolve: 4h}}, {OTHER_TARGETS}}}\n",
        "sla.tiers.standard.P1.respond",
    ),
]


@pytest.mark.parametrize(("config", "key"), ZERO_LIMITS)
@pytest.mark.parametrize("command", COMMANDS)
def test_a_zero_approval_window_or_sla_target_is_refused(
    tmp_path: Path, config: str, key: str, command: tuple[str, ...]
) -> None:
    env = _setup(tmp_path, config=config)
    run = first_for_real((config, key), ZERO_LIMITS)
    line = _one_line_naming(run(*command, cwd=tmp_path, env=env), key)
    assert "0 does not mean no limit" in line, line


@pytest.mark.parametrize("command", COMMANDS)
def test_a_section_whose_keys_are_all_commented_out_is_the_defaults(
    tmp_path: Path, command: tuple[str, ...]
) -> None:
    """SPEC's sample config with a section's keys commented out leaves the section's name
    with nothing under it (YAML null): every key is optional, yet start-up stopped with
    `slack: Input should be a valid dictionary or instance of SlackConfig`."""
    config = (
        "ticket_prefix: HD\n"
        "slack:\n  # incident_channel: C0INCIDENT\n"
        "teams:\n"
        "sla:\n  tiers:\n  # gold: {...}\n  clients:\n"
        "queues:\n"
        "escalation:\n  queues:\n"
        "identity:\n"
        "directory:\n  source: file\n  path: people.yaml\n  graph:\n  ldap:\n"
    )
    env = _setup(tmp_path, config=config)
    result = run_bot(*command, cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    if command[0] == "check-config":
        fields = _fields(result.stdout)
        assert fields["tickets"].startswith("numbered HD-1"), fields
        assert fields["sla tiers"].startswith("standard (default)"), fields
        assert fields["directory"].startswith("file "), fields


# -- DATABASE_URL query parameters as libpq writes them: `?sslmode=require` failed every
# -- connection with `TypeError: connect() got an unexpected keyword argument 'sslmode'`,
# -- reported as `cannot reach the database` (found by an operator-side review) ---------------


def test_a_libpq_sslmode_on_an_asyncpg_url_is_read_as_ssl(tmp_path: Path, pg_migrated: str) -> None:
    """PostgreSQL's docs, managed providers and `psql` habits write `sslmode=`; asyncpg names
    the same modes `ssl=`. Read as such (the log says so), on `migrate`, `check-config` and
    the processes alike: a database that answers is not reported unreachable."""
    from sqlalchemy.engine import make_url

    url = make_url(pg_migrated).update_query_dict({"sslmode": "disable"})
    env = {"DATABASE_URL": url.render_as_string(hide_password=False)}
    migrated = run_bot("migrate", cwd=tmp_path, env=env)
    assert migrated.returncode == 0, migrated.stderr
    assert "sslmode=disable read as ssl=disable" in migrated.stderr, migrated.stderr
    assert "nothing to do" in migrated.stderr, migrated.stderr
    checked = call_bot("check-config", cwd=tmp_path, env=env)
    assert checked.returncode == 0, checked.stderr
    database = _fields(checked.stdout)["database"]
    assert "?ssl=disable (reachable)" in database, database


LIBPQ_ONLY = [
    ("?application_name=helpdesk", "?application_name= is not a parameter asyncpg takes"),
    ("?connect_timeout=10", "?connect_timeout= is not a parameter asyncpg takes"),
    ("?sslmode=on", "sslmode=on is not one of disable, allow, prefer, require"),
    ("?ssl=true", "ssl=true is not one of disable, allow, prefer, require"),
    ("?sslmode=require&ssl=require", "give sslmode or ssl, not both"),
]


@pytest.mark.parametrize(("query", "problem"), LIBPQ_ONLY)
@pytest.mark.parametrize("command", COMMANDS)
def test_a_database_url_parameter_asyncpg_cannot_use_is_named(
    tmp_path: Path, query: str, problem: str, command: tuple[str, ...]
) -> None:
    """Refused before any connection, naming the parameter (never the password), for the
    driver-less platform URL too."""
    from tests.unit.test_cli import DB_PASSWORD

    for scheme in ("postgresql+asyncpg", "postgres"):
        url = f"{scheme}://u:{DB_PASSWORD}@127.0.0.1:1/helpdesk{query}"
        run = first_for_real((query, scheme), [(LIBPQ_ONLY[0][0], "postgresql+asyncpg")])
        result = run(*command, cwd=tmp_path, env={"DATABASE_URL": url})
        assert result.stderr.strip().splitlines()[-1].startswith("config error: DATABASE_URL: ")
        line = result.stderr.strip().splitlines()[-1]
        assert result.returncode == 2 and problem in line, result.stderr
        assert "Traceback" not in result.stderr and DB_PASSWORD not in result.stderr


# -- config errors in the config's own terms: pydantic's `Value error, ` prefix, its model
# -- class names and a regular expression were what an operator was shown, and an unknown
# -- tier did not say which tiers there are (found by an operator-side review) ----------------

PLAIN_WORDS = [
    (
        "slack: C0INCIDENT",
        "config.yaml: slack: expects keys under it, not 'C0INCIDENT' (known keys: "
        "incident_channel)",
    ),
    (
        "queues: {security: C0SECURITY}",
        "config.yaml: queues.security: expects keys under it, not 'C0SECURITY' (known keys: "
        "slack, teams)",
    ),
    (
        "sla: {clients: {acme: Gold}}",
        "config.yaml: sla: clients.acme: unknown tier 'Gold' (tiers: standard, gold)",
    ),
    (
        "sla: {default_tier: platinum}",
        "config.yaml: sla: default_tier 'platinum' is not one of the tiers (standard, gold)",
    ),
    (
        "psa: {tiers: {Gold: platinum}}",
        "config.yaml: psa.tiers.Gold: unknown tier 'platinum' (not in sla.tiers: standard, gold)",
    ),
    (
        "ticket_prefix: HD-",
        "config.yaml: ticket_prefix: 'HD-' is not a prefix: a letter, then up to 9 letters or "
        "digits (HD; the bot adds the '-' of HD-1)",
    ),
    (
        "tier1_scope: printer",
        "config.yaml: tier1_scope: expects a list ([a, b] or one '- item' per line), not 'printer'",
    ),
    (
        "sla: {clients: {1020: gold}}",
        "config.yaml: sla.clients.1020: expects text, not the number 1020: put it in quotes",
    ),
    (
        "queues: {security: {slack: 12345}}",
        "config.yaml: queues.security.slack: expects text, not the number 12345: put it in quotes",
    ),
    (
        "teams: {tenant_id: true}",
        "config.yaml: teams.tenant_id: expects text, not the boolean true: put it in quotes",
    ),
    (
        "csat: {delay: 5 minutes}",
        "config.yaml: csat.delay: '5 minutes' is not a duration like 45m, 1h30m, 2h or 1d",
    ),
]


@pytest.mark.parametrize(("config", "said"), PLAIN_WORDS)
@pytest.mark.parametrize("command", COMMANDS)
def test_a_config_error_is_said_in_the_configs_terms(
    tmp_path: Path, config: str, said: str, command: tuple[str, ...]
) -> None:
    env = _setup(tmp_path, config=config + "\n")
    run = first_for_real((config, said), PLAIN_WORDS)
    line = _one_line_naming(run(*command, cwd=tmp_path, env=env), "config.yaml")
    assert line.endswith(said), line
    for jargon in ("Value error", "instance of", "should match pattern", "(root)", "[key]"):
        assert jargon not in line, line


@pytest.mark.parametrize("command", COMMANDS)
def test_a_second_yaml_document_and_a_directory_file_not_in_utf8_are_said_whole(
    tmp_path: Path, command: tuple[str, ...]
) -> None:
    """Were `line 2, column 1: but found another document` (half of PyYAML's sentence) and
    the codec's `'utf-8' codec can't decode byte 0xe9 in position 28: invalid continuation
    byte` (the config file itself already said where and what to do)."""
    env = _setup(tmp_path, config=CONFIG + "---\nticket_prefix: XX\n")
    run = first_for_real(command, COMMANDS)
    line = _one_line_naming(run(*command, cwd=tmp_path, env=env), "config.yaml")
    assert line.endswith("expected a single document in the stream, but found another document"), (
        line
    )
    env = _setup(tmp_path)
    people = "- email: bo@example.com\n  name: Bo Ch\xe9n\n  technician: true\n"
    (tmp_path / "people.yaml").write_bytes(people.encode("latin-1"))
    line = _one_line_naming(run(*command, cwd=tmp_path, env=env), "people.yaml")
    assert line.endswith(
        "people.yaml: cannot read the directory file: it is not UTF-8 text (byte 37); "
        "save it as UTF-8"
    ), line


@pytest.mark.parametrize("command", COMMANDS)
def test_a_config_path_under_the_home_folder_is_read_as_directory_path_is(
    tmp_path: Path, command: tuple[str, ...]
) -> None:
    """`directory.path` and `changes.calendar` expand `~`; HELPDESK_CONFIG did not, and an
    env file's value meets no shell: `cannot read ~/config.yaml`."""
    env = _setup(tmp_path) | {"HELPDESK_CONFIG": "~/config.yaml", "HOME": str(tmp_path)}
    run = first_for_real(command, COMMANDS)
    result = run(*command, cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
