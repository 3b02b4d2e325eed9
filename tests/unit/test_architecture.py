"""Keeps DESIGN's dependency rule and the schema/migration agreement true."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EDGE_ONLY = (
    "slack_bolt",
    "slack_sdk",
    "botbuilder",
    "botframework",
    "aiohttp",
    "apscheduler",
    "msal",
    "ldap3",
)


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


@pytest.mark.parametrize("package", ["handlers", "cards", "storage"])
def test_core_packages_import_no_platform_or_network_library(package: str) -> None:
    offenders = [
        f"{path.relative_to(ROOT)} imports {name}"
        for path in (ROOT / package).rglob("*.py")
        for name in _imports(path)
        if name.split(".")[0] in EDGE_ONLY
    ]
    assert offenders == []


@pytest.mark.parametrize("package", ["cards", "storage"])
def test_cards_and_storage_do_not_import_handlers_or_bot(package: str) -> None:
    offenders = [
        f"{path.relative_to(ROOT)} imports {name}"
        for path in (ROOT / package).rglob("*.py")
        for name in _imports(path)
        if name.split(".")[0] in ("handlers", "bot")
    ]
    assert offenders == []


def test_migrations_match_the_models(tmp_path: Path) -> None:
    """The Alembic history builds exactly the schema the models describe."""
    import asyncio

    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from storage import db
    from storage.migrate import upgrade
    from storage.models import Base

    async def diff() -> list[object]:
        engine = db.create_engine(f"sqlite+aiosqlite:///{tmp_path / 'm.db'}")
        await upgrade(engine)
        async with engine.connect() as conn:
            result = await conn.run_sync(
                lambda sync: compare_metadata(MigrationContext.configure(sync), Base.metadata)
            )
        await engine.dispose()
        return result

    assert asyncio.run(diff()) == []
