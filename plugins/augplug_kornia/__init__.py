"""augplug built-in plugin: any ``kornia.augmentation`` pipeline as a seeded, replayable view generator."""
