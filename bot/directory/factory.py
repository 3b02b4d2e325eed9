"""Pick and build the directory source named in the config (SPEC "Config file": directory)."""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlparse

from bot.directory.chat_links import ChatLinks
from bot.directory.file import load_file_directory
from handlers.config import DirectoryConfig, GraphDirectoryConfig, LdapDirectoryConfig
from handlers.directory import Directory, DirectoryError, EmptyDirectory

log = logging.getLogger(__name__)


def _check_url(key: str, url: str, schemes: tuple[str, ...]) -> None:
    parsed = urlparse(url)
    if parsed.scheme not in schemes or not parsed.hostname:
        allowed = " or ".join(f"{s}://" for s in schemes)
        raise DirectoryError(f"{key}: {url!r} is not a URL starting with {allowed}")


def _required(key: str, value: str | None, hint: str = "") -> str:
    if not value or not value.strip():
        raise DirectoryError(f"{key} is required for this directory source{hint}")
    return value.strip()


def _graph(
    config: GraphDirectoryConfig, env: Mapping[str, str], chat: ChatLinks | None
) -> Directory:
    from bot.directory.graph import GraphDirectory

    _check_url("directory.graph.base_url", config.base_url, ("http", "https"))
    # msal accepts only https authorities.
    _check_url("directory.graph.authority_host", config.authority_host, ("https",))
    # The bot adds /v1.0/ and the tenant itself: given here too, every call and the token's
    # scope would be wrong, and the directory only "unreachable" when people are looked up.
    version = urlparse(config.base_url).path.rstrip("/").rsplit("/", 1)[-1]
    if version.lower() in ("v1.0", "beta"):
        raise DirectoryError(
            f"directory.graph.base_url: {config.base_url!r} ends in /{version}, which the bot "
            "adds itself; give the host only (https://graph.microsoft.com)"
        )
    if urlparse(config.authority_host).path.strip("/"):
        raise DirectoryError(
            f"directory.graph.authority_host: {config.authority_host!r} has a path; give the "
            "host only (https://login.microsoftonline.com): the tenant is directory.graph.tenant_id"
        )
    tenant = _required(
        "directory.graph.tenant_id",
        config.tenant_id or env.get("MicrosoftAppTenantId"),
        " (or set MicrosoftAppTenantId)",
    )
    client_id = _required(
        "directory.graph.client_id",
        config.client_id or env.get("MicrosoftAppId"),
        " (or set MicrosoftAppId)",
    )
    secret = _required(
        "GRAPH_CLIENT_SECRET",
        # Read stripped like every variable: one of spaces is unset, not the secret.
        env.get("GRAPH_CLIENT_SECRET", "").strip() or env.get("MicrosoftAppPassword"),
        " (or set MicrosoftAppPassword)",
    )
    if config.ca_bundle and not Path(config.ca_bundle).is_file():
        raise DirectoryError(f"directory.graph.ca_bundle: {config.ca_bundle} is not a file")
    log.info("directory: Microsoft Graph at %s, tenant %s", config.base_url, tenant)
    return GraphDirectory(
        tenant_id=tenant,
        client_id=client_id,
        client_secret=secret,
        base_url=config.base_url,
        authority_host=config.authority_host,
        vip_group_id=config.vip_group_id,
        technician_group_id=config.technician_group_id,
        cache_ttl=config.cache_ttl.total_seconds(),
        ca_bundle=config.ca_bundle,
        chat=chat,
    )


def technicians_hint(source: str) -> str:
    """How to list technicians in this directory source (said when it lists none)."""
    key = {
        "graph": "directory.graph.technician_group_id",
        "ldap": "directory.ldap.technician_group_dn",
    }
    return f"set {key[source]}" if source in key else "set `technician: true` on your technicians"


def cleartext_bind(config: LdapDirectoryConfig) -> bool:
    """A simple bind with a password over plain ldap:// to another host (SPEC allows
    ldap://, and there is no StartTLS setting): anyone on the path reads the password."""
    parsed = urlparse(config.url or "")
    if parsed.scheme != "ldap" or not config.bind_dn:
        return False
    host = (parsed.hostname or "").lower()
    if host == "localhost":
        return False
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:
        return True


def _ldap(config: LdapDirectoryConfig, env: Mapping[str, str]) -> Directory:
    from bot.directory.ldap import LdapDirectory

    url = _required("directory.ldap.url", config.url)
    _check_url("directory.ldap.url", url, ("ldap", "ldaps"))
    base_dn = _required("directory.ldap.base_dn", config.base_dn)
    password = env.get("LDAP_BIND_PASSWORD") or None
    if config.bind_dn and not password:
        raise DirectoryError("LDAP_BIND_PASSWORD is required when directory.ldap.bind_dn is set")
    if config.ca_bundle and not Path(config.ca_bundle).is_file():
        raise DirectoryError(f"directory.ldap.ca_bundle: {config.ca_bundle} is not a file")
    log.info("directory: LDAP at %s under %s", url, base_dn)
    if cleartext_bind(config):
        log.warning(
            "directory: LDAP at %s: the bind password of %s crosses the network unencrypted "
            "over ldap://; use ldaps://",
            url,
            config.bind_dn,
        )
    return LdapDirectory.from_url(
        url,
        bind_dn=config.bind_dn,
        password=password if config.bind_dn else None,
        base_dn=base_dn,
        vip_group_dn=config.vip_group_dn,
        technician_group_dn=config.technician_group_dn,
        slack_id_attribute=config.slack_id_attribute,
        teams_id_attribute=config.teams_id_attribute,
        cache_ttl=config.cache_ttl.total_seconds(),
        ca_bundle=config.ca_bundle,
    )


async def create_directory(
    config: DirectoryConfig,
    *,
    config_dir: Path | None,
    env: Mapping[str, str],
    chat: ChatLinks | None = None,
) -> Directory:
    """Build the configured directory; raises DirectoryError naming the bad key or file.
    `chat` maps Slack and Teams users for a source that knows none (Graph)."""
    if config.source == "graph":
        return _graph(config.graph or GraphDirectoryConfig(), env, chat)
    if config.source == "ldap":
        if config.ldap is None:
            raise DirectoryError("directory.ldap is required when directory.source is ldap")
        return _ldap(config.ldap, env)
    return _file(config.path, config_dir)


def _file(path_setting: str | None, config_dir: Path | None) -> Directory:
    if not path_setting:
        log.info("directory: none configured (directory.path is not set); nobody is listed")
        return EmptyDirectory()
    path = Path(path_setting).expanduser()
    if not path.is_absolute() and config_dir is not None:
        path = config_dir / path
    return load_file_directory(path)
