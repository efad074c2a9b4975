"""augplug built-in plugin: kornia."""
