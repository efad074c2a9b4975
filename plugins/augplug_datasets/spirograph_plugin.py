"""Registers the spirograph dataset and views."""
