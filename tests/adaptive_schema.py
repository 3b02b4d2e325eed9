"""Validate Adaptive Cards against the official 1.5 schema (tests/fixtures, draft-06)."""

from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Any

from jsonschema import Draft6Validator
from jsonschema.exceptions import best_match

from tests import FIXTURES

SUPPORTED_VERSIONS = ("1.0", "1.1", "1.2", "1.3", "1.4", "1.5")


def schema_path() -> Path:
    override = os.environ.get("ADAPTIVE_CARD_SCHEMA")
    if override:
        return Path(override)
    return FIXTURES / "adaptive-card.schema.json"


@lru_cache(maxsize=4)
def _validator(path: str) -> Draft6Validator:
    schema = json.loads(Path(path).read_text(encoding="utf-8"))
    Draft6Validator.check_schema(schema)
    return Draft6Validator(schema)


def validate_adaptive_card(card: dict[str, Any]) -> None:
    """Raise AssertionError (path and message) unless `card` is a valid root Adaptive Card."""
    assert isinstance(card, dict), f"card must be a dict, got {type(card).__name__}"
    # The schema does not require these on the root card (tests/fixtures/README.md).
    assert card.get("type") == "AdaptiveCard", (
        f"root type must be AdaptiveCard: {card.get('type')!r}"
    )
    assert card.get("version") in SUPPORTED_VERSIONS, f"unsupported version {card.get('version')!r}"
    error = best_match(_validator(str(schema_path())).iter_errors(card))
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "<root>"
        raise AssertionError(f"invalid Adaptive Card at {where}: {error.message}")
