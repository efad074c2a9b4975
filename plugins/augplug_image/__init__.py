"""augplug built-in plugin: per-sample, replayable, differentiable image views on the batch's device."""
