"""The test suite: unit tests of the core, HTTP tests of the real app against loopback fakes."""

from __future__ import annotations

from pathlib import Path

# Third-party data the tests read (schema, reference payloads), kept in the repository.
FIXTURES = Path(__file__).resolve().parent / "fixtures"
