"""`python -m bot teams-package`: fill in the Teams app manifest and zip it with its icons.

The result is the file to upload in Teams ("Apps" -> "Manage your apps" -> "Upload an app") or
in the Teams admin center. Needs no database and no settings: only the template and icons in
`teams/` (next to the source tree, or in the working directory).
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import re
import sys
import uuid
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

TEMPLATE = "manifest.template.json"
ICONS = ("color.png", "outline.png")
# Fixed member times make the zip reproducible: same inputs, same bytes.
ZIP_TIME = (2024, 1, 1, 0, 0, 0)
PLACEHOLDER = re.compile(r"\$\{\{([A-Z_]+)\}\}")
SEMVER = re.compile(r"^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)$")
DOMAIN = re.compile(r"^(\*\.)?([A-Za-z0-9-]+\.)*[A-Za-z0-9-]+(:[0-9]{1,5})?$")
NAME_MAX = 30  # Teams schema: name.short


class PackageError(Exception):
    """A bad argument or a missing asset; the message says which and why."""


def default_assets_dir() -> Path:
    """`teams/` beside the source tree, else `./teams` (an installed package has no assets)."""
    candidates = [Path(__file__).resolve().parents[2] / "teams", Path.cwd() / "teams"]
    for candidate in candidates:
        if (candidate / TEMPLATE).is_file():
            return candidate
    return candidates[0]


def _guid(option: str, value: str) -> str:
    try:
        return str(uuid.UUID(value.strip()))
    except ValueError:
        raise PackageError(
            f"{option}: {value!r} is not a GUID (the Azure Bot's Microsoft App ID looks like "
            "00000000-0000-0000-0000-000000000000)"
        ) from None


def _https(option: str, value: str) -> str:
    if not re.match(r"^https://[^\s/]+", value):
        raise PackageError(f"{option}: {value!r} must be an https:// URL")
    return value


def _substitute(value: Any, values: dict[str, str]) -> Any:
    """Replace ${{KEY}} in every string of the parsed template (JSON escaping stays intact)."""
    if isinstance(value, dict):
        return {key: _substitute(item, values) for key, item in value.items()}
    if isinstance(value, list):
        return [_substitute(item, values) for item in value]
    if isinstance(value, str):

        def one(match: re.Match[str]) -> str:
            key = match.group(1)
            if key not in values:
                raise PackageError(f"{TEMPLATE}: unknown placeholder ${{{{{key}}}}}")
            return values[key]

        return PLACEHOLDER.sub(one, value)
    return value


def build_manifest(
    template: dict[str, Any],
    *,
    app_id: str,
    teams_app_id: str | None = None,
    name: str = "Helpdesk",
    domain: str | None = None,
    version: str = "1.0.0",
    developer: str | None = None,
    website_url: str | None = None,
    privacy_url: str | None = None,
    terms_url: str | None = None,
) -> dict[str, Any]:
    """The template with ids, name, domain and developer links filled in and checked."""
    bot_id = _guid("--app-id", app_id)
    package_id = _guid("--teams-app-id", teams_app_id) if teams_app_id else bot_id
    name = name.strip()
    if not name or len(name) > NAME_MAX:
        raise PackageError(f"--name: {name!r} must be 1 to {NAME_MAX} characters")
    if not SEMVER.match(version):
        raise PackageError(f"--app-version: {version!r} is not MAJOR.MINOR.PATCH")
    host = (domain or "").strip().lower()
    if host and not DOMAIN.match(host):
        raise PackageError(
            f"--domain: {domain!r} is not a host name (give bot.example.com, without "
            "https:// or a path)"
        )
    site = website_url or (f"https://{host}/" if host else "https://www.example.com/")
    values = {
        "TEAMS_APP_ID": package_id,
        "BOT_ID": bot_id,
        "NAME": name,
        "DOMAIN": host,
        "VERSION": version,
        "DEVELOPER_NAME": (developer or name).strip()[:32],
        "WEBSITE_URL": _https("--website-url", site),
        "PRIVACY_URL": _https("--privacy-url", privacy_url or site),
        "TERMS_URL": _https("--terms-url", terms_url or site),
    }
    manifest: dict[str, Any] = _substitute(template, values)
    manifest["validDomains"] = [d for d in manifest.get("validDomains", []) if d]
    return manifest


def write_package(
    out: Path, manifest: dict[str, Any], *, assets: Path, icons: Sequence[str] = ICONS
) -> Path:
    """Write manifest.json and the icons at the root of the zip Teams expects."""
    members: list[tuple[str, bytes]] = [
        ("manifest.json", (json.dumps(manifest, indent=2) + "\n").encode("utf-8"))
    ]
    for icon in icons:
        try:
            members.append((icon, (assets / icon).read_bytes()))
        except OSError as exc:
            raise PackageError(f"{assets / icon}: cannot read the icon: {exc.strerror}") from None
    # Written beside its name, then moved there: a package that could not be written (a
    # folder of that name, no permission, a full disk) is one line naming --out, and leaves
    # no half zip behind nor an earlier package of that name broken.
    temporary = out.with_name(f".{out.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        if out.is_dir():
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR))
        out.parent.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(temporary, "x", compression=zipfile.ZIP_DEFLATED) as archive:
            for member, data in members:
                info = zipfile.ZipInfo(member, date_time=ZIP_TIME)
                info.compress_type = zipfile.ZIP_DEFLATED
                info.external_attr = 0o644 << 16
                archive.writestr(info, data)
        os.replace(temporary, out)
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        raise PackageError(f"--out: cannot write {out} ({exc.strerror or exc})") from None
    return out


def load_template(assets: Path) -> dict[str, Any]:
    """The manifest template from the assets folder."""
    path = assets / TEMPLATE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise PackageError(
            f"{path}: cannot read the manifest template ({exc.strerror}); run from a source "
            "checkout or pass --assets DIR"
        ) from None
    except ValueError as exc:
        raise PackageError(f"{path}: not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise PackageError(f"{path}: expected a JSON object")
    return data


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `python -m bot teams-package`."""
    parser.add_argument(
        "--app-id", required=True, help="the Azure Bot's Microsoft App ID (MicrosoftAppId), a GUID"
    )
    parser.add_argument("--out", required=True, type=Path, help="zip file to write")
    parser.add_argument(
        "--name",
        default="Helpdesk",
        help=f"app and bot name shown in Teams (at most {NAME_MAX} characters)",
    )
    parser.add_argument(
        "--domain", help="host name the bot is served from (validDomains and default links)"
    )
    parser.add_argument(
        "--teams-app-id", help="GUID of the Teams app itself (default: the same as --app-id)"
    )
    parser.add_argument(
        "--app-version",
        default="1.0.0",
        help="app version; raise it for every re-upload (default 1.0.0)",
    )
    parser.add_argument("--developer", help="developer name shown in Teams (default: --name)")
    parser.add_argument("--website-url", help="https link (default: https://DOMAIN/)")
    parser.add_argument("--privacy-url", help="https link (default: the website link)")
    parser.add_argument("--terms-url", help="https link (default: the website link)")
    parser.add_argument(
        "--assets",
        type=Path,
        help="folder with manifest.template.json and the icons (default: teams/)",
    )


def run(args: argparse.Namespace) -> int:
    """Build the package; errors go to stderr with exit code 2."""
    assets: Path = args.assets or default_assets_dir()
    try:
        manifest = build_manifest(
            load_template(assets),
            app_id=args.app_id,
            teams_app_id=args.teams_app_id,
            name=args.name,
            domain=args.domain,
            version=args.app_version,
            developer=args.developer,
            website_url=args.website_url,
            privacy_url=args.privacy_url,
            terms_url=args.terms_url,
        )
        out = write_package(args.out, manifest, assets=assets)
    except PackageError as exc:
        print(f"teams-package: {exc}", file=sys.stderr)
        return 2
    print(
        f"wrote {out} (Teams app {manifest['id']}, bot {manifest['bots'][0]['botId']}, "
        f"version {manifest['version']})"
    )
    if not args.domain and not args.website_url:
        print(
            "note: no --domain or --website-url given: the developer links point at "
            "https://www.example.com/",
            file=sys.stderr,
        )
    return 0
