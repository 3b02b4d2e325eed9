"""Keeps DESIGN's dependency rule and the schema/migration agreement true."""

from __future__ import annotations

import ast
import sys
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


# A data migration that brings stored signatures in step with what new tickets get must read
# them with the same rules: pure functions (re, hashlib), nothing else of the core.
MIGRATIONS_MAY_IMPORT = {"handlers.diagnosis.rules"}


@pytest.mark.parametrize("package", ["cards", "storage"])
def test_cards_and_storage_do_not_import_handlers_or_bot(package: str) -> None:
    migrations = ROOT / "storage" / "migrations" / "versions"
    offenders = [
        f"{path.relative_to(ROOT)} imports {name}"
        for path in (ROOT / package).rglob("*.py")
        for name in _imports(path)
        if name.split(".")[0] in ("handlers", "bot")
        and not (path.parent == migrations and name in MIGRATIONS_MAY_IMPORT)
    ]
    assert offenders == []


def test_the_rules_migrations_may_import_stay_pure() -> None:
    """What a migration may import from the core imports nothing but the standard library."""
    for module in MIGRATIONS_MAY_IMPORT:
        path = ROOT / (module.replace(".", "/") + ".py")
        assert all(name.split(".")[0] in sys.stdlib_module_names for name in _imports(path)), module


def test_the_core_does_not_import_the_edge() -> None:
    offenders = [
        f"{path.relative_to(ROOT)} imports {name}"
        for path in (ROOT / "handlers").rglob("*.py")
        for name in _imports(path)
        if name.split(".")[0] == "bot"
    ]
    assert offenders == []


def _domains() -> list[str]:
    """The core's domain packages: handlers/<domain>/ with an __init__.py."""
    return sorted(p.parent.name for p in (ROOT / "handlers").glob("*/__init__.py"))


def _public_names(domain: str) -> set[str]:
    tree = ast.parse((ROOT / "handlers" / domain / "__init__.py").read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets
        ):
            return set(ast.literal_eval(node.value))
    return set()


def _imported_names(path: Path) -> list[tuple[str, str]]:
    """(module, name) for every `from module import name` (and (module, "") for `import`)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: list[tuple[str, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found += [(node.module, alias.name) for alias in node.names]
        elif isinstance(node, ast.Import):
            found += [(alias.name, "") for alias in node.names]
    return found


def test_every_domain_declares_its_public_names() -> None:
    domains = _domains()
    assert {"tickets", "identity", "incidents", "closure", "csat", "escalation"} <= set(domains)
    for domain in domains:
        assert (ROOT / "handlers" / domain / "service.py").is_file() or domain == "sla", domain
        assert _public_names(domain), f"handlers/{domain}/__init__.py has no __all__"


def test_domains_use_each_other_only_through_public_names() -> None:
    """Inside handlers/<domain>/ anything goes; from anywhere else (another domain, the shared
    core modules, the edge) a domain is used as `from handlers.<domain> import <public name>`
    or `from handlers import <domain>`, never through its modules."""
    domains = set(_domains())
    public = {d: _public_names(d) for d in domains}
    offenders = []
    for package in ("handlers", "bot"):
        for path in (ROOT / package).rglob("*.py"):
            relative = path.relative_to(ROOT)
            own = relative.parts[1] if package == "handlers" and len(relative.parts) > 2 else None
            for module, name in _imported_names(path):
                parts = module.split(".")
                if parts[0] != "handlers" or len(parts) < 2 or parts[1] not in domains:
                    continue
                domain = parts[1]
                if domain == own:
                    continue
                if len(parts) > 2:
                    offenders.append(f"{relative} imports {module} (a module of {domain})")
                elif name and name not in public[domain]:
                    offenders.append(f"{relative} imports {name} from {module} (not public)")
    assert offenders == []


def test_migrations_match_the_models(tmp_path: Path) -> None:
    """The Alembic history builds exactly the schema the models describe."""
    import asyncio
    import warnings

    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    from sqlalchemy import TextClause, text

    from storage import db
    from storage.migrate import upgrade
    from storage.models import Base
    from storage.search import include_name

    async def diff() -> tuple[list[object], dict[str, str]]:
        engine = db.create_engine(f"sqlite+aiosqlite:///{tmp_path / 'm.db'}")
        await upgrade(engine)
        async with engine.connect() as conn:
            with warnings.catch_warnings():
                # SQLite's reflection cannot read an index on an expression (Alembic leaves
                # them out on both sides): those are compared by their SQL below.
                warnings.filterwarnings("ignore", "Skipped unsupported reflection of expression")
                warnings.filterwarnings("ignore", "autogenerate skipping metadata-specified expr")
                result = await conn.run_sync(
                    lambda sync: compare_metadata(
                        MigrationContext.configure(sync, opts={"include_name": include_name}),
                        Base.metadata,
                    )
                )
            built = await conn.execute(text("SELECT name, sql FROM sqlite_master"))
            sql = {name: " ".join(str(made).split()) for name, made in built if made}
        await engine.dispose()
        return result, sql

    result, sql = asyncio.run(diff())
    assert result == []
    for table in Base.metadata.tables.values():
        for index in table.indexes:
            if any(isinstance(e, TextClause) for e in index.expressions):
                columns = ", ".join(getattr(e, "name", None) or str(e) for e in index.expressions)
                assert sql.get(str(index.name), "").endswith(f"ON {table.name} ({columns})")
