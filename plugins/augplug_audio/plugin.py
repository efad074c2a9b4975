"""Registers the audio components (filled in by its issue)."""
