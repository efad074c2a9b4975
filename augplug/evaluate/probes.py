"""Multi-task linear probes (filled in by the demo issue)."""

__all__: list[str] = []
