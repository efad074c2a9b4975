"""Registers the gradient_invariance objective."""
