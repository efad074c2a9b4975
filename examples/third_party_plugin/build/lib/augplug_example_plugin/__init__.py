"""An example third-party augplug plugin (see plugin.py)."""
