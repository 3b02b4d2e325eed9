"""One set of people, served by both directory sources: a real slapd and the Graph fake.

- Ana (requester; manager Bo; desk and mobile numbers)
- Bo (manager; in Graph he has no chat ids: reached through Slack's users.lookupByEmail and
  on Teams by AAD object id)
- Tom (technician: in Tier 1, a group nested in the technician group)
- Vic (VIP: in Execs, a group nested in the VIP group; manager Bo)
- Cy (no manager; only a mobile / business phone)
- Pat (no technician: in Staff only)

The group DNs in the config are written in another case than the entries (DNs compare
case-insensitively).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tests.fakes.graph import FakeGraph
from tests.fakes.slack_api import FakeSlack
from tests.ldap_server import SUFFIX, Slapd

PEOPLE_OU = f"ou=People,{SUFFIX}"
GROUPS_OU = f"ou=Groups,{SUFFIX}"
SERVICES_OU = f"ou=Services,{SUFFIX}"
BOT_DN = f"cn=helpdesk-bot,{SERVICES_OU}"
BOT_PASSWORD = "ldap-bind-s3cret-for-tests"
GRAPH_SECRET = "graph-client-s3cret-for-tests"

VIP_GROUP_DN = f"cn=VIPs,{GROUPS_OU}"
TECH_GROUP_DN = f"cn=Helpdesk Techs,{GROUPS_OU}"
VIP_GROUP_ID = "0b6c1f7e-0000-4000-8000-00000000a1f0"
TECH_GROUP_ID = "0b6c1f7e-0000-4000-8000-00000000a7ec"

TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"


@dataclass(frozen=True)
class Who:
    """One person as both directories hold them."""

    key: str
    name: str
    slack: str
    teams: str
    aad: str
    phone: str | None = None  # LDAP telephoneNumber / Graph mobilePhone
    mobile: str | None = None  # LDAP mobile / Graph businessPhones[0]
    manager: str | None = None
    groups: tuple[str, ...] = field(default=())

    @property
    def email(self) -> str:
        return f"{self.key}@example.com"

    @property
    def dn(self) -> str:
        return f"cn={self.name},{PEOPLE_OU}"


def _aad(n: int) -> str:
    return f"5e1f0c2a-{n:04d}-4a6b-9c3d-2f7e8a9b0c1d"


ANA = Who("ana", "Ana Lopez", "U0ANA", "29:1ana", _aad(1), "+1 555 0100", "+1 555 0999", "bo",
          ("Staff",))  # fmt: skip
BO = Who("bo", "Bo Boss", "U0BO", "29:1bo", _aad(2), "+1 555 0200")
TOM = Who("tom", "Tom Tech", "UTECH", "29:1tech", _aad(3), groups=("Tier 1",))
VIC = Who("vic", "Vic VIP", "U0VIC", "29:1vic", _aad(4), manager="bo", groups=("Execs",))
CY = Who("cy", "Cy Solo", "U0CY", "29:1cy", _aad(5), mobile="+1 555 0199", groups=("Staff",))
PAT = Who("pat", "Pat Plain", "U0PAT", "29:1pat", _aad(6), groups=("Staff",))
EVERYONE = (ANA, BO, TOM, VIC, CY, PAT)
BY_KEY = {p.key: p for p in EVERYONE}
# group -> the groups it is itself a member of
NESTING = {"Tier 1": "Helpdesk Techs", "Execs": "VIPs", "Staff": None}


def _entry(dn: str, *lines: str) -> str:
    return "\n".join([f"dn: {dn}", *lines]) + "\n"


def ldif() -> str:
    """The whole tree, in an order ldapadd accepts (members before their groups)."""
    blocks = [
        _entry(
            SUFFIX,
            "objectClass: dcObject",
            "objectClass: organization",
            "o: Example",
            "dc: example",
        ),
        *(
            _entry(f"ou={ou},{SUFFIX}", "objectClass: organizationalUnit", f"ou: {ou}")
            for ou in ("People", "Groups", "Services")
        ),
        _entry(
            BOT_DN,
            "objectClass: person",
            "cn: helpdesk-bot",
            "sn: bot",
            f"userPassword: {BOT_PASSWORD}",
        ),
    ]
    for who in EVERYONE:
        lines = [
            "objectClass: inetOrgPerson",
            "objectClass: helpdeskChatIds",
            f"cn: {who.name}",
            f"sn: {who.name.split()[-1]}",
            f"displayName: {who.name}",
            f"mail: {who.email}",
            f"extensionAttribute1: {who.slack}",
            f"extensionAttribute2: {who.teams}",
        ]
        if who.phone:
            lines.append(f"telephoneNumber: {who.phone}")
        if who.mobile:
            lines.append(f"mobile: {who.mobile}")
        if who.manager:
            lines.append(f"manager: {BY_KEY[who.manager].dn}")
        blocks.append(_entry(who.dn, *lines))
    # Inner groups first, then the groups that contain them.
    for group in ("Tier 1", "Execs", "Staff", "Helpdesk Techs", "VIPs"):
        members = [p.dn for p in EVERYONE if group in p.groups]
        members += [f"cn={g},{GROUPS_OU}" for g, outer in NESTING.items() if outer == group]
        blocks.append(
            _entry(
                f"cn={group},{GROUPS_OU}",
                "objectClass: groupOfNames",
                f"cn: {group}",
                *(f"member: {m}" for m in members),
            )
        )
    return "\n".join(blocks)


def start_slapd(*, tls: bool = False, limits: str = "") -> Slapd:
    """A private slapd holding everyone (`limits`: slapd.conf `limits` or `access` lines)."""
    server = Slapd(tls=tls, limits=limits).start()
    try:
        server.load(ldif())
    except BaseException:
        server.cleanup()
        raise
    return server


def ldap_directory(server: Slapd, **overrides: Any) -> tuple[dict[str, Any], dict[str, str]]:
    """(`directory:` config, env) for the app on `server`."""
    ldap = {
        "url": server.url,
        "bind_dn": BOT_DN,
        "base_dn": SUFFIX.upper(),
        "vip_group_dn": VIP_GROUP_DN.upper(),
        "technician_group_dn": TECH_GROUP_DN.replace("Helpdesk Techs", "HELPDESK techs"),
        "slack_id_attribute": "extensionAttribute1",
        "teams_id_attribute": "extensionAttribute2",
        **overrides,
    }
    return {"source": "ldap", "ldap": ldap}, {"LDAP_BIND_PASSWORD": BOT_PASSWORD}


def fill_graph(fake: FakeGraph) -> None:
    """Everyone as Graph users, Bo as Ana's and Vic's manager, the nested groups."""
    fake.client_secret = GRAPH_SECRET
    for who in EVERYONE:
        fake.add_user(
            who.aad,
            who.email,
            displayName=who.name,
            mobilePhone=who.phone,
            businessPhones=[who.mobile] if who.mobile else [],
            manager=BY_KEY[who.manager].aad if who.manager else None,
        )
    group_ids = {"Helpdesk Techs": TECH_GROUP_ID, "VIPs": VIP_GROUP_ID}
    for group, outer in NESTING.items():
        members = [p.aad for p in EVERYONE if group in p.groups]
        fake.add_group(group, *members)
        if outer:
            fake.add_group(group_ids[outer], group)


def graph_directory(fake: FakeGraph, **overrides: Any) -> tuple[dict[str, Any], dict[str, str]]:
    """(`directory:` config, env) for the app on the Graph fake."""
    graph = {
        "tenant_id": fake.tenant,
        "client_id": fake.client_id,
        "base_url": fake.https_url,
        "authority_host": fake.https_url,
        "ca_bundle": fake.ca_file,
        "vip_group_id": VIP_GROUP_ID,
        "technician_group_id": TECH_GROUP_ID,
        **overrides,
    }
    return {"source": "graph", "graph": graph}, {"GRAPH_CLIENT_SECRET": GRAPH_SECRET}


def fill_slack(fake: FakeSlack) -> None:
    """Everyone in the Slack workspace, with their profile e-mail."""
    for who in EVERYONE:
        fake.add_user(who.slack, name=who.key, real_name=who.name, email=who.email)
