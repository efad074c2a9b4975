"""augplug built-in plugin: features."""
