"""The suite needs nothing but the repository: no test, script, CI step or benchmark reads a
folder beside it, and the third-party fixtures it keeps are the files their README describes."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest

from tests import FIXTURES

ROOT = Path(__file__).resolve().parents[2]
CHECKED = ("tests", "scripts", ".ci", "bench")
SKIPPED_PARTS = {"__pycache__", ".pytest_cache"}

# The folder's name as a path: after `../`, a quote, a slash or a space, and followed by a slash
# or a quote. Plain words (a mailbox of that kind, SQLite's `cache=` mode, identifiers) are not.
# The examples below spell it {dir}, so this file passes its own check.
FOLDER = "sh" + "ared"
OUTSIDE = re.compile(
    r"""(?:^|[\s"'`(/\\])(?:\.\.[/\\])*""" + FOLDER + r"""(?:[/\\]|["'`])""", re.MULTILINE
)


def refers_outside(text: str) -> list[str]:
    """The lines of `text` that name the folder beside the repository."""
    return [line.strip() for line in text.splitlines() if OUTSIDE.search(line)]


@pytest.mark.parametrize(
    "line",
    [
        'REFERENCE = Path(__file__).resolve().parents[3] / "{dir}/reference"',
        'schema = ROOT.parent / "{dir}" / "reference" / "adaptive-card.schema.json"',
        "cat ../{dir}/SPEC.md",
        'os.path.join(here, "..", "..", "{dir}", "reference")',
        "cp /work/{dir}/reference/teams/message.json tests/",
        "open('../{dir}')",
        "see ..\\{dir}\\reference",
    ],
)
def test_the_check_catches_paths_to_the_folder(line: str) -> None:
    line = line.replace("{dir}", FOLDER)
    assert refers_outside(line) == [line]


@pytest.mark.parametrize(
    "line",
    [
        "Granted full access on the {dir} mailbox finance@example.com",
        'assert on_disk("file::memory:?cache={dir}", uri=True) is False',
        "async def test_{dir}_session_is_reused():",
        "JSON-over-HTTP delivery {dir} by the pager notifiers",
    ],
)
def test_the_check_leaves_plain_words_alone(line: str) -> None:
    assert refers_outside(line.replace("{dir}", FOLDER)) == []


def _files() -> list[Path]:
    found = []
    for top in CHECKED:
        for path in sorted((ROOT / top).rglob("*")):
            if path.is_file() and not SKIPPED_PARTS & set(path.parts):
                found.append(path)
    return found


def test_nothing_in_tests_scripts_ci_or_bench_reads_the_folder_beside_the_repo() -> None:
    files = _files()
    assert any(p.name == "run" and p.parent.name == ".ci" for p in files)
    assert any(p.name == "test" and p.parent.name == "scripts" for p in files)
    offenders = {}
    for path in files:
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue  # images and other binary data name no paths
        if lines := refers_outside(text):
            offenders[str(path.relative_to(ROOT))] = lines
    assert offenders == {}, f"these read outside the repository: {offenders}"


def _listed_hashes() -> dict[str, str]:
    readme = (FIXTURES / "README.md").read_text(encoding="utf-8")
    section = readme.split("## sha256", 1)[1]
    return dict(re.findall(r"^\| `([^`]+)` \| `([0-9a-f]{64})` \|$", section, re.MULTILINE))


def test_every_fixture_has_the_provenance_and_hash_its_readme_gives() -> None:
    listed = _listed_hashes()
    data = sorted(str(p.relative_to(FIXTURES)) for p in FIXTURES.rglob("*.json") if p.is_file())
    assert sorted(listed) == data, "tests/fixtures/README.md must list every data file"
    for name, digest in listed.items():
        actual = hashlib.sha256((FIXTURES / name).read_bytes()).hexdigest()
        assert actual == digest, f"{name} changed: sha256 {actual}, README says {digest}"
    assert "MIT License" in (FIXTURES / "LICENSE.AdaptiveCards").read_text(encoding="utf-8")
    assert "MIT License" in (FIXTURES / "slack/LICENSE.bolt-python").read_text(encoding="utf-8")
