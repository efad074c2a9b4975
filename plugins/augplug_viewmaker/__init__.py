"""augplug built-in plugin: viewmaker."""
