"""Slack's error code as said to an operator: `missing_scope` names the scope and the fix."""

from __future__ import annotations

from typing import Any


def slack_error(response: Any) -> str:
    """`missing_scope (the Slack app needs the files:write scope: ...)`; other codes as Slack
    gave them. Slack names the scope a call lacks in `needed` (the manifests have them all; an
    app created before a release that added one keeps its old scopes until reinstalled)."""
    error = str(response.get("error") or "unknown_error")
    needed = response.get("needed") if error == "missing_scope" else None
    if not needed:
        return error
    return (
        f"missing_scope (the Slack app needs the {needed} scope: add it as slack/manifest.yml "
        "has it, then Install App -> Reinstall to Workspace)"
    )
