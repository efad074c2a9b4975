"""Registers the objectives components (filled in by its issue)."""
