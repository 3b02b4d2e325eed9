"""SPEC "Diagnosis help" settings at start-up, as `python -m bot` reads them: a KB without the
variables its system needs, an unknown `kb.source`, a `kb.url` that is not http(s), a malformed
`changes.window` or a missing calendar file stop it with exit 2 and one line naming the key or
variable; the variables each system needs are enough."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.test_cli import CONFIG, _one_line_naming, _setup, first_for_real

BAD = [
    ("kb: {source: hudu, url: 'https://docs.example.com'}\n", {}, "KB_API_KEY"),
    ("kb: {source: itglue, url: 'https://api.eu.itglue.com'}\n", {}, "KB_API_KEY"),
    (
        "kb: {source: confluence, url: 'https://x.atlassian.net/wiki', space: IT}\n",
        {"KB_API_KEY": "token"},
        "KB_USERNAME",
    ),
    ("kb: {source: notion, url: 'https://x.example.com'}\n", {"KB_API_KEY": "k"}, "kb.source"),
    ("kb: {source: hudu, url: 'docs.example.com'}\n", {"KB_API_KEY": "k"}, "kb.url"),
    ("changes: {window: three days}\n", {}, "changes.window"),
    ("changes: {calendar: missing.ics}\n", {}, "changes.calendar"),
    ("patterns: {repeat_threshold: many}\n", {}, "patterns.repeat_threshold"),
]


@pytest.mark.parametrize(("extra", "env", "key"), BAD)
def test_a_bad_diagnosis_setting_stops_start_up_naming_it(
    tmp_path: Path, extra: str, env: dict[str, str], key: str
) -> None:
    settings = _setup(tmp_path, config=CONFIG + extra) | env
    run = first_for_real((extra, env, key), BAD)
    _one_line_naming(run("check-config", "--no-db", cwd=tmp_path, env=settings), key)


GOOD = [
    ("kb: {source: hudu, url: 'https://docs.example.com'}\n", {"KB_API_KEY": "k"}),
    ("kb: {source: itglue, url: 'https://api.au.itglue.com'}\n", {"KB_API_KEY": "ITG.k"}),
    (
        "kb: {source: confluence, url: 'https://x.atlassian.net', space: IT}\n",
        {"KB_API_KEY": "token", "KB_USERNAME": "bot@example.com"},
    ),
]


@pytest.mark.parametrize(("extra", "env"), GOOD)
def test_each_kb_starts_with_its_variables(tmp_path: Path, extra: str, env: dict[str, str]) -> None:
    settings = _setup(tmp_path, config=CONFIG + extra) | env
    run = first_for_real((extra, env), GOOD)
    result = run("check-config", "--no-db", cwd=tmp_path, env=settings)
    assert result.returncode == 0, result.stderr
