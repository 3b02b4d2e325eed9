"""PSA credentials from the environment (SPEC "System of record"); which ones each system needs."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from pydantic import SecretStr

from handlers.config import PsaConfig

# SPEC: the variables each system needs; a missing one stops start-up naming it.
REQUIRED = {
    "servicenow": ("PSA_USERNAME", "PSA_PASSWORD"),
    "freshservice": ("PSA_API_KEY",),
    "connectwise": ("PSA_CLIENT_ID", "PSA_COMPANY_ID", "PSA_PUBLIC_KEY", "PSA_PRIVATE_KEY"),
    "autotask": ("PSA_USERNAME", "PSA_PASSWORD", "PSA_CLIENT_ID"),
}
VARIABLES = (
    "PSA_USERNAME",
    "PSA_PASSWORD",
    "PSA_API_KEY",
    "PSA_CLIENT_ID",
    "PSA_COMPANY_ID",
    "PSA_PUBLIC_KEY",
    "PSA_PRIVATE_KEY",
)


class MissingVariable(Exception):
    """A variable the configured PSA needs is not set (its name is the message)."""


@dataclass(frozen=True)
class PsaSettings:
    """The system of record: `psa:` from the config plus its credentials (never in reprs)."""

    system: str
    url: str
    username: str = ""
    password: SecretStr = field(default=SecretStr(""), repr=False)
    api_key: SecretStr = field(default=SecretStr(""), repr=False)
    client_id: str = ""
    company_id: str = ""
    public_key: SecretStr = field(default=SecretStr(""), repr=False)
    private_key: SecretStr = field(default=SecretStr(""), repr=False)


def psa_settings(config: PsaConfig, env: Mapping[str, str]) -> PsaSettings | None:
    """The PSA to sync with, or None; MissingVariable names the first absent variable."""
    if config.system is None or config.url is None:
        return None
    values = {name: env.get(name, "").strip() for name in VARIABLES}
    for name in REQUIRED[config.system]:
        if not values[name]:
            raise MissingVariable(name)
    return PsaSettings(
        system=config.system,
        url=config.url,
        username=values["PSA_USERNAME"],
        password=SecretStr(values["PSA_PASSWORD"]),
        api_key=SecretStr(values["PSA_API_KEY"]),
        client_id=values["PSA_CLIENT_ID"],
        company_id=values["PSA_COMPANY_ID"],
        public_key=SecretStr(values["PSA_PUBLIC_KEY"]),
        private_key=SecretStr(values["PSA_PRIVATE_KEY"]),
    )
