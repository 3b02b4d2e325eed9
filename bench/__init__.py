"""Performance benchmark of helpdesk-bot against the bare frameworks (not part of the tests)."""
