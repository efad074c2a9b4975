"""augplug built-in plugin: datasets (spirograph, digits-on-photos, shapes-on-photos)."""
