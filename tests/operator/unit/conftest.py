"""Fixtures for the pure-core tests; the helpers live in pure_helpers (a unique module
name, so test files can import them whatever else pytest collects)."""

from pure_helpers import *  # noqa: F401,F403
