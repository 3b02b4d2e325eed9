"""The YAML config (SPEC "Config file"): every key optional, defaults built in.

Unknown keys are refused, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal, get_origin
from urllib.parse import urlparse

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo

from handlers.durations import parse_duration

PRIORITIES = ("P1", "P2", "P3", "P4")


# The longest duration the config takes: far beyond any delay or target, and short enough
# that now + it is a date (a longer one crashed start-up, or a closure, with OverflowError).
MAX_DURATION = timedelta(days=36500)


def _duration(value: Any) -> timedelta:
    if isinstance(value, timedelta):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        # A bare number is seconds: never negative (a string like -5m is refused too).
        if not 0 <= value <= MAX_DURATION.total_seconds():
            raise ValueError(
                f"{value!r} is not a duration: give seconds from 0 to "
                f"{int(MAX_DURATION.total_seconds())}, or 45m, 1h30m, 2h or 1d"
            )
        return timedelta(seconds=value)
    try:
        delta = parse_duration(value)
    except OverflowError:
        delta = MAX_DURATION + timedelta(seconds=1)
    if delta > MAX_DURATION:
        raise ValueError(f"{value!r} is longer than {MAX_DURATION.days}d")
    return delta


Duration = Annotated[timedelta, BeforeValidator(_duration)]


def _not_zero(value: timedelta) -> timedelta:
    if not value:
        raise ValueError(
            "0s is not a usable time here: give one like 15m (0 does not mean no limit)"
        )
    return value


# A time that means nothing at 0: an approval window no answer can meet, a target every
# ticket misses the moment it is opened.
PositiveDuration = Annotated[timedelta, BeforeValidator(_duration), AfterValidator(_not_zero)]


def _is_section(field: FieldInfo | None) -> bool:
    """Whether a config key holds keys of its own (a block of settings, or a mapping)."""
    kind = field.annotation if field is not None else None
    if isinstance(kind, type) and issubclass(kind, BaseModel):
        return True
    return get_origin(kind) is dict


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _empty_section_is_not_given(cls, data: Any) -> Any:
        """A section with nothing under it (YAML null: `slack:` or `sla.tiers:` whose keys
        are all commented out) is a section not given: its defaults. A single value left
        empty is not (`incident_channel: #incidents` is refused where it is read)."""
        if not isinstance(data, dict):
            return data
        return {
            key: value
            for key, value in data.items()
            if value is not None or not _is_section(cls.model_fields.get(str(key)))
        }


def _category_names(value: list[str]) -> list[str]:
    """Category names as the intake form stores them (trimmed, lower case), in order, once:
    `MFA` in the config gates the `mfa` a ticket is filed under."""
    return list(dict.fromkeys(v.strip().lower() for v in value if v.strip()))


# A list of categories in the config (identity gate, Tier 1 scope, Patch Tuesday).
Categories = Annotated[list[str], AfterValidator(_category_names)]


class SlaTarget(_Strict):
    respond: PositiveDuration
    resolve: PositiveDuration


Tier = dict[Literal["P1", "P2", "P3", "P4"], SlaTarget]


def _default_tiers() -> dict[str, Tier]:
    def tier(*pairs: tuple[str, str]) -> Tier:
        return {
            p: SlaTarget(respond=_duration(r), resolve=_duration(s))  # type: ignore[misc]
            for p, (r, s) in zip(PRIORITIES, pairs, strict=True)
        }

    return {
        "standard": tier(("30m", "4h"), ("2h", "1d"), ("8h", "3d"), ("1d", "5d")),
        "gold": tier(("15m", "2h"), ("1h", "8h"), ("4h", "2d"), ("8h", "3d")),
    }


class SlaConfig(_Strict):
    default_tier: str = "standard"
    tiers: dict[str, Tier] = Field(default_factory=_default_tiers)
    clients: dict[str, str] = Field(default_factory=dict)
    # The technician is warned this long before respond-by and resolve-by (0s: no warnings).
    warn_before: Duration = timedelta(minutes=15)

    @field_validator("tiers")
    @classmethod
    def _complete(cls, tiers: dict[str, Tier]) -> dict[str, Tier]:
        for name, tier in tiers.items():
            missing = [p for p in PRIORITIES if p not in tier]
            if missing:
                raise ValueError(f"tier {name!r} lacks {', '.join(missing)}")
        return tiers

    def model_post_init(self, _: Any) -> None:
        if self.default_tier not in self.tiers:
            raise ValueError(
                f"default_tier {self.default_tier!r} is not one of the tiers "
                f"({', '.join(self.tiers) or 'none given'})"
            )
        seen: dict[str, str] = {}
        for client, tier in self.clients.items():
            if tier not in self.tiers:
                raise ValueError(
                    f"clients.{client}: unknown tier {tier!r} (tiers: {', '.join(self.tiers)})"
                )
            first = seen.setdefault(client_key(client), client)
            if first != client and self.clients[first] != tier:
                raise ValueError(
                    f"clients: {first!r} and {client!r} name the same client (case and "
                    f"surrounding spaces do not count) with two tiers, "
                    f"{self.clients[first]!r} and {tier!r}: keep one"
                )

    def tier_for(self, client: str) -> str:
        """Contract tier of an MSP client (ignoring case and surrounding spaces on both
        sides), else the default tier."""
        lowered = {client_key(k): v for k, v in self.clients.items()}
        return lowered.get(client_key(client), self.default_tier)


def client_key(client: str) -> str:
    """How a client is matched against `sla.clients`: as typed, ignoring case (Unicode's
    caseless match: `STRASSE AG` is `Straße AG`) and spaces around it."""
    return client.strip().casefold()


def _place(value: Any) -> Any:
    """A channel or conversation id given, without the spaces around it. An empty one is
    refused: `incident_channel: #incidents` reads as no value at all (an unquoted `#` starts a
    YAML comment), and P1 notices then silently went nowhere."""
    if value is None or (isinstance(value, str) and not value.strip()):
        raise ValueError(
            'no value given (an unquoted # starts a YAML comment: write "#name" in quotes, or the '
            "id); leave the key out for none"
        )
    return value.strip() if isinstance(value, str) else value


# A Slack channel (id or `#name`) or a Teams conversation id, where the key is given.
Place = Annotated[str | None, BeforeValidator(_place)]


class SlackConfig(_Strict):
    incident_channel: Place = None


class TeamsConfig(_Strict):
    incident_conversation: Place = None
    service_url: str | None = None
    tenant_id: str | None = None

    @field_validator("service_url")
    @classmethod
    def _service_url(cls, value: str | None) -> str | None:
        return _http_url(value)


class IncidentConfig(_Strict):
    bridge_url: str | None = None

    @field_validator("bridge_url")
    @classmethod
    def _bridge_url(cls, value: str | None) -> str | None:
        # Put in every P1 notice as the link to join: a typo there shows only mid-incident.
        return _http_url(value)


class QueueTarget(_Strict):
    slack: Place = None
    teams: Place = None


class EscalationConfig(_Strict):
    # category -> queue
    queues: dict[str, str] = Field(default_factory=dict)

    @field_validator("queues")
    @classmethod
    def _categories(cls, value: dict[str, str]) -> dict[str, str]:
        queues: dict[str, str] = {}
        for category, queue in value.items():
            name = category.strip().lower()
            if not name:
                raise ValueError("a category name is empty")
            if name in queues and queues[name] != queue:
                raise ValueError(f"category {name!r} is given twice, with different queues")
            queues[name] = queue
        return queues

    # An open ticket outside `tier1_scope` not escalated this long after it was opened gets
    # one nudge to escalate early.
    nudge_after: Duration = timedelta(minutes=30)


class RemoteConfig(_Strict):
    """The remote-session tool (ScreenConnect, Splashtop, the RMM's own) cards link to."""

    # `{asset}` is replaced by the ticket's asset, percent-encoded as a query value.
    url_template: str | None = None

    @field_validator("url_template")
    @classmethod
    def _template(cls, template: str | None) -> str | None:
        if template is None:
            return None
        template = template.strip()
        parsed = urlparse(template.replace("{asset}", "x"))
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ValueError(f"{template!r} is not an http(s) URL")
        if "{asset}" not in template:
            raise ValueError(f"{template!r} has no {{asset}} to fill in the ticket's asset")
        # Slack refuses a button whose URL holds these (the whole ticket card with it).
        if bad := sorted({c for c in template if c.isspace() or ord(c) < 32 or c in '<>"\\'}):
            raise ValueError(
                f"{template!r} holds {', '.join(map(repr, bad))}: write it percent-encoded"
            )
        # The asset is what someone typed: it must not choose the site the button opens.
        if "{asset}" in urlparse(template).netloc:
            raise ValueError(
                f"{template!r} puts {{asset}} in the host: put it in the path or query "
                "(https://control.example.com/join?asset={asset})"
            )
        return template


class IdentityConfig(_Strict):
    approval_ttl: PositiveDuration = timedelta(minutes=15)
    categories: Categories = Field(default_factory=lambda: ["password-reset", "mfa", "account"])


class CsatConfig(_Strict):
    delay: Duration = timedelta(0)
    vip_followup_delay: Duration = timedelta(days=1)


class GraphDirectoryConfig(_Strict):
    base_url: str = "https://graph.microsoft.com"
    authority_host: str = "https://login.microsoftonline.com"
    tenant_id: str | None = None  # else env MicrosoftAppTenantId
    client_id: str | None = None  # else env MicrosoftAppId
    vip_group_id: str | None = None
    technician_group_id: str | None = None
    cache_ttl: Duration = timedelta(minutes=5)
    ca_bundle: str | None = None  # PEM file of extra trusted CAs (TLS-inspecting proxies)


class LdapDirectoryConfig(_Strict):
    url: str | None = None  # ldap://dc1.example.com or ldaps://...
    bind_dn: str | None = None  # password from env LDAP_BIND_PASSWORD; none = anonymous
    base_dn: str | None = None
    vip_group_dn: str | None = None
    technician_group_dn: str | None = None
    slack_id_attribute: str | None = None
    teams_id_attribute: str | None = None
    cache_ttl: Duration = timedelta(minutes=5)
    ca_bundle: str | None = None  # PEM file of the CA(s) that signed an ldaps:// certificate


class DirectoryConfig(_Strict):
    source: Literal["file", "graph", "ldap"] = "file"
    path: str | None = None
    graph: GraphDirectoryConfig | None = None
    ldap: LdapDirectoryConfig | None = None


PSA_SYSTEMS = ("servicenow", "freshservice", "connectwise", "autotask")


class PsaConfig(_Strict):
    """SPEC "System of record": where every ticket is also created (absent system = none)."""

    system: Literal["servicenow", "freshservice", "connectwise", "autotask"] | None = None
    url: str | None = None
    # PSA contract / agreement name -> SLA tier, when `sla.clients` does not name the client.
    tiers: dict[str, str] = Field(default_factory=dict)

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str | None) -> str | None:
        if url is None:
            return None
        parsed = urlparse(url.strip())
        if "@" in parsed.netloc:
            # Never repeated (it is a secret), nor sent or logged with the URL: the start-up
            # log and check-config name psa.url.
            raise ValueError(
                "carries a user name or password before '@': leave them out of the URL and "
                "set the PSA_* variables instead (PSA_USERNAME / PSA_PASSWORD, PSA_API_KEY, ...)"
            )
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ValueError(f"{url!r} is not an http(s) URL")
        return url.strip().rstrip("/")

    def model_post_init(self, _: Any) -> None:
        if self.system is not None and not self.url:
            raise ValueError(f"psa.url is required with psa.system {self.system}")

    @property
    def enabled(self) -> bool:
        return self.system is not None


def _http_url(value: str | None) -> str | None:
    if value is None:
        return None
    parsed = urlparse(value.strip())
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ValueError(f"{value!r} is not an http(s) URL")
    return value.strip()


class KbConfig(_Strict):
    """SPEC "Diagnosis help": the knowledge base searched beside resolved tickets."""

    source: Literal["hudu", "itglue", "confluence"] | None = None
    url: str | None = None
    # Confluence only: the space key searched. Accepted (and unused) with another source, as in
    # SPEC's example (`source: hudu` beside `space: IT`); check-config says it is not used.
    space: str | None = None

    @field_validator("url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        return _http_url(value)

    def model_post_init(self, _: Any) -> None:
        if self.source is not None and not self.url:
            raise ValueError(f"url: required with source {self.source}")


class ChangeEntry(_Strict):
    """One change from the config: it touches tickets of its clients or assets."""

    title: str = Field(min_length=1, max_length=300)
    start: datetime
    clients: list[str] = Field(default_factory=list)
    assets: list[str] = Field(default_factory=list)

    @field_validator("start")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("give the time zone, e.g. 2026-12-01T18:00:00Z")
        return value


def _default_patch_categories() -> list[str]:
    return ["windows", "m365", "office", "outlook", "exchange", "server"]


class ChangesConfig(_Strict):
    """The change calendar: Patch Tuesday, config entries and an iCalendar file or URL."""

    window: Duration = timedelta(days=3)
    patch_tuesday: bool = True
    patch_tuesday_categories: Categories = Field(default_factory=_default_patch_categories)
    calendar: str | None = None  # a file (relative to the config file) or an http(s) URL
    entries: list[ChangeEntry] = Field(default_factory=list)


class PatternsConfig(_Strict):
    # Every ticket with the same error counts, open or closed, the new one included (SPEC).
    repeat_threshold: int = Field(default=3, ge=2, le=1000)


_PREFIX = re.compile(r"[A-Za-z][A-Za-z0-9]{0,9}")


def _ticket_prefix(value: str) -> str:
    if not _PREFIX.fullmatch(value):
        raise ValueError(
            f"{value!r} is not a prefix: a letter, then up to 9 letters or digits (HD; the "
            "bot adds the '-' of HD-1)"
        )
    return value


class HelpdeskConfig(_Strict):
    ticket_prefix: Annotated[str, AfterValidator(_ticket_prefix)] = "HD"
    slack: SlackConfig = Field(default_factory=SlackConfig)
    teams: TeamsConfig = Field(default_factory=TeamsConfig)
    incident: IncidentConfig = Field(default_factory=IncidentConfig)
    sla: SlaConfig = Field(default_factory=SlaConfig)
    queues: dict[str, QueueTarget] = Field(default_factory=dict)
    escalation: EscalationConfig = Field(default_factory=EscalationConfig)
    # The categories Tier 1 handles (SPEC's list when absent); `[]` turns scope labels and
    # nudges off.
    tier1_scope: Categories = Field(
        default_factory=lambda: ["password-reset", "mfa", "printer", "outlook"]
    )
    remote: RemoteConfig = Field(default_factory=RemoteConfig)
    identity: IdentityConfig = Field(default_factory=IdentityConfig)
    csat: CsatConfig = Field(default_factory=CsatConfig)
    directory: DirectoryConfig = Field(default_factory=DirectoryConfig)
    psa: PsaConfig = Field(default_factory=PsaConfig)

    @model_validator(mode="after")
    def _psa_tiers_known(self) -> HelpdeskConfig:
        for contract, tier in self.psa.tiers.items():
            if tier not in self.sla.tiers:
                raise ValueError(
                    f"psa.tiers.{contract}: unknown tier {tier!r} (not in sla.tiers: "
                    f"{', '.join(self.sla.tiers)})"
                )
        return self

    kb: KbConfig = Field(default_factory=KbConfig)
    changes: ChangesConfig = Field(default_factory=ChangesConfig)
    patterns: PatternsConfig = Field(default_factory=PatternsConfig)


def unheard_queues(config: HelpdeskConfig) -> list[str]:
    """A warning for each `escalation.queues` category sent to a queue with no channel under
    `queues.<name>`: an escalation there is accepted and notifies nobody. (Here, not in
    handlers.escalation, so check-config says it without loading the cards and the ORM.)"""
    warnings = []
    for category, queue in sorted(config.escalation.queues.items()):
        target = config.queues.get(queue)
        if target is None or not (target.slack or target.teams):
            warnings.append(
                f"escalation.queues: category {category} goes to queue {queue}, which has no "
                f"channel under queues.{queue}, so its escalations notify nobody; add "
                f"queues.{queue}: {{slack: <channel id>, teams: <conversation id>}} or send "
                f"{category} to a queue that has one"
            )
    return warnings
