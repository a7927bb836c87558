"""Test helpers shared across test packages (real servers started per session)."""
