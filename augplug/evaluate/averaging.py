"""Test-time feature averaging (filled in by the invariance issue)."""

__all__: list[str] = []
