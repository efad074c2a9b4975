"""Registers the photo-based multi-task datasets."""
