"""augplug built-in plugin: audio."""
