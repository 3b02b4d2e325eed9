"""Bare-framework servers the benchmark compares the bot with (one process each)."""
