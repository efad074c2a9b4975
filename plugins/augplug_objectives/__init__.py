"""augplug built-in plugin: objectives."""
