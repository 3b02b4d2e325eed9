"""Slack's edge: the front door (Bolt over HTTP and Socket Mode) and the outbox notifier."""
