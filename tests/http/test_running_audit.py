"""SPEC "Running", "Environment variables", "Config file" and "Directory file": what an operator
sees when starting the bot, checked on real processes and real directory servers."""

from __future__ import annotations

import logging
from typing import Any

from tests.http.directory_support import Source

# The key that lists the technicians, per directory source.
TECHNICIAN_KEY = {
    "graph": "directory.graph.technician_group_id",
    "ldap": "directory.ldap.technician_group_dn",
}


async def test_no_technician_group_warns_naming_the_key_of_that_source(
    make_app: Any, source: Source, caplog: Any
) -> None:
    """SPEC: with `graph` or `ldap` and no technician group configured, everyone is a
    technician, with the start-up warning. It said to "set `technician: true` on your
    technicians", a key only the directory file has."""
    caplog.set_level(logging.WARNING)
    config = source.config()
    del config["directory"][source.name][TECHNICIAN_KEY[source.name].rsplit(".", 1)[1]]
    await make_app(config=config, env=source.env)
    warnings = [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING and "everyone counts as one" in r.getMessage()
    ]
    assert len(warnings) == 1, [r.getMessage() for r in caplog.records]
    assert TECHNICIAN_KEY[source.name] in warnings[0], warnings[0]
    assert "technician: true" not in warnings[0], warnings[0]
