"""Registers the kornia components (filled in by its issue)."""
