"""Registers the viewmaker components (filled in by its issue)."""
