"""Registers the features components (filled in by its issue)."""
