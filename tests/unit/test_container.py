"""Dockerfile and compose.yaml: the shape operators rely on, and a HEALTHCHECK that works.

No Docker engine runs here: the image is not built. The healthcheck command is run for real
against `python -m bot serve`, since that is what the container runs.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SECRET_VARS = (
    "SLACK_BOT_TOKEN",
    "SLACK_SIGNING_SECRET",
    "SLACK_APP_TOKEN",
    "MicrosoftAppPassword",
    "PAGERDUTY_ROUTING_KEY",
    "OPSGENIE_API_KEY",
    "POSTGRES_PASSWORD",
)


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined."""
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    text = re.sub(r"\\\n", " ", text)
    result = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            result.append((word.upper(), rest.strip()))
    return result


def _one(name: str) -> str:
    values = [rest for word, rest in _instructions() if word == name]
    assert len(values) == 1, f"expected one {name}, got {values}"
    return values[0]


def _healthcheck_argv() -> list[str]:
    rest = _one("HEALTHCHECK")
    _, _, command = rest.partition("CMD ")
    argv = json.loads(command)
    assert isinstance(argv, list)
    return [str(arg) for arg in argv]


def _compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "compose.yaml").read_text(encoding="utf-8"))
    return data


# -- Dockerfile --------------------------------------------------------------------------------


def test_dockerfile_base_user_port_and_entry() -> None:
    assert _one("FROM") == "python:3.11-slim"
    user = _one("USER")
    assert user.split(":")[0] not in ("root", "0"), "the image must not run as root"
    assert _one("EXPOSE") == "3978"
    env = " ".join(rest for word, rest in _instructions() if word == "ENV")
    assert "HOST=0.0.0.0" in env
    assert json.loads(_one("ENTRYPOINT")) == ["python", "-m", "bot"]
    assert json.loads(_one("CMD")) == ["serve"]


def test_dockerfile_copies_every_package_it_installs() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    include = project["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = {name.rstrip("*") for name in include}
    copied = {rest.split()[0] for word, rest in _instructions() if word == "COPY"}
    assert packages <= copied, f"COPY is missing {sorted(packages - copied)}"
    assert any(word == "RUN" and "pip install" in rest for word, rest in _instructions())


def test_healthcheck_is_python_urllib_on_healthz() -> None:
    argv = _healthcheck_argv()
    assert argv[:2] == ["python", "-c"]
    assert "/healthz" in argv[2] and "urllib" in argv[2]
    compile(argv[2], "HEALTHCHECK", "exec")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _probe(port: int) -> int:
    """Run the Dockerfile's HEALTHCHECK command as Docker would; its exit code."""
    argv = _healthcheck_argv()
    env = {**os.environ, "PORT": str(port)}
    return subprocess.run(
        [sys.executable, *argv[1:]], env=env, capture_output=True, timeout=30
    ).returncode


@contextlib.contextmanager
def _running(
    tmp_path: Path, command: list[str], name: str, env: dict[str, str] | None = None
) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    """`python -m bot <command>` on a SQLite file of its own, its output in `<name>.log`;
    stopped (SIGTERM, then SIGKILL) on the way out."""
    environ = {
        key: value
        for key, value in os.environ.items()
        if key in ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR")
    }
    environ.update(
        {
            "PYTHONPATH": str(ROOT),
            "HOST": "127.0.0.1",
            "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'helpdesk.db'}",
            **(env or {}),
        }
    )
    log = tmp_path / f"{name}.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "bot", *command],
            cwd=tmp_path,
            env=environ,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        yield process, log
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], Path, int]]:
    port = _free_port()
    with _running(tmp_path, ["serve"], "server", {"PORT": str(port)}) as (process, log):
        yield process, log, port


def test_healthcheck_passes_on_a_running_server_and_fails_without_one(
    server: tuple[subprocess.Popen[bytes], Path, int],
) -> None:
    process, log, port = server
    deadline = time.monotonic() + 45
    while _probe(port) != 0:
        assert process.poll() is None, f"server exited: {log.read_text()}"
        assert time.monotonic() < deadline, "the server never became healthy"
        time.sleep(0.5)
    process.terminate()
    process.wait(timeout=15)
    assert _probe(port) != 0


# -- compose.yaml ------------------------------------------------------------------------------


def test_compose_services_and_commands() -> None:
    services = _compose()["services"]
    assert set(services) == {"db", "migrate", "web", "worker"}
    assert services["db"]["image"] == "postgres:16"
    assert "pg_isready" in " ".join(services["db"]["healthcheck"]["test"])
    assert services["web"]["command"] == ["serve", "--no-scheduler"]
    assert services["worker"]["command"] == ["worker", "--metrics-port", "9102"]
    assert services["migrate"]["command"] == ["migrate"]
    assert services["migrate"]["restart"] == "no"
    assert "3978:3978" in services["web"]["ports"]
    assert services["web"]["environment"]["HOST"] == "0.0.0.0"


def test_compose_waits_for_the_database_and_the_migration() -> None:
    services = _compose()["services"]
    assert services["migrate"]["depends_on"]["db"]["condition"] == "service_healthy"
    for name in ("web", "worker"):
        depends = services[name]["depends_on"]
        assert depends["db"]["condition"] == "service_healthy"
        assert depends["migrate"]["condition"] == "service_completed_successfully"


def test_compose_uses_postgres_and_placeholders_for_secrets() -> None:
    services = _compose()["services"]
    for name in ("migrate", "web", "worker"):
        env = services[name]["environment"]
        assert env["DATABASE_URL"].startswith("postgresql+asyncpg://helpdesk:")
        assert env["DATABASE_URL"].endswith("@db:5432/helpdesk")
        for key in SECRET_VARS:
            if key in env:
                assert re.fullmatch(r"\$\{" + key + r"(:[-?][^}]*)?\}", env[key]), (
                    f"{name}.{key} must come from the environment, not the file"
                )
    assert re.fullmatch(
        r"\$\{POSTGRES_PASSWORD:\?.*\}", services["db"]["environment"]["POSTGRES_PASSWORD"]
    )


def _readme_variables() -> set[str]:
    """Every variable named in the first column of README.md's 'Environment variables' table."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    table = text.split("### Environment variables", 1)[1].split("\n\n", 2)[1]
    names: set[str] = set()
    for row in table.splitlines()[2:]:
        names.update(re.findall(r"`([A-Za-z_]+)`", row.split("|")[1]))
    return names


def test_compose_passes_every_variable_the_readme_documents() -> None:
    """Found by a review: compose's .env only fills in `${...}` placeholders, so a variable not
    listed under `environment:` never reached the bot. With `psa:` or `kb:` in the config the
    services stopped with 'PSA_USERNAME: required ...' although .env set it, and an EU
    Opsgenie account (OPSGENIE_API_URL) could not be configured without editing the file."""
    documented = _readme_variables()
    assert {"PSA_USERNAME", "KB_API_KEY", "OUTBOX_LEASE_SECONDS"} <= documented
    services = _compose()["services"]
    for name in ("migrate", "web", "worker"):
        env = services[name]["environment"]
        missing = sorted(documented - {"HOST", "PORT"} - set(env))  # web sets those two
        assert not missing, f"compose's {name} does not pass {missing}"
        for key in documented - {"DATABASE_URL", "HOST", "PORT"}:
            assert re.fullmatch(r"\$\{" + key + r"(:-[^}]*)?\}", env[key]), (name, key)


def test_the_compose_worker_healthcheck_passes_on_a_running_worker_and_fails_without_one(
    tmp_path: Path,
) -> None:
    """The worker's health check (compose.yaml) run as Docker would, against `python -m bot
    worker` with the compose file's own arguments (its port moved to a free one): 0 once it
    serves, not 0 once it has stopped. Before, the worker had no port and no check."""
    worker = _compose()["services"]["worker"]
    command, test = list(worker["command"]), list(worker["healthcheck"]["test"])
    assert test[:3] == ["CMD", "python", "-c"] and "/healthz" in test[3]
    port = _free_port()
    command[command.index("--metrics-port") + 1] = str(port)
    check = test[3].replace(":9102/", f":{port}/")

    def probe() -> int:
        return subprocess.run(
            [sys.executable, "-c", check], capture_output=True, timeout=30
        ).returncode

    with _running(tmp_path, command, "worker") as (process, log):
        deadline = time.monotonic() + 45
        while probe() != 0:
            assert process.poll() is None, f"worker exited: {log.read_text()}"
            assert time.monotonic() < deadline, "the worker never became healthy"
            time.sleep(0.5)
        process.terminate()
        process.wait(timeout=15)
    assert probe() != 0
