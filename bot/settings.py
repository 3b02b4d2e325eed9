"""Settings from the environment plus the YAML config; a bad value stops start-up (exit 2)."""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import UnionType
from typing import TYPE_CHECKING, Annotated, Any, Union, get_args, get_origin
from urllib.parse import urlparse

import yaml
from pydantic import BaseModel, SecretStr, ValidationError
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from bot.psa.settings import MissingVariable, PsaSettings, psa_settings
from bot.yaml_errors import describe_yaml_error, load_yaml
from handlers.config import HelpdeskConfig

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

log = logging.getLogger(__name__)

# botbuilder's ConfigurationBotFrameworkAuthentication reads these attribute names as-is.
BOT_FRAMEWORK_OVERRIDES = (
    "CHANNEL_SERVICE",
    "TO_BOT_FROM_CHANNEL_TOKEN_ISSUER",
    "TO_BOT_FROM_CHANNEL_OPENID_METADATA_URL",
    "TO_BOT_FROM_EMULATOR_OPENID_METADATA_URL",
    "TO_CHANNEL_FROM_BOT_LOGIN_URL",
    "TO_CHANNEL_FROM_BOT_OAUTH_SCOPE",
    "OAUTH_URL",
)
DEFAULT_LEASE = 20.0
DEFAULT_DATABASE = "sqlite+aiosqlite:///helpdesk.db"
DATABASE_DRIVERS = ("sqlite+aiosqlite", "postgresql+asyncpg")
# What hosting platforms (Heroku, Render, Railway, …) put in DATABASE_URL: no driver named.
PLATFORM_POSTGRES = ("postgres", "postgresql")
DATABASE_FORMS = "sqlite+aiosqlite:///FILE or postgresql+asyncpg://USER:PASSWORD@HOST:PORT/DATABASE"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
APP_TYPES = ("MultiTenant", "SingleTenant", "UserAssignedMSI")


class ConfigError(Exception):
    """A setting that cannot be used; the message names the key (or file) and the problem."""


# Read as written: a value in quotes is never right for these (ids, tokens, URLs, generated
# keys). Free-form passwords (PSA_PASSWORD, LDAP_BIND_PASSWORD) are left alone.
UNQUOTED = (
    "DATABASE_URL",
    "HOST",
    "PORT",
    "HELPDESK_CONFIG",
    "SLACK_BOT_TOKEN",
    "SLACK_SIGNING_SECRET",
    "SLACK_APP_TOKEN",
    "SLACK_API_URL",
    "MicrosoftAppId",
    "MicrosoftAppPassword",
    "MicrosoftAppType",
    "MicrosoftAppTenantId",
    "PAGERDUTY_ROUTING_KEY",
    "PAGERDUTY_EVENTS_URL",
    "OPSGENIE_API_KEY",
    "OPSGENIE_API_URL",
    "GRAPH_CLIENT_SECRET",
    "PSA_USERNAME",
    "PSA_API_KEY",
    "PSA_CLIENT_ID",
    "PSA_COMPANY_ID",
    "PSA_PUBLIC_KEY",
    "PSA_PRIVATE_KEY",
    "KB_API_KEY",
    "KB_USERNAME",
    "OUTBOX_LEASE_SECONDS",
    "LOG_FORMAT",
    "LOG_LEVEL",
    "METRICS_TOKEN",
    *BOT_FRAMEWORK_OVERRIDES,
)


def _refuse_quotes(env: Mapping[str, str]) -> None:
    """A value still in the quotes of the .env line it came from (`docker run --env-file` and
    Kubernetes keep them) would be sent as it is, quotes and all: Slack and Azure refuse it
    only once a request comes, far from the cause."""
    for key in UNQUOTED:
        value = env.get(key, "").strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            raise ConfigError(
                f"{key}: the value is in quotes ({value[0]}...{value[0]}); remove them "
                "(docker run --env-file and Kubernetes keep quotes as part of the value)"
            )


def _slack_token(env: Mapping[str, str], key: str) -> SecretStr | None:
    """A Slack token in the variable it belongs in: the bot token (`xoxb-`, `xoxe.xoxb-` when
    rotated) and the app-level token (`xapp-`) are easily swapped, and Slack's refusal only
    comes when it is used."""
    token = _secret(env, key)
    if token is None:
        return None
    value = token.get_secret_value()
    kinds = {"xoxb-": "a bot token", "xoxe.xoxb-": "a bot token", "xapp-": "an app-level token"}
    kinds |= {"xoxp-": "a user token", "xoxe.xoxp-": "a user token"}
    kind = next((name for prefix, name in kinds.items() if value.startswith(prefix)), None)
    want = "a bot token" if key == "SLACK_BOT_TOKEN" else "an app-level token"
    if kind == want:
        return token
    expected = "xoxb-" if key == "SLACK_BOT_TOKEN" else "xapp-"
    found = f"this is {kind}" if kind else "this does not look like a Slack token"
    hint = {
        ("SLACK_BOT_TOKEN", "an app-level token"): ": it belongs in SLACK_APP_TOKEN",
        ("SLACK_APP_TOKEN", "a bot token"): ": it belongs in SLACK_BOT_TOKEN",
    }.get((key, kind or ""), "")
    where = (
        "OAuth & Permissions -> Bot User OAuth Token"
        if key == "SLACK_BOT_TOKEN"
        else "Basic Information -> App-Level Tokens, with connections:write"
    )
    raise ConfigError(f"{key}: must be {want} ({expected}..., from {where}); {found}{hint}")


def _secret(env: Mapping[str, str], key: str) -> SecretStr | None:
    value = env.get(key, "").strip()
    return SecretStr(value) if value else None


def _url(env: Mapping[str, str], key: str, default: str | None) -> str | None:
    value = env.get(key, "").strip() or default
    if value is None:
        return None
    parsed = urlparse(value)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ConfigError(f"{key}: {value!r} is not an http(s) URL")
    return value


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _format_validation(error: ValidationError, source: str) -> str:
    errors = error.errors()
    # A mistyped key also leaves the key meant missing: the typo says why.
    first = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
    loc = first["loc"]
    if loc and loc[-1] == "[key]":  # a mapping's key, not its value: `sla.clients.5.[key]`
        loc = loc[:-1]
    where = ".".join(str(p) for p in loc) or "(root)"
    if first["type"] == "extra_forbidden":
        # pydantic says "Extra inputs are not permitted": a typo or a key at the wrong level.
        known = _known_keys(first["loc"][:-1])
        return f"{source}: {where}: unknown key" + (f" (known keys: {known})" if known else "")
    if not first["loc"]:  # a rule across sections (psa.tiers against sla.tiers) names its keys
        return f"{source}: {_problem(first)}"
    return f"{source}: {where}: {_problem(first)}"


def _problem(error: Any) -> str:
    """pydantic's words for an error, in the config's terms: without its `Value error, `
    prefix, and without the model class a section is read into (`Input should be a valid
    dictionary or instance of SlackConfig` for `slack: C0INCIDENT`)."""
    kind = error["type"]
    context = error.get("ctx") or {}
    if kind == "value_error" and "error" in context:
        return str(context["error"])
    if kind in ("model_type", "dict_type"):
        known = _known_keys(error["loc"])
        keys = f" (known keys: {known})" if known else ""
        return f"expects keys under it, not {_shown(error.get('input'))}{keys}"
    if kind == "list_type":
        return f"expects a list ([a, b] or one '- item' per line), not {_shown(error.get('input'))}"
    value = error.get("input")
    if kind == "string_type" and isinstance(value, int | float):  # bool is an int too
        # YAML reads 12345, 1.0 and true as a number or a boolean: an id, a name or a
        # version typed bare.
        read = (
            f"the boolean {str(value).lower()}"
            if isinstance(value, bool)
            else f"the number {value!r}"
        )
        return f"expects text, not {read}: put it in quotes"
    return str(error["msg"])


def _shown(value: Any) -> str:
    """A value as the operator wrote it, short."""
    text = repr(value)
    return text if len(text) <= 60 else text[:59] + "…"


def _known_keys(loc: tuple[int | str, ...]) -> str:
    """The keys the config allows where `loc` points (a mapping of models), else ""."""
    kind: Any = HelpdeskConfig
    parts = list(loc)
    while True:
        origin, args = get_origin(kind), get_args(kind)
        if origin is Annotated:
            kind = args[0]
        elif origin in (Union, UnionType):
            kinds = [a for a in args if a is not type(None)]
            if len(kinds) != 1:
                return ""
            kind = kinds[0]
        elif origin in (dict, list) and parts:
            kind, parts = args[-1], parts[1:]  # a value of the mapping or an item of the list
        elif isinstance(kind, type) and issubclass(kind, BaseModel):
            if not parts:
                return ", ".join(sorted(kind.model_fields))
            field = kind.model_fields.get(str(parts.pop(0)))
            if field is None:
                return ""
            kind = field.annotation
        else:
            return ""


def load_config(path: Path) -> HelpdeskConfig:
    """Read and validate the YAML config; ConfigError names the file and the key."""
    try:
        raw: Any = load_yaml(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"HELPDESK_CONFIG: cannot read {path}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"HELPDESK_CONFIG: {path} is not UTF-8 text (byte {exc.start}); save it as UTF-8"
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError(
            f"HELPDESK_CONFIG: {path} is not valid YAML: {describe_yaml_error(exc)}"
        ) from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"HELPDESK_CONFIG: {path} must be a mapping of keys")
    try:
        return HelpdeskConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_format_validation(exc, str(path))) from exc


@dataclass(frozen=True)
class Settings:
    database_url: str = DEFAULT_DATABASE
    # Said once logging is set up: how DATABASE_URL was read, when it was not taken as written.
    database_note: str | None = None
    host: str = "127.0.0.1"
    port: int = 3978
    config_path: Path | None = None
    config: HelpdeskConfig = field(default_factory=HelpdeskConfig)
    slack_bot_token: SecretStr | None = None
    slack_signing_secret: SecretStr | None = None
    slack_app_token: SecretStr | None = None
    slack_api_url: str = "https://slack.com/api/"
    app_id: str = ""
    app_password: SecretStr | None = None
    app_type: str = "MultiTenant"
    app_tenant_id: str = ""
    bot_framework_overrides: dict[str, str] = field(default_factory=dict)
    pagerduty_routing_key: SecretStr | None = None
    pagerduty_events_url: str = "https://events.pagerduty.com/v2/enqueue"
    opsgenie_api_key: SecretStr | None = None
    opsgenie_api_url: str = "https://api.opsgenie.com"
    log_format: str = "text"
    log_level: str = "INFO"
    outbox_lease_seconds: float = DEFAULT_LEASE
    psa: PsaSettings | None = None
    kb_api_key: SecretStr | None = None
    kb_username: str | None = None
    # GET /metrics asks for `Authorization: Bearer <this>` when set (the port is the one Slack
    # and Teams reach, so it is often public).
    metrics_token: SecretStr | None = None
    env: Mapping[str, str] = field(default_factory=dict, repr=False)

    @property
    def slack_enabled(self) -> bool:
        return bool(self.slack_bot_token and (self.slack_signing_secret or self.slack_app_token))

    @property
    def chat_platforms(self) -> tuple[str, ...]:
        """Where people can be sent direct messages: Slack when it is enabled (without its token
        the bot can never write there); Teams always, since its endpoint is always served (the
        Emulator mode included, whose conversations the bot may still write to)."""
        return ("slack", "teams") if self.slack_enabled else ("teams",)

    @property
    def teams_emulator(self) -> bool:
        """No app id: Bot Framework auth is off, so only loopback callers are served."""
        return not self.app_id

    @property
    def config_dir(self) -> Path | None:
        return self.config_path.parent if self.config_path else None


LEASE_ENV = "OUTBOX_LEASE_SECONDS"


def lease_from_env(env: Mapping[str, str]) -> float:
    """`OUTBOX_LEASE_SECONDS` (default 20): how long a claimed row stays with a worker that
    stopped renewing it (a live worker renews its leases every quarter of this)."""
    raw = env.get(LEASE_ENV, "").strip()
    if not raw:
        return DEFAULT_LEASE
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{LEASE_ENV}: {raw!r} is not a number of seconds") from None
    if not 1 <= value <= 3600:
        raise ConfigError(f"{LEASE_ENV}: {raw!r} must be between 1 and 3600 seconds")
    return value


def _kb_credentials(
    config: HelpdeskConfig, env: Mapping[str, str]
) -> tuple[SecretStr | None, str | None]:
    """KB_API_KEY (and KB_USERNAME for Confluence), required by `kb.source`."""
    source = config.kb.source
    key = _secret(env, "KB_API_KEY")
    username = env.get("KB_USERNAME", "").strip() or None
    if source is not None and key is None:
        raise ConfigError(f"KB_API_KEY: required with kb.source {source}")
    if source == "confluence" and username is None:
        raise ConfigError("KB_USERNAME: required with kb.source confluence (the account e-mail)")
    return key, username


def _check_calendar(config: HelpdeskConfig, config_dir: Path | None) -> None:
    """A calendar file must exist (a URL is fetched after start-up; an outage only warns)."""
    calendar = config.changes.calendar
    if not calendar:
        return
    parsed = urlparse(calendar)
    if parsed.scheme in ("http", "https"):
        if not parsed.netloc:
            raise ConfigError(f"changes.calendar: {calendar!r} is not an http(s) URL")
        return
    if parsed.scheme and len(parsed.scheme) > 1:
        raise ConfigError(f"changes.calendar: {calendar!r} is neither a file nor an http(s) URL")
    path = calendar_path(calendar, config_dir)
    if not path.is_file():
        raise ConfigError(f"changes.calendar: cannot read {path}")


def calendar_path(calendar: str, config_dir: Path | None) -> Path:
    """A calendar file, relative to the config file."""
    path = Path(calendar).expanduser()
    return path if path.is_absolute() or config_dir is None else config_dir / path


def _log_level(env: Mapping[str, str]) -> str:
    """`LOG_LEVEL` by name, any case (WARN is WARNING); numbers are refused."""
    raw = env.get("LOG_LEVEL", "").strip()
    if not raw:
        return "INFO"
    name = raw.upper()
    if name == "WARN":
        return "WARNING"
    if name not in LOG_LEVELS:
        raise ConfigError(f"LOG_LEVEL: {raw[:40]!r} is not one of {', '.join(LOG_LEVELS)}")
    return name


def hide_password(text: str, url: URL | None) -> str:
    """`text` with the URL's password masked (error messages may quote the URL)."""
    password = url.password if url is not None else None
    return text.replace(str(password), "***") if password else text


def database_url(env: Mapping[str, str]) -> tuple[str, str | None]:
    """`DATABASE_URL` checked (a driver this release has, a port number), and a note when it
    was read otherwise than written: a hosting platform's `postgres://` or `postgresql://`
    (no driver; psycopg2 is not installed) is taken as `postgresql+asyncpg://`, its
    `sslmode` as asyncpg's `ssl`. The password never appears in a message."""
    raw = env.get("DATABASE_URL", "").strip()
    if not raw:
        return DEFAULT_DATABASE, None
    # The parser's own messages may quote the URL, password and all: never shown.
    try:
        url = make_url(raw)
    except ArgumentError:
        raise ConfigError(f"DATABASE_URL: not a database URL (use {DATABASE_FORMS})") from None
    except ValueError:  # the only number in a URL
        raise ConfigError("DATABASE_URL: the port is not a number") from None
    port = url.port
    if port is not None and not 0 < port < 65536:
        raise ConfigError(f"DATABASE_URL: port {port} is not a TCP port number")
    notes = []
    if url.drivername in PLATFORM_POSTGRES:
        notes.append(
            f"{url.drivername}:// read as postgresql+asyncpg:// "
            "(asyncpg is the PostgreSQL driver installed)"
        )
        url = url.set(drivername="postgresql+asyncpg")
    if url.drivername not in DATABASE_DRIVERS:
        raise ConfigError(
            f"DATABASE_URL: {url.drivername}:// is not supported (use {DATABASE_FORMS})"
        )
    if url.drivername == "postgresql+asyncpg":
        url, ssl_note = _asyncpg_query(url)
        notes += [ssl_note] if ssl_note else []
    if not notes:
        return raw, None
    return url.render_as_string(hide_password=False), "DATABASE_URL: " + "; ".join(notes)


# libpq's (and asyncpg's) TLS modes: `sslmode=` in a libpq URL, `ssl=` for asyncpg.
SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
# Query parameters SQLAlchemy's asyncpg dialect reads itself (the rest go to asyncpg.connect).
SQLALCHEMY_ASYNCPG_PARAMETERS = frozenset(
    {"prepared_statement_cache_size", "prepared_statement_name_func", "async_fallback"}
)


def _asyncpg_query(url: URL) -> tuple[URL, str | None]:
    """The URL's query as asyncpg takes it: libpq's `sslmode` (what PostgreSQL's own docs and
    most providers write) read as asyncpg's `ssl`, which takes the same mode names, with a
    note saying so; a parameter asyncpg does not take (libpq's `application_name`,
    `connect_timeout`, `options`) refused naming it. Both used to fail every connection with
    `TypeError: connect() got an unexpected keyword argument`, reported as a database that
    cannot be reached."""
    import inspect

    import asyncpg

    note = None
    if "sslmode" in url.query:
        if "ssl" in url.query:
            raise ConfigError("DATABASE_URL: give sslmode or ssl, not both")
        written = url.query["sslmode"]
        url = url.difference_update_query(["sslmode"]).update_query_dict({"ssl": written})
        note = f"sslmode={written} read as ssl={written} (asyncpg's name for it)"
    mode = url.query.get("ssl")
    if mode is not None and mode not in SSL_MODES:
        name = "sslmode" if note else "ssl"
        raise ConfigError(f"DATABASE_URL: {name}={mode} is not one of {', '.join(SSL_MODES)}")
    taken = set(inspect.signature(asyncpg.connect).parameters) | SQLALCHEMY_ASYNCPG_PARAMETERS
    unknown = sorted(set(url.query) - taken)
    if unknown:
        raise ConfigError(
            f"DATABASE_URL: ?{unknown[0]}= is not a parameter asyncpg takes (libpq's own "
            "parameters other than sslmode are not read); leave it out"
        )
    return url, note


def engine_for(url: str) -> AsyncEngine:
    """The engine for a checked `DATABASE_URL`; ConfigError (no password) if it cannot be
    built after all."""
    from storage import db

    try:
        return db.create_engine(url)
    except Exception as exc:
        try:
            parsed: URL | None = make_url(url)
        except Exception:
            parsed = None
        raise ConfigError(
            f"DATABASE_URL: cannot be used ({type(exc).__name__}: "
            f"{hide_password(str(exc), parsed)[:200]})"
        ) from None


def load_settings(env: Mapping[str, str]) -> Settings:
    """Build Settings from `env` (usually os.environ); raises ConfigError on a bad value."""
    _refuse_quotes(env)
    port_text = env.get("PORT", "3978").strip() or "3978"
    # ASCII digits only: str.isdigit() also takes '²', which int() refuses.
    digits = port_text.isascii() and port_text.isdigit() and len(port_text) <= 5
    if not digits or not 0 < int(port_text) < 65536:
        raise ConfigError(f"PORT: {port_text!r} is not a TCP port number")
    # Stripped like every other variable: a .env line's trailing space is not part of a path.
    config_text = env.get("HELPDESK_CONFIG", "").strip()
    # `~` as in directory.path and changes.calendar (an env file's value meets no shell).
    config_path = Path(config_text).expanduser() if config_text else None
    config = load_config(config_path) if config_path else HelpdeskConfig()
    kb_api_key, kb_username = _kb_credentials(config, env)
    _check_calendar(config, config_path.parent if config_path else None)
    app_type = env.get("MicrosoftAppType", "").strip() or "MultiTenant"
    if app_type not in APP_TYPES:
        raise ConfigError(f"MicrosoftAppType: {app_type!r} is not one of {', '.join(APP_TYPES)}")
    app_id = env.get("MicrosoftAppId", "").strip()
    tenant = env.get("MicrosoftAppTenantId", "").strip()
    # botbuilder's credential factory needs both for these two types (and raises its own
    # traceback as the app starts); an empty id is Emulator mode, which they do not support.
    if app_type != "MultiTenant" and not app_id:
        raise ConfigError(f"MicrosoftAppId: required when MicrosoftAppType is {app_type}")
    if app_type != "MultiTenant" and not tenant:
        raise ConfigError(f"MicrosoftAppTenantId: required when MicrosoftAppType is {app_type}")
    app_password = _secret(env, "MicrosoftAppPassword")
    if app_id and app_type != "UserAssignedMSI" and app_password is None:
        raise ConfigError("MicrosoftAppPassword: required when MicrosoftAppId is set")
    overrides = {}
    for key in BOT_FRAMEWORK_OVERRIDES:
        if env.get(key, "").strip():
            overrides[key] = env[key].strip()
            if key.endswith("_URL"):
                _url(env, key, None)
    bot_token = _slack_token(env, "SLACK_BOT_TOKEN")
    signing = _secret(env, "SLACK_SIGNING_SECRET")
    app_token = _slack_token(env, "SLACK_APP_TOKEN")
    if signing and not bot_token:
        raise ConfigError("SLACK_BOT_TOKEN: required when SLACK_SIGNING_SECRET is set")
    if app_token and not bot_token:
        raise ConfigError("SLACK_BOT_TOKEN: required when SLACK_APP_TOKEN is set")
    if bot_token and not (signing or app_token):
        # Else Slack is silently off (a worker given only the token delivers nothing to it).
        raise ConfigError(
            "SLACK_SIGNING_SECRET: required when SLACK_BOT_TOKEN is set (HTTP mode), or set "
            "SLACK_APP_TOKEN for Socket Mode"
        )
    log_format = env.get("LOG_FORMAT", "text").strip().lower() or "text"
    if log_format not in ("text", "json"):
        raise ConfigError(f"LOG_FORMAT: {log_format!r} is not text or json")
    log_level = _log_level(env)
    database, database_note = database_url(env)
    api_url = _url(env, "SLACK_API_URL", "https://slack.com/api/") or ""
    try:
        psa = psa_settings(config.psa, env)
    except MissingVariable as exc:
        raise ConfigError(f"{exc}: required when psa.system is {config.psa.system}") from None
    return Settings(
        database_url=database,
        database_note=database_note,
        host=env.get("HOST", "").strip() or "127.0.0.1",
        port=int(port_text),
        config_path=config_path,
        config=config,
        slack_bot_token=bot_token,
        slack_signing_secret=signing,
        slack_app_token=app_token,
        slack_api_url=api_url if api_url.endswith("/") else api_url + "/",
        app_id=app_id,
        app_password=app_password,
        app_type=app_type,
        app_tenant_id=tenant,
        bot_framework_overrides=overrides,
        pagerduty_routing_key=_secret(env, "PAGERDUTY_ROUTING_KEY"),
        pagerduty_events_url=_url(
            env, "PAGERDUTY_EVENTS_URL", "https://events.pagerduty.com/v2/enqueue"
        )
        or "",
        opsgenie_api_key=_secret(env, "OPSGENIE_API_KEY"),
        opsgenie_api_url=_url(env, "OPSGENIE_API_URL", "https://api.opsgenie.com") or "",
        log_format=log_format,
        outbox_lease_seconds=lease_from_env(env),
        log_level=log_level,
        psa=psa,
        kb_api_key=kb_api_key,
        kb_username=kb_username,
        metrics_token=_secret(env, "METRICS_TOKEN"),
        env=dict(env),
    )
