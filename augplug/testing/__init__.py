"""Hypothesis strategies and invariance assertions for property-based tests of your own encoders."""
